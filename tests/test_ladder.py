"""End to end: the acceptance commands of the host ladder, run as a user runs them."""

import json
import subprocess
import sys

import numpy as np
import pytest

from mcuquant.data import Dataset
from mcuquant.interpreters import Runner, quantize

RUNG_IDS = ["keras-float", "keras-qat", "ptq/litert", "ptq/litert-ref", "ptq/tflm-host", "ptq/builtin-host",
            "qat/litert", "qat/litert-ref", "qat/tflm-host", "qat/builtin-host"]


def _mcuquant(*args, timeout=600):
    result = subprocess.run([sys.executable, "-m", "mcuquant", *args], capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def digits_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits")
    _mcuquant("compare", "--data", "builtin:digits", "--model", "zoo:cnn", "--json", str(out / "out.json"),
              "--out", str(out / "work"), "--quiet")
    return json.loads((out / "out.json").read_text()), out / "work"


def test_report_holds_every_rung_with_honest_intervals(digits_report):
    report, _ = digits_report
    assert report["dataset"]["name"] == "builtin:digits" and report["dataset"]["n_test"] == 360
    assert [r["id"] for r in report["rungs"]] == RUNG_IDS
    for rung in report["rungs"]:
        assert rung["n"] == 360
        assert 0 <= rung["error_rate"] <= 1
        lo, hi = rung["ci95"]
        assert lo <= rung["error_rate"] <= hi
        assert rung["error_rate"] == pytest.approx(rung["errors"] / rung["n"])
    # A trained CNN on digits is far better than chance (90% error).
    assert report["rungs"][0]["error_rate"] < 0.15


def test_confusion_matrices_count_every_test_sample(digits_report):
    report, work = digits_report
    with np.load(work / "rungs.npz") as npz:
        predictions = {str(rid): npz[f"pred{i}"] for i, rid in enumerate(npz["ids"])}
    with np.load(work / "dataset.npz") as npz:
        y = npz["y_test"]
    for rung in report["rungs"]:
        matrix = np.array(rung["confusion"])
        assert matrix.shape == (10, 10) and matrix.sum() == rung["n"]
        assert matrix.sum() - np.trace(matrix) == rung["errors"]
        assert matrix[y[0], predictions[rung["id"]][0]] >= 1
    # compare renders the same report as HTML and Markdown beside report.json.
    assert (work / "report.html").is_file() and "ptq/tflm-host" in (work / "report.md").read_text()


def test_report_compares_every_adjacent_pair_and_float_against_each_int8_rung(digits_report):
    report, _ = digits_report
    pairs = {(c["a"], c["b"]): c for c in report["comparisons"]}
    for a, b in zip(RUNG_IDS, RUNG_IDS[1:]):
        assert (a, b) in pairs
    for b in RUNG_IDS[2:]:
        assert ("keras-float", b) in pairs
    for c in pairs.values():
        assert 0 <= c["mcnemar_p"] <= 1 and c["verdict"]
    # Interpreters of the same conversion carry byte-level agreement too.
    assert "bit_exact_rate" in pairs[("ptq/litert-ref", "ptq/tflm-host")]
    # mcuquant's C runtime is byte-identical with TFLM on both conversions.
    builtin = [a for a in report["agreement"] if (a["a"], a["b"]) == ("builtin-host", "tflm-host")]
    assert [a["variant"] for a in builtin] == ["ptq", "qat"]
    assert all(a["bit_exact_rate"] == 1.0 and a["n"] == 360 for a in builtin)


def test_same_int8_model_rungs_differ_only_where_outputs_differ(digits_report):
    """Rungs of one conversion can disagree on a class only on samples whose outputs differ."""
    report, _ = digits_report
    for a in report["agreement"]:
        flips = [m for m in a["mismatches"] if m["class_flip"]]
        assert a["class_flips"] == len(flips)
        assert a["bit_exact"] + len(a["mismatches"]) == a["n"] == 360


def test_work_directory_keeps_the_artifacts_a_device_run_needs(digits_report):
    report, work = digits_report
    data = Dataset.load(work / "dataset.npz")
    assert len(data.x_test) == 360
    for variant in ("ptq", "qat"):
        model = (work / f"{variant}.tflite").read_bytes()
        assert report["conversions"][variant]["bytes"] == len(model)
        sent = np.load(work / f"{variant}_test_inputs.npy")
        assert np.array_equal(sent, quantize(data.x_test, Runner("tflm-host", model).input))
    assert json.loads((work / "report.json").read_text())["rungs"] == report["rungs"]


def test_user_model_with_generated_data_goes_through_the_pipeline(shared_models, tmp_path):
    """The MLPerf Tiny ResNet-8 .h5 (not built by mcuquant) on random 32x32x3 data: conversion and
    every rung must work; accuracy is meaningless here."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "cifar_like.npz", x=rng.random((200, 32, 32, 3), dtype=np.float32),
             y=rng.integers(0, 10, 200))
    _mcuquant("compare", "--model", str(shared_models / "pretrainedResnet.h5"),
              "--data", str(tmp_path / "cifar_like.npz"), "--qat-epochs", "1", "--rep-samples", "50",
              "--json", str(tmp_path / "out.json"), "--out", str(tmp_path / "work"), "--quiet")
    report = json.loads((tmp_path / "out.json").read_text())
    assert [r["id"] for r in report["rungs"]] == RUNG_IDS
    assert report["model"]["float_training"]["epochs_run"] == 0  # the user's weights are kept
    for variant in ("ptq", "qat"):
        conv = report["conversions"][variant]
        assert conv["input"]["dtype"] == "int8" and conv["input"]["shape"] == [1, 32, 32, 3]
        assert conv["output"]["shape"] == [1, 10]
    assert all(r["n"] == 40 for r in report["rungs"])


def test_regression_models_get_mae_and_rmse_on_every_rung(tmp_path):
    from mcuquant.config import build_config
    from mcuquant.ladder import run_compare

    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 6)).astype(np.float32)
    y = (x @ rng.normal(size=6) + 0.1 * rng.normal(size=500)).astype(np.float32)
    np.savez(tmp_path / "linear.npz", x=x, y=y)
    cfg = build_config(overrides={"data.source": str(tmp_path / "linear.npz"), "model.source": "zoo:mlp",
                                  "training.epochs": 20, "training.qat_epochs": 1})
    report = run_compare(cfg, tmp_path / "work", progress=False)
    assert report["task"] == "regression"
    assert [r["id"] for r in report["rungs"]] == RUNG_IDS
    y_test = Dataset.load(tmp_path / "work" / "dataset.npz").y_test
    assert len(y_test) == report["dataset"]["n_test"] == 100
    for rung in report["rungs"]:
        assert 0 <= rung["mae"] <= rung["rmse"]
        assert rung["mae_ci95"][0] <= rung["mae"] <= rung["mae_ci95"][1]
        assert rung["mae"] < np.std(y_test)  # the model learned something: better than predicting the mean
    for c in report["comparisons"]:
        assert 0 <= c["p"] <= 1 and c["verdict"]
