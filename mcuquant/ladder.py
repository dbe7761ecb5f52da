"""The accuracy ladder: every step from the float Keras model to the int8 interpreters, same samples.

    keras-float -> keras-qat -> {ptq,qat}/litert -> {ptq,qat}/litert-ref -> {ptq,qat}/tflm-host
                -> {ptq,qat}/builtin-host -> {ptq,qat}/device

builtin-host is mcuquant's own C runtime compiled for the host; it runs int8 models only, so an
int16x8 conversion gets no builtin-host rung.

`run_compare` goes from a Config to a report (a plain dict, written as report.json), leaving every
artifact in the work directory so each step can be inspected or re-run alone; every rung's
per-sample predictions go to rungs.npz, so rungs measured later on the same test split (the
device rungs of `mcuquant validate`) join the report with `add_rungs` and are scored and compared
exactly like the host rungs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcuquant import __version__
from mcuquant.config import Config
from mcuquant.data import Dataset
from mcuquant.errors import ModelError
from mcuquant.interpreters import RUNTIMES, Runner, agreement, dequantize, quantize
from mcuquant.models import check_model_fits_data, check_model_source, keras3
from mcuquant.progress import console
from mcuquant.tasks import get_task

FLOAT_EPOCHS_FOR_ZOO = 30
NO_QAT_FOR_EXPORTED = ("the model is an exported SavedModel (Keras 3 model.export()): a traced graph without layers, "
                       "which tfmot cannot make quantization-aware; the ladder has its float and PTQ rungs. For the QAT "
                       "rungs give the .keras or .h5 file of the model (model.save())")
INT8_VARIANTS = ("ptq", "qat")  # conversions the builtin runtime can run
RUNGS_FILE = "rungs.npz"  # per-sample predictions (and integer outputs) of every rung


@dataclass
class Rung:
    id: str
    predictions: np.ndarray  # per sample, as the task kind predicts: classes, values or anomaly scores
    raw: np.ndarray | None = None  # integer outputs of an int8 rung, for byte-level comparisons


def comparison_pairs(ids: list[str]) -> list[tuple[str, str, str]]:
    """(a, b, why) for each pair the report tests: neighbours on the ladder, float vs every int8 rung,
    PTQ vs QAT on the device oracle, and each `*/device` rung against its tflm-host rung."""
    pairs: dict[tuple[str, str], list[str]] = {}
    for a, b in zip(ids, ids[1:]):
        pairs.setdefault((a, b), []).append("adjacent")
    for b in ids:
        if "/" in b:
            pairs.setdefault(("keras-float", b), []).append("float vs int8")
    pairs.setdefault(("keras-qat", "qat/litert"), []).append("qat conversion")
    if "ptq/tflm-host" in ids and "qat/tflm-host" in ids:
        pairs.setdefault(("ptq/tflm-host", "qat/tflm-host"), []).append("ptq vs qat")
    for b in ids:
        oracle = b.removesuffix("/device") + "/tflm-host"
        if b.endswith("/device") and oracle in ids:
            pairs.setdefault((oracle, b), []).append("device vs oracle")
    present = set(ids)  # a partial ladder (e.g. `mcuquant validate`: tflm-host and device) has fewer pairs
    return [(a, b, ", ".join(why)) for (a, b), why in pairs.items() if a in present and b in present]


def _build_model(cfg: Config, data: Dataset):
    from mcuquant.models import build_zoo_model, load_user_model

    source = cfg.model.source
    if source.startswith("zoo:"):
        model = build_zoo_model(source[4:], data.input_shape, data.num_classes, width=cfg.model.width,
                                task=data.task, outputs=data.outputs)
        epochs = FLOAT_EPOCHS_FOR_ZOO if cfg.training.epochs is None else cfg.training.epochs
        if epochs == 0:
            raise ModelError("a zoo model with training.epochs = 0 would be evaluated untrained; give epochs >= 1")
    else:
        model = load_user_model(source)
        epochs = 0 if cfg.training.epochs is None else cfg.training.epochs
        if keras3.is_keras3(model) and epochs:
            raise ModelError(f"{source} was saved by Keras 3, which mcuquant evaluates as saved: set "
                             "training.epochs = 0 (the default for your own model) and train it in Keras 3 before")
    return model, epochs


def _keras_predictions(model, data: Dataset) -> np.ndarray:
    out = model.predict(data.x_test, batch_size=256, verbose=0)
    bad = ~np.isfinite(np.asarray(out, np.float64).reshape(len(out), -1)).all(axis=1)
    if bad.any():  # finite inputs and weights, yet overflow or a log/sqrt of a negative inside the model
        raise ModelError(f"model '{model.name}' outputs NaN or inf for {int(bad.sum())} of {len(bad)} test samples "
                         f"(first: test sample {int(np.argmax(bad))}); int8 conversion needs finite activations: "
                         "check the model's layers (e.g. log, sqrt, division) and the data's scale (--normalize)")
    return get_task(data.task).predictions(out, data.x_test, data.y_test.shape)


def _score_rungs(rungs: list[Rung], data: Dataset) -> tuple[list[dict], list[dict]]:
    return score_rungs(rungs, data.y_test, data.task)


def score_rungs(rungs: list[Rung], y: np.ndarray, task: str) -> tuple[list[dict], list[dict]]:
    """Each rung's metric with its interval, and the paired comparisons of `comparison_pairs`, as the
    task kind (mcuquant.tasks) scores and compares them."""
    kind = get_task(task)
    by_id = {r.id: r for r in rungs}
    scores = kind.score_all({r.id: r.predictions for r in rungs}, y)
    results = [{"id": r.id, **scores[r.id]} for r in rungs]
    comparisons = [{**kind.compare(a, b, by_id[a].predictions, by_id[b].predictions, y), "kind": why}
                   for a, b, why in comparison_pairs([r.id for r in rungs])]
    # Byte-level agreement belongs next to the statistics of the same pair.
    for c in comparisons:
        ra, rb = by_id[c["a"]], by_id[c["b"]]
        if ra.raw is not None and rb.raw is not None and c["a"].split("/")[0] == c["b"].split("/")[0]:
            same = (ra.raw.reshape(len(y), -1) == rb.raw.reshape(len(y), -1)).all(axis=1)
            c["bit_exact_rate"] = float(same.mean())
            c["max_lsb_difference"] = int(np.abs(ra.raw.astype(np.int64) - rb.raw.astype(np.int64)).max())
    return results, comparisons


@dataclass
class Prepared:
    """Everything the ladder is measured on: the data, the Keras models and their conversions."""

    cfg: Config
    out: Path
    data: Dataset
    float_model: object  # tf_keras Model, or Keras 3 Model
    qat_model: object  # None for an exported SavedModel (no QAT rungs)
    representative: np.ndarray  # PTQ calibration samples (train split)
    conversions: list  # quantize.Conversion
    history: dict
    qat_history: dict
    started: float
    translation: dict | None = None  # a Keras 3 model's check of its tf-keras translation (models.keras3)


def prepare(cfg: Config, out_dir: str | Path, *, progress: bool = True, data: Dataset | None = None) -> Prepared:
    """Load the data (unless given, loaded from ``cfg.data``), train (or load) the float model, fine-tune
    it with QAT and convert both to int8."""
    from mcuquant.quantize import convert_ptq, convert_ptq16x8, convert_qat, representative_samples
    from mcuquant.train import quantization_aware, set_seeds, train_float

    started = time.time()
    check_model_source(cfg.model.source)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = cfg.data.load() if data is None else data
    console.print(f"data: {data.name}: {len(data.x_train)} train / {len(data.x_val)} val / {len(data.x_test)} test, "
                  f"samples {data.input_shape}, task {data.task}")

    set_seeds(cfg.training.seed)  # before building: the initial weights come from it
    model, epochs = _build_model(cfg, data)
    data = data.for_model_input(tuple(model.input_shape[1:]))  # e.g. (8, 8) images for a model taking (8, 8, 1)
    check_model_fits_data(model, data)
    data.save(out / "dataset.npz")
    translation, qat_model, qat_history = None, None, {"skipped": NO_QAT_FOR_EXPORTED}
    if keras3.is_keras3(model) and keras3.is_exported(model):
        # Float and PTQ only: nothing to make QAT from; the exported folder is the float model's artifact.
        history = {"epochs_run": 0}
        console.print("exported SavedModel: float and PTQ rungs only (tfmot cannot make a traced graph "
                      "quantization-aware; the .keras or .h5 file gets the QAT rungs)")
    else:
        if keras3.is_keras3(model):  # the float rung and PTQ use it as it is, QAT its verified tf-keras translation
            history = {"epochs_run": 0}
            qat_base, translation = keras3.to_tf_keras(model, data.x_test)
            console.print(f"Keras 3 model: translated to tf-keras for QAT ({translation['layers']} layers); outputs "
                          f"on {translation['samples']} test samples differ by at most "
                          f"{translation['max_abs_difference']:.2g} (tolerance {translation['tolerance']:.2g})")
        else:
            history = train_float(model, data, cfg.training, epochs, progress=progress)
            qat_base = model
        keras3.save_model(model, out / "float.keras")
        qat_model, qat_history = quantization_aware(qat_base, data, cfg.training, progress=progress)

    representative = representative_samples(data.x_train, cfg.quantization.representative_samples, cfg.data.seed)
    console.print("converting to TFLite: PTQ int8" + (", QAT int8" if qat_model is not None else "")
                  + (", PTQ int16x8" if cfg.quantization.int16x8 else ""))
    conversions = [convert_ptq(model, representative, per_channel=cfg.quantization.per_channel)]
    if qat_model is not None:
        conversions.append(convert_qat(qat_model, representative))
    if cfg.quantization.int16x8:
        conversions.append(convert_ptq16x8(model, representative))
    for conv in conversions:
        (out / f"{conv.variant}.tflite").write_bytes(conv.tflite)
    return Prepared(cfg, out, data, model, qat_model, representative, conversions, history, qat_history, started,
                    translation)


def run_compare(cfg: Config, out_dir: str | Path, *, progress: bool = True) -> dict:
    """Train (or load), QAT, convert, run every host rung on the test split; return the report."""
    return evaluate_ladder(prepare(cfg, out_dir, progress=progress), progress=progress)


def evaluate_ladder(prep: Prepared, *, progress: bool = True) -> dict:
    """Run every host rung of `prep` on the test split; write rungs.npz and report.json; return the report."""
    data, out, model, conversions = prep.data, prep.out, prep.float_model, prep.conversions
    task = get_task(data.task)
    rungs = [Rung("keras-float", _keras_predictions(model, data))]
    if prep.qat_model is not None:
        rungs.append(Rung("keras-qat", _keras_predictions(prep.qat_model, data)))
    agreements = []
    for conv in conversions:
        kinds = [k for k in RUNTIMES if k != "builtin-host" or conv.variant in INT8_VARIANTS]
        runners = {kind: Runner(kind, conv.tflite) for kind in kinds}
        xq = quantize(data.x_test, runners["tflm-host"].input)
        np.save(out / f"{conv.variant}_test_inputs.npy", xq)  # exactly what a device will be sent
        raw = {kind: r.run(xq, label=f"{conv.variant}/{kind}", progress=progress) for kind, r in runners.items()}
        for kind in kinds:
            outputs = dequantize(raw[kind], runners[kind].output)
            rungs.append(Rung(f"{conv.variant}/{kind}", task.predictions(outputs, data.x_test, data.y_test.shape),
                              raw[kind]))
        pairs = [("litert", "tflm-host"), ("litert-ref", "tflm-host"), ("litert", "litert-ref")]
        if "builtin-host" in kinds:
            pairs.append(("builtin-host", "tflm-host"))
        for a, b in pairs:
            agreements.append({"variant": conv.variant,
                               **agreement(conv.tflite, xq, a, raw[a], b, raw[b],
                                           classification=task.has_classes)})

    results, comparisons = _score_rungs(rungs, data)
    save_rungs(rungs, out / RUNGS_FILE)
    cfg = prep.cfg
    report = {
        "mcuquant_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.time() - prep.started, 1),
        "config": cfg.to_dict(),
        "dataset": {**data.summary(), "n_test": int(len(data.x_test))},
        "task": data.task,
        "model": {"source": cfg.model.source, "name": model.name, "parameters": int(model.count_params()),
                  "float_training": prep.history, "qat_training": prep.qat_history,
                  **({"translation": prep.translation} if prep.translation else {})},
        "conversions": {c.variant: c.summary() for c in conversions},
        "rungs": results,
        "comparisons": comparisons,
        "agreement": agreements,
        "artifacts": {"dir": str(out), "dataset": "dataset.npz", "rungs": RUNGS_FILE,
                      "float_model": "float.keras" if (out / "float.keras").exists() else cfg.model.source,
                      **{f"{c.variant}_tflite": f"{c.variant}.tflite" for c in conversions}},
    }
    write_json(report, out / "report.json")
    return report


def save_rungs(rungs: list[Rung], path: str | Path) -> Path:
    """Every rung's per-sample predictions and integer outputs, in ladder order (one .npz)."""
    arrays = {"ids": np.array([r.id for r in rungs])}
    for i, r in enumerate(rungs):
        arrays[f"pred{i}"] = r.predictions
        if r.raw is not None:
            arrays[f"raw{i}"] = r.raw
    path = Path(path)
    with open(path, "wb") as f:  # a file object: numpy appends no ".npz"
        np.savez_compressed(f, **arrays)
    return path


def load_rungs(path: str | Path) -> list[Rung]:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path} is missing: this work folder was made by an older mcuquant; run `mcuquant compare` "
                         "again")
    with np.load(path, allow_pickle=False) as npz:
        return [Rung(str(rid), npz[f"pred{i}"], npz[f"raw{i}"] if f"raw{i}" in npz.files else None)
                for i, rid in enumerate(npz["ids"])]


def add_rungs(out_dir: str | Path, rungs: list[Rung], details: dict[str, dict], agreements: list[dict]) -> dict:
    """Add rungs measured on the test split of a `run_compare` work folder to its report.

    Each new rung goes after the last rung of its variant (``ptq/device`` after ``ptq/...``) and
    replaces a rung of the same id; device rungs of an earlier run (any board) are replaced too,
    so the report holds one device. Every rung is then scored and compared again, ``details[id]``
    is merged into the new rungs' results and ``agreements`` replaces the report's agreement
    entries with the same ``a`` (e.g. "device"). Writes report.json and rungs.npz; returns the
    report.
    """
    out = Path(out_dir)
    report = json.loads((out / "report.json").read_text())
    data = Dataset.load(out / "dataset.npz")
    new_ids = {r.id for r in rungs}
    kept = [r for r in load_rungs(out / RUNGS_FILE) if r.id not in new_ids and not r.id.endswith("/device")]
    for rung in rungs:
        if len(rung.predictions) != len(data.y_test):
            raise ModelError(f"{rung.id} has {len(rung.predictions)} predictions for {len(data.y_test)} test samples")
        variant = rung.id.split("/")[0] + "/"
        last = max((i for i, r in enumerate(kept) if r.id.startswith(variant)), default=len(kept) - 1)
        kept.insert(last + 1, rung)
    results, comparisons = _score_rungs(kept, data)
    for result in results:
        result.update(details.get(result["id"], {}))
    replaced = {a["a"] for a in agreements}
    report.update(
        rungs=results,
        comparisons=comparisons,
        agreement=[a for a in report.get("agreement", []) if a["a"] not in replaced] + agreements,
    )
    save_rungs(kept, out / RUNGS_FILE)
    write_json(report, out / "report.json")
    return report


def write_json(report: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Strict JSON (no NaN/Infinity literals, which JSON readers refuse): a non-finite number is null.
    path.write_text(json.dumps(_finite(report), indent=2, default=_json_default, allow_nan=False) + "\n")
    return path


def _finite(value):
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return _finite(value.tolist())
    return value


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
