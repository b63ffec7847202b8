"""Fault injection: ``napari-klip score`` and ``train`` run as processes, interrupted (SIGINT) and killed (SIGKILL) mid-run.

Nothing may be left half-written: no output folder from an unfinished ``score``, no truncated file,
and training resumes from its checkpoint. Each process is signalled once the file that shows it is
working appears (the staging folder of ``score``, the first checkpoint of ``train``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from napari_klip.core.prior import load_prior

from reliability_helpers import image_file, saved_prior  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

SRC = Path(__file__).resolve().parents[2] / "src"


def _default_sigint() -> None:
    # A suite started in the background by a shell (``cmd &``, nohup) runs with SIGINT ignored, and an ignored
    # signal stays ignored across exec: the child would never see the Ctrl-C these tests send. Start it as a
    # terminal would.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "napari_klip.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)


def _wait_for(path: Path, process: subprocess.Popen, patience_s: float = 120.0) -> None:
    """Wait until ``path`` exists while ``process`` runs (fails if the process ends first)."""
    give_up = time.monotonic() + patience_s
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"the process ended (code {process.returncode}) before '{path.name}' appeared: {process.stderr.read()}")
        if time.monotonic() > give_up:
            process.kill()
            pytest.fail(f"'{path.name}' did not appear")
        time.sleep(0.02)


def _score_args(model: Path, image: Path, out: Path, steps: int) -> list[str]:
    return ["score", "--model", str(model), "--input", str(image), "--operator", "denoise", "--samples", "4",
            "--steps", str(steps), "--device", "cpu", "--out", str(out)]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_score_stopped_mid_run_leaves_no_output_and_runs_again(tmp_path, saved_prior, image_file, sig):
    out = tmp_path / "o"
    process = _start(*_score_args(saved_prior, image_file, out, steps=1000))
    _wait_for(tmp_path / ".o.partial", process)
    process.send_signal(sig)
    _, error = process.communicate(timeout=120)
    if sig == signal.SIGINT:
        assert process.returncode == 130
        assert error.strip().startswith("napari-klip: interrupted") and "Traceback" not in error
        assert error.strip().count("\n") == 0
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]
    else:
        assert process.returncode == -signal.SIGKILL
    assert not out.exists()
    # the next run is not blocked by what a killed one left, and cleans it up
    rerun = _start(*_score_args(saved_prior, image_file, out, steps=4))
    assert rerun.wait(timeout=120) == 0, rerun.stderr.read()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "o"]
    assert (out / "result.json").is_file()


def _train_args(data: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--out", str(out), "--image-size", "16", "--network", "tiny", "--batch-size", "4",
            "--steps", str(steps), "--checkpoint-every", "2", "--device", "cpu", *extra]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_train_stopped_mid_run_resumes_from_its_checkpoint(tmp_path, image_file, sig):
    out = tmp_path / "p"
    process = _start(*_train_args(image_file, out, steps=100_000))
    _wait_for(out / "checkpoint.pt", process)
    process.send_signal(sig)
    _, error = process.communicate(timeout=120)
    if sig == signal.SIGINT:
        assert process.returncode == 130, error
        assert "interrupted; checkpoint saved" in error and "Traceback" not in error
    else:
        assert process.returncode == -signal.SIGKILL
    state = torch.load(out / "checkpoint.pt", weights_only=True)  # whole, never truncated
    done = int(state["step"])
    assert done >= 2
    resumed = _start(*_train_args(image_file, out, done + 2, "--resume"))
    assert resumed.wait(timeout=120) == 0, resumed.stderr.read()
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == done + 2
    assert load_prior(out, device="cpu").metadata.training["steps"] == done + 2
    assert not (tmp_path / ".p.lock").exists()
