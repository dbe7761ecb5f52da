"""`mcuquant explain`: where the accuracy went, in sentences with numbers.

It runs the ladder (mcuquant.ladder) on the user's model and data, then the scenarios that the
questions in the field keep asking about, and states each finding:

(a) QAT converted to int8 vs the QAT weights copied into the float model and converted with PTQ:
    which activation ranges moved, by how much, and how many predictions changed (mcuquant.diff);
(b) float vs QAT vs PTQ with 95% intervals, whether the differences are distinguishable at this
    test-set size (McNemar), and how many test samples would resolve the gap (Connor 1987);
(c) whether calibrating PTQ on the evaluated samples flatters the int8 model: the same model
    calibrated on the train split (disjoint) and on the test split, both evaluated on the test split;
(d) host vs device: every test sample on which the device's prediction differs from the float
    model's, or whose output bytes differ from tflm-host's, attributed to a step - quantization
    (tflm-host computes the same bytes on the host), kernel implementation (the device's runtime
    differs from TFLM's reference kernels and the host build of the same runtime agrees with the
    device) or transport (corrupted or resent frames; a re-run of the sample on the device gives
    other bytes).

Per-layer quantization errors (mcuquant.layers) of both int8 models go into the same report. Every
number lands in report.json under "explain", rendered as report.html and report.md (mcuquant.render).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mcuquant import stats
from mcuquant.config import Config
from mcuquant.errors import ConfigError
from mcuquant.progress import console

DEFAULT_GAP_POINTS = 1.0  # the gap (percentage points) whose sample size finding (b) states
LAYER_SAMPLES = 200  # test samples the per-layer errors are computed on
ORACLE = "tflm-host"
FLOAT32_ROUNDING = 1e-6  # relative scale differences below this are float32 rounding of the same range


def run_explain(cfg: Config, out_dir: str | Path, *, board: str | None = "qemu-nano33",
                gap_points: float = DEFAULT_GAP_POINTS, progress: bool = True) -> dict:
    """Ladder + scenarios (a)-(d) + per-layer errors; writes report.json, report.html and report.md.

    ``board``: the emulated (or physical) board of scenario (d); None skips the device.
    """
    from mcuquant.diff import copy_qat_weights
    from mcuquant.ladder import evaluate_ladder, prepare, write_json
    from mcuquant.render import write_report

    if not 0 < gap_points < 100:
        raise ConfigError(f"--gap must be between 0 and 100 percentage points, not {gap_points}")
    if board is not None:
        from mcuquant.boards import get_board

        get_board(board)  # an unknown board fails before any training
    data = cfg.data.load()
    if data.task != "classification":  # before any training
        raise ConfigError("`mcuquant explain` explains classification error rates; this data is a regression task. "
                          "`mcuquant compare` gives its MAE ladder, `mcuquant layers` its per-layer errors")
    prep = prepare(cfg, out_dir, progress=progress, data=data)
    report = evaluate_ladder(prep, progress=progress)
    if board is not None:
        from mcuquant.device.validate import validate

        console.print(f"measuring the int8 models on {board}")
        report = validate(board, prep.out, progress=progress)

    console.print("explaining: QAT vs weights copied + PTQ, calibration split, per-layer errors")
    qat_weights = copy_qat_weights(prep.qat_model, prep.float_model)  # the float model holding QAT's weights
    explain = {
        "weights_copied": weights_copied_scenario(prep, qat_weights),
        "sample_size": sample_size_entries(report, gap_points),
        "calibration": calibration_scenario(prep),
        "device": device_scenario(report, prep.out) if board is not None else None,
        "layers": layer_scenario(prep, qat_weights, progress=progress),
        "gap_points": gap_points,
    }
    explain["findings"] = findings(report, explain)
    report["explain"] = explain
    write_json(report, prep.out / "report.json")
    files = write_report(report, prep.out)
    report["artifacts"].update(html=Path(files["html"]).name, markdown=Path(files["markdown"]).name)
    write_json(report, prep.out / "report.json")
    return report


# ---------------------------------------------------------------------------------------------
# (a) QAT converted vs weights copied + PTQ


def weights_copied_scenario(prep, qat_weights) -> dict:
    """Seed 000: the QAT model's weights copied into the float model (``qat_weights``), converted with
    PTQ, compared with qat.tflite."""
    from mcuquant.diff import diff_models
    from mcuquant.quantize import convert_ptq

    conv = convert_ptq(qat_weights, prep.representative, per_channel=prep.cfg.quantization.per_channel)
    (prep.out / "qat_weights_ptq.tflite").write_bytes(conv.tflite)
    qat = next(c for c in prep.conversions if c.variant == "qat")
    diff = diff_models(qat.tflite, conv.tflite, name_a="qat.tflite", name_b="qat_weights_ptq.tflite",
                       x=prep.data.x_test, y=prep.data.y_test, classification=True)
    return {"model": "qat_weights_ptq.tflite", "diff": diff}


# ---------------------------------------------------------------------------------------------
# (b) float vs QAT vs PTQ: intervals, distinguishability, sample size

B_PAIRS = (("keras-float", f"ptq/{ORACLE}"), ("keras-float", f"qat/{ORACLE}"), (f"ptq/{ORACLE}", f"qat/{ORACLE}"),
           ("keras-float", "keras-qat"))


def sample_size_entry(comparison: dict, gap_points: float) -> dict:
    """How many test samples McNemar's test needs (alpha 0.05, power 0.8) to resolve the observed gap
    and a gap of ``gap_points``, with the discordance this test split measured (or the minimal one).
    """
    n = comparison["n"]
    ea, eb = comparison["error_rate_a"], comparison["error_rate_b"]
    discordant = (comparison["a_only_correct"] + comparison["b_only_correct"]) / n
    entry = {"a": comparison["a"], "b": comparison["b"], "n": n, "error_rate_a": ea, "error_rate_b": eb,
             "gap_points": 100 * (eb - ea), "discordant_rate": discordant, "mcnemar_p": comparison["mcnemar_p"],
             "distinguishable": comparison["mcnemar_p"] < 0.05}
    # From the discordant counts themselves: no rounding can put the gap above the discordance.
    a_only, b_only = comparison["a_only_correct"] / n, comparison["b_only_correct"] / n
    entry["samples_needed"] = stats.mcnemar_sample_size(a_only, b_only) if a_only != b_only else None
    # The given gap: around the better rung's error rate, with the measured discordance when it can
    # hold such a gap, else the smallest discordance that can (every discordant sample one way).
    gap = gap_points / 100
    base = min(ea, eb)
    d = min(max(discordant, gap), min(2 * base + gap, 2.0 - 2 * base - gap))
    entry["given_gap_points"] = gap_points
    entry["given_gap_discordant_rate"] = d
    entry["samples_needed_for_given_gap"] = (stats.mcnemar_sample_size((d + gap) / 2, (d - gap) / 2)
                                             if base + gap <= 1 else None)  # no error rate above 100%
    return entry


def sample_size_entries(report: dict, gap_points: float) -> list[dict]:
    by_pair = {(c["a"], c["b"]): c for c in report["comparisons"]}
    return [sample_size_entry(by_pair[p], gap_points) for p in B_PAIRS if p in by_pair]


# ---------------------------------------------------------------------------------------------
# (c) calibration on the evaluated split


def calibration_scenario(prep) -> dict:
    """PTQ calibrated on the train split vs on the test split itself, both evaluated on the test split."""
    from mcuquant.interpreters import Runner, quantize
    from mcuquant.ladder import Rung, score_rungs
    from mcuquant.quantize import convert_ptq, representative_samples

    data = prep.data
    n_cal = min(len(prep.representative), len(data.x_test))
    on_train = prep.representative[:n_cal]
    on_test = representative_samples(data.x_test, n_cal, prep.cfg.data.seed)
    rungs = []
    for name, samples in (("ptq-calibrated-on-train", on_train), ("ptq-calibrated-on-test", on_test)):
        tflite = convert_ptq(prep.float_model, samples, per_channel=prep.cfg.quantization.per_channel).tflite
        (prep.out / f"{name}.tflite").write_bytes(tflite)
        runner = Runner(ORACLE, tflite)
        raw = runner.run(quantize(data.x_test, runner.input), progress=False)
        rungs.append(Rung(f"{name}/{ORACLE}", np.argmax(raw.reshape(len(raw), -1), axis=1), raw))
    results, comparisons = score_rungs(rungs, data.y_test, data.task)
    return {"calibration_samples": n_cal, "evaluated_on": "test split", "rungs": results,
            "comparison": comparisons[0]}


# ---------------------------------------------------------------------------------------------
# (d) host vs device


def device_scenario(report: dict, work: Path) -> dict | None:
    """Each sample where a device rung disagrees with the float model or with tflm-host, and why."""
    from mcuquant.data import Dataset
    from mcuquant.ladder import RUNGS_FILE, load_rungs

    rungs = {r.id: r for r in load_rungs(work / RUNGS_FILE)}
    details = {r["id"]: r for r in report["rungs"]}
    y = Dataset.load(work / "dataset.npz").y_test
    entries, by_step, boards = [], {"quantization": 0, "kernel implementation": 0, "transport": 0}, set()
    links = {}
    for rid in [r for r in rungs if r.endswith("/device")]:
        variant = rid.split("/")[0]
        device, host = rungs[rid], rungs[f"{variant}/{ORACLE}"]
        builtin = rungs.get(f"{variant}/builtin-host")
        detail = details[rid]
        boards.add(detail.get("board"))
        links[rid] = detail.get("link", {})
        n = len(device.predictions)
        same_bytes = (device.raw.reshape(n, -1) == host.raw.reshape(n, -1)).all(axis=1)
        differs_from_float = device.predictions != rungs["keras-float"].predictions
        rerun = _rerun_on_device(detail, work, variant, np.flatnonzero(~same_bytes))
        for i in np.flatnonzero(differs_from_float | ~same_bytes):
            if same_bytes[i]:
                step, why = "quantization", "tflm-host computes the same int8 output on the host"
            elif i in rerun and not np.array_equal(rerun[i], device.raw[i]):
                step, why = "transport", "a re-run of this sample on the device returned other bytes"
            elif (builtin is not None and detail.get("backend") == "builtin"
                  and np.array_equal(builtin.raw[i], device.raw[i])):
                step, why = "kernel implementation", "mcuquant's runtime on the host gives the device's bytes"
            else:
                step, why = "kernel implementation", "the device build differs from both host runtimes"
            by_step[step] += 1
            entries.append({"rung": rid, "index": int(i), "label": int(y[i]),
                            "float_class": int(rungs["keras-float"].predictions[i]),
                            "host_class": int(host.predictions[i]), "device_class": int(device.predictions[i]),
                            "byte_identical_with_host": bool(same_bytes[i]), "step": step, "why": why})
    if not links:
        return None
    return {"board": ", ".join(sorted(b for b in boards if b)), "disagreements": entries, "by_step": by_step,
            "links": links}


def _rerun_on_device(detail: dict, work: Path, variant: str, indices: np.ndarray) -> dict[int, np.ndarray]:
    """Send the samples whose bytes differed from tflm-host to the device again: {index: output}.

    An emulated board runs its ELF again; a physical board is found on its USB port and must still
    run the same model (the handshake checks its hash)."""
    if not len(indices) or (detail.get("emulated") and not detail.get("elf")):
        return {}
    from mcuquant.boards import get_board
    from mcuquant.device import harness

    xq = np.load(work / f"{variant}_test_inputs.npy")[indices]
    with harness.open_device(get_board(detail["board"]), elf=detail.get("elf") if detail.get("emulated") else None,
                             expected_sha256=detail.get("model_sha256")) as link:
        run = harness.measure(link, xq, label=f"{variant}/device re-run", progress=False)
    return {int(i): out for i, out in zip(indices, run.outputs)}


# ---------------------------------------------------------------------------------------------
# Per-layer errors


def layer_scenario(prep, qat_weights, *, progress: bool = True) -> dict:
    """Per-layer errors of the PTQ model against the float model, and of the QAT model against the float
    model holding the QAT weights (so QAT's weight changes are not counted as quantization error)."""
    from mcuquant.layers import layer_errors

    x = prep.data.x_test[:LAYER_SAMPLES]
    by_variant = {c.variant: c for c in prep.conversions}
    result = {"ptq": layer_errors(prep.float_model, by_variant["ptq"].tflite, x, representative=prep.representative,
                                  progress=progress)}
    result["qat"] = layer_errors(qat_weights, by_variant["qat"].tflite, x, progress=progress)
    result["qat"]["reference"] = "float model with the QAT weights"
    return result


# ---------------------------------------------------------------------------------------------
# Sentences


def _pct(rate: float) -> str:
    return f"{100 * rate:.2f}%"


def _rung_text(rung: dict) -> str:
    lo, hi = rung["ci95"]
    return f"{rung['id']} {_pct(rung['error_rate'])} (95% CI {_pct(lo)}-{_pct(hi)}, {rung['errors']}/{rung['n']})"


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def finding_a(explain: dict) -> list[str]:
    diff = explain["weights_copied"]["diff"]
    s, out = diff["summary"], diff["outputs"]
    moved = [t for t in diff["tensors"] if t["kind"] in ("input", "activation") and
             (t["relative_scale_difference"] > FLOAT32_ROUNDING or t["zero_point_differs"])]
    n_act = sum(1 for t in diff["tensors"] if t["kind"] in ("input", "activation"))
    sentences = [f"Converting the QAT model directly and converting its weights copied into the float model with "
                 f"PTQ give two different int8 models: {len(moved)} of {n_act} activation tensors have another "
                 f"scale or zero point, and {s['constants_differ']} weight or bias buffers differ."]
    if moved:
        top = moved[0]
        layer = "+".join(top["keras_layers"]) or top["name_a"]
        sentences.append(
            f"The largest move is at {top['op']} ({layer}): scale {top['scale_a'][0]:.6g} (QAT) vs "
            f"{top['scale_b'][0]:.6g} (weights copied + PTQ), {100 * top['relative_scale_difference']:.1f}% apart"
            + (f"; zero point {top['zero_point_a'][0]} vs {top['zero_point_b'][0]}." if top["zero_point_differs"]
               else "."))
    sentences.append("QAT learned its activation ranges during training (the fake-quant ranges travel with the QAT "
                     "model); the copied weights lose them, so PTQ recalibrates every range from the representative "
                     "samples. The same weights with other ranges round differently.")
    if out:
        sentences.append(f"On the {out['n']} test samples the two models predict the same class for "
                         f"{out['same_prediction']} ({_pct(out['agreement_rate'])}); {_count(out['class_flips'], 'prediction')} "
                         f"changed. Error rates: {_pct(out['error_rate_a'])} (QAT converted) vs "
                         f"{_pct(out['error_rate_b'])} (weights copied + PTQ).")
    return sentences


def finding_b(report: dict, explain: dict) -> list[str]:
    rungs = {r["id"]: r for r in report["rungs"]}
    shown = [rungs[i] for i in ("keras-float", "keras-qat", f"ptq/{ORACLE}", f"qat/{ORACLE}") if i in rungs]
    sentences = ["Error rates on the test split: " + "; ".join(_rung_text(r) for r in shown) + "."]
    for e in explain["sample_size"]:
        verdict = ("distinguishable" if e["distinguishable"] else "not distinguishable")
        text = (f"{e['a']} vs {e['b']}: {e['gap_points']:+.2f} points, {verdict} at n={e['n']} "
                f"(McNemar exact p={e['mcnemar_p']:.3g}; the two disagree on {_pct(e['discordant_rate'])} of samples)")
        if e["samples_needed"] is not None and not e["distinguishable"]:
            text += (f"; a gap this size would need about {e['samples_needed']:,} test samples to resolve "
                     "(alpha 0.05, power 0.8)")
        sentences.append(text + ".")
    if explain["sample_size"] and explain["sample_size"][0]["samples_needed_for_given_gap"]:
        e = explain["sample_size"][0]
        sentences.append(f"Resolving a {e['given_gap_points']:g}-point gap between {e['a']} and {e['b']} needs about "
                         f"{e['samples_needed_for_given_gap']:,} test samples (discordance "
                         f"{_pct(e['given_gap_discordant_rate'])}; this split has {e['n']}).")
    return sentences


def finding_c(explain: dict) -> list[str]:
    cal = explain["calibration"]
    train, test = cal["rungs"]
    c = cal["comparison"]
    gap = 100 * (test["error_rate"] - train["error_rate"])
    if c["mcnemar_p"] < 0.05:
        verdict = "a real difference at this size" + (": calibrating on the evaluated samples flatters the int8 "
                                                       "model" if gap < 0 else "")
    else:
        verdict = "not distinguishable at this size: here the calibration split does not flatter the int8 model"
    return [f"PTQ calibrated on {cal['calibration_samples']} train samples (disjoint from the evaluation): "
            f"{_rung_text(train).split(' ', 1)[1]}; calibrated on {cal['calibration_samples']} of the evaluated test "
            f"samples: {_rung_text(test).split(' ', 1)[1]}.",
            f"Difference {gap:+.2f} points, McNemar exact p={c['mcnemar_p']:.3g}, {c['a_only_correct'] + c['b_only_correct']} "
            f"samples classified differently: {verdict}.",
            "Calibration only sets activation ranges (it never sees the labels), so evaluating on the calibration "
            "data can flatter the int8 model only through ranges that fit those samples' extremes."]


def finding_d(report: dict, explain: dict) -> list[str]:
    dev = explain["device"]
    if dev is None:
        return ["No device was measured (--no-device).", _host_kernel_sentence(report)]
    sentences = []
    details = {r["id"]: r for r in report["rungs"]}
    for rid, link in dev["links"].items():
        rows = [e for e in dev["disagreements"] if e["rung"] == rid]
        steps = {s: sum(1 for e in rows if e["step"] == s) for s in ("quantization", "kernel implementation", "transport")}
        r = details[rid]
        sentences.append(
            f"{rid} on {r.get('board')} ({r.get('backend')} runtime): byte-identical with tflm-host on "
            f"{r['bit_exact']}/{r['n']} samples; {_count(len(rows), 'sample')} where it disagrees with the float model "
            f"or with tflm-host: {steps['quantization']} from quantization (the int8 model predicts the same on the "
            f"host), {steps['kernel implementation']} from the kernel implementation, {steps['transport']} from "
            f"transport ({link.get('resends', 0)} resent and {link.get('bad_frames', 0)} corrupted frames, all "
            "recovered by the CRC-checked protocol).")
    sentences.append(_host_kernel_sentence(report))
    return sentences


def _host_kernel_sentence(report: dict) -> str:
    parts = []
    for a in report.get("agreement", []):
        if a["a"] in ("litert", "builtin-host") and a["b"] == ORACLE:
            parts.append(f"{a['variant']}: {a['a']} vs {a['b']} byte-identical on {a['bit_exact']}/{a['n']} "
                         f"({_count(a['class_flips'], 'class flip')})")
    return ("On the host, kernel implementations differ as follows: " + "; ".join(parts) + "."
            if parts else "No host interpreter agreement was measured.")


def findings(report: dict, explain: dict) -> list[dict]:
    return [
        {"id": "a", "title": "QAT converted vs QAT weights copied into the float model + PTQ",
         "sentences": finding_a(explain)},
        {"id": "b", "title": "Float vs QAT vs PTQ: intervals and sample size", "sentences": finding_b(report, explain)},
        {"id": "c", "title": "Does evaluating on the calibration data flatter the int8 model?",
         "sentences": finding_c(explain)},
        {"id": "d", "title": "Host vs device disagreements, by step", "sentences": finding_d(report, explain)},
    ]
