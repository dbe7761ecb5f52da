"""Random small int8 TFLite models for the builtin runtime's property-based tests.

`model_specs()` is a hypothesis strategy drawing a `ModelSpec`: plain data (an input shape, a chain
of `Op`s and `Branch`es, the converter's options and a seed) whose repr is valid Python, so a
failing case printed by hypothesis can be pasted back:

    from modelgen import *
    tflite = convert(eval("ModelSpec(input_shape=(5, 3, 2), ops=(Op('conv', ...), ...))"))

`convert(spec)` builds the Keras model (weights drawn from `spec.seed`, not Keras' initializers),
and converts it with post-training quantization on random calibration samples. The strategy
tracks the tensor shape while it draws, so every spec is a valid model; spatial sizes and channel
counts stay small because TensorFlow's converter (about 0.5 s a model) is the cost that counts.

Which TFLite ops a spec yields is up to the converter (it fuses RELU into CONV_2D, folds
Flatten+Dense into RESHAPE+FULLY_CONNECTED, ...): `op_names(tflite)` reads what it really made.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

# The TFLite operators of the builtin runtime that converted Keras models contain (issues 4 and
# 11). SQUEEZE, SPACE_TO_BATCH_ND and BATCH_TO_SPACE_ND are runtime operators too, but the
# converter does not emit them consistently (tests/test_builtin_ops_more.py tests them directly).
RUNTIME_OPS = (
    "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D", "ADD", "MUL",
    "RESHAPE", "SOFTMAX", "QUANTIZE", "DEQUANTIZE", "MEAN", "PAD", "CONCATENATION", "LOGISTIC", "TANH",
    "RELU", "RELU6", "HARD_SWISH",
    "SUB", "MAXIMUM", "MINIMUM", "LEAKY_RELU", "PRELU", "TRANSPOSE", "STRIDED_SLICE", "SPLIT", "SPLIT_V",
    "EXPAND_DIMS", "REDUCE_MAX", "UNIDIRECTIONAL_SEQUENCE_LSTM",
)  # fmt: skip

MAX_ELEMENTS = 1024  # per activation tensor
MAX_CHANNELS = 16
MAX_SPATIAL = 16
CALIBRATION_SAMPLES = 8

# Keras activations: the first three fuse into CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED,
# sigmoid and tanh become LOGISTIC and TANH operators after it.
LAYER_ACTIVATIONS = ("linear", "relu", "relu6", "tanh", "sigmoid")
STANDALONE_ACTIVATIONS = ("relu", "relu6", "sigmoid", "tanh", "hard_swish", "leaky_relu", "prelu")


class Op:
    """One layer: a kind ("conv", "dwconv", "maxpool", ...) and its parameters."""

    __slots__ = ("kind", "params")

    def __init__(self, kind: str, **params):
        self.kind = kind
        self.params = params

    def __getitem__(self, name):
        return self.params[name]

    def __repr__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.params.items())
        return f"Op({self.kind!r}{args})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Op) and (self.kind, self.params) == (other.kind, other.params)

    def __hash__(self) -> int:
        return hash((self.kind, tuple(self.params.items())))


@dataclass(frozen=True)
class Branch:
    """Two chains applied to the same tensor, joined by "add", "mul", "sub", "max", "min" or
    "concat" (along `axis`)."""

    left: tuple
    right: tuple
    join: str
    axis: int = -1


@dataclass(frozen=True)
class ModelSpec:
    input_shape: tuple  # one sample, without the batch axis: (H, W, C), (T, C) or (N,)
    ops: tuple  # Op and Branch, applied in order
    per_channel: bool = True  # per-channel weight scales (False: converter's per-tensor switch)
    float_input: bool = False  # float32 input: the model starts with QUANTIZE
    float_output: bool = False  # float32 output: the model ends with DEQUANTIZE
    seed: int = 0  # weights, constants, calibration samples and test inputs
    calibration: tuple = (0.0, 1.0)  # mean and standard deviation of the calibration samples


# ---------------------------------------------------------------------------------------------
# Shapes


def _conv_out(size: int, kernel: int, stride: int, dilation: int, padding: str) -> int:
    if padding == "same":
        return -(-size // stride)
    return (size - (kernel - 1) * dilation - 1) // stride + 1


def _fits(shape) -> bool:
    if math.prod(shape) > MAX_ELEMENTS:
        return False
    return len(shape) < 3 or (max(shape[:2]) <= MAX_SPATIAL and shape[2] <= MAX_CHANNELS)


# ---------------------------------------------------------------------------------------------
# The strategy. Every draw shrinks towards the simplest choice (first of a list, smallest number).


def _two(draw, lo: int, hi: int) -> tuple[int, int]:
    return draw(st.integers(lo, hi)), draw(st.integers(lo, hi))


def _window(draw, shape, *, keep_spatial: bool, dilate: bool):
    """kernel, strides, dilation, padding and output spatial size of a conv or pool window."""
    h, w = shape[:2]
    kernel = _two(draw, 1, 3)
    strides = (1, 1) if keep_spatial else _two(draw, 1, 3)
    # Keras forbids strides > 1 together with dilation > 1.
    dilation = _two(draw, 1, 3) if dilate and strides == (1, 1) else (1, 1)
    padding = "same" if keep_spatial else draw(st.sampled_from(("same", "valid")))
    if padding == "valid" and any((k - 1) * d + 1 > n for k, d, n in zip(kernel, dilation, (h, w))):
        padding = "same"
    out = tuple(_conv_out(n, k, s, d, padding) for n, k, s, d in zip((h, w), kernel, strides, dilation))
    return kernel, strides, dilation, padding, out


def _image_op(draw, shape, *, keep_spatial=False, keep_channels=False, main=True):
    """Draw one op for an (H, W, C) tensor; returns (op, output shape)."""
    h, w, c = shape
    kinds = ["conv", "dwconv", "act", "act", "maxpool", "avgpool", "add_const", "mul_const", "softmax",
             "sub_const", "minmax_const", "split"]
    if not keep_channels:
        kinds += ["dense", "mean", "reduce_max", "reduce_max"]
    if not keep_spatial:
        kinds += ["pad", "mean", "reshape", "transpose", "slice", "slice"]
    if main:
        kinds += ["conv", "branch", "branch", "flatten"]
    kind = draw(st.sampled_from(kinds))
    if kind in ("conv", "dwconv"):
        kernel, strides, dilation, padding, (oh, ow) = _window(draw, shape, keep_spatial=keep_spatial, dilate=True)
        common = dict(kernel=kernel, strides=strides, dilation=dilation, padding=padding,
                      activation=draw(st.sampled_from(LAYER_ACTIVATIONS)), bias=not draw(st.booleans()))
        if kind == "conv":
            filters = c if keep_channels else draw(st.integers(1, 8))
            filters = max(1, min(filters, MAX_ELEMENTS // (oh * ow)))
            return Op("conv", filters=filters, **common), (oh, ow, filters)
        multiplier = 1 if keep_channels else draw(st.integers(1, 3))
        while multiplier > 1 and not _fits((oh, ow, c * multiplier)):
            multiplier -= 1
        return Op("dwconv", multiplier=multiplier, **common), (oh, ow, c * multiplier)
    if kind in ("maxpool", "avgpool"):
        pool, strides, _, padding, (oh, ow) = _window(draw, shape, keep_spatial=keep_spatial, dilate=False)
        return Op(kind, pool=pool, strides=strides, padding=padding), (oh, ow, c)
    if kind == "act":
        return Op("act", fn=draw(st.sampled_from(STANDALONE_ACTIVATIONS))), shape
    if kind in ("add_const", "mul_const"):
        return Op(kind, per_channel=draw(st.booleans())), shape
    if kind in ("sub_const", "minmax_const", "split"):
        return _elementwise_op(draw, kind, shape), shape
    if kind == "softmax":
        return Op("softmax"), shape
    if kind == "reduce_max":  # GlobalMaxPooling2D
        keepdims = draw(st.booleans())
        if keep_spatial:  # a concat branch must keep H and W (it gave (C,) here): a ReLU instead
            return Op("act", fn="relu"), shape
        return Op("reduce_max", keepdims=keepdims), ((1, 1, c) if keepdims else (c,))
    if kind == "transpose":
        return Op("transpose", perm=(2, 1, 3)), (w, h, c)
    if kind == "slice":
        # At least one row cropped where there are rows to spare (all-zero crops are no-ops).
        crop = ((draw(st.integers(min(1, h - 1), min(2, h - 1))), draw(st.integers(0, max(0, min(2, h - 2))))),
                _two(draw, 0, max(0, min(2, w - 1))))
        out = (h - sum(crop[0]), w - sum(crop[1]), c)
        return (Op("slice", crop=crop), out) if min(out) >= 1 else (Op("act", fn="leaky_relu"), shape)
    if kind == "dense":  # FULLY_CONNECTED on the last axis (keep_num_dims)
        units = max(1, min(draw(st.integers(1, 8)), MAX_ELEMENTS // (h * w)))
        return Op("dense", units=units, activation=draw(st.sampled_from(LAYER_ACTIVATIONS)),
                  bias=not draw(st.booleans())), (h, w, units)
    if kind == "mean":
        axes = (3,) if keep_spatial else draw(st.sampled_from(((1, 2), (1,), (2,), (3,))))
        keepdims = True if axes != (1, 2) or not main else not draw(st.booleans())
        if not keepdims:
            return Op("mean", axes=axes, keepdims=False), (c,)
        return Op("mean", axes=axes, keepdims=True), tuple(1 if i + 1 in axes else n for i, n in enumerate(shape))
    if kind == "pad":
        pads = (_two(draw, 0, 2), _two(draw, 0, 2))
        out = (h + sum(pads[0]), w + sum(pads[1]), c)
        return (Op("pad", pads=pads), out) if _fits(out) else (Op("act", fn="relu"), shape)
    if kind == "reshape":
        target = draw(st.sampled_from(((w, h, c), (h * w, 1, c), (1, h * w, c), (h, w * c, 1))))
        return (Op("reshape", shape=target), target) if _fits(target) else (Op("act", fn="relu6"), shape)
    if kind == "flatten":
        return Op("flatten"), (h * w * c,)
    return _image_branch(draw, shape)


def _chain(draw, shape, draw_op, max_len: int):
    ops = []
    for _ in range(draw(st.integers(0, max_len))):
        op, shape = draw_op(shape)
        ops.append(op)
    return tuple(ops), shape


def _image_branch(draw, shape):
    """Add/Multiply (maybe broadcasting a (1, 1, C) mean) or Concatenate of two chains."""
    h, w, c = shape
    join = draw(st.sampled_from(("add", "mul", "concat", "sub", "max", "min")))
    keep = lambda s: _image_op(draw, s, keep_spatial=True, keep_channels=True, main=False)  # noqa: E731
    if join != "concat":
        left, _ = _chain(draw, shape, keep, 3)
        if draw(st.booleans()):  # squeeze-and-excite style: one side is the per-channel mean
            right = (Op("mean", axes=(1, 2), keepdims=True),) + _chain(draw, (1, 1, c), keep, 1)[0]
        else:
            right, _ = _chain(draw, shape, keep, 3)
        return Branch(left, right, join), shape
    axis = draw(st.sampled_from((-1, 1, 2)))
    if axis == -1:
        free = lambda s: _image_op(draw, s, keep_spatial=True, main=False)  # noqa: E731
        left, (_, _, cl) = _chain(draw, shape, free, 3)
        right, (_, _, cr) = _chain(draw, shape, free, 3)
        out = (h, w, cl + cr)
    else:
        left, _ = _chain(draw, shape, keep, 3)
        right, _ = _chain(draw, shape, keep, 3)
        out = (2 * h, w, c) if axis == 1 else (h, 2 * w, c)
    if not _fits(out):
        return Op("act", fn="hard_swish"), shape
    return Branch(left, right, "concat", axis), out


def _elementwise_op(draw, kind, shape):
    """An op of any input rank that keeps the shape: constant SUB / MAXIMUM / MINIMUM operand,
    or a split along the last axis (equal pieces: SPLIT, else SPLIT_V) whose first piece goes
    through a RELU before the pieces are concatenated again."""
    if kind == "sub_const":
        return Op("sub_const", per_channel=draw(st.booleans()), reverse=draw(st.booleans()))
    if kind == "minmax_const":
        return Op("minmax_const", fn=draw(st.sampled_from(("maximum", "minimum"))), per_channel=draw(st.booleans()))
    n = shape[-1]
    pieces = draw(st.sampled_from([k for k in (2, 3) if n % k == 0] + ["uneven"])) if n > 1 else 1
    if pieces == "uneven":
        first = draw(st.integers(1, n - 1))
        return Op("split", sizes=(first, n - first))
    return Op("split", sizes=(n // pieces,) * pieces)


def _seq_op(draw, shape, *, main=True):
    """One op for a (T, C) sequence (built with a dynamic batch, so Conv1D becomes EXPAND_DIMS +
    CONV_2D + RESHAPE); the global poolings end the sequence part."""
    t, c = shape
    kinds = ["conv1d", "conv1d", "act", "maxpool1d", "avgpool1d", "sub_const", "minmax_const", "split", "slice"]
    if main:
        kinds += ["transpose", "branch", "global", "lstm"]
    kind = draw(st.sampled_from(kinds))
    if kind == "lstm":  # without return_sequences: LSTM + STRIDED_SLICE of the last step
        units, sequences = draw(st.integers(1, 16)), draw(st.booleans())
        return Op("lstm", units=units, return_sequences=sequences), ((t, units) if sequences else (units,))
    if kind == "conv1d":
        kernel = draw(st.integers(1, 3))
        padding = draw(st.sampled_from(("same", "valid", "causal"))) if kernel <= t else "same"
        strides = draw(st.integers(1, 2)) if padding != "causal" else 1
        out_t = _conv_out(t, kernel, strides, 1, "same" if padding == "causal" else padding)
        filters = c if not main else max(1, min(draw(st.integers(1, 8)), MAX_ELEMENTS // out_t))
        return Op("conv1d", filters=filters, kernel=kernel, strides=strides, padding=padding,
                  activation=draw(st.sampled_from(LAYER_ACTIVATIONS)), bias=not draw(st.booleans())), (out_t, filters)
    if kind in ("maxpool1d", "avgpool1d"):
        pool = draw(st.integers(1, min(3, t)))
        strides, padding = draw(st.integers(1, 2)), draw(st.sampled_from(("same", "valid")))
        return Op(kind, pool=pool, strides=strides, padding=padding), (_conv_out(t, pool, strides, 1, padding), c)
    if kind == "act":
        return Op("act", fn=draw(st.sampled_from(STANDALONE_ACTIVATIONS))), shape
    if kind in ("sub_const", "minmax_const", "split"):
        return _elementwise_op(draw, kind, shape), shape
    if kind == "slice":
        crop = (draw(st.integers(1, min(2, t - 1))), draw(st.integers(0, max(0, min(2, t - 2))))) if t > 1 else (0, 0)
        return (Op("slice", crop=crop), (t - sum(crop), c)) if sum(crop) < t else (Op("act", fn="relu"), shape)
    if kind == "transpose":
        return Op("transpose", perm=(2, 1)), (c, t)
    if kind == "global":
        return Op(draw(st.sampled_from(("gap1d", "gmp1d")))), (c,)
    join = draw(st.sampled_from(("add", "sub", "max", "min", "concat")))
    keep = lambda s: _seq_op(draw, s, main=False)  # noqa: E731
    left, (tl, cl) = _chain(draw, shape, keep, 2)
    right, (tr, cr) = _chain(draw, shape, keep, 2)
    if (tl, cl) != shape or (tr, cr) != shape:  # a pooling or valid conv changed T: join what matches
        return Op("act", fn="leaky_relu"), shape
    if join == "concat":
        return (Branch(left, right, "concat"), (t, 2 * c)) if _fits((t, 2 * c)) else (Op("act", fn="tanh"), shape)
    return Branch(left, right, join), shape


def _flat_op(draw, shape, *, keep_units=False, main=True):
    (n,) = shape
    kinds = ["dense", "dense", "act", "act", "add_const", "mul_const", "softmax", "sub_const", "minmax_const"]
    kinds += ["branch"] if main else []
    kind = draw(st.sampled_from(kinds))
    if kind == "dense":
        units = n if keep_units else draw(st.integers(1, 16))
        return Op("dense", units=units, activation=draw(st.sampled_from(LAYER_ACTIVATIONS)),
                  bias=not draw(st.booleans())), (units,)
    if kind == "act":
        return Op("act", fn=draw(st.sampled_from(STANDALONE_ACTIVATIONS))), shape
    if kind in ("add_const", "mul_const"):
        return Op(kind, per_channel=draw(st.booleans())), shape
    if kind in ("sub_const", "minmax_const"):
        return _elementwise_op(draw, kind, shape), shape
    if kind == "softmax":
        return Op("softmax"), shape
    join = draw(st.sampled_from(("add", "mul", "concat", "sub", "max", "min")))
    keep = join != "concat"
    left, (nl,) = _chain(draw, shape, lambda s: _flat_op(draw, s, keep_units=keep, main=False), 2)
    right, (nr,) = _chain(draw, shape, lambda s: _flat_op(draw, s, keep_units=keep, main=False), 2)
    if join != "concat":
        return Branch(left, right, join), shape
    return (Branch(left, right, join), (nl + nr,)) if _fits((nl + nr,)) else (Op("act", fn="tanh"), shape)


@st.composite
def model_specs(draw, max_ops: int = 6) -> ModelSpec:
    kind = draw(st.integers(0, 4))
    if kind < 3:
        shape = (draw(st.integers(1, 10)), draw(st.integers(1, 10)), draw(st.integers(1, 4)))
    elif kind == 3:
        shape = (draw(st.integers(1, 32)),)
    else:
        shape = (draw(st.integers(2, 24)), draw(st.integers(1, 4)))
    input_shape, ops = shape, []
    draw_op = {3: _image_op, 2: _seq_op, 1: _flat_op}
    for _ in range(draw(st.integers(1, max_ops))):
        op, shape = draw_op[len(shape)](draw, shape)
        ops.append(op)
    return ModelSpec(
        input_shape=input_shape, ops=tuple(ops),
        per_channel=not draw(st.booleans()),
        float_input=draw(st.integers(0, 4)) == 4,
        float_output=draw(st.integers(0, 4)) == 4,
        seed=draw(st.integers(0, 2**16)),
        calibration=(draw(st.sampled_from((0.0, 0.5, -2.0))), draw(st.sampled_from((1.0, 0.1, 8.0)))),
    )


def drawn_specs(n: int) -> list[ModelSpec]:
    """The first `n` specs the strategy draws with a fixed seed (the same on every run)."""
    from hypothesis import HealthCheck, Phase, given, settings

    specs: list[ModelSpec] = []

    @settings(max_examples=n, derandomize=True, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(model_specs())
    def collect(spec):
        specs.append(spec)

    collect()
    return specs[:n]


# ---------------------------------------------------------------------------------------------
# Building and converting


def _tf():
    from mcuquant.tf_import import keras, tensorflow

    return tensorflow(), keras()


def _activation_layer(fn: str):
    tf, K = _tf()
    L = K.layers
    if fn == "relu":
        return L.ReLU()
    if fn == "relu6":
        return L.ReLU(max_value=6.0)
    if fn == "hard_swish":  # the converter matches x * relu6(x + 3) / 6 to HARD_SWISH
        return L.Lambda(lambda t: t * tf.nn.relu6(t + 3.0) * (1.0 / 6.0))
    if fn == "leaky_relu":
        return L.LeakyReLU(0.2)
    if fn == "prelu":  # slopes drawn by _draw_weights
        return L.PReLU()
    return L.Activation(fn)


def _apply(op, x, rng: np.random.Generator):
    tf, K = _tf()
    L = K.layers
    if isinstance(op, Branch):
        left = right = x
        for o in op.left:
            left = _apply(o, left, rng)
        for o in op.right:
            right = _apply(o, right, rng)
        if op.join == "add":
            return L.Add()([left, right])
        if op.join == "mul":
            return L.Multiply()([left, right])
        joins = {"sub": L.Subtract, "max": L.Maximum, "min": L.Minimum}
        if op.join in joins:
            return joins[op.join]()([left, right])
        return L.Concatenate(axis=op.axis)([left, right])
    k, p = op.kind, op.params
    if k == "conv":
        return L.Conv2D(p["filters"], p["kernel"], strides=p["strides"], padding=p["padding"],
                        dilation_rate=p["dilation"], activation=p["activation"], use_bias=p["bias"])(x)
    if k == "dwconv":
        return L.DepthwiseConv2D(p["kernel"], strides=p["strides"], padding=p["padding"],
                                 depth_multiplier=p["multiplier"], dilation_rate=p["dilation"],
                                 activation=p["activation"], use_bias=p["bias"])(x)
    if k in ("maxpool", "avgpool"):
        layer = L.MaxPooling2D if k == "maxpool" else L.AveragePooling2D
        return layer(p["pool"], strides=p["strides"], padding=p["padding"])(x)
    if k == "conv1d":
        return L.Conv1D(p["filters"], p["kernel"], strides=p["strides"], padding=p["padding"],
                        activation=p["activation"], use_bias=p["bias"])(x)
    if k in ("maxpool1d", "avgpool1d"):
        layer = L.MaxPooling1D if k == "maxpool1d" else L.AveragePooling1D
        return layer(p["pool"], strides=p["strides"], padding=p["padding"])(x)
    if k == "lstm":
        return L.LSTM(p["units"], return_sequences=p["return_sequences"])(x)
    if k == "gap1d":
        return L.GlobalAveragePooling1D()(x)
    if k == "gmp1d":
        return L.GlobalMaxPooling1D()(x)
    if k == "reduce_max":
        return L.GlobalMaxPooling2D(keepdims=p["keepdims"])(x)
    if k == "transpose":
        return L.Permute(p["perm"])(x)
    if k == "slice":
        return (L.Cropping1D if len(p["crop"]) == 2 and isinstance(p["crop"][0], int) else L.Cropping2D)(p["crop"])(x)
    if k == "split":
        sizes = list(p["sizes"])
        if len(sizes) == 1:
            return L.ReLU()(x)
        parts = tf.split(x, sizes if len(set(sizes)) > 1 else len(sizes), axis=-1)
        return L.Concatenate()([L.ReLU()(parts[0]), *parts[1:]])
    if k == "act":
        return _activation_layer(p["fn"])(x)
    if k == "softmax":
        return L.Softmax()(x)
    if k == "dense":
        return L.Dense(p["units"], activation=p["activation"], use_bias=p["bias"])(x)
    if k == "mean":
        if p["axes"] == (1, 2):
            return L.GlobalAveragePooling2D(keepdims=p["keepdims"])(x)
        axes = list(p["axes"])
        return L.Lambda(lambda t: tf.reduce_mean(t, axis=axes, keepdims=True))(x)
    if k == "pad":
        return L.ZeroPadding2D(p["pads"])(x)
    if k == "reshape":
        return L.Reshape(p["shape"])(x)
    if k == "flatten":
        return L.Flatten()(x)
    if k in ("sub_const", "minmax_const"):
        size = (int(x.shape[-1]),) if p["per_channel"] else ()
        const = rng.normal(0.0, 1.0, size).astype(np.float32)
        if k == "sub_const":
            return L.Lambda((lambda t: const - t) if p["reverse"] else (lambda t: t - const))(x)
        fn = tf.maximum if p["fn"] == "maximum" else tf.minimum
        return L.Lambda(lambda t: fn(t, const))(x)
    if k in ("add_const", "mul_const"):
        # A vector along the last axis, or a scalar (a 0-d array: with shape (1,) the converter
        # of TF 2.21 can miscompute the shape of a FULLY_CONNECTED input that follows).
        size = (int(x.shape[-1]),) if p["per_channel"] else ()
        if k == "add_const":
            const = rng.normal(0.0, 1.0, size).astype(np.float32)
            return L.Lambda(lambda t: t + const)(x)
        const = (rng.uniform(0.25, 2.0, size) * rng.choice((-1.0, 1.0), size)).astype(np.float32)
        return L.Lambda(lambda t: t * const)(x)
    raise ValueError(f"unknown op kind {k!r}")


def _draw_weights(model, rng: np.random.Generator) -> None:
    """Weights from the spec's seed: kernels ~ N(0, gain / sqrt(fan_in)), biases ~ N(0, 0.5)."""
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        new = []
        for w in weights:
            if w.ndim == 1:
                new.append(rng.normal(0.0, 0.5, w.shape))
            else:
                depthwise = type(layer).__name__ == "DepthwiseConv2D"  # kernel (kh, kw, cin, multiplier)
                fan_in = math.prod(w.shape[:2]) if depthwise else math.prod(w.shape[:-1])
                new.append(rng.normal(0.0, rng.uniform(0.5, 2.0) / math.sqrt(fan_in), w.shape))
        layer.set_weights([a.astype(np.float32) for a in new])


def build_keras(spec: ModelSpec):
    """The float Keras model of `spec` (clears the Keras session first)."""
    _, K = _tf()
    K.backend.clear_session()
    rng = np.random.default_rng(spec.seed)
    # batch_size=1 gives static shapes: the converter then keeps dilation inside CONV_2D (not
    # SPACE_TO_BATCH_ND around it) and folds Reshape's shape computation into a constant.
    # Sequences keep a dynamic batch, as Keras users build them: Conv1D then becomes EXPAND_DIMS
    # + CONV_2D + RESHAPE (with a static batch, RESHAPE + CONV_2D + RESHAPE).
    # An LSTM needs the static batch: the converter fuses it into UNIDIRECTIONAL_SEQUENCE_LSTM only then.
    has_lstm = any(isinstance(op, Op) and op.kind == "lstm" for op in spec.ops)
    inputs = K.Input(shape=spec.input_shape, batch_size=None if len(spec.input_shape) == 2 and not has_lstm else 1)
    x = inputs
    for op in spec.ops:
        x = _apply(op, x, rng)
    model = K.Model(inputs, x)
    _draw_weights(model, rng)
    return model


def calibration_samples(spec: ModelSpec, n: int = CALIBRATION_SAMPLES) -> np.ndarray:
    mean, std = spec.calibration
    rng = np.random.default_rng(spec.seed + 1)
    return rng.normal(mean, std, (n, *spec.input_shape)).astype(np.float32)


@functools.lru_cache(maxsize=None)  # the fuzz seeds reuse the property test's conversions
def convert(spec: ModelSpec) -> bytes:
    """The int8 TFLite model of `spec`: PTQ, int8 builtins, calibrated on random samples."""
    from mcuquant.tf_import import native_stderr_captured

    tf, _ = _tf()
    model = build_keras(spec)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.float32 if spec.float_input else tf.int8
    converter.inference_output_type = tf.float32 if spec.float_output else tf.int8
    if not spec.per_channel:
        converter._experimental_disable_per_channel = True  # no public switch exists
    samples = calibration_samples(spec)
    converter.representative_dataset = lambda: ([x[None]] for x in samples)
    try:
        with warnings.catch_warnings(), native_stderr_captured():
            warnings.simplefilter("ignore", UserWarning)  # "Statistics for quantized inputs were expected"
            return bytes(converter.convert())
    except Exception as exc:  # ConverterError's text repeats kilobytes of MLIR locations
        errors = [line[line.index("error:"):] for line in str(exc).splitlines() if "error:" in line]
        raise RuntimeError(f"TFLite conversion of {spec!r} failed: {'; '.join(errors) or str(exc)[:500]}") from None


def sample_inputs(spec: ModelSpec, n: int) -> np.ndarray:
    """`n` inputs in the model's input dtype: uniform int8 noise and the two extremes, or for a float
    input, samples like the calibration set and some 4x wider (saturating the quantizer)."""
    rng = np.random.default_rng(spec.seed + 2)
    shape = (n, *spec.input_shape)
    if spec.float_input:
        mean, std = spec.calibration
        spread = np.where(np.arange(n) % 2 == 0, 1.0, 4.0).reshape(-1, *[1] * (len(shape) - 1))
        return (rng.normal(0.0, 1.0, shape) * std * spread + mean).astype(np.float32)
    x = rng.integers(-128, 128, shape, dtype=np.int8)
    if n >= 3:
        x[1] = np.where(rng.random(shape[1:]) < 0.5, -128, 127)
    return x


def op_names(tflite: bytes) -> list[str]:
    """The builtin operator names of a model, in execution order."""
    from mcuquant.export import parse_model

    info, _, _ = parse_model(tflite)
    return [op.name for op in info.operators]


# ---------------------------------------------------------------------------------------------
# Hand-written specs run before the random ones: together they contain all RUNTIME_OPS (checked
# by the property test), whatever the number of random models.


def _conv(**kw) -> Op:
    return Op("conv", **{**dict(filters=4, kernel=(3, 3), strides=(1, 1), dilation=(1, 1), padding="same",
                                activation="linear", bias=True), **kw})


def _dwconv(**kw) -> Op:
    return Op("dwconv", **{**dict(multiplier=1, kernel=(3, 3), strides=(1, 1), dilation=(1, 1), padding="same",
                                  activation="linear", bias=True), **kw})


COVERAGE_EXAMPLES = (
    # float I/O (QUANTIZE ... DEQUANTIZE); LOGISTIC and TANH outputs have fixed scales, so the
    # converter requantizes them (int8 QUANTIZE) before the CONCATENATION.
    ModelSpec(input_shape=(9, 7, 2), ops=(
        _conv(dilation=(2, 1), activation="relu"),
        _dwconv(multiplier=2, strides=(2, 1), padding="valid", activation="relu6"),
        Op("pad", pads=((1, 0), (0, 2))), Op("act", fn="relu"),
        Op("maxpool", pool=(2, 2), strides=(1, 1), padding="same"),
        Branch(left=(Op("act", fn="sigmoid"),), right=(Op("act", fn="tanh"),), join="concat"),
        Op("act", fn="relu6"),
        Op("avgpool", pool=(2, 3), strides=(2, 2), padding="valid"),
        Op("act", fn="hard_swish"),
        Branch(left=(), right=(Op("mean", axes=(1, 2), keepdims=True),), join="mul"),
        Branch(left=(_conv(filters=16, kernel=(1, 1)),), right=(), join="add"),
        Op("reshape", shape=(1, 6, 16)), Op("flatten"), Op("dense", units=10, activation="linear", bias=True),
        Op("softmax")),
        per_channel=True, float_input=True, float_output=True, seed=1),
    # int8 I/O, per-tensor weights, depth multiplier 3, dilation in both axes, stride 3.
    ModelSpec(input_shape=(10, 10, 3), ops=(
        _dwconv(multiplier=3, dilation=(2, 3), activation="relu"),
        _conv(filters=5, kernel=(2, 3), strides=(3, 2), padding="valid", activation="relu6"),
        Branch(left=(_dwconv(),), right=(Op("act", fn="hard_swish"),), join="concat", axis=1),
        Op("mean", axes=(2,), keepdims=True),
        Op("dense", units=6, activation="tanh", bias=False),
        Op("flatten"),
        Branch(left=(Op("dense", units=8, activation="relu", bias=True),),
               right=(Op("dense", units=8, activation="sigmoid", bias=True),), join="add"),
        Op("mul_const", per_channel=True), Op("add_const", per_channel=False), Op("softmax")),
        per_channel=False, seed=2, calibration=(0.5, 8.0)),
    # A sequence (dynamic batch: EXPAND_DIMS) through the operators of issue 11.
    ModelSpec(input_shape=(16, 3), ops=(
        Op("conv1d", filters=6, kernel=3, strides=1, padding="same", activation="relu", bias=True),
        Op("act", fn="leaky_relu"),
        Op("split", sizes=(2, 2, 2)), Op("split", sizes=(1, 5)),
        Branch(left=(Op("sub_const", per_channel=True, reverse=False),), right=(Op("act", fn="prelu"),), join="sub"),
        Branch(left=(), right=(Op("minmax_const", fn="minimum", per_channel=False),), join="max"),
        Op("slice", crop=(1, 2)), Op("maxpool1d", pool=2, strides=1, padding="same"),
        Op("transpose", perm=(2, 1)), Op("gmp1d"),
        Op("dense", units=4, activation="linear", bias=True), Op("softmax")),
        seed=3),
    # LSTMs (static batch): a Conv1D into one keeping its sequences, a second keeping only its last
    # step (STRIDED_SLICE), then a classifier; per-tensor weights elsewhere.
    ModelSpec(input_shape=(12, 3), ops=(
        Op("conv1d", filters=4, kernel=3, strides=1, padding="same", activation="relu", bias=True),
        Op("lstm", units=6, return_sequences=True), Op("lstm", units=5, return_sequences=False),
        Op("dense", units=4, activation="linear", bias=True), Op("softmax")),
        per_channel=False, seed=4),
)


# ---------------------------------------------------------------------------------------------
# Zoo models, shared by the bit-exactness test and the fuzzing seeds (one conversion a session).


@functools.lru_cache(maxsize=None)
def zoo_model(name: str) -> tuple[bytes, np.ndarray]:
    """Zoo model `name` trained for one epoch on digits and PTQ-converted (representative set: 100
    train samples), with its first 200 test samples quantized for the model's input. The sequence
    models read each 8x8 image as 8 steps of 8 channels; the autoencoder is trained on digits-anomaly
    (normal digit "0") and its test samples hold normal and anomalous digits."""
    from mcuquant.config import TrainingConfig
    from mcuquant.data import load_dataset
    from mcuquant.graph import Graph
    from mcuquant.interpreters import quantize
    from mcuquant.models import build_zoo_model
    from mcuquant.quantize import convert_ptq, representative_samples
    from mcuquant.train import set_seeds, train_float

    _, K = _tf()
    digits = load_dataset("builtin:digits-anomaly" if name == "autoencoder" else "builtin:digits")
    if name in ("conv1d", "lstm"):
        digits = digits.for_model_input((8, 8))
    K.backend.clear_session()
    set_seeds(0)
    model = build_zoo_model(name, digits.input_shape, digits.num_classes, task=digits.task)
    train_float(model, digits, TrainingConfig(), epochs=1, progress=False)
    tflite = convert_ptq(model, representative_samples(digits.x_train, 100, seed=0)).tflite
    graph = Graph.from_tflite(tflite)
    return tflite, quantize(digits.x_test[:200], graph.tensors[graph.inputs[0]])
