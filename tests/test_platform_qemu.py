"""The emulated boards end to end: generated project -> mcuquant's PlatformIO dev-platform ->
arm-none-eabi-gcc -> QEMU, with the HAL exercised by a small firmware (tests/firmware/hal_smoke).

Needs qemu-system-arm and arm-none-eabi-gcc (a missing one skips, saying which; with
MCUQUANT_REQUIRE_QEMU=1, as in CI, it fails instead). PlatformIO runs with a private core folder;
its tool-scons package is linked from the default core folder when that has one, else
bootstrapped from PyPI.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from mcuquant.boards import get_board, list_boards
from mcuquant.build.pio import FirmwareTooLargeError, build_project
from mcuquant.builtin.cross import device_arena_bytes
from mcuquant.build.project import generate_project
from mcuquant.device.qemu import QemuEmulator
from mcuquant.errors import ConfigError

pytestmark = [pytest.mark.qemu, pytest.mark.usefixtures("qemu_tools")]

SMOKE_APP = Path(__file__).parent / "firmware" / "hal_smoke"
EMULATED = [b.name for b in list_boards() if b.emulated]
# The smoke firmware's work(): 20000 rounds of a 5-instruction loop, plus the fixed cost of one
# mq_hal_counter() call and of the call itself (111 to 130 instructions on these cores).
WORK_INSTRUCTIONS = 100_000
COUNTER_OVERHEAD_MAX = 300


@pytest.fixture(scope="module")
def smoke_elfs(pio_core, tmp_path_factory) -> dict[str, Path]:
    """The smoke firmware built for every emulated board (one `pio run` each)."""
    out = tmp_path_factory.mktemp("smoke")
    elfs = {}
    for name in EMULATED:
        project = generate_project(name, out / name, app_dir=SMOKE_APP)
        result = build_project(project, progress=False)
        # tiny code; the stack (templates/mps2.ld.j2's .stack) read from the sections, apart from the data
        assert result.flash_used < 4096 and result.stack_bytes >= 16384 and result.heap_bytes == 0
        assert result.ram_used < 16384
        elfs[name] = result.elf
    return elfs


def _talk(emu: QemuEmulator, lines: list[bytes], jitter: bool) -> tuple[int, list[str]]:
    """Send ``lines`` (with random pauses if ``jitter``), read until QEMU exits; (status, output)."""
    assert emu.port is not None
    out = b""
    with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as s:
        for line in lines:
            if jitter:
                time.sleep(random.uniform(0, 0.02))
            s.sendall(line)
        while chunk := s.recv(4096):
            out += chunk
    return emu.wait(timeout=10), out.decode("ascii").splitlines()


@pytest.mark.parametrize("board", EMULATED)
def test_smoke_firmware_counts_exact_instructions(board, smoke_elfs):
    runs = []
    for _ in range(2):
        start = time.monotonic()
        with QemuEmulator(get_board(board), smoke_elfs[board]) as emu:
            status, out = _talk(emu, [b"hello\n", b"qemu\n", b"exit 5\n"], jitter=True)
        runs.append((status, out, time.monotonic() - start))
        assert emu.returncode == 5
    for status, out, seconds in runs:
        assert status == 5
        assert out[0] == "hal-smoke instructions"
        assert [line for line in out if not line.startswith("work ")] == ["hal-smoke instructions", "HELLO", "QEMU", "EXIT 5"]
        works = {int(line.split()[1]) for line in out if line.startswith("work ")}
        # The same code counts the same, whatever the UART traffic before it did to the timing.
        assert len(works) == 1, out
        assert WORK_INSTRUCTIONS < works.pop() < WORK_INSTRUCTIONS + COUNTER_OVERHEAD_MAX
        assert seconds < 3.0, f"boot, echo and exit took {seconds:.2f} s"
    assert runs[0][1] == runs[1][1]  # identical across runs


def test_fault_ends_the_emulator_with_a_report(smoke_elfs):
    with QemuEmulator(get_board("qemu-nano33"), smoke_elfs["qemu-nano33"]) as emu:
        status, out = _talk(emu, [b"fault\n"], jitter=False)
    assert status == 3
    assert "mcuquant firmware: fault, exception 003" in emu.stderr_text()  # HardFault (escalated BusFault)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_emulator_is_killed_on_errors_and_interrupts(smoke_elfs, exc):
    pid = None
    with pytest.raises(exc):
        with QemuEmulator(get_board("qemu-m3"), smoke_elfs["qemu-m3"]) as emu:
            pid = emu.pid
            assert _alive(pid)
            raise exc("stop here")
    assert pid is not None and not _alive(pid)
    emu.stop()  # stopping twice is harmless


def test_no_orphan_when_the_python_process_dies(smoke_elfs):
    code = textwrap.dedent(
        f"""
        import os
        from mcuquant.boards import get_board
        from mcuquant.device.qemu import QemuEmulator
        emu = QemuEmulator(get_board("qemu-m3"), {str(smoke_elfs["qemu-m3"])!r}).start()
        print(emu.pid, flush=True)
        os.kill(os.getpid(), 9)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    pid = int(proc.stdout.split()[0])
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), f"QEMU (pid {pid}) outlived the Python process that started it"


def test_emulator_refuses_what_it_cannot_run(tmp_path):
    with pytest.raises(ConfigError, match=r"board nano33 is not emulated"):
        QemuEmulator(get_board("nano33"), tmp_path / "x.elf")
    with pytest.raises(ConfigError, match=r"firmware .*x.elf not found; build it first"):
        QemuEmulator(get_board("qemu-m3"), tmp_path / "x.elf").start()


# --- flash and RAM limits at link time --------------------------------------------------------


def _reshape_model(n: int) -> bytes:
    """A valid int8 model with one RESHAPE of n elements: its arena holds input and output."""
    import flatbuffers
    from tflite_micro.python.tflite_micro import runtime

    fb = runtime.schema_fb
    model = fb.ModelT()
    model.version = 3
    code = fb.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = fb.BuiltinOperator.RESHAPE
    code.version = 1
    model.operatorCodes = [code]
    shape = fb.BufferT()
    shape.data = np.array([1, n], dtype="<i4").view(np.uint8)
    model.buffers = [fb.BufferT(), fb.BufferT(), shape, fb.BufferT()]

    def tensor(name, dims, dtype, buffer, quantized=True):
        t = fb.TensorT()
        t.name, t.shape, t.type, t.buffer = name, np.array(dims, dtype=np.int32), dtype, buffer
        if quantized:
            t.quantization = fb.QuantizationParametersT()
            t.quantization.scale = np.array([0.5], dtype=np.float32)
            t.quantization.zeroPoint = np.array([0], dtype=np.int64)
        return t

    graph = fb.SubGraphT()
    graph.tensors = [tensor("input", [1, n], fb.TensorType.INT8, 1),
                     tensor("shape", [2], fb.TensorType.INT32, 2, quantized=False),
                     tensor("output", [1, n], fb.TensorType.INT8, 3)]
    op = fb.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, np.array([0, 1], dtype=np.int32), np.array([2], dtype=np.int32)
    op.builtinOptionsType = fb.BuiltinOptions.ReshapeOptions
    op.builtinOptions = fb.ReshapeOptionsT()
    op.builtinOptions.newShape = np.array([1, n], dtype=np.int32)
    graph.operators = [op]
    graph.inputs, graph.outputs = np.array([0], dtype=np.int32), np.array([2], dtype=np.int32)
    model.subgraphs = [graph]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_model_with_too_big_an_arena_fails_at_link_time(pio_core, tmp_path):
    board = get_board("qemu-nano33")
    # Fits: the model and its arena are linked in, and the firmware reads both.
    small = _reshape_model(1000)
    project = generate_project(board, tmp_path / "small", tflite=small, model_name="reshape",
                               app_dir=SMOKE_APP, build_flags=("-DMQ_SMOKE_MODEL",))
    result = build_project(project, progress=False)
    # The arena is the builtin runtime's exact figure: 2 x 1008 bytes of activations plus metadata.
    assert project.arena_bytes == device_arena_bytes(small) > 2016
    assert result.ram_used >= project.arena_bytes and result.stack_bytes >= 16384
    with QemuEmulator(board, result.elf) as emu:
        status, out = _talk(emu, [b"exit 0\n"], jitter=False)
    total = sum(small) & 0xFFFFFFFF
    assert status == 0 and f"model {len(small)} {total + (total & 0xFF) + ((total >> 8) & 0xFF)}" in out

    # Does not fit: 2 x 160000 bytes of activations against 256 KiB of RAM.
    big = _reshape_model(160_000)
    project = generate_project(board, tmp_path / "big", tflite=big, model_name="reshape",
                               app_dir=SMOKE_APP, build_flags=("-DMQ_SMOKE_MODEL",))
    assert project.arena_bytes == device_arena_bytes(big) > 320_000
    with pytest.raises(FirmwareTooLargeError) as err:
        build_project(project, progress=False)
    e = err.value
    assert (e.region, e.available) == ("RAM", 262_144)
    assert e.required >= project.arena_bytes + 16_384  # arena + stack, plus a little .bss
    message = str(e)
    assert "\n" not in message
    assert re.search(rf"RAM needs {e.required} bytes, the board has 262144 bytes", message)


# --- the real firmware (other helpers' main loop, protocol and runtime) -----------------------


@pytest.mark.slow
def test_real_firmware_on_qemu_matches_tflm_host(pio_core, shared_models, tmp_path):
    """kws on qemu-nano33 through the serial link: byte-identical to tflm-host, same counts twice."""
    import hashlib

    from mcuquant.device.link import Link
    from mcuquant.interpreters import Runner

    tflite = (shared_models / "kws_ref_model.tflite").read_bytes()
    # The arena is given generously: sizing it is the export's and the runtime's business.
    project = generate_project("qemu-nano33", tmp_path / "p", tflite=tflite, model_name="kws_ref_model.tflite",
                               build_flags=("-DMCUQUANT_BUILTIN_ARENA_BYTES=65536",))
    result = build_project(project, progress=False)
    inputs = np.random.default_rng(0).integers(-128, 128, size=(3, 49, 10, 1), dtype=np.int8)
    oracle = Runner("tflm-host", tflite)
    counts = []
    for _ in range(2):
        with QemuEmulator(project.board, result.elf) as emu:
            with Link.open(emu.url, expected_sha256=hashlib.sha256(tflite).hexdigest(), timeout=30) as link:
                run = []
                for x in inputs:
                    y, count = link.infer(x)
                    assert np.array_equal(np.asarray(y).reshape(-1), np.asarray(oracle.invoke(x)).reshape(-1))
                    run.append(count)
        counts.append(run)
    assert counts[0] == counts[1] and all(c > 0 for c in counts[0])
