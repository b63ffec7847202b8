"""Data that could be lost or half-written: interrupted training, overwrite, atomic outputs, locks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_klip.cli import main
from napari_klip.core.errors import OutputLockedError
from napari_klip.core.outputs import output_lock
from napari_klip.core.training import CHECKPOINT_FILE, LOG_FILE, iter_training, train_prior

from reliability_helpers import FAST, folder_snapshot, image_file, saved_prior, tiny_training  # noqa: F401 (fixtures)


def _interrupt_inside_step(monkeypatch, at_call: int, error: type[BaseException] = KeyboardInterrupt) -> None:
    """Raise ``error`` from the gradient clipping of step ``at_call`` (inside a step, as Ctrl-C lands)."""
    original, calls = torch.nn.utils.clip_grad_norm_, []

    def clip(*args, **kwargs):
        calls.append(1)
        if len(calls) == at_call:
            raise error("injected")
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)


def test_interrupt_inside_a_step_saves_a_checkpoint(tmp_path, disc_images, monkeypatch):
    _interrupt_inside_step(monkeypatch, at_call=3)
    with pytest.raises(KeyboardInterrupt):
        for _ in iter_training(disc_images, tmp_path / "p", tiny_training(steps=10)):
            pass
    state = torch.load(tmp_path / "p" / CHECKPOINT_FILE, weights_only=True)
    assert state["step"] == 2
    assert json.loads((tmp_path / "p" / LOG_FILE).read_text())["cancelled"] is True
    monkeypatch.undo()
    assert train_prior(disc_images, tmp_path / "p", tiny_training(steps=4), resume=True).steps_done == 4


@pytest.mark.parametrize("failure", [KeyboardInterrupt, FloatingPointError])
def test_overwrite_keeps_the_old_prior_until_the_new_one_is_complete(tmp_path, disc_images, monkeypatch, failure):
    train_prior(disc_images, tmp_path / "p", tiny_training(steps=2))
    before = folder_snapshot(tmp_path / "p")
    _interrupt_inside_step(monkeypatch, at_call=2, error=failure)
    with pytest.raises(failure):
        train_prior(disc_images, tmp_path / "p", tiny_training(steps=5, seed=1), overwrite=True)
    assert folder_snapshot(tmp_path / "p") == before
    monkeypatch.undo()
    if failure is FloatingPointError:  # failed before a checkpoint: nothing of it is left
        assert not (tmp_path / "p.new").exists()
        return
    # a resume continues the unfinished overwrite run, then replaces the old prior
    result = train_prior(disc_images, tmp_path / "p", tiny_training(steps=5, seed=1), resume=True)
    assert result.out_dir == tmp_path / "p" and result.steps_done == 5
    assert torch.load(tmp_path / "p" / CHECKPOINT_FILE, weights_only=True)["step"] == 5
    assert not (tmp_path / "p.new").exists()


def test_a_finished_overwrite_replaces_the_prior_and_keeps_unrelated_files(tmp_path, disc_images):
    train_prior(disc_images, tmp_path / "p", tiny_training(steps=2))
    (tmp_path / "p" / "notes.txt").write_text("mine")
    train_prior(disc_images, tmp_path / "p", tiny_training(steps=3), overwrite=True)
    assert torch.load(tmp_path / "p" / CHECKPOINT_FILE, weights_only=True)["step"] == 3
    assert (tmp_path / "p" / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "p.new").exists()


def test_two_trainings_into_one_folder_cannot_both_run(tmp_path, disc_images):
    with output_lock(tmp_path / "p"):
        with pytest.raises(OutputLockedError, match="another napari-klip run"):
            next(iter_training(disc_images, tmp_path / "p", tiny_training()))
    assert not (tmp_path / "p" / CHECKPOINT_FILE).exists()
    assert not (tmp_path / ".p.lock").exists()


def _score(model, image_file, out, *extra):
    return main(["score", "--model", str(model), "--input", str(image_file), "--operator", "denoise", *FAST, "--out", str(out), *extra])


def test_score_interrupted_is_one_line_and_writes_nothing(tmp_path, saved_prior, image_file, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("napari_klip.api.klip.score_stack", interrupted)
    assert _score(saved_prior, image_file, tmp_path / "o") == 130
    error = capsys.readouterr().err
    assert error.startswith("napari-klip: interrupted") and error.count("\n") == 1 and "Traceback" not in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]


def test_lmd_interrupted_is_one_line_and_keeps_earlier_outputs(tmp_path, saved_prior, image_file, monkeypatch, capsys):
    out = tmp_path / "o"
    args = ["lmd", "--model", str(saved_prior), "--input", str(image_file), "--distance", "mse", "--reconstructions", "2",
            "--steps", "4", "--device", "cpu", "--out", str(out), "--overwrite"]
    assert main(args) == 0
    before = folder_snapshot(out)
    monkeypatch.setattr("napari_klip.api.lmd.score_stack", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert main(args) == 130
    assert "Traceback" not in capsys.readouterr().err
    assert folder_snapshot(out) == before


def test_out_that_is_a_file_fails_before_sampling(tmp_path, saved_prior, image_file, monkeypatch, capsys):
    (tmp_path / "o").write_text("not a folder")

    def must_not_sample(*args, **kwargs):
        raise AssertionError("sampled before checking --out")

    monkeypatch.setattr("napari_klip.api.klip.score_stack", must_not_sample)
    assert _score(saved_prior, image_file, tmp_path / "o") == 1
    assert "is a file, not an output folder" in capsys.readouterr().err


def test_a_write_failing_midway_leaves_the_earlier_outputs_whole(tmp_path, saved_prior, image_file, monkeypatch, capsys):
    out = tmp_path / "o"
    assert _score(saved_prior, image_file, out) == 0
    before = folder_snapshot(out)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", disk_full)
    assert _score(saved_prior, image_file, out, "--overwrite", "--seed", "3") == 1
    assert "No space left" in capsys.readouterr().err
    assert folder_snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "o"]


def test_two_runs_into_one_out_cannot_both_proceed(tmp_path, saved_prior, image_file, capsys):
    with output_lock(tmp_path / "o"):
        assert _score(saved_prior, image_file, tmp_path / "o") == 1
    assert "another napari-klip run is writing into" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert _score(saved_prior, image_file, tmp_path / "o") == 0  # the lock is gone with its holder


def test_lmd_overwrite_into_a_klip_folder_removes_klip_files(tmp_path, saved_prior, image_file):
    out = tmp_path / "o"
    assert _score(saved_prior, image_file, out) == 0
    (out / "mine.txt").write_text("kept")
    assert main(["lmd", "--model", str(saved_prior), "--input", str(image_file), "--distance", "mse", "--reconstructions", "2",
                 "--steps", "4", "--device", "cpu", "--out", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["heatmap.tif", "masks.tif", "mine.txt", "reconstructions.tif", "result.json"]
    assert "distances" in json.loads((out / "result.json").read_text())


def test_unwritable_out_fails_before_sampling(tmp_path, saved_prior, image_file, monkeypatch, capsys):
    """os.access is faked: the tests may run as root, for whom every folder is writable."""
    import napari_klip.core.outputs as outputs

    monkeypatch.setattr(outputs.os, "access", lambda path, mode: False)
    monkeypatch.setattr("napari_klip.api.klip.score_stack", lambda *a, **k: (_ for _ in ()).throw(AssertionError("sampled")))
    assert _score(saved_prior, image_file, tmp_path / "o") == 1
    assert "cannot write into" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
