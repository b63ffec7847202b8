"""Numeric precision of network evaluations: fp32, or bf16 autocast where the hardware is fast at it.

Weights stay float32 (the master copy training updates); ``bf16`` only runs the network's
matrix products under :func:`torch.autocast` with ``bfloat16``. ``auto`` picks bf16 where the
hardware has native bf16 matrix units — a CUDA GPU that supports bf16, or a CPU with Intel AMX
(``amx_bf16``) — and fp32 elsewhere: on CPUs with only AVX512-BF16 the autocast casts cost more
than they save at the network sizes used here (``benchmarks/precision.py`` measures both).
"""

from __future__ import annotations

import contextlib
from functools import lru_cache
from pathlib import Path
from typing import Any

from .options import PRECISIONS


@lru_cache(maxsize=1)
def cpu_has_amx_bf16() -> bool:
    """Whether this CPU reports Intel AMX bf16 tiles (Linux ``/proc/cpuinfo``; False elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(line.startswith("flags") and "amx_bf16" in line.split() for line in text.splitlines())


def resolve_precision(precision: str, device: Any) -> str:
    """``"fp32"`` or ``"bf16"`` for a requested precision on a torch device.

    Parameters
    ----------
    precision : {"auto", "fp32", "bf16"}
    device : torch.device or str

    Returns
    -------
    str

    Raises
    ------
    ValueError
        For an unknown name, or ``bf16`` on a device that cannot run it (MPS, old GPUs).
    """
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device_type = torch.device(device).type
    if device_type == "cuda":
        supported = torch.cuda.is_bf16_supported()
        fast = supported
    elif device_type == "cpu":
        supported, fast = True, cpu_has_amx_bf16()
    else:
        supported = fast = False
    if precision == "auto":
        return "bf16" if fast else "fp32"
    if precision == "bf16" and not supported:
        raise ValueError(f"bf16 autocast is not available on device '{device}'; use precision 'fp32'")
    return precision


def autocast(precision: str, device: Any) -> contextlib.AbstractContextManager:
    """A context in which network calls run at ``precision`` (``fp32``: no autocast).

    ``precision`` must already be resolved (:func:`resolve_precision`).
    """
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
