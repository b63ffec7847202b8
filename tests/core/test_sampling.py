"""Unconditional sampling from a prior."""

from __future__ import annotations

import numpy as np
import pytest

from napari_klip.core.prior import create_prior
from napari_klip.core.sampling import sample_prior


@pytest.fixture(scope="module")
def prior():
    return create_prior(16, channels=1, network="tiny", intensity_range=(10.0, 20.0))


def test_seeded_samples_repeat_and_stay_in_range(prior):
    calls = []
    first = sample_prior(prior, 2, num_inference_steps=4, seed=3, progress=lambda update: calls.append((update.step, update.total)))
    again = sample_prior(prior, 2, num_inference_steps=4, seed=3)
    other = sample_prior(prior, 2, num_inference_steps=4, seed=4)
    assert first.shape == (2, 16, 16) and first.dtype == np.float32
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert first.min() >= 10.0 and first.max() <= 20.0
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_rgb_prior_gives_channels_last():
    rgb = create_prior(16, channels=3, network="tiny")
    assert sample_prior(rgb, 1, num_inference_steps=2).shape == (1, 16, 16, 3)


@pytest.mark.parametrize(("count", "steps", "message"), [(0, 4, "count"), (1, 0, "num_inference_steps"), (1, 1001, "num_inference_steps")])
def test_bad_arguments(prior, count, steps, message):
    with pytest.raises(ValueError, match=message):
        sample_prior(prior, count, num_inference_steps=steps)
