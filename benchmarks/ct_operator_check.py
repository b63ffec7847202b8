"""Compare the sparse-view CT operator with skimage.transform.radon (and deepinv, if installed).

Usage::

    .venv/bin/python benchmarks/ct_operator_check.py            # ours vs skimage
    .venv/bin/pip install deepinv==0.5.0 && .venv/bin/python benchmarks/ct_operator_check.py

Prints, for the Shepp–Logan phantom resized to several sizes and 24 equally spaced angles
over [0°, 180°), the relative L2 error and the Pearson correlation of each implementation's
sinogram against ``skimage.transform.radon(circle=False)``, and the adjointness gap
``|<Ax, y> - <x, Aᵀy>| / |<Ax, y>|`` for random x, y.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import radon, resize

from napari_klip.core.operators import SparseViewCT

SIZES = (33, 64, 100, 128, 256)
ANGLES = np.linspace(0.0, 180.0, 24, endpoint=False)


def _compare(sinogram: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    error = float(np.linalg.norm(sinogram - reference) / np.linalg.norm(reference))
    return error, float(np.corrcoef(sinogram.ravel(), reference.ravel())[0, 1])


def _adjoint_gap(forward, adjoint, size: int, measurement_shape) -> float:
    generator = torch.Generator().manual_seed(0)
    image = torch.randn((2, 1, size, size), generator=generator, dtype=torch.float64)
    measurement = torch.randn((2, 1, *measurement_shape), generator=generator, dtype=torch.float64)
    lhs = float(torch.sum(forward(image) * measurement))
    rhs = float(torch.sum(image * adjoint(measurement)))
    return abs(lhs - rhs) / abs(lhs)


def main() -> None:
    try:
        import deepinv
    except ImportError:
        deepinv = None
    print(f"{'size':>5} {'impl':>18} {'rel. error':>11} {'correlation':>14} {'adjoint gap':>12}")
    for size in SIZES:
        phantom = resize(shepp_logan_phantom(), (size, size), anti_aliasing=True)
        reference = radon(phantom, theta=ANGLES, circle=False).T
        for dtype in (torch.float64, torch.float32):
            operator = SparseViewCT(size, angles=ANGLES)
            ours = operator(torch.from_numpy(phantom).to(dtype)[None, None])[0, 0].double().numpy()
            error, correlation = _compare(ours, reference)
            gap = _adjoint_gap(operator, operator.adjoint, size, (operator.n_views, operator.n_detectors)) if dtype == torch.float64 else float("nan")
            print(f"{size:>5} {'napari-klip ' + str(dtype)[6:]:>18} {error:>11.2e} {correlation:>14.12f} {gap:>12.1e}")
        if deepinv is not None:
            physics = deepinv.physics.Tomography(
                angles=torch.tensor(ANGLES, dtype=torch.float32), img_width=size, circle=False, normalize=False
            )
            theirs = physics.A(torch.from_numpy(phantom).float()[None, None])[0, 0].double().numpy().T
            if theirs.shape != reference.shape:
                print(f"{size:>5} {'deepinv ' + deepinv.__version__:>18} shape {theirs.shape} != {reference.shape}")
                continue
            error, correlation = _compare(theirs, reference)
            print(f"{size:>5} {'deepinv ' + deepinv.__version__:>18} {error:>11.2e} {correlation:>14.12f} {'':>12}")


if __name__ == "__main__":
    main()
