"""UNIDIRECTIONAL_SEQUENCE_LSTM in the builtin runtime against tflm-host, byte for byte.

Real Keras (tf-keras) LSTMs converted to int8 (PTQ, and QAT with the LSTM left to the converter's
calibration: tfmot 0.8.1 has no quantize config for LSTM cells), samples run in sequence (the
state carries over from one invoke to the next in TFLM, and must in the builtin runtime too),
edited conversions that take the kernel's other arithmetic paths (cell clipping, cell state
scales, time-major and batched sequences), and malformed operators that must be refused.

What the converter needs to fuse a Keras LSTM into one UNIDIRECTIONAL_SEQUENCE_LSTM: a static
batch size (here Input(..., batch_size=1)); with a dynamic batch, TF 2.21 fails on
TensorListReserve. return_sequences=False adds a STRIDED_SLICE of the last step.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from mcuquant.builtin.host import HostRuntime
from mcuquant.errors import ModelError
from mcuquant.export import SUPPORTED_OPS
from mcuquant.graph import Graph
from mcuquant.interpreters import Runner
from mcuquant.quantize import convert_ptq, convert_qat
from mcuquant.tf_import import keras, tfmot

from test_builtin_ops_nonlinear import INT16, assert_identical, single_op_model
from test_builtin_bitexact import DSP_BOARDS

KERNEL_SOURCE = Path(__file__).parents[1] / "firmware" / "runtime" / "ops" / "unidirectional_sequence_lstm.c"
LSTM = "UNIDIRECTIONAL_SEQUENCE_LSTM"
SAMPLES = 40
# TFLite input slots of the operator (see the kernel's header comment).
IN_X, IN_W_FORGET, IN_PEEPHOLE, IN_BIAS_FORGET, IN_HIDDEN, IN_CELL = 0, 2, 9, 13, 18, 19

needs_strided_slice = pytest.mark.skipif(
    "STRIDED_SLICE" not in SUPPORTED_OPS["builtin"],
    reason="return_sequences=False converts to LSTM + STRIDED_SLICE, which the builtin runtime does not run yet")


def _schema():
    from tflite_micro.python.tflite_micro import runtime

    return runtime.schema_fb


# ---------------------------------------------------------------------------------------------
# The int16 sigmoid/tanh table


def measured_tflm_table() -> list[int]:
    """TFLM's 256-entry sigmoid table, measured from tflm-host's int16 TANH (input scale 2^-12, so
    no rescaling) on every non-negative int16 input: within interval k of the table, an input with
    fractional part u gives table[k] - 32768 + floor((u * (table[k+1] - table[k]) + 128) / 256);
    the (entry, slope) pairs that fit every output of an interval, chained from one interval to
    the next, leave exactly one table."""
    from tflite_micro.python.tflite_micro import runtime

    x = np.arange(0, 32768, dtype=np.int16)
    model = single_op_model("TANH", (x.size,), INT16, (2.0**-12, 0), INT16, (2.0**-15, 0))
    interpreter = runtime.Interpreter.from_bytes(model, arena_size=1 << 20)
    interpreter.set_input(x, 0)
    interpreter.invoke()
    y = np.array(interpreter.get_output(0)).astype(np.int64)
    a = 3 * x.astype(np.int64)
    k, u = a >> 8, a & 255
    candidates = []
    for interval in range(255):
        us, ys = u[k == interval], y[k == interval]
        fits = set()
        for slope in range(0, 1024):
            entries = set((ys + 32768 - ((us * slope + 128) >> 8)).tolist())
            if len(entries) == 1:
                fits.add((entries.pop(), slope))
        candidates.append(fits)
    for _ in range(255):  # keep pairs whose end is the next interval's start, until stable
        for i in range(254):
            starts = {e for e, _ in candidates[i + 1]}
            candidates[i] = {(e, s) for e, s in candidates[i] if e + s in starts}
            ends = {e + s for e, s in candidates[i]}
            candidates[i + 1] = {(e, s) for e, s in candidates[i + 1] if e in ends}
    assert all(len(c) == 1 for c in candidates), "the outputs do not pin the table down"
    pairs = [next(iter(c)) for c in candidates]
    return [e for e, _ in pairs] + [pairs[-1][0] + pairs[-1][1]]


def test_the_kernels_table_is_the_one_tflm_host_uses():
    body = re.search(r"sigmoid_table\[256\] = \{([^}]*)\}", KERNEL_SOURCE.read_text()).group(1)
    ours = [int(v) for v in body.replace("\n", " ").split(",")]
    assert ours == measured_tflm_table()


# ---------------------------------------------------------------------------------------------
# Real Keras models


def _float_model(units: int, steps: int, channels: int, return_sequences: bool, seed: int):
    K = keras()
    K.backend.clear_session()
    K.utils.set_random_seed(seed)
    inputs = K.Input((steps, channels), batch_size=1)  # a static batch: the converter fuses the LSTM
    x = K.layers.LSTM(units, return_sequences=return_sequences)(inputs)
    if return_sequences:
        x = K.layers.Flatten()(x)
    return K.Model(inputs, K.layers.Softmax()(K.layers.Dense(4)(x)))


def _qat_model(float_model, x: np.ndarray, seed: int):
    """Every layer but the LSTM quantization-aware (tfmot has no LSTM cell config), one epoch."""
    K, qk = keras(), tfmot().quantization.keras
    K.utils.set_random_seed(seed)
    annotated = K.models.clone_model(
        float_model, clone_function=lambda layer: layer if isinstance(layer, K.layers.LSTM)
        else qk.quantize_annotate_layer(layer))
    model = qk.quantize_apply(annotated)
    model.compile("adam", "sparse_categorical_crossentropy")
    y = np.random.default_rng(seed).integers(0, 4, len(x))
    model.fit(x, y, epochs=1, batch_size=1, verbose=0)
    return model


# (units, steps, channels, return_sequences, variant). A PTQ conversion takes ~5 s, a QAT one
# ~35 s (fine-tuning, then mcuquant's two conversions): the default run converts two models,
# --runslow all of them.
CASES = {
    "ptq-u8-t10-c3-seq": (8, 10, 3, True, "ptq"),
    "ptq-u16-t6-c6-last": (16, 6, 6, False, "ptq"),
    "ptq-u3-t20-c1-seq": (3, 20, 1, True, "ptq"),
    "ptq-u32-t100-c6-last": (32, 100, 6, False, "ptq"),  # the shape of a UEA BasicMotions model
    "qat-u12-t12-c6-last": (12, 12, 6, False, "qat"),
    "qat-u5-t7-c2-seq": (5, 7, 2, True, "qat"),
}
DEFAULT_CASES = ("ptq-u8-t10-c3-seq", "ptq-u16-t6-c6-last")


def _case(name: str):
    marks = [] if name in DEFAULT_CASES else [pytest.mark.slow]
    if not CASES[name][3]:
        marks.append(needs_strided_slice)
    return pytest.param(name, marks=marks)


@pytest.fixture(scope="module")
def converted():
    cache = {}

    def get(name: str) -> bytes:
        if name not in cache:
            units, steps, channels, return_sequences, variant = CASES[name]
            seed = list(CASES).index(name)
            x = np.random.default_rng(seed).normal(0.0, 1.0, (48, steps, channels)).astype(np.float32)
            model = _float_model(units, steps, channels, return_sequences, seed)
            if variant == "qat":
                cache[name] = convert_qat(_qat_model(model, x, seed), x[:16]).tflite
            else:
                cache[name] = convert_ptq(model, x[:16]).tflite
        return cache[name]

    return get


def _inputs(shape, n: int, seed: int) -> np.ndarray:
    """Uniform int8 noise, with the two extremes as samples 1 and 2."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (n, *shape), dtype=np.int8)
    x[1], x[2] = -128, 127
    return x


def _assert_same_sequence(model: bytes, n: int = SAMPLES, seed: int = 0) -> np.ndarray:
    """`n` samples one after the other through both runtimes (state carrying over): identical."""
    tflm, ours = Runner("tflm-host", model), Runner("builtin-host", model)
    xs = _inputs(tflm.input.shape[1:], n, seed)
    expected = tflm.run(xs, progress=False)
    got = ours.run(xs, progress=False)
    assert_identical(expected, got, xs, "LSTM model, samples in sequence")
    return xs


@pytest.mark.parametrize("name", [_case(n) for n in CASES])
def test_keras_lstm_is_bit_exact_on_samples_in_sequence(converted, name):
    model = converted(name)
    ops = [op.name for op in Graph.from_tflite(model).operators]
    assert ops[0] == LSTM and ops.count(LSTM) == 1, ops
    _assert_same_sequence(model)


@pytest.mark.qemu
@pytest.mark.parametrize("board", DSP_BOARDS)
@pytest.mark.parametrize("name", DEFAULT_CASES)
def test_keras_lstm_is_bit_exact_on_emulated_dsp_cores(converted, qemu_tools, board, name):
    """The packed gate rows through the DSP path (mq_dot_packed4's assembly), samples in sequence
    with the state carried over, as the host campaign runs them; odd sizes leave padded words."""
    from mcuquant.builtin.emulated import run_on_emulated_core

    model = converted(name)
    tflm = Runner("tflm-host", model)
    xs = _inputs(tflm.input.shape[1:], SAMPLES, 3)
    expected = tflm.run(xs, progress=False)
    for prepared in (None, HostRuntime(model).prepared_blob()):
        got = run_on_emulated_core(model, xs, board, prepared=prepared).outputs[0].reshape(expected.shape)
        assert_identical(expected, got, xs, f"LSTM model on {board} (prepared data {'in flash' if prepared else 'in the arena'})")


def test_state_carries_over_invokes_as_in_tflm(converted):
    """tflm-host keeps the LSTM state from one invoke to the next (its variable tensors are reset
    only when the interpreter is made); the builtin runtime does the same, and a fresh
    interpreter of either starts from the reset state."""
    model = converted("ptq-u8-t10-c3-seq")
    xs = _inputs((1, 10, 3), 6, seed=1)
    tflm, ours = Runner("tflm-host", model), Runner("builtin-host", model)
    in_sequence = [tflm.invoke(x) for x in xs]
    fresh = [Runner("tflm-host", model).invoke(x) for x in xs]
    assert np.array_equal(in_sequence[0], fresh[0])
    assert any(not np.array_equal(a, b) for a, b in zip(in_sequence[1:], fresh[1:])), \
        "tflm-host no longer carries the LSTM state over invokes: the runtime must follow"
    for k, x in enumerate(xs):
        assert_identical(in_sequence[k], ours.invoke(x), x, f"in sequence, sample {k}")
        assert_identical(fresh[k], Runner("builtin-host", model).invoke(x), x, f"fresh interpreter, sample {k}")


# ---------------------------------------------------------------------------------------------
# Edited conversions: other arithmetic paths


def _edit(model: bytes, change) -> bytes:
    """`model` unpacked with the schema's object API, `change(subgraph, lstm_operator, model)`
    applied, packed again."""
    import flatbuffers

    fb = _schema()
    m = fb.ModelT.InitFromPackedBuf(model, 0)
    g = m.subgraphs[0]
    op = next(o for o in g.operators if m.operatorCodes[o.opcodeIndex].builtinCode == 44)
    change(g, op, m)
    builder = flatbuffers.Builder(len(model) + 1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _set_cell_clip(value: float):
    def change(g, op, m):
        op.builtinOptions.cellClip = value
    return change


def _set_cell_scale(scale: float):
    def change(g, op, m):
        g.tensors[op.inputs[IN_CELL]].quantization.scale = [scale]
    return change


def _set_hidden_quantization(scale: float, zero_point: int):
    def change(g, op, m):
        q = g.tensors[op.inputs[IN_HIDDEN]].quantization
        q.scale, q.zeroPoint = [scale], [zero_point]
    return change


@pytest.mark.parametrize("what, change", [
    ("no cell clipping", _set_cell_clip(0.0)),
    ("tight cell clipping", _set_cell_clip(0.05)),
    ("clip below one cell step", _set_cell_clip(1e-6)),
    ("cell scale 2^-15", _set_cell_scale(2.0**-15)),
    ("cell scale 2^-12", _set_cell_scale(2.0**-12)),
    ("cell scale 2^-9 (tanh input shifted left)", _set_cell_scale(2.0**-9)),
    ("hidden state quantized unlike the output", _set_hidden_quantization(0.011, 37)),
])
def test_other_arithmetic_paths_are_bit_exact(converted, what, change):
    _assert_same_sequence(_edit(converted("ptq-u8-t10-c3-seq"), change), n=24, seed=3)


SHAPED = {"time-major": (True, (6, 3, 2)), "batched": (False, (2, 5, 3))}


@pytest.fixture(scope="module")
def shaped():
    """A time-major LSTM over 3 sequences ([time, batch, in]) or a batch-major one over 2."""
    K = keras()
    made = {}

    def get(name: str) -> bytes:
        if name in made:
            return made[name]
        time_major, shape = SHAPED[name]
        K.backend.clear_session()
        K.utils.set_random_seed(7)
        inputs = K.Input(shape[1:], batch_size=shape[0])
        model = K.Model(inputs, K.layers.LSTM(4, time_major=time_major, return_sequences=True)(inputs))
        x = np.random.default_rng(7).normal(0.0, 1.0, (16, *shape)).astype(np.float32)
        made[name] = _ptq_whole_batches(model, x)
        return made[name]

    return get


def _ptq_whole_batches(model, x: np.ndarray) -> bytes:
    """PTQ as mcuquant.quantize does it, with representative samples that carry their batch axis."""
    import warnings

    from mcuquant.tf_import import native_stderr_captured, tensorflow

    tf = tensorflow()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    converter.representative_dataset = lambda: ([sample] for sample in x)
    with warnings.catch_warnings(), native_stderr_captured():
        warnings.simplefilter("ignore", UserWarning)
        return bytes(converter.convert())


@pytest.mark.parametrize("name", ["time-major", pytest.param("batched", marks=pytest.mark.slow)])
def test_time_major_and_batched_sequences_are_bit_exact(shaped, name):
    """Whole tensors (the batch axis is part of a sample here), in sequence, in-process."""
    from tflite_micro.python.tflite_micro import runtime

    model = shaped(name)
    ops = [op.name for op in Graph.from_tflite(model).operators]
    assert ops == [LSTM], ops
    ours = HostRuntime(model)
    tflm = runtime.Interpreter.from_bytes(model, arena_size=1 << 20)
    for k, x in enumerate(_inputs(ours.input_shape, 12, seed=5)):
        tflm.set_input(x, 0)
        tflm.invoke()
        assert_identical(np.array(tflm.get_output(0)), ours.invoke(x), x, f"{name}, sample {k}")


# ---------------------------------------------------------------------------------------------
# Refusals


def _weights_shape(m, g, op, slot: int, shape):
    fb = _schema()
    buffer = fb.BufferT()
    buffer.data = np.zeros(int(np.prod(shape)), np.uint8)
    m.buffers.append(buffer)
    t = g.tensors[op.inputs[slot]]
    t.shape, t.buffer = list(shape), len(m.buffers) - 1


def _input(slot: int, value):
    def change(g, op, m):
        inputs = list(op.inputs)
        inputs[slot] = value(g, op) if callable(value) else value
        op.inputs = inputs
    return change


def _tensor(slot: int, **changes):
    def change(g, op, m):
        t = g.tensors[op.inputs[slot]]
        for key, value in changes.items():
            setattr(t, key, value)
    return change


def _per_channel(g, op, m):
    q = g.tensors[op.inputs[IN_W_FORGET]].quantization
    units = g.tensors[op.inputs[IN_W_FORGET]].shape[0]
    q.scale, q.zeroPoint, q.quantizedDimension = [q.scale[0]] * units, [0] * units, 0


def _output_shape(g, op, m):
    t = g.tensors[op.outputs[0]]
    t.shape = [t.shape[0], t.shape[1], t.shape[2] + 1]


def _activation(code: int):
    def change(g, op, m):
        op.builtinOptions.fusedActivationFunction = code
    return change


# (what, edit, builtin status, tflm-host refuses it too)
REFUSALS = [
    ("23 inputs", lambda g, op, m: setattr(op, "inputs", list(op.inputs)[:23]), "MQ_ERR_MALFORMED", True),
    ("input of rank 2", _tensor(IN_X, shape=[10, 3]), "MQ_ERR_SHAPE", False),
    ("input weights [units, in + 1]", lambda g, op, m: _weights_shape(m, g, op, IN_W_FORGET, (8, 4)),
     "MQ_ERR_SHAPE", True),
    ("per-channel gate weights", _per_channel, "MQ_ERR_QUANTIZATION", False),
    ("forget bias missing", _input(IN_BIAS_FORGET, -1), "MQ_ERR_MALFORMED", True),
    ("peephole weights present", _input(IN_PEEPHOLE, lambda g, op: op.inputs[IN_BIAS_FORGET]),
     "MQ_ERR_UNSUPPORTED_OPTION", True),
    ("cell state not variable", _tensor(IN_CELL, isVariable=False), "MQ_ERR_MALFORMED", True),
    ("hidden state not variable", _tensor(IN_HIDDEN, isVariable=False), "MQ_ERR_MALFORMED", True),
    ("hidden state of rank 1", _tensor(IN_HIDDEN, shape=[8]), "MQ_ERR_SHAPE", False),
    ("cell state of 9 elements", _tensor(IN_CELL, shape=[1, 9]), "MQ_ERR_SHAPE", True),
    ("int8 cell state", _tensor(IN_CELL, type=9), "MQ_ERR_UNSUPPORTED_TYPE", True),
    ("cell scale not a power of two", _set_cell_scale(1e-4), "MQ_ERR_QUANTIZATION", False),
    ("cell scale 2^3 (the tanh input would overflow int32)", _set_cell_scale(8.0), "MQ_ERR_QUANTIZATION", False),
    ("output [1, 10, units + 1]", _output_shape, "MQ_ERR_SHAPE", True),
    ("cell gate activation RELU", _activation(1), "MQ_ERR_UNSUPPORTED_OPTION", False),
]


@pytest.mark.parametrize("what, change, status, tflm_refuses", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_malformed_lstm_is_refused(converted, what, change, status, tflm_refuses):
    model = _edit(converted("ptq-u8-t10-c3-seq"), change)
    with pytest.raises(ModelError) as raised:
        HostRuntime(model)
    assert raised.value.status == status, str(raised.value)
    assert raised.value.op_name == LSTM, str(raised.value)
    if tflm_refuses:
        tflm = Runner("tflm-host", model)
        with pytest.raises(ModelError):
            tflm.run(np.zeros((1, *tflm.input.shape[1:]), np.int8), progress=False)
