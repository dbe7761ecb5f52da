"""Cross build check of the builtin runtime: arm-none-eabi-gcc, code size, device arena size.

:func:`cross_build` compiles every runtime source for one Cortex-M core with
``-std=c99 -Os -Wall -Wextra -Werror -pedantic -ffunction-sections -fdata-sections`` (any warning
fails the build) and measures code size by **linking a minimal image** with ``--gc-sections``: a
``main`` that calls the API a firmware uses (mq_init, mq_invoke, mq_input, mq_output,
mq_status_name, mq_op_name), linked with newlib-nano, libm and libgcc and no start files.
``code_bytes`` is that image's text+data minus the text+data of the same link with an empty
``main``: what the runtime adds to a firmware, including the C library, libm and (on the M0+)
software floating-point routines it pulls in, and excluding functions nothing calls. Summing the
object files instead would count unreferenced functions and miss the library code; that sum is
reported too (``objects_code_bytes``) for comparison.

Device arena size: the arena holds the tensor/operator metadata as well as the activations, and
the metadata structs hold pointers, so their sizes differ between the 64-bit host build and a
32-bit core. The activation plan does not depend on pointer size (same tensor sizes, same 16-byte
alignment, same deterministic planner), so :func:`device_arena_bytes` takes the host runtime's
activation bytes and adds the metadata size computed by the runtime's own layout function
(``mq_arena_bytes``, the one ``mq_init`` uses) with the struct sizes of the target. Those sizes
are learned from the cross compiler itself: a probe file declares one array per struct,
``const unsigned char probe[sizeof(mq_tensor)]``, and ``arm-none-eabi-nm -S`` reads the array
sizes back. Nothing is hard-coded, so the figure stays exact when a struct changes.

Results are cached per core under the cache directory of :mod:`mcuquant.builtin.host`, keyed by
the sources, flags and compiler version.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from mcuquant.builtin import sources
from mcuquant.builtin.host import cache_dir
from mcuquant.errors import McuquantError

CROSS_CFLAGS = ("-std=c99", "-Os", "-Wall", "-Wextra", "-Werror", "-pedantic", "-ffunction-sections",
                "-fdata-sections")
CORES: dict[str, tuple[str, ...]] = {  # the flags the boards' firmware is built with (Board.cpu_flags)
    "cortex-m0plus": ("-mcpu=cortex-m0plus", "-mthumb", "-mfloat-abi=soft"),
    "cortex-m3": ("-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft"),
    "cortex-m4": ("-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"),
    "cortex-m7": ("-mcpu=cortex-m7", "-mthumb", "-mfpu=fpv5-d16", "-mfloat-abi=hard"),
    "cortex-m33": ("-mcpu=cortex-m33", "-mthumb", "-mfpu=fpv5-sp-d16", "-mfloat-abi=hard"),
    "cortex-m55": ("-mcpu=cortex-m55", "-mthumb", "-mfpu=auto", "-mfloat-abi=hard"),
}
LINK_FLAGS = ("-Wl,--gc-sections", "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs", "-e", "main")
PREFIX = "arm-none-eabi-"
_TIMEOUT_S = 300

#: The structs whose sizes make up the arena's metadata (see mq_internal.h, mq_compute_layout).
_PROBE = """#include "mq_internal.h"
const unsigned char mq_probe_tensor[sizeof(mq_tensor)] = {0};
const unsigned char mq_probe_op[sizeof(mq_op)] = {0};
const unsigned char mq_probe_ptr[sizeof(mq_tensor *)] = {0};
const unsigned char mq_probe_plan_entry[sizeof(mq_plan_entry)] = {0};
const unsigned char mq_probe_interpreter[sizeof(mq_interpreter)] = {0};
"""
_PROBE_NAMES = ("tensor", "op", "ptr", "plan_entry", "interpreter")

_MAIN = """#include <stddef.h>
#include "mq_runtime.h"
static uint8_t arena[256] __attribute__((aligned(16)));
static mq_interpreter it;
const uint8_t *volatile model_data;
volatile size_t model_len;
volatile const char *sink;
int main(void)
{
    mq_status s = mq_init(&it, model_data, model_len, arena, sizeof arena);
    if (s == MQ_OK) {
        mq_tensor *in = mq_input(&it, 0);
        if (in != NULL) ((int8_t *)in->data)[0] = 1;
        s = mq_invoke(&it);
        sink = (const char *)mq_output(&it, 0);
    }
    sink = mq_status_name(s);
    if (it.error_op >= 0) sink = mq_op_name(it.error_op);
    return (int)s;
}
"""
_EMPTY_MAIN = "int main(void) { return 0; }\n"


@dataclass(frozen=True)
class CrossBuild:
    core: str
    text: int  # minimal image with the runtime (arm-none-eabi-size)
    data: int
    bss: int
    code_bytes: int  # text+data the runtime adds over an empty image
    objects_code_bytes: int  # sum of text+data of the runtime's object files
    struct_sizes: dict  # sizeof of mq_tensor, mq_op, a pointer, mq_plan_entry, mq_interpreter
    compiler_version: str


def find_cross_tool(tool: str = "gcc") -> str:
    path = shutil.which(PREFIX + tool)
    if path is None:
        raise McuquantError(f"{PREFIX}{tool} was not found on PATH: the Cortex-M cross toolchain is missing; "
                            "run `make setup` (it installs gcc-arm-none-eabi and libnewlib-arm-none-eabi)")
    return path


def _run(cmd: list[str], what: str) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise McuquantError(f"{what} timed out after {_TIMEOUT_S} s: {' '.join(cmd)}") from exc
    if proc.returncode != 0:
        raise McuquantError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                            f"{(proc.stdout + proc.stderr).strip()}")
    return proc.stdout


def _size(size_tool: str, files: list[str]) -> list[tuple[int, int, int]]:
    """(text, data, bss) per file, from arm-none-eabi-size's Berkeley format."""
    out = _run([size_tool, *files], "arm-none-eabi-size")
    return [tuple(int(v) for v in line.split()[:3]) for line in out.splitlines()[1:] if line.strip()]


def probe_struct_sizes(cc: str, nm: str, flags: tuple[str, ...], workdir: Path) -> dict[str, int]:
    """sizeof of the metadata structs as compiler `cc` lays them out (read back with `nm -S`)."""
    src = workdir / "mq_probe_sizes.c"
    obj = workdir / "mq_probe_sizes.o"
    src.write_text(_PROBE)
    _run([cc, *flags, "-I", str(sources.runtime_dir()), "-c", str(src), "-o", str(obj)], "compiling the size probe")
    sizes = {}
    for line in _run([nm, "-S", str(obj)], "nm").splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3].startswith("mq_probe_"):
            sizes[parts[3][len("mq_probe_"):]] = int(parts[1], 16)
    missing = [n for n in _PROBE_NAMES if n not in sizes]
    if missing:
        raise McuquantError(f"size probe: {nm} -S did not report {missing}")
    return sizes


def _cache_key(core: str, version: str) -> str:
    h = hashlib.sha256(json.dumps([core, CORES[core], CROSS_CFLAGS, LINK_FLAGS, version, _PROBE, _MAIN]).encode())
    fw = sources.firmware_dir()
    for f in sources.runtime_sources() + sources.runtime_headers():
        h.update(str(f.relative_to(fw)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:24]


def cross_build(core: str = "cortex-m4") -> CrossBuild:
    """Compile the runtime for `core` (one of CORES) warning-free and measure it; cached."""
    if core not in CORES:
        raise McuquantError(f"unknown core {core!r}; known: {', '.join(CORES)}")
    cc, size_tool, nm = find_cross_tool("gcc"), find_cross_tool("size"), find_cross_tool("nm")
    version = _run([cc, "--version"], "arm-none-eabi-gcc --version").splitlines()[0]
    cache = cache_dir() / "builtin-cross" / f"{core}-{_cache_key(core, version)}.json"
    if cache.is_file():
        stored = json.loads(cache.read_text())
        return CrossBuild(**stored)

    flags = CROSS_CFLAGS + CORES[core]
    include = ["-I", str(sources.runtime_dir())]
    fw = sources.firmware_dir()
    with tempfile.TemporaryDirectory(prefix="mcuquant-cross-") as tmp_name:
        tmp = Path(tmp_name)

        def compile_one(src: Path) -> str:
            obj = tmp / (str(src.relative_to(fw)).replace(os.sep, "_")[:-2] + ".o")
            _run([cc, *flags, *include, "-c", str(src), "-o", str(obj)], f"compiling {src.relative_to(fw)} for {core}")
            return str(obj)

        with ThreadPoolExecutor(max_workers=2) as pool:
            objects = list(pool.map(compile_one, sources.runtime_sources()))
        objects_code = sum(t + d for t, d, _ in _size(size_tool, objects))

        images = {}
        for name, text in (("image", _MAIN), ("empty", _EMPTY_MAIN)):
            main_c = tmp / f"{name}_main.c"
            main_c.write_text(text)
            elf = tmp / f"{name}.elf"
            objs = objects if name == "image" else []
            _run([cc, *flags, *include, *LINK_FLAGS, "-o", str(elf), str(main_c), *objs, "-lm"],
                 f"linking a minimal {core} image")
            images[name] = _size(size_tool, [str(elf)])[0]
        text, data, bss = images["image"]
        code = (text + data) - (images["empty"][0] + images["empty"][1])
        struct_sizes = probe_struct_sizes(cc, nm, flags, tmp)

    result = CrossBuild(core, text, data, bss, code, objects_code, struct_sizes, version)
    cache.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=cache.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(result), f, indent=1)
    os.replace(partial, cache)
    return result


def cross_build_all() -> dict[str, CrossBuild]:
    return {core: cross_build(core) for core in CORES}


def code_size(core: str = "cortex-m4") -> int:
    """Bytes of flash the runtime adds to a firmware for `core` (see the module docstring)."""
    return cross_build(core).code_bytes


def device_arena_bytes(model: bytes, core: str = "cortex-m4", *, prepared: bytes | None = None) -> int:
    """Exact arena bytes `model` needs on `core`: the 32-bit metadata plus the work area (the larger of
    the activations and the planner's entries), plus the operators' prepared data unless it comes
    from ``prepared`` (the blob the export puts in flash, HostRuntime.prepared_blob)."""
    from mcuquant.builtin.host import HostRuntime

    return HostRuntime(model, prepared=prepared).arena_bytes_for(cross_build(core).struct_sizes)
