"""Helpers of the reliability catalogue's tests (imported by name: this folder is on ``sys.path``)."""

from __future__ import annotations

from napari_klip.core.training import TrainingConfig

#: Sampler options that keep a CLI run to a fraction of a second on a 16×16 tiny prior.
FAST = ["--samples", "2", "--steps", "4", "--device", "cpu"]


def tiny_training(**overrides) -> TrainingConfig:
    """A 16×16 tiny-network training run of a few steps on the CPU."""
    settings = dict(image_size=16, network="tiny", steps=4, batch_size=4, warmup_steps=1, learning_rate=1e-3,
                    checkpoint_every=100, log_every=1, device="cpu", seed=0)
    settings.update(overrides)
    return TrainingConfig(**settings)


def folder_snapshot(folder) -> dict[str, bytes]:
    """Every file under ``folder`` (relative name → bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
