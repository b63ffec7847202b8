"""``napari-klip score`` and ``napari-klip evaluate`` end to end on a tiny prior."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_klip.cli import main
from napari_klip.core.baselines import BASELINE_NAMES
from napari_klip.core.operators import SparseViewCT
from napari_klip.core.prior import create_prior

FAST = ["--samples", "2", "--steps", "6", "--device", "cpu"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return create_prior(16, network="tiny", intensity_range=(0.0, 255.0)).save(tmp_path_factory.mktemp("m") / "prior")


@pytest.fixture
def stack(disc_images):
    return disc_images[:3]


def test_score_stack_writes_all_outputs(tmp_path, model, stack, capsys):
    tifffile.imwrite(tmp_path / "in.tif", stack, photometric="minisblack")
    out = tmp_path / "out"
    assert main(["score", "--model", str(model), "--input", str(tmp_path / "in.tif"), "--operator", "ct", "--n-views", "5", *FAST, "--out", str(out)]) == 0
    assert "scored 3 image(s)" in capsys.readouterr().out
    assert tifffile.imread(out / "heatmap.tif").shape == stack.shape
    assert tifffile.imread(out / "labels.tif").shape == stack.shape
    assert tifffile.imread(out / "reconstruction.tif").shape == stack.shape
    trace = np.load(out / "trace.npz")
    assert trace["energy"].shape == (3, 6, 16, 16)
    result = json.loads((out / "result.json").read_text())
    assert len(result["scores"]) == 3 and result["parameters"]["operator"]["name"] == "ct"
    assert result["window"] == [4, 5] and result["block_size"] == 1
    before = (out / "heatmap.tif").read_bytes()
    assert main(["score", "--model", str(model), "--input", str(tmp_path / "in.tif"), *FAST, "--out", str(out)]) == 1
    assert "pass --overwrite" in capsys.readouterr().err
    assert (out / "heatmap.tif").read_bytes() == before


def test_score_single_float_image_and_blur(tmp_path, model, stack):
    tifffile.imwrite(tmp_path / "one.tif", stack[0].astype(np.float32), photometric="minisblack")
    out = tmp_path / "out"
    assert main(["score", "--model", str(model), "--input", str(tmp_path / "one.tif"), "--operator", "blur", "--kernel-size", "3", "--sigma", "1", *FAST, "--out", str(out)]) == 0
    assert tifffile.imread(out / "heatmap.tif").shape == (16, 16)


def test_score_ingests_a_measured_sinogram(tmp_path, model, stack):
    angles = ["0", "45", "90", "135"]
    operator = SparseViewCT(16, angles=[float(a) for a in angles])
    sinogram = operator(torch.from_numpy(stack[0].astype(np.float64))[None, None])[0, 0].numpy().astype(np.float32)
    tifffile.imwrite(tmp_path / "sino.tif", sinogram, photometric="minisblack")
    out = tmp_path / "out"
    assert main(["score", "--model", str(model), "--measurement", str(tmp_path / "sino.tif"), "--angles", *angles, *FAST, "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["parameters"]["measurement"] == "given" and result["parameters"]["operator"]["angles"] == [0.0, 45.0, 90.0, 135.0]
    consistent = tmp_path / "consistency"
    assert main(["score", "--model", str(model), "--measurement", str(tmp_path / "sino.tif"), "--angles", *angles, *FAST,
                 "--guidance", "consistency", "--consistency-weight", "0.5", "--out", str(consistent)]) == 0
    config = json.loads((consistent / "result.json").read_text())["parameters"]["sampler"]
    assert config["guidance"] == "consistency" and config["consistency_weight"] == 0.5
    assert not np.array_equal(np.load(consistent / "trace.npz")["energy"], np.load(out / "trace.npz")["energy"])
    # wrong detector count: a clear error
    tifffile.imwrite(tmp_path / "bad.tif", sinogram[:, :-2], photometric="minisblack")
    assert main(["score", "--model", str(model), "--measurement", str(tmp_path / "bad.tif"), "--angles", *angles, *FAST, "--out", str(tmp_path / "o2")]) == 1


def test_score_prior_z_writes_the_map_and_a_rerun_without_it_removes_it(tmp_path, model, stack, capsys):
    tifffile.imwrite(tmp_path / "in.tif", stack, photometric="minisblack")
    out = tmp_path / "out"
    args = ["score", "--model", str(model), "--input", str(tmp_path / "in.tif"), "--n-views", "5", *FAST, "--out", str(out)]
    assert main([*args, "--prior-z"]) == 0
    z_map = tifffile.imread(out / "prior_z.tif")
    assert z_map.shape == stack.shape and z_map.dtype == np.float32 and np.isfinite(z_map).all()
    assert json.loads((out / "result.json").read_text())["parameters"]["prior_z"]["draws"] == 16
    assert main([*args, "--overwrite"]) == 0
    assert not (out / "prior_z.tif").exists()  # a folder never mixes two runs
    capsys.readouterr()
    assert main([*args, "--overwrite", "--prior-z", "--prior-z-smoothing", "0", "--prior-z-timesteps", "100", "300"]) == 0
    recorded = json.loads((out / "result.json").read_text())["parameters"]["prior_z"]
    assert recorded["smoothing_px"] == 0.0 and recorded["timesteps"] == [100, 300]
    unsmoothed = tifffile.imread(out / "prior_z.tif")
    before = sorted(p.name for p in out.iterdir())
    for bad, message in ((["--prior-z-smoothing", "1"], "give --prior-z too"), (["--prior-z", "--prior-z-smoothing", "-1"], "finite number"),
                         (["--prior-z", "--prior-z-timesteps", "5000"], "timesteps")):
        assert main([*args, "--overwrite", *bad]) == 1
        assert message in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before  # a refused run leaves the folder as it was
    np.testing.assert_array_equal(tifffile.imread(out / "prior_z.tif"), unsmoothed)


def test_score_errors(tmp_path, model, capsys):
    assert main(["score", "--model", str(model), *FAST, "--out", str(tmp_path / "o")]) == 1
    assert "give --input" in capsys.readouterr().err
    assert main(["score", "--input", str(tmp_path / "missing.tif"), *FAST, "--out", str(tmp_path / "o")]) == 1
    tifffile.imwrite(tmp_path / "x.tif", np.zeros((16, 16), np.uint8), photometric="minisblack")
    assert main(["score", "--model", str(model), "--input", str(tmp_path / "x.tif"), "--operator", "inpaint", *FAST, "--out", str(tmp_path / "o")]) == 1
    assert "needs --mask" in capsys.readouterr().err
    assert main(["score", "--model", str(model), "--input", str(tmp_path / "x.tif"), "--window", "5", "9", *FAST, "--out", str(tmp_path / "o")]) == 1
    assert "window [5, 9)" in capsys.readouterr().err
    assert main(["score", "--model", str(model), "--input", str(tmp_path / "x.tif"), "--operator", "blur", "--guidance", "consistency",
                 *FAST, "--out", str(tmp_path / "o")]) == 1
    assert "'blur' has none" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def _evaluate_args(tmp_path, model, disc_images, out):
    """ID discs, OOD discs with a bright square and its labels, as files; the evaluate arguments for them."""
    id_stack = disc_images[:3]
    ood_stack = disc_images[3:6].copy()
    labels = np.zeros_like(ood_stack)
    labels[:, 2:6, 2:6] = 1
    ood_stack[labels > 0] = 255
    for name, array in (("id.tif", id_stack), ("ood.tif", ood_stack), ("labels.tif", labels)):
        tifffile.imwrite(tmp_path / name, array, photometric="minisblack")
    return labels, ["evaluate", "--model", str(model), "--id", str(tmp_path / "id.tif"), "--ood", str(tmp_path / "ood.tif"),
                    "--ood-labels", str(tmp_path / "labels.tif"), "--operator", "denoise", "--block-size", "2", *FAST, "--out", str(out)]


def test_evaluate_reports_the_prior_z_map_beside_klip(tmp_path, model, disc_images, capsys):
    out = tmp_path / "eval"
    _, args = _evaluate_args(tmp_path, model, disc_images, out)
    assert main([*args, "--prior-z"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    z = metrics["prior_z"]
    assert 0.0 <= z["dataset_level_auc"] <= 1.0 and 0.0 <= z["image_level_auc"] <= 1.0 and len(z["image_level_per_image"]) == 3
    assert z["margin_over_best_baseline"] == pytest.approx(z["image_level_auc"] - max(metrics["baseline_image_level_auc"].values()))
    assert metrics["parameters"]["prior_z"]["timesteps"] == [50, 100, 250, 400, 500, 600, 750]
    assert "prior z-map: dataset-level" in capsys.readouterr().out
    assert main([*args[:-1], str(tmp_path / "lmd"), "--prior-z", "--method", "lmd"]) == 1
    assert "--prior-z goes with --method klip" in capsys.readouterr().err
    assert not (tmp_path / "lmd").exists()


def test_evaluate_writes_metrics_and_roc(tmp_path, model, disc_images, capsys):
    out = tmp_path / "eval"
    labels, args = _evaluate_args(tmp_path, model, disc_images, out)
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["dataset_level_auc"] <= 1.0 and metrics["id_images"] == 3 and metrics["ood_images"] == 3
    assert len(metrics["image_level_per_image"]) == 3 and metrics["image_level_images_used"] == 3
    baselines = metrics["baseline_image_level_auc"]
    assert set(baselines) == set(BASELINE_NAMES)
    assert baselines["local-contrast"] > 0.7  # the bright squares stand out from their surroundings
    assert metrics["margin_over_best_baseline"] == pytest.approx(metrics["image_level_auc"] - max(baselines.values()))
    assert (out / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "dataset-level ROC-AUC" in printed and "baselines: centre" in printed
    tifffile.imwrite(tmp_path / "badlabels.tif", labels[:2], photometric="minisblack")
    args[args.index(str(tmp_path / "labels.tif"))] = str(tmp_path / "badlabels.tif")
    assert main([*args[:-1], str(tmp_path / "eval2")]) == 1
    assert "--ood-labels has shape" in capsys.readouterr().err
    assert not (tmp_path / "eval2").exists()


def test_score_without_model_uses_the_bundled_prior(tmp_path):
    tifffile.imwrite(tmp_path / "x.tif", np.full((32, 32), 90, np.uint8), photometric="minisblack")
    out = tmp_path / "o"
    assert main(["score", "--input", str(tmp_path / "x.tif"), "--operator", "denoise", *FAST, "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert Path(result["parameters"]["prior"]).name == "organamnist32-tiny-cpu"

