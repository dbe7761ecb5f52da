"""The builtin runtime's sequence, shape and element-wise operators against TFLM, byte for byte.

What Keras' 1-D layers become in int8 TFLite was measured (TF 2.21, tf-keras and Keras 3 alike):
with a dynamic batch Conv1D / MaxPooling1D / AveragePooling1D are EXPAND_DIMS + CONV_2D /
MAX_POOL_2D / AVERAGE_POOL_2D + RESHAPE (with a fixed batch of one, RESHAPE + ... + RESHAPE),
GlobalAveragePooling1D is MEAN and GlobalMaxPooling1D / 2D are REDUCE_MAX. A dilated Conv1D with
a dynamic batch is wrapped in SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND with inconsistent shapes that
TFLM computes garbage from: refused (test_dilated_conv1d_with_dynamic_batch_is_refused); the two
operators themselves are tested on consistent schema models. The element-wise and
shape operators users hit come next: SUB, MAXIMUM, MINIMUM, LEAKY_RELU, PRELU, TRANSPOSE,
STRIDED_SLICE, SPLIT, SPLIT_V, EXPAND_DIMS, SQUEEZE.

- Real Keras models (tf-keras and Keras 3) converted with post-training quantization (int8 I/O);
  each case asserts that the converter produced the operators it claims to test, then every
  operator output of builtin-host and tflm-host is compared (test_builtin_ops_linear's harness).
- Single-operator models written with the schema for what the converter does not reach: every
  int8 input (pair) at random quantizations, SUB's multipliers (double, not float), negative and
  large LEAKY_RELU slopes, negative strides and masks, rank-5 transposes, SPACE_TO_BATCH_ND's
  padding (TFLM pads with 0, not with the zero point).
- Malformed options and operands that check() must reject, each with its status.
"""

from __future__ import annotations

import contextlib
import io
import itertools

import numpy as np
import pytest

from test_builtin_ops_linear import (INT8, INT32, Net, _quantize_multiplier, _reject, _requantize, assert_bit_exact,
                                     operators, tflm_refuses)

FLOAT32 = 0
(SUB, MAXIMUM, MINIMUM, LEAKY_RELU, PRELU, TRANSPOSE, STRIDED_SLICE, SPLIT, SPLIT_V, EXPAND_DIMS, SQUEEZE,
 REDUCE_MAX, SPACE_TO_BATCH_ND, BATCH_TO_SPACE_ND) = (41, 55, 57, 98, 54, 39, 45, 49, 102, 70, 43, 82, 38, 37)


# ---------------------------------------------------------------------------------------------
# Keras models converted with PTQ


def convert(build, shape, *, keras3: bool = False, fixed_batch: bool = False, seed: int = 0) -> bytes:
    """The Keras model of `build(layers, tf)` (tf-keras, or Keras 3), random biases and PReLU
    slopes, calibrated on normal samples, converted to int8 by mcuquant's own PTQ path."""
    from mcuquant.quantize import convert_ptq
    from mcuquant.tf_import import keras, tensorflow

    tf = tensorflow()
    if keras3:
        import keras as K
    else:
        K = keras()
    K.utils.set_random_seed(seed)
    inp = K.Input(shape, batch_size=1 if fixed_batch else None)
    model = K.Model(inp, build(K.layers, tf)(inp))
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if "bias" in w.name:
            w.assign(rng.normal(0, 0.5, w.shape).astype(np.float32))
        elif "alpha" in w.name:  # PReLU slopes start at zero
            w.assign(rng.normal(0.2, 0.4, w.shape).astype(np.float32))
    representative = rng.normal(0, 1, (32, *shape)).astype(np.float32)
    with contextlib.redirect_stdout(io.StringIO()):  # Keras 3's export prints its signature
        return convert_ptq(model, representative).tflite


def _chain(*layers):
    def apply(x):
        for layer in layers:
            x = layer(x)
        return x
    return apply


def _two_heads(trunk, left, right, join):
    """trunk, then `left` and `right` on its output, joined."""
    def apply(x):
        t = trunk(x)
        return join([left(t), right(t)])
    return apply


def _lambda(L, fn):
    return L.Lambda(fn)


# id: (input shape without batch, options for convert(), ops the converted model must contain,
#      builder(L, tf) -> function of the input tensor)
PTQ_CASES = {
    "conv1d-same-relu/maxpool1d/conv1d-s2-valid/avgpool1d-same/gap1d": (
        (24, 3), {}, ["EXPAND_DIMS", "CONV_2D", "RESHAPE", "MAX_POOL_2D", "AVERAGE_POOL_2D", "MEAN"],
        lambda L, tf: _chain(L.Conv1D(6, 3, padding="same", activation="relu"), L.MaxPooling1D(2),
                             L.Conv1D(5, 3, strides=2), L.AveragePooling1D(2, strides=1, padding="same"),
                             L.GlobalAveragePooling1D())),
    "fixed-batch:conv1d-k5/maxpool1d-3/gmp1d": (
        (30, 2), {"fixed_batch": True}, ["RESHAPE", "CONV_2D", "MAX_POOL_2D", "REDUCE_MAX"],
        lambda L, tf: _chain(L.Conv1D(4, 5, padding="same"), L.MaxPooling1D(3), L.GlobalMaxPooling1D())),
    "fixed-batch:conv1d-dilated-same/conv1d-dilated-causal": (
        (20, 3), {"fixed_batch": True}, ["CONV_2D", "PAD", "CONV_2D"],
        lambda L, tf: _chain(L.Conv1D(4, 3, dilation_rate=2, padding="same", activation="relu"),
                             L.Conv1D(3, 2, dilation_rate=3, padding="causal"))),
    "keras3:conv1d/maxpool1d/avgpool1d/gmp1d+gap1d": (
        (16, 4), {"keras3": True}, ["RESHAPE", "CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "REDUCE_MAX", "MEAN"],
        lambda L, tf: _two_heads(_chain(L.Conv1D(8, 3, padding="same", activation="relu"), L.MaxPooling1D(2),
                                        L.AveragePooling1D(2)),
                                 L.GlobalMaxPooling1D(), L.GlobalAveragePooling1D(), L.Concatenate())),
    "keras3:conv1d/leaky/subtract": (
        (12, 2), {"keras3": True}, ["PAD", "RESHAPE", "LEAKY_RELU", "SUB"],
        lambda L, tf: _two_heads(_chain(L.Conv1D(4, 3, padding="causal"), L.LeakyReLU(0.2)),
                                 L.Conv1D(4, 1), L.Conv1D(4, 1), L.Subtract())),
    "gmp2d/reduce-max-last-keepdims/reduce-max-axes-1-3": (
        (6, 7, 5), {"fixed_batch": True}, ["REDUCE_MAX", "REDUCE_MAX", "REDUCE_MAX"],
        lambda L, tf: _two_heads(L.Conv2D(4, 1),
                                 _chain(L.GlobalMaxPooling2D()),
                                 _chain(_lambda(L, lambda t: tf.reduce_max(t, axis=-1, keepdims=True)), L.Dense(3),
                                        _lambda(L, lambda t: tf.reduce_max(t, axis=[1, 3]))),
                                 L.Concatenate())),
    "subtract-relu/sub-const-channels/const-sub/maximum/minimum-const": (
        (5, 6, 3), {"fixed_batch": True}, ["SUB", "SUB", "SUB", "MAXIMUM", "MINIMUM"],
        lambda L, tf: _chain(
            lambda x: L.ReLU()(L.Subtract()([L.Dense(3)(x), L.Dense(3)(x)])),
            _lambda(L, lambda t: t - tf.constant(np.array([0.5, -2.0, 1.5], np.float32))),
            _lambda(L, lambda t: tf.constant(np.linspace(-1, 1, 6, dtype=np.float32).reshape(6, 1)) - t),
            lambda x: L.Maximum()([x, L.Dense(3)(x)]),
            _lambda(L, lambda t: tf.minimum(t, tf.constant(np.array([0.3, 0.8, -0.1], np.float32)))))),
    "sub-rank5-bcast/maximum-bcast/minimum-scalar": (
        (2, 3, 4, 5), {"fixed_batch": True}, ["SUB", "MAXIMUM", "MINIMUM"],
        lambda L, tf: _chain(
            _lambda(L, lambda t: t - tf.constant(np.random.default_rng(3).normal(0, 1, (3, 1, 5)).astype(np.float32))),
            lambda x: L.Maximum()([x, _lambda(L, lambda t: tf.reduce_mean(t, axis=[1, 2], keepdims=True))(x)]),
            _lambda(L, lambda t: tf.minimum(t, 0.7)))),
    "leaky-0.3/leaky-0.01/leaky-2.5/prelu/prelu-shared": (
        (6, 5, 4), {"fixed_batch": True}, ["LEAKY_RELU", "LEAKY_RELU", "LEAKY_RELU", "PRELU", "PRELU"],
        lambda L, tf: _chain(L.Dense(4), L.LeakyReLU(0.3), L.Dense(4), L.LeakyReLU(0.01), L.Dense(4),
                             _lambda(L, lambda t: tf.nn.leaky_relu(t, alpha=2.5)), L.Dense(4), L.PReLU(),
                             L.Dense(4), L.PReLU(shared_axes=[1, 2]))),
    "permute-rank3/permute-rank4/transpose-rank5": (
        (3, 4, 5, 2), {"fixed_batch": True}, ["TRANSPOSE", "TRANSPOSE", "TRANSPOSE"],
        lambda L, tf: _chain(L.Dense(2), _lambda(L, lambda t: tf.transpose(t, [0, 4, 2, 1, 3])),
                             L.Reshape((2 * 5, 4 * 3)), L.Permute((2, 1)), L.Reshape((6, 2, 10)),
                             L.Permute((3, 1, 2)))),
    "cropping1d/strided/negative-stride/shrink": (
        (12, 6), {"fixed_batch": True}, ["STRIDED_SLICE", "STRIDED_SLICE", "STRIDED_SLICE", "STRIDED_SLICE"],
        lambda L, tf: _chain(L.Dense(6), L.Cropping1D((1, 2)), _lambda(L, lambda t: t[:, ::2, 1:-1]),
                             _lambda(L, lambda t: t[:, ::-1, ::-2]), L.Dense(3), _lambda(L, lambda t: t[:, 2]))),
    "cropping2d/slice-last-3/slice-begin-mask": (
        (8, 9, 5), {"fixed_batch": True}, ["STRIDED_SLICE", "STRIDED_SLICE", "STRIDED_SLICE"],
        lambda L, tf: _chain(L.Conv2D(5, 1), L.Cropping2D(((1, 0), (2, 1))), _lambda(L, lambda t: t[..., -3:]),
                             _lambda(L, lambda t: t[:, :-2, 3:, :]))),
    "split-3/split-v/concat": (
        (4, 5, 6), {"fixed_batch": True}, ["SPLIT", "SPLIT_V"],
        lambda L, tf: _chain(
            L.Dense(6),
            lambda x: L.Concatenate()([L.ReLU()(p) if i == 1 else p for i, p in enumerate(tf.split(x, 3, axis=-1))]),
            lambda x: L.Concatenate(axis=2)(
                [L.Dense(6)(p) for p in tf.split(x, [1, 3, 1], axis=2)]))),
}


@pytest.fixture(scope="module")
def ptq_models() -> dict[str, bytes]:
    """All cases converted once (conversion dominates this module's run time)."""
    return {case: convert(build, shape, **opts) for case, (shape, opts, _, build) in PTQ_CASES.items()}


@pytest.mark.parametrize("padding", ["same", "causal"])
def test_dilated_conv1d_with_dynamic_batch_is_refused(padding):
    """With a dynamic batch the converter wraps a dilated Conv1D in SPACE_TO_BATCH_ND /
    BATCH_TO_SPACE_ND but stores their batch dimension as 1 instead of batch x block. TFLM trusts
    the stored shapes: it computes one phase of the block and leaves the other output rows as the
    arena held them (SAME padding also pads with an uninitialized value). The runtime refuses the
    model, naming the operator; TFLM runs it. (With a fixed batch of one the dilation stays inside
    CONV_2D: PTQ case fixed-batch:conv1d-dilated-*.)"""
    from mcuquant.builtin.host import HostRuntime
    from mcuquant.errors import McuquantError

    model = convert(lambda L, tf: L.Conv1D(4, 3, dilation_rate=2, padding=padding), (12, 2))
    from ai_edge_litert import schema_py_generated as fb

    m = fb.ModelT.InitFromPackedBuf(bytearray(model), 0)
    g = m.subgraphs[0]
    s2b = [op for op in g.operators if m.operatorCodes[op.opcodeIndex].builtinCode == SPACE_TO_BATCH_ND]
    assert len(s2b) == 1 and g.tensors[s2b[0].outputs[0]].shape[0] == 1  # block 2: should be 2
    with pytest.raises(McuquantError, match=r"at operator \d+ \(SPACE_TO_BATCH_ND\)"):
        HostRuntime(model)
    assert not tflm_refuses(model)


@pytest.mark.parametrize("case", list(PTQ_CASES))
def test_ptq_model_bit_exact(ptq_models, case):
    model = ptq_models[case]
    produced = [name for name, _, _ in operators(model)]
    remaining = list(produced)
    for name in PTQ_CASES[case][2]:
        assert name in remaining, f"{case}: expected {name}; the converter produced {produced}"
        remaining.remove(name)
    assert_bit_exact(model, case)


# ---------------------------------------------------------------------------------------------
# Single-operator models written with the schema


def _multi_output(model: bytes, outputs: list[int]) -> bytes:
    """The one-operator model with `outputs` as the operator's and the graph's outputs."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    m = fb.ModelT.InitFromPackedBuf(bytearray(model), 0)
    m.subgraphs[0].operators[0].outputs = list(outputs)
    m.subgraphs[0].outputs = list(outputs)
    builder = flatbuffers.Builder(1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _q(rng) -> tuple[float, int]:
    return float(np.float32(10 ** rng.uniform(-2.5, 0.5))), int(rng.integers(-128, 128))


ALL_INT8 = np.arange(-128, 128, dtype=np.int8)


def _pairs_model(opcode, rng, options_type=None, out_scale=None, **options) -> bytes:
    """[256, 1] input against a constant [1, 256] operand: all 65536 int8 pairs."""
    qa, qb, qo = _q(rng), _q(rng), _q(rng)
    n = Net()
    a = n.tensor((256, 1), INT8, *qa)
    b = n.tensor((1, 256), INT8, *qb, data=ALL_INT8.reshape(1, 256))
    y = n.tensor((256, 256), INT8, out_scale(qa[0], qb[0]) if out_scale else qo[0], qo[1])
    return n.build(opcode, [a, b], y, options_type, **options)


PAIRS = [ALL_INT8.reshape(256, 1)]


@pytest.mark.parametrize("seed", range(3))
def test_sub_all_input_pairs(seed):
    rng = np.random.default_rng(seed)
    model = _pairs_model(SUB, rng, "SubOptions", out_scale=lambda a, b: np.float32(max(a, b) * rng.uniform(0.5, 3)),
                         fusedActivationFunction=int(rng.integers(0, 4)))
    assert_bit_exact(model, f"SUB pairs seed {seed}", samples=PAIRS)


def _sub_multipliers(s1, s2, s_out, in_float: bool) -> list[tuple[int, int]]:
    """SUB's three multipliers, the ratios computed in float (as TFLM's sources) or in double."""
    f1, f2, fo = np.float32(s1), np.float32(s2), np.float32(s_out)
    twice = np.float32(2) * max(f1, f2)
    if in_float:
        reals = [f1 / twice, f2 / twice, twice / (np.float32(1 << 20) * fo)]
    else:
        reals = [float(f1) / float(twice), float(f2) / float(twice), float(twice) / ((1 << 20) * float(fo))]
    return [_quantize_multiplier(float(r)) for r in reals]


def _sub_all_pairs(multipliers, zp1, zp2, zp_out) -> np.ndarray:
    """SUB over all int8 pairs ([256, 1] - [1, 256]), TFLM's integer path written out."""
    (m1, e1), (m2, e2), (mo, eo) = multipliers
    a = (ALL_INT8.astype(np.int64) - zp1) << 20
    b = (ALL_INT8.astype(np.int64) - zp2) << 20
    diff = _requantize(a, m1, e1)[:, None] - _requantize(b, m2, e2)[None, :]
    return np.clip(_requantize(diff, mo, eo) + zp_out, -128, 127)


def test_sub_multipliers_are_computed_in_double():
    """SUB at quantizations where computing its ratios in float (as TFLM's sources of 2023-2026
    read) instead of double (as ADD) changes some of the 65536 results: the PyPI tflite-micro
    build gives the double results (measured), and so does the runtime."""
    from mcuquant.builtin.host import HostRuntime

    rng = np.random.default_rng(11)
    for _ in range(20000):
        qa, qb, qo = _q(rng), _q(rng), _q(rng)
        s_out = float(np.float32(max(qa[0], qb[0]) * rng.uniform(0.5, 3)))
        float_m, double_m = _sub_multipliers(qa[0], qb[0], s_out, True), _sub_multipliers(qa[0], qb[0], s_out, False)
        if float_m == double_m or any(e > 0 for _, e in float_m + double_m):
            continue
        want, other = _sub_all_pairs(double_m, qa[1], qb[1], qo[1]), _sub_all_pairs(float_m, qa[1], qb[1], qo[1])
        if (want != other).any():
            break
    else:
        raise AssertionError("no discriminating quantization found")
    n = Net()
    a = n.tensor((256, 1), INT8, *qa)
    b = n.tensor((1, 256), INT8, *qb, data=ALL_INT8.reshape(1, 256))
    y = n.tensor((256, 256), INT8, s_out, qo[1])
    model = n.build(SUB, [a, b], y, "SubOptions")
    assert_bit_exact(model, f"SUB double multipliers {qa} {qb} {s_out}", samples=PAIRS)
    np.testing.assert_array_equal(HostRuntime(model).invoke(PAIRS[0]), want)


@pytest.mark.parametrize("opcode", [MAXIMUM, MINIMUM])
def test_maximum_minimum_all_input_pairs_compare_raw_values(opcode):
    """Different quantizations on purpose: TFLM compares raw int8 values and requantizes nothing."""
    from mcuquant.builtin.host import HostRuntime

    model = _pairs_model(opcode, np.random.default_rng(opcode))
    assert_bit_exact(model, "MAXIMUM/MINIMUM pairs", samples=PAIRS)
    got = HostRuntime(model).invoke(PAIRS[0]).astype(np.int16)
    a, b = ALL_INT8.reshape(256, 1).astype(np.int16), ALL_INT8.reshape(1, 256).astype(np.int16)
    assert (got == (np.maximum(a, b) if opcode == MAXIMUM else np.minimum(a, b))).all()


@pytest.mark.parametrize("alpha", [0.3, 0.01, -0.4, 2.5, 0.0, 70.0])
def test_leaky_relu_all_inputs(alpha):
    rng = np.random.default_rng(int(abs(alpha) * 100))
    for _ in range(4):
        n = Net()
        x = n.tensor((1, 256), INT8, *_q(rng))
        y = n.tensor((1, 256), INT8, *_q(rng))
        model = n.build(LEAKY_RELU, [x], y, "LeakyReluOptions", alpha=alpha)
        assert_bit_exact(model, f"LEAKY_RELU alpha {alpha}", samples=[ALL_INT8.reshape(1, 256)])


def _leaky_all_inputs(identity, alpha, zp_in, zp_out, negative) -> np.ndarray:
    """LEAKY_RELU over all int8 inputs, TFLM's integer path written out (multipliers below one)."""
    v = ALL_INT8.astype(np.int64) - zp_in
    below = _requantize(np.minimum(v, 0), *alpha)
    return np.clip(np.where(v >= 0, _requantize(np.maximum(v, 0), *identity), -below if negative else below) + zp_out,
                   -128, 127)


def test_leaky_relu_multipliers_are_computed_in_double():
    """Quantizations where TFLM's sources' float ratios and the double ones give different
    results: the PyPI tflite-micro build gives the double results (measured), so does the runtime."""
    from mcuquant.builtin.host import HostRuntime

    rng = np.random.default_rng(1)
    for _ in range(200000):  # the first hit comes after about 85,000 draws (a few seconds)
        (s_in, zp_in), (s_out, zp_out) = _q(rng), _q(rng)
        alpha = float(np.float32(rng.uniform(-1, 1)))
        if s_in >= s_out:
            continue
        fi, fo, fa = np.float32(s_in), np.float32(s_out), np.float32(alpha)
        float_m = (_quantize_multiplier(float(fi / fo)), _quantize_multiplier(abs(float(fi * fa / fo))))
        double_m = (_quantize_multiplier(float(fi) / float(fo)), _quantize_multiplier(abs(float(fi) * float(fa) / float(fo))))
        if float_m == double_m or float_m[1][1] > 0 or double_m[1][1] > 0:
            continue
        want = _leaky_all_inputs(*double_m, zp_in, zp_out, alpha < 0)
        if (want != _leaky_all_inputs(*float_m, zp_in, zp_out, alpha < 0)).any():
            break
    else:
        raise AssertionError("no discriminating quantization found")
    n = Net()
    x = n.tensor((1, 256), INT8, s_in, zp_in)
    y = n.tensor((1, 256), INT8, s_out, zp_out)
    model = n.build(LEAKY_RELU, [x], y, "LeakyReluOptions", alpha=alpha)
    assert_bit_exact(model, f"LEAKY_RELU double multipliers {s_in} {s_out} {alpha}", samples=[ALL_INT8.reshape(1, 256)])
    np.testing.assert_array_equal(HostRuntime(model).invoke(ALL_INT8.reshape(1, 256)).reshape(-1), want)


@pytest.mark.parametrize("seed", range(2))
def test_prelu_all_input_pairs(seed):
    assert_bit_exact(_pairs_model(PRELU, np.random.default_rng(seed + 20)), "PRELU pairs", samples=PAIRS)


def test_prelu_alpha_broadcast_per_channel():
    rng = np.random.default_rng(5)
    n = Net()
    x = n.tensor((1, 4, 5, 3), INT8, 0.05, -3)
    alpha = n.tensor((1, 1, 3), INT8, 0.01, 7, data=rng.integers(-128, 128, (1, 1, 3), dtype=np.int8))
    y = n.tensor((1, 4, 5, 3), INT8, 0.04, 10)
    assert_bit_exact(n.build(PRELU, [x, alpha], y), "PRELU per channel", n=6)


def _transpose_model(shape, perm) -> bytes:
    n = Net()
    x = n.tensor(shape, INT8, 0.1, 3)
    p = n.tensor((len(perm),), INT32, data=np.asarray(perm, np.int32))
    y = n.tensor([shape[k] for k in perm], INT8, 0.1, 3)
    return n.build(TRANSPOSE, [x, p], y)


def test_transpose_every_permutation_up_to_rank_4_and_some_of_rank_5():
    shapes = {1: (5,), 2: (3, 4), 3: (2, 3, 4), 4: (2, 3, 4, 5)}
    for rank, shape in shapes.items():
        for perm in itertools.permutations(range(rank)):
            assert_bit_exact(_transpose_model(shape, perm), f"TRANSPOSE {shape} {perm}", n=1)
    for perm in list(itertools.permutations(range(5)))[::17]:
        assert_bit_exact(_transpose_model((2, 3, 1, 4, 2), perm), f"TRANSPOSE rank 5 {perm}", n=1)


def _slice_model(shape, begin, end, strides, out_shape, **masks) -> bytes:
    n = Net()
    x = n.tensor(shape, INT8, 0.1, -4)
    ins = [n.tensor((len(shape),), INT32, data=np.asarray(v, np.int32)) for v in (begin, end, strides)]
    y = n.tensor(out_shape, INT8, 0.1, -4)
    return n.build(STRIDED_SLICE, [x, *ins], y, "StridedSliceOptions", **masks)


def _sliced_shape(shape, begin, end, strides, begin_mask, end_mask, shrink):
    """numpy's slicing of the same (the converter's and TFLM's semantics for these cases)."""
    index = []
    for d, (b, e, s) in enumerate(zip(begin, end, strides)):
        if shrink >> d & 1:
            index.append(b)
        else:
            index.append(slice(None if begin_mask >> d & 1 else b, None if end_mask >> d & 1 else e, s))
    return np.zeros(shape)[tuple(index)].shape


def test_strided_slice_random_masks_strides_and_negative_indices():
    """Random slices of rank 1..4 tensors; each output shape is numpy's, so TFLM accepts them."""
    rng = np.random.default_rng(9)
    done = 0
    while done < 60:
        shape = tuple(int(v) for v in rng.integers(1, 7, rng.integers(1, 5)))
        rank = len(shape)
        strides = [int(rng.choice([1, 2, 3, -1, -2])) for _ in shape]
        begin = [int(rng.integers(-8, 8)) for _ in shape]
        end = [int(rng.integers(-8, 8)) for _ in shape]
        begin_mask, end_mask = int(rng.integers(0, 1 << rank)), int(rng.integers(0, 1 << rank))
        shrink = 0
        for d in range(rank):  # shrink only where TFLM's evaluation writes the element
            if rng.random() < 0.2 and -shape[d] <= begin[d] < shape[d]:
                shrink |= 1 << d
                strides[d] = 1
        begin_mask &= ~shrink
        out = _sliced_shape(shape, begin, end, strides, begin_mask, end_mask, shrink)
        if 0 in out:
            continue
        model = _slice_model(shape, begin, end, strides, out, beginMask=begin_mask, endMask=end_mask,
                             shrinkAxisMask=shrink)
        assert_bit_exact(model, f"STRIDED_SLICE {shape} {begin}:{end}:{strides} masks {begin_mask} {end_mask} "
                                f"{shrink}", n=1)
        done += 1


def test_strided_slice_ignores_ellipsis_new_axis_and_offset_like_tflm():
    """TFLM drops these three options; so does the runtime (the output is the plain slice)."""
    model = _slice_model((4, 6), [1, 0], [3, 6], [1, 2], (2, 3), ellipsisMask=1, newAxisMask=2, offset=True)
    assert_bit_exact(model, "STRIDED_SLICE with ignored options", n=2)


def _split_model(opcode, shape, axis, out_shapes, size_splits=None) -> bytes:
    n = Net()
    x = n.tensor(shape, INT8, 0.1, 2)
    ax = n.tensor((1,), INT32, data=np.array([axis], np.int32))
    outs = [n.tensor(s, INT8, 0.1, 2) for s in out_shapes]
    if opcode == SPLIT:
        # The graph input must be tensor 0: the data tensor, so the axis comes second in the list.
        model = n.build(SPLIT, [ax, x], outs[0], "SplitOptions", numSplits=len(outs))
    else:
        sizes = n.tensor((len(out_shapes),), INT32, data=np.asarray(size_splits, np.int32))
        model = n.build(SPLIT_V, [x, sizes, ax], outs[0], "SplitVOptions", numSplits=len(outs))
    return _multi_output(model, outs)


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
def test_split_and_split_v_along_every_axis(axis):
    shape = (6, 4, 6)
    a = axis % 3
    parts = [list(shape) for _ in range(2)]
    for p in parts:
        p[a] = shape[a] // 2
    assert_bit_exact(_split_model(SPLIT, shape, axis, parts), f"SPLIT axis {axis}", n=2)
    sizes = [1, shape[a] - 3, 2]
    parts = [[s if d != a else k for d, s in enumerate(shape)] for k in sizes]
    assert_bit_exact(_split_model(SPLIT_V, shape, axis, parts, sizes), f"SPLIT_V axis {axis}", n=2)


def test_split_into_one_and_into_every_element():
    assert_bit_exact(_split_model(SPLIT, (3, 5), 1, [(3, 5)]), "SPLIT in one", n=1)
    assert_bit_exact(_split_model(SPLIT, (3, 5), 1, [(3, 1)] * 5), "SPLIT in five", n=1)


def _squeeze_model(shape, dims, out_shape) -> bytes:
    n = Net()
    x = n.tensor(shape, INT8, 0.1, 2)
    y = n.tensor(out_shape, INT8, 0.1, 2)
    return n.build(SQUEEZE, [x], y, "SqueezeOptions", squeezeDims=list(dims))


def _expand_model(shape, axis, out_shape, ttype=INT8) -> bytes:
    n = Net()
    x = n.tensor(shape, ttype, *((0.1, 2) if ttype == INT8 else ()))
    ax = n.tensor((1,), INT32, data=np.array([axis], np.int32))
    y = n.tensor(out_shape, ttype, *((0.1, 2) if ttype == INT8 else ()))
    return n.build(EXPAND_DIMS, [x, ax], y)


def test_squeeze_and_expand_dims():
    for dims, out in (([], (3, 4)), ([0], (3, 1, 4, 1)), ([-1, 2], (1, 3, 4)), ([0, 2, 4], (3, 4))):
        assert_bit_exact(_squeeze_model((1, 3, 1, 4, 1), dims, out), f"SQUEEZE {dims}", n=1)
    for axis, out in ((0, (1, 3, 4)), (1, (3, 1, 4)), (2, (3, 4, 1)), (-1, (3, 4, 1)), (-3, (1, 3, 4))):
        assert_bit_exact(_expand_model((3, 4), axis, out), f"EXPAND_DIMS {axis}", n=1)


def test_expand_dims_float32():
    from tflite_micro.python.tflite_micro import runtime

    from mcuquant.builtin.host import HostRuntime

    model = _expand_model((3, 4), 1, (3, 1, 4), FLOAT32)
    x = np.random.default_rng(0).normal(0, 1, (3, 4)).astype(np.float32)
    tflm = runtime.Interpreter.from_bytes(model, arena_size=1 << 20)
    tflm.set_input(x, 0)
    tflm.invoke()
    assert HostRuntime(model).invoke(x).tobytes() == tflm.get_output(0).tobytes()


def _space_model(opcode, shape, block, pads, out_shape, zp=5) -> bytes:
    n = Net()
    x = n.tensor(shape, INT8, 0.1, zp)
    b = n.tensor((len(block),), INT32, data=np.asarray(block, np.int32))
    p = n.tensor((len(block), 2), INT32, data=np.asarray(pads, np.int32))
    y = n.tensor(out_shape, INT8, 0.1, zp)
    return n.build(opcode, [x, b, p], y)


def test_space_to_batch_and_back():
    """Rank 3 and 4, blocks, crops, a non-zero zero point."""
    cases = [((1, 4, 2), [2], [[0, 0]], (2, 2, 2), [[1, 0]]), ((2, 6, 3), [3], [[0, 0]], (6, 2, 3), [[0, 2]]),
             ((1, 4, 6, 2), [2, 3], [[0, 0], [0, 0]], (6, 2, 2, 2), [[1, 0], [2, 1]]),
             ((2, 3, 4, 1), [1, 2], [[0, 0], [0, 0]], (4, 3, 2, 1), [[0, 1], [0, 1]])]
    for shape, block, pads, out, crops in cases:
        s2b = _space_model(SPACE_TO_BATCH_ND, shape, block, pads, out)
        assert_bit_exact(s2b, f"SPACE_TO_BATCH_ND {shape} {block}", n=2)
        cropped = (shape[0], *(n * b - sum(c) for n, b, c in zip(out[1:-1], block, crops)), shape[-1])
        b2s = _space_model(BATCH_TO_SPACE_ND, out, block, crops, cropped)
        assert_bit_exact(b2s, f"BATCH_TO_SPACE_ND {out} {block} {crops}", n=2)


def test_space_to_batch_padding_is_refused_because_tflm_pads_with_stale_arena_bytes():
    """TFLM's SPACE_TO_BATCH_ND pads with an uninitialized value (measured with this model: 0 in a
    fresh process, -4 after other models of this file had run, their zero point). TFLM runs it,
    no device can match it: the runtime refuses such paddings."""
    model = _space_model(SPACE_TO_BATCH_ND, (1, 5, 2), [2], [[2, 1]], (2, 4, 2))
    assert _reject(model) == "MQ_ERR_UNSUPPORTED_OPTION"
    assert not tflm_refuses(model)


def test_reduce_max_rank5_duplicate_and_negative_axes():
    for axes, out in (([1, -1, 1], (2, 4, 2)), ([2, 2], (2, 3, 2, 5)), ([0, 1, 2, 3, 4], (1,)), ([-2], (2, 3, 4, 5))):
        n = Net()
        x = n.tensor((2, 3, 4, 2, 5), INT8, 0.1, -2)
        ax = n.tensor((len(axes),), INT32, data=np.asarray(axes, np.int32))
        y = n.tensor(out, INT8, 0.1, -2)
        assert_bit_exact(n.build(REDUCE_MAX, [x, ax], y, "ReducerOptions"), f"REDUCE_MAX {axes}", n=2)


# ---------------------------------------------------------------------------------------------
# Rejections


def _sub_model(out_scale=0.1, act=0) -> bytes:
    n = Net()
    a = n.tensor((1, 4), INT8, 1.0, 0)
    b = n.tensor((1, 4), INT8, 1.0, 0, data=np.ones((1, 4), np.int8))
    y = n.tensor((1, 4), INT8, out_scale, 0)
    return n.build(SUB, [a, b], y, "SubOptions", fusedActivationFunction=act)


def _leaky_model(alpha) -> bytes:
    n = Net()
    x = n.tensor((1, 8), INT8, 0.1, 0)
    y = n.tensor((1, 8), INT8, 0.1, 0)
    return n.build(LEAKY_RELU, [x], y, "LeakyReluOptions", alpha=alpha)


def _reduce_max_model(out_q=(0.1, -2), axes=(1,)) -> bytes:
    n = Net()
    x = n.tensor((1, 4, 5), INT8, 0.1, -2)
    ax = n.tensor((len(axes),), INT32, data=np.asarray(axes, np.int32))
    y = n.tensor((1, 5), INT8, *out_q)
    return n.build(REDUCE_MAX, [x, ax], y, "ReducerOptions")


def _non_constant_perm() -> bytes:
    """The permutation as a second graph input."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    n = Net()
    x = n.tensor((2, 3), INT8, 0.1, 0)
    p = n.tensor((2,), INT32)
    y = n.tensor((3, 2), INT8, 0.1, 0)
    m = fb.ModelT.InitFromPackedBuf(bytearray(n.build(TRANSPOSE, [x, p], y)), 0)
    m.subgraphs[0].inputs = [x, p]
    builder = flatbuffers.Builder(1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _transpose_perm_out_of_range() -> bytes:
    n = Net()
    x = n.tensor((2, 3), INT8, 0.1, 3)
    p = n.tensor((2,), INT32, data=np.array([0, 2], np.int32))
    y = n.tensor((2, 3), INT8, 0.1, 3)
    return n.build(TRANSPOSE, [x, p], y)


REJECTIONS = {
    # TFLM aborts on a SUB output multiplier >= 1 (QuantizeMultiplierSmallerThanOneExp).
    "sub-output-multiplier-not-below-one": (lambda: _sub_model(out_scale=1e-7), "MQ_ERR_QUANTIZATION"),
    "sub-fused-tanh": (lambda: _sub_model(act=4), "MQ_ERR_UNSUPPORTED_OPTION"),
    "leaky-alpha-nan": (lambda: _leaky_model(float("nan")), "MQ_ERR_UNSUPPORTED_OPTION"),
    "leaky-alpha-inf": (lambda: _leaky_model(float("inf")), "MQ_ERR_UNSUPPORTED_OPTION"),
    "transpose-perm-repeated": (lambda: _transpose_model((2, 3, 4), [0, 1, 1]), "MQ_ERR_UNSUPPORTED_OPTION"),
    "transpose-perm-out-of-range": (_transpose_perm_out_of_range, "MQ_ERR_UNSUPPORTED_OPTION"),
    "transpose-perm-not-constant": (_non_constant_perm, "MQ_ERR_UNSUPPORTED_OPTION"),
    "transpose-rank-6": (lambda: _transpose_model((1, 2, 1, 2, 1, 2), [5, 4, 3, 2, 1, 0]), "MQ_ERR_SHAPE"),
    "slice-rank-5": (lambda: _slice_model((1, 2, 2, 2, 2), [0] * 5, [1] * 5, [1] * 5, (1, 1, 1, 1, 1)), "MQ_ERR_SHAPE"),
    "slice-stride-0": (lambda: _slice_model((4,), [0], [4], [0], (4,)), "MQ_ERR_UNSUPPORTED_OPTION"),
    "slice-output-shape-wrong": (lambda: _slice_model((6,), [0], [6], [2], (4,)), "MQ_ERR_SHAPE"),
    "slice-shrink-negative-stride": (lambda: _slice_model((4, 3), [1, 0], [2, 3], [-1, 1], (3,), shrinkAxisMask=1),
                                     "MQ_ERR_UNSUPPORTED_OPTION"),
    "slice-shrink-begin-past-end": (lambda: _slice_model((4, 3), [7, 0], [8, 3], [1, 1], (3,), shrinkAxisMask=1),
                                    "MQ_ERR_UNSUPPORTED_OPTION"),
    "split-axis-out-of-range": (lambda: _split_model(SPLIT, (4, 6), 2, [(4, 3), (4, 3)]), "MQ_ERR_SHAPE"),
    "split-unequal-outputs": (lambda: _split_model(SPLIT, (4, 6), 1, [(4, 2), (4, 4)]), "MQ_ERR_SHAPE"),
    "split-v-sizes-do-not-add-up": (lambda: _split_model(SPLIT_V, (4, 6), 1, [(4, 2), (4, 3)], [2, 3]), "MQ_ERR_SHAPE"),
    "squeeze-dim-not-1": (lambda: _squeeze_model((1, 3, 1), [1], (1, 1)), "MQ_ERR_SHAPE"),
    "squeeze-more-than-8-dims": (lambda: _squeeze_model((1, 3, 1), [0] * 9, (3, 1)), "MQ_ERR_UNSUPPORTED_OPTION"),
    "squeeze-output-wrong": (lambda: _squeeze_model((1, 3, 1), [], (3, 1)), "MQ_ERR_SHAPE"),
    "expand-dims-axis-out-of-range": (lambda: _expand_model((3, 4), 3, (3, 4, 1)), "MQ_ERR_SHAPE"),
    "expand-dims-output-wrong": (lambda: _expand_model((3, 4), 0, (3, 1, 4)), "MQ_ERR_SHAPE"),
    # TFLM refuses differing quantization in REDUCE_MAX at its first invoke.
    "reduce-max-scale-differs": (lambda: _reduce_max_model(out_q=(0.2, -2)), "MQ_ERR_QUANTIZATION"),
    "reduce-max-axis-out-of-range": (lambda: _reduce_max_model(axes=(3,)), "MQ_ERR_SHAPE"),
    "space-to-batch-block-0": (lambda: _space_model(SPACE_TO_BATCH_ND, (1, 4, 2), [0], [[0, 0]], (1, 4, 2)),
                               "MQ_ERR_UNSUPPORTED_OPTION"),
    "space-to-batch-output-wrong": (lambda: _space_model(SPACE_TO_BATCH_ND, (1, 5, 2), [2], [[0, 0]], (2, 2, 2)),
                                    "MQ_ERR_SHAPE"),
    "batch-to-space-negative-crop": (lambda: _space_model(BATCH_TO_SPACE_ND, (2, 3, 2), [2], [[-1, 1]], (1, 6, 2)),
                                     "MQ_ERR_UNSUPPORTED_OPTION"),
}


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_check_rejects(case):
    build, status = REJECTIONS[case]
    assert _reject(build()) == status


@pytest.mark.parametrize("case", ["transpose-rank-6", "slice-rank-5", "slice-stride-0", "slice-output-shape-wrong",
                                  "squeeze-dim-not-1", "expand-dims-output-wrong",
                                  "transpose-perm-out-of-range", "transpose-perm-not-constant",
                                  "sub-output-multiplier-not-below-one"])
def test_tflm_refuses_these_too(case):
    assert tflm_refuses(REJECTIONS[case][0]())


# ---------------------------------------------------------------------------------------------
# Fuzzing seeds (tests/test_builtin_fuzz.py)


def schema_seeds() -> dict[str, bytes]:
    """Valid one-operator models of the operators the converter does not emit, or not with these
    options, for the fuzzer to mutate."""
    return {
        "schema:squeeze": _squeeze_model((1, 3, 1, 4, 1), [0, -1], (3, 1, 4)),
        "schema:expand_dims": _expand_model((3, 4), -2, (3, 1, 4)),
        "schema:space_to_batch_nd": _space_model(SPACE_TO_BATCH_ND, (1, 4, 6, 2), [2, 3], [[0, 0], [0, 0]], (6, 2, 2, 2)),
        "schema:batch_to_space_nd": _space_model(BATCH_TO_SPACE_ND, (6, 2, 2, 2), [2, 3], [[1, 0], [2, 1]], (1, 3, 3, 2)),
        "schema:strided_slice": _slice_model((4, 6, 5), [1, -1, 0], [4, 0, 5], [2, -2, 1], (2, 3), beginMask=0,
                                             endMask=0, shrinkAxisMask=4),
        "schema:split_v": _split_model(SPLIT_V, (4, 6), -1, [(4, 1), (4, 3), (4, 2)], [1, 3, 2]),
        "schema:transpose": _transpose_model((2, 3, 1, 4, 2), (4, 0, 3, 1, 2)),
        "schema:leaky_relu": _leaky_model(-0.4),
    }


def test_schema_seeds_run_bit_exact():
    for name, model in schema_seeds().items():
        assert_bit_exact(model, name, n=2)
