"""Benchmark of the builtin runtime on emulated boards (a script, not a test; pytest does not collect it).

    .venv/bin/python tests/benchmarks/bench_device.py [--boards qemu-nano33,qemu-m3,qemu-m7,qemu-m55]
                                                      [--samples N] [--models NAME,...] [--json FILE]
                                                      [--profile]

For every zoo model (trained one epoch on digits and PTQ-converted, as the tests build them) and
every model in ../shared/models, on every board, it builds the firmware (builtin backend, real
PlatformIO), runs N test samples in QEMU (`-icount shift=0`: exact, repeatable instruction counts)
and prints:
- instructions per inference (median of N; the counter excludes the link),
- arena bytes the runtime uses (the device's own figure from the handshake),
- flash and RAM of the firmware image (PlatformIO's size report),
- the outputs' agreement with tflm-host (byte-identical samples of N),
and, for the models measured against TensorFlow Lite Micro in issue 13 (TFLM 90b983c2 on
Cortex-M4F with arm-none-eabi-gcc 12.2, the same QEMU), the ratios to TFLM's reference kernels,
to TFLM with CMSIS-NN and to TFLM's arena_used; on qemu-nano33 also the speed-up over the runtime when
issue 13 was filed (START). Above each board's table: the runtime's code bytes
for its core (mcuquant.builtin.cross) and their ratio to TFLM's reference-kernel build (TFLM_CODE_BYTES).

--profile builds the firmware with -DMQ_PROFILE_OPS (firmware/app/backend_builtin.c), which writes
every operator's instruction count of each inference to QEMU's stderr, and prints per model the
operators by their median count (the profile hook's own cost makes the totals a little larger).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

#: Issue 13's TFLM figures on qemu-nano33 (instructions per inference, arena_used bytes).
TFLM = {
    "kws_ref_model.tflite": {"reference": 43.04e6, "cmsis_nn": 7.70e6, "arena_used": 22_772},
    "pretrainedResnet_quant.tflite": {"reference": 107.40e6, "cmsis_nn": 29.86e6, "arena_used": 54_340},
}
#: Instructions per inference on qemu-nano33 when issue 13 was filed (this script at 3dc4dde, the same
#: models and inputs): the "3x fewer" goal is measured against these.
START = {"zoo:mlp": 168_555, "zoo:cnn": 3_148_334, "zoo:dscnn": 17_477_244, "zoo:resnet8": 6_046_246,
         "zoo:conv1d": 220_770, "zoo:lstm": 461_194, "zoo:autoencoder": 450_359,
         "kws_ref_model.tflite": 43_777_721, "pretrainedResnet_quant.tflite": 110_384_633}
#: Code bytes of TFLM's reference-kernel build (TFLM 90b983c2, the 34 operators this runtime has
#: registered, no CMSIS-NN) per core, measured outside the project the way mcuquant.builtin.cross
#: measures the runtime (-Os, minimal image, --gc-sections, text+data over an empty image; see README).
TFLM_CODE_BYTES = {"cortex-m0plus": 105_360, "cortex-m3": 94_516, "cortex-m4": 93_596, "cortex-m7": 90_312,
                   "cortex-m33": 92_952, "cortex-m55": 92_304}
BOARD_CORE = {"qemu-nano33": "cortex-m4", "qemu-m3": "cortex-m3", "qemu-m7": "cortex-m7", "qemu-m55": "cortex-m55",
              "qemu-m33": "cortex-m33"}


def models(selected: list[str]) -> dict[str, tuple[bytes, np.ndarray | None]]:
    from conftest import SHARED_MODELS
    from mcuquant.models import ZOO
    from modelgen import zoo_model

    out: dict[str, tuple[bytes, np.ndarray | None]] = {}
    for name in ZOO:
        if not selected or f"zoo:{name}" in selected:
            out[f"zoo:{name}"] = zoo_model(name)
    for path in sorted(SHARED_MODELS.glob("*.tflite")):
        if not selected or path.name in selected:
            out[path.name] = (path.read_bytes(), None)
    return out


def run_on_board(board_name: str, name: str, tflite: bytes, xq: np.ndarray | None, samples: int, work: Path,
                 profile: bool = False) -> dict:
    from mcuquant.boards import get_board
    from mcuquant.build.pio import build_project
    from mcuquant.build.project import generate_project
    from mcuquant.device.harness import measure
    from mcuquant.device.link import Link
    from mcuquant.device.qemu import QemuEmulator
    from mcuquant.interpreters import Runner

    board = get_board(board_name)
    oracle = Runner("tflm-host", tflite)
    if xq is None:
        xq = np.random.default_rng(0).integers(-128, 128, (samples, *oracle.input.shape[1:]), dtype=np.int8)
    xq = xq[:samples]
    folder = work / board_name / hashlib.sha256(tflite).hexdigest()[:12]
    project = generate_project(board, folder, tflite=tflite, model_name=name, backend="builtin",
                               build_flags=("-DMQ_PROFILE_OPS",) if profile else ())
    build = build_project(project, progress=False)
    with QemuEmulator(board, build.elf) as emu:
        with Link.open(emu.url, expected_sha256=hashlib.sha256(tflite).hexdigest(), invoke_timeout=600) as link:
            run = measure(link, xq, progress=False)
        per_op: dict[int, list[int]] = {}
        for line in emu.stderr_text().splitlines():
            if line.startswith("MQ_PROFILE "):
                _, op, count = line.split()
                per_op.setdefault(int(op), []).append(int(count))
    expected = np.stack([oracle.invoke(x) for x in xq])
    same = int(sum(a.tobytes() == b.tobytes() for a, b in zip(run.outputs, expected.reshape(run.outputs.shape))))
    return {"instructions": float(np.median(run.counts)), "arena": run.info.arena_used,
            "flash": build.flash_used, "ram": build.ram_used, "byte_identical": same, "n": len(xq),
            "profile": {op: float(np.median(c)) for op, c in sorted(per_op.items())}}


def print_profile(tflite: bytes, profile: dict) -> None:
    from mcuquant.graph import Graph

    ops = Graph.from_tflite(tflite).operators
    total = sum(profile.values()) or 1
    for op, count in sorted(profile.items(), key=lambda kv: -kv[1]):
        name = ops[op].name if op < len(ops) else "?"
        print(f"      op {op:3} {name:24} {count:14,.0f} {count / total:7.1%}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--boards", default="qemu-nano33,qemu-m3,qemu-m7,qemu-m55")
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--models", default="", help="comma-separated subset, e.g. zoo:cnn,kws_ref_model.tflite")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--profile", action="store_true", help="per-operator instruction counts (-DMQ_PROFILE_OPS)")
    args = parser.parse_args(argv)

    from mcuquant.builtin.cross import cross_build

    chosen = models([m for m in args.models.split(",") if m])
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-device-") as tmp:
        for board in args.boards.split(","):
            core = BOARD_CORE[board]
            code = cross_build(core).code_bytes
            print(f"\n{board} ({core}): builtin runtime code {code:,} bytes, {code / TFLM_CODE_BYTES[core]:.2f}x TFLM's "
                  f"reference kernels ({TFLM_CODE_BYTES[core]:,})")
            print(f"  {'model':32} {'instructions':>14} {'arena':>8} {'flash':>9} {'RAM':>8} {'identical':>9}"
                  f" {'speed-up':>8} {'vs TFLM ref':>11} {'vs CMSIS-NN':>11} {'arena vs TFLM':>13}")
            rows = {}
            for name, (tflite, xq) in chosen.items():
                r = run_on_board(board, name, tflite, xq, args.samples, Path(tmp), profile=args.profile)
                rows[name] = r
                ref = TFLM.get(name) if board == "qemu-nano33" else None
                start = START.get(name) if board == "qemu-nano33" else None
                speed_up = f" {start / r['instructions']:7.2f}x" if start else f" {'':8}"
                ratios = (f" {r['instructions'] / ref['reference']:10.2f}x {r['instructions'] / ref['cmsis_nn']:10.2f}x"
                          f" {r['arena'] / ref['arena_used']:12.2f}x") if ref else ""
                print(f"  {name:32} {r['instructions']:14,.0f} {r['arena']:8,} {r['flash']:9,} {r['ram']:8,} "
                      f"{r['byte_identical']:>4}/{r['n']:<4}{speed_up}{ratios}", flush=True)
                if args.profile:
                    print_profile(tflite, r["profile"])
            results[board] = {"core": core, "code_bytes": code, "models": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
