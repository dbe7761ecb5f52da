"""Export an int8 .tflite model as C sources for the firmware: the flatbuffer as an aligned C array
plus a model config header (ops used, input/output quantization, model SHA-256, arena size).

The model is checked before anything is written: it is parsed with the FlatBuffers schema reader
that tflite-micro ships (``runtime.schema_fb``, generated Python code; no TensorFlow import), every
table vector is bounds-checked against the file, every operator must be one the chosen backend
supports (with supported options), every tensor and buffer reference must be in range and every
activation tensor must be int8. A file that cannot be parsed raises :class:`ModelError`; an
operator, option or dtype the backend cannot run raises :class:`UnsupportedOpError`. Messages name
the operator index, the op name and what is wrong.

Output is byte-identical for identical input: no timestamps, no absolute paths, no dict-order
dependence.
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np

from mcuquant import __version__
from mcuquant.errors import ConfigError, ModelError, UnsupportedOpError

# ---------------------------------------------------------------------------------------------
# Templates: one Environment for the module (STYLE.md "Code generation").


def _templates_dir() -> Path:
    """The templates/ folder of a checkout (editable install), else one shipped inside the package."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[1] / "templates", here.parent / "templates"):
        if (candidate / "model_data.c.j2").is_file():
            return candidate
    return here.parents[1] / "templates"  # a clear TemplateNotFound names this path


TEMPLATES_DIR = _templates_dir()
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)

# ---------------------------------------------------------------------------------------------
# Backends and what they support.

_BUILTIN_OPS = frozenset(
    {
        "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D",
        "ADD", "MUL", "RESHAPE", "SOFTMAX", "QUANTIZE", "DEQUANTIZE", "MEAN", "PAD",
        "CONCATENATION", "LOGISTIC", "TANH", "RELU", "RELU6", "HARD_SWISH",
    }
)  # fmt: skip
# Sequence, shape and element-wise operators of the builtin runtime (issue 11). The tflm backend's
# resolver (firmware/app/backend_tflm.cpp) registers only _BUILTIN_OPS so far.
_BUILTIN_MORE_OPS = frozenset(
    {
        "SUB", "MAXIMUM", "MINIMUM", "LEAKY_RELU", "PRELU", "TRANSPOSE", "STRIDED_SLICE", "SPLIT",
        "SPLIT_V", "EXPAND_DIMS", "SQUEEZE", "REDUCE_MAX", "SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND",
    }
)  # fmt: skip
SUPPORTED_OPS: dict[str, frozenset[str]] = {
    "builtin": _BUILTIN_OPS | {"UNIDIRECTIONAL_SEQUENCE_LSTM"} | _BUILTIN_MORE_OPS,
    "tflm": _BUILTIN_OPS,
}
# Non-constant inputs that are not int8 activations: (op, input slot) -> dtype (the LSTM's
# int16 cell state, a variable tensor).
_STATE_INPUT_DTYPES = {("UNIDIRECTIONAL_SEQUENCE_LSTM", 19): "INT16"}

# Fused activations both backends implement for int8 (TANH / SIGN_BIT fused are not).
_SUPPORTED_FUSED_ACTIVATIONS = frozenset({"NONE", "RELU", "RELU_N1_TO_1", "RELU6"})
# Ops whose options table carries a fused activation, with the options class that reads it.
_OPTIONS_WITH_ACTIVATION = {
    "CONV_2D": "Conv2DOptions",
    "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
    "FULLY_CONNECTED": "FullyConnectedOptions",
    "AVERAGE_POOL_2D": "Pool2DOptions",
    "MAX_POOL_2D": "Pool2DOptions",
    "ADD": "AddOptions",
    "MUL": "MulOptions",
    "CONCATENATION": "ConcatenationOptions",
}
# Constant (weight) tensors may be int8 (weights) or int32 (biases, shapes, axes, paddings).
_CONSTANT_DTYPES = frozenset({"INT8", "INT32"})
_MAX_TENSOR_BYTES = 2**31 - 1  # sizes go into C `unsigned int` / int32 fields
_ARENA_ALIGNMENT = 16

# ---------------------------------------------------------------------------------------------
# C identifiers.

# C99/C11/C23 keywords, plus names the standard headers define as macros or that a firmware
# entry point uses, so a model called "bool" or "main" cannot break the build, and C++ keywords
# (model_data.h has C++ guards). C++ code never needs the array's own name: it reaches the model
# through model_data.c's accessors (mcuquant_model_data()), so a model named like a namespace
# of a C++ library (std, tflite, ...) cannot clash with it.
C_RESERVED_WORDS = frozenset(
    """
    auto break case char const continue default do double else enum extern float for goto if
    inline int long register restrict return short signed sizeof static struct switch typedef
    union unsigned void volatile while _Alignas _Alignof _Atomic _Bool _Complex _Generic
    _Imaginary _Noreturn _Static_assert _Thread_local alignas alignof bool constexpr false
    nullptr static_assert thread_local true typeof typeof_unqual _BitInt _Decimal32 _Decimal64
    _Decimal128 noreturn complex imaginary NULL EOF errno assert offsetof main asm fortran
    and and_eq bitand bitor catch char8_t char16_t char32_t class compl concept consteval
    constinit co_await co_return co_yield decltype delete dynamic_cast explicit export friend
    mutable namespace new noexcept not not_eq operator or or_eq private protected public
    reinterpret_cast requires static_cast template this throw try typeid typename using virtual
    wchar_t xor xor_eq const_cast
    """.split()
)


def c_identifier(name: str, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """A valid, non-reserved C identifier derived from a file or model name.

    ``"3d-model (v2).tflite"`` -> ``"model_3d_model_v2"``, ``"int.tflite"`` -> ``"int_model"``.
    Characters outside ``[A-Za-z0-9_]`` become ``_``, runs of ``_`` collapse, a leading digit gets
    a ``model_`` prefix (and a leading underscore is dropped: ``_X``/``__x`` names are reserved),
    reserved words get a ``_model`` suffix, and a name already in ``taken`` (or one whose
    ``<name>_len`` companion would be) gets ``_2``, ``_3``, ...
    """
    stem = Path(name).name
    if stem.lower().endswith(".tflite"):
        stem = stem[: -len(".tflite")]
    ident = re.sub(r"[^0-9A-Za-z_]", "_", stem)
    ident = re.sub(r"_+", "_", ident).strip("_")
    if not ident:
        ident = "model"
    if ident[0].isdigit():
        ident = "model_" + ident
    if ident in C_RESERVED_WORDS or ident.upper().startswith("MCUQUANT_"):
        ident += "_model"
    base, n = ident, 1
    while ident in taken or f"{ident}_len" in taken:
        n += 1
        ident = f"{base}_{n}"
    return ident


# ---------------------------------------------------------------------------------------------
# The parsed model.


@dataclass(frozen=True)
class TensorInfo:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str  # TensorType name, e.g. "INT8"
    scales: tuple[float, ...]
    zero_points: tuple[int, ...]
    is_constant: bool  # backed by a non-empty buffer (weights, biases, shapes)

    @property
    def nbytes(self) -> int:
        n = _DTYPE_SIZES.get(self.dtype, 0)
        for d in self.shape:
            n *= max(d, 0)
        return n


@dataclass(frozen=True)
class OperatorInfo:
    index: int
    name: str  # builtin op name, e.g. "CONV_2D"; "CUSTOM(<code>)" for custom ops
    inputs: tuple[int, ...]  # -1 = optional input left out
    outputs: tuple[int, ...]
    fused_activation: str | None


@dataclass(frozen=True)
class ModelInfo:
    size: int
    sha256: str
    tensors: tuple[TensorInfo, ...]
    operators: tuple[OperatorInfo, ...]  # in execution order
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    @property
    def ops_used(self) -> tuple[str, ...]:
        return tuple(sorted({op.name for op in self.operators}))


@dataclass(frozen=True)
class ExportResult:
    files: tuple[Path, ...]  # model_data.c, model_data.h, model_config.h
    identifier: str  # the C array's name; its length constant is f"{identifier}_len"
    arena_bytes: int  # MCUQUANT_ARENA_BYTES: exact for builtin (_builtin_sizes), measured + margin for tflm (tflm_arena)
    ops: tuple[str, ...]  # op names used, sorted
    sha256: str
    model_bytes: int
    arena_exact: bool = False  # True when arena_bytes comes from the builtin runtime's own planner
    core: str | None = None  # the Cortex-M core the builtin figures are for
    runtime_code_bytes: int | None = None  # flash the builtin runtime adds on that core


def _schema():
    from tflite_micro.python.tflite_micro import runtime

    return runtime.schema_fb


def _enum_names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


_DTYPE_SIZES = {
    "FLOAT32": 4, "FLOAT16": 2, "INT32": 4, "UINT8": 1, "INT64": 8, "BOOL": 1, "INT16": 2,
    "INT8": 1, "FLOAT64": 8, "UINT64": 8, "UINT32": 4, "UINT16": 2,
}  # fmt: skip

# Everything the FlatBuffers Python reader raises on bytes that are not a valid buffer.
_PARSE_ERRORS = (IndexError, struct.error, ValueError, TypeError, OverflowError, UnicodeDecodeError, AttributeError)


def _numpy_field(value) -> np.ndarray:
    """The generated ``XxxAsNumpy()`` returns the int 0 when the field is absent."""
    return value if isinstance(value, np.ndarray) else np.zeros(0, dtype=np.int64)


def _checked_len(what: str, length: int, get) -> int:
    """Reading the last element first proves the whole offset vector lies inside the file."""
    if length < 0:
        raise ModelError(f"malformed model: negative length of {what}")
    if length:
        get(length - 1)
    return length


def parse_model(tflite: bytes) -> tuple[ModelInfo | None, list[str], list[str]]:
    """Parse and check structure: returns (info, structural problems, unsupported-feature problems).

    ``info`` is None when the structural problems leave nothing consistent to describe.
    Raises ModelError for bytes that are not a TFLite flatbuffer at all.
    """
    data = bytes(tflite)
    if len(data) < 8:
        raise ModelError(f"malformed model: {len(data)} bytes is too short for a TFLite flatbuffer")
    if data[4:8] != b"TFL3":
        raise ModelError(f"malformed model: file identifier is {data[4:8]!r}, expected b'TFL3' (not a .tflite file?)")
    try:
        return _parse(data)
    except ModelError:
        raise
    except _PARSE_ERRORS as exc:
        raise ModelError(f"malformed or truncated model ({len(data)} bytes): {type(exc).__name__}: {exc}") from exc


def _parse(data: bytes) -> tuple[ModelInfo | None, list[str], list[str]]:
    fb = _schema()
    op_names = _enum_names(fb.BuiltinOperator)
    dtype_names = _enum_names(fb.TensorType)
    act_names = _enum_names(fb.ActivationFunctionType)
    structural: list[str] = []
    unsupported: list[str] = []

    root = struct.unpack_from("<I", data, 0)[0]
    if root + 4 > len(data):
        raise ModelError(f"malformed model: root table offset {root} lies outside the {len(data)}-byte file")
    model = fb.Model.GetRootAs(data, 0)
    if model.Version() != 3:
        structural.append(f"schema version {model.Version()} (expected 3)")

    n_codes = _checked_len("operator_codes", model.OperatorCodesLength(), model.OperatorCodes)
    codes = []
    for i in range(n_codes):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        name = op_names.get(code, f"UNKNOWN_OP_{code}")
        if name == "CUSTOM":
            custom = oc.CustomCode()
            name = f"CUSTOM({custom.decode('utf-8', 'replace') if custom else '?'})"
        codes.append(name)

    n_buffers = _checked_len("buffers", model.BuffersLength(), model.Buffers)
    buffer_has_data = []
    for i in range(n_buffers):
        buf = model.Buffers(i)
        offset, size = buf.Offset(), buf.Size()
        if offset > 1:  # data stored after the flatbuffer (models > 2 GB)
            if offset + size > len(data):
                structural.append(f"buffer {i}: data at {offset}+{size} lies outside the {len(data)}-byte file")
            buffer_has_data.append(size > 0)
        else:
            buffer_has_data.append(_numpy_field(buf.DataAsNumpy()).size > 0)

    n_subgraphs = _checked_len("subgraphs", model.SubgraphsLength(), model.Subgraphs)
    if n_subgraphs != 1:
        structural.append(f"{n_subgraphs} subgraphs (exactly one is supported)")
        if n_subgraphs == 0:
            return None, structural, unsupported
    sg = model.Subgraphs(0)

    n_tensors = _checked_len("tensors", sg.TensorsLength(), sg.Tensors)
    tensors = []
    for i in range(n_tensors):
        t = sg.Tensors(i)
        name = (t.Name() or b"").decode("utf-8", "replace")
        shape = tuple(int(d) for d in _numpy_field(t.ShapeAsNumpy()))
        dtype = dtype_names.get(t.Type(), f"UNKNOWN_TYPE_{t.Type()}")
        scales: tuple[float, ...] = ()
        zero_points: tuple[int, ...] = ()
        q = t.Quantization()
        if q is not None:
            scales = tuple(float(s) for s in _numpy_field(q.ScaleAsNumpy()))
            zero_points = tuple(int(z) for z in _numpy_field(q.ZeroPointAsNumpy()))
        b = t.Buffer()
        if not 0 <= b < n_buffers:
            structural.append(f"tensor {i} ({name!r}): buffer index {b} out of range (model has {n_buffers} buffers)")
            constant = False
        else:
            constant = buffer_has_data[b]
        tensors.append(TensorInfo(i, name, shape, dtype, scales, zero_points, constant))

    def tensor_refs(where: str, refs, allow_optional: bool) -> tuple[int, ...]:
        out = tuple(int(r) for r in _numpy_field(refs))
        for r in out:
            if r == -1 and allow_optional:
                continue
            if not 0 <= r < n_tensors:
                structural.append(f"{where}: tensor index {r} out of range (subgraph has {n_tensors} tensors)")
        return out

    graph_inputs = tensor_refs("subgraph inputs", sg.InputsAsNumpy(), allow_optional=False)
    graph_outputs = tensor_refs("subgraph outputs", sg.OutputsAsNumpy(), allow_optional=False)
    if not graph_inputs or not graph_outputs:
        structural.append("subgraph has no inputs or no outputs")

    n_ops = _checked_len("operators", sg.OperatorsLength(), sg.Operators)
    operators = []
    for i in range(n_ops):
        op = sg.Operators(i)
        idx = op.OpcodeIndex()
        if not 0 <= idx < n_codes:
            structural.append(f"operator {i}: opcode index {idx} out of range (model has {n_codes} operator codes)")
            name = f"OPCODE_{idx}"
        else:
            name = codes[idx]
        inputs = tensor_refs(f"operator {i} ({name})", op.InputsAsNumpy(), allow_optional=True)
        outputs = tensor_refs(f"operator {i} ({name})", op.OutputsAsNumpy(), allow_optional=False)
        fused = None
        options_cls = _OPTIONS_WITH_ACTIVATION.get(name)
        table = op.BuiltinOptions() if options_cls else None
        if table is not None:
            opts = getattr(fb, options_cls)()
            opts.Init(table.Bytes, table.Pos)
            fused = act_names.get(opts.FusedActivationFunction(), f"UNKNOWN_{opts.FusedActivationFunction()}")
            if name == "FULLY_CONNECTED" and opts.WeightsFormat() != 0:
                unsupported.append(f"operator {i} (FULLY_CONNECTED): shuffled weights format {opts.WeightsFormat()} is not supported")
        operators.append(OperatorInfo(i, name, inputs, outputs, fused))

    # The lazy reads above touch only what the checks need; unpacking the whole model through the
    # object API reads every field once, so a truncation or bad offset anywhere (options,
    # metadata, signatures) is still caught here, before anything is emitted.
    fb.ModelT.InitFromPackedBuf(data, 0)

    info = None
    if not structural:
        info = ModelInfo(len(data), hashlib.sha256(data).hexdigest(), tuple(tensors), tuple(operators), graph_inputs, graph_outputs)
    return info, structural, unsupported


def _check_tflm_library(info: ModelInfo, tflm) -> list[str]:
    """What the TFLM the tflm backend builds with (mcuquant.build.tflm_library) would refuse at start-up."""
    if tflm.per_channel_fully_connected:
        return []
    problems = []
    for op in info.operators:
        if op.name != "FULLY_CONNECTED" or len(op.inputs) < 2 or op.inputs[1] < 0:
            continue
        weights = info.tensors[op.inputs[1]]
        if len(weights.scales) > 1:
            problems.append(
                f"operator {op.index} (FULLY_CONNECTED): its weights are quantized per channel ({len(weights.scales)} "
                f"scales), and {tflm.describe()} runs dense layers with per-tensor weights only (the board would "
                "refuse the model at start-up); convert it with dense layers per tensor (`mcuquant validate` does so "
                "for the tflm backend from a .keras model; TF's converter: "
                "converter._experimental_disable_per_channel_quantization_for_dense_layers = True), or build with "
                "--backend builtin")
    return problems


def _check_supported(info: ModelInfo, backend: str, tflm=None) -> list[str]:
    """Ops, options and dtypes the backend cannot run, each naming operator index and op; for the tflm
    backend also what its TFLM (``tflm``, default mcuquant.build.tflm_library.tflm_library()) would refuse."""
    problems = []
    if backend == "tflm":
        from mcuquant.build.tflm_library import tflm_library

        problems = _check_tflm_library(info, tflm or tflm_library())
    supported = SUPPORTED_OPS[backend]
    # An int16x8 model takes and gives int16 (an int8 LSTM's int16 cell state is not one).
    if backend == "builtin" and any(info.tensors[t].dtype == "INT16" for t in info.inputs + info.outputs):
        return ["it has 16-bit activations (int16x8 quantization), and the builtin runtime runs int8 models: use "
                "--backend tflm, or give the int8 model (ptq.tflite)"]
    for op in info.operators:
        where = f"operator {op.index} ({op.name})"
        if op.name not in supported:
            others = [b for b in SUPPORTED_OPS if b != backend and op.name in SUPPORTED_OPS[b]]
            hint = (f"; the {others[0]!r} backend runs it: export with `--backend {others[0]}`" if others else
                    "; no mcuquant backend runs it: replace the layer that produces it")
            problems.append(f"{where}: op {op.name} is not supported by the {backend!r} backend{hint}")
            continue
        if op.fused_activation is not None and op.fused_activation not in _SUPPORTED_FUSED_ACTIVATIONS:
            problems.append(f"{where}: fused activation {op.fused_activation} is not supported")
        for role, refs in (("input", op.inputs), ("output", op.outputs)):
            for slot, r in enumerate(refs):
                if r == -1:
                    continue
                t = info.tensors[r]
                if t.is_constant:
                    if t.dtype not in _CONSTANT_DTYPES:
                        problems.append(f"{where}: constant {role} {slot} (tensor {r}) has dtype {t.dtype}, expected INT8 or INT32")
                    continue
                float_ok = (op.name == "QUANTIZE" and role == "input") or (op.name == "DEQUANTIZE" and role == "output")
                state_ok = role == "input" and _STATE_INPUT_DTYPES.get((op.name, slot)) == t.dtype
                if t.dtype != "INT8" and not (float_ok and t.dtype == "FLOAT32") and not state_ok:
                    problems.append(f"{where}: {role} {slot} (tensor {r} {t.name!r}) has dtype {t.dtype}; activations must be INT8")
                if any(d < 1 for d in t.shape):
                    problems.append(f"{where}: {role} {slot} (tensor {r}) has dynamic or empty shape {list(t.shape)}")
                if t.nbytes > _MAX_TENSOR_BYTES:
                    problems.append(f"{where}: {role} {slot} (tensor {r}) needs {t.nbytes} bytes, more than {_MAX_TENSOR_BYTES}")
                if t.dtype == "INT8" and (not t.scales or not all(math.isfinite(s) and s > 0 for s in t.scales)):
                    problems.append(f"{where}: {role} {slot} (tensor {r}) has no valid quantization scale")
    return problems


def check_model(tflite: bytes, backend: str = "builtin", tflm=None) -> list[str]:
    """Every problem that keeps ``backend`` from running this model; empty when it can.

    Raises ModelError when the bytes are not a parseable TFLite flatbuffer, ConfigError for an
    unknown backend. ``export_model`` turns a non-empty list into an exception.
    """
    if backend not in SUPPORTED_OPS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {sorted(SUPPORTED_OPS)}")
    info, structural, unsupported = parse_model(tflite)
    if info is None:
        return structural + unsupported
    return structural + unsupported + _check_supported(info, backend, tflm)


def _load_checked(tflite: bytes, backend: str, name: str = "model", tflm=None) -> ModelInfo:
    if backend not in SUPPORTED_OPS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {sorted(SUPPORTED_OPS)}")
    info, structural, unsupported = parse_model(tflite)
    if structural:
        raise ModelError("invalid model:\n  " + "\n  ".join(structural + unsupported))
    if info is None:  # cannot happen without a structural problem; kept as a guard
        raise ModelError("invalid model: nothing could be parsed")
    unsupported = unsupported + _check_supported(info, backend, tflm)
    if unsupported:
        raise UnsupportedOpError(unsupported_message(unsupported, backend, name))
    return info


def unsupported_message(problems: list[str], backend: str, name: str = "model") -> str:
    """The problems of ``check_model`` in one line."""
    return f"{name} is not supported by the {backend!r} backend: " + "; ".join(problems)


# ---------------------------------------------------------------------------------------------
# Arena estimate.


def estimate_arena_bytes(info: ModelInfo, alignment: int = _ARENA_ALIGNMENT) -> int:
    """Bytes of arena the activation tensors need, from a greedy planner over tensor lifetimes.

    Every non-constant tensor an operator reads or writes (plus the graph inputs/outputs) lives
    from the first operator that touches it (graph inputs: from operator 0) to the last one that
    touches it (graph outputs: to the end). Tensors are placed largest first (ties: earlier first
    use, then lower index) at the lowest ``alignment``-aligned offset that does not overlap any
    already placed tensor whose lifetime overlaps; the estimate is the highest end offset.

    This is an estimate of activation memory only: no kernel scratch buffers, no runtime
    bookkeeping, no in-place reuse (e.g. RESHAPE). The builtin backend's exports use the runtime's
    own plan instead (exact), the tflm backend's TFLM's own measurement (tflm_arena).
    """
    last_step = max(len(info.operators) - 1, 0)
    first: dict[int, int] = {}
    last: dict[int, int] = {}

    def touch(t: int, step: int) -> None:
        if t < 0 or info.tensors[t].is_constant:
            return
        first[t] = min(first.get(t, step), step)
        last[t] = max(last.get(t, step), step)

    for t in info.inputs:
        touch(t, 0)
    for op in info.operators:
        for t in (*op.inputs, *op.outputs):
            touch(t, op.index)
    for t in info.outputs:
        touch(t, last_step)

    def aligned(n: int) -> int:
        return -(-n // alignment) * alignment

    order = sorted(first, key=lambda t: (-info.tensors[t].nbytes, first[t], t))
    placed: list[tuple[int, int, int, int]] = []  # (offset, end, first, last)
    arena = 0
    for t in order:
        size = info.tensors[t].nbytes
        clashes = sorted((o, e) for o, e, f, l in placed if f <= last[t] and first[t] <= l)
        offset = 0
        for o, e in clashes:
            if offset + size <= o:
                break
            offset = max(offset, aligned(e))
        placed.append((offset, offset + size, first[t], last[t]))
        arena = max(arena, offset + size)
    return aligned(arena)


# ---------------------------------------------------------------------------------------------
# Arena of the tflm backend: measured by TFLM itself.

#: Added to the tflm arena for what the host measurement cannot see (see tflm_arena).
TFLM_ARENA_MARGIN_BYTES = 512
# CMSIS-NN's depthwise-convolution block of input channels on MVE cores (CH_IN_BLOCK_MVE).
_CMSIS_NN_MVE_CHANNEL_BLOCK = 124
_TFLM_ALLOCATION_TOTAL_RE = re.compile(r"Arena allocation total (\d+) bytes")
_TFLM_ARENA_TOO_SMALL_RE = re.compile(r"Failed to resize buffer|failed to allocate tensors", re.IGNORECASE)
# Run in a child process: TFLM aborts the whole process on some models instead of failing.
_TFLM_MEASURE = (
    "import sys\n"
    "from tflite_micro.python.tflite_micro import runtime\n"
    "runtime.Interpreter.from_bytes(sys.stdin.buffer.read(), arena_size=int(sys.argv[1])).print_allocations()\n"
)


def tflm_host_arena_bytes(tflite: bytes, timeout: float = 300.0) -> int:
    """The arena TFLM uses for ``tflite``, as the tflite-micro host interpreter records it.

    The PyPI tflite-micro interpreter allocates with TFLM's RecordingMicroAllocator and its
    ``print_allocations()`` writes "Arena allocation total N bytes" (persistent tensor and
    operator data, and the planned activations) to the process's stderr. This runs in a child
    process, with arenas of 1 MiB, then 8x larger while that is too small. Raises
    UnsupportedOpError when TFLM cannot prepare the model at all.

    The figure is for a 64-bit host and TFLM's reference kernels; see tflm_arena() for what
    that means on a board.
    """
    import subprocess
    import sys

    arena = 1 << 20
    while True:
        try:
            proc = subprocess.run([sys.executable, "-c", _TFLM_MEASURE, str(arena)], input=bytes(tflite),
                                  capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise UnsupportedOpError(f"TFLM did not prepare the model within {timeout:.0f} s") from exc
        err = proc.stderr.decode("utf-8", "replace")
        found = _TFLM_ALLOCATION_TOTAL_RE.search(err)
        if proc.returncode == 0 and found:
            return int(found.group(1))
        if proc.returncode != 0 and _TFLM_ARENA_TOO_SMALL_RE.search(err) and arena < 1 << 30:
            arena *= 8
            continue
        lines = [line for line in err.splitlines() if line.strip() and not line.startswith("WARNING")]
        raise UnsupportedOpError(f"TFLM cannot prepare this model (tflite-micro host interpreter, exit "
                                 f"{proc.returncode}): {' | '.join(lines[-3:]) or 'no message'}")


def cmsis_nn_scratch_bound(info: ModelInfo) -> int:
    """An upper bound on the largest scratch buffer CMSIS-NN kernels request for one operator.

    The TFLM Arduino library runs CONV_2D, DEPTHWISE_CONV_2D and AVERAGE_POOL_2D with CMSIS-NN,
    whose kernels ask TFLM for an im2col / accumulator buffer that TFLM's reference kernels (what
    the host measures) do not need. Bounds over every code path of its CMSIS-NN (plain C, DSP and
    MVE cores): convolution 4 * (in_ch * kh * kw + 7) bytes; depthwise convolution
    max(2 * in_ch, 4 * 124) * kh * kw; average pooling 4 * in_ch. A scratch buffer lives only
    while its operator runs, so the largest one counts.
    """
    bound = 0
    for op in info.operators:
        if op.name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D") or not op.inputs or op.inputs[0] < 0:
            continue
        in_shape = info.tensors[op.inputs[0]].shape
        in_ch = in_shape[-1] if in_shape else 0
        if op.name == "AVERAGE_POOL_2D":
            bound = max(bound, 4 * in_ch)
            continue
        if len(op.inputs) < 2 or op.inputs[1] < 0 or len(info.tensors[op.inputs[1]].shape) != 4:
            continue
        kh, kw = info.tensors[op.inputs[1]].shape[1:3]
        if op.name == "CONV_2D":
            bound = max(bound, 4 * (in_ch * kh * kw + 7))
        else:
            bound = max(bound, max(2 * in_ch, 4 * _CMSIS_NN_MVE_CHANNEL_BLOCK) * kh * kw)
    return bound


@dataclass(frozen=True)
class TflmArena:
    """The tflm backend's arena and how it was obtained (see tflm_arena)."""

    host_bytes: int  # tflm_host_arena_bytes
    scratch_bytes: int  # cmsis_nn_scratch_bound
    margin_bytes: int  # TFLM_ARENA_MARGIN_BYTES
    bytes: int  # their sum, aligned: MCUQUANT_ARENA_BYTES


def tflm_arena(tflite: bytes, info: ModelInfo, alignment: int = _ARENA_ALIGNMENT) -> TflmArena:
    """Arena for the tflm backend on a 32-bit board: MCUQUANT_ARENA_BYTES of a tflm export.

    Method: TFLM's own measurement on the host (tflm_host_arena_bytes), plus the largest scratch
    buffer CMSIS-NN may add (cmsis_nn_scratch_bound), plus TFLM_ARENA_MARGIN_BYTES, rounded up to
    ``alignment``. Why that covers the board:

    * the host is 64-bit: TFLM's per-tensor and per-operator structs hold pointers, so they are
      larger there than on a 32-bit Cortex-M, and the host figure over-counts them;
    * the host runs TFLM's reference kernels; the TFLM Arduino library runs CMSIS-NN kernels for
      convolutions and pooling, whose scratch buffers the bound adds;
    * the host interpreter (PyPI tflite-micro) is a newer TFLM than the Arduino library
      (its last sync is from 2023): the margin absorbs small differences in their bookkeeping.

    Checked on QEMU (tests/test_tflm_backend.py): the firmware reports the arena TFLM really used
    in its handshake (mq_backend_arena_used), and it stays below this figure. When a board needs
    more anyway, the firmware says so at start-up; -DMCUQUANT_TFLM_ARENA_BYTES=N overrides.
    """
    host, scratch = tflm_host_arena_bytes(tflite), cmsis_nn_scratch_bound(info)
    need = host + scratch + TFLM_ARENA_MARGIN_BYTES
    return TflmArena(host, scratch, TFLM_ARENA_MARGIN_BYTES, -(-need // alignment) * alignment)


# ---------------------------------------------------------------------------------------------
# Rendering.


def _c_float(x: float) -> str:
    """A float literal that round-trips float32 (9 significant digits) and is always valid C."""
    text = f"{x:.9g}"
    if not any(c in text for c in ".en"):
        text += ".0"
    return text + "f"


def _comment_text(text: str) -> str:
    """Text safe inside a C block comment: printable ASCII, no comment terminator."""
    cleaned = "".join(c if " " <= c <= "~" else "?" for c in text)
    return cleaned.replace("*/", "* /")


def _byte_rows(data: bytes, per_row: int = 12) -> str:
    hexes = [f"0x{b:02x}" for b in data]
    return ",\n".join("  " + ", ".join(hexes[i : i + per_row]) for i in range(0, len(hexes), per_row))


def _io_tensor(info: ModelInfo, t: int) -> dict:
    tensor = info.tensors[t]
    return {
        "index": t,
        "name": _comment_text(tensor.name),
        "rank": len(tensor.shape),
        "dims": ", ".join(str(d) for d in tensor.shape),
        "bytes": tensor.nbytes,
        "dtype": tensor.dtype,
        "scale": _c_float(tensor.scales[0]) if len(tensor.scales) == 1 else "0.0f",
        "zero_point": tensor.zero_points[0] if len(tensor.zero_points) == 1 else 0,
    }


def _builtin_sizes(data: bytes, core: str) -> tuple[int, int, bytes]:
    """(arena bytes, runtime code bytes, prepared blob) of the builtin runtime on ``core``.

    The model goes through the real runtime compiled for the host (mq_init: every check the device
    makes, so an unsupported op or option fails here, before anything is written). What mq_init
    computes once for the operators (multipliers, folded biases) is taken from it as the blob
    mq_init_prepared reads from flash, so the device's arena holds no copy; the arena figure is
    the runtime's own plan with the target's 32-bit metadata sizes
    (mcuquant.builtin.cross.device_arena_bytes): exactly what mq_init_prepared asks for on the device.
    """
    from mcuquant.builtin import cross
    from mcuquant.builtin.host import HostRuntime

    blob = HostRuntime(data).prepared_blob()
    return cross.device_arena_bytes(data, core, prepared=blob), cross.code_size(core), blob


def export_model(tflite: bytes, out_dir, *, name: str | None = None, backend: str = "builtin",
                 core: str = "cortex-m4", tflm=None) -> ExportResult:
    """Check ``tflite`` for ``backend`` and write model_data.c, model_data.h and model_config.h.

    ``name`` (a model or file name, e.g. ``"kws_ref_model.tflite"``) gives the C identifier of the
    array; default ``"model"``. Nothing is written when the check fails. For the builtin backend
    the arena size is exact for ``core`` and the runtime's code size is reported (this needs the
    host gcc and arm-none-eabi-gcc: ``make setup``); for tflm it is TFLM's need measured on the host
    plus a margin (tflm_arena), and the model is checked against ``tflm``, the TFLM it will be built
    with (mcuquant.build.tflm_library; default: MCUQUANT_TFLM_DIR's or the pinned one).
    """
    data = bytes(tflite)
    info = _load_checked(data, backend, name or "model", tflm)
    ident = c_identifier(name or "model")
    tflm, prepared = None, None
    if backend == "builtin":
        arena, code_bytes, prepared = _builtin_sizes(data, core)
    else:
        tflm = tflm_arena(data, info)
        arena, code_bytes = tflm.bytes, None
    sha = info.sha256
    context = {
        "version": __version__,
        "sha256": sha,
        "sha256_bytes": ", ".join(f"0x{b:02x}" for b in bytes.fromhex(sha)),
        "source_name": _comment_text(name or "model"),
        "ident": ident,
        "guard": ident.upper(),
        "model_bytes": len(data),
        "byte_rows": _byte_rows(data),
        "prepared_bytes": None if prepared is None else len(prepared),
        "prepared_rows": None if prepared is None else _byte_rows(prepared),
        "backend": backend,
        "ops": info.ops_used,
        "num_operators": len(info.operators),
        "num_tensors": len(info.tensors),
        "inputs": [_io_tensor(info, t) for t in info.inputs],
        "outputs": [_io_tensor(info, t) for t in info.outputs],
        "arena_bytes": arena,
        "arena_exact": code_bytes is not None,
        "core": core,
        "runtime_code_bytes": code_bytes,
        "arena_alignment": _ARENA_ALIGNMENT,
        "tflm": tflm,
        "largest_activation_bytes": max(
            (t.nbytes for t in info.tensors if not t.is_constant), default=0
        ),
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rendered = {
        "model_data.c": _ENV.get_template("model_data.c.j2").render(context),
        "model_data.h": _ENV.get_template("model_data.h.j2").render(context),
        "model_config.h": _ENV.get_template("model_config.h.j2").render(context),
    }
    files = []
    for fname, text in rendered.items():
        path = out / fname
        path.write_bytes(text.encode("ascii"))
        files.append(path)
    return ExportResult(tuple(files), ident, arena, info.ops_used, sha, len(data), arena_exact=code_bytes is not None,
                        core=core if code_bytes is not None else None, runtime_code_bytes=code_bytes)
