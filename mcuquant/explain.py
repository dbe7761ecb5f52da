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
from mcuquant.tasks import get_task

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
    prep = prepare(cfg, out_dir, progress=progress, data=data)
    report = evaluate_ladder(prep, progress=progress)
    if board is not None:
        from mcuquant.device.validate import validate

        console.print(f"measuring the int8 models on {board}")
        report = validate(board, prep.out, progress=progress)

    console.print("explaining: " + ("QAT vs weights copied + PTQ, " if prep.qat_model is not None else "")
                  + "calibration split, per-layer errors")
    # The float model holding QAT's weights; an exported SavedModel has no QAT model, hence no finding (a).
    qat_weights = None if prep.qat_model is None else copy_qat_weights(prep.qat_model, prep.float_model)
    explain = {
        "weights_copied": None if qat_weights is None else weights_copied_scenario(prep, qat_weights),
        "no_qat": prep.qat_history.get("skipped"),
        "sample_size": sample_size_entries(report, gap_points, prep.out),
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
                       x=prep.data.x_test, y=prep.data.y_test, task=prep.data.task)
    return {"model": "qat_weights_ptq.tflite", "diff": diff, "qat_ranges": prep.qat_history.get("activation_ranges")}


# ---------------------------------------------------------------------------------------------
# (b) float vs QAT vs PTQ: intervals, distinguishability, sample size

B_PAIRS = (("keras-float", f"ptq/{ORACLE}"), ("keras-float", f"qat/{ORACLE}"), (f"ptq/{ORACLE}", f"qat/{ORACLE}"),
           ("keras-float", "keras-qat"))


def sample_size_entries(report: dict, gap_points: float, work: Path) -> list[dict]:
    """How many test samples each pair of finding (b) needs to be told apart, as the task's test says
    (classification: McNemar, Connor 1987; anomaly: paired DeLong, Obuchowski & McClish 1997)."""
    from mcuquant.data import Dataset
    from mcuquant.ladder import RUNGS_FILE, load_rungs

    task = get_task(report["task"])
    predictions = {r.id: r.predictions for r in load_rungs(work / RUNGS_FILE)}
    y = Dataset.load(work / "dataset.npz").y_test
    by_pair = {(c["a"], c["b"]): c for c in report["comparisons"]}
    entries = [task.sample_size(by_pair[(a, b)], predictions[a], predictions[b], y, gap_points)
               for a, b in B_PAIRS if (a, b) in by_pair]
    return [e for e in entries if e is not None]


# ---------------------------------------------------------------------------------------------
# (c) calibration on the evaluated split


def calibration_scenario(prep) -> dict:
    """PTQ calibrated on the train split vs on the test split itself, both evaluated on the test split."""
    from mcuquant.interpreters import Runner, dequantize, quantize
    from mcuquant.ladder import Rung, score_rungs
    from mcuquant.quantize import convert_ptq, representative_samples

    data = prep.data
    task = get_task(data.task)
    n_cal = min(len(prep.representative), len(data.x_test))
    on_train = prep.representative[:n_cal]
    on_test = representative_samples(data.x_test, n_cal, prep.cfg.data.seed)
    rungs = []
    for name, samples in (("ptq-calibrated-on-train", on_train), ("ptq-calibrated-on-test", on_test)):
        tflite = convert_ptq(prep.float_model, samples, per_channel=prep.cfg.quantization.per_channel).tflite
        (prep.out / f"{name}.tflite").write_bytes(tflite)
        runner = Runner(ORACLE, tflite)
        raw = runner.run(quantize(data.x_test, runner.input), progress=False)
        outputs = dequantize(raw, runner.output)
        rungs.append(Rung(f"{name}/{ORACLE}", task.predictions(outputs, data.x_test, data.y_test.shape), raw))
    results, comparisons = score_rungs(rungs, data.y_test, data.task)
    return {"calibration_samples": n_cal, "evaluated_on": "test split", "rungs": results,
            "comparison": comparisons[0]}


# ---------------------------------------------------------------------------------------------
# (d) host vs device


def device_scenario(report: dict, work: Path) -> dict | None:
    """Each sample where a device rung predicts otherwise than the float model (classes) or gives other
    bytes than tflm-host, and why."""
    from mcuquant.data import Dataset
    from mcuquant.ladder import RUNGS_FILE, load_rungs

    rungs = {r.id: r for r in load_rungs(work / RUNGS_FILE)}
    details = {r["id"]: r for r in report["rungs"]}
    task = get_task(report["task"])
    y = Dataset.load(work / "dataset.npz").y_test
    float_rung = rungs["keras-float"]
    entries, by_step, boards = [], {"quantization": 0, "kernel implementation": 0, "transport": 0}, set()
    links, agreement_with_float = {}, {}
    for rid in [r for r in rungs if r.endswith("/device")]:
        variant = rid.split("/")[0]
        device, host = rungs[rid], rungs[f"{variant}/{ORACLE}"]
        builtin = rungs.get(f"{variant}/builtin-host")
        detail = details[rid]
        boards.add(detail.get("board"))
        links[rid] = detail.get("link", {})
        n = len(device.predictions)
        same_bytes = (device.raw.reshape(n, -1) == host.raw.reshape(n, -1)).all(axis=1)
        differs_from_float = task.disagreements(device.predictions, float_rung.predictions)
        if differs_from_float is None:  # continuous predictions: how closely the device follows the float model
            differs_from_float = np.zeros(n, dtype=bool)
            agreement_with_float[rid] = _value_agreement(float_rung.predictions, device.predictions)
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
            entry = {"rung": rid, "index": int(i), "byte_identical_with_host": bool(same_bytes[i]), "step": step,
                     "why": why}
            if task.has_classes:
                entry.update(label=int(y[i]), float_class=int(float_rung.predictions[i]),
                             host_class=int(host.predictions[i]), device_class=int(device.predictions[i]))
            else:
                entry.update(label=np.asarray(y[i]).tolist(), float_value=np.asarray(float_rung.predictions[i]).tolist(),
                             host_value=np.asarray(host.predictions[i]).tolist(),
                             device_value=np.asarray(device.predictions[i]).tolist())
            entries.append(entry)
    if not links:
        return None
    return {"board": ", ".join(sorted(b for b in boards if b)), "disagreements": entries, "by_step": by_step,
            "links": links, "agreement_with_float": agreement_with_float}


def _value_agreement(a: np.ndarray, b: np.ndarray) -> dict:
    """Two rungs' continuous predictions (values, anomaly scores): rank correlation and differences."""
    return stats.score_agreement(np.asarray(a, dtype=np.float64).reshape(len(a), -1).mean(axis=1),
                                 np.asarray(b, dtype=np.float64).reshape(len(b), -1).mean(axis=1))


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
    if qat_weights is not None:
        result["qat"] = layer_errors(qat_weights, by_variant["qat"].tflite, x, progress=progress)
        result["qat"]["reference"] = "float model with the QAT weights"
    return result


# ---------------------------------------------------------------------------------------------
# Sentences


def _pct(rate: float) -> str:
    return f"{100 * rate:.2f}%"


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _qat_range_sentence(status: dict | None) -> str | None:
    """Whether QAT's activation ranges were learned at all, or still sit near tfmot's initial [-6, 6]."""
    if not status or not status.get("ranges"):
        return None
    if status["learned"]:
        return (f"QAT ran {status['steps']:,} training steps, enough for its activation ranges to leave tfmot's "
                f"initial [-6, 6] ({100 * status['initial_share_left']:.1f}% of it left): the QAT ranges were learned.")
    widest = max(status["ranges"], key=lambda r: r["max"] - r["min"])
    return (f"Careful: QAT ran only {status['steps']:,} training steps, and tfmot moves each activation range "
            f"towards the data by {100 * (1 - status['ema_decay']):.1f}% a step, so {100 * status['initial_share_left']:.0f}% "
            f"of its initial [-6, 6] is still in every range (e.g. {widest['layer']}: "
            f"[{widest['min']:.3g}, {widest['max']:.3g}]). The QAT model's activation scales are mostly tfmot's "
            f"initial values, not learned ones; about {status['steps_needed']:,} steps would be needed "
            "(more QAT epochs, [training] qat_epochs, or a smaller batch_size).")


def finding_a(explain: dict) -> list[str]:
    if explain["weights_copied"] is None:
        return [f"No QAT model to compare: {explain['no_qat']}."]
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
    ranges = explain["weights_copied"].get("qat_ranges")
    if ranges and ranges.get("ranges") and not ranges["learned"]:
        sentences.append("The QAT model keeps the activation ranges its fake-quant layers hold; the copied weights "
                         "lose them, so PTQ recalibrates every range from the representative samples.")
    else:
        sentences.append("QAT learned its activation ranges during training (the fake-quant ranges travel with the "
                         "QAT model); the copied weights lose them, so PTQ recalibrates every range from the "
                         "representative samples. The same weights with other ranges round differently.")
    range_sentence = _qat_range_sentence(ranges)
    if range_sentence:
        sentences.append(range_sentence)
    if out:
        text = (f"On the {out['n']} test samples the two models give the same "
                f"{'class' if out['class_flips'] is not None else 'output'} for {out['same_prediction']} "
                f"({_pct(out['agreement_rate'])})")
        if out["class_flips"] is not None:
            text += (f"; {_count(out['class_flips'], 'prediction')} changed. Error rates: {_pct(out['error_rate_a'])} "
                     f"(QAT converted) vs {_pct(out['error_rate_b'])} (weights copied + PTQ).")
        elif out.get("comparison"):
            text += f" (largest output difference {out['max_abs_output_difference']:.3g}); {out['comparison']['verdict']}."
        else:
            text += "."
        sentences.append(text)
    return sentences


def finding_b(report: dict, explain: dict) -> list[str]:
    task = get_task(report["task"])
    rungs = {r["id"]: r for r in report["rungs"]}
    shown = [rungs[i] for i in ("keras-float", "keras-qat", f"ptq/{ORACLE}", f"qat/{ORACLE}") if i in rungs]
    sentences = [f"{task.metric_label} on the test split: " + "; ".join(task.rung_text(r) for r in shown) + "."]
    by_pair = {(c["a"], c["b"]): c for c in report["comparisons"]}
    sizes = {(e["a"], e["b"]): e for e in explain["sample_size"]}
    for pair in B_PAIRS:
        if pair not in by_pair:
            continue
        text = task.comparison_text(by_pair[pair])
        e = sizes.get(pair)
        if e and e["samples_needed"] is not None and not e["distinguishable"]:
            text += (f"; a gap this size would need about {e['samples_needed']:,} test samples to resolve "
                     "(alpha 0.05, power 0.8, with the discordance measured here)")
        sentences.append(text + ".")
    if explain["sample_size"] and explain["sample_size"][0].get("samples_needed_for_given_gap"):
        e = explain["sample_size"][0]
        measured = e["discordant_rate"] >= e["given_gap_points"] / 100
        sentences.append(f"Resolving a {e['given_gap_points']:g}-point gap between {e['a']} and {e['b']} needs about "
                         f"{e['samples_needed_for_given_gap']:,} test samples (this split has {e['n']}), assuming "
                         f"{_pct(e['given_gap_discordant_rate'])} of samples right for exactly one of the two: "
                         + ("the discordance measured here." if measured else
                            f"the least a {e['given_gap_points']:g}-point gap allows, since only "
                            f"{_pct(e['discordant_rate'])} was measured here."))
    return sentences


def finding_c(report: dict, explain: dict) -> list[str]:
    task = get_task(report["task"])
    cal = explain["calibration"]
    train, test = cal["rungs"]
    c = cal["comparison"]
    distinguishable = task.distinguishable(c)
    better = (test[task.metric] < train[task.metric]) == task.lower_is_better and test[task.metric] != train[task.metric]
    if distinguishable:
        verdict = "a real difference at this size" + (": calibrating on the evaluated samples flatters the int8 "
                                                       "model" if better else "")
    else:
        verdict = "here the calibration split does not flatter the int8 model"
    return [f"PTQ calibrated on {cal['calibration_samples']} train samples (disjoint from the evaluation): "
            f"{task.rung_text(train).split(' ', 1)[1]}; calibrated on {cal['calibration_samples']} of the evaluated test "
            f"samples: {task.rung_text(test).split(' ', 1)[1]}.",
            f"{c['verdict'][0].upper()}{c['verdict'][1:]}: {verdict}.",
            "Calibration only sets activation ranges (it never sees the labels), so evaluating on the calibration "
            "data can flatter the int8 model only through ranges that fit those samples' extremes."]


def finding_d(report: dict, explain: dict) -> list[str]:
    dev = explain["device"]
    if dev is None:
        return ["No device was measured (--no-device).", _host_kernel_sentence(report)]
    task = get_task(report["task"])
    sentences = []
    details = {r["id"]: r for r in report["rungs"]}
    for rid, link in dev["links"].items():
        rows = [e for e in dev["disagreements"] if e["rung"] == rid]
        steps = {s: sum(1 for e in rows if e["step"] == s) for s in ("quantization", "kernel implementation", "transport")}
        r = details[rid]
        where = (f"{_count(len(rows), 'sample')} where it predicts another class than the float model "
                 f"or differs from tflm-host" if task.has_classes else
                 f"{_count(len(rows), 'sample')} whose bytes differ from tflm-host")
        text = (f"{rid} on {r.get('board')} ({r.get('backend')} runtime): byte-identical with tflm-host on "
                f"{r['bit_exact']}/{r['n']} samples; {where}: ")
        if task.has_classes:
            text += f"{steps['quantization']} from quantization (the int8 model predicts the same on the host), "
        text += (f"{steps['kernel implementation']} from the kernel implementation, {steps['transport']} from "
                 f"transport ({link.get('resends', 0)} resent and {link.get('bad_frames', 0)} corrupted frames, all "
                 "recovered by the CRC-checked protocol).")
        sentences.append(text)
        follow = dev.get("agreement_with_float", {}).get(rid)
        if follow:
            what = "anomaly scores" if task.name == "anomaly" else "outputs"
            sentences.append(f"{rid} vs keras-float: {task.metric_label} {r.get(task.metric, float('nan')):.4g} vs "
                             f"{details['keras-float'][task.metric]:.4g}; their {what} have rank correlation "
                             f"{follow['spearman']:.4f} and differ by at most {follow['max_abs_difference']:.3g} "
                             "(quantization, since the device computes tflm-host's bytes).")
    sentences.append(_host_kernel_sentence(report))
    return sentences


def _host_kernel_sentence(report: dict) -> str:
    parts = []
    for a in report.get("agreement", []):
        if a["a"] in ("litert", "builtin-host") and a["b"] == ORACLE:
            part = f"{a['variant']}: {a['a']} vs {a['b']} byte-identical on {a['bit_exact']}/{a['n']}"
            if get_task(report["task"]).has_classes:
                part += f" ({_count(a['class_flips'], 'class flip')})"
            parts.append(part)
    return ("On the host, kernel implementations differ as follows: " + "; ".join(parts) + "."
            if parts else "No host interpreter agreement was measured.")


def findings(report: dict, explain: dict) -> list[dict]:
    task = get_task(report["task"])
    return [
        {"id": "a", "title": "QAT converted vs QAT weights copied into the float model + PTQ",
         "sentences": finding_a(explain)},
        {"id": "b", "title": f"Float vs QAT vs PTQ: {task.metric_label} with intervals"
                             + (" and sample size" if task.has_classes else ""),
         "sentences": finding_b(report, explain)},
        {"id": "c", "title": "Does evaluating on the calibration data flatter the int8 model?",
         "sentences": finding_c(report, explain)},
        {"id": "d", "title": "Host vs device disagreements, by step", "sentences": finding_d(report, explain)},
    ]
