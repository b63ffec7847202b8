"""KLIP and LMD with a patch prior: native-size outputs, operators on the input's grid, progress, batching."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from napari_klip.api import klip as klip_api
from napari_klip.api import lmd as lmd_api
from napari_klip.core.lmd import LmdConfig
from napari_klip.core.options import KlipConfig
from napari_klip.core.prior import create_prior


@pytest.fixture(scope="module")
def patch_prior():
    prior = create_prior(16, network="tiny", intensity_range=(0.0, 255.0), seed=3)
    prior.metadata = replace(prior.metadata, patch_size=16)
    return prior


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return rng.uniform(40, 200, (2, 24, 40)).astype(np.float32)


@pytest.mark.parametrize("operator", ["ct", "blur", "denoise"])
def test_klip_scores_a_non_square_image_on_its_own_grid(patch_prior, images, operator):
    updates = []
    result = klip_api.score_image(images[0], patch_prior, operator=operator, config=KlipConfig(num_samples=2, num_steps=3, seed=0),
                                  window=(0, 3), block_size=8, patch_batch=5, progress=updates.append)
    assert result.trace.energy.shape == (3, 24, 40) and result.heatmap.shape == result.reconstruction.shape == (24, 40)
    assert result.score_map.shape == (3, 5)
    tiling = result.parameters["patch_prior"]
    assert tiling["working_grid"] == [24, 40] and tiling["tiles_per_image_per_step"] == (2 + 1) * (3 + 1)
    if operator == "ct":
        assert result.parameters["operator"]["image_size"] == [24, 40]
    total = 3 * tiling["tiles_per_image_per_step"] * 2
    assert all(u.total == total for u in updates) and updates[-1].step == total
    assert [u.step for u in updates] == sorted(u.step for u in updates) and len(updates) > 3  # finer than steps


def test_klip_stack_progress_spans_all_images(patch_prior, images):
    updates = []
    results = klip_api.score_stack(images, patch_prior, operator="denoise", config=KlipConfig(num_samples=1, num_steps=2), window=(0, 2),
                                   progress=updates.append)
    assert len(results) == 2 and all(r.heatmap.shape == (24, 40) for r in results)
    assert updates[-1].step == updates[-1].total and all(u.total == updates[-1].total for u in updates)
    assert [u.step for u in updates] == sorted(u.step for u in updates)


@pytest.mark.parametrize("detector", ["klip", "lmd"])
def test_stack_progress_of_unequal_batches_has_one_total_and_ends_at_it(patch_prior, detector):
    """Three images in batches of two and one: the total does not change when the smaller last batch starts."""
    stack = np.random.default_rng(1).uniform(40, 200, (3, 16, 24)).astype(np.float32)
    updates = []
    if detector == "klip":
        klip_api.score_stack(stack, patch_prior, operator="denoise", config=KlipConfig(num_samples=1, num_steps=2), window=(0, 2),
                             batch_images=2, progress=updates.append)
    else:
        lmd_api.score_stack(stack, patch_prior, config=LmdConfig(num_reconstructions=2, num_steps=2, distance="mse", mask_grid=4),
                            batch_images=2, progress=updates.append)
    totals = {u.total for u in updates}
    assert len(totals) == 1 and updates[-1].step == updates[-1].total
    assert [u.step for u in updates] == sorted(u.step for u in updates)


def test_klip_same_seed_same_map_and_tiling_is_recorded(patch_prior, images):
    run = lambda tiling: klip_api.score_image(images[0], patch_prior, operator="denoise", tiling=tiling,  # noqa: E731
                                              config=KlipConfig(num_samples=1, num_steps=2, seed=4), window=(0, 2))
    first, again, overlap = run("random-shift"), run("random-shift"), run("overlap")
    np.testing.assert_array_equal(first.trace.energy, again.trace.energy)
    assert overlap.parameters["patch_prior"]["tiling"] == "overlap"
    assert overlap.parameters["patch_prior"]["network_batches"] == 2  # 4 × 6 half-overlapping tiles fit one call


def test_lmd_with_a_patch_prior_is_native_and_does_not_depend_on_batch_size(patch_prior, images):
    config = LmdConfig(num_reconstructions=2, num_steps=3, distance="mse", mask_grid=4, seed=1)
    together = lmd_api.score_stack(images, patch_prior, config=config, batch_size=2)
    apart = lmd_api.score_stack(images, patch_prior, config=config, batch_size=1)
    for a, b in zip(together, apart):
        assert a.heatmap.shape == (24, 40) and a.reconstructions.shape == (2, 24, 40) and a.masks.shape == (2, 24, 40)
        assert a.parameters["patch_prior"]["working_grid"] == [24, 40]
        np.testing.assert_allclose(a.reconstructions, b.reconstructions, atol=1e-4)
        assert a.score == pytest.approx(b.score, rel=1e-4)


def test_klip_batches_of_a_patch_prior_match_the_per_image_run_for_the_batch_s_first_image(patch_prior, images):
    """Batched KLIP with a patch prior: a batch runs on one TiledPrior whose tile offsets are seeded by
    the batch's first image, so that image equals its per-image run (up to the network's
    batch-size-dependent float rounding); uint16 inputs are mapped in and out by one stack mapping."""
    stack = (images * 200).astype(np.uint16)  # far outside the prior's 0–255: intensity "auto" maps it
    config = KlipConfig(num_samples=2, num_steps=3, seed=5)
    options = {"operator": "denoise", "config": config, "window": (0, 3), "block_size": 8}
    together = klip_api.score_stack(stack, patch_prior, batch_images=2, **options)
    apart = klip_api.score_stack(stack, patch_prior, batch_images=1, **options)
    for result in together + apart:
        assert result.heatmap.shape == (24, 40) and result.parameters["resized"] is None and result.parameters["notes"]
        assert result.parameters["intensity"]["mode"] == "auto" and result.parameters["intensity"]["source"] is not None
        assert result.reconstruction.max() > 1000  # back in the input's units
    assert together[0].parameters["images_in_batch"] == 2 and apart[0].parameters["images_in_batch"] == 1
    np.testing.assert_allclose(together[0].trace.energy, apart[0].trace.energy, rtol=1e-3, atol=1e-5)
    assert together[0].score == pytest.approx(apart[0].score, rel=1e-3)


def test_auto_batch_images_of_a_patch_prior_fills_the_patch_budget(patch_prior, images):
    stack = np.concatenate([images, images[:1]])  # 3 images of 24×40: 12 tiles each, 2 samples → 24 rows
    results = klip_api.score_stack(stack, patch_prior, operator="denoise", config=KlipConfig(num_samples=2, num_steps=2),
                                   window=(0, 2), batch_images="auto", patch_batch=50)
    assert [r.parameters["images_in_batch"] for r in results] == [2, 2, 1]
    lmd = lmd_api.score_stack(stack, patch_prior, config=LmdConfig(num_reconstructions=2, num_steps=2, distance="mse", mask_grid=4),
                              batch_images="auto", patch_batch=50)
    assert [r.parameters["images_in_batch"] for r in lmd] == [2, 2, 1]


def test_prior_z_map_of_a_patch_prior_is_native_size(patch_prior, images):
    result = klip_api.score_image(images[0], patch_prior, operator="ct", operator_params={"n_views": 8}, config=KlipConfig(num_samples=1, num_steps=2),
                                  prior_z=True)
    assert result.prior_z.shape == images[0].shape == (24, 40) and np.isfinite(result.prior_z).all()
