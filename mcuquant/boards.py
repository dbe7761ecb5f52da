"""Board profiles: one declarative TOML file per board in boards/, validated on load.

A profile says what the board is (core, FPU, flash and RAM limits), how firmware is built for it
(the PlatformIO environment), how the host talks to it (serial transport) and how latency is
counted. Emulated boards also carry the facts of their QEMU machine that the linker script and
the HAL need (memory map, UART, counter). Any unknown or missing key and any bad value raises
:class:`~mcuquant.errors.ConfigError` naming the file and the key, so a broken profile fails
when it is loaded, not halfway through a build.

This module imports nothing heavy: ``mcuquant boards`` must answer instantly.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from mcuquant.errors import ConfigError

KINDS = ("emulated", "physical")
CORES = ("cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55", "xtensa-lx6")
# GCC's -mfpu names; "mve" = the FPU and Helium that -mcpu=cortex-m55 implies; "xtensa-sp" = the
# ESP32's single-precision FPU (PlatformIO's platform sets its flags).
FPUS = ("none", "fpv4-sp-d16", "fpv5-sp-d16", "fpv5-d16", "mve", "xtensa-sp")
COUNTERS = ("dwt", "qemu-icount", "micros", "none")
BACKENDS = ("builtin", "tflm")
HALS = ("mps2", "arduino")
TRANSPORTS = ("usb-cdc", "uart")
ARDUINO_SERIALS = ("Serial", "Serial1", "Serial2")
#: The local PlatformIO dev-platform (firmware/platform/) that builds every emulated board.
EMULATED_PLATFORM = "mcuquant-qemu"
#: What mq_hal_counter_unit() reports for each counter kind.
COUNTER_UNITS = {"dwt": "cycles", "qemu-icount": "instructions", "micros": "microseconds", "none": ""}

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")
_USB_ID_RE = re.compile(r"[0-9a-f]{4}:[0-9a-f]{4}\Z")


def _boards_dir() -> Path:
    """boards/ of a checkout (editable install), else the copy shipped inside the package."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[1] / "boards", here.parent / "boards_data"):
        if candidate.is_dir() and any(candidate.glob("*.toml")):
            return candidate
    return here.parents[1] / "boards"


BOARDS_DIR = _boards_dir()


@dataclass(frozen=True)
class PlatformIOEnv:
    platform: str  # official platform name, or EMULATED_PLATFORM for emulated boards
    board: str | None  # PlatformIO board id (physical boards)
    framework: str | None
    upload_protocol: str | None
    platform_version: str | None = None  # physical boards: the platform release pinned (platformio.ini: NAME@VERSION)

    @property
    def platform_spec(self) -> str:
        """What platformio.ini's `platform =` says: the name, pinned to its version when there is one."""
        return f"{self.platform}@{self.platform_version}" if self.platform_version else self.platform


@dataclass(frozen=True)
class SerialLink:
    transport: str  # "usb-cdc" | "uart"
    baud: int
    arduino_serial: str | None  # Arduino object of the link: Serial, Serial1 (physical boards)
    usb_ids: tuple[tuple[int, int], ...]  # (VID, PID) pairs for port auto-detection


@dataclass(frozen=True)
class QemuMachine:
    machine: str  # qemu-system-arm -M
    cpu: str  # qemu-system-arm -cpu
    flash_origin: int  # where the firmware image goes (also the vector table)
    flash_size: int  # memory the machine has there
    ram_origin: int
    ram_size: int
    uart_base: int  # CMSDK APB UART0
    uart_clock_hz: int
    fpgaio_base: int  # MPS2 FPGAIO block (counter, 100 Hz clock)
    fpgaio_clock_hz: int


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    kind: str  # "emulated" | "physical"
    core: str
    fpu: str
    dsp: bool
    flash_bytes: int  # limits enforced at link time (emulated) or by PlatformIO (physical)
    ram_bytes: int
    counter: str
    cpu_clock_hz: int | None  # physical boards: the core clock, to turn DWT cycles into milliseconds
    default_backend: str
    hal: str  # firmware/hal/<hal>/
    platformio: PlatformIOEnv
    serial: SerialLink
    qemu: QemuMachine | None  # emulated boards only
    emulated_equivalent: str | None  # physical boards: the emulated board to use instead
    path: Path

    @property
    def emulated(self) -> bool:
        return self.kind == "emulated"

    @property
    def counter_unit(self) -> str:
        return COUNTER_UNITS[self.counter]

    def cpu_flags(self) -> list[str]:
        """GCC flags for the core and FPU (Arm cores; PlatformIO's platforms set their own)."""
        if not self.core.startswith("cortex-"):
            raise ConfigError(f"{self.path}: no GCC flags for core {self.core!r}")
        flags = [f"-mcpu={self.core}", "-mthumb"]
        if self.fpu == "none":
            return flags + ["-mfloat-abi=soft"]
        if self.fpu == "mve":
            return flags + ["-mfpu=auto", "-mfloat-abi=hard"]
        return flags + [f"-mfpu={self.fpu}", "-mfloat-abi=hard"]


# ---------------------------------------------------------------------------------------------
# Validation: one small checker per value type, tables of keys per section.


class _Section:
    """Reads the keys of one TOML table, naming file and key in every error."""

    def __init__(self, path: Path, table: dict[str, Any], prefix: str = ""):
        self.path, self.table, self.prefix, self.used = path, table, prefix, set()

    def where(self, key: str) -> str:
        return f"{self.path}: key `{self.prefix}{key}`"

    def get(self, key: str, check: Callable[[str, Any], Any], required: bool = True) -> Any:
        self.used.add(key)
        if key not in self.table:
            if required:
                raise ConfigError(f"{self.where(key)} is missing")
            return None
        return check(self.where(key), self.table[key])

    def forbid(self, keys: tuple[str, ...], why: str) -> None:
        for key in keys:
            if key in self.table:
                raise ConfigError(f"{self.where(key)} is not allowed: {why}")

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            raise ConfigError(f"{self.where(unknown[0])} is unknown (known keys: {', '.join(sorted(self.used))})")


def _text(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where} must be a non-empty string, not {value!r}")
    return value


def _one_of(choices: tuple[str, ...]) -> Callable[[str, Any], str]:
    def check(where: str, value: Any) -> str:
        if value not in choices:
            raise ConfigError(f"{where} is {value!r}; expected one of: {', '.join(choices)}")
        return value

    return check


def _version(where: str, value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"\d+\.\d+\.\d+", value):
        raise ConfigError(f"{where} must be an exact release such as \"10.11.0\" (a pin, not a range), not {value!r}")
    return value


def _flag(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, not {value!r}")
    return value


def _count(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{where} must be a positive integer, not {value!r}")
    return value


def _address(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        raise ConfigError(f"{where} must be a 32-bit address (e.g. 0x20000000), not {value!r}")
    return value


def _table(where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table ([section]), not {value!r}")
    return value


def _usb_ids(where: str, value: Any) -> tuple[tuple[int, int], ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and _USB_ID_RE.match(v.lower()) for v in value):
        raise ConfigError(f"{where} must be a list of \"vid:pid\" hex strings like \"2341:805a\", not {value!r}")
    return tuple((int(v[:4], 16), int(v[5:], 16)) for v in value)


def load_board(path: str | Path) -> Board:
    """Load and validate one profile; raises ConfigError naming the file and the key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read board profile {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None

    top = _Section(path, data)
    name = top.get("name", _text)
    if not _NAME_RE.match(name):
        raise ConfigError(f"{top.where('name')} is {name!r}; use lower-case letters, digits, '-' and '_'")
    if name != path.stem:
        raise ConfigError(f"{top.where('name')} is {name!r} but the file is {path.name}; they must match")
    kind = top.get("kind", _one_of(KINDS))
    emulated = kind == "emulated"
    fields: dict[str, Any] = dict(
        name=name,
        description=top.get("description", _text),
        kind=kind,
        core=top.get("core", _one_of(CORES)),
        fpu=top.get("fpu", _one_of(FPUS)),
        dsp=top.get("dsp", _flag),
        flash_bytes=top.get("flash_bytes", _count),
        ram_bytes=top.get("ram_bytes", _count),
        counter=top.get("counter", _one_of(COUNTERS)),
        default_backend=top.get("default_backend", _one_of(BACKENDS)),
        hal=top.get("hal", _one_of(HALS)),
        path=path,
    )
    if emulated:
        for key, want in (("counter", "qemu-icount"), ("default_backend", "builtin"), ("hal", "mps2")):
            if fields[key] != want:
                raise ConfigError(f"{top.where(key)} must be {want!r} for an emulated board, not {fields[key]!r}")
        top.forbid(("emulated_equivalent",), "an emulated board is its own emulation")
        fields["emulated_equivalent"] = None
        top.forbid(("cpu_clock_hz",), "QEMU counts instructions, not cycles at a clock")
        fields["cpu_clock_hz"] = None
    else:
        if fields["counter"] == "qemu-icount" or fields["hal"] == "mps2":
            raise ConfigError(f"{top.where('counter' if fields['counter'] == 'qemu-icount' else 'hal')} "
                              "describes an emulator, but kind is \"physical\"")
        fields["emulated_equivalent"] = top.get("emulated_equivalent", _text)
        fields["cpu_clock_hz"] = top.get("cpu_clock_hz", _count)

    pio = _Section(path, top.get("platformio", _table), "platformio.")
    if emulated:
        platform = pio.get("platform", _one_of((EMULATED_PLATFORM,)))
        pio.forbid(("board", "framework", "upload_protocol"), "emulated boards build with mcuquant's own platform")
        fields["platformio"] = PlatformIOEnv(platform, None, None, None)
    else:
        fields["platformio"] = PlatformIOEnv(
            pio.get("platform", _text), pio.get("board", _text), pio.get("framework", _one_of(("arduino",))),
            pio.get("upload_protocol", _text), pio.get("platform_version", _version),
        )
    pio.finish()

    ser = _Section(path, top.get("serial", _table), "serial.")
    transport = ser.get("transport", _one_of(TRANSPORTS))
    baud = ser.get("baud", _count)
    if emulated:
        if transport != "uart":
            raise ConfigError(f"{ser.where('transport')} must be \"uart\" for an emulated board")
        ser.forbid(("arduino_serial", "usb_ids"), "emulated boards talk through QEMU's UART socket")
        fields["serial"] = SerialLink(transport, baud, None, ())
    else:
        fields["serial"] = SerialLink(
            transport, baud, ser.get("arduino_serial", _one_of(ARDUINO_SERIALS)),
            ser.get("usb_ids", _usb_ids, required=False) or (),
        )
    ser.finish()

    if emulated:
        fields["qemu"] = _load_qemu(_Section(path, top.get("qemu", _table), "qemu."), fields, baud)
    else:
        top.forbid(("qemu",), "only emulated boards have a QEMU machine")
        fields["qemu"] = None
    if fields["core"].startswith("xtensa") != fields["fpu"].startswith("xtensa"):
        raise ConfigError(f"{top.where('fpu')} is {fields['fpu']!r}, which does not fit core {fields['core']!r}")
    top.finish()
    return Board(**fields)


def _load_qemu(sec: _Section, fields: dict[str, Any], baud: int) -> QemuMachine:
    q = QemuMachine(
        machine=sec.get("machine", _text),
        cpu=sec.get("cpu", _text),
        flash_origin=sec.get("flash_origin", _address),
        flash_size=sec.get("flash_size", _count),
        ram_origin=sec.get("ram_origin", _address),
        ram_size=sec.get("ram_size", _count),
        uart_base=sec.get("uart_base", _address),
        uart_clock_hz=sec.get("uart_clock_hz", _count),
        fpgaio_base=sec.get("fpgaio_base", _address),
        fpgaio_clock_hz=sec.get("fpgaio_clock_hz", _count),
    )
    sec.finish()
    for limit, size in (("flash_bytes", "flash_size"), ("ram_bytes", "ram_size")):
        if fields[limit] > getattr(q, size):
            raise ConfigError(f"{sec.path}: key `{limit}` ({fields[limit]}) is larger than the machine's "
                              f"`qemu.{size}` ({getattr(q, size)})")
    if q.uart_clock_hz // baud < 16:
        raise ConfigError(f"{sec.where('uart_clock_hz')}: the CMSDK UART needs uart_clock_hz / serial.baud >= 16")
    # The HAL's exact instruction count needs a whole number of nanoseconds per tick (>= 16).
    if 10**9 % q.fpgaio_clock_hz or 10**9 // q.fpgaio_clock_hz < 16:
        raise ConfigError(f"{sec.where('fpgaio_clock_hz')} is {q.fpgaio_clock_hz}; its period must be a whole "
                          "number of nanoseconds, at least 16 (e.g. 25000000 or 20000000)")
    return q


# ---------------------------------------------------------------------------------------------
# The catalogue.


@lru_cache(maxsize=4)
def _load_all(directory: Path) -> dict[str, Board]:
    paths = sorted(directory.glob("*.toml"))
    if not paths:
        raise ConfigError(f"no board profiles (*.toml) in {directory}")
    boards = {b.name: b for b in map(load_board, paths)}
    for board in boards.values():
        other = board.emulated_equivalent
        if other is not None and (other not in boards or not boards[other].emulated):
            raise ConfigError(f"{board.path}: key `emulated_equivalent` is {other!r}, which is not an emulated "
                              f"board (emulated: {', '.join(n for n, b in boards.items() if b.emulated)})")
    return boards


def list_boards(directory: str | Path | None = None) -> list[Board]:
    """Every profile in ``directory`` (default: the shipped boards/), emulated first, by name."""
    boards = _load_all(Path(directory) if directory else BOARDS_DIR)
    return sorted(boards.values(), key=lambda b: (b.kind != "emulated", b.name))


def get_board(name: str, directory: str | Path | None = None) -> Board:
    """The profile called ``name``; a ConfigError with the closest names when there is none."""
    boards = _load_all(Path(directory) if directory else BOARDS_DIR)
    if name in boards:
        return boards[name]
    close = difflib.get_close_matches(name, list(boards), n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise ConfigError(f"unknown board {name!r}; {hint}known boards: {', '.join(sorted(boards))} "
                      "(`mcuquant boards` lists them)")
