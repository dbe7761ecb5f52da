"""Generated PlatformIO projects: snapshots for the physical boards, what goes in, what is refused.

Snapshots live in tests/snapshots/project_<board>/ (platformio.ini, include/mq_board.h and the
list of generated files). After an intended change, regenerate them with
``MCUQUANT_UPDATE_SNAPSHOTS=1 pytest tests/test_project.py`` and review the diff.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from mcuquant.boards import get_board, list_boards
from mcuquant.build import pio
from mcuquant.build.pio import BuildError, build_project
from mcuquant.build.project import MANIFEST, firmware_root, generate_project
from mcuquant.build.tflm_library import ARDUINO_LIBRARY_URL, MARKER as TFLM_MARKER, PINNED
from mcuquant.errors import ConfigError

SNAPSHOTS = Path(__file__).parent / "snapshots"
PHYSICAL = [b.name for b in list_boards() if not b.emulated]


@pytest.fixture(scope="module")
def kws(shared_models) -> bytes:
    return (shared_models / "kws_ref_model.tflite").read_bytes()


@pytest.fixture(autouse=True)
def _no_tflm_dir(monkeypatch):
    """Projects here must not depend on the caller's MCUQUANT_TFLM_DIR or MCUQUANT_PIO_PACKAGES (a test
    that wants one sets it)."""
    monkeypatch.delenv("MCUQUANT_TFLM_DIR", raising=False)
    monkeypatch.delenv("MCUQUANT_PIO_PACKAGES", raising=False)


def _check_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("MCUQUANT_UPDATE_SNAPSHOTS"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"no snapshot {path}; create it with MCUQUANT_UPDATE_SNAPSHOTS=1"
    assert text == path.read_text(), f"{path} differs; if intended, MCUQUANT_UPDATE_SNAPSHOTS=1 and review the diff"


@pytest.mark.parametrize("board", PHYSICAL)
def test_physical_board_project_snapshot(board, kws, tmp_path):
    project = generate_project(board, tmp_path / board, tflite=kws, model_name="kws_ref_model.tflite")
    ini = (project.directory / "platformio.ini").read_text()
    _check_snapshot(f"project_{board}/platformio.ini", ini)
    _check_snapshot(f"project_{board}/mq_board.h", (project.directory / "include" / "mq_board.h").read_text())
    _check_snapshot(f"project_{board}/files.txt", "\n".join(project.files) + "\n")
    b = get_board(board)
    # Every dependency pinned: the platform to a release (and TFLM to a commit, below).
    assert b.platformio.platform_version and f"platform = {b.platformio.platform}@{b.platformio.platform_version}\n" \
        f"board = {b.platformio.board}\nframework = arduino\n" in ini
    # TFLM pinned to a commit, its unused BLE/IMU dependencies kept out of the build.
    assert f"lib_deps =\n    {PINNED.source}\n" in ini and "#" in PINNED.source and project.backend == "tflm"
    assert "lib_ignore =\n    ArduinoBLE\n    Arduino_LSM9DS1\n    Arduino_SpiNINA\n" in ini
    # Every file the project lists exists, and the firmware copies are byte-identical.
    fw = firmware_root()
    for rel in project.files:
        path = project.directory / rel
        assert path.is_file(), rel
        if rel.startswith("src/") and (fw / rel[4:]).is_file():
            assert path.read_bytes() == (fw / rel[4:]).read_bytes(), rel
    assert "src/hal/arduino/hal_arduino.cpp" in project.files
    assert not any(f.startswith(("src/runtime/", "src/hal/mps2/")) or "backend_builtin" in f for f in project.files)


def test_emulated_project_has_the_builtin_runtime_and_a_sized_linker_script(kws, tmp_path):
    project = generate_project("qemu-nano33", tmp_path / "p", tflite=kws, model_name="kws_ref_model.tflite")
    files = set(project.files)
    runtime = {f"src/{p.relative_to(firmware_root()).as_posix()}" for p in (firmware_root() / "runtime").rglob("*.[ch]")}
    assert runtime and runtime <= files
    assert {"src/hal/mps2/hal_mps2.c", "src/hal/mps2/startup_mps2.c", "src/app/backend_builtin.c",
            "src/model/model_data.c", "src/model/model_config.h", "mcuquant.ld", "include/mq_board.h"} <= files
    assert not any("arduino" in f for f in files)
    ld = (project.directory / "mcuquant.ld").read_text()
    assert "FLASH (rx)  : ORIGIN = 0x00000000, LENGTH = 983040" in ld
    assert "RAM   (rwx) : ORIGIN = 0x20000000, LENGTH = 262144" in ld
    ini = (project.directory / "platformio.ini").read_text()
    assert f"platform = symlink://{(firmware_root() / 'platform').resolve().as_posix()}" in ini
    assert "custom_cpu_flags = -mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard" in ini
    assert "lib_deps" not in ini
    header = (project.directory / "include" / "mq_board.h").read_text()
    assert "#define MQ_MPS2_UART_BASE 0x40004000u" in header and "#define MQ_COUNTER_QEMU_ICOUNT 1" in header
    assert project.model_sha256 and project.arena_bytes and project.elf.name == "firmware.elf"


def test_regenerating_replaces_sources_and_keeps_the_build_cache(kws, tmp_path):
    out = tmp_path / "p"
    generate_project("qemu-m3", out, tflite=kws)
    (out / "src" / "stale.c").write_text("int stale;\n")
    (out / ".pio").mkdir()
    (out / ".pio" / "cache").write_text("kept")
    generate_project("qemu-m3", out, tflite=kws)
    assert not (out / "src" / "stale.c").exists()
    assert (out / ".pio" / "cache").read_text() == "kept"
    assert (out / MANIFEST).is_file()


def test_refuses_to_overwrite_a_foreign_folder_and_bad_options(kws, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    with pytest.raises(ConfigError, match=r"not empty and was not generated by mcuquant"):
        generate_project("qemu-nano33", tmp_path / "mine", tflite=kws)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "precious"
    with pytest.raises(ConfigError, match=r"unknown backend 'cmsis'"):
        generate_project("qemu-nano33", tmp_path / "a", tflite=kws, backend="cmsis")
    with pytest.raises(ConfigError, match=r"tflm backend needs TensorFlow Lite Micro's sources.*MCUQUANT_TFLM_DIR"):
        generate_project("qemu-nano33", tmp_path / "b", tflite=kws, backend="tflm", tflm_dir=None)


def test_tflm_dir_replaces_the_git_url(kws, tmp_path, monkeypatch):
    lib = tmp_path / "Arduino_TensorFlowLite"
    (lib / TFLM_MARKER).parent.mkdir(parents=True)  # what makes a folder a TFLM Arduino library
    (lib / TFLM_MARKER).write_text("")
    monkeypatch.setenv("MCUQUANT_TFLM_DIR", str(lib))
    project = generate_project("nano33", tmp_path / "p", tflite=kws)
    ini = (project.directory / "platformio.ini").read_text()
    assert f"lib_deps =\n    symlink://{lib.resolve().as_posix()}\n" in ini and ARDUINO_LIBRARY_URL not in ini


def test_physical_build_without_registry_fails_in_one_line(kws, tmp_path, monkeypatch):
    # Here the registry is unreachable anyway; the patch makes the test mean the same elsewhere.
    monkeypatch.setattr(pio, "registry_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(pio, "platform_installed", lambda name: False)
    project = generate_project("nano33", tmp_path / "p", tflite=kws)
    with pytest.raises(BuildError) as err:
        build_project(project, progress=False)
    message = str(err.value)
    assert "\n" not in message
    assert "cannot build for nano33" in message and "'nordicnrf52'" in message
    assert message.endswith("--board qemu-nano33")


def test_registry_probe_answers_quickly():
    import time

    start = time.monotonic()
    assert isinstance(pio.registry_reachable(timeout=3.0), bool)
    assert time.monotonic() - start < 10


ARDUINO_STUB = textwrap.dedent(
    """\
    /* Just enough of the Arduino API for a syntax check of hal_arduino.cpp on the host. */
    #include <stddef.h>
    #include <stdint.h>
    struct HardwareSerial {
        void begin(unsigned long baud);
        int read();
        size_t write(const uint8_t *data, size_t len);
    };
    extern HardwareSerial Serial;
    unsigned long micros();
    unsigned long millis();
    """
)


@pytest.mark.parametrize("board", ["nano33", "pico"])  # DWT counter and micros()
def test_arduino_hal_compiles_against_the_arduino_api(board, kws, tmp_path):
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not found on PATH (apt-get install g++)")
    project = generate_project(board, tmp_path / "p", tflite=kws)
    (tmp_path / "stub").mkdir()
    (tmp_path / "stub" / "Arduino.h").write_text(ARDUINO_STUB)
    src = project.directory / "src"
    proc = subprocess.run(
        [gxx, "-std=gnu++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", f"-I{tmp_path / 'stub'}",
         f"-I{project.directory / 'include'}", f"-I{src / 'hal'}", str(src / "hal" / "arduino" / "hal_arduino.cpp")],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


def test_unsupported_model_leaves_the_previous_project_alone(kws, tmp_path):
    from mcuquant.errors import ModelError

    out = tmp_path / "p"
    generate_project("qemu-m7", out, tflite=kws)
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    with pytest.raises(ModelError):
        generate_project("qemu-m7", out, tflite=b"not a model at all")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before


def test_tflm_compatibility_is_decided_on_the_host_at_build_time(trained_digits_cnn, digits_cnn, tmp_path, capsys):
    """The digits CNN as mcuquant converts it by default has per-channel dense weights; the pinned TFLM has
    per-tensor FULLY_CONNECTED only. `build --backend tflm` refuses it before writing anything, naming the
    fix; converted with dense layers per tensor (what `validate` does for this backend) it is accepted."""
    from mcuquant.cli import main
    from mcuquant.errors import UnsupportedOpError
    from mcuquant.export import check_model
    from mcuquant.graph import Graph
    from mcuquant.quantize import convert_ptq

    assert not PINNED.per_channel_fully_connected  # the facts this test checks against
    model, _, representative = trained_digits_cnn
    default = digits_cnn.read_bytes()
    graph = Graph.from_tflite(default)
    assert any(op.name == "FULLY_CONNECTED" and graph.tensors[op.inputs[1]].per_channel for op in graph.operators)
    with pytest.raises(UnsupportedOpError) as refused:
        generate_project("nano33", tmp_path / "refused", tflite=default, backend="tflm")
    message = str(refused.value)
    assert "FULLY_CONNECTED" in message and "per channel" in message and "2.4.0-ALPHA" in message
    assert "dense layers per tensor" in message and "--backend builtin" in message
    assert not (tmp_path / "refused").exists()  # refused before the folder is touched
    # The CLI says it in one line, exit 2.
    assert main(["build", "--board", "nano33", "--backend", "tflm", "--model", str(digits_cnn), "--no-upload",
                 "--out", str(tmp_path / "cli"), "--quiet"]) == 2
    assert "per channel" in capsys.readouterr().err
    # Dense layers per tensor, convolutions still per channel: the pinned TFLM runs it.
    fitted = convert_ptq(model, representative, dense_per_channel=False).tflite
    g = Graph.from_tflite(fitted)
    fcs = [op for op in g.operators if op.name == "FULLY_CONNECTED"]
    assert fcs and not any(g.tensors[op.inputs[1]].per_channel for op in fcs)
    assert any(g.tensors[op.inputs[1]].per_channel for op in g.operators if op.name == "CONV_2D")
    assert check_model(fitted, "tflm", PINNED) == [] and check_model(default, "tflm", PINNED) != []
    project = generate_project("nano33", tmp_path / "fits", tflite=fitted, backend="tflm")
    assert PINNED.source in (project.directory / "platformio.ini").read_text()
    assert check_model(default, "builtin") == []  # the builtin runtime runs per-channel dense layers


def test_a_local_tflm_tree_is_inspected_for_what_it_runs(tmp_path):
    from mcuquant.build.tflm_library import library_in, tflm_library

    lib = tmp_path / "tflm"
    (lib / TFLM_MARKER).parent.mkdir(parents=True)
    (lib / TFLM_MARKER).write_text("")
    (lib / "library.properties").write_text("name=Arduino_TensorFlowLite\nversion=9.1.0\n")
    kernels = lib / "src/tensorflow/lite/micro/kernels"
    kernels.mkdir()
    (kernels / "fully_connected_common.cpp").write_text("TfLiteStatus CalculateOpDataFullyConnected() {}\n")
    old = library_in(lib)
    assert (old.version, old.per_channel_fully_connected, old.source) == ("9.1.0", False, str(lib))
    # TFLM since 47b5450 (2024-09-27) decides per tensor or per channel in its preparation.
    (kernels / "fully_connected_common.cpp").unlink()
    (kernels / "fully_connected_common.cc").write_text("  data->is_per_channel = is_per_channel;\n")
    assert library_in(lib).per_channel_fully_connected
    assert tflm_library(lib) == library_in(lib) and tflm_library() == PINNED
    with pytest.raises(ConfigError, match="not a TensorFlow Lite Micro Arduino library folder"):
        library_in(tmp_path)


def _package_folder(root: Path, platform: str, version: str, packages: dict[str, bool]) -> Path:
    """A package folder in the layout mcuquant.build.local_packages reads: ``packages`` maps the
    platform's package names to whether the folder holds them."""
    import json

    (root / "platforms" / platform).mkdir(parents=True)
    (root / "platforms" / platform / "platform.json").write_text(json.dumps(
        {"name": platform, "version": version, "packages": {name: {"type": "framework"} for name in packages}}))
    for name, held in packages.items():
        if held:
            (root / "packages" / name).mkdir(parents=True)
            (root / "packages" / name / "package.json").write_text(json.dumps({"name": name, "version": "1.0.0"}))
    (root / "packages" / "not-of-this-platform").mkdir(parents=True)
    (root / "packages" / "not-of-this-platform" / "package.json").write_text("{}")
    return root


def test_a_local_package_folder_replaces_the_registry(kws, tmp_path, monkeypatch):
    folder = _package_folder(tmp_path / "pkgs", "nordicnrf52", "10.11.0",
                             {"framework-arduino-mbed": True, "toolchain-gccarmnoneeabi": True, "tool-openocd": False})
    project = generate_project("nano33", tmp_path / "p", tflite=kws, backend="builtin", packages=folder)
    ini = (project.directory / "platformio.ini").read_text()
    root = folder.resolve().as_posix()
    assert (f"platform = symlink://{root}/platforms/nordicnrf52\nplatform_packages =\n"
            f"    framework-arduino-mbed @ symlink://{root}/packages/framework-arduino-mbed\n"
            f"    toolchain-gccarmnoneeabi @ symlink://{root}/packages/toolchain-gccarmnoneeabi\nboard = nano33ble\n") in ini
    assert "not-of-this-platform" not in ini and "tool-openocd" not in ini and "lib_deps" not in ini
    assert project.packages == folder.resolve()
    # The tflm backend takes the library from libraries/, named as its git repository, and inspects it.
    with pytest.raises(ConfigError, match="libraries/tflite-micro-arduino-examples is missing"):
        generate_project("nano33", tmp_path / "p", tflite=kws, backend="tflm", packages=folder)
    lib = folder / "libraries" / "tflite-micro-arduino-examples"
    (lib / TFLM_MARKER).parent.mkdir(parents=True)
    (lib / TFLM_MARKER).write_text("")
    monkeypatch.setenv("MCUQUANT_PIO_PACKAGES", str(folder))  # the variable does what the argument does
    project = generate_project("nano33", tmp_path / "p", tflite=kws, backend="tflm")
    ini = (project.directory / "platformio.ini").read_text()
    assert f"lib_deps =\n    symlink://{lib.resolve().as_posix()}\n" in ini and ARDUINO_LIBRARY_URL not in ini
    assert "lib_ignore =\n    ArduinoBLE\n" in ini
    # Emulated boards build with mcuquant's own dev-platform whatever the variable says.
    emulated = generate_project("qemu-nano33", tmp_path / "e", tflite=kws)
    assert emulated.packages is None and root not in (emulated.directory / "platformio.ini").read_text()


def test_a_local_package_folder_must_hold_the_pinned_platform(kws, tmp_path):
    folder = _package_folder(tmp_path / "pkgs", "nordicnrf52", "10.10.0", {"framework-arduino-mbed": True})
    with pytest.raises(ConfigError, match=r"nordicnrf52 10\.10\.0, but the board profile nano33 pins nordicnrf52 10\.11\.0"):
        generate_project("nano33", tmp_path / "p", tflite=kws, backend="builtin", packages=folder)
    with pytest.raises(ConfigError, match=r"no PlatformIO platform 'raspberrypi' for pico \(expected platforms/raspberrypi/"):
        generate_project("pico", tmp_path / "p", tflite=kws, backend="builtin", packages=folder)
    with pytest.raises(ConfigError, match="is not a folder"):
        generate_project("nano33", tmp_path / "p", tflite=kws, backend="builtin", packages=tmp_path / "nowhere")
    assert not (tmp_path / "p").exists()
