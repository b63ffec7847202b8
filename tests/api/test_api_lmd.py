"""``napari_klip.api.lmd_score`` / ``lmd_score_stack`` and ``napari-klip lmd`` on small priors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_klip.api import lmd_score, lmd_score_stack
from napari_klip.cli import main
from napari_klip.core.data import ImageDataError
from napari_klip.core.errors import Cancelled
from napari_klip.core.lmd import LmdConfig
from napari_klip.core.prior import create_prior

REPO = Path(__file__).resolve().parents[2]
FAST = LmdConfig(num_reconstructions=4, num_steps=4, distance="mse", mask_grid=4)


@pytest.fixture(scope="module")
def prior():
    torch.manual_seed(0)
    return create_prior(16, network="tiny", intensity_range=(0.0, 255.0))


def test_lmd_score_outputs_follow_the_input(prior, disc_images):
    image = disc_images[0]
    before = image.copy()
    result = lmd_score(image, prior=prior, config=FAST)
    np.testing.assert_array_equal(image, before)
    assert result.distances.shape == (4,) and result.score == pytest.approx(float(np.median(result.distances)))
    assert result.heatmap.shape == (16, 16) and result.heatmap.dtype == np.float32
    assert result.reconstructions.shape == (4, 16, 16) and result.masks.shape == (4, 16, 16)
    # Known pixels come back exactly, in the input's intensity units.
    known = ~result.masks
    np.testing.assert_allclose(result.reconstructions[known], np.broadcast_to(image, known.shape)[known].astype(np.float32), atol=1e-3)
    assert result.parameters["network_evaluations"] == 16 and result.parameters["distance"] == "mse"


def test_other_sizes_are_resized_and_back(prior, disc_images):
    from skimage.transform import resize

    big = resize(disc_images[1].astype(np.float32), (24, 20), preserve_range=True)
    result = lmd_score(big, prior=prior, config=FAST)
    assert result.heatmap.shape == (24, 20) and result.reconstructions.shape == (4, 24, 20) and result.masks.shape == (4, 24, 20)


def test_stack_results_do_not_depend_on_the_batch_size(prior, disc_images):
    stack = disc_images[:3]
    one_by_one = lmd_score_stack(stack, prior=prior, config=FAST, batch_size=1)
    together = lmd_score_stack(stack, prior=prior, config=FAST, batch_size=3)
    for alone, batched in zip(one_by_one, together, strict=True):
        np.testing.assert_allclose(alone.distances, batched.distances, rtol=1e-4, atol=1e-6)
    single = lmd_score(stack[2], prior=prior, config=FAST)
    np.testing.assert_allclose(single.distances, together[2].distances, rtol=1e-4, atol=1e-6)


def test_progress_counts_steps_over_batches_and_cancel_raises(prior, disc_images):
    updates = []
    lmd_score_stack(disc_images[:3], prior=prior, config=FAST, batch_size=2, progress=updates.append)
    # image-steps over the stack: the first batch advances two images per step, the last one one
    assert [u.step for u in updates] == [2, 4, 6, 8, 9, 10, 11, 12] and {u.total for u in updates} == {12}
    seen = []
    with pytest.raises(Cancelled):
        lmd_score_stack(disc_images[:3], prior=prior, config=FAST, progress=seen.append, should_cancel=lambda: len(seen) >= 2)
    assert len(seen) == 2


def test_bad_inputs_fail_before_sampling(prior, disc_images):
    calls = []
    with pytest.raises(ImageDataError, match=r"expected one image shaped \(H, W\)"):
        lmd_score(np.zeros((16, 16, 3)), prior=prior, config=FAST, progress=calls.append)
    with pytest.raises(ImageDataError, match="NaN"):
        lmd_score(np.full((16, 16), np.nan), prior=prior, config=FAST, progress=calls.append)
    with pytest.raises(ValueError, match=r"stack shaped \(N, H, W\)"):
        lmd_score_stack(disc_images[0], prior=prior, config=FAST, progress=calls.append)
    with pytest.raises(ValueError, match="batch_size"):
        lmd_score_stack(disc_images[:2], prior=prior, config=FAST, batch_size=0)
    with pytest.raises(ValueError, match="divisible by 5"):
        lmd_score(disc_images[0], prior=prior, config=LmdConfig(mask_grid=5, distance="mse"), progress=calls.append)
    assert calls == []


def test_missing_lpips_weights_fail_before_sampling(prior, disc_images, tmp_path, monkeypatch):
    from napari_klip.core.lmd.distances import LpipsWeightsError

    monkeypatch.delenv("NAPARI_KLIP_ALEXNET_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-cache"))
    monkeypatch.setattr("napari_klip.core.lmd.lpips_distance.PACKAGED_ALEXNET_WEIGHTS", tmp_path / "not-installed.npz")
    calls = []
    with pytest.raises(LpipsWeightsError, match="alexnet"):
        lmd_score(disc_images[0], prior=prior, config=LmdConfig(num_steps=4, mask_grid=4), progress=calls.append)
    assert calls == []


def test_cli_lmd_writes_outputs(tmp_path, prior, disc_images):
    model = prior.save(tmp_path / "prior")
    tifffile.imwrite(tmp_path / "stack.tif", disc_images[:2], photometric="minisblack")
    out = tmp_path / "out"
    args = ["lmd", "--model", str(model), "--input", str(tmp_path / "stack.tif"), "--steps", "3", "--reconstructions", "2",
            "--mask-grid", "4", "--distance", "ssim", "--device", "cpu", "--out", str(out)]
    assert main(args) == 0
    result = json.loads((out / "result.json").read_text())
    assert len(result["scores"]) == 2 and len(result["distances"][0]) == 2
    assert result["parameters"]["settings"]["distance"] == "ssim"
    assert tifffile.imread(out / "heatmap.tif").shape == (2, 16, 16)
    assert tifffile.imread(out / "reconstructions.tif").shape == (2, 2, 16, 16)
    assert tifffile.imread(out / "masks.tif").shape == (2, 16, 16)
    assert main(args) == 1  # occupied output folder


def test_cli_lmd_errors(tmp_path, prior, capsys, monkeypatch):
    model = prior.save(tmp_path / "prior")
    tifffile.imwrite(tmp_path / "x.tif", np.zeros((16, 16), np.uint8), photometric="minisblack")
    base = ["lmd", "--model", str(model), "--input", str(tmp_path / "x.tif"), "--steps", "2", "--device", "cpu"]
    assert main([*base, "--mask-grid", "3", "--distance", "mse", "--out", str(tmp_path / "o1")]) == 1
    assert "divisible by 3" in capsys.readouterr().err
    monkeypatch.delenv("NAPARI_KLIP_ALEXNET_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-cache"))
    monkeypatch.setattr("napari_klip.core.lmd.lpips_distance.PACKAGED_ALEXNET_WEIGHTS", tmp_path / "not-installed.npz")
    assert main([*base, "--mask-grid", "4", "--out", str(tmp_path / "o2")]) == 1
    error = capsys.readouterr().err
    assert error.startswith("napari-klip: error:") and "mse" in error and not (tmp_path / "o2" / "result.json").exists()


def test_cli_evaluate_lmd(tmp_path, prior, disc_images):
    model = prior.save(tmp_path / "prior")
    ood = 255 - disc_images[4:8]
    labels = np.zeros_like(ood)
    labels[:, :8] = 1
    for name, stack in {"id.tif": disc_images[:4], "ood.tif": ood, "labels.tif": labels}.items():
        tifffile.imwrite(tmp_path / name, stack, photometric="minisblack")
    out = tmp_path / "eval"
    assert main(["evaluate", "--method", "lmd", "--model", str(model), "--id", str(tmp_path / "id.tif"), "--ood", str(tmp_path / "ood.tif"),
                 "--ood-labels", str(tmp_path / "labels.tif"), "--steps", "3", "--reconstructions", "2", "--mask-grid", "4",
                 "--distance", "mse", "--device", "cpu", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "lmd" and metrics["id_images"] == 4 and metrics["ood_images"] == 4
    assert 0.0 <= metrics["dataset_level_auc"] <= 1.0 and "image_level_auc" in metrics
    assert (out / "roc.png").stat().st_size > 1000
