"""Board profiles (boards/*.toml): what ships, validation on load, `mcuquant boards`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mcuquant.boards import BOARDS_DIR, get_board, list_boards, load_board
from mcuquant.cli import main
from mcuquant.errors import ConfigError

EMULATED = {"qemu-nano33", "qemu-m3", "qemu-m7", "qemu-m33", "qemu-m55"}
PHYSICAL = {"nano33", "esp32", "pico", "nucleo_f446re", "teensy41"}


def test_shipped_boards():
    boards = {b.name: b for b in list_boards()}
    assert set(boards) == EMULATED | PHYSICAL
    assert {n for n, b in boards.items() if b.emulated} == EMULATED
    for b in boards.values():
        assert b.path.parent == BOARDS_DIR
        if b.emulated:
            assert (b.counter, b.default_backend, b.hal, b.platformio.platform) == (
                "qemu-icount", "builtin", "mps2", "mcuquant-qemu")
            assert b.qemu is not None and b.flash_bytes <= b.qemu.flash_size and b.ram_bytes <= b.qemu.ram_size
        else:
            assert b.default_backend == "tflm" and b.platformio.framework == "arduino"
            assert boards[b.emulated_equivalent].emulated


def test_nano33_and_its_emulation_share_the_limits():
    nano, emu = get_board("nano33"), get_board("qemu-nano33")
    assert (nano.platformio.platform, nano.platformio.board, nano.platformio.upload_protocol) == (
        "nordicnrf52", "nano33ble", "sam-ba")
    assert (nano.core, nano.fpu, nano.serial.transport, nano.counter) == ("cortex-m4", "fpv4-sp-d16", "usb-cdc", "dwt")
    assert (0x2341, 0x805A) in nano.serial.usb_ids
    assert (emu.flash_bytes, emu.ram_bytes) == (nano.flash_bytes, nano.ram_bytes) == (983040, 262144)
    assert (emu.core, emu.fpu, emu.qemu.machine) == ("cortex-m4", "fpv4-sp-d16", "mps2-an386")
    assert nano.emulated_equivalent == "qemu-nano33"
    assert emu.cpu_flags() == ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"]
    assert get_board("qemu-m3").cpu_flags()[-1] == "-mfloat-abi=soft"


def test_unknown_board_suggests_close_names():
    with pytest.raises(ConfigError, match=r"unknown board 'qemu-nano3'; did you mean 'qemu-nano33'"):
        get_board("qemu-nano3")
    with pytest.raises(ConfigError, match=r"known boards: esp32, nano33, .*`mcuquant boards`"):
        get_board("arduino-uno")


# --- validation: every broken profile fails on load, naming the file and the key --------------


def _write(tmp_path: Path, source: str, edit) -> Path:
    text = (BOARDS_DIR / f"{source}.toml").read_text()
    new = edit(text)
    assert new != text, "the edit did not change the profile"
    path = tmp_path / f"{source}.toml"
    path.write_text(new)
    return path


@pytest.mark.parametrize(
    "source, edit, message",
    [
        ("qemu-nano33", lambda t: 'colour = "blue"\n' + t, r"key `colour` is unknown"),
        ("qemu-nano33", lambda t: t.replace("[qemu]", "[qemu]\nclock = 1"), r"key `qemu.clock` is unknown"),
        ("nano33", lambda t: t.replace('upload_protocol = "sam-ba"\n', ""), r"key `platformio.upload_protocol` is missing"),
        ("qemu-nano33", lambda t: t.replace("ram_bytes = 262144", "ram_bytes = -1"), r"key `ram_bytes` must be a positive integer"),
        ("qemu-nano33", lambda t: t.replace("ram_bytes = 262144", 'ram_bytes = "256K"'), r"key `ram_bytes` must be a positive integer"),
        ("qemu-nano33", lambda t: t.replace("dsp = true", 'dsp = "yes"'), r"key `dsp` must be true or false"),
        ("qemu-nano33", lambda t: t.replace('kind = "emulated"', 'kind = "virtual"'), r"key `kind` is 'virtual'; expected one of: emulated, physical"),
        ("qemu-nano33", lambda t: t.replace('fpu = "fpv4-sp-d16"', 'fpu = "vfp"'), r"key `fpu` is 'vfp'"),
        ("qemu-nano33", lambda t: t.replace('name = "qemu-nano33"', 'name = "qemu-nano34"'), r"key `name` is 'qemu-nano34' but the file is qemu-nano33.toml"),
        ("qemu-nano33", lambda t: t.replace('default_backend = "builtin"', 'default_backend = "tflm"'), r"key `default_backend` must be 'builtin' for an emulated board"),
        ("qemu-nano33", lambda t: t.replace("ram_bytes = 262144", "ram_bytes = 8388608"), r"key `ram_bytes` \(8388608\) is larger than the machine's `qemu.ram_size`"),
        ("qemu-nano33", lambda t: t.replace("fpgaio_clock_hz = 25000000", "fpgaio_clock_hz = 32000000"), r"key `qemu.fpgaio_clock_hz` is 32000000; its period must be a whole"),
        ("qemu-nano33", lambda t: t.replace("uart_base = 0x40004000", "uart_base = 0x100000000"), r"key `qemu.uart_base` must be a 32-bit address"),
        ("qemu-nano33", lambda t: t[: t.index("[qemu]")], r"key `qemu` is missing"),
        ("qemu-nano33", lambda t: t.replace("[serial]", '[serial]\nusb_ids = ["2341:805a"]'), r"key `serial.usb_ids` is not allowed"),
        ("nano33", lambda t: t.replace('"2341:805a"', '"2341-805a"'), r"key `serial.usb_ids` must be a list of \"vid:pid\""),
        ("nano33", lambda t: t.replace('counter = "dwt"', 'counter = "qemu-icount"'), r"key `counter` describes an emulator"),
        ("nano33", lambda t: t + '[qemu]\nmachine = "mps2-an386"\n', r"key `qemu` is not allowed"),
        ("nano33", lambda t: t.replace("[serial]", "[serial"), r"nano33.toml: not valid TOML"),
        ("nano33", lambda t: t.replace('platform_version = "10.11.0"', 'platform_version = "~10.11.0"'),
         r"key `platformio.platform_version` must be an exact release"),
        ("nano33", lambda t: t.replace('platform_version = "10.11.0"', ""), r"key `platformio.platform_version` is missing"),
        ("nano33", lambda t: t.replace("cpu_clock_hz = 64_000_000", ""), r"key `cpu_clock_hz` is missing"),
        ("qemu-nano33", lambda t: 'cpu_clock_hz = 1\n' + t, r"key `cpu_clock_hz` is not allowed"),
    ],
)
def test_broken_profiles_name_file_and_key(tmp_path, source, edit, message):
    path = _write(tmp_path, source, edit)
    with pytest.raises(ConfigError, match=message) as err:
        load_board(path)
    assert str(path) in str(err.value)


def test_emulated_equivalent_must_be_an_emulated_board(tmp_path):
    for path in BOARDS_DIR.glob("*.toml"):
        shutil.copy(path, tmp_path)
    _write(tmp_path, "pico", lambda t: t.replace('emulated_equivalent = "qemu-m3"', 'emulated_equivalent = "nano33"'))
    with pytest.raises(ConfigError, match=r"pico.toml: key `emulated_equivalent` is 'nano33', which is not an emulated"):
        list_boards(tmp_path)
    assert get_board("pico").emulated_equivalent == "qemu-m3"  # the shipped catalogue is untouched


# --- the command ----------------------------------------------------------------------------


def test_cli_boards_lists_every_board_with_limits(capsys):
    assert main(["boards"]) == 0
    out = capsys.readouterr().out
    for name in EMULATED | PHYSICAL:
        assert name in out
    assert re.search(r"qemu-nano33 .* 960 KiB .* 256 KiB .* QEMU mps2-an386", out)
    assert re.search(r"nano33 .* 960 KiB .* 256 KiB .* nordicnrf52:nano33ble", out)
    assert main(["boards", "--json"]) == 0
    boards = {b["name"]: b for b in json.loads(capsys.readouterr().out)}
    assert boards["qemu-m55"]["qemu_machine"] == "mps3-an547" and boards["qemu-m55"]["ram_bytes"] == 524288


def test_cli_boards_is_instant_and_imports_no_tensorflow():
    code = ("import sys, time; t = time.monotonic(); from mcuquant.cli import main; rc = main(['boards']); "
            "assert rc == 0; assert 'tensorflow' not in sys.modules and 'numpy' not in sys.modules, "
            "sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'numpy')); "
            "print('seconds', time.monotonic() - t)")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "qemu-nano33" in proc.stdout
    assert time.monotonic() - start < 5.0
