"""``napari-klip demo`` end to end on the bundled prior and sample (few steps)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_klip.cli import main
from napari_klip.core.baselines import BASELINE_NAMES
from napari_klip.core.samples import load_ct_sample


def test_bundled_ct_sample():
    images, masks = load_ct_sample()
    assert images.shape == masks.shape == (8, 28, 28) and images.dtype == np.float32
    assert all(mask.any() for mask in masks)


@pytest.mark.slow
def test_demo_writes_figure_and_result(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--steps", "10", "--samples", "2", "--slices", "2", "--device", "cpu"]
    assert main(args) == 0
    result = json.loads((out / "result.json").read_text())
    assert len(result["localization_auc_per_slice"]) == 2 and len(result["scores"]) == 2
    assert 0.0 <= result["localization_auc_mean"] <= 1.0
    assert set(result["baseline_auc_mean"]) == set(BASELINE_NAMES)
    assert all(0.0 <= value <= 1.0 for value in result["baseline_auc_mean"].values())
    assert result["margin_over_best_baseline"] == pytest.approx(result["localization_auc_mean"] - max(result["baseline_auc_mean"].values()))
    assert result["prior"].endswith("organamnist-liver28-tiny-cpu") and result["network_calls_per_slice"] == 10
    # the prior z-map beside KLIP, on the same blocks and slices, with its margin over the same baselines
    assert len(result["prior_z_auc_per_slice"]) == 2 and 0.0 <= result["prior_z_auc_mean"] <= 1.0
    assert result["prior_z_margin_over_best_baseline"] == pytest.approx(result["prior_z_auc_mean"] - max(result["baseline_auc_mean"].values()))
    assert result["prior_z_settings"]["timesteps"] == [50, 100, 250, 400, 500, 600, 750]
    assert (out / "demo.png").stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "wrote" in printed and "local-contrast" in printed and "margin over the best" in printed and "prior z-map" in printed
    assert main(args) == 1  # outputs exist; no --overwrite
    assert main(["demo", "--out", str(tmp_path / "x"), "--slices", "9"]) == 1
    assert main([*args[:2], str(tmp_path / "fbp"), *args[3:], "--guidance", "consistency"]) == 0
    consistent = json.loads((tmp_path / "fbp" / "result.json").read_text())
    # progress over both slices, sampling and z-map alike: never backwards, ending at its total
    from napari_klip.cli.demo import DemoSettings, run_demo

    updates = []
    run_demo(tmp_path / "progress", DemoSettings(num_samples=1, num_steps=3, slices=2, device="cpu"), progress=updates.append)
    assert [u.step for u in updates] == sorted(u.step for u in updates) and {u.total for u in updates} == {2 * (3 + 7)}
    assert updates[-1].step == updates[-1].total
    assert result["settings"]["guidance"] == "jacobian-free" and consistent["settings"]["guidance"] == "consistency"
    assert consistent["scores"] != result["scores"]


def test_demo_with_a_missing_model_fails_before_writing(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--model", str(tmp_path / "no-prior"), "--slices", "1", "--device", "cpu"]) == 1
    assert "no-prior" in capsys.readouterr().err
    assert not out.exists()
