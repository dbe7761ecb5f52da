"""The TensorFlow Lite Micro that the tflm backend builds with, pinned, and what it can run.

A model the board's TFLM would refuse at start-up is caught on the host instead: the export checks
it against these facts (mcuquant.export.check_model), and mcuquant's own conversions for the tflm
backend keep dense layers per tensor when that TFLM has no per-channel FULLY_CONNECTED.

Physical boards take the Arduino library from git at a fixed commit (PlatformIO's ``URL#commit``),
so two builds a year apart compile the same sources. Its facts below were read from its sources at
that commit: library.properties says version 2.4.0-ALPHA (TFLM synced in February 2023);
kernels/fully_connected_common.cpp has no per-channel path (TFLM gained one on 2024-09-27,
tflite-micro 47b5450, "Add per channel quantization support for fully connnected"). A local tree
(MCUQUANT_TFLM_DIR, or custom_tflm_dir for the emulated boards) is inspected instead.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from mcuquant.errors import ConfigError

ARDUINO_LIBRARY_URL = "https://github.com/tensorflow/tflite-micro-arduino-examples.git"
#: Its last commit (2023-12-22; the repository has had no TFLM sync since 2023-02-27).
ARDUINO_LIBRARY_COMMIT = "7948b85e020470a30a83bf00e10fc43b486bfcba"
#: Libraries the Arduino library declares (`depends=ArduinoBLE,Arduino_LSM9DS1`) that the firmware never
#: uses, and ArduinoBLE's own dependency, which does not compile for the Nano 33 BLE: kept out of builds.
UNUSED_DEPENDENCIES = ("ArduinoBLE", "Arduino_LSM9DS1", "Arduino_SpiNINA")
#: A file every TFLM Arduino library folder has (relative to the folder).
MARKER = "src/tensorflow/lite/micro/micro_interpreter.h"
#: What TFLM's FULLY_CONNECTED preparation says when it accepts per-channel weights (since 47b5450).
_PER_CHANNEL_FC = re.compile(r"\bis_per_channel\b")


@dataclass(frozen=True)
class TflmLibrary:
    source: str  # the pinned git URL#commit, or the local folder
    version: str  # library.properties' version
    per_channel_fully_connected: bool  # runs FULLY_CONNECTED with per-channel weight scales

    def describe(self) -> str:
        return f"TFLM {self.version} ({self.source})"


PINNED = TflmLibrary(f"{ARDUINO_LIBRARY_URL}#{ARDUINO_LIBRARY_COMMIT}", "2.4.0-ALPHA", per_channel_fully_connected=False)


def library_in(folder: str | Path) -> TflmLibrary:
    """The facts of the TFLM Arduino library folder ``folder``, read from its sources."""
    root = Path(folder).expanduser()
    if not (root / MARKER).is_file():
        raise ConfigError(f"{root} is not a TensorFlow Lite Micro Arduino library folder (no {MARKER}); point "
                          f"MCUQUANT_TFLM_DIR at a checkout of {ARDUINO_LIBRARY_URL} or a tree made from tflite-micro")
    version = "unknown"
    props = root / "library.properties"
    if props.is_file():
        m = re.search(r"^version=(.+)$", props.read_text(errors="replace"), re.MULTILINE)
        version = m.group(1).strip() if m else version
    kernels = root / "src" / "tensorflow" / "lite" / "micro" / "kernels"
    common = [kernels / f"fully_connected_common{ext}" for ext in (".cc", ".cpp")]
    per_channel = any(f.is_file() and _PER_CHANNEL_FC.search(f.read_text(errors="replace")) for f in common)
    return TflmLibrary(str(root), version, per_channel)


def tflm_library(tflm_dir: str | Path | None = None) -> TflmLibrary:
    """The TFLM the tflm backend builds with: ``tflm_dir`` or MCUQUANT_TFLM_DIR when set, else the pinned one."""
    folder = tflm_dir or os.environ.get("MCUQUANT_TFLM_DIR") or None
    return library_in(folder) if folder else PINNED
