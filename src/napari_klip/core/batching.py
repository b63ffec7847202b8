"""How many images share one network call: a fixed number, or ``auto`` from a memory budget.

KLIP runs ``S`` posterior samples per image and LMD ``R`` reconstructions per image; a batch of
``n`` images is ``n × S`` (or ``n × R``) rows of one network call per reverse step. ``auto``
estimates the activation memory of one row (the summed sizes of every module output of one
forward pass: an upper bound of what a forward keeps alive at once, tripled when gradients flow
through the network, as in DPS guidance) and fits as many images as
:data:`~napari_klip.core.options.AUTO_BATCH_MEMORY_FRACTION` of the device's free memory holds,
at most :data:`~napari_klip.core.options.AUTO_BATCH_MAX_ROWS` rows per call.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .options import AUTO_BATCH, AUTO_BATCH_MAX_ROWS, AUTO_BATCH_MEMORY_FRACTION, check_batch_images
from .patches import TiledPrior, images_per_call

if TYPE_CHECKING:  # pragma: no cover
    from .prior import DiffusionPrior

__all__ = ["activation_bytes_per_row", "batch_sizes", "free_memory_bytes", "resolve_batch_images"]


def activation_bytes_per_row(prior: "DiffusionPrior") -> int:
    """Bytes of every module output of one single-row forward pass of ``prior``'s network (float32)."""
    import torch

    total = 0

    def tensor_bytes(output: Any) -> int:
        if isinstance(output, torch.Tensor):
            return output.numel() * 4
        if isinstance(output, (tuple, list)):
            return sum(tensor_bytes(item) for item in output)
        return 0

    def count(_module: Any, _inputs: Any, output: Any) -> None:
        nonlocal total
        total += tensor_bytes(output)

    handles = [module.register_forward_hook(count) for module in prior.unet.modules()]
    try:
        with torch.no_grad():
            row = torch.zeros((1, prior.channels, *prior.image_size), device=prior.device)
            prior.predict_noise(row, 0)
    finally:
        for handle in handles:
            handle.remove()
    return max(total, 1)


def free_memory_bytes(device: Any) -> int:
    """Free memory of ``device``: CUDA's free bytes, else the host's ``MemAvailable`` (Linux; 4 GiB if unknown)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def resolve_batch_images(
    batch_images: Any,
    prior: "DiffusionPrior | TiledPrior",
    rows_per_image: int,
    count: int,
    with_gradients: bool = False,
    budget_bytes: int | None = None,
) -> int:
    """The number of images per network call: ``batch_images`` itself, or the ``auto`` choice.

    Parameters
    ----------
    batch_images : int or "auto"
        Images per call (an integer >= 1), or ``"auto"``.
    prior : DiffusionPrior or TiledPrior
        The network and device the batch runs on; for a patch prior on its working grid (a
        :class:`~napari_klip.core.patches.TiledPrior`), ``auto`` takes as many images as fill one
        call of its patch budget (:func:`~napari_klip.core.patches.images_per_call`).
    rows_per_image : int
        Network rows one image needs (KLIP: samples; LMD: reconstructions).
    count : int
        Images to score (the result is at most this, and at least 1).
    with_gradients : bool
        Whether the network is back-propagated through (DPS guidance): triples the estimate.
    budget_bytes : int, optional
        Activation memory to fill; default :data:`AUTO_BATCH_MEMORY_FRACTION` of the free memory.

    Returns
    -------
    int

    Raises
    ------
    TypeError, ValueError
        For anything but an integer >= 1 or ``"auto"``.
    """
    value = check_batch_images(batch_images)
    count = max(int(count), 1)
    if value != AUTO_BATCH:
        return min(int(value), count)
    if isinstance(prior, TiledPrior):  # a patch prior's memory is bounded by its patch budget, not by images
        return images_per_call(prior, rows_per_image, count)
    if budget_bytes is None:
        budget_bytes = int(free_memory_bytes(prior.device) * AUTO_BATCH_MEMORY_FRACTION)
    per_row = activation_bytes_per_row(prior) * (3 if with_gradients else 1)
    max_rows = AUTO_BATCH_MAX_ROWS["cpu" if prior.device.type == "cpu" else "other"]
    rows = min(budget_bytes // per_row, max_rows)
    return max(1, min(count, int(rows) // max(int(rows_per_image), 1)))


def batch_sizes(count: int, size: int) -> list[tuple[int, int]]:
    """``(begin, end)`` of consecutive batches of at most ``size`` of ``count`` items."""
    return [(begin, min(begin + size, count)) for begin in range(0, count, size)]
