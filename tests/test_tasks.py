"""Task kinds end to end: anomaly detection, sequences and multi-output regression through the real
ladder (training, QAT, conversions, every host interpreter) and, for explain, the real emulated
board (QEMU qemu-nano33) and the HTML report in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from mcuquant.tasks import get_task
from mcuquant.tasks.anomaly import reconstruction_error


def test_anomaly_scores_are_reconstruction_errors_and_ranked_by_auc():
    rng = np.random.default_rng(0)
    x = rng.random((40, 8, 8, 1)).astype(np.float32)
    y = (np.arange(40) % 4 == 0).astype(np.int64)
    noise = rng.standard_normal(x.shape)
    # Anomalies reconstruct with 30% more noise: the MSE ranks them mostly, not always, higher.
    outputs = x + np.where(y[:, None, None, None] == 1, 0.065, 0.05) * noise
    task = get_task("anomaly")
    scores = task.predictions(outputs.reshape(40, -1), x)
    assert np.allclose(scores, ((outputs - x) ** 2).reshape(40, -1).mean(axis=1))
    rung = task.score(scores, y)
    assert 0.7 < rung["auc"] < 1 and rung["ci95"][0] < rung["auc"] < rung["ci95"][1] <= 1
    # Perfectly separated scores: AUC 1, and DeLong's variance is 0 (the interval collapses, as documented).
    separated = task.score(task.predictions((x + np.where(y[:, None, None, None] == 1, 0.3, 0.05) * noise)
                                            .reshape(40, -1), x), y)
    assert separated["auc"] == 1.0 and separated["ci95"] == [1.0, 1.0]
    assert rung["roc"]["fpr"][0] == 0 and rung["roc"]["tpr"][-1] == 1
    same = task.compare("a", "b", scores, scores, y)
    assert same["p"] == 1.0 and same["scores"]["spearman"] == pytest.approx(1.0)
    with pytest.raises(Exception, match="input"):
        reconstruction_error(outputs.reshape(40, -1)[:, :10], x)


def test_multi_output_regression_is_scored_per_output():
    y = np.stack([np.linspace(0, 1, 30), np.linspace(1, 2, 30), np.zeros(30)], axis=1).astype(np.float32)
    pred = y + np.array([0.1, -0.2, 0.0], dtype=np.float32)
    rung = get_task("regression").score(pred, y)
    assert rung["mae"] == pytest.approx(0.1)
    assert [o["mae"] for o in rung["per_output"]] == pytest.approx([0.1, 0.2, 0.0], abs=1e-6)


def test_compare_on_three_regression_targets_gives_per_output_and_overall_errors(tmp_path):
    from mcuquant.cli import main

    rng = np.random.default_rng(0)
    x = rng.random((240, 6)).astype(np.float32)
    y = np.stack([x[:, 0] + x[:, 1], x[:, 2] - x[:, 3], 2 * x[:, 4] * x[:, 5]], axis=1).astype(np.float32)
    np.savez(tmp_path / "reg3.npz", x=x, y=y)
    out = tmp_path / "w"
    assert main(["compare", "--data", str(tmp_path / "reg3.npz"), "--model", "zoo:mlp", "--epochs", "20",
                 "--qat-epochs", "1", "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["task"] == "regression" and report["dataset"]["outputs"] == 3
    ids = {r["id"] for r in report["rungs"]}
    assert {"keras-float", "keras-qat", "ptq/tflm-host", "qat/tflm-host", "ptq/builtin-host"} <= ids
    with np.load(out / "rungs.npz") as npz:
        pred = {str(rid): npz[f"pred{i}"] for i, rid in enumerate(npz["ids"])}
    with np.load(out / "dataset.npz") as npz:
        y_test = npz["y_test"]
    for rung in report["rungs"]:
        errors = np.abs(pred[rung["id"]] - y_test)
        assert rung["mae"] == pytest.approx(float(errors.mean()), rel=1e-5)
        assert [o["mae"] for o in rung["per_output"]] == pytest.approx(errors.mean(axis=0).tolist(), rel=1e-5)
        assert rung["rmse"] == pytest.approx(float(np.sqrt((errors ** 2).mean())), rel=1e-5)
    assert "Per output" in (out / "report.md").read_text()


EXPLAINED = [
    ("builtin:digits-anomaly", "zoo:autoencoder", "anomaly"),
    ("builtin:basicmotions", "zoo:conv1d", "classification"),
    ("builtin:basicmotions", "zoo:lstm", "classification"),
]


@pytest.mark.qemu
@pytest.mark.parametrize("data,model,task", EXPLAINED, ids=[m[4:] for _, m, _ in EXPLAINED])
def test_explain_states_findings_and_the_emulated_board_matches_tflm(pio_core, browser, tmp_path, data, model, task):
    out = tmp_path / "explain"
    proc = subprocess.run([sys.executable, "-m", "mcuquant", "explain", "--data", data, "--model", model,
                           "--out", str(out), "--quiet"], capture_output=True, text=True, timeout=1200, cwd=tmp_path,
                          env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["task"] == task
    explain = report["explain"]
    assert [f["id"] for f in explain["findings"]] == ["a", "b", "c", "d"]
    for f in explain["findings"]:
        assert f"({f['id']}) {f['title']}" in proc.stdout
        assert re.search(r"\d", " ".join(f["sentences"])), f
    rungs = {r["id"]: r for r in report["rungs"]}
    for variant in ("ptq", "qat"):
        device = rungs[f"{variant}/device"]
        assert device["bit_exact_rate"] == 1.0 and device["board"] == "qemu-nano33", device
    b_text = " ".join(explain["findings"][1]["sentences"])
    if task == "anomaly":
        for rid in ("keras-float", "ptq/tflm-host", "qat/tflm-host", "ptq/device"):
            lo, hi = rungs[rid]["ci95"]
            assert 0.5 < rungs[rid]["auc"] <= 1 and lo <= rungs[rid]["auc"] <= hi
        assert f"AUC {rungs['keras-float']['auc']:.3f}" in b_text and "DeLong" in b_text
        # The report's ROC curves, one figure, decoded in Chromium.
        page = browser.new_page()
        page.goto((out / "report.html").as_uri(), wait_until="load")
        widths = page.eval_on_selector_all("img.roc-plot", "imgs => imgs.map(i => i.complete ? i.naturalWidth : -1)")
        assert len(widths) == 1 and widths[0] > 0
        assert "ROC curves" in page.inner_text("#roc")
        page.close()
    else:
        lo, hi = rungs["keras-float"]["ci95"]
        assert f"95% CI {100 * lo:.2f}%-{100 * hi:.2f}%" in b_text
        assert report["dataset"]["input_shape"] == [100, 6]
