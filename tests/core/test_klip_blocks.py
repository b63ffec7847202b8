"""KLIP block sizes in input pixels: block scores of a prior's energy trace on the input's grid."""

from __future__ import annotations

import numpy as np
import pytest

from napari_klip.core.klip import block_score_map, default_image_block_size


def test_blocks_in_input_pixels_carry_the_energy_of_their_area():
    """A uniform energy density: every block of b input pixels scores b² times the density per input pixel."""
    energy = np.full((4, 16, 16), 2.0)
    scores = block_score_map(energy, 5, (0, 4), shape=(20, 40))
    assert scores.shape == (4, 8)
    np.testing.assert_allclose(scores, 25 * 2.0 * (16 * 16) / (20 * 40))  # total energy conserved: 2·256
    np.testing.assert_allclose(scores.sum(), energy[0].sum())
    # the prior's own size: the plain block sums
    np.testing.assert_allclose(block_score_map(energy, 4, (0, 4), shape=(16, 16)), block_score_map(energy, 4, (0, 4)))


def test_an_energy_spot_lands_in_the_input_block_that_covers_it():
    energy = np.zeros((2, 16, 16))
    energy[:, 12:14, 2:4] = 1.0  # rows 12-13, cols 2-3 of 16: rows 48-55, cols 8-15 of a 64² input
    scores = block_score_map(energy, 8, (0, 2), shape=(64, 64))
    assert np.unravel_index(np.argmax(scores), scores.shape) == (6, 1)
    assert scores.sum() == pytest.approx(energy[0].sum(), rel=0.05)  # linear resize: the area's energy, up to edges


@pytest.mark.parametrize(("prior", "image", "expected"), [((32, 32), (32, 32), 2), ((32, 32), (28, 28), 2), ((32, 32), (256, 256), 16),
                                                           ((32, 32), (660, 550), 22), ((16, 16), (20, 24), 1), ((32, 32), (17, 19), 1)])
def test_default_block_in_input_pixels(prior, image, expected):
    block = default_image_block_size(prior, image)
    assert block == expected and image[0] % block == 0 and image[1] % block == 0
