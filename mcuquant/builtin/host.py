"""Host build of the builtin runtime and :class:`HostRuntime`, the ``builtin-host`` rung.

:func:`build_host` compiles every runtime source (``firmware/runtime/*.c`` and ``ops/*.c``) with
the machine's gcc using ``-std=c99 -O2 -Wall -Wextra -Werror -pedantic``:

- ``sanitize=False``: a shared library (loaded with ctypes by :class:`HostRuntime`) and the
  ``mq_run`` driver (``firmware/host/mq_run.c``);
- ``sanitize=True``: only ``mq_run``, with ``-fsanitize=address,undefined
  -fno-sanitize-recover=all -g`` (an ASan library cannot be loaded into a Python process that was
  not started with the ASan runtime preloaded, so sanitized runs go through the driver).

Builds are cached under ``$MCUQUANT_CACHE_DIR`` (default ``$XDG_CACHE_HOME/mcuquant`` or
``~/.cache/mcuquant``) in ``builtin-host/<key>/``, the key hashing every source and header, the
flags and ``gcc --version``: editing a source rebuilds, nothing else does. A build happens in a
temporary folder renamed into place, so concurrent processes never see half a build.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcuquant.builtin import sources
from mcuquant.errors import McuquantError, ModelError, UnsupportedOpError

HOST_CFLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic")
SANITIZE_FLAGS = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g", "-fno-omit-frame-pointer")
LIBRARY_NAME = "libmq_runtime.so"
DRIVER_NAME = "mq_run"
#: mq_status values (mq_runtime.h).
STATUS_NAMES = (
    "MQ_OK", "MQ_ERR_BAD_ARGUMENT", "MQ_ERR_TRUNCATED", "MQ_ERR_MALFORMED", "MQ_ERR_UNSUPPORTED_VERSION",
    "MQ_ERR_UNSUPPORTED_OP", "MQ_ERR_UNSUPPORTED_OPTION", "MQ_ERR_UNSUPPORTED_TYPE", "MQ_ERR_SHAPE",
    "MQ_ERR_QUANTIZATION", "MQ_ERR_LIMIT", "MQ_ERR_ARENA_TOO_SMALL", "MQ_ERR_NOT_READY", "MQ_ERR_PREPARED",
)  # fmt: skip
MQ_OK, MQ_ERR_ARENA_TOO_SMALL = 0, 11
PREPARED_HEADER_BYTES = 48  # MQ_PREPARED_HEADER_BYTES (mq_runtime.h)
_UNSUPPORTED = {"MQ_ERR_UNSUPPORTED_OP", "MQ_ERR_UNSUPPORTED_OPTION", "MQ_ERR_UNSUPPORTED_TYPE",
                "MQ_ERR_UNSUPPORTED_VERSION"}
#: TFLite TensorType -> numpy dtype, for the types a tensor's bytes can be read as.
_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_, 7: np.int16,
           9: np.int8, 10: np.float64, 12: np.uint64, 15: np.uint32, 16: np.uint16}
ARENA_ALIGN = 16
MQ_INIT_PRESERVE_ALL = 1
_COMPILE_TIMEOUT_S = 300


def runtime_error(who: str, status: str, op_index: int, op_name: str | None, detail: str) -> McuquantError:
    """The error for a runtime status (UnsupportedOpError for the MQ_ERR_UNSUPPORTED_* ones), with
    ``status``, ``op_index``, ``op_name`` and ``detail`` as attributes; ``who`` starts the message."""
    where = f" at operator {op_index} ({op_name})" if op_index >= 0 else ""
    cls = UnsupportedOpError if status in _UNSUPPORTED else ModelError
    exc = cls(f"{who}: {status}{where}: {detail}")
    exc.status, exc.op_index, exc.op_name, exc.detail = status, op_index, op_name if op_index >= 0 else None, detail
    return exc


# ---------------------------------------------------------------------------------------------
# Building.


@dataclass(frozen=True)
class HostBuild:
    directory: Path
    library: Path | None  # None for sanitized builds
    mq_run: Path
    sanitize: bool
    compiler: str
    compiler_version: str


def cache_dir() -> Path:
    root = os.environ.get("MCUQUANT_CACHE_DIR")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "mcuquant"


def find_gcc() -> str:
    """The host C compiler: $MCUQUANT_HOST_CC or gcc on PATH."""
    name = os.environ.get("MCUQUANT_HOST_CC", "gcc")
    path = shutil.which(name)
    if path is None:
        raise McuquantError(f"the host C compiler {name!r} was not found on PATH; the builtin-host runtime is "
                            "compiled from C sources: install gcc (Debian/Ubuntu: apt-get install gcc) or set "
                            "MCUQUANT_HOST_CC")
    return path


def _run(cmd: list[str], what: str) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_COMPILE_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise McuquantError(f"{what} timed out after {_COMPILE_TIMEOUT_S} s: {' '.join(cmd)}") from exc
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip()
        raise McuquantError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{out}")


def _build_key(cc: str, version: str, flags: tuple[str, ...], files: list[Path], root: Path) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([cc, version, flags]).encode())
    for f in files:
        h.update(str(f.relative_to(root)).encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()[:24]


def build_host(*, sanitize: bool = False) -> HostBuild:
    """Compile (or reuse from the cache) the runtime for the host; see the module docstring."""
    cc = find_gcc()
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    flags = HOST_CFLAGS + (SANITIZE_FLAGS if sanitize else ())
    fw = sources.firmware_dir()
    srcs = sources.runtime_sources()
    driver = sources.host_driver_source()
    key = _build_key(cc, version, flags, srcs + sources.runtime_headers() + [driver], fw)
    root = cache_dir() / "builtin-host"
    target = root / (("asan-" if sanitize else "") + key)
    result = HostBuild(target, None if sanitize else target / LIBRARY_NAME, target / DRIVER_NAME, sanitize, cc, version)
    if (target / "build.json").is_file():
        return result

    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="tmp-", dir=root))
    try:
        include = ["-I", str(sources.runtime_dir())]
        obj_dir = tmp / "obj"
        obj_dir.mkdir()

        def compile_one(src: Path) -> Path:
            obj = obj_dir / (str(src.relative_to(fw)).replace(os.sep, "_")[:-2] + ".o")
            _run([cc, *flags, "-fPIC", *include, "-c", str(src), "-o", str(obj)],
                 f"compiling {src.relative_to(fw)} for the host")
            return obj

        with ThreadPoolExecutor(max_workers=2) as pool:
            objects = [str(o) for o in pool.map(compile_one, srcs)]
            driver_obj = str(compile_one(driver))
        if not sanitize:
            _run([cc, *flags, "-shared", "-o", str(tmp / LIBRARY_NAME), *objects, "-lm"], "linking the runtime library")
        _run([cc, *flags, "-o", str(tmp / DRIVER_NAME), driver_obj, *objects, "-lm"], "linking mq_run")
        shutil.rmtree(obj_dir)
        (tmp / "build.json").write_text(json.dumps({"compiler": cc, "version": version, "flags": flags,
                                                    "sources": [str(s.relative_to(fw)) for s in srcs]}, indent=1))
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "build.json").is_file():  # not a concurrent build that won the race
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return result


# ---------------------------------------------------------------------------------------------
# ctypes mirror of the public structs (mq_runtime.h); tests compare their sizes with the compiler's.


class MqTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("dims", ctypes.POINTER(ctypes.c_int32)),
        ("scales_raw", ctypes.c_void_p),
        ("zero_points_raw", ctypes.c_void_p),
        ("bytes", ctypes.c_uint32),
        ("ndims", ctypes.c_uint8),
        ("type", ctypes.c_uint8),
        ("is_constant", ctypes.c_uint8),
        ("reserved", ctypes.c_uint8),
        ("scale", ctypes.c_float),
        ("zero_point", ctypes.c_int32),
        ("nscales", ctypes.c_uint32),
        ("nzero_points", ctypes.c_uint32),
        ("quantized_dimension", ctypes.c_int32),
    ]


class MqInterpreter(ctypes.Structure):
    _fields_ = [
        ("model", ctypes.c_void_p),
        ("model_len", ctypes.c_size_t),
        ("arena", ctypes.c_void_p),
        ("arena_len", ctypes.c_size_t),
        ("arena_required", ctypes.c_size_t),
        ("activation_bytes", ctypes.c_size_t),
        ("prepared_bytes", ctypes.c_size_t),
        ("prepared_external", ctypes.c_uint32),
        ("tensors", ctypes.POINTER(MqTensor)),
        ("ntensors", ctypes.c_uint32),
        ("ops", ctypes.c_void_p),
        ("nops", ctypes.c_uint32),
        ("input_index", ctypes.POINTER(ctypes.c_int32)),
        ("ninputs", ctypes.c_uint32),
        ("output_index", ctypes.POINTER(ctypes.c_int32)),
        ("noutputs", ctypes.c_uint32),
        ("error_op", ctypes.c_int32),
        ("error_detail", ctypes.c_char_p),
        ("ready", ctypes.c_uint32),
        ("progress", ctypes.c_void_p),
        ("progress_ctx", ctypes.c_void_p),
    ]


_LIB: ctypes.CDLL | None = None


def load_library() -> ctypes.CDLL:
    """The runtime's shared library (built on first use), with argument types declared."""
    global _LIB
    if _LIB is None:
        lib = ctypes.CDLL(str(build_host().library))
        p_it = ctypes.POINTER(MqInterpreter)
        lib.mq_init_ex.argtypes = [p_it, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
                                   ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint32]
        lib.mq_init_ex.restype = ctypes.c_int
        lib.mq_invoke.argtypes = [p_it]
        lib.mq_invoke.restype = ctypes.c_int
        lib.mq_op_name.argtypes = [ctypes.c_int32]
        lib.mq_op_name.restype = ctypes.c_char_p
        lib.mq_op_code_at.argtypes = [p_it, ctypes.c_int32]
        lib.mq_op_code_at.restype = ctypes.c_int32
        lib.mq_arena_bytes.argtypes = [p_it, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32]
        lib.mq_arena_bytes.restype = ctypes.c_uint64
        lib.mq_prepared_export.argtypes = [p_it, ctypes.c_void_p, ctypes.c_size_t]
        lib.mq_prepared_export.restype = ctypes.c_size_t
        lib.mq_interpreter_size.restype = ctypes.c_size_t
        if lib.mq_interpreter_size() != ctypes.sizeof(MqInterpreter):
            # The C runtime would write past the Python-owned struct: heap corruption, crashes far away.
            raise RuntimeError(f"MqInterpreter mirrors {ctypes.sizeof(MqInterpreter)} bytes of mq_interpreter, which "
                               f"has {lib.mq_interpreter_size()}: update its _fields_ from mq_runtime.h")
        _LIB = lib
    return _LIB


def _aligned(nbytes: int, alignment: int = ARENA_ALIGN) -> np.ndarray:
    """A zeroed uint8 array of nbytes whose data address is a multiple of `alignment`."""
    raw = np.zeros(nbytes + alignment, dtype=np.uint8)
    start = (-raw.ctypes.data) % alignment
    return raw[start:start + nbytes]


@dataclass(frozen=True)
class TensorView:
    index: int
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float
    zero_point: int


class HostRuntime:
    """The builtin runtime compiled for the host, running one model through ctypes.

    The model is copied into a 16-byte aligned buffer and the arena is sized exactly from
    ``mq_init``'s ``arena_required``. ``preserve_all=True`` gives every tensor its own arena
    slot, so :meth:`tensor` can read any intermediate tensor after :meth:`invoke`. ``prepared``:
    the operators' prepared data made ahead (:meth:`prepared_blob`, as the export puts it in flash),
    used through ``mq_init_prepared`` instead of arena memory.
    """

    def __init__(self, model: bytes, *, preserve_all: bool = False, prepared: bytes | None = None):
        self._lib = load_library()
        data = bytes(model)
        self._model = _aligned(max(len(data), 1))
        self._model[: len(data)] = np.frombuffer(data, dtype=np.uint8)
        self._model_len = len(data)
        self._prepared = None
        if prepared is not None:
            self._prepared = _aligned(max(len(prepared), 1))
            self._prepared[: len(prepared)] = np.frombuffer(bytes(prepared), dtype=np.uint8)
            self._prepared_len = len(prepared)
        self._flags = MQ_INIT_PRESERVE_ALL if preserve_all else 0
        self._it = MqInterpreter()
        # With no arena mq_init reports an upper bound (or the exact figure once the metadata
        # fits); at most three rounds reach an arena of exactly arena_required bytes.
        self._arena = _aligned(0)
        for _ in range(3):
            status = self._init(self._it, self._arena)
            if status == MQ_OK and self._it.arena_required == len(self._arena):
                break
            if status not in (MQ_OK, MQ_ERR_ARENA_TOO_SMALL):
                raise self._error(status, self._it)
            self._arena = _aligned(self._it.arena_required)
        else:
            raise McuquantError("builtin runtime: arena size did not converge (a runtime bug)")
        self.inputs = [self._view(self._it.input_index[i]) for i in range(self._it.ninputs)]
        self.outputs = [self._view(self._it.output_index[i]) for i in range(self._it.noutputs)]

    def _init(self, it: MqInterpreter, arena: np.ndarray) -> int:
        ptr = arena.ctypes.data if len(arena) else None
        prepared, prepared_len = (None, 0) if self._prepared is None else (self._prepared.ctypes.data,
                                                                           self._prepared_len)
        return self._lib.mq_init_ex(ctypes.byref(it), self._model.ctypes.data, self._model_len, prepared,
                                    prepared_len, ptr, len(arena), self._flags)

    def prepared_blob(self) -> bytes:
        """What mq_init computed once for the operators, as the blob mq_init_prepared takes (header
        with SHA-256(model || data), then the data): the export's flash array."""
        n = self._lib.mq_prepared_export(ctypes.byref(self._it), None, 0)
        if n == 0:
            raise McuquantError("builtin runtime: no prepared data to export (the runtime was given a blob)")
        out = ctypes.create_string_buffer(n)
        self._lib.mq_prepared_export(ctypes.byref(self._it), out, n)
        return out.raw

    def _error(self, status: int, it: MqInterpreter) -> McuquantError:
        name = STATUS_NAMES[status] if 0 <= status < len(STATUS_NAMES) else f"status {status}"
        op_index, op_name = int(it.error_op), None
        if op_index >= 0:
            code = self._lib.mq_op_code_at(ctypes.byref(it), op_index)
            op_name = self._lib.mq_op_name(code).decode() if code >= 0 else "UNKNOWN"
        return runtime_error("builtin runtime", name, op_index, op_name, (it.error_detail or b"").decode())

    def _view(self, index: int) -> TensorView:
        t = self._it.tensors[index]
        if t.type not in _DTYPES:
            raise UnsupportedOpError(f"builtin runtime: tensor {index} has TFLite type {t.type}, not readable here")
        return TensorView(index, tuple(t.dims[: t.ndims]), np.dtype(_DTYPES[t.type]), float(t.scale),
                          int(t.zero_point))

    # -- sizes ------------------------------------------------------------------------------

    @property
    def arena_required(self) -> int:
        return int(self._it.arena_required)

    @property
    def activation_bytes(self) -> int:
        return int(self._it.activation_bytes)

    @property
    def prepared_bytes(self) -> int:
        return int(self._it.prepared_bytes)

    def arena_bytes_for(self, sizes: dict) -> int:
        """Arena bytes this model needs when the runtime's structs have ``sizes`` (keys tensor, op, ptr,
        plan_entry: e.g. a 32-bit target's, from mcuquant.builtin.cross): metadata plus the larger of
        the activations and the planner's entries, as mq_init computes it."""
        return int(self._lib.mq_arena_bytes(ctypes.byref(self._it), sizes["tensor"], sizes["op"], sizes["ptr"],
                                            sizes["plan_entry"]))

    def try_arena(self, arena_bytes: int) -> tuple[str, int]:
        """mq_init on a fresh interpreter with an arena of `arena_bytes`: (status name, arena_required)."""
        it = MqInterpreter()
        status = self._init(it, _aligned(arena_bytes))
        return STATUS_NAMES[status], int(it.arena_required)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.inputs[0].shape

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.outputs[0].shape

    # -- running ----------------------------------------------------------------------------

    def _read(self, index: int) -> np.ndarray:
        t = self._it.tensors[index]
        view = self._view(index)
        if not t.data:
            raise ModelError(f"builtin runtime: tensor {index} is not used by the graph (no memory)")
        raw = ctypes.string_at(t.data, t.bytes)
        return np.frombuffer(raw, dtype=view.dtype).reshape(view.shape).copy()

    def invoke_all(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Run once with one array per graph input; return every graph output."""
        if len(inputs) != len(self.inputs):
            raise ModelError(f"the model has {len(self.inputs)} inputs, got {len(inputs)} arrays")
        for view, x in zip(self.inputs, inputs):
            t = self._it.tensors[view.index]
            arr = np.ascontiguousarray(np.asarray(x).astype(view.dtype, copy=False))
            if arr.nbytes != t.bytes:
                raise ModelError(f"input {view.index} needs shape {view.shape} ({t.bytes} bytes), got {arr.shape}")
            ctypes.memmove(t.data, arr.ctypes.data, t.bytes)
        status = self._lib.mq_invoke(ctypes.byref(self._it))
        if status != MQ_OK:
            raise self._error(status, self._it)
        return [self._read(view.index) for view in self.outputs]

    def invoke(self, x: np.ndarray) -> np.ndarray:
        """Run one sample through a one-input model; return output 0 with its full shape."""
        return self.invoke_all([x])[0]

    def tensor(self, index: int) -> np.ndarray:
        """Any tensor after invoke; intermediate tensors hold their value only with preserve_all=True."""
        if not 0 <= index < self._it.ntensors:
            raise IndexError(f"tensor index {index} out of range (0..{self._it.ntensors - 1})")
        t = self._it.tensors[index]
        if t.is_constant:
            view = self._view(index)
            return np.frombuffer(ctypes.string_at(t.data, t.bytes), dtype=view.dtype).reshape(view.shape).copy()
        return self._read(index)
