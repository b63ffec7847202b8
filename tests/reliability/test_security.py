"""Security: a checkpoint or prior folder from someone else cannot run code."""

from __future__ import annotations

import pytest
import torch

from napari_klip.core.errors import CheckpointLoadError, PriorLoadError
from napari_klip.core.prior import load_prior
from napari_klip.core.training import CHECKPOINT_FILE, iter_training, train_prior

from reliability_helpers import image_file, saved_prior, tiny_training  # noqa: F401 (fixtures)


class _Payload:
    """Unpickling this creates the file ``marker`` (what an attacker's ``__reduce__`` could do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _malicious_checkpoint(folder, marker):
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"unet": _Payload(marker), "step": 1}, folder / CHECKPOINT_FILE)


def test_the_payload_is_real(tmp_path):
    """Control: unpickled without weights_only the file does create the marker."""
    _malicious_checkpoint(tmp_path / "p", tmp_path / "marker")
    torch.load(tmp_path / "p" / CHECKPOINT_FILE, weights_only=False)
    assert (tmp_path / "marker").exists()


def test_resume_refuses_a_malicious_checkpoint(tmp_path, disc_images):
    _malicious_checkpoint(tmp_path / "p", tmp_path / "marker")
    with pytest.raises(CheckpointLoadError, match="refusing to load .*could run code"):
        next(iter_training(disc_images, tmp_path / "p", tiny_training(), resume=True))
    assert not (tmp_path / "marker").exists()


def test_cli_resume_refuses_a_malicious_checkpoint_in_one_line(tmp_path, image_file, capsys):
    from napari_klip.cli import main

    _malicious_checkpoint(tmp_path / "p", tmp_path / "marker")
    code = main(["train", "--data", str(image_file), "--out", str(tmp_path / "p"), "--image-size", "16", "--network", "tiny",
                 "--steps", "2", "--batch-size", "2", "--device", "cpu", "--resume"])
    assert code == 1
    error = capsys.readouterr().err
    assert error.startswith("napari-klip: error: refusing to load") and error.count("\n") == 1
    assert not (tmp_path / "marker").exists()


def test_genuine_checkpoints_still_resume(tmp_path, disc_images):
    train_prior(disc_images, tmp_path / "p", tiny_training(steps=2))
    result = train_prior(disc_images, tmp_path / "p", tiny_training(steps=3), resume=True)
    assert result.steps_done == 3


def test_truncated_checkpoint_is_a_clear_error(tmp_path, disc_images):
    train_prior(disc_images, tmp_path / "p", tiny_training(steps=2))
    checkpoint = tmp_path / "p" / CHECKPOINT_FILE
    checkpoint.write_bytes(checkpoint.read_bytes()[:200])
    with pytest.raises(CheckpointLoadError, match="truncated or corrupt"):
        next(iter_training(disc_images, tmp_path / "p", tiny_training(steps=3), resume=True))


def test_prior_with_only_pickle_weights_is_refused(tmp_path, saved_prior):
    import shutil

    folder = tmp_path / "pickled"
    shutil.copytree(saved_prior, folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.rename(folder / "unet" / "diffusion_pytorch_model.bin")
    with pytest.raises(PriorLoadError, match="only pickle weights"):
        load_prior(folder, device="cpu")
