"""One contract, two detectors: KLIP and LMD behave alike at the API.

For both ``napari_klip.api.klip`` and ``napari_klip.api.lmd``: options are keyword-only after
``image, prior``; inputs are not modified; the same seed gives the same result; image-space
outputs come back in the input's shape; ``should_cancel`` raises ``Cancelled``; bad input fails
before any sampling step.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest

from napari_klip.api import klip, lmd
from napari_klip.core.errors import Cancelled, ImageDataError
from napari_klip.core.options import KlipConfig, LmdConfig


@dataclass
class Detector:
    module: Any
    make_config: Callable[[int], Any]
    options: dict[str, Any]
    image_outputs: Callable[[Any], list[np.ndarray]]  # arrays that must have the input's (H, W)
    steps: int


DETECTORS = {
    "klip": Detector(
        klip,
        lambda seed: KlipConfig(num_samples=2, num_steps=4, seed=seed),
        {"operator": "blur", "operator_params": {"kernel_size": 3, "sigma": 1.0}},
        lambda r: [r.heatmap, r.labels, r.reconstruction, r.reconstruction_std],
        4,
    ),
    "lmd": Detector(
        lmd,
        lambda seed: LmdConfig(num_reconstructions=2, num_steps=3, mask_grid=4, distance="mse", seed=seed),
        {},
        lambda r: [r.heatmap, *r.reconstructions, *r.masks],
        3,
    ),
}


@pytest.fixture(params=sorted(DETECTORS))
def detector(request) -> Detector:
    return DETECTORS[request.param]


@pytest.fixture
def image() -> np.ndarray:
    """Off the prior's 16×16 grid, so outputs must be resized back."""
    return np.random.default_rng(5).uniform(0, 255, (20, 24)).astype(np.float32)


def _score(detector: Detector, image, prior, seed=0, **extra):
    return detector.module.score_image(image, prior, config=detector.make_config(seed), **detector.options, **extra)


def test_same_shape_of_api(detector):
    for function in (detector.module.score_image, detector.module.score_stack):
        parameters = list(inspect.signature(function).parameters.values())
        assert [p.name for p in parameters[1:2]] == ["prior"]
        assert all(p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in parameters[2:]), function.__qualname__
        for option in ("config", "progress", "should_cancel"):
            assert inspect.signature(function).parameters[option].kind is inspect.Parameter.KEYWORD_ONLY


def test_inputs_are_not_modified(detector, prior, image):
    before, config = image.copy(), detector.make_config(0)
    options = {key: (dict(value) if isinstance(value, dict) else value) for key, value in detector.options.items()}
    detector.module.score_image(image, prior, config=config, **options)
    assert np.array_equal(image, before)
    assert config == detector.make_config(0) and options == detector.options


def test_same_seed_same_result(detector, prior, image):
    first, again, other = _score(detector, image, prior, 0), _score(detector, image, prior, 0), _score(detector, image, prior, 1)
    for a, b in zip(detector.image_outputs(first), detector.image_outputs(again), strict=True):
        assert np.array_equal(a, b)
    assert first.score == again.score
    assert not all(np.array_equal(a, b) for a, b in zip(detector.image_outputs(first), detector.image_outputs(other), strict=True))


def test_outputs_are_resized_back_to_the_input(detector, prior, image):
    result = _score(detector, image, prior)
    for array in detector.image_outputs(result):
        assert array.shape == image.shape
    assert np.isfinite(result.score)


def test_stack_gives_one_result_per_image_with_progress_over_all(detector, prior, image):
    seen = []
    results = detector.module.score_stack(np.stack([image, image[::-1]]), prior, config=detector.make_config(0),
                                          progress=seen.append, **detector.options)
    assert len(results) == 2 and all(r.heatmap.shape == image.shape for r in results)
    assert [u.step for u in seen] == sorted(u.step for u in seen) and seen[-1].step == seen[-1].total


def test_cancel_raises(detector, prior, image):
    seen = []
    with pytest.raises(Cancelled):
        _score(detector, image, prior, progress=seen.append, should_cancel=lambda: len(seen) >= 1)
    assert len(seen) == 1
    with pytest.raises(Cancelled):
        detector.module.score_stack(np.stack([image, image]), prior, config=detector.make_config(0), should_cancel=lambda: True,
                                    **detector.options)


@pytest.mark.parametrize("bad, error", [
    (np.full((16, 16), np.nan, np.float32), ImageDataError),
    (np.zeros((2, 3, 16, 16), np.float32), ImageDataError),
    (np.zeros((16, 16), complex), ImageDataError),
])
def test_bad_input_fails_before_sampling(detector, prior, bad, error, monkeypatch):
    calls = []
    monkeypatch.setattr(prior, "predict_noise", lambda *args: calls.append(args))
    with pytest.raises(error):
        _score(detector, bad, prior, progress=calls.append)
    with pytest.raises((error, ValueError)):
        detector.module.score_stack(bad[None] if bad.ndim == 2 else bad, prior, config=detector.make_config(0), **detector.options)
    assert calls == []


def test_bad_config_fails_before_sampling(detector, prior, image, monkeypatch):
    calls = []
    monkeypatch.setattr(prior, "predict_noise", lambda *args: calls.append(args))
    config = detector.make_config(0)
    config.num_steps = 0
    with pytest.raises(ValueError, match="num_steps"):
        detector.module.score_image(image, prior, config=config, **detector.options)
    assert calls == []
