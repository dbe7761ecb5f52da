"""The builtin runtime on an emulated Cortex-M core, fed through semihosting: any model, no rebuild.

:func:`run_on_emulated_core` runs a model on the samples given in QEMU for an emulated board
(``qemu-nano33``: Cortex-M4F on mps2-an386, ``qemu-m7``: mps2-an500, ...) and returns every output
of every sample. It exercises what the host build cannot: the runtime compiled for that core,
with its DSP-extension kernels (``__ARM_FEATURE_DSP``: ACLE intrinsics and inline assembly) on
the cores that have them.

How: ONE firmware image per board, :func:`build_runner` (firmware/semihost/mq_semihost_run.c,
the runtime, the mps2 start-up code and HAL, linked with arm-none-eabi-gcc directly, not through
PlatformIO), reads the model, an optional prepared-data blob and the samples from files in
QEMU's working directory through ARM semihosting, runs ``mq_init`` (the arena sized exactly,
between guard zones) and ``mq_invoke`` per sample, and writes the outputs and a report back the
same way; the exit status says how it went (see the C file). The image is cached per board
under the cache directory of :mod:`mcuquant.builtin.host` (``builtin-emulated/<board>-<key>``),
the key hashing every source and header, the templates, the flags and the compiler version, so
it is built once and rebuilt only when a source changes.

Memory: the whole machine (4 MB of flash for the code, 4 MB of RAM for a 64 KB stack and a
3.5 MB pool holding model, blob, samples and arena), not the board's limits: any model that the
runtime accepts runs, whether it fits the real board or not (``mcuquant build`` checks that).

QEMU runs with ``-icount shift=0`` like every emulated board (so the instruction stream is the
one the benchmarks count) and under a timeout: a malformed model or a runtime bug that loops is
an error, never a hang.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mcuquant.boards import Board, get_board
from mcuquant.builtin import sources
from mcuquant.builtin.cross import PREFIX, find_cross_tool
from mcuquant.builtin.host import _DTYPES, cache_dir, runtime_error
from mcuquant.errors import ConfigError, McuquantError, ModelError, UnsupportedOpError

RUNNER_SOURCE = Path("semihost") / "mq_semihost_run.c"
#: The mps2 start-up code and HAL (fault handler, semihosting, SYS_EXIT_EXTENDED).
HAL_SOURCES = (Path("hal") / "mps2" / "startup_mps2.c", Path("hal") / "mps2" / "hal_mps2.c")
RUNNER_CFLAGS = ("-std=c99", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-ffunction-sections", "-fdata-sections")
RUNNER_STACK_BYTES = 65536
RUNNER_DATA_BYTES = 65536  # the runner's variables besides its pool
ELF_NAME = "mq_semihost_run.elf"
#: The runner's exit statuses (firmware/semihost/mq_semihost_run.c; 3 is the start-up code's fault).
EXIT_OK, EXIT_MODEL, EXIT_IO, EXIT_FAULT, EXIT_MEMORY = 0, 1, 2, 3, 4
DEFAULT_TIMEOUT_S = 120.0
_BUILD_TIMEOUT_S = 300
_TEMPLATES = ("mps2.ld.j2", "mq_board.h.j2")


@dataclass(frozen=True)
class TensorInfo:
    index: int  # graph input / output number
    dtype: np.dtype
    shape: tuple[int, ...]
    bytes: int


@dataclass(frozen=True)
class EmulatedRun:
    """What one run of the semihosting runner gave."""

    board: str
    outputs: list[np.ndarray]  # one per graph output, the samples stacked on axis 0
    inputs: list[TensorInfo]
    output_info: list[TensorInfo]
    arena_required: int  # with the core's struct sizes
    activation_bytes: int
    prepared_bytes: int
    report: str


def _emulated_board(board: Board | str) -> Board:
    b = get_board(board) if isinstance(board, str) else board
    if not b.emulated or b.qemu is None or b.hal != "mps2":
        raise ConfigError(f"board {b.name} is not an emulated mps2 board; the semihosting runner needs one "
                          "(qemu-nano33, qemu-m7, ...: see `mcuquant boards`)")
    return b


def _runner_files() -> list[Path]:
    fw = sources.firmware_dir()
    return sorted({*sources.runtime_sources(), *sources.runtime_headers(), fw / RUNNER_SOURCE,
                   *(fw / p for p in HAL_SOURCES), *(fw / "hal" / "mps2").glob("*.h"), fw / "hal" / "mq_hal.h"})


def _run_tool(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_BUILD_TIMEOUT_S, cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        raise McuquantError(f"{what} timed out after {_BUILD_TIMEOUT_S} s: {' '.join(cmd)}") from exc
    if proc.returncode != 0:
        raise McuquantError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                            f"{(proc.stdout + proc.stderr).strip()}")


def build_runner(board: Board | str) -> Path:
    """The semihosting runner's ELF for ``board``, built with arm-none-eabi-gcc or taken from the cache."""
    from mcuquant.build import project  # jinja2 templates of the mps2 linker script and mq_board.h

    b = _emulated_board(board)
    q = b.qemu
    assert q is not None
    cc = find_cross_tool("gcc")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    fw = sources.firmware_dir()
    # The sample pool takes the emulated RAM but for the stack and the runner's own data.
    pool = q.ram_size - RUNNER_STACK_BYTES - RUNNER_DATA_BYTES
    flags = (*b.cpu_flags(), *RUNNER_CFLAGS, f"-DMQ_RUN_POOL_BYTES={pool}u")
    h = hashlib.sha256(json.dumps([b.name, flags, version, RUNNER_STACK_BYTES, repr(q)]).encode())
    for f in _runner_files():
        h.update(str(f.relative_to(fw)).encode() + b"\0" + f.read_bytes() + b"\0")
    for t in _TEMPLATES:
        h.update(t.encode() + b"\0" + (project._templates_dir() / t).read_bytes() + b"\0")
    root = cache_dir() / "builtin-emulated"
    target = root / f"{b.name}-{h.hexdigest()[:20]}"
    if (target / ELF_NAME).is_file():
        return target / ELF_NAME

    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="tmp-", dir=root))
    try:
        ld = project._render("mps2.ld.j2", tmp / "mq_semihost_run.ld", {
            "version": project.__version__, "board": b.name, "machine": q.machine, "flash_origin": q.flash_origin,
            "flash_bytes": q.flash_size, "ram_origin": q.ram_origin, "ram_bytes": q.ram_size,
            "stack_bytes": RUNNER_STACK_BYTES,
        })  # fmt: skip
        project._render("mq_board.h.j2", tmp / "include" / "mq_board.h", {"version": project.__version__, "board": b})
        srcs = [fw / RUNNER_SOURCE, *(fw / p for p in HAL_SOURCES), *sources.runtime_sources()]
        includes = ["-I", str(tmp / "include"), "-I", str(sources.runtime_dir()), "-I", str(fw / "hal" / "mps2"),
                    "-I", str(fw / "hal")]
        _run_tool([cc, *flags, *includes, *map(str, srcs), "-nostartfiles", "--specs=nano.specs", "-Wl,--gc-sections",
                   "-T", str(ld), "-o", str(tmp / ELF_NAME), "-lm"], f"building the semihosting runner for {b.name}")
        (tmp / "build.json").write_text(json.dumps({"board": b.name, "compiler": cc, "version": version,
                                                    "flags": flags}, indent=1))
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / ELF_NAME).is_file():  # not a concurrent build that won the race
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target / ELF_NAME


def _parse_tensor(words: list[str]) -> TensorInfo:
    # input I type T bytes B dims D0 D1 ...
    index, ttype, nbytes = int(words[1]), int(words[3]), int(words[5])
    shape = tuple(int(d) for d in words[7:])
    if ttype not in _DTYPES:
        raise UnsupportedOpError(f"semihosting runner: a graph tensor has TFLite type {ttype}, not readable here")
    return TensorInfo(index, np.dtype(_DTYPES[ttype]), shape, nbytes)


def _model_error(board: str, line: str) -> McuquantError:
    # error STAGE STATUS op INDEX NAME: DETAIL
    head, _, detail = line.partition(": ")
    _, stage, status, _, op_index, op_name = head.split(" ", 5)
    return runtime_error(f"builtin runtime on {board} ({stage})", status, int(op_index), op_name, detail)


def run_on_emulated_core(model: bytes, inputs: np.ndarray | Sequence[np.ndarray], board: Board | str = "qemu-nano33",
                         *, prepared: bytes | None = None, timeout: float = DEFAULT_TIMEOUT_S) -> EmulatedRun:
    """Run ``model`` on every sample of ``inputs`` with the builtin runtime on ``board``'s core in QEMU.

    ``inputs``: for a one-input model an array whose first axis counts the samples, else one such
    array per graph input (same sample count); each is sent as its raw bytes in its own dtype, so
    give the dtype of the graph input (int8, or float32 for a float-input model). ``prepared``: a
    blob of :meth:`HostRuntime.prepared_blob`, used through ``mq_init_prepared``.

    Raises ModelError / UnsupportedOpError (with ``status``, ``op_index``, ``op_name``, ``detail``
    as HostRuntime's) when the runtime refuses the model or an invoke fails, McuquantError on a
    fault, a write outside the arena, a timeout or any other failure of the run.
    """
    from mcuquant.device.qemu import _die_with_parent, qemu_command

    b = _emulated_board(board)
    arrays = [np.ascontiguousarray(inputs)] if isinstance(inputs, np.ndarray) else [np.ascontiguousarray(x) for x in inputs]
    n = len(arrays[0]) if arrays else 0
    if any(len(a) != n for a in arrays):
        raise ModelError(f"every input needs the same number of samples, got {[len(a) for a in arrays]}")
    elf = build_runner(b)
    with tempfile.TemporaryDirectory(prefix="mq-semihost-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "mq_model.tflite").write_bytes(bytes(model))
        if prepared is not None:
            (tmp / "mq_prepared.bin").write_bytes(bytes(prepared))
        with open(tmp / "mq_inputs.bin", "wb") as f:
            for k in range(n):
                for a in arrays:
                    f.write(a[k].tobytes())
        cmd = qemu_command(b, elf, "none")
        proc = subprocess.Popen(cmd, cwd=tmp, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise McuquantError(f"semihosting runner on {b.name}: no result after {timeout:g} s (a hang?); "
                                f"{n} samples, model of {len(model)} bytes") from None
        report_path = tmp / "mq_report.txt"
        report = report_path.read_text(errors="replace") if report_path.is_file() else ""
        console = (out + err).decode(errors="replace").strip()
        lines = report.splitlines()
        errors = [ln for ln in lines if ln.startswith("error ")]
        if proc.returncode == EXIT_MODEL and errors:
            raise _model_error(b.name, errors[0])
        ins = [_parse_tensor(ln.split()) for ln in lines if ln.startswith("input ")]
        if proc.returncode == EXIT_IO and any("whole number of samples" in ln for ln in errors):
            wanted = ", ".join(f"{i.shape} {i.dtype}" for i in ins)
            got = ", ".join(f"{a.shape[1:]} {a.dtype}" for a in arrays)
            raise ModelError(f"the model's inputs are {wanted} ({sum(i.bytes for i in ins)} bytes a sample); "
                             f"got {got} ({sum(a[0].nbytes for a in arrays) if n else 0} bytes a sample)")
        if proc.returncode != EXIT_OK:
            what = {EXIT_IO: "a file could not be read or written", EXIT_FAULT: "the core faulted",
                    EXIT_MEMORY: "memory"}.get(proc.returncode, "unexpected exit")
            raise McuquantError(f"semihosting runner on {b.name}: exit status {proc.returncode} ({what}); "
                                f"report: {errors or lines[-1:] or '(none)'}; QEMU: {console or '(silent)'}")
        facts = {ln.split()[0]: ln.split()[1] for ln in lines if len(ln.split()) == 2}
        outs = [_parse_tensor(ln.split()) for ln in lines if ln.startswith("output ")]
        if facts.get("status") != "MQ_OK" or int(facts.get("samples", -1)) != n:
            raise McuquantError(f"semihosting runner on {b.name}: incomplete report {report!r}")
        for a, info in zip(arrays, ins):
            if n and a[0].nbytes != info.bytes:
                raise ModelError(f"input {info.index} needs {info.bytes} bytes a sample {info.shape} {info.dtype}, "
                                 f"got {a[0].nbytes} ({a.shape[1:]} {a.dtype})")
        if len(arrays) != len(ins):
            raise ModelError(f"the model has {len(ins)} inputs, got {len(arrays)} arrays")
        raw = (tmp / "mq_outputs.bin").read_bytes()
    per_sample = sum(o.bytes for o in outs)
    if len(raw) != per_sample * n:
        raise McuquantError(f"semihosting runner on {b.name}: {len(raw)} output bytes, expected {per_sample * n}")
    chunks = np.frombuffer(raw, dtype=np.uint8).reshape(n, per_sample)
    outputs, offset = [], 0
    for o in outs:
        part = np.ascontiguousarray(chunks[:, offset:offset + o.bytes])
        outputs.append(part.view(o.dtype).reshape((n, *o.shape)).copy())
        offset += o.bytes
    return EmulatedRun(b.name, outputs, ins, outs, int(facts["arena_required"]), int(facts["activation_bytes"]),
                       int(facts["prepared_bytes"]), report)
