"""`mcuquant demo`: the whole chain, offline, on sklearn's digits.

    builtin:digits -> zoo CNN (float training) -> QAT fine-tuning -> PTQ and QAT int8 conversions
        -> host ladder (keras, LiteRT, LiteRT reference, tflm-host, builtin-host)
        -> firmware for qemu-nano33 (builtin runtime) -> QEMU -> ptq/device and qat/device rungs

Everything lands in one work folder (report.json, the models, the firmware projects and ELFs).
"""

from __future__ import annotations

from pathlib import Path

DEMO_DATA = "builtin:digits"
DEMO_MODEL = "zoo:cnn"
DEMO_BOARD = "qemu-nano33"
DEFAULT_OUT = Path("mcuquant-out/demo")


def run_demo(out_dir: str | Path = DEFAULT_OUT, *, board: str = DEMO_BOARD, progress: bool = True) -> dict:
    """Run `mcuquant compare` on the digits CNN, then validate both int8 models on ``board``."""
    from mcuquant.config import build_config
    from mcuquant.device.validate import validate
    from mcuquant.ladder import run_compare
    from mcuquant.progress import console

    cfg = build_config({}, {"data.source": DEMO_DATA, "model.source": DEMO_MODEL, "target.board": board})
    run_compare(cfg, out_dir, progress=progress)
    console.print(f"measuring the int8 models on {board}")
    return validate(board, out_dir, progress=progress)
