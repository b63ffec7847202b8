"""Scoring on a Dask cluster (``napari_klip.cluster``, ``napari-klip score|lmd --dask``) against the serial run.

One ``LocalCluster`` of two worker processes serves the module; every run uses the bundled prior,
a few 16×16 images and a few steps. The serial results come from the public API (and the serial
command line) in this process, so "identical" means bit for bit across processes. Dask's nanny
starts workers with ``OMP_NUM_THREADS=1``, and torch's CPU kernels may round differently with
another thread count (last bits, ~1e-7), so the serial references run on one torch thread too.
"""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import tifffile

pytest.importorskip("distributed")
pytest.importorskip("zarr")

from napari_klip.api.klip import score_stack as klip_score_stack  # noqa: E402
from napari_klip.api.lmd import score_stack as lmd_score_stack  # noqa: E402
from napari_klip.cli import main  # noqa: E402
from napari_klip.cluster import RunSpec, connect, open_result, score_distributed  # noqa: E402
from napari_klip.cluster.store import ResultStore  # noqa: E402
from napari_klip.cluster.worker import load_count  # noqa: E402
from napari_klip.core.errors import Cancelled, DistributedRunError, OutputLockedError  # noqa: E402
from napari_klip.core.options import KlipConfig, LmdConfig  # noqa: E402
from napari_klip.core.outputs import output_lock  # noqa: E402
from napari_klip.core.prior_z import PriorZSettings  # noqa: E402

pytestmark = pytest.mark.slow

KLIP = KlipConfig(num_samples=2, num_steps=6, seed=5)
KLIP_OPTIONS = {"operator": "ct", "operator_params": {"n_views": 5}}
KLIP_SPEC = RunSpec("klip", KLIP, device="cpu", **KLIP_OPTIONS)
LMD = LmdConfig(num_reconstructions=2, num_steps=4, distance="mse", mask_grid=4, seed=2)
LMD_SPEC = RunSpec("lmd", LMD, device="cpu", batch_size=3)
N = 4


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def client():
    with connect(n_workers=2, threads_per_worker=1, processes=True) as client:
        yield client


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:16, :16]
    discs = [((yy - 8) ** 2 + (xx - 8) ** 2 < rng.uniform(9, 30)) * rng.uniform(120, 250) for _ in range(N)]
    return np.stack([(d + rng.normal(0, 8, (16, 16))).clip(0, 255).astype(np.uint8) for d in discs])


@pytest.fixture(scope="module")
def stack_tif(images, tmp_path_factory):
    path = tmp_path_factory.mktemp("input") / "stack.tif"
    tifffile.imwrite(path, images, photometric="minisblack")
    return path


@pytest.fixture(scope="module")
def klip_serial(images):
    return klip_score_stack(images, None, config=KLIP, device="cpu", **KLIP_OPTIONS)


def _assert_klip_equal(store, serial):
    result = open_result(store)
    assert np.asarray(result["done"]).all()
    for name in ("heatmap", "labels", "reconstruction"):
        expected = np.stack([getattr(r, name) for r in serial])
        np.testing.assert_array_equal(np.asarray(result[name]), expected.astype(np.asarray(result[name]).dtype))
    np.testing.assert_array_equal(np.asarray(result["score"]), [r.score for r in serial])
    np.testing.assert_array_equal(np.asarray(result["threshold_value"]), [r.threshold_value for r in serial])


def test_klip_on_two_workers_equals_the_serial_run_and_loads_the_prior_once_per_worker(client, stack_tif, klip_serial, tmp_path):
    before = client.run(load_count)
    summary = score_distributed(stack_tif, tmp_path / "out.zarr", KLIP_SPEC, client)
    assert (summary.total, summary.computed, summary.skipped, summary.workers) == (N, N, 0, 2)
    _assert_klip_equal(tmp_path / "out.zarr", klip_serial)
    loads = client.run(load_count)
    # N scoring tasks and one settings check ran; each worker process loaded the prior at most once
    assert all(loads[worker] - before.get(worker, 0) <= 1 for worker in loads) and sum(loads.values()) >= 1
    record = open_result(tmp_path / "out.zarr")["record"]
    assert record["settings"]["config"]["seed"] == 5 and record["input"]["shape"] == [N, 16, 16]


def test_klip_with_the_prior_z_map_equals_the_serial_run_and_records_its_settings(client, images, stack_tif, tmp_path):
    z_settings = PriorZSettings(timesteps=(100, 400), draws=3, smoothing=1.0)
    spec = RunSpec("klip", KLIP, device="cpu", prior_z=z_settings, **KLIP_OPTIONS)
    score_distributed(stack_tif, tmp_path / "out.zarr", spec, client)
    serial = klip_score_stack(images, None, config=KLIP, device="cpu", prior_z=z_settings, **KLIP_OPTIONS)
    _assert_klip_equal(tmp_path / "out.zarr", serial)
    result = open_result(tmp_path / "out.zarr")
    np.testing.assert_array_equal(np.asarray(result["prior_z"]), np.stack([r.prior_z for r in serial]))
    assert result["record"]["settings"]["prior_z"] == {"timesteps": [100, 400], "draws": 3, "smoothing_px": 1.0}
    assert "prior_z" not in KLIP_SPEC.record()  # a run without it records what runs before the option recorded
    with pytest.raises(ValueError, match="method 'klip'"):
        RunSpec("lmd", LMD, prior_z=z_settings)
    with pytest.raises(ValueError, match="timesteps"):  # checked against the prior before any output
        score_distributed(stack_tif, tmp_path / "bad.zarr", RunSpec("klip", KLIP, device="cpu", prior_z=PriorZSettings(timesteps=(5000,)),
                                                                    **KLIP_OPTIONS), client)
    assert not (tmp_path / "bad.zarr").exists()


class CountingStack:
    """An array-like that records every slice read from it (a stack "larger than memory")."""

    def __init__(self, array):
        self.array, self.shape, self.dtype, self.reads = array, array.shape, array.dtype, []

    def __getitem__(self, index):
        self.reads.append((index.start, index.stop))
        return self.array[index]


def test_lmd_on_two_workers_equals_the_serial_run_reading_one_batch_at_a_time(client, images, tmp_path):
    source = CountingStack(images)
    summary = score_distributed(source, tmp_path / "lmd.zarr", LMD_SPEC, client)
    assert summary.computed == N
    # the intensity mapping reads the stack once first (all of a stack of <= 64 images), then each task its batch
    assert source.reads[0] == (0, N) and sorted(source.reads[1:]) == [(0, 3), (3, 4)]
    serial = lmd_score_stack(images, None, config=LMD, batch_size=3, device="cpu")
    result = open_result(tmp_path / "lmd.zarr")
    np.testing.assert_array_equal(np.asarray(result["heatmap"]), np.stack([r.heatmap for r in serial]))
    np.testing.assert_array_equal(np.asarray(result["reconstructions"]), np.stack([r.reconstructions for r in serial]))
    np.testing.assert_array_equal(np.asarray(result["distances"]), np.stack([r.distances for r in serial]))
    np.testing.assert_array_equal(np.asarray(result["score"]), [r.score for r in serial])
    np.testing.assert_array_equal(np.asarray(result["masks"]), serial[0].masks.astype(np.uint8))


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(client, stack_tif, klip_serial, tmp_path, monkeypatch):
    writes: list[int] = []
    original = ResultStore.write
    monkeypatch.setattr(ResultStore, "write", lambda self, index, result: (writes.append(index), original(self, index, result))[1])
    killed: list = []

    def kill_a_busy_worker(update):
        if killed or update.step < 1:
            return
        busy = {worker: keys for worker, keys in client.processing().items() if keys}
        if busy:
            worker, keys = next(iter(busy.items()))
            pid = client.run(os.getpid, workers=[worker])[worker]
            os.kill(pid, signal.SIGKILL)
            killed.append(keys)

    summary = score_distributed(stack_tif, tmp_path / "out.zarr", KLIP_SPEC, client, progress=kill_a_busy_worker)
    assert killed and killed[0], "no worker was busy to kill: the test did not exercise a failure"
    assert summary.computed == N and sorted(writes) == list(range(N))  # every image once
    _assert_klip_equal(tmp_path / "out.zarr", klip_serial)
    client.wait_for_workers(2, timeout=60)  # the nanny restarted the killed worker


def test_a_rerun_skips_done_images_and_redoes_one_without_its_marker(client, stack_tif, klip_serial, tmp_path):
    out = tmp_path / "out.zarr"
    updates = []
    with pytest.raises(Cancelled):
        score_distributed(stack_tif, out, KLIP_SPEC, client, progress=updates.append, should_cancel=lambda: updates[-1].step >= 2)
    store = ResultStore(out)
    assert store.done().sum() == 2
    first = int(np.flatnonzero(store.done())[0])
    # as if a run was killed after writing this image's data but before its marker: half-written, not done
    store.root["done"][first] = 0
    store.root["heatmap/0"][first] = -1.0
    resumed = score_distributed(stack_tif, out, KLIP_SPEC, client)
    assert (resumed.computed, resumed.skipped) == (N - 1, 1)
    _assert_klip_equal(out, klip_serial)
    again = score_distributed(stack_tif, out, KLIP_SPEC, client)
    assert (again.computed, again.skipped) == (0, N)
    assert [run["computed"] for run in open_result(out)["runs"]] == [N - 1, 0]


def test_other_settings_foreign_folders_and_busy_outputs_are_refused(client, stack_tif, tmp_path):
    out = tmp_path / "out.zarr"
    score_distributed(stack_tif, out, KLIP_SPEC, client)
    heatmap = np.asarray(open_result(out)["heatmap"])
    other = RunSpec("klip", KlipConfig(num_samples=2, num_steps=6, seed=6), device="cpu", **KLIP_OPTIONS)
    with pytest.raises(FileExistsError, match=r"config\.seed.*--overwrite"):
        score_distributed(stack_tif, out, other, client)
    np.testing.assert_array_equal(np.asarray(open_result(out)["heatmap"]), heatmap)
    replaced = score_distributed(stack_tif, out, other, client, overwrite=True)
    assert replaced.computed == N and open_result(out)["record"]["settings"]["config"]["seed"] == 6
    assert not np.array_equal(np.asarray(open_result(out)["heatmap"]), heatmap)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="not a result store"):
            score_distributed(stack_tif, foreign, KLIP_SPEC, client, overwrite=overwrite)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    with output_lock(tmp_path / "busy.zarr"), pytest.raises(OutputLockedError):
        score_distributed(stack_tif, tmp_path / "busy.zarr", KLIP_SPEC, client)
    assert not (tmp_path / "busy.zarr").exists()


def test_a_failing_image_is_one_error_naming_it(client, images, tmp_path):
    bad = images.astype(np.float32)
    bad[3, 2, 2] = np.nan
    with pytest.raises(DistributedRunError, match="image 3 of .*NaN"):
        score_distributed(bad, tmp_path / "out.zarr", KLIP_SPEC, client)
    done = ResultStore(tmp_path / "out.zarr").done()
    assert not done[3]


def test_bad_settings_fail_before_any_output(client, stack_tif, tmp_path):
    spec = RunSpec("klip", KLIP, device="cpu", window=(2, 60), **KLIP_OPTIONS)
    with pytest.raises(ValueError, match="window"):
        score_distributed(stack_tif, tmp_path / "out.zarr", spec, client)
    assert list(tmp_path.iterdir()) == []


# --- the command line ------------------------------------------------------------------------

FAST = ["--samples", "2", "--steps", "6", "--seed", "5", "--device", "cpu", "--operator", "ct", "--n-views", "5"]


def test_cli_score_on_a_scheduler_address_equals_the_serial_cli(client, stack_tif, tmp_path, capsys):
    address = client.scheduler.address
    out = tmp_path / "out.zarr"
    assert main(["score", "--input", str(stack_tif), *FAST, "--dask", address, "--out", str(out)]) == 0
    assert f"scored {N} image(s) on 2 Dask worker(s) (0 already done)" in capsys.readouterr().out
    assert main(["score", "--input", str(stack_tif), *FAST, "--out", str(tmp_path / "serial")]) == 0
    result = open_result(out)
    for name in ("heatmap", "labels", "reconstruction"):
        assert np.asarray(result[name]).tobytes() == tifffile.imread(tmp_path / "serial" / f"{name}.tif").tobytes()
    assert "prior_z" not in result
    # --prior-z on the cluster: the same z-maps as the serial command's prior_z.tif
    z_options = ["--prior-z", "--prior-z-timesteps", "100", "400"]
    assert main(["score", "--input", str(stack_tif), *FAST, *z_options, "--dask", address, "--out", str(tmp_path / "z.zarr")]) == 0
    assert main(["score", "--input", str(stack_tif), *FAST, *z_options, "--out", str(tmp_path / "z-serial")]) == 0
    assert np.asarray(open_result(tmp_path / "z.zarr")["prior_z"]).tobytes() == tifffile.imread(tmp_path / "z-serial" / "prior_z.tif").tobytes()
    # the re-run finds the cluster by a scheduler file (what `dask scheduler --scheduler-file` writes: its address)
    (tmp_path / "scheduler.json").write_text(json.dumps({"address": address}))
    assert main(["score", "--input", str(stack_tif), *FAST, "--dask", str(tmp_path / "scheduler.json"), "--out", str(out)]) == 0
    assert f"scored 0 image(s) on 2 Dask worker(s) ({N} already done)" in capsys.readouterr().out


def test_cli_lmd_on_a_local_cluster_reads_a_folder(images, tmp_path):
    folder = tmp_path / "slices"
    folder.mkdir()
    for index, image in enumerate(images[:3]):
        tifffile.imwrite(folder / f"slice{index:02d}.tif", image, photometric="minisblack")
    options = ["--steps", "4", "--reconstructions", "2", "--distance", "mse", "--mask-grid", "4", "--seed", "2", "--device", "cpu"]
    assert main(["lmd", "--input", str(folder), *options, "--dask", "--dask-workers", "1", "--out", str(tmp_path / "lmd.zarr")]) == 0
    assert main(["lmd", "--input", str(folder), *options, "--out", str(tmp_path / "serial")]) == 0
    result = open_result(tmp_path / "lmd.zarr")
    assert np.asarray(result["heatmap"]).tobytes() == tifffile.imread(tmp_path / "serial" / "heatmap.tif").tobytes()
    assert result["runs"][0]["workers"] == 1


@pytest.mark.parametrize("trouble", ["address", "measurement", "missing"])
def test_cli_dask_errors_are_one_line_and_leave_nothing(trouble, stack_tif, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out" / "scores.zarr"
    args = ["score", "--input", str(stack_tif), *FAST, "--out", str(out)]
    if trouble == "address":
        args += ["--dask", "tcp://127.0.0.1:9", "--dask-timeout", "1"]
        expected = "cannot reach a Dask scheduler at 'tcp://127.0.0.1:9'"
    elif trouble == "measurement":
        args += ["--dask", "--measurement", str(stack_tif)]
        expected = "--measurement is not supported"
    else:
        monkeypatch.setitem(__import__("sys").modules, "distributed", None)
        args += ["--dask"]
        expected = "pip install 'napari-klip[dask]'"
    assert main(args) == 1
    error = capsys.readouterr().err
    assert expected in error and error.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_cli_ctrl_c_says_the_finished_images_are_kept(stack_tif, tmp_path, capsys, monkeypatch):
    import contextlib

    from napari_klip.cluster import engine

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "connect", lambda *args, **kwargs: contextlib.nullcontext(None))
    monkeypatch.setattr(engine, "score_distributed", interrupted)
    out = tmp_path / "out.zarr"
    assert main(["score", "--input", str(stack_tif), *FAST, "--dask", "--out", str(out)]) == 130
    assert f"the images finished so far are kept in {out} (the same command resumes)" in capsys.readouterr().err
