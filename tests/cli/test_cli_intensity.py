"""The command line maps input intensities to the prior's units, says so, and gives results back in input units."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_klip.api import lmd_score, score_image
from napari_klip.cli import main
from napari_klip.core.intensity import resolve_intensity
from napari_klip.core.klip import KlipConfig
from napari_klip.core.lmd import LmdConfig
from napari_klip.core.prior import create_prior, load_prior

COMMON = ["--steps", "3", "--device", "cpu", "--precision", "fp32"]
FAST = ["--samples", "1", *COMMON]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return create_prior(16, network="tiny", intensity_range=(0.0, 255.0)).save(tmp_path_factory.mktemp("m") / "prior")


def _hu_slice() -> np.ndarray:
    """16×16 int16 in Hounsfield units: air around a soft-tissue disc with a bone spot."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:16, :16]
    image = np.full((16, 16), -1000.0)
    image[(yy - 8) ** 2 + (xx - 8) ** 2 < 30] = 40.0
    image[(yy - 7) ** 2 + (xx - 9) ** 2 < 4] = 1500.0
    return np.rint(image + rng.normal(0, 20, image.shape)).astype(np.int16)


def _write(path, array):
    tifffile.imwrite(path, array, photometric="minisblack")
    return str(path)


def test_score_maps_hu_and_returns_the_reconstruction_in_hu(tmp_path, model, capsys):
    image = _hu_slice()
    out = tmp_path / "out"
    assert main(["score", "--model", str(model), "--input", _write(tmp_path / "ct.tif", image), "--operator", "denoise",
                 *FAST, "--out", str(out)]) == 0
    assert "intensities mapped (auto)" in capsys.readouterr().err
    record = json.loads((out / "result.json").read_text())["parameters"]["intensity"]
    p1, p99 = np.percentile(image.astype(np.float64), [1, 99])
    assert record["mode"] == "auto" and record["mapped"] and record["source"] == pytest.approx([p1, p99])
    assert record["target"] == [0.0, 255.0]
    # Independent reference: the same run on the image mapped by hand, taken as it is, in prior units.
    prior = load_prior(model, "cpu")
    by_hand = (image.astype(np.float64) - p1) / (p99 - p1) * 255.0
    reference = score_image(by_hand, prior, operator="denoise", config=KlipConfig(num_samples=1, num_steps=3, seed=0), intensity="none")
    reconstruction = tifffile.imread(out / "reconstruction.tif")
    np.testing.assert_allclose(reconstruction, reference.reconstruction / 255.0 * (p99 - p1) + p1, rtol=1e-4, atol=0.05)
    np.testing.assert_allclose(tifffile.imread(out / "heatmap.tif"), reference.heatmap, rtol=1e-4, atol=1e-6)


def test_lmd_gives_uint16_known_pixels_back_in_their_units(tmp_path, model, disc_images):
    stack = disc_images[:2].astype(np.uint16) * 16 + 400  # a 12-bit camera
    out = tmp_path / "lmd"
    assert main(["lmd", "--model", str(model), "--input", _write(tmp_path / "u16.tif", stack), "--reconstructions", "2",
                 "--mask-grid", "4", "--distance", "mse", *COMMON, "--out", str(out)]) == 0
    record = json.loads((out / "result.json").read_text())["parameters"]["intensity"]
    assert record["mapped"] and record["source"] == pytest.approx(list(np.percentile(stack.astype(np.float64), [1, 99])))
    reconstructions, masks = tifffile.imread(out / "reconstructions.tif"), tifffile.imread(out / "masks.tif").astype(bool)
    assert reconstructions.shape == (2, 2, 16, 16)
    low, high = record["source"]  # the prior's range in input units: beyond it the prior's samples are clipped
    for image, recon in zip(stack, reconstructions):
        known = ~masks
        expected = np.clip(np.broadcast_to(image, known.shape)[known].astype(np.float64), low, high)
        np.testing.assert_allclose(recon[known], expected, rtol=1e-4, atol=0.05)


def test_an_explicit_range_and_the_mostly_outside_warning(tmp_path, model, disc_images, capsys):
    out, bright = tmp_path / "out", 255 - disc_images[:1]  # mostly above 10
    with pytest.warns(UserWarning, match=r"of the pixels lie outside the prior's intensity range \[0, 255\] after intensity mapping 'range'"):
        assert main(["score", "--model", str(model), "--input", _write(tmp_path / "d.tif", bright), "--operator", "denoise",
                     "--intensity-range", "0", "10", *FAST, "--out", str(out)]) == 0
    assert "intensities mapped (range): input [0, 10] -> prior [0, 255]" in capsys.readouterr().err
    record = json.loads((out / "result.json").read_text())["parameters"]["intensity"]
    assert record["mode"] == "range" and record["source"] == [0.0, 10.0] and "warning" in record
    assert record["outside_fraction"] == pytest.approx(np.mean(bright > 10)) and record["outside_fraction"] > 0.5


def test_none_takes_the_input_as_it_is(tmp_path, model, disc_images):
    out = tmp_path / "out"
    assert main(["score", "--model", str(model), "--input", _write(tmp_path / "d.tif", disc_images[:1]), "--operator", "denoise",
                 "--intensity", "none", *FAST, "--out", str(out)]) == 0
    record = json.loads((out / "result.json").read_text())["parameters"]["intensity"]
    assert record["mode"] == "none" and not record["mapped"] and "source" not in record


def test_resizing_is_said(tmp_path, model, capsys):
    image = np.linspace(0, 255, 20 * 24, dtype=np.float32).reshape(20, 24)
    out = tmp_path / "out"
    assert main(["score", "--model", str(model), "--input", _write(tmp_path / "big.tif", image), "--operator", "denoise",
                 "--block-size", "4", *FAST, "--out", str(out)]) == 0
    assert "input 20×24 resized to the prior's 16×16" in capsys.readouterr().err
    result = json.loads((out / "result.json").read_text())
    assert result["parameters"]["resized"] == {"from": [20, 24], "to": [16, 16]} and result["block_size"] == 4
    assert tifffile.imread(out / "heatmap.tif").shape == (20, 24)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--intensity-range", "5", "5"], "LOW < HIGH"),
        (["--intensity-range", "3", "1"], "LOW < HIGH"),
        (["--intensity-range", "nan", "1"], "finite"),
        (["--intensity-range", "0", "inf"], "finite"),
        (["--intensity-range", "0"], "expected 2 arguments"),
        (["--intensity", "linear"], "invalid choice"),
        (["--intensity", "none", "--intensity-range", "0", "1"], "not allowed with"),
    ],
    ids=["equal", "reversed", "nan", "inf", "one-value", "unknown-mode", "both"],
)
@pytest.mark.parametrize("command", ["score", "lmd", "evaluate"])
def test_bad_intensity_options_are_usage_errors(tmp_path, model, disc_images, capsys, options, message, command):
    path = _write(tmp_path / "d.tif", disc_images[:1])
    inputs = ["--id", path, "--ood", path] if command == "evaluate" else ["--input", path]
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--model", str(model), *inputs, *options, *COMMON, "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_evaluate_maps_id_and_ood_alike(tmp_path, model, disc_images):
    id_stack, ood_stack = disc_images[:2].astype(np.uint16) * 100, (255 - disc_images[2:4]).astype(np.uint16) * 100
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(model), "--id", _write(tmp_path / "id.tif", id_stack), "--ood",
                 _write(tmp_path / "ood.tif", ood_stack), "--operator", "denoise", *FAST, "--out", str(out)]) == 0
    record = json.loads((out / "metrics.json").read_text())["parameters"]["intensity"]
    both = np.concatenate([id_stack.ravel(), ood_stack.ravel()]).astype(np.float64)
    assert record["mapped"] and record["source"] == pytest.approx(list(np.percentile(both, [1, 99])))


def test_api_stack_uses_one_mapping_and_lmd_records_it(model, disc_images):
    prior = load_prior(model, "cpu")
    stack = disc_images[:2].astype(np.uint16) * 16
    results = lmd_score(stack[0], prior, config=LmdConfig(num_reconstructions=1, num_steps=2, mask_grid=4, distance="mse"))
    expected = resolve_intensity(stack[0], prior.metadata)
    assert results.parameters["intensity"] == expected.describe()
