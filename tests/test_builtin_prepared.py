"""No double-precision arithmetic runs inside mq_invoke (issue 13, "prepare once").

Requantization multipliers are computed from the float scales in double, as TFLM does; on a
Cortex-M4F (single-precision FPU, -mfloat-abi=hard) every double operation is a call to a libgcc
helper (__aeabi_dmul, __aeabi_f2d, ...) costing tens to hundreds of cycles. Operators compute them
once, in mq_prepare_<op> at mq_init, and eval() reads ctx->prepared. This test proves it on the
real target: it cross-compiles every runtime source for cortex-m4 with the firmware's flags, reads
the static call graph from `arm-none-eabi-objdump -dr` of the objects (every relocation inside a
function is an edge: direct `bl`/`b.w` calls, and addresses taken, such as the row callbacks
handed to mq_broadcast_run), adds the kernel table's function-pointer calls as edges mq_invoke ->
every mq_eval_*, and asserts that no double helper and no double-precision libm function is
reachable from mq_invoke. It also checks that the prepared data made ahead on the host (the
export's flash blob) runs every operator as the data mq_init computes does.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mcuquant.builtin import cross, host, sources
from modelgen import COVERAGE_EXAMPLES, convert, op_names, sample_inputs

# libgcc's double-precision helpers: AEABI names (__aeabi_dmul, __aeabi_cdcmple, __aeabi_d2lz,
# conversions to double such as __aeabi_f2d / __aeabi_i2d) and the GNU names behind them.
_DOUBLE_HELPER = re.compile(r"^(__aeabi_(c?d[a-z0-9]*|[a-z0-9]+2d)|__[a-z]+df[0-9]?)$")
# Double-precision libm functions (their float versions end in f and are allowed).
_DOUBLE_LIBM = {
    "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "pow", "sqrt", "cbrt", "frexp", "ldexp",
    "scalbn", "round", "lround", "llround", "rint", "lrint", "llrint", "nearbyint", "trunc", "floor",
    "ceil", "fabs", "fmod", "modf", "remainder", "fmin", "fmax", "hypot", "sin", "cos", "tan", "asin",
    "acos", "atan", "atan2", "sinh", "cosh", "tanh", "erf", "erfc",
}

_FUNCTION = re.compile(r"^[0-9a-f]+ <(?P<name>[^>]+)>:$")
_RELOCATION = re.compile(r"^\s+[0-9a-f]+: (?P<type>R_ARM_\w+)\s+(?P<target>\S+)$")
_SYMBOL = re.compile(r"^[0-9a-f]+ (?P<bind>[lg! ])\s+(?P<kind>F|O)?\s*(?P<section>\S+)\s+[0-9a-f]+\s+(?P<name>\S+)$")


def is_double(symbol: str) -> bool:
    return bool(_DOUBLE_HELPER.match(symbol)) or symbol in _DOUBLE_LIBM


def _object_graph(objdump: str, obj: Path) -> tuple[dict[str, set[str]], set[str]]:
    """(what each function defined in `obj` references, the names of its static functions).
    A relocation to a function's own section (.text.<name>, -ffunction-sections) counts as a
    reference to the function."""
    local = set()
    for line in subprocess.run([objdump, "-t", str(obj)], capture_output=True, text=True, check=True).stdout.splitlines():
        m = _SYMBOL.match(line)
        if m and m["kind"] == "F" and m["bind"] == "l":
            local.add(m["name"])
    edges: dict[str, set[str]] = {}
    current = None
    for line in subprocess.run([objdump, "-dr", str(obj)], capture_output=True, text=True, check=True).stdout.splitlines():
        if m := _FUNCTION.match(line):
            current = m["name"]
            edges.setdefault(current, set())
        elif (m := _RELOCATION.match(line)) and current is not None:
            target = re.sub(r"[+-]0x[0-9a-f]+$", "", m["target"])
            if target.startswith(".text."):
                target = target[len(".text."):]
            elif target.startswith("."):
                continue  # constant data (.rodata...), not code
            if target != current:
                edges[current].add(target)
    return edges, local


def runtime_call_graph(tmp: Path, core: str = "cortex-m4") -> dict[str, set[str]]:
    """Static call graph of the runtime built for `core`. Nodes are "object:function" for static
    functions (names repeat between modules) and plain names for global and library ones."""
    cc, objdump = cross.find_cross_tool("gcc"), cross.find_cross_tool("objdump")
    flags = cross.CROSS_CFLAGS + cross.CORES[core]
    fw = sources.firmware_dir()

    def compile_one(src: Path) -> Path:
        obj = tmp / (str(src.relative_to(fw)).replace("/", "_")[:-2] + ".o")
        subprocess.run([cc, *flags, "-I", str(sources.runtime_dir()), "-c", str(src), "-o", str(obj)],
                       check=True, capture_output=True, text=True)
        return obj

    with ThreadPoolExecutor(max_workers=2) as pool:
        objects = list(pool.map(compile_one, sources.runtime_sources()))
    graph: dict[str, set[str]] = {}
    for obj in objects:
        edges, local = _object_graph(objdump, obj)

        def node(name: str, obj=obj, local=local) -> str:
            return f"{obj.stem}:{name}" if name in local else name

        for fn, callees in edges.items():
            graph.setdefault(node(fn), set()).update(node(c) for c in callees)
    # The interpreter calls every operator through the kernel table (op->kernel->eval).
    graph.setdefault("mq_invoke", set()).update(n for n in graph if n.startswith("mq_eval_"))
    return graph


def double_paths(graph: dict[str, set[str]], root: str, skip: set[str] = frozenset()) -> list[list[str]]:
    """One shortest path root -> ... -> double function for every double function reachable from
    `root` without entering a node of `skip`."""
    parent = {root: None}
    queue = deque([root])
    found = []
    while queue:
        n = queue.popleft()
        if is_double(n.split(":")[-1]):
            path = [n]
            while parent[path[-1]] is not None:
                path.append(parent[path[-1]])
            found.append(path[::-1])
            continue
        for c in sorted(graph.get(n, ())):
            if c not in parent and c not in skip:
                parent[c] = n
                queue.append(c)
    return found


def _shown(path: list[str]) -> str:
    return " -> ".join(path)


@pytest.fixture(scope="module")
def m4_graph(tmp_path_factory):
    for tool in ("gcc", "objdump"):
        if shutil.which(cross.PREFIX + tool) is None:
            pytest.skip(f"{cross.PREFIX}{tool} not found on PATH: the call-graph check needs the Cortex-M cross "
                        "toolchain (apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi, or `make setup`)")
    return runtime_call_graph(tmp_path_factory.mktemp("m4-callgraph"))


def test_no_double_precision_reachable_from_mq_invoke_on_cortex_m4(m4_graph):
    """One path per offending kernel, so that every eval still computing in double is named."""
    evals = sorted(m4_graph["mq_invoke"])
    offending = [["mq_invoke", *paths[0]] for e in evals if (paths := double_paths(m4_graph, e))]
    # mq_invoke's own code (status names, the progress callback) is checked too.
    offending += double_paths({**m4_graph, "mq_invoke": m4_graph["mq_invoke"] - set(evals)},
                              "mq_invoke")
    assert not offending, ("double-precision arithmetic reachable from mq_invoke on cortex-m4 (compute it in "
                           "mq_prepare_<op> at mq_init instead):\n  " + "\n  ".join(_shown(p) for p in offending))


def test_the_call_graph_sees_double_where_there_is_some(m4_graph):
    """Guards against a vacuous pass: the kernels are reached through the table, relocations were
    read, and the prepare()/check() functions (which compute the multipliers in double, at
    mq_init) are found to reach __aeabi_* double helpers, through static helpers of their module."""
    assert {"mq_eval_conv_2d", "mq_eval_softmax", "mq_eval_add", "mq_eval_mul"} <= m4_graph["mq_invoke"]
    assert "mq_broadcast_run" in m4_graph["mq_eval_add"], "relocations were not read"
    for root in ("mq_prepare_add", "mq_prepare_softmax", "mq_check_conv_2d", "mq_prepare_fully_connected"):
        paths = double_paths(m4_graph, root)
        assert any(p[-1].startswith("__aeabi_d") for p in paths), (root, paths)


@pytest.mark.parametrize("index", range(len(COVERAGE_EXAMPLES)))
def test_prepared_data_made_ahead_gives_the_same_outputs_for_every_operator(index):
    """The operators' prepared data as the export puts it in flash (made by the host build, read
    through mq_init_prepared) gives the same bytes as the data mq_init computes into the arena.
    The coverage models hold every operator of modelgen.RUNTIME_OPS between them."""
    spec = COVERAGE_EXAMPLES[index]
    tflite = convert(spec)
    in_arena = host.HostRuntime(tflite)
    blob = in_arena.prepared_blob()
    ahead = host.HostRuntime(tflite, prepared=blob)
    assert ahead.prepared_bytes == 0 and len(blob) == host.PREPARED_HEADER_BYTES + in_arena.prepared_bytes
    for x in sample_inputs(spec, 4):
        assert ahead.invoke(x).tobytes() == in_arena.invoke(x).tobytes(), (op_names(tflite), spec)
