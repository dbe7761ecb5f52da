"""`mcuquant demo`: the whole chain, offline, on sklearn's digits.

    builtin:digits -> zoo CNN (float training) -> QAT fine-tuning -> PTQ and QAT int8 conversions
        -> host ladder (keras, LiteRT, LiteRT reference, tflm-host, builtin-host)
        -> firmware for qemu-nano33 (builtin runtime) -> QEMU -> ptq/device and qat/device rungs
        -> findings (mcuquant explain) -> report.json, report.html, report.md

Everything lands in one work folder (reports, the models, the firmware projects and ELFs).
"""

from __future__ import annotations

from pathlib import Path

DEMO_DATA = "builtin:digits"
DEMO_MODEL = "zoo:cnn"
DEMO_BOARD = "qemu-nano33"
DEFAULT_OUT = Path("mcuquant-out/demo")


def run_demo(out_dir: str | Path = DEFAULT_OUT, *, board: str = DEMO_BOARD, progress: bool = True) -> dict:
    """`mcuquant explain` on the digits CNN: the ladder, both int8 models on ``board``, the findings."""
    from mcuquant.config import build_config
    from mcuquant.explain import run_explain

    cfg = build_config({}, {"data.source": DEMO_DATA, "model.source": DEMO_MODEL, "target.board": board},
                       flag_names={"target.board": "--board"})
    return run_explain(cfg, out_dir, board=board, progress=progress)
