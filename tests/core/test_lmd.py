"""LMD lift/map/detect machinery: masks, replacement-rule inpainting, aggregation, determinism."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from napari_klip.core.lmd import (
    LmdConfig,
    aggregate_distances,
    ddpm_reverse_step,
    iter_lmd_reconstructions,
    iter_reconstructions,
    make_masks,
    masked_mean_maps,
    measure,
    respaced_timesteps,
    run_lmd,
)
from napari_klip.core.prior import create_prior
from napari_klip.core.errors import Cancelled
from napari_klip.core.progress import drive


@pytest.fixture(scope="module")
def prior():
    torch.manual_seed(0)
    return create_prior(16, network="tiny", intensity_range=(0.0, 255.0))


@pytest.fixture
def images(disc_images, prior):
    return torch.from_numpy(prior.to_model_range(disc_images[:3, None]))


@dataclass(frozen=True)
class _Result:
    values: torch.Tensor
    maps: torch.Tensor


def squared_error(reference: torch.Tensor, candidate: torch.Tensor) -> _Result:
    """A reference distance for the tests (independent of the distances module)."""
    maps = (reference - candidate).pow(2).sum(dim=1)
    return _Result(maps.mean(dim=(1, 2)), maps)


squared_error.name = "test-squared-error"


def reconstruct(prior, images, config):
    return drive(iter_lmd_reconstructions(prior, images, config))


# --- masks --------------------------------------------------------------------------------


@pytest.mark.parametrize("grid", [2, 4, 8, 16])
def test_alternating_checkerboard_covers_every_pixel_half_the_time(grid):
    masks = make_masks("alternating-checkerboard", (32, 32), 10, grid=grid)
    assert masks.shape == (10, 32, 32) and masks.dtype == bool
    np.testing.assert_array_equal(masks.sum(axis=0), 5)
    np.testing.assert_array_equal(masks.mean(axis=(1, 2)), 0.5)
    np.testing.assert_array_equal(masks[0], ~masks[1])
    patch = 32 // grid
    assert masks[0, 0, 0] and masks[0, 0, patch - 1] and not masks[0, 0, patch] and not masks[0, patch, 0]


def test_fixed_checkerboard_repeats_and_center_hides_half():
    fixed = make_masks("checkerboard", (32, 32), 4)
    assert all(np.array_equal(fixed[0], m) for m in fixed) and fixed[0].mean() == 0.5
    center = make_masks("center", (32, 32), 3)
    assert abs(center[0].mean() - 0.5) < 0.05
    assert center[0, 16, 16] and not center[0, 0, 0] and not center[0, 31, 31]


def test_random_patches_are_seeded_and_hide_half_the_patches():
    first = make_masks("random-patches", (32, 32), 5, grid=8, seed=3)
    np.testing.assert_array_equal(first, make_masks("random-patches", (32, 32), 5, grid=8, seed=3))
    assert not np.array_equal(first, make_masks("random-patches", (32, 32), 5, grid=8, seed=4))
    assert not np.array_equal(first[0], first[1])
    np.testing.assert_array_equal(first.mean(axis=(1, 2)), 0.5)
    patches = first[:, ::4, ::4]  # one pixel per 4x4 patch
    np.testing.assert_array_equal(np.repeat(np.repeat(patches, 4, axis=1), 4, axis=2), first)


def test_bad_masks():
    with pytest.raises(ValueError, match="divisible by 8"):
        make_masks("alternating-checkerboard", (28, 28), 2, grid=8)
    with pytest.raises(ValueError, match="unknown mask kind"):
        make_masks("stripes", (32, 32), 2)
    with pytest.raises(ValueError, match="count"):
        make_masks("center", (32, 32), 0)
    with pytest.raises(ValueError, match="grid"):
        make_masks("checkerboard", (32, 32), 2, grid=1)


# --- the reverse process -----------------------------------------------------------------------


@pytest.mark.parametrize("num_steps", [1000, 50, 7])
def test_reverse_step_equals_diffusers_ddpm_step(prior, num_steps):
    scheduler = copy.deepcopy(prior.scheduler)
    scheduler.set_timesteps(num_steps)
    timesteps = [int(t) for t in scheduler.timesteps]
    state = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    predicted = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    for index in (0, len(timesteps) // 2, len(timesteps) - 2):
        timestep, previous = timesteps[index], timesteps[index + 1]
        expected = scheduler.step(predicted, timestep, state, generator=torch.Generator().manual_seed(5)).prev_sample
        noise = torch.randn(state.shape, generator=torch.Generator().manual_seed(5))
        ours = ddpm_reverse_step(
            state, predicted, scheduler.alphas_cumprod[timestep], scheduler.alphas_cumprod[previous], noise, clip=1.0
        )
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


def test_respaced_timesteps(prior):
    assert respaced_timesteps(prior, 1000) == list(range(999, -1, -1))
    assert respaced_timesteps(prior, 10) == list(range(900, -1, -100))
    assert respaced_timesteps(prior, 10, start_step=500) == [500, 400, 300, 200, 100, 0]
    with pytest.raises(ValueError, match="num_steps"):
        respaced_timesteps(prior, 0)
    with pytest.raises(ValueError, match="start_step"):
        respaced_timesteps(prior, 10, start_step=1000)


def test_known_pixels_are_kept_exactly_and_hidden_pixels_change(prior, images):
    config = LmdConfig(num_reconstructions=4, num_steps=8, seed=1)
    result = reconstruct(prior, images, config)
    assert result.images.shape == (3, 4, 1, 16, 16)
    known = ~result.masks[None, :, None].repeat(3, axis=0)
    original = images.numpy()[:, None].repeat(4, axis=1)
    np.testing.assert_allclose(result.images[known], original.clip(-1, 1)[known], atol=1e-6)
    assert np.abs(result.images[~known] - original[~known]).mean() > 0.05
    assert result.network_calls == 8 and result.evaluations_per_image == 32


def test_batched_images_get_the_same_reconstructions_as_alone(prior, images):
    config = LmdConfig(num_reconstructions=2, num_steps=5, seed=4)
    together = reconstruct(prior, images, config).images
    alone = reconstruct(prior, images[1:2], config).images
    np.testing.assert_allclose(together[1:2], alone, atol=1e-5)


def test_seeded_determinism(prior, images):
    config = LmdConfig(num_reconstructions=2, num_steps=5, seed=4, mask="random-patches", mask_grid=4)
    first = reconstruct(prior, images, config)
    again = reconstruct(prior, images, config)
    np.testing.assert_array_equal(first.images, again.images)
    np.testing.assert_array_equal(first.masks, again.masks)
    other = reconstruct(prior, images, LmdConfig(num_reconstructions=2, num_steps=5, seed=5, mask="random-patches", mask_grid=4))
    assert not np.allclose(first.images, other.images)


def test_diffuse_lift_starts_at_its_step(prior, images):
    result = reconstruct(prior, images, LmdConfig(num_reconstructions=2, num_steps=20, lift="diffuse", diffuse_step=250))
    assert result.timesteps.tolist() == [250, 200, 150, 100, 50, 0]
    assert result.masks.all() and result.network_calls == 6
    # A short diffusion keeps the image close: much closer than an independent sample would be.
    gap = np.abs(result.images - images.numpy()[:, None]).mean()
    assert gap < 0.5


def test_iter_reconstructions_rejects_bad_shapes(prior, images):
    masks = make_masks("checkerboard", (16, 16), 2, grid=4)
    with pytest.raises(ValueError, match=r"images must be shaped \(N, 1, 16, 16\)"):
        next(iter_reconstructions(prior, images[:, :, :8], masks, 5))
    with pytest.raises(ValueError, match="masks must be bool"):
        next(iter_reconstructions(prior, images, masks.astype(np.uint8), 5))


# --- detect ------------------------------------------------------------------------------------


def test_median_and_mean_aggregation():
    distances = np.array([[1.0, 9.0, 2.0, 3.0], [5.0, 5.0, 5.0, 100.0]])
    np.testing.assert_allclose(aggregate_distances(distances, "median"), [2.5, 5.0])
    np.testing.assert_allclose(aggregate_distances(distances, "mean"), [3.75, 28.75])
    with pytest.raises(ValueError, match="unknown aggregate"):
        aggregate_distances(distances, "max")
    with pytest.raises(ValueError, match=r"\(N, R\)"):
        aggregate_distances(np.ones(3))


def test_masked_mean_maps_average_where_inpainted():
    maps = np.stack([np.full((2, 2), 1.0), np.full((2, 2), 3.0)])[None]  # (1, 2, 2, 2)
    masks = np.array([[[True, False], [True, False]], [[True, True], [False, False]]])
    np.testing.assert_allclose(masked_mean_maps(maps, masks)[0], [[2.0, 3.0], [1.0, 2.0]])


def test_measure_scores_are_the_median_of_reference_distances(prior, images):
    config = LmdConfig(num_reconstructions=4, num_steps=4)
    recon = reconstruct(prior, images, config)
    scores = measure(squared_error, images, recon, "median", chunk_size=5)
    manual = ((recon.images - images.numpy()[:, None]) ** 2).sum(axis=2).mean(axis=(2, 3))
    np.testing.assert_allclose(scores.distances, manual, rtol=1e-5)
    np.testing.assert_allclose(scores.scores, np.median(manual, axis=1), rtol=1e-5)
    assert scores.heatmaps.shape == (3, 16, 16) and scores.distance == "test-squared-error"


def test_run_lmd_cancel_and_bad_config(prior, images):
    calls = []
    with pytest.raises(Cancelled):
        run_lmd(prior, images, LmdConfig(num_reconstructions=2, num_steps=10), distance=squared_error,
                progress=calls.append, should_cancel=lambda: len(calls) >= 3)
    assert len(calls) == 3
    for bad, message in [
        (LmdConfig(num_steps=0), "num_steps"),
        (LmdConfig(num_reconstructions=0), "num_reconstructions"),
        (LmdConfig(mask="stripes"), "unknown mask kind"),
        (LmdConfig(mask_grid=3), "divisible by 3"),
        (LmdConfig(lift="blur"), "unknown lift"),
        (LmdConfig(distance="l1"), "unknown distance"),
        (LmdConfig(aggregate="max"), "unknown aggregate"),
        (LmdConfig(lift="diffuse", diffuse_step=0), "diffuse_step"),
    ]:
        before = images.clone()
        with pytest.raises(ValueError, match=message):
            run_lmd(prior, images, bad, distance=squared_error)
        torch.testing.assert_close(images, before)
