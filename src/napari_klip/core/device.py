"""Choose the torch device a computation runs on."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

from .errors import DeviceUnavailableError
from .options import DEVICE_CHOICES


def available_devices() -> list[str]:
    """List the device names usable on this machine, best first.

    Returns
    -------
    list of str
        A subset of ``["cuda", "mps", "cpu"]``; ``"cpu"`` is always present.
    """
    import torch

    devices = []
    if torch.cuda.is_available():
        devices.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    devices.append("cpu")
    return devices


def resolve_device(device: "str | torch.device | None" = "auto") -> "torch.device":
    """Turn a device request into a ``torch.device`` that exists here.

    Parameters
    ----------
    device : {"auto", "cuda", "mps", "cpu"}, torch.device or None
        ``"auto"`` (or ``None``) picks CUDA, then Apple MPS, then the CPU. ``"cuda:1"`` style
        indices are accepted.

    Returns
    -------
    torch.device

    Raises
    ------
    DeviceUnavailableError
        If the requested device is not available, naming the devices that are.
    ValueError
        If the request is not a known device name.
    """
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    if device is None or device == "auto":
        return torch.device(available_devices()[0])
    if not isinstance(device, str):
        raise ValueError(f"device must be one of {DEVICE_CHOICES} or a torch.device, got {device!r}")
    kind, _, index = device.partition(":")
    if kind not in DEVICE_CHOICES:
        raise ValueError(f"unknown device {device!r}; expected one of {', '.join(DEVICE_CHOICES)}")
    available = available_devices()
    if kind not in available:
        raise DeviceUnavailableError(
            f"device {device!r} was requested but is not available on this machine; "
            f"available: {', '.join(available)} (or 'auto')"
        )
    if kind == "cuda" and index:
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"device {device!r} was requested but this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    return torch.device(device)
