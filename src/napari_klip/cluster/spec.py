"""What a distributed run computes: the detector and all its settings, in one picklable record.

A :class:`RunSpec` travels to the workers with every task and is written (as JSON, by
:meth:`RunSpec.record`) into the result store, so that a re-run can tell whether the images
already done were made with the same settings. Torch-free.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.options import DEFAULT_LMD_BATCH_SIZE, DEFAULT_THRESHOLD, METHODS, TILINGS, KlipConfig, LmdConfig, check_choice
from ..core.prior_z import PriorZSettings

__all__ = ["RunSpec"]


def _jsonable(value: Any) -> Any:
    """``value`` with arrays replaced by their shape, dtype and SHA-1 (a mask is recorded, not copied)."""
    if isinstance(value, np.ndarray):
        return {"array": list(value.shape), "dtype": str(value.dtype), "sha1": hashlib.sha1(np.ascontiguousarray(value).tobytes()).hexdigest()}
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass(frozen=True)
class RunSpec:
    """The detector and its settings for a distributed run.

    Parameters
    ----------
    method : {"klip", "lmd"}
    config : KlipConfig or LmdConfig
        The detector's settings; KLIP scores image ``i`` with seed ``config.seed + i`` as
        :func:`napari_klip.api.klip.score_stack` does, LMD gives every image ``config.seed``.
    prior : str or None
        A prior folder every worker can read, or ``None`` for the bundled default.
    device, precision : str
        Where and how the workers run the network (``auto`` resolves on each worker).
    operator, operator_params, noise_sigma : KLIP's forward model and measurement noise.
    block_size, window, threshold : KLIP's maps (``None`` = the defaults).
    lpips_weights : str, optional
        LMD's AlexNet weights (a path the workers can read).
    batch_size : int
        LMD: images per batched reverse process — and per task, so that results equal the serial
        run's with the same ``batch_images``.
    intensity : {"auto", "none"}, tuple of float or IntensityMapping
        How the images' intensities reach the prior's units (:mod:`napari_klip.core.intensity`).
        :func:`~napari_klip.cluster.engine.score_distributed` resolves a rule into one mapping
        for the whole stack before any task runs, so every task maps its images alike.
    tiling, patch_batch
        Patch priors only: as for :func:`napari_klip.api.klip.score_image`.
    prior_z : PriorZSettings, optional
        KLIP only: also the prior z-map of every image with these settings
        (:class:`~napari_klip.core.prior_z.PriorZSettings`; ``None`` = none).
    """

    method: str
    config: KlipConfig | LmdConfig
    prior: str | None = None
    device: str = "auto"
    precision: str = "auto"
    operator: str = "ct"
    operator_params: dict[str, Any] = field(default_factory=dict)
    noise_sigma: float = 0.0
    block_size: int | None = None
    window: tuple[int, int] | None = None
    threshold: str = DEFAULT_THRESHOLD
    lpips_weights: str | None = None
    batch_size: int = DEFAULT_LMD_BATCH_SIZE
    intensity: Any = "auto"
    tiling: str = TILINGS[0]
    patch_batch: int | None = None
    prior_z: PriorZSettings | None = None

    def __post_init__(self) -> None:
        check_choice("method", self.method, METHODS)
        wanted = KlipConfig if self.method == "klip" else LmdConfig
        if not isinstance(self.config, wanted):
            raise TypeError(f"method {self.method!r} needs a {wanted.__name__}, got {type(self.config).__name__}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        if self.prior_z is not None:
            if not isinstance(self.prior_z, PriorZSettings):
                raise TypeError(f"prior_z must be a PriorZSettings or None, got {type(self.prior_z).__name__}")
            if self.method != "klip":
                raise ValueError("prior_z goes with method 'klip' (the map is computed beside KLIP's)")

    @property
    def images_per_task(self) -> int:
        """KLIP: one image per task; LMD: one batch (``batch_size`` images) per task."""
        return 1 if self.method == "klip" else self.batch_size

    def prior_key(self) -> tuple[str | None, str, str]:
        """What identifies a loaded prior on a worker: folder, device, precision."""
        return self.prior, self.device, self.precision

    def record(self) -> dict[str, Any]:
        """The settings as JSON-able values (arrays by SHA-1); KLIP-only or LMD-only fields left out."""
        record: dict[str, Any] = {
            "method": self.method,
            "config": asdict(self.config),
            "prior": self.prior,
            "device": self.device,
            "precision": self.precision,
            "intensity": self.intensity.describe() if hasattr(self.intensity, "describe") else self.intensity,
            "tiling": self.tiling,
            "patch_batch": self.patch_batch,
        }
        if self.method == "klip":
            record.update(operator=self.operator, operator_params=self.operator_params, noise_sigma=self.noise_sigma,
                          block_size=self.block_size, window=self.window, threshold=self.threshold)
            if self.prior_z is not None:  # absent otherwise, so that stores made before the option still match
                record["prior_z"] = self.prior_z.record()
        else:
            record.update(lpips_weights=self.lpips_weights, batch_size=self.batch_size)
        return _jsonable(record)
