"""`mcuquant explain`: the findings (a)-(d) on the digits CNN, and the sample-size statement."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as sps

from mcuquant.explain import finding_b
from mcuquant.tasks.classification import sample_size_entry

Z_975, Z_80 = 1.959963984540054, 0.8416212335729143  # standard normal quantiles


def _comparison(n, errors_a, errors_b, a_only, b_only, p=0.5):
    return {"a": "keras-float", "b": "ptq/tflm-host", "n": n, "error_rate_a": errors_a / n, "error_rate_b": errors_b / n,
            "a_only_correct": a_only, "b_only_correct": b_only, "mcnemar_p": p}


def _connor(psi: float, delta: float) -> int:
    """Connor (1987), eq. 3, written out by hand: paired samples for McNemar at alpha 0.05, power 0.8."""
    return math.ceil((Z_975 * math.sqrt(psi) + Z_80 * math.sqrt(psi - delta * delta)) ** 2 / (delta * delta))


def _exact_mcnemar_power(n: int, p_a_only: float, p_b_only: float, alpha: float = 0.05) -> float:
    """Power of the exact (conditional binomial) McNemar test with n pairs, summed exactly."""
    psi = p_a_only + p_b_only
    discordant = np.arange(n + 1)
    weights = sps.binom.pmf(discordant, n, psi)
    power = 0.0
    for d, w in zip(discordant, weights):
        if w < 1e-12 or d == 0:
            continue
        k = np.arange(d + 1)
        p_values = np.minimum(1.0, 2 * np.minimum(sps.binom.cdf(k, d, 0.5), sps.binom.sf(k - 1, d, 0.5)))
        power += w * sps.binom.pmf(k, d, p_a_only / psi)[p_values < alpha].sum()
    return float(power)


def test_sample_size_statement_matches_connors_formula_computed_by_hand():
    # 360 test samples: a right/b wrong on 9, the reverse on 3 -> a 6/360 gap with 12/360 discordance.
    c = _comparison(360, errors_a=13, errors_b=19, a_only=9, b_only=3, p=0.146)
    entry = sample_size_entry(c, gap_points=1.0)
    assert entry["samples_needed"] == _connor(12 / 360, 6 / 360) == 940  # (1.96·0.1826 + 0.8416·0.1818)² / (1/60)² = 939.5
    # A 1-point gap around the better rung, with the measured discordance (12/360 > 1%).
    assert entry["samples_needed_for_given_gap"] == _connor(12 / 360, 0.01)
    assert not entry["distinguishable"]
    report = {"task": "classification", "rungs": [], "comparisons": [{**c, "diff_points": 100 * 6 / 360,
                                                                       "verdict": "not distinguishable at n=360"}]}
    sentences = " ".join(finding_b(report, {"sample_size": [entry]}))
    assert "about 940 test samples" in sentences
    assert f"about {_connor(12 / 360, 0.01):,} test samples" in sentences


def test_stated_sample_size_gives_the_promised_power():
    """At the stated n the exact McNemar test has about 80% power; at a third of it, far less."""
    c = _comparison(360, errors_a=13, errors_b=19, a_only=9, b_only=3)
    n = sample_size_entry(c, gap_points=1.0)["samples_needed"]
    power = _exact_mcnemar_power(n, p_a_only=9 / 360, p_b_only=3 / 360)
    assert 0.72 <= power <= 0.88, power  # the normal approximation is close to, not exactly, the exact test
    assert _exact_mcnemar_power(n // 3, 9 / 360, 3 / 360) < 0.5


def test_given_gap_without_enough_measured_discordance_uses_the_smallest_possible():
    # Two rungs that agree on every sample: the 2-point gap needs at least 2% discordance.
    c = _comparison(500, errors_a=20, errors_b=20, a_only=0, b_only=0, p=1.0)
    entry = sample_size_entry(c, gap_points=2.0)
    assert entry["samples_needed"] is None  # no observed gap
    assert entry["given_gap_discordant_rate"] == pytest.approx(0.02)
    assert entry["samples_needed_for_given_gap"] == _connor(0.02, 0.02)


@pytest.mark.qemu
def test_explain_on_digits_cnn_states_findings_with_numbers(pio_core, tmp_path):
    out = tmp_path / "explain"
    proc = subprocess.run([sys.executable, "-m", "mcuquant", "explain", "--data", "builtin:digits", "--model", "zoo:cnn",
                           "--out", str(out), "--quiet"], capture_output=True, text=True, timeout=900, cwd=tmp_path,
                          env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    explain = report["explain"]
    assert [f["id"] for f in explain["findings"]] == ["a", "b", "c", "d"]
    for f in explain["findings"]:
        assert f"({f['id']}) {f['title']}" in proc.stdout
        assert re.search(r"\d", " ".join(f["sentences"])), f  # every finding has numbers

    # (a) the diff behind the sentence: sorted by relative scale difference, predictions counted.
    diff = explain["weights_copied"]["diff"]
    rel = [t["relative_scale_difference"] for t in diff["tensors"]]
    assert rel == sorted(rel, reverse=True)
    assert diff["outputs"]["n"] == report["dataset"]["n_test"]
    a_text = " ".join(explain["findings"][0]["sentences"])
    assert f"{diff['outputs']['class_flips']} prediction" in a_text

    # (b) intervals of the ladder rungs appear in the sentences.
    rungs = {r["id"]: r for r in report["rungs"]}
    b_text = " ".join(explain["findings"][1]["sentences"])
    lo, hi = rungs["keras-float"]["ci95"]
    assert f"95% CI {100 * lo:.2f}%-{100 * hi:.2f}%" in b_text

    # (c) both calibrations evaluated on the same test split.
    cal = explain["calibration"]
    assert [r["n"] for r in cal["rungs"]] == [report["dataset"]["n_test"]] * 2

    # (d) every device-vs-float disagreement is attributed; recount them from rungs.npz.
    with np.load(out / "rungs.npz") as npz:
        ids = list(npz["ids"])
        pred = {rid: npz[f"pred{i}"] for i, rid in enumerate(ids)}
    device = explain["device"]
    for variant in ("ptq", "qat"):
        rows = [e for e in device["disagreements"] if e["rung"] == f"{variant}/device"]
        expected = np.flatnonzero(pred[f"{variant}/device"] != pred["keras-float"])
        assert {e["index"] for e in rows} >= set(expected.tolist())
        for e in rows:
            assert e["step"] in ("quantization", "kernel implementation", "transport")
            assert e["device_class"] == pred[f"{variant}/device"][e["index"]]
    assert sum(device["by_step"].values()) == len(device["disagreements"])
    assert "from quantization" in " ".join(explain["findings"][3]["sentences"])

    # The report files exist beside report.json; their rendering is tested in test_render.py.
    assert (out / "report.html").stat().st_size > 10_000 and (out / "report.md").is_file()

    # `mcuquant diff` between the QAT-converted and the weights-copied PTQ model lists the tensors whose
    # scale differs, largest relative difference first.
    proc = subprocess.run([sys.executable, "-m", "mcuquant", "diff", str(out / "qat.tflite"),
                           str(out / "qat_weights_ptq.tflite"), "--data", "builtin:digits",
                           "--json", str(tmp_path / "diff.json")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "diff.json").read_text())
    differing = [t for t in result["tensors"] if t["relative_scale_difference"] > 0]
    assert differing and [t["relative_scale_difference"] for t in differing] == sorted(
        (t["relative_scale_difference"] for t in differing), reverse=True)
    assert differing[0]["name_a"] in proc.stdout or differing[0]["op"] in proc.stdout

    # Attribution of bytes that differ from tflm-host, on this real work folder and its real emulated
    # device. (1) A device output altered in rungs.npz, as a corrupted transfer would leave it: the
    # re-run on the device returns other bytes -> transport. (2) The device's output restored and
    # tflm-host's altered instead, as a TFLM kernel that rounds differently would: the re-run
    # reproduces the device's bytes and builtin-host (the same runtime on the host) agrees with the
    # device -> kernel implementation.
    from mcuquant.explain import device_scenario
    from mcuquant.ladder import load_rungs, save_rungs

    rungs = load_rungs(out / "rungs.npz")
    by_id = {r.id: r for r in rungs}
    sample = int(np.flatnonzero(pred["ptq/device"] == pred["keras-float"])[0])
    by_id["ptq/device"].raw[sample].flat[0] ^= 0x40
    save_rungs(rungs, out / "rungs.npz")
    step = {(e["rung"], e["index"]): e["step"] for e in device_scenario(report, out)["disagreements"]}
    assert step[("ptq/device", sample)] == "transport"
    by_id["ptq/device"].raw[sample].flat[0] ^= 0x40
    by_id["ptq/tflm-host"].raw[sample].flat[0] ^= 0x40
    save_rungs(rungs, out / "rungs.npz")
    rows = {(e["rung"], e["index"]): e for e in device_scenario(report, out)["disagreements"]}
    assert rows[("ptq/device", sample)]["step"] == "kernel implementation"
    assert "host gives the device's bytes" in rows[("ptq/device", sample)]["why"]
    assert ("qat/device", sample) not in rows or rows[("qat/device", sample)]["step"] == "quantization"

def test_explain_phrases_regression_findings_in_mae(tmp_path, capsys):
    from mcuquant.cli import main

    rng = np.random.default_rng(0)
    data = tmp_path / "reg.npz"
    x = rng.random((200, 4)).astype(np.float32)
    np.savez(data, x=x, y=(x[:, 0] + 0.5 * x[:, 1]).astype(np.float32))
    out = tmp_path / "w"
    assert main(["explain", "--data", str(data), "--model", "zoo:mlp", "--epochs", "10", "--qat-epochs", "1",
                 "--out", str(out), "--no-device", "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    findings = {f["id"]: " ".join(f["sentences"]) for f in report["explain"]["findings"]}
    float_rung = next(r for r in report["rungs"] if r["id"] == "keras-float")
    assert f"MAE {float_rung['mae']:.4g}" in findings["b"] and "Wilcoxon" in findings["b"]
    assert "class" not in findings["b"] and report["explain"]["sample_size"] == []
    assert "MAE" in findings["c"]
