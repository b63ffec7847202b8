"""Bad inputs that used to pass silently or fail with a raw error: each is one clear message now."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tifffile

from napari_klip.api import klip, lmd
from napari_klip.cli import main
from napari_klip.core.data import read_images
from napari_klip.core.errors import ImageDataError, PriorLoadError
from napari_klip.core.options import KlipConfig, LmdConfig
from napari_klip.core.prior import load_prior
from napari_klip.core.training import iter_training

from reliability_helpers import FAST, image_file, saved_prior, tiny_training  # noqa: F401 (fixtures)

KLIP_FAST = KlipConfig(num_samples=1, num_steps=4)
LMD_FAST = LmdConfig(num_reconstructions=1, num_steps=3, distance="mse", mask_grid=4)


# --- 3 or 4 grey slices that tifffile stores as one RGB(A) image ------------------------------


@pytest.fixture(params=[3, 4])
def plain_tifffile_stack(request, tmp_path, disc_images):
    path = tmp_path / "slices.tif"
    with pytest.warns(DeprecationWarning, match="stored as RGB"):
        tifffile.imwrite(path, disc_images[: request.param])  # no photometric: tifffile makes it RGB(A)
    return path, disc_images[: request.param]


def test_grey_slices_stored_as_rgb_are_read_as_slices_when_grey_is_wanted(plain_tifffile_stack):
    path, slices = plain_tifffile_stack
    assert np.array_equal(read_images(path, grey=True), slices)
    with pytest.raises(ImageDataError, match="photometric='minisblack'"):
        read_images(path)


def test_score_reads_them_as_slices(tmp_path, saved_prior, plain_tifffile_stack):
    path, slices = plain_tifffile_stack
    assert main(["score", "--model", str(saved_prior), "--input", str(path), "--operator", "denoise", *FAST, "--out", str(tmp_path / "o")]) == 0
    assert len(json.loads((tmp_path / "o" / "result.json").read_text())["scores"]) == len(slices)
    assert tifffile.imread(tmp_path / "o" / "heatmap.tif").shape == slices.shape


def test_train_does_not_make_a_colour_prior_of_them(tmp_path, plain_tifffile_stack, capsys):
    path, _ = plain_tifffile_stack
    code = main(["train", "--data", str(path), "--out", str(tmp_path / "p"), "--image-size", "16", "--network", "tiny",
                 "--steps", "1", "--device", "cpu"])
    assert code == 1
    assert "grey slices" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


# --- values, metrics --------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1e30, float(np.finfo(np.float32).max)])
@pytest.mark.parametrize("detector", ["klip", "lmd"])
@pytest.mark.filterwarnings("ignore:100% of the pixels lie outside:UserWarning")
def test_absurd_intensities_are_an_error_not_a_score(prior, value, detector):
    """Taken as they are (intensity="none"), values far outside the prior's range are refused."""
    image = np.full((16, 16), value, np.float32)
    with pytest.raises(ImageDataError, match=r"image: values up to .* far outside the prior's intensity range \[0, 255\]"):
        if detector == "klip":
            klip.score_image(image, prior, config=KLIP_FAST, intensity="none")
        else:
            lmd.score_image(image, prior, config=LMD_FAST, intensity="none")


@pytest.mark.parametrize("detector", ["klip", "lmd"])
def test_absurd_constant_images_cannot_be_mapped_automatically(prior, detector):
    """With the default intensity="auto" a constant image far outside has no spread to map: still an error."""
    image = np.full((16, 16), 1e30, np.float32)
    with pytest.raises(ImageDataError, match="no spread to map automatically"):
        (klip.score_image if detector == "klip" else lmd.score_image)(image, prior, config=KLIP_FAST if detector == "klip" else LMD_FAST)


@pytest.mark.parametrize("bad", [np.inf, np.nan])
@pytest.mark.parametrize("intensity", ["auto", "none"])
def test_non_finite_images_are_an_error_whatever_the_mapping(prior, bad, intensity):
    image = np.linspace(0, 255, 256, dtype=np.float32).reshape(16, 16)
    image[4, 4] = bad
    with pytest.raises(ImageDataError, match="NaN or infinite"):
        klip.score_image(image, prior, config=KLIP_FAST, intensity=intensity)


def test_far_off_units_with_a_spread_are_mapped_and_scored(prior):
    """Values up to 1e30 with a spread are another unit, not garbage: auto maps them (and says so)."""
    image = np.linspace(0, 1e30, 256, dtype=np.float32).reshape(16, 16)
    result = klip.score_image(image, prior, config=KLIP_FAST)
    assert np.isfinite(result.score) and result.parameters["intensity"]["mapped"]
    assert np.all(np.isfinite(result.reconstruction)) and result.reconstruction.max() > 1e28  # back in the input's units


def test_moderately_off_units_still_score(prior):
    """CT numbers (-1000…3000) on a 0–255 prior: mapped by default, scored as they are with intensity="none"."""
    image = np.linspace(-1000, 3000, 256, dtype=np.float32).reshape(16, 16)
    mapped = klip.score_image(image, prior, config=KLIP_FAST)
    assert np.isfinite(mapped.score) and mapped.parameters["intensity"]["mapped"]
    with pytest.warns(UserWarning, match="outside the prior's intensity range"):
        raw = klip.score_image(image, prior, config=KLIP_FAST, intensity="none")
    assert np.isfinite(raw.score) and not raw.parameters["intensity"]["mapped"]


def test_evaluate_without_positive_pixels_writes_null_and_a_note(tmp_path, saved_prior, disc_images):
    for name, stack in {"id.tif": disc_images[:2], "ood.tif": 255 - disc_images[2:4], "labels.tif": np.zeros_like(disc_images[:2])}.items():
        tifffile.imwrite(tmp_path / name, stack, photometric="minisblack")
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(saved_prior), "--id", str(tmp_path / "id.tif"), "--ood", str(tmp_path / "ood.tif"),
                 "--ood-labels", str(tmp_path / "labels.tif"), "--operator", "denoise", *FAST, "--out", str(out)]) == 0
    text = (out / "metrics.json").read_text()
    assert "NaN" not in text
    metrics = json.loads(text)
    assert metrics["image_level_auc"] is None and metrics["image_level_per_image"] == [None, None]
    assert "image_level_auc" in metrics["notes"][0]


# --- API types --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda p, x: klip.score_image(x, p, config=KlipConfig(num_samples=1, num_steps=4, seed="1")), TypeError, "seed must be an integer"),
        (lambda p, x: lmd.score_image(x, p, config=LmdConfig(num_steps=3, distance="mse", mask_grid=4, seed="1")), TypeError, "seed must be an integer"),
        (lambda p, x: klip.score_image(x, p, config=KlipConfig(num_samples=1, num_steps="10")), ValueError, "num_steps must be an integer"),
        (lambda p, x: klip.score_image(x, p, config=KLIP_FAST, window=(1, 2, 3)), ValueError, r"window must be a \(start, stop\) pair .* 3 values"),
        (lambda p, x: klip.score_image(x, p, config=KLIP_FAST, window=(1.7, 3.2)), TypeError, "window must hold integer step indices"),
        (lambda p, x: klip.score_image(x, 5, config=KLIP_FAST), TypeError, "prior must be a DiffusionPrior, a prior folder"),
        (lambda p, x: lmd.score_image(x, 5, config=LMD_FAST), TypeError, "prior must be a DiffusionPrior, a prior folder"),
    ],
    ids=["klip-seed-str", "lmd-seed-str", "steps-str", "window-3-values", "window-float", "klip-prior-int", "lmd-prior-int"],
)
def test_wrong_argument_types_name_the_argument(prior, disc_images, call, error, message):
    with pytest.raises(error, match=message):
        call(prior, disc_images[0])


@pytest.mark.parametrize("steps", ["0", "-5"])
@pytest.mark.parametrize("command", ["score", "lmd", "train"])
def test_cli_steps_must_be_positive(tmp_path, image_file, command, steps, capsys):
    source = "--data" if command == "train" else "--input"
    with pytest.raises(SystemExit) as exited:
        main([command, source, str(image_file), "--steps", steps, "--out", str(tmp_path / "o")])
    assert exited.value.code == 2
    assert f"argument --steps: must be a whole number >= 1, got {steps}" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("minutes", ["0", "-1", "inf", "soon"])
def test_cli_time_limit_must_be_positive_minutes(tmp_path, image_file, minutes, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["train", "--data", str(image_file), "--time-limit", minutes, "--out", str(tmp_path / "o")])
    assert exited.value.code == 2
    assert "argument --time-limit: must be a number of minutes > 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_batch_larger_than_the_data_is_lowered_with_a_warning(tmp_path, disc_images):
    with pytest.warns(UserWarning, match="batch size 1000 is larger than the 64 training images; using 64"):
        steps = iter_training(disc_images, tmp_path / "p", tiny_training(batch_size=1000, steps=1))
        for _ in steps:
            pass
    import torch

    assert torch.load(tmp_path / "p" / "checkpoint.pt", weights_only=True)["config"]["batch_size"] == 64


def _foreign_copy(saved_prior, tmp_path, sample_size):
    folder = tmp_path / "foreign"
    shutil.copytree(saved_prior, folder)
    (folder / "napari_klip_prior.json").unlink()
    config_path = folder / "unet" / "config.json"
    config = json.loads(config_path.read_text())
    config["sample_size"] = sample_size
    config_path.write_text(json.dumps(config))
    return folder


def test_prior_without_metadata_with_an_impossible_sample_size_is_refused(tmp_path, saved_prior):
    with pytest.raises(PriorLoadError, match="sample_size .* multiples of"):
        load_prior(_foreign_copy(saved_prior, tmp_path, 30), device="cpu")


def test_prior_without_metadata_says_what_it_assumes(tmp_path, saved_prior):
    with pytest.warns(UserWarning, match="no napari_klip_prior.json: assuming the image size 64×64"):
        prior = load_prior(_foreign_copy(saved_prior, tmp_path, 64), device="cpu")
    assert prior.image_size == (64, 64)


# --- a prior whose training diverged: NaN weights ----------------------------------------------


@pytest.fixture
def nan_prior(tmp_path, saved_prior):
    """A copy of ``saved_prior`` with one weight tensor NaN — what a training whose loss became NaN leaves."""
    from safetensors.torch import load_file, save_file

    folder = shutil.copytree(saved_prior, tmp_path / "nan-prior")
    weights_file = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights = load_file(weights_file)
    first = sorted(weights)[0]
    weights[first] = weights[first] * float("nan")
    save_file(weights, weights_file)
    return folder


@pytest.mark.parametrize("score", [
    lambda folder, image: klip.score_image(image, folder, config=KLIP_FAST, device="cpu"),
    lambda folder, image: lmd.score_image(image, folder, config=LMD_FAST, device="cpu"),
], ids=["klip", "lmd"])
def test_the_api_refuses_a_prior_with_nan_weights(nan_prior, disc_images, score):
    with pytest.raises(ValueError, match=r"nan-prior.* is broken: \d+ of its \d+ network weights are NaN or infinite"):
        score(nan_prior, disc_images[0])


@pytest.mark.parametrize("command", ["score", "lmd"])
def test_the_cli_refuses_a_prior_with_nan_weights_and_writes_nothing(tmp_path, nan_prior, image_file, command, capsys):
    options = FAST if command == "score" else ["--reconstructions", "1", "--steps", "3", "--device", "cpu"]
    assert main([command, "--model", str(nan_prior), "--input", str(image_file), *options, "--out", str(tmp_path / "o")]) == 1
    assert "NaN or infinite" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
