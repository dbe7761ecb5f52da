"""`mcuquant validate`: measure int8 models on a board (or its emulation) against tflm-host.

What is measured depends on ``model``:

* a `mcuquant compare` work folder (it holds report.json): its ptq and qat models on exactly the
  quantized test inputs the host rungs saw ({variant}_test_inputs.npy); the ``ptq/device`` and
  ``qat/device`` rungs join that report.json, scored and compared like every other rung
  (mcuquant.ladder.add_rungs);
* a .tflite file: that model, on the test split of ``data`` (quantized with the model's input
  scale, so the data must be normalized as the model was trained) or, without data, on seeded
  random int8 inputs; rung ``{file stem}/device``;
* a Keras model (.keras, .h5, SavedModel folder): converted with PTQ, calibrated on ``data``'s
  train split (required), measured on its test split; rung ``ptq/device``.

Each model is built for the board (mcuquant.device.harness.build_firmware; a physical board is
also flashed unless ``upload=False``), run on every sample and compared byte by byte with
tflm-host on the same inputs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcuquant import __version__
from mcuquant.boards import Board, get_board
from mcuquant.build.tflm_library import tflm_library
from mcuquant.config import DataConfig
from mcuquant.device.journal import Journal
from mcuquant.errors import ConfigError, ModelError
from mcuquant.tasks import get_task

#: Where `mcuquant compare` puts its work folder by default: validate's default model.
DEFAULT_COMPARE_DIR = Path("mcuquant-out/compare")
DEFAULT_OUT = Path("mcuquant-out/validate")
DEFAULT_RANDOM_SAMPLES = 100
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


@dataclass
class _Job:
    """One model to measure: its rung prefix, the flatbuffer and the quantized inputs."""

    variant: str
    tflite: bytes
    xq: np.ndarray


def is_compare_dir(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / "report.json").is_file()


def validate(board: Board | str, model: str | Path | None = None, *, data: str | None = None,
             data_options: DataConfig = DataConfig(), samples: int | None = None, out_dir: str | Path | None = None,
             port: str | None = None, backend: str | None = None, upload: bool = True,
             require_labels: bool = False, representative_samples: int = 200, per_channel: bool = True,
             resume: bool = False, progress: bool = True) -> dict:
    """Measure ``model`` on ``board``; return the report (also written as report.json).

    ``model`` defaults to the compare work folder mcuquant-out/compare. ``samples``: measure only
    the first n test samples (or n random inputs; default 100). ``out_dir``: where projects and
    report go (default: the compare folder itself, else mcuquant-out/validate). ``upload=False``:
    a physical board already runs this model (flashed with `mcuquant build`; the handshake checks
    its hash), so nothing is built; ``port`` may be any pyserial URL (e.g. rfc2217://host:port).
    ``require_labels``: fail before any build when the inputs have no labels (for --fail-under).
    ``resume``: continue an interrupted run from its journals ({variant}_device_journal.jsonl in
    the output folder): only the samples they lack are measured; the report is the same as an
    uninterrupted run's, link figures aside.
    """
    started = time.time()
    board = get_board(board) if isinstance(board, str) else board
    if samples is not None and samples < 1:
        raise ConfigError(f"--samples must be at least 1, not {samples}")
    if board.emulated and port:
        raise ConfigError(f"{board.name} is emulated: it runs in QEMU and has no serial port (drop --port)")
    if not board.emulated:
        from mcuquant.device.harness import find_port

        port = find_port(board, port)  # before any work: an unplugged board fails fast
    if model is None:
        if not is_compare_dir(DEFAULT_COMPARE_DIR):
            raise ConfigError(f"no --model given and no compare work folder at {DEFAULT_COMPARE_DIR}: run `mcuquant "
                              "compare` first, or give --model M.tflite|M.keras|WORK_DIR")
        model = DEFAULT_COMPARE_DIR
    model = Path(model)
    if is_compare_dir(model):
        if data is not None or samples is not None:
            raise ConfigError(f"{model} is a compare work folder: it is measured on its own test split "
                              "(dataset.npz), so drop --data and --samples")
        return _validate_compare_dir(board, model, Path(out_dir) if out_dir else model, port=port, backend=backend,
                                     upload=upload, progress=progress, started=started, resume=resume,
                                     require_labels=require_labels)
    return _validate_model(board, model, data=data, data_options=data_options, samples=samples,
                           out=Path(out_dir) if out_dir else DEFAULT_OUT, port=port, backend=backend, upload=upload,
                           require_labels=require_labels, representative_samples=representative_samples,
                           per_channel=per_channel, progress=progress, started=started, resume=resume)


# ---------------------------------------------------------------------------------------------
# The two kinds of input


def _validate_compare_dir(board: Board, work: Path, out: Path, *, port, backend, upload, progress,
                          started: float, resume: bool, require_labels: bool) -> dict:
    from mcuquant.data import Dataset
    from mcuquant.ladder import INT8_VARIANTS, add_rungs, write_json

    dataset = Dataset.load(work / "dataset.npz")
    _check_gateable(dataset, require_labels, str(work))
    jobs = []
    for variant in INT8_VARIANTS:
        tflite_path, inputs_path = work / f"{variant}.tflite", work / f"{variant}_test_inputs.npy"
        if tflite_path.is_file() and inputs_path.is_file():
            jobs.append(_Job(variant, tflite_path.read_bytes(), np.load(inputs_path)))
            _check_runs(jobs[-1].tflite, board, backend, str(tflite_path))
    if not jobs:
        raise ConfigError(f"{work} holds no int8 model to measure ({', '.join(f'{v}.tflite' for v in INT8_VARIANTS)} "
                          "with its _test_inputs.npy); run `mcuquant compare` again")
    if out.resolve() != work.resolve():
        # Measure into another folder: the work folder's report and rungs are copied there.
        out.mkdir(parents=True, exist_ok=True)
        for name in ("report.json", "dataset.npz", "rungs.npz"):
            if (work / name).is_file():
                shutil.copyfile(work / name, out / name)
    task = get_task(dataset.task)
    rungs, details, agreements = [], {}, []
    for job in jobs:
        rung, _, detail, agree = _measure(board, job, out, task=task, x=dataset.x_test, y_shape=dataset.y_test.shape,
                                          port=port, backend=backend, upload=upload, progress=progress, resume=resume)
        rungs.append(rung)
        details[rung.id] = detail
        agreements.append(agree)
    report = add_rungs(out, rungs, details, agreements)
    report.pop("partial", None)  # every sample is measured now
    report["device"] = {"board": board.name, "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                        "seconds": round(time.time() - started, 1)}
    report["artifacts"].update({"dir": str(out), "firmware": f"firmware/{board.name}",
                                **{f"{j.variant}_device_outputs": f"{j.variant}_device_outputs.npz" for j in jobs}})
    write_json(report, out / "report.json")
    return report


def _validate_model(board: Board, model: Path, *, data, data_options: DataConfig, samples, out: Path, port, backend,
                    upload, require_labels, representative_samples, per_channel, progress, started, resume) -> dict:
    from mcuquant.interpreters import Runner, quantize
    from mcuquant.ladder import score_rungs, write_json

    keras = model.suffix in KERAS_SUFFIXES or (model.is_dir() and (model / "saved_model.pb").is_file())
    if not keras and model.suffix != ".tflite":
        raise ModelError(f"model {model}: expected a .tflite file, a .keras/.h5 file or SavedModel folder, or a "
                         "`mcuquant compare` work folder (with report.json)")
    if not model.exists():
        raise ModelError(f"model {model} not found; give a .tflite or .keras file or a compare work folder")
    if keras and data is None:
        raise ConfigError(f"{model} is a Keras model: give --data to calibrate its PTQ conversion (train split) and "
                          "to measure it (test split)")
    if require_labels and data is None:
        raise ConfigError("--fail-under needs labels: give --data (random inputs have no error rate)")
    if not keras:
        from mcuquant.graph import read_int8_tflite

        tflite = read_int8_tflite(model)  # before the data and any build: a bad file fails first
        _check_runs(tflite, board, backend, model.name)
        variant = model.stem
    out.mkdir(parents=True, exist_ok=True)

    dataset = None
    if data is not None:
        dataset = data_options.load(data)
        _check_gateable(dataset, require_labels, data)
    if keras:
        # Converted to fit the backend's TFLM: dense layers per tensor where it has no per-channel kind.
        dense_per_channel = per_channel and ((backend or board.default_backend) != "tflm" or
                                             tflm_library().per_channel_fully_connected)
        tflite = _convert_keras(model, dataset, representative_samples, data_options.seed, per_channel,
                                dense_per_channel)
        _check_runs(tflite, board, backend, model.name)
        variant = "ptq"
        (out / "ptq.tflite").write_bytes(tflite)
    oracle = Runner("tflm-host", tflite)
    if dataset is not None and not keras:
        from mcuquant.models.loading import fit_data_to_tflite

        dataset = fit_data_to_tflite(dataset, model.name, tuple(oracle.input.shape), tuple(oracle.output.shape))

    y = x = None
    if dataset is not None:
        n = len(dataset.x_test) if samples is None else min(samples, len(dataset.x_test))
        x, y = dataset.x_test[:n], dataset.y_test[:n]
        xq = quantize(x, oracle.input)
        inputs = {"name": dataset.name, "n_test": int(n), "test_split_size": int(len(dataset.x_test))}
    else:
        n = samples or DEFAULT_RANDOM_SAMPLES
        info = np.iinfo(np.dtype(oracle.input.dtype))
        rng = np.random.default_rng(data_options.seed)
        xq = rng.integers(info.min, info.max + 1, size=(n, *oracle.input.shape[1:]), dtype=oracle.input.dtype)
        inputs = {"name": f"random {oracle.input.dtype} inputs (seed {data_options.seed})", "n_test": int(n)}
    np.save(out / f"{variant}_test_inputs.npy", xq)

    task = dataset.task if dataset is not None else None
    job = _Job(variant, tflite, xq)
    device, host, detail, agree = _measure(board, job, out, task=get_task(task) if task else None, x=x,
                                           y_shape=None if y is None else y.shape, port=port, backend=backend,
                                           upload=upload, progress=progress, oracle_runner=oracle, resume=resume)
    if y is not None:
        results, comparisons = score_rungs([host, device], y, task)
        results[1].update(detail)
    else:
        results, comparisons = [detail], []

    report = {
        "mcuquant_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.time() - started, 1),
        "task": task,
        "dataset": inputs,
        "model": {"source": str(model), "variant": variant, "sha256": hashlib.sha256(tflite).hexdigest(),
                  "bytes": len(tflite), **({"converted": "ptq"} if keras else {})},
        "board": board.name,
        "rungs": results,
        "comparisons": comparisons,
        "agreement": [agree],
        "artifacts": {"dir": str(out), "inputs": f"{variant}_test_inputs.npy",
                      "device_outputs": f"{variant}_device_outputs.npz", "firmware": f"firmware/{board.name}",
                      **({"ptq_tflite": "ptq.tflite"} if keras else {})},
    }
    write_json(report, out / "report.json")
    return report


def _check_runs(tflite: bytes, board: Board, backend: str | None, name: str) -> None:
    """Refuse, before any build, a model the board's backend cannot run (an op, int16 activations)."""
    from mcuquant.errors import UnsupportedOpError
    from mcuquant.export import check_model, unsupported_message

    backend = backend or board.default_backend
    problems = check_model(tflite, backend)
    if problems:
        raise UnsupportedOpError(unsupported_message(problems, backend, name))


def _check_gateable(dataset, require_labels: bool, source: str) -> None:
    """--fail-under gates a classification error rate: refused before any build for another task."""
    if require_labels and dataset.task != "classification":
        raise ConfigError(f"--fail-under gates a classification error rate, but {source} is a {dataset.task} task; "
                          "drop --fail-under (--min-bit-exact gates any task)")


def _convert_keras(path: Path, dataset, n_representative: int, seed: int, per_channel: bool,
                   dense_per_channel: bool = True) -> bytes:
    from mcuquant.models import check_model_fits_data, load_user_model
    from mcuquant.quantize import convert_ptq, representative_samples

    keras_model = load_user_model(path)
    dataset = dataset.for_model_input(tuple(keras_model.input_shape[1:]))
    check_model_fits_data(keras_model, dataset)
    representative = representative_samples(dataset.x_train, n_representative, seed)
    return convert_ptq(keras_model, representative, per_channel=per_channel, dense_per_channel=dense_per_channel).tflite


def _predictions(runner, raw: np.ndarray, task, x, y_shape: tuple[int, ...] | None) -> np.ndarray:
    """The task's per-sample predictions from dequantized outputs, as the ladder scores them (without a
    task, on random inputs, the raw outputs: nothing is scored)."""
    from mcuquant.interpreters import dequantize

    if task is None:
        return raw.reshape(len(raw), -1)
    return task.predictions(dequantize(raw, runner.output), x, y_shape)


# ---------------------------------------------------------------------------------------------
# One model on the board


def _measure(board: Board, job: _Job, out: Path, *, task, x, y_shape, port, backend, upload, progress,
             oracle_runner=None, resume: bool = False):
    """Build, run and compare one model: (device Rung, tflm-host Rung, device rung details, agreement entry)."""
    from mcuquant.device import harness
    from mcuquant.interpreters import Runner
    from mcuquant.ladder import Rung
    from mcuquant.progress import console

    oracle_runner = oracle_runner or Runner("tflm-host", job.tflite)
    oracle = oracle_runner.run(job.xq, label=f"{job.variant}/tflm-host", progress=progress)
    sha = hashlib.sha256(job.tflite).hexdigest()

    build = None
    if board.emulated or upload:
        project_dir = out / "firmware" / board.name / job.variant
        console.print(f"building {job.variant} for {board.name} in {project_dir}")
        build = harness.build_firmware(board, job.tflite, project_dir, model_name=f"{job.variant}.tflite",
                                       backend=backend, upload=upload and not board.emulated, port=port,
                                       progress=progress)
    identity = {"variant": job.variant, "board": board.name, "model_sha256": sha,
                "inputs_sha256": hashlib.sha256(np.ascontiguousarray(job.xq).tobytes()).hexdigest(),
                "n": int(len(job.xq)),
                "firmware_sha256": hashlib.sha256(Path(build.elf).read_bytes()).hexdigest() if build else None}
    journal = Journal.open(out / journal_name(job.variant), identity, resume=resume)
    try:
        if journal.device is not None and not journal.missing(len(job.xq)):
            console.print(f"{job.variant}/device: all {len(job.xq)} samples are in {journal.path.name}")
            run = _measurement_from(journal, len(job.xq))
        else:
            if journal.entries:
                console.print(f"{job.variant}/device: resuming, {len(journal.entries)} of {len(job.xq)} samples are "
                              f"in {journal.path.name}")
            with harness.open_device(board, elf=build.elf if build else None, port=port, expected_sha256=sha) as link:
                journal.record_device(dataclasses.asdict(link.info))
                run = harness.measure(link, job.xq, label=f"{job.variant}/device ({board.name})", progress=progress,
                                      journal=journal)
    except BaseException as exc:  # a failure or Ctrl-C: what was measured stays, and the report says so
        journal.close()
        _record_partial(out, board, job, journal, oracle, exc)
        raise
    journal.close()
    np.savez_compressed(out / f"{job.variant}_device_outputs.npz", device=run.outputs, counts=run.counts,
                        tflm_host=oracle)
    # Without labels, an output vector is read as class scores (class flips are then reported).
    classification = task.has_classes if task else int(np.prod(oracle_runner.output.shape[1:])) > 1
    detail = harness.device_rung(job.variant, board, run, oracle, classification=classification, build=build)
    rung = Rung(detail["id"], _predictions(oracle_runner, run.outputs, task, x, y_shape), run.outputs)
    host = Rung(f"{job.variant}/tflm-host", _predictions(oracle_runner, oracle, task, x, y_shape), oracle)
    agree = {"variant": job.variant, "a": "device", "b": "tflm-host", "board": board.name,
             **{k: detail[k] for k in ("n", "bit_exact", "bit_exact_rate", "max_lsb_difference", "mismatches")},
             "class_flips": detail["class_flips"] or 0, "traced_samples": 0, "first_divergence_by_op": []}
    return rung, host, detail, agree


def journal_name(variant: str) -> str:
    return f"{variant}_device_journal.jsonl"


def _measurement_from(journal: Journal, n: int):
    """The Measurement of a run whose every sample is in ``journal`` (nothing left to measure)."""
    from mcuquant.device.harness import Measurement
    from mcuquant.device.protocol import DeviceInfo

    info = DeviceInfo.from_dict(journal.device)
    spec = info.outputs[0]
    outputs, counts = journal.arrays(n, spec.dtype, spec.sample_shape)
    return Measurement(outputs, counts, info, 0.0, 0, 0, resumed=n)


def _record_partial(out: Path, board: Board, job: _Job, journal: Journal, oracle: np.ndarray,
                    exc: BaseException) -> None:
    """Mark report.json partial: what this variant measured before ``exc``, and how to resume."""
    import json

    from mcuquant.ladder import write_json

    path = out / "report.json"
    try:
        report = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        report = {}
    measured = sorted(journal.entries)
    same = sum(journal.entries[i][0] == np.ascontiguousarray(oracle[i]).tobytes() for i in measured)
    error = str(exc) or type(exc).__name__
    partial = report.setdefault("partial", {"board": board.name, "variants": {}})
    partial["variants"][job.variant] = {
        "measured": len(measured), "n": int(len(job.xq)), "journal": journal.path.name,
        "byte_identical_with_tflm_host": int(same), "error": error[:500],
    }
    partial["resume"] = "mcuquant validate --resume with the same --board, --model, --data and --samples"
    write_json(report, path)


# ---------------------------------------------------------------------------------------------
# CI thresholds


def threshold_failures(report: dict, *, fail_under: float | None = None,
                       min_bit_exact: float | None = None) -> list[str]:
    """One line per device rung that breaks --fail-under (error rate above) or --min-bit-exact
    (byte-identical rate below); empty when all pass."""
    failures = []
    for rung in (r for r in report["rungs"] if r["id"].endswith("/device")):
        where = f"{rung['id']} on {rung['board']}"
        if fail_under is not None:
            if "error_rate" not in rung:
                raise ConfigError(f"--fail-under needs a classification error rate; {where} has none "
                                  f"({'regression' if report.get('task') == 'regression' else 'no labels'})")
            if rung["error_rate"] > fail_under:
                failures.append(f"{where}: error rate {100 * rung['error_rate']:.2f}% is above --fail-under "
                                f"{100 * fail_under:.2f}%")
        if min_bit_exact is not None and rung["bit_exact_rate"] < min_bit_exact:
            failures.append(f"{where}: byte-identical with {rung['oracle']} on {rung['bit_exact']}/{rung['n']} samples "
                            f"({100 * rung['bit_exact_rate']:.2f}%), below --min-bit-exact {100 * min_bit_exact:.2f}%")
    return failures
