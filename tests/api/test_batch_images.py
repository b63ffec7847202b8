"""``batch_images``: KLIP and LMD stacks scored several images per network call, as if one by one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_klip.api import lmd_score_stack, score_stack
from napari_klip.cli import main
from napari_klip.core.errors import Cancelled
from napari_klip.core.klip import KlipConfig
from napari_klip.core.lmd import LmdConfig

FAST = KlipConfig(num_samples=2, num_steps=4, seed=3)
OPTIONS = {"operator": "ct", "operator_params": {"n_views": 5}, "block_size": 4, "window": (1, 4)}
LMD_FAST = LmdConfig(num_reconstructions=2, num_steps=3, distance="mse", mask_grid=4)


def _assert_same_results(batched, alone):
    assert len(batched) == len(alone)
    for b, a in zip(batched, alone, strict=True):
        # float rounding of batch-size-dependent network kernels only (docs/benchmarks.md)
        np.testing.assert_allclose(b.trace.energy, a.trace.energy, rtol=1e-3, atol=1e-4 * np.abs(a.trace.energy).max())
        np.testing.assert_allclose(b.score_map, a.score_map, rtol=1e-3)
        np.testing.assert_allclose(b.reconstruction, a.reconstruction, rtol=1e-3, atol=1e-2)
        np.testing.assert_array_equal(b.labels, a.labels)
        assert b.parameters["sampler"] == a.parameters["sampler"]


def test_klip_stack_batched_equals_one_by_one(prior, disc_images):
    stack = disc_images[:3]
    alone = score_stack(stack, prior, config=FAST, batch_images=1, **OPTIONS)
    batched = score_stack(stack, prior, config=FAST, batch_images=2, **OPTIONS)
    _assert_same_results(batched, alone)
    assert [r.parameters["images_in_batch"] for r in batched] == [2, 2, 1]
    assert [r.parameters["sampler"]["seed"] for r in batched] == [3, 4, 5]
    _assert_same_results(score_stack(stack, prior, config=FAST, batch_images="auto", **OPTIONS), alone)


def test_klip_progress_counts_image_steps_and_cancel_stops_mid_batch(prior, disc_images):
    updates = []
    score_stack(disc_images[:3], prior, config=FAST, batch_images=2, progress=updates.append, **OPTIONS)
    # batch [0, 1]: 2 image-steps per step; batch [2]: 1
    assert [u.step for u in updates] == [2, 4, 6, 8, 9, 10, 11, 12] and {u.total for u in updates} == {12}
    seen = []
    with pytest.raises(Cancelled):
        score_stack(disc_images[:3], prior, config=FAST, batch_images=3, progress=seen.append,
                    should_cancel=lambda: len(seen) >= 2, **OPTIONS)
    assert [u.step for u in seen] == [3, 6]


def test_with_the_prior_z_map_progress_counts_its_noise_levels_and_cancel_stops_there(prior, disc_images):
    from napari_klip.core.prior_z import PriorZSettings

    updates = []
    z_settings = PriorZSettings(timesteps=(100, 300), draws=2)
    score_stack(disc_images[:3], prior, config=FAST, batch_images=2, progress=updates.append, prior_z=z_settings, **OPTIONS)
    # batch [0, 1]: 2 image-steps per step, then 2 noise levels of image 0 and of image 1; batch [2]: 1 per step, its 2 levels
    assert [u.step for u in updates] == [2, 4, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18] and {u.total for u in updates} == {18}
    seen = []
    with pytest.raises(Cancelled):  # polled after a noise level: stops inside the first z-map
        score_stack(disc_images[:3], prior, config=FAST, batch_images=3, progress=seen.append, prior_z=z_settings,
                    should_cancel=lambda: len(seen) >= 5, **OPTIONS)
    assert [u.step for u in seen] == [3, 6, 9, 12, 13] and seen[-1].total == 18


@pytest.mark.parametrize(("value", "error"), [(0, ValueError), (-2, ValueError), ("2", ValueError), ("many", ValueError),
                                              (1.5, TypeError), (True, TypeError)])
def test_bad_batch_images_fail_before_sampling(prior, disc_images, value, error):
    calls = []
    with pytest.raises(error, match="batch_images must be an integer >= 1 or 'auto'"):
        score_stack(disc_images[:2], prior, config=FAST, batch_images=value, progress=calls.append, **OPTIONS)
    with pytest.raises(error, match="batch_images must be an integer >= 1 or 'auto'"):
        lmd_score_stack(disc_images[:2], prior, config=LMD_FAST, batch_images=value, progress=calls.append)
    assert calls == []


def test_lmd_batch_images_auto_and_the_older_name(prior, disc_images):
    stack = disc_images[:3]
    alone = lmd_score_stack(stack, prior, config=LMD_FAST, batch_images=1)
    auto = lmd_score_stack(stack, prior, config=LMD_FAST, batch_images="auto")
    for a, b in zip(alone, auto, strict=True):
        np.testing.assert_allclose(b.distances, a.distances, rtol=1e-4, atol=1e-6)
    assert auto[0].parameters["images_in_batch"] == 3
    with pytest.raises(TypeError, match="not both"):
        lmd_score_stack(stack, prior, config=LMD_FAST, batch_images=2, batch_size=2)


def test_cli_batch_images_end_to_end(tmp_path, prior, disc_images, capsys):
    model = prior.save(tmp_path / "prior")
    tifffile.imwrite(tmp_path / "in.tif", disc_images[:3], photometric="minisblack")
    common = ["--model", str(model), "--input", str(tmp_path / "in.tif"), "--steps", "4", "--seed", "3", "--device", "cpu"]
    klip = [*common, "--samples", "2", "--n-views", "5", "--block-size", "4", "--window", "1", "4"]
    for batch in ("1", "auto"):
        assert main(["score", *klip, "--batch-images", batch, "--out", str(tmp_path / f"klip{batch}")]) == 0
    one, auto = (json.loads((tmp_path / f"klip{b}" / "result.json").read_text()) for b in ("1", "auto"))
    np.testing.assert_allclose(auto["scores"], one["scores"], rtol=1e-3)
    assert auto["parameters"]["images_in_batch"] == 3 and one["parameters"]["images_in_batch"] == 1
    np.testing.assert_allclose(np.load(tmp_path / "klipauto" / "trace.npz")["energy"], np.load(tmp_path / "klip1" / "trace.npz")["energy"],
                               rtol=1e-3, atol=1e-6)
    lmd = [*common, "--reconstructions", "2", "--distance", "mse", "--mask-grid", "4"]
    assert main(["lmd", *lmd, "--batch-images", "auto", "--out", str(tmp_path / "lmd")]) == 0
    assert json.loads((tmp_path / "lmd" / "result.json").read_text())["parameters"]["images_in_batch"] == 3
    capsys.readouterr()
    with pytest.raises(SystemExit) as usage:
        main(["score", *klip, "--batch-images", "0", "--out", str(tmp_path / "bad")])
    assert usage.value.code == 2 and "--batch-images" in capsys.readouterr().err and not (tmp_path / "bad").exists()
