"""The liver benchmarks' maps are the product's maps, and the ratio variants compute what their docstring says."""

from __future__ import annotations

import numpy as np
import pytest

from napari_klip.core import baselines

from conftest import load_script


@pytest.fixture(scope="module")
def disc() -> np.ndarray:
    rows, columns = np.indices((28, 28), dtype=np.float64)
    body = (rows - 13) ** 2 + (columns - 15) ** 2 < 10**2
    return np.where(body, 180.0, 5.0) + np.random.default_rng(4).normal(0, 6, body.shape)


def test_every_baseline_family_of_the_liver_benchmark_is_the_product_baseline(disc):
    liver_lesions = load_script("benchmarks/liver_lesions.py")
    reconstruction = disc[::-1].copy()
    raw = {"observed": disc, "posterior_mean": reconstruction}
    product = baselines.baseline_maps(disc, reconstruction)
    assert set(liver_lesions.BASELINES) == set(baselines.BASELINE_NAMES)
    for family in liver_lesions.BASELINES:
        setting = {"sigma": baselines.BLOB_CONTRAST_SIGMA} if family == "blob-contrast" else {}
        np.testing.assert_array_equal(liver_lesions.family_maps(family, raw, {}, setting), product[family], err_msg=family)


def test_ratio_variants_subtract_the_reference_prior():
    variants = load_script("benchmarks/liver_map_variants.py")
    rng = np.random.default_rng(5)
    steps = len(variants.TIMESTEPS)
    mean, spread = rng.normal(size=(steps, 6, 6)), rng.uniform(0.5, 2.0, (steps, 6, 6))
    snr = np.linspace(10.0, 0.1, steps)
    same = {"mean": mean, "spread": spread, "mean_extra": mean, "spread_extra": spread, "snr": snr, "observed_model": mean[0]}
    for name in ("ratio-z", "ratio-z2", "ratio-error", "ratio-error-low"):
        assert np.all(variants.variant_map(name, same, 0.0, {}) == 0), name  # a prior against itself: nothing left
    reference = dict(same, mean_extra=np.zeros_like(mean))  # the reference restores every pixel on average
    rows = [variants.TIMESTEPS.index(t) for t in variants.SHIPPED]
    expected_z = np.mean(np.abs(mean[rows] / (spread[rows] + variants.SPREAD_FLOOR)), axis=0)
    np.testing.assert_allclose(variants.variant_map("ratio-z", reference, 0.0, {}), expected_z)
    expected_error = (snr[rows][:, None, None] * mean[rows] ** 2).sum(axis=0)  # the spreads cancel
    np.testing.assert_allclose(variants.variant_map("ratio-error", reference, 0.0, {}), expected_error)
