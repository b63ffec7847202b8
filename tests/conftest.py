"""Shared fixtures: paths to the optional real data, and small priors made on the fly."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def shared_file(name: str) -> Path:
    """Path of a file in ../shared/data, skipping the test when it is absent (e.g. a user's clone)."""
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"real data '{name}' not found at {SHARED_DATA} (only present in the project's workspace)")
    return path


def load_script(relative: str) -> ModuleType:
    """Import a repository script that is not in the package (``benchmarks/…``, ``scripts/…``) by its path."""
    spec = importlib.util.spec_from_file_location(Path(relative).stem, REPO_ROOT / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session", autouse=True)
def _two_threads():
    import torch

    torch.set_num_threads(2)


@pytest.fixture
def disc_images() -> np.ndarray:
    """A small in-distribution set: 64 bright discs of varying radius on a dark background, uint8 16×16."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:16, :16]
    images = []
    for _ in range(64):
        radius = rng.uniform(3, 6)
        cy, cx = rng.uniform(6, 10, size=2)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2) < radius**2
        images.append((disc * rng.uniform(150, 250) + rng.normal(0, 5, (16, 16))).clip(0, 255).astype(np.uint8))
    return np.stack(images)


@pytest.fixture(scope="module")
def prior():
    """A tiny grey prior with random weights on a 16×16 grid, intensities 0–255 (test files may override it)."""
    from napari_klip.core.prior import create_prior

    return create_prior(16, channels=1, network="tiny", intensity_range=(0.0, 255.0))
