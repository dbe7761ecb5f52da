"""The device-measuring loop: one board, one model, many samples, one `*/device` rung.

    result = build_firmware(board, tflite, "work/firmware/qemu-nano33/ptq")     # generate + pio run
    with open_device(board, elf=result.elf, expected_sha256=sha) as link:       # QEMU or a serial port
        run = measure(link, xq)                                                 # outputs + counter deltas
    rung = device_rung("ptq", board, run, oracle_outputs, build=result)

One interface, several drivers behind it (:func:`open_device` always yields a
:class:`~mcuquant.device.link.Link`):

* an emulated board: its ELF runs in QEMU (:class:`~mcuquant.device.qemu.QemuEmulator`, ``-icount``
  for deterministic instruction counts), reached over QEMU's UART socket; QEMU is stopped on
  leaving, also on errors and Ctrl-C;
* a physical board: a serial port, given (``port``: a device path or any pyserial URL, e.g. a
  ``rfc2217://`` port server) or found by the USB VID:PID of the board profile (:func:`find_port`).

The host-built firmware (mcuquant.device.hostfw) is a third driver of the same Link, used by the
tests: :func:`measure` and :func:`device_rung` take any handshaken Link.

The rung holds what DESIGN.md asks of a device: byte-identical rate against tflm-host
(``bit_exact_rate``) with every mismatching sample, latency (median and p95 of the device
counter, with its unit: QEMU counts instructions, not cycles), the arena the backend reported in
the handshake, and the flash and RAM use of the build. The error rate and its interval are added
by the ladder (mcuquant.ladder.score_rungs), which scores every rung the same way.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcuquant.boards import Board
from mcuquant.device.protocol import DeviceInfo
from mcuquant.errors import ConfigError, TransportError

#: What the latency figures mean, by the counter unit the firmware reports.
LATENCY_NOTES = {
    "instructions": "guest instructions per inference counted by QEMU -icount (deterministic for the same "
                    "binary and input); an instruction count, not CPU cycles and not time",
    "cycles": "CPU cycles per inference (DWT cycle counter)",
    "microseconds": "microseconds per inference (the board's micros() clock)",
    "": "the board has no counter: no latency",
}
#: Seconds of silence before a request is re-sent: the device sends BUSY keep-alives while it
#: computes, so a lost frame costs about this long whatever the model. An inference without
#: keep-alives (the tflm backend) may take up to INVOKE_TIMEOUT_S; HELLO waits HANDSHAKE_TIMEOUT_S.
REPLY_TIMEOUT_S = 1.0
INVOKE_TIMEOUT_S = 60.0
HANDSHAKE_TIMEOUT_S = 10.0
#: Re-sends listed in a rung (all are counted and logged).
MAX_RETRIES_LISTED = 50
#: How long a physical board's port may take to come back after an upload (USB re-enumeration).
PORT_RETURN_S = 15.0


# ---------------------------------------------------------------------------------------------
# Building (and flashing) the firmware for one model


def build_firmware(board: Board, tflite: bytes, project_dir: str | Path, *, model_name: str = "model",
                   backend: str | None = None, upload: bool = False, port: str | None = None,
                   progress: bool = True, packages: str | Path | None = None):
    """Generate the PlatformIO project for ``board`` and ``tflite`` in ``project_dir``, build it
    and check flash and RAM against the board's limits; with ``upload`` (physical boards) flash
    it to ``port``. Returns the :class:`~mcuquant.build.pio.BuildResult`.

    Raises FirmwareTooLargeError (required and available bytes) when it does not fit, BuildError
    when PlatformIO fails or cannot reach its registry for a physical board.
    """
    from mcuquant.build.pio import build_project
    from mcuquant.build.project import generate_project

    if upload and board.emulated:
        raise ConfigError(f"{board.name} is emulated: there is nothing to upload (its ELF runs in QEMU)")
    project = generate_project(board, project_dir, tflite=tflite, model_name=model_name, backend=backend,
                               packages=packages)
    targets = ("upload",) if upload else ()
    result = build_project(project, progress=progress, targets=targets, upload_port=port if upload else None)
    if upload and port:
        _wait_for_port(port)
    return result


def build(board: Board | str, model: str | Path, out_dir: str | Path | None = None, *, backend: str | None = None,
          upload: bool = True, port: str | None = None, progress: bool = True, packages: str | Path | None = None):
    """`mcuquant build`: the firmware for the .tflite file ``model`` in ``out_dir`` (default
    mcuquant-out/build/BOARD), flashed to a physical board unless ``upload`` is False.

    Returns (BuildResult, the port flashed or None). The firmware is built first and the port looked
    for only to upload it: an unplugged board loses no build (the error names the firmware built and
    how to flash it once the board is there; PlatformIO then recompiles nothing).
    """
    from mcuquant.boards import get_board
    from mcuquant.errors import ModelError
    from mcuquant.graph import read_int8_tflite

    board = get_board(board) if isinstance(board, str) else board
    path = Path(model)
    if path.suffix != ".tflite":
        raise ModelError(f"{path}: `mcuquant build` takes an int8 .tflite model (`mcuquant validate` also converts "
                         ".keras models)")
    tflite = read_int8_tflite(path)
    if board.emulated and port:
        raise ConfigError(f"{board.name} is emulated: it runs in QEMU and has no serial port (drop --port)")
    upload = upload and not board.emulated
    out = Path(out_dir) if out_dir else Path("mcuquant-out/build") / board.name
    result = build_firmware(board, tflite, out, model_name=path.name, backend=backend, progress=progress,
                            packages=packages)
    if not upload:
        return result, None
    try:
        port = find_port(board, port)
    except TransportError as exc:
        raise TransportError(f"{exc}\nThe firmware is built ({result.elf}, flash {result.flash_used:,} and RAM "
                             f"{result.ram_used:,} bytes); plug the board in and run the same command again to "
                             "flash it (nothing recompiles), or build without uploading: --no-upload") from exc
    upload_firmware(result.project, port, progress=progress)
    return result, port


def upload_firmware(project, port: str, *, progress: bool = True):
    """Flash the already built ``project`` to the board on ``port`` (PlatformIO's upload target: the
    build is up to date, so nothing recompiles) and wait for its USB port to come back."""
    from mcuquant.build.pio import build_project

    result = build_project(project, progress=progress, targets=("upload",), upload_port=port)
    _wait_for_port(port)
    return result


def _wait_for_port(port: str, timeout: float = PORT_RETURN_S) -> None:
    """After an upload a USB CDC port disappears while the board resets; wait for it to return."""
    if not port.startswith("/dev/"):
        return
    deadline = time.monotonic() + timeout
    while not Path(port).exists() and time.monotonic() < deadline:
        time.sleep(0.2)


# ---------------------------------------------------------------------------------------------
# Drivers


def _describe_ports(ports) -> str:
    if not ports:
        return "none"
    parts = []
    for p in ports:
        ids = f" {p.vid:04x}:{p.pid:04x}" if p.vid is not None and p.pid is not None else ""
        desc = f" {p.description}" if p.description and p.description != "n/a" else ""
        parts.append(f"{p.device} ({ids.strip() or 'no USB id'}{desc})")
    return ", ".join(parts)


def find_port(board: Board, port: str | None = None) -> str:
    """The serial port of a physical ``board``: ``port`` when given, else the one port whose USB
    VID:PID is in the board profile. Raises TransportError naming the ports seen and ``--port``."""
    if board.emulated:
        raise ConfigError(f"{board.name} is emulated: it runs in QEMU and has no serial port (drop --port)")
    if port:
        return port
    from serial.tools import list_ports

    ports = sorted(list_ports.comports(), key=lambda p: p.device)
    wanted = set(board.serial.usb_ids)
    ids = ", ".join(f"{v:04x}:{p:04x}" for v, p in board.serial.usb_ids)
    if not wanted:
        raise ConfigError(f"{board.name} talks over {board.serial.transport} without a known USB id, so its port "
                          f"cannot be found automatically; give it with --port (ports seen: {_describe_ports(ports)})")
    matches = [p for p in ports if (p.vid, p.pid) in wanted]
    if not matches:
        raise TransportError(f"no serial port of {board.name} (USB {ids}) found; ports seen: {_describe_ports(ports)}. "
                             f"Plug the board in, or give its port with --port (e.g. --port /dev/ttyACM0)")
    if len(matches) > 1:
        raise ConfigError(f"several ports look like {board.name}: {_describe_ports(matches)}; choose one with --port")
    return matches[0].device


@contextlib.contextmanager
def open_device(board: Board, *, elf: str | Path | None = None, port: str | None = None,
                expected_sha256: str | None = None, timeout: float = REPLY_TIMEOUT_S,
                invoke_timeout: float = INVOKE_TIMEOUT_S) -> Iterator:
    """A handshaken :class:`~mcuquant.device.link.Link` to the device running ``board``'s firmware.

    An emulated board runs ``elf`` in QEMU; a physical board is opened on :func:`find_port`. The
    handshake refuses a device whose model hash differs from ``expected_sha256``
    (DeviceMismatchError). An emulator is always stopped on leaving; if it ended during the
    measurement, the TransportError says so, with what QEMU printed.
    """
    from mcuquant.device.link import Link

    def link_to(target: str, baudrate: int = 115200):
        return Link.open(target, expected_sha256=expected_sha256, timeout=timeout, invoke_timeout=invoke_timeout,
                         baudrate=baudrate, handshake=False, handshake_timeout=HANDSHAKE_TIMEOUT_S)

    if board.emulated:
        from mcuquant.device.qemu import QemuEmulator

        if elf is None:
            raise ConfigError(f"{board.name} is emulated: give the firmware ELF to run (mcuquant build)")
        with QemuEmulator(board, elf) as emu:
            try:
                with link_to(emu.url) as link:
                    link.handshake()
                    yield link
            except TransportError as exc:
                _raise_if_emulator_ended(emu, board, exc)
                raise
        return
    device = find_port(board, port)
    try:
        link = link_to(device, board.serial.baud)
    except TransportError as exc:
        from serial.tools import list_ports

        seen = _describe_ports(sorted(list_ports.comports(), key=lambda p: p.device))
        raise TransportError(f"cannot open {device} for {board.name} ({exc.__cause__ or exc}); is the board plugged "
                             f"in? Ports seen: {seen}; give another with --port") from exc
    with link:
        link.handshake()
        yield link


def _raise_if_emulator_ended(emu, board: Board, exc: TransportError) -> None:
    deadline = time.monotonic() + 1.0  # a killed QEMU may take a moment to be reaped
    while emu.returncode is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if emu.returncode is None:
        return
    output = " ".join(emu.stderr_text().split())[-300:]
    raise TransportError(f"QEMU running {board.name} ended (exit status {emu.returncode}) during the measurement: "
                         f"{exc}" + (f"; QEMU said: {output}" if output else "")) from exc


# ---------------------------------------------------------------------------------------------
# Measuring


@dataclass(frozen=True)
class Measurement:
    """What the device returned for every sample, in order."""

    outputs: np.ndarray  # (n, *output sample shape): the device's integer outputs
    counts: np.ndarray  # (n,) int64: counter delta per inference, in info.counter_unit
    info: DeviceInfo  # the handshake: backend, arena, counter unit, tensor specs
    seconds: float  # wall time of the whole stream
    resends: int  # exchanges re-sent after a timeout or a corrupted frame (recovered)
    bad_frames: int  # corrupted frames dropped on the way (never counted as results)
    busy_frames: int = 0  # keep-alives received while the device computed
    retries: tuple = ()  # every re-send: {"request", "attempt", "cause"}
    resumed: int = 0  # samples taken from the journal of an earlier, interrupted run


def measure(link, xq: np.ndarray, *, label: str = "device", progress: bool = True, journal=None) -> Measurement:
    """Stream every sample of ``xq`` (n, ...) through ``link``; outputs and counter deltas.

    With a ``journal`` (mcuquant.device.journal) each result is recorded as it arrives, and only
    the samples the journal lacks are measured."""
    from mcuquant.progress import progress_bar

    info = link.info
    if info is None:
        raise TransportError(f"{link.name}: no handshake yet")
    if len(xq) == 0:
        raise ConfigError("no samples to measure")
    unit = info.counter_unit or "count"
    todo = journal.missing(len(xq)) if journal is not None else range(len(xq))
    fresh: dict[int, tuple[np.ndarray, int]] = {}  # without a journal, the results are kept here
    start = time.monotonic()
    with progress_bar(label, len(todo), enabled=progress) as advance:
        for i, (y, count) in zip(todo, link.infer_stream(xq[i] for i in todo)):  # pipelined (PROTOCOL.md)
            if journal is not None:
                journal.record(i, y, count)
            else:
                fresh[i] = (y, count)
            advance(**({unit: count} if info.counter_unit else {}))
    if journal is not None:
        spec = info.outputs[0]
        outputs, counts = journal.arrays(len(xq), spec.dtype, spec.sample_shape)
    else:
        outputs = np.stack([fresh[i][0] for i in range(len(xq))])
        counts = np.asarray([fresh[i][1] for i in range(len(xq))], dtype=np.int64)
    return Measurement(outputs, counts, info, time.monotonic() - start, link.resends, link.bad_frames,
                       link.busy_frames, tuple(link.retry_log), len(xq) - len(todo))


def latency(counts: np.ndarray, unit: str, clock_hz: int | None = None) -> dict:
    """Median and p95 (nearest rank: a value that was measured) of the counter deltas; on a physical
    board also in milliseconds (cycles at ``clock_hz``, or microseconds)."""
    if not unit:
        return {"unit": None, "note": LATENCY_NOTES[""]}
    c = np.asarray(counts, dtype=np.int64)
    out = {
        "unit": unit,
        "median": float(np.median(c)),
        "p95": int(np.percentile(c, 95, method="inverted_cdf")),
        "min": int(c.min()),
        "max": int(c.max()),
        "n": int(c.size),
        "note": LATENCY_NOTES.get(unit, f"{unit} per inference"),
    }
    per_ms = {"cycles": clock_hz / 1000 if clock_hz else None, "microseconds": 1000}.get(unit)
    if per_ms:
        out["median_ms"] = out["median"] / per_ms
        out["p95_ms"] = out["p95"] / per_ms
        if unit == "cycles":
            out["note"] += f", {clock_hz / 1e6:g} MHz core clock for the milliseconds"
    return out


def device_rung(variant: str, board: Board, run: Measurement, oracle: np.ndarray, *, classification: bool,
                build=None, oracle_kind: str = "tflm-host") -> dict:
    """The device facts of the ``{variant}/device`` rung (the ladder adds error rate and CI).

    ``oracle``: the outputs of ``oracle_kind`` on the same inputs; the rung lists every sample
    where the device differs from it (index, max LSB difference and, for classification, the
    two classes and whether the class flipped).
    """
    from mcuquant.interpreters import agreement

    dev = run.outputs.reshape(len(run.outputs), -1)
    ref = np.asarray(oracle).reshape(len(oracle), -1)
    if dev.shape != ref.shape:
        raise ValueError(f"device outputs {dev.shape} and {oracle_kind} outputs {ref.shape} differ in shape")
    # max_traced=0: a device keeps no intermediate tensors to trace a divergence with.
    agree = agreement(b"", np.empty(0), "device", dev, oracle_kind, ref, classification=classification, max_traced=0)
    info = run.info
    rung = {
        "id": f"{variant}/device",
        "board": board.name,
        "emulated": board.emulated,
        "backend": info.backend,
        "n": int(len(dev)),
        "oracle": oracle_kind,
        "bit_exact": agree["bit_exact"],
        "bit_exact_rate": agree["bit_exact_rate"],
        "max_lsb_difference": agree["max_lsb_difference"],
        "class_flips": agree["class_flips"] if classification else None,
        "mismatches": [{k: v for k, v in m.items() if k != "first_divergence"} for m in agree["mismatches"]],
        "latency": latency(run.counts, info.counter_unit, board.cpu_clock_hz),
        "arena_bytes": info.arena_used,
        "arena_size": info.arena_size,
        "flash_bytes": build.flash_used if build else None,
        "flash_limit": board.flash_bytes,
        "ram_bytes": build.ram_used if build else None,
        "ram_limit": board.ram_bytes,
        "stack_bytes": build.stack_bytes if build else None,  # reserved by the linker script, apart from ram_bytes
        "heap_bytes": build.heap_bytes if build else None,
        "firmware_version": info.firmware_version,
        "model_sha256": info.model_sha256,
        "link": {"seconds": round(run.seconds, 2), "window": info.window, "resends": run.resends,
                 "bad_frames": run.bad_frames,
                 "busy_frames": run.busy_frames, "retries": list(run.retries[:MAX_RETRIES_LISTED]),
                 "resumed_samples": run.resumed},
    }
    if build is None:
        rung["build_note"] = "the firmware was not built in this run: flash and RAM use unknown"
    else:
        rung["elf"] = str(build.elf)
    return rung
