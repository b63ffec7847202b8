"""The command line end to end: train → info → sample, and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_klip.cli import main
from napari_klip.core.prior import load_prior


@pytest.fixture
def stack_file(tmp_path, disc_images):
    path = tmp_path / "discs.tif"
    tifffile.imwrite(path, disc_images, photometric="minisblack")
    return path


def _train_args(data, out, *extra):
    return ["train", "--data", str(data), "--out", str(out), "--image-size", "16", "--network", "tiny", "--steps", "4",
            "--batch-size", "4", "--checkpoint-every", "2", "--log-every", "2", "--device", "cpu", *extra]


def test_train_info_sample(tmp_path, stack_file, capsys):
    out = tmp_path / "prior"
    assert main(_train_args(stack_file, out)) == 0
    assert "prior written to" in capsys.readouterr().out
    prior = load_prior(out, device="cpu")
    assert prior.metadata.training["steps"] == 4 and "discs.tif" in prior.metadata.training_data
    assert main(["info", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["prior"]["image_size"] == [16, 16] and report["prior"]["intensity_range"] == [0.0, 255.0]
    samples = tmp_path / "samples.tif"
    assert main(["sample", "--model", str(out), "--count", "3", "--steps", "5", "--device", "cpu", "--out", str(samples), "--grid", str(tmp_path / "g.png")]) == 0
    images = tifffile.imread(samples)
    assert images.shape == (3, 16, 16) and images.min() >= 0 and images.max() <= 255
    with tifffile.TiffFile(samples) as tiff:  # three grey pages, not one RGB image
        assert tiff.pages[0].photometric == tifffile.PHOTOMETRIC.MINISBLACK
    assert (tmp_path / "g.png").is_file()
    assert main(["sample", "--model", str(out), "--count", "3", "--steps", "5", "--out", str(samples)]) == 1
    assert "pass --overwrite" in capsys.readouterr().err


def test_train_refuses_occupied_output_then_resumes(tmp_path, stack_file, capsys):
    out = tmp_path / "prior"
    assert main(_train_args(stack_file, out)) == 0
    weights = (out / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    assert main(_train_args(stack_file, out, "--seed", "3")) == 1
    assert "already holds training output" in capsys.readouterr().err
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == weights
    args = _train_args(stack_file, out, "--resume")
    args[args.index("--steps") + 1] = "6"
    assert main(args) == 0
    assert load_prior(out, device="cpu").metadata.training["steps"] == 6


def test_train_a_v_prediction_prior_with_min_snr_weighting(tmp_path, stack_file, capsys):
    out = tmp_path / "prior"
    assert main(_train_args(stack_file, out, "--prediction-type", "v_prediction", "--loss-weighting", "min-snr", "--min-snr-gamma", "2")) == 0
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)["prior"]
    assert report["prediction_type"] == "v_prediction"
    assert report["training"]["loss_weighting"] == "min-snr (gamma 2)"
    assert main(_train_args(stack_file, tmp_path / "bad", "--min-snr-gamma", "-1")) == 1
    assert "min_snr_gamma must be > 0" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_train_with_edm_noise_levels(tmp_path, stack_file, capsys):
    out = tmp_path / "prior"
    assert main(_train_args(stack_file, out, "--prediction-type", "v_prediction", "--timestep-sampling", "edm")) == 0
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["prior"]["training"]["timestep_sampling"] == "edm"
    with pytest.raises(SystemExit):
        main(_train_args(stack_file, tmp_path / "bad", "--timestep-sampling", "lognormal"))
    assert "invalid choice: 'lognormal'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_train_from_npz_key(tmp_path, disc_images):
    np.savez(tmp_path / "d.npz", train_images=disc_images, labels=np.zeros(len(disc_images)))
    assert main(_train_args(f"{tmp_path / 'd.npz'}:train_images", tmp_path / "p", "--max-images", "10")) == 0
    assert "10 images" in load_prior(tmp_path / "p", device="cpu").metadata.training_data


@pytest.mark.parametrize(
    ("data", "message"),
    [("missing.tif", "no such file"), ("nan.tif", "NaN or infinite"), ("empty.tif", "empty")],
)
def test_train_bad_data_is_one_clear_error(tmp_path, capsys, data, message):
    tifffile.imwrite(tmp_path / "nan.tif", np.full((3, 8, 8), np.nan, np.float32), photometric="minisblack")
    tifffile.imwrite(tmp_path / "empty.tif", np.zeros((0, 8, 8), np.float32), photometric="minisblack")
    assert main(_train_args(tmp_path / data, tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert err.startswith("napari-klip: error:") and message in err
    assert not (tmp_path / "out").exists()


def test_info_on_missing_prior(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nope")]) == 1
    assert "the folder does not exist" in capsys.readouterr().err


def test_info_heldout_on_a_device_matches_the_library(tmp_path, prior, disc_images, capsys):
    """``info --heldout --labels --device cpu``: the per-band losses of heldout_denoising_loss on the labelled rows."""
    from napari_klip.core.prior_quality import heldout_denoising_loss

    folder = prior.save(tmp_path / "prior")
    labels = np.arange(len(disc_images)) % 3
    np.savez(tmp_path / "d.npz", val_images=disc_images, val_labels=labels)
    assert main(["info", str(folder), "--heldout", f"{tmp_path / 'd.npz'}:val_images", "--labels", "2",
                 "--max-images", "5", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["heldout_device"] == "cpu"
    expected = heldout_denoising_loss(load_prior(folder, device="cpu"), disc_images[labels == 2][:5].astype(np.float32))
    assert [band["timesteps"] for band in report["heldout_denoising_loss"]] == [list(b.band) for b in expected]
    assert [band["loss"] for band in report["heldout_denoising_loss"]] == pytest.approx([b.loss for b in expected], abs=1e-5)
    assert {band["images"] for band in report["heldout_denoising_loss"]} == {5}


def test_info_rejects_unknown_device(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["info", "--device", "tpu"])
    assert stop.value.code == 2 and "invalid choice: 'tpu'" in capsys.readouterr().err
