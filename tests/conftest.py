"""Shared fixtures: the real reference models in ../shared/models, a small trained digits model,
and the emulator side: the QEMU/cross-compiler requirement and a private PlatformIO core folder."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true",
                     help="also run tests marked slow (the long acceptance campaigns); "
                          "MCUQUANT_RUN_SLOW=1 does the same")


def pytest_collection_modifyitems(config, items):
    """Slow tests (500-model and 100k-mutation campaigns, ...) run only on request, or when
    selected explicitly with -m slow."""
    if config.getoption("--runslow") or os.environ.get("MCUQUANT_RUN_SLOW") == "1" or "slow" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="slow campaign: run with --runslow (make test-all)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


SHARED_MODELS = Path(os.environ.get("MCUQUANT_SHARED_MODELS", Path(__file__).resolve().parents[2] / "shared" / "models"))


@pytest.fixture(scope="session")
def shared_models() -> Path:
    """MLPerf Tiny reference models; CI must have them, elsewhere a missing folder skips."""
    if not (SHARED_MODELS / "kws_ref_model.tflite").exists():
        if os.environ.get("CI"):
            pytest.fail(f"reference models missing at {SHARED_MODELS} (set MCUQUANT_SHARED_MODELS)")
        pytest.skip(f"reference models not found at {SHARED_MODELS}; set MCUQUANT_SHARED_MODELS")
    return SHARED_MODELS


@pytest.fixture(scope="session")
def digits():
    from mcuquant.data import load_dataset

    return load_dataset("builtin:digits")


@pytest.fixture(scope="session")
def trained_digits_cnn(digits):
    """A zoo CNN trained briefly on digits, its QAT version, and a representative set."""
    from mcuquant.config import TrainingConfig
    from mcuquant.models import build_zoo_model
    from mcuquant.quantize import representative_samples
    from mcuquant.train import quantization_aware, set_seeds, train_float

    cfg = TrainingConfig(qat_epochs=1)
    set_seeds(0)
    model = build_zoo_model("cnn", digits.input_shape, digits.num_classes)
    train_float(model, digits, cfg, epochs=3, progress=False)
    qat_model, _ = quantization_aware(model, digits, cfg, progress=False)
    return model, qat_model, representative_samples(digits.x_train, 100, seed=0)


@pytest.fixture(scope="session")
def digits_cnn(trained_digits_cnn, tmp_path_factory) -> Path:
    """The zoo CNN trained briefly on digits, PTQ int8 (the fixture above), as a .tflite file."""
    from mcuquant.quantize import convert_ptq

    model, _, representative = trained_digits_cnn
    path = tmp_path_factory.mktemp("cnn") / "digits_cnn.tflite"
    path.write_bytes(convert_ptq(model, representative).tflite)
    return path


def random_int8_inputs(shape, n, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-128, 128, size=(n, *shape), dtype=np.int8)


# ---------------------------------------------------------------------------------------------
# Emulated boards


def _require(tool: str, install: str) -> None:
    if shutil.which(tool) is None:
        message = f"{tool} not found on PATH; install it ({install}, or `make setup`)"
        if os.environ.get("MCUQUANT_REQUIRE_QEMU"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def qemu_tools() -> None:
    _require("qemu-system-arm", "apt-get install qemu-system-arm")
    _require("arm-none-eabi-gcc", "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi")


@pytest.fixture(scope="module")
def pio_core(qemu_tools, tmp_path_factory):
    """A private PlatformIO core folder (tool-scons linked from the default one when it has it),
    so the tests never touch ~/.platformio's platforms."""
    from mcuquant.build.pio_bootstrap import TOOL_SCONS_NAME, default_core_dir

    existing = default_core_dir() / "packages" / TOOL_SCONS_NAME
    core = tmp_path_factory.mktemp("pio-core")
    if existing.is_dir():
        (core / "packages").mkdir()
        (core / "packages" / TOOL_SCONS_NAME).symlink_to(existing)
    with pytest.MonkeyPatch.context() as mp:
        for var in ("PLATFORMIO_PACKAGES_DIR", "PLATFORMIO_PLATFORMS_DIR"):
            mp.delenv(var, raising=False)
        mp.setenv("PLATFORMIO_CORE_DIR", str(core))
        yield core


def qemu_children() -> list[int]:
    """PIDs of QEMU processes this test process started and that are still alive (not zombies)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        if comm.startswith("qemu-system") and int(rest[1]) == os.getpid() and rest[0] != "Z":
            found.append(int(stat.parent.name))
    return found


# ---------------------------------------------------------------------------------------------
# Headless Chromium (the HTML report)

CHROMIUM = Path("/usr/bin/chromium")
# The machine's network is closed; these flags stop Chromium's own background connections.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def browser():
    """Chromium from Debian, driven by playwright; CI must have both, elsewhere their absence skips."""
    why = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        why = "playwright is not installed (pip install -e '.[test]')"
    if why is None and not CHROMIUM.exists():
        why = f"{CHROMIUM} not found (Debian package chromium; `make system-deps` installs it)"
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
