"""Patch priors: random training crops, the tiling of the noise prediction, the memory budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_klip.core.options import TILINGS
from napari_klip.core.patches import (
    TiledPrior,
    blend_window,
    for_grid,
    images_per_call,
    patch_batch_for,
    random_patches,
    tile_layout,
    tile_progress,
    working_grid,
)
from napari_klip.core.prior import PriorMetadata, create_prior


class PointwisePrior:
    """A 'network' acting pixel by pixel (receptive field 1): tiles of it must equal it on the whole image."""

    def __init__(self, patch: int):
        self.metadata = PriorMetadata(image_size=(patch, patch), channels=2, patch_size=patch)
        self.batches: list[int] = []

    def predict_noise(self, noisy, timesteps):
        self.batches.append(noisy.shape[0])
        t = timesteps.to(noisy.dtype).view(-1, 1, 1, 1)
        return torch.sin(3 * noisy) + noisy**2 * 0.1 + t * 1e-3 + torch.arange(noisy.shape[1]).view(1, -1, 1, 1)


@pytest.mark.parametrize("tiling", TILINGS)
@pytest.mark.parametrize("shape", [(37, 53), (64, 64), (5, 70), (16, 16)])
def test_tiles_of_a_pointwise_net_equal_the_net_on_the_whole_image(tiling, shape):
    net = PointwisePrior(16)
    tiled = TiledPrior(net, shape, tiling, patch_batch=5, seed=3)
    states = torch.randn(3, 2, *shape, generator=torch.Generator().manual_seed(0))
    timesteps = torch.tensor([10, 400, 999])
    for _ in range(4):  # several steps: a new grid offset each time
        whole = net.predict_noise(states, timesteps)
        assert torch.allclose(tiled.predict_noise(states, timesteps), whole, atol=1e-5)


def test_the_states_are_not_modified():
    states = torch.randn(2, 2, 20, 30)
    kept = states.clone()
    TiledPrior(PointwisePrior(8), (20, 30), "overlap", seed=0).predict_noise(states, torch.tensor(5))
    assert torch.equal(states, kept)


@pytest.mark.parametrize("size", [1, 31, 32, 33, 100, 257])
def test_random_shift_grid_covers_every_pixel_exactly_once_per_step(size):
    patch = 32
    for offset in range(patch):
        before, after, stride, tiles = tile_layout(size, patch, "random-shift", offset)
        assert stride == patch and before == offset and before + size + after == tiles * patch
        cover = np.zeros(before + size + after, int)
        for k in range(tiles):
            cover[k * stride : k * stride + patch] += 1
        assert np.all(cover[before : before + size] == 1)
        assert tiles == -(-size // patch) + 1  # the same count at every offset: progress is exact


def test_random_shift_offsets_vary_from_step_to_step_and_follow_the_seed():
    def offsets(seed):
        tiled = TiledPrior(PointwisePrior(16), (40, 40), "random-shift", seed=seed)
        return [tiled._offsets() for _ in range(20)]

    first = offsets(0)
    assert len(set(first)) > 10 and all(0 <= a < 16 and 0 <= b < 16 for a, b in first)
    assert offsets(0) == first and offsets(1) != first


@pytest.mark.parametrize("size", [1, 15, 16, 17, 90])
def test_overlap_blend_weights_sum_to_one_on_every_image_pixel(size):
    patch = 16
    before, after, stride, tiles = tile_layout(size, patch, "overlap")
    ramp = np.sqrt(np.diag(blend_window(patch).numpy()))  # the window is separable: ramp ⊗ ramp
    weight = np.zeros(before + size + after)
    for k in range(tiles):
        weight[k * stride : k * stride + patch] += ramp
    np.testing.assert_allclose(weight[before : before + size], 1.0, atol=1e-6)
    window = blend_window(patch).numpy()
    np.testing.assert_allclose(window + np.roll(window, stride, 0) + np.roll(window, stride, 1) + np.roll(window, (stride, stride), (0, 1)),
                               1.0, atol=1e-6)


@pytest.mark.parametrize("budget", [1, 7, 64])
def test_no_network_call_exceeds_the_patch_budget(budget):
    net = PointwisePrior(8)
    tiled = TiledPrior(net, (50, 41), "random-shift", patch_batch=budget)
    tiled.predict_noise(torch.zeros(4, 2, 50, 41), torch.tensor(3))
    per_step = tiled.tiles_per_image() * 4
    assert max(net.batches) <= budget and sum(net.batches) == per_step
    assert len(net.batches) == -(-per_step // budget) == tiled.network_batches


def test_default_budget_is_a_pixel_count():
    assert patch_batch_for(32) == 256 and patch_batch_for(64) == 64 and patch_batch_for(1024) == 1


def test_progress_counts_patches_over_steps_and_tiles():
    net = PointwisePrior(8)
    tiled = TiledPrior(net, (20, 20), "random-shift", patch_batch=4)
    seen = []
    from napari_klip.core.progress import Progress

    on_step = tile_progress(tiled, images=2, steps=3, progress=seen.append)
    for step in range(3):
        tiled.predict_noise(torch.zeros(2, 2, 20, 20), torch.tensor(1))
        on_step(Progress(step + 1, 3, 0.0))
    total = 3 * tiled.tiles_per_image() * 2
    assert all(update.total == total for update in seen)
    steps_seen = [update.step for update in seen]
    assert steps_seen == sorted(steps_seen) and steps_seen[-1] == total and len(seen) > 3 * 2


def test_a_fully_convolutional_unet_on_one_tile_equals_the_tiled_prior_when_the_image_is_one_patch():
    """The real UNet: an image the size of one patch, at grid offset 0, is exactly the network's own call."""
    prior = create_prior(16, network="tiny")
    from dataclasses import replace

    prior.metadata = replace(prior.metadata, patch_size=16)
    tiled = TiledPrior(prior, (16, 16), "random-shift", seed=0)
    tiled._offsets = lambda: (0, 0)
    states = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(tiled.predict_noise(states, torch.tensor(50)), prior.predict_noise(states, 50), atol=1e-5)


def test_working_grid_and_for_grid():
    whole = create_prior(16, network="tiny")
    assert working_grid(whole, (40, 70)) == (16, 16) and for_grid(whole, (40, 70)) is whole
    from dataclasses import replace

    patch = create_prior(16, network="tiny")
    patch.metadata = replace(patch.metadata, patch_size=16)
    tiled = for_grid(patch, (40, 70), tiling="overlap", patch_batch=3, seed=2)
    assert isinstance(tiled, TiledPrior) and tiled.image_size == (40, 70) and tiled.channels == 1
    assert tiled.num_train_timesteps == patch.num_train_timesteps and tiled.patch_batch == 3


def test_bad_tiling_settings_are_refused():
    net = PointwisePrior(8)
    with pytest.raises(ValueError, match="tiling"):
        TiledPrior(net, (20, 20), "mosaic")
    with pytest.raises(ValueError, match="patch_batch"):
        TiledPrior(net, (20, 20), patch_batch=0)
    with pytest.raises(ValueError, match="even"):
        TiledPrior(PointwisePrior(7), (20, 20), "overlap")
    with pytest.raises(ValueError, match="patch prior"):
        TiledPrior(create_prior(16, network="tiny"), (20, 20))
    with pytest.raises(ValueError, match="grid"):
        TiledPrior(net, (20, 20)).predict_noise(torch.zeros(1, 2, 20, 21), torch.tensor(1))


def test_random_patches_take_an_independent_crop_per_image():
    images = torch.arange(2 * 1 * 40 * 50, dtype=torch.float32).reshape(2, 1, 40, 50)
    batch = images[torch.tensor([0, 0, 0, 0, 1, 1])]
    patches = random_patches(batch, 8, torch.Generator().manual_seed(0))
    assert patches.shape == (6, 1, 8, 8)
    corners = {float(p[0, 0, 0]) for p in patches}
    assert len(corners) > 3  # not one position for the whole batch
    for source, patch in zip(batch, patches):  # every patch is a true crop of its image
        top, left = divmod(int(patch[0, 0, 0] - source[0, 0, 0]), 50)
        assert torch.equal(source[:, top : top + 8, left : left + 8], patch)
    with pytest.raises(ValueError, match="cannot crop"):
        random_patches(images, 41, torch.Generator())


@pytest.mark.parametrize(("patch_batch", "rows", "count", "expected"), [
    (50, 2, 5, 2),     # 24 tiles per image (2 samples × 12 tiles): two images fill 48 of 50
    (10, 2, 5, 1),     # one image needs more than a call: still 1
    (1000, 2, 5, 5),   # never more than the images there are
    (48, 1, 9, 4),     # 12 tiles per image
])
def test_auto_batching_of_a_patch_prior_fills_one_network_call(patch_batch, rows, count, expected):
    tiled = TiledPrior(PointwisePrior(16), (24, 40), "random-shift", patch_batch=patch_batch)
    assert tiled.tiles_per_image() == 12
    assert images_per_call(tiled, rows, count) == expected
