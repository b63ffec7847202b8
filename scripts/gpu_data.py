"""Small data files for a GPU session: the slices its benchmarks read, cut from ``../shared/data``.

The device machine gets the repository's working tree and nothing beside it, so the data a
GPU session needs travels as small ``.npz`` files in ``gpu_data/`` (ignored by git, named in the
device call's ``carry``):

* ``liver28.npz`` — OrganAMNIST liver slices only (label 6): for every split the same keys as
  ``organamnist.npz`` (``train_images``, ``train_labels``, ``val_images``, ...) holding only the
  rows whose label is 6, in their original order. ``napari-klip train --data
  gpu_data/liver28.npz:train_images --labels 6`` therefore trains on exactly the images of
  ``--data ../shared/data/organamnist.npz:train_images --labels 6``, and
  ``benchmarks/liver_lesions.py --data gpu_data/liver28.npz`` builds exactly the same val / test
  records (it permutes the indices of the liver rows, and the subset keeps their order).
* ``throughput/organamnist.npz`` and ``throughput/mnist.npz`` — the first ``--throughput-images``
  test images of each (key ``test_images``), what ``benchmarks/throughput.py --data-dir`` reads.

Usage (from the repository root; ``scripts/gpu_prepare.sh`` runs it)::

    python scripts/gpu_data.py --shared ../shared/data --out gpu_data
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

LIVER = 6
SPLITS = ("train", "val", "test")


def label_subset(arrays: dict[str, np.ndarray], label: int, splits: tuple[str, ...] = SPLITS) -> dict[str, np.ndarray]:
    """The rows of every ``{split}_images`` / ``{split}_labels`` pair whose label is ``label``.

    Parameters
    ----------
    arrays : dict of str to numpy.ndarray
        A MedMNIST-style archive: ``{split}_images`` ``(N, H, W)`` and ``{split}_labels`` ``(N,)``
        or ``(N, 1)`` for each split. Never modified.
    label : int
        The class to keep.
    splits : tuple of str
        The splits to keep (each must be present).

    Returns
    -------
    dict of str to numpy.ndarray
        The same keys for those splits, only the matching rows, in their original order.

    Raises
    ------
    KeyError
        If a split's images or labels are missing.
    ValueError
        If a split's images and labels disagree in length or no row of a split has the label.
    """
    subset: dict[str, np.ndarray] = {}
    for split in splits:
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(images) != len(labels):
            raise ValueError(f"{split}: {len(images)} images but {len(labels)} labels")
        keep = np.flatnonzero(np.asarray(labels).ravel() == label)
        if keep.size == 0:
            raise ValueError(f"{split}: no image has label {label}")
        subset[f"{split}_images"] = images[keep]
        subset[f"{split}_labels"] = labels[keep]
    return subset


def write_session_data(shared: Path, out: Path, throughput_images: int = 256) -> list[Path]:
    """Write ``liver28.npz`` and the two throughput stacks under ``out``; return the files written."""
    out.mkdir(parents=True, exist_ok=True)
    with np.load(shared / "organamnist.npz") as archive:
        liver = label_subset({key: archive[key] for key in archive.files}, LIVER)
        organ_test = archive["test_images"][:throughput_images]
    with np.load(shared / "mnist.npz") as archive:
        digits_test = archive["test_images"][:throughput_images]
    written = [out / "liver28.npz", out / "throughput" / "organamnist.npz", out / "throughput" / "mnist.npz"]
    np.savez_compressed(written[0], **liver)
    written[1].parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(written[1], test_images=organ_test)
    np.savez_compressed(written[2], test_images=digits_test)
    for split in SPLITS:
        print(f"liver28.npz: {split} {len(liver[f'{split}_images'])} slices")
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data",
                        help="folder holding organamnist.npz and mnist.npz")
    parser.add_argument("--out", type=Path, default=Path("gpu_data"))
    parser.add_argument("--throughput-images", type=int, default=256, help="test images of each throughput stack")
    args = parser.parse_args(argv)
    for path in write_session_data(args.shared, args.out, args.throughput_images):
        print(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB)")


if __name__ == "__main__":
    main()
