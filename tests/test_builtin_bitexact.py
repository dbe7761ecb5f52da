"""The builtin runtime (host build) against TensorFlow Lite Micro's interpreter: byte for byte.

Acceptance of issue 4, on real oracles only (tflm-host, real and really converted models):
- every zoo model, briefly trained on digits and PTQ-converted, x 200 test inputs;
- every model in ../shared/models (MLPerf Tiny) x 100 random int8 inputs;
- random models (tests/modelgen.py), each with a few inputs; a failing model is shrunk by
  hypothesis and printed as a ModelSpec that can be pasted back, with the first differing output
  and the first diverging operator.

Random models: the default run checks MCUQUANT_PROPERTY_MODELS distinct ones (default 40, about
30 s); the acceptance campaign of 500 is marked slow (pytest --runslow). The hand-written specs
in modelgen.COVERAGE_EXAMPLES always run first, so every op of modelgen.RUNTIME_OPS is covered in
any run; the 500 random ones cover them all by themselves (asserted).

The same campaign also runs the runtime as compiled for qemu-nano33 (Cortex-M4F), qemu-m7 and
qemu-m55 (mcuquant.builtin.emulated's semihosting runner in QEMU), whose DSP-extension and Helium
kernels the host build never executes: MCUQUANT_DSP_PROPERTY_MODELS models per core (default 25), 500 under
--runslow; it needs qemu-system-arm and arm-none-eabi-gcc, and skips without them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings

from mcuquant.errors import McuquantError
from mcuquant.interpreters import Runner, agreement, first_divergence
from mcuquant.models import ZOO

from conftest import SHARED_MODELS, random_int8_inputs
from modelgen import COVERAGE_EXAMPLES, RUNTIME_OPS, convert, model_specs, op_names, sample_inputs, zoo_model

PROPERTY_MODELS = int(os.environ.get("MCUQUANT_PROPERTY_MODELS", "40"))
FULL_PROPERTY_MODELS = 500
INPUTS_PER_RANDOM_MODEL = 3


def _mismatch_report(model: bytes, xq: np.ndarray, ours: np.ndarray, oracle: np.ndarray, classification: bool) -> str:
    """Every mismatching sample, and where the first few part, by mcuquant's own agreement()."""
    try:
        result = agreement(model, xq, "builtin-host", ours, "tflm-host", oracle, classification=classification,
                           max_traced=3)
    except Exception as exc:  # tracing needs preserve_all in both runners; the counts still matter
        result = agreement(model, xq, "builtin-host", ours, "tflm-host", oracle, classification=classification,
                           max_traced=0)
        result["tracing_error"] = repr(exc)
    first = result["mismatches"][0]["index"]
    flat_ours, flat_oracle = ours[first].ravel(), oracle[first].ravel()
    k = int(np.flatnonzero(flat_ours != flat_oracle)[0])
    return (f"{len(result['mismatches'])}/{len(xq)} samples differ (max {result['max_lsb_difference']} LSB); "
            f"sample {first}, output element {k}: builtin-host {flat_ours[k]} vs tflm-host {flat_oracle[k]}; "
            f"mismatches: {result['mismatches'][:10]}; first diverging ops: {result['first_divergence_by_op']}"
            + (f"; tracing failed: {result['tracing_error']}" if "tracing_error" in result else ""))


def assert_bit_exact(model: bytes, xq: np.ndarray, *, classification: bool = True) -> None:
    ours = Runner("builtin-host", model).run(xq, progress=False)
    oracle = Runner("tflm-host", model).run(xq, progress=False)
    assert ours.dtype == oracle.dtype and ours.shape == oracle.shape
    if ours.tobytes() != oracle.tobytes():
        pytest.fail(_mismatch_report(model, xq, ours, oracle, classification), pytrace=False)


# ---------------------------------------------------------------------------------------------
# Zoo models


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_is_bit_exact_on_200_test_inputs(name):
    tflite, xq = zoo_model(name)  # trained one epoch on digits, PTQ-converted
    assert len(xq) == 200
    assert_bit_exact(tflite, xq, classification=name != "autoencoder")


# ---------------------------------------------------------------------------------------------
# Real models (MLPerf Tiny)


def _shared_model_names() -> list[str]:
    names = sorted(p.name for p in SHARED_MODELS.glob("*.tflite"))
    return names or ["kws_ref_model.tflite"]  # the shared_models fixture then skips (or fails in CI)


@pytest.mark.parametrize("name", _shared_model_names())
def test_shared_model_is_bit_exact_on_100_random_inputs(shared_models, name):
    tflite = (shared_models / name).read_bytes()
    shape = Runner("tflm-host", tflite).input.shape[1:]
    assert_bit_exact(tflite, random_int8_inputs(shape, 100, seed=4))


# ---------------------------------------------------------------------------------------------
# Random models


def _first_difference(spec, tflite: bytes, x: np.ndarray, ours: np.ndarray, oracle: np.ndarray) -> str:
    head = f"builtin-host and tflm-host differ on {spec!r}\n  ops: {op_names(tflite)}\n"
    if ours.dtype != oracle.dtype or ours.shape != oracle.shape:
        return head + f"  outputs: builtin-host {ours.dtype}{ours.shape} vs tflm-host {oracle.dtype}{oracle.shape}"
    flat_ours, flat_oracle = ours.ravel(), oracle.ravel()
    k = int(np.flatnonzero(flat_ours.view(np.uint8) != flat_oracle.view(np.uint8))[0] // flat_ours.itemsize)
    try:
        where = first_divergence(Runner("builtin-host", tflite, preserve_all=True),
                                 Runner("tflm-host", tflite, preserve_all=True), x)
    except Exception as exc:
        where = f"tracing failed: {exc!r}"
    return head + (f"  first differing output element {k}: builtin-host {flat_ours[k]!r} vs tflm-host "
                   f"{flat_oracle[k]!r}\n  first diverging operator: {where}")


# TFLM aborts the whole process on some models the converter makes (e.g. a SOFTMAX whose input
# scale is ~1e-8, after a ReLU that calibration never saw positive): it is asked in a subprocess.
_TFLM_PROBE = """
import sys
import numpy as np
from mcuquant.interpreters import Runner
Runner("tflm-host", open(sys.argv[1], "rb").read()).invoke(np.load(sys.argv[2]))
"""


def _tflm_failure(tflite: bytes, x: np.ndarray, tmp_path) -> str | None:
    """Why tflm-host cannot run `tflite` on `x` (a crash included), or None when it can."""
    model, sample = tmp_path / "probe.tflite", tmp_path / "probe.npy"
    model.write_bytes(tflite)
    np.save(sample, x)
    proc = subprocess.run([sys.executable, "-c", _TFLM_PROBE, str(model), str(sample)], capture_output=True,
                          text=True, timeout=120)
    if proc.returncode == 0:
        return None
    return f"exit status {proc.returncode}: {proc.stderr.strip().splitlines()[-1:] or ['(no message)']}"


def test_random_models_are_bit_exact(tmp_path):
    _random_campaign(PROPERTY_MODELS, tmp_path)


@pytest.mark.slow
def test_500_random_models_are_bit_exact(tmp_path):
    """The acceptance campaign: about 7 minutes on 2 cores (conversions cached within a session)."""
    _random_campaign(FULL_PROPERTY_MODELS, tmp_path)


# The same campaign with the runtime compiled for emulated Cortex-M cores, DSP kernels included
# (the host build never runs them); see test_builtin_dsp_campaign.py for the rest of that check.
# Here, after the host campaign in the same file, the first models' conversions are cached.
DSP_BOARDS = ("qemu-nano33", "qemu-m7", "qemu-m55")  # DSP on each; Helium (MVE) on the M55
DSP_PROPERTY_MODELS = int(os.environ.get("MCUQUANT_DSP_PROPERTY_MODELS", "25"))


@pytest.mark.qemu
@pytest.mark.parametrize("board", DSP_BOARDS)
def test_random_models_are_bit_exact_on_emulated_core(board, tmp_path, qemu_tools):
    _random_campaign(DSP_PROPERTY_MODELS, tmp_path, board=board)


@pytest.mark.slow
@pytest.mark.qemu
@pytest.mark.parametrize("board", DSP_BOARDS)
def test_500_random_models_are_bit_exact_on_emulated_core(board, tmp_path, qemu_tools):
    """About as long as the host campaign plus one QEMU run per model (conversions cached)."""
    _random_campaign(FULL_PROPERTY_MODELS, tmp_path, board=board)


def _check_on_board(board: str, spec, tflite: bytes, xs: np.ndarray, host_runner, oracle_runner) -> None:
    """All samples `xs` through the runtime on `board`'s core in one QEMU run, each output compared
    byte for byte with tflm-host's; a difference names the spec, the ops and what the host build gave."""
    from mcuquant.builtin.emulated import run_on_emulated_core

    xs = np.ascontiguousarray(xs.astype(oracle_runner.input.dtype))  # the converter may keep a float input
    try:
        device = run_on_emulated_core(tflite, xs, board).outputs[0]
    except McuquantError as exc:
        raise AssertionError(f"builtin runtime on {board} fails a model builtin-host runs: {exc}\n  {spec!r}"
                             f"\n  ops: {op_names(tflite)}") from None
    for k, x in enumerate(xs):
        oracle = oracle_runner.invoke(x)
        ours = device[k]
        if ours.dtype == oracle.dtype and ours.size == oracle.size and ours.tobytes() == oracle.tobytes():
            continue
        host = host_runner.invoke(x)
        head = f"builtin runtime on {board} and tflm-host differ on {spec!r}\n  ops: {op_names(tflite)}\n  sample {k}"
        if ours.dtype != oracle.dtype or ours.size != oracle.size:
            raise AssertionError(head + f": {board} {ours.dtype}{ours.shape} vs tflm-host {oracle.dtype}{oracle.shape}")
        flat_ours, flat_oracle, flat_host = ours.ravel(), oracle.ravel(), host.ravel()
        diff = np.flatnonzero(flat_ours.view(np.uint8) != flat_oracle.view(np.uint8)) // flat_ours.itemsize
        e = int(diff[0])
        raise AssertionError(head + f", {len(np.unique(diff))} of {flat_ours.size} output elements differ; first "
                             f"element {e}: {board} {flat_ours[e]!r}, tflm-host {flat_oracle[e]!r}, builtin-host "
                             f"{flat_host[e]!r} (builtin-host {'equals' if host.tobytes() == oracle.tobytes() else 'also differs from'} "
                             "tflm-host on this sample)")


def _random_campaign(n_models: int, tmp_path, board: str | None = None) -> None:
    """`n_models` distinct random models (hypothesis draws some specs twice: it gets a margin of
    examples, and the ones beyond the count are skipped unless shrinking a failure).

    ``board``: run the builtin runtime on that emulated board's core (QEMU, the semihosting runner
    of mcuquant.builtin.emulated: the runtime as compiled for the core, DSP kernels included)
    instead of the host build; the same specs are drawn, and the host build still decides which
    models count (the device must then accept every model the host accepts).

    A model the builtin runtime rejects passes only if tflm-host cannot run it either (it is then
    listed, not counted). A model tflm-host aborts on that the builtin runtime accepts would end the
    test process: that is a failure too, only a louder one.
    """
    coverage: Counter = Counter()  # op name -> distinct models containing it
    random_coverage: Counter = Counter()
    seen: set = set()  # distinct random specs that ran bit-exact
    rejected_by_both: dict = {}  # spec -> (builtin-host's error, tflm-host's failure)
    outside_the_runtime: dict = {}  # spec -> builtin-host's error naming an op it does not implement
    not_convertible: dict = {}  # spec -> the TFLite converter's error (the generator's limit, not the runtime's)
    failing: list = []  # non-empty once an example failed: hypothesis then shrinks, skip nothing

    def check(spec):
        is_random = spec not in COVERAGE_EXAMPLES
        if is_random and spec not in seen and len(seen) >= n_models and not failing:
            return
        try:
            try:
                tflite = convert(spec)
            except RuntimeError as exc:
                # A Keras model TF's converter cannot quantize (e.g. a "same scale constraint" on a
                # MAXIMUM feeding a concatenation) tests no runtime: listed, not counted.
                if not str(exc).startswith("TFLite conversion of"):
                    raise
                not_convertible[spec] = str(exc)
                return
            try:
                ours_runner = Runner("builtin-host", tflite)
            except McuquantError as exc:
                # The converter sometimes leaves an op outside the int8 set the runtime implements
                # (a PReLU lowered to a float NEG between DEQUANTIZE and QUANTIZE): refusing it, by
                # name, is the runtime's contract (export then points at --backend tflm).
                outside = set(op_names(tflite)) - set(RUNTIME_OPS)
                if "MQ_ERR_UNSUPPORTED_OP" in str(exc) and any(f"({op})" in str(exc) for op in outside):
                    outside_the_runtime[spec] = str(exc)
                    return
                why = _tflm_failure(tflite, sample_inputs(spec, 1)[0], tmp_path)
                if why is None:
                    raise AssertionError(f"builtin-host rejects a model tflm-host runs: {exc}\n  {spec!r}") from None
                rejected_by_both[spec] = (str(exc), why)
                return
            oracle_runner = Runner("tflm-host", tflite)
            names = set(op_names(tflite))
            if spec not in seen:
                coverage.update(names)
                if is_random:
                    random_coverage.update(names)
                    seen.add(spec)
            xs = sample_inputs(spec, INPUTS_PER_RANDOM_MODEL)
            if board is not None:
                _check_on_board(board, spec, tflite, xs, ours_runner, oracle_runner)
                return
            for x in xs:
                ours, oracle = ours_runner.invoke(x), oracle_runner.invoke(x)
                if ours.dtype != oracle.dtype or ours.shape != oracle.shape or ours.tobytes() != oracle.tobytes():
                    raise AssertionError(_first_difference(spec, tflite, x, ours, oracle))
        except BaseException:
            failing.append(spec)
            raise

    for spec in COVERAGE_EXAMPLES:
        check = example(spec=spec)(check)
    # derandomize: the same models on every run and machine (no example database either).
    check = settings(max_examples=n_models + n_models // 4 + 5, deadline=None, derandomize=True,
                     database=None, report_multiple_bugs=False,  # shrink one failure: each step converts
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])(
        given(spec=model_specs())(check))
    check()

    print(f"\nrandom models{'' if board is None else ' on ' + board}: {len(seen)} distinct specs (+{len(COVERAGE_EXAMPLES)} hand-written), "
          f"{INPUTS_PER_RANDOM_MODEL} inputs each; op coverage (models containing the op, random / all):")
    for op in RUNTIME_OPS:
        print(f"  {op:18s} {random_coverage[op]:5d} / {coverage[op]}")
    print(f"rejected by both runtimes (not counted): {len(rejected_by_both)}")
    for spec, (ours, oracle) in list(rejected_by_both.items())[:5]:
        print(f"  {spec!r}\n    builtin-host: {ours}\n    tflm-host: {oracle}")
    print(f"converted to ops outside the runtime, refused by name (not counted): {len(outside_the_runtime)}")
    for spec, why in list(outside_the_runtime.items())[:5]:
        print(f"  {spec!r}\n    builtin-host: {why}")
    print(f"not convertible by TF's converter (not counted): {len(not_convertible)}")
    for spec, why in list(not_convertible.items())[:5]:
        print(f"  {why[:300]}")
    assert len(seen) == n_models, f"hypothesis drew only {len(seen)} distinct specs; widen the margin"
    assert set(RUNTIME_OPS) <= set(coverage), f"ops never generated: {set(RUNTIME_OPS) - set(coverage)}"
    assert set(coverage) <= set(RUNTIME_OPS), f"ops outside the runtime's list: {set(coverage) - set(RUNTIME_OPS)}"
    if n_models >= 300:  # the full campaign covers every op without the hand-written specs
        assert set(RUNTIME_OPS) <= set(random_coverage), set(RUNTIME_OPS) - set(random_coverage)
