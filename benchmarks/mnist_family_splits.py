"""Fixed, documented train/eval splits of the MNIST family for the LMD benchmark.

KMNIST and Fashion-MNIST are available here as test images only
(``../shared/data/README.md``), so each is split once, with a seeded permutation,
into a part that trains its prior and a held-out part that is scored:

* MNIST: the official train split (60,000) trains; the official test split is scored.
* KMNIST (official test split, 10,000): permutation with seed 0; the first 8,000
  indices train, the last 2,000 are held out.
* Fashion-MNIST (official test images 0-4442, 4,443): permutation with seed 0;
  the first 3,443 indices train, the last 1,000 are held out.

Run as a script to write ``runs/splits/<name>.npz`` with keys ``train_images`` and
``eval_images`` (uint8, 28x28), which ``napari-klip train --data FILE.npz:train_images``
reads::

    python benchmarks/mnist_family_splits.py [--data-dir ../shared/data] [--out runs/splits]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SPLIT_SEED = 0
HELD_OUT = {"kmnist": 2000, "fashion": 1000}
FILES = {
    "mnist": "mnist.npz",
    "kmnist": "kmnist_test.npz",
    "fashion": "fashion_mnist_test_first4443.npz",
}


def load_split(name: str, data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(train_images, eval_images)`` of one data set under the fixed split.

    Parameters
    ----------
    name : {"mnist", "kmnist", "fashion"}
        Data set.
    data_dir : Path
        Folder with the ``.npz`` files of ``../shared/data``.

    Returns
    -------
    train_images, eval_images : np.ndarray
        uint8 arrays of shape ``(N, 28, 28)``.
    """
    if name not in FILES:
        raise ValueError(f"unknown data set {name!r}; expected one of {sorted(FILES)}")
    with np.load(Path(data_dir) / FILES[name], allow_pickle=False) as archive:
        if name == "mnist":
            return archive["train_images"], archive["test_images"]
        images = archive["images"]
    order = np.random.default_rng(SPLIT_SEED).permutation(len(images))
    held_out = HELD_OUT[name]
    return images[order[:-held_out]], images[order[-held_out:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("runs/splits"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in ("kmnist", "fashion"):
        train, held_out = load_split(name, args.data_dir)
        path = args.out / f"{name}.npz"
        np.savez(path, train_images=train, eval_images=held_out)
        print(f"{path}: train {train.shape[0]}, eval {held_out.shape[0]}")


if __name__ == "__main__":
    main()
