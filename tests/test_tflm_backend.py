"""The `tflm` backend: TensorFlow Lite Micro behind the firmware's backend interface.

TFLM's sources are on no registry this project can reach, so the tests that compile or run it need
a TFLM Arduino library folder in MCUQUANT_TFLM_DIR (a checkout of
https://github.com/tensorflow/tflite-micro-arduino-examples) and skip, saying so, without one.
What needs no TFLM tree runs always: the arena figure (measured by the real tflite-micro host
interpreter), project generation, and the consistency of the op lists.

The slow end-to-end test builds a qemu-nano33 firmware through mcuquant's dev-platform (the first
build compiles ~120 TFLM and CMSIS-NN sources: minutes on two cores; PlatformIO's build cache
under .pytest_cache keeps later runs short) and checks, over the serial link, byte-identical
outputs with tflm-host and the arena TFLM really used against the export's figure.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mcuquant.build.project import firmware_root, generate_project
from mcuquant.build.tflm_library import MARKER as TFLM_MARKER
from mcuquant.errors import ConfigError
from mcuquant.export import SUPPORTED_OPS, TFLM_ARENA_MARGIN_BYTES, export_model, parse_model, tflm_arena

TFLM_DIR = os.environ.get("MCUQUANT_TFLM_DIR")
needs_tflm = pytest.mark.skipif(
    not TFLM_DIR,
    reason="MCUQUANT_TFLM_DIR is not set: point it at a TensorFlow Lite Micro Arduino library folder "
           "(a checkout of https://github.com/tensorflow/tflite-micro-arduino-examples)",
)  # fmt: skip
BACKEND = firmware_root() / "app" / "backend_tflm.cpp"
BUILDER = firmware_root() / "platform" / "builder" / "main.py"
# How the firmware compiles TFLM code (the dev-platform's flags; see builder/main.py _build_tflm).
TFLM_DEFINES = ["-DARDUINO", "-DTF_LITE_STATIC_MEMORY", "-DTF_LITE_STRIP_ERROR_STRINGS"]
CXX_FLAGS = ["-std=gnu++17", "-fno-exceptions", "-fno-rtti", "-Os", "-Wall", "-Wextra", "-Werror", "-pedantic",
             "-Wshadow", "-Wconversion", "-Wsign-conversion"]
CORES = {
    "cortex-m0plus": ["-mcpu=cortex-m0plus", "-mthumb"],
    "cortex-m4f": ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"],
    "cortex-m7": ["-mcpu=cortex-m7", "-mthumb", "-mfpu=fpv5-d16", "-mfloat-abi=hard"],
}


@pytest.fixture(scope="module")
def kws(shared_models) -> bytes:
    return (shared_models / "kws_ref_model.tflite").read_bytes()


def _tflm_src() -> Path:
    src = Path(TFLM_DIR or "") / "src"
    if not (Path(TFLM_DIR or "") / TFLM_MARKER).is_file():
        pytest.fail(f"MCUQUANT_TFLM_DIR={TFLM_DIR} is not a TFLM Arduino library (no {TFLM_MARKER})")
    return src


# --- the arena figure -------------------------------------------------------------------------


def _tflm_allocates(model: bytes, arena: int) -> bool:
    """Whether the tflite-micro host interpreter prepares ``model`` in ``arena`` bytes (child
    process: TFLM may abort)."""
    code = ("import sys\nfrom tflite_micro.python.tflite_micro import runtime\n"
            "runtime.Interpreter.from_bytes(sys.stdin.buffer.read(), arena_size=int(sys.argv[1]))\n")
    return subprocess.run([sys.executable, "-c", code, str(arena)], input=model, capture_output=True,
                          timeout=120).returncode == 0


def test_tflm_arena_is_tflms_own_need_plus_scratch_and_margin(kws, tmp_path):
    info, _, _ = parse_model(kws)
    arena = tflm_arena(kws, info)
    # The host figure is TFLM's real need: it allocates in exactly that much, not in 1 KiB less.
    assert _tflm_allocates(kws, arena.host_bytes) and not _tflm_allocates(kws, arena.host_bytes - 1024)
    # kws's largest CMSIS-NN scratch: its 3x3 depthwise convolutions over 64 channels, bounded by
    # the MVE path's 4 * 124 bytes per kernel tap.
    assert arena.scratch_bytes == 4 * 124 * 3 * 3
    assert arena.margin_bytes == TFLM_ARENA_MARGIN_BYTES
    assert arena.bytes % 16 == 0 and 0 <= arena.bytes - (arena.host_bytes + arena.scratch_bytes + arena.margin_bytes) < 16
    result = export_model(kws, tmp_path, name="kws", backend="tflm")
    assert result.arena_bytes == arena.bytes and not result.arena_exact
    config = (tmp_path / "model_config.h").read_text()
    assert f"#define MCUQUANT_ARENA_BYTES {arena.bytes}u" in config
    assert f"on the host ({arena.host_bytes} bytes" in config


# --- project generation -----------------------------------------------------------------------


def _fake_library(root: Path) -> Path:
    (root / TFLM_MARKER).parent.mkdir(parents=True)
    (root / TFLM_MARKER).write_text("/* marker only */\n")
    return root


def test_emulated_tflm_project_hands_the_library_to_the_dev_platform(kws, tmp_path):
    lib = _fake_library(tmp_path / "Arduino_TensorFlowLite")
    project = generate_project("qemu-nano33", tmp_path / "p", tflite=kws, backend="tflm", tflm_dir=lib)
    ini = (project.directory / "platformio.ini").read_text()
    assert f"custom_tflm_dir = {lib.resolve().as_posix()}\n" in ini and "lib_deps" not in ini
    assert "src/app/backend_tflm.cpp" in project.files and "src/app/backend_builtin.c" not in project.files
    assert not any(f.startswith("src/runtime/") for f in project.files)
    # Physical boards get the library through lib_deps, and TFLM's defines as build flags.
    physical = generate_project("nano33", tmp_path / "n", tflite=kws, tflm_dir=lib)
    ini = (physical.directory / "platformio.ini").read_text()
    assert f"lib_deps =\n    symlink://{lib.resolve().as_posix()}\n" in ini and "custom_tflm_dir" not in ini
    assert "    -DTF_LITE_STATIC_MEMORY\n    -DTF_LITE_STRIP_ERROR_STRINGS\n" in ini


def test_a_folder_that_is_no_tflm_library_is_refused(kws, tmp_path):
    (tmp_path / "empty").mkdir()
    for board in ("qemu-nano33", "nano33"):
        with pytest.raises(ConfigError, match=r"is not a TensorFlow Lite Micro Arduino library \(no src/tensorflow"):
            generate_project(board, tmp_path / board, tflite=kws, backend="tflm", tflm_dir=tmp_path / "empty")


def test_backend_registers_every_op_the_export_allows():
    """backend_tflm.cpp has a resolver call for every op the export lets through for tflm, and the
    dev-platform compiles a kernel for each."""
    registered = set(re.findall(r"^#define MQ_TFLM_ADD_(\w+) ", BACKEND.read_text(), re.MULTILINE))
    assert registered == set(SUPPORTED_OPS["tflm"])
    kernels = re.search(r"TFLM_KERNELS = \((.*?)\)", BUILDER.read_text(), re.DOTALL)
    assert kernels is not None
    stems = set(re.findall(r'"(\w+)"', kernels.group(1)))
    calls = re.findall(r"^#define MQ_TFLM_ADD_\w+ Add(\w+)\(", BACKEND.read_text(), re.MULTILINE)
    # Resolver method -> kernel file stem, where the names differ.
    stem_of = {"Relu": "activations", "Relu6": "activations", "AveragePool2D": "pooling", "MaxPool2D": "pooling",
               "Conv2D": "conv", "DepthwiseConv2D": "depthwise_conv", "FullyConnected": "fully_connected",
               "HardSwish": "hard_swish", "Mean": "reduce"}
    missing = {c for c in calls if stem_of.get(c, c.lower()) not in stems}
    assert not missing, f"no kernel sources in builder/main.py TFLM_KERNELS for {sorted(missing)}"


# --- compiling against a real TFLM tree -------------------------------------------------------


ALL_OPS = sorted(SUPPORTED_OPS["tflm"])


@pytest.fixture(scope="module")
def all_ops_config(kws, tmp_path_factory) -> Path:
    """kws exported for tflm, its model_config.h widened to every op the backend can register.

    The model is named like a namespace TFLM's headers open (`flatbuffers`): the backend must
    build anyway, since it reaches the model through model_data.c's fixed-name accessors."""
    out = tmp_path_factory.mktemp("all-ops")
    export_model(kws, out, name="flatbuffers.tflite", backend="tflm")
    config = out / "model_config.h"
    text = config.read_text()
    text = re.sub(r"#define MCUQUANT_FOR_EACH_OP\(X\) .*", "#define MCUQUANT_FOR_EACH_OP(X) " +
                  " ".join(f"X({op})" for op in ALL_OPS), text)
    text = re.sub(r"#define MCUQUANT_NUM_OPS_USED \d+", f"#define MCUQUANT_NUM_OPS_USED {len(ALL_OPS)}", text)
    config.write_text(text)
    return out


@needs_tflm
@pytest.mark.parametrize("core", sorted(CORES))
def test_backend_compiles_warning_free_against_tflm(core, all_ops_config, tmp_path):
    gxx = shutil.which("arm-none-eabi-g++")
    if gxx is None:
        pytest.skip("arm-none-eabi-g++ not found on PATH (apt-get install gcc-arm-none-eabi libstdc++-arm-none-eabi-newlib)")
    src = _tflm_src()
    support = firmware_root() / "platform" / "builder" / "tflm_support.cpp"
    for source in (BACKEND, support):
        proc = subprocess.run(
            [gxx, *CORES[core], *CXX_FLAGS, *TFLM_DEFINES, "-isystem", str(src), f"-I{all_ops_config}",
             f"-I{firmware_root() / 'app'}", "-c", str(source), "-o", str(tmp_path / (source.stem + ".o"))],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, f"{source.name} for {core}:\n{proc.stderr}"
        assert proc.stderr == "", proc.stderr


# --- the firmware on QEMU ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def pio_build_env(pio_core, tmp_path_factory, pytestconfig):
    """The private PlatformIO core (conftest's pio_core) with a build cache that outlives the
    session, so TFLM is compiled once per core and flags."""
    cache = getattr(pytestconfig, "cache", None)  # None with -p no:cacheprovider
    cache_dir = cache.mkdir("pio-build-cache") if cache is not None else tmp_path_factory.mktemp("pio-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLATFORMIO_BUILD_CACHE_DIR", str(cache_dir))
        yield pio_core


def _per_channel_fully_connected(kws: bytes) -> bytes:
    """kws with its FULLY_CONNECTED weights (operator 11) given 12 different per-channel scales, as
    TensorFlow 2.21's converter quantizes dense layers."""
    import flatbuffers
    from tflite_micro.python.tflite_micro import runtime

    fb = runtime.schema_fb
    model = fb.ModelT.InitFromPackedBuf(bytearray(kws), 0)
    graph = model.subgraphs[0]
    op = graph.operators[11]
    code = model.operatorCodes[op.opcodeIndex]
    assert max(code.builtinCode, code.deprecatedBuiltinCode) == fb.BuiltinOperator.FULLY_CONNECTED
    weights = graph.tensors[op.inputs[1]]
    channels, scale = int(weights.shape[0]), float(weights.quantization.scale[0])
    weights.quantization.scale = np.array([scale * (1 + 0.05 * c) for c in range(channels)], dtype=np.float32)
    weights.quantization.zeroPoint = np.zeros(channels, dtype=np.int64)
    weights.quantization.quantizedDimension = 0
    builder = flatbuffers.Builder(len(kws) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.mark.slow
@pytest.mark.qemu
@needs_tflm
@pytest.mark.parametrize("model", ["kws_ref_model.tflite", "pretrainedResnet_quant.tflite", "kws-per-channel-fc"])
def test_tflm_firmware_on_qemu_matches_tflm_host(model, pio_build_env, shared_models, tmp_path):
    """qemu-nano33 with TFLM (its CMSIS-NN kernels, the export's arena): byte-identical to tflm-host.

    A per-channel FULLY_CONNECTED is either refused at start-up (a TFLM older than September 2024,
    as the Arduino library is, would apply one channel's scale to all) or, with a newer TFLM, identical.
    """
    from mcuquant.build.pio import build_project
    from mcuquant.device.link import DeviceNotReadyError, Link
    from mcuquant.device.qemu import QemuEmulator
    from mcuquant.interpreters import Runner

    for tool in ("qemu-system-arm", "arm-none-eabi-g++"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found on PATH (make setup)")
    _tflm_src()
    if model == "kws-per-channel-fc":
        tflite = _per_channel_fully_connected((shared_models / "kws_ref_model.tflite").read_bytes())
    else:
        tflite = (shared_models / model).read_bytes()
    project = generate_project("qemu-nano33", tmp_path / "p", tflite=tflite, model_name=model, backend="tflm",
                               tflm_dir=TFLM_DIR)
    result = build_project(project, progress=False)
    oracle = Runner("tflm-host", tflite)
    inputs = np.random.default_rng(0).integers(-128, 128, size=(5, *oracle.input.shape[1:]), dtype=np.int8)
    with QemuEmulator(project.board, result.elf) as emu:
        try:
            link = Link.open(emu.url, expected_sha256=hashlib.sha256(tflite).hexdigest(), timeout=30)
        except DeviceNotReadyError as exc:
            assert model == "kws-per-channel-fc" and exc.info is not None and exc.info.backend_status == 7, exc
            assert "operator 11 (FULLY_CONNECTED) has per-channel weight scales" in str(exc)
            return
        with link:
            info = link.info
            assert info.backend == "tflm" and info.arena_size == project.arena_bytes
            # TFLM's real need on the board stays within the export's figure.
            assert 0 < info.arena_used <= info.arena_size
            for k, x in enumerate(inputs):
                y, count = link.infer(x)
                expected = np.asarray(oracle.invoke(x)).reshape(-1)
                assert np.array_equal(np.asarray(y).reshape(-1), expected), f"sample {k}: {y} vs {expected}"
                assert count > 0
