"""Benchmark of the builtin runtime (a script, not a test; pytest does not collect it).

    .venv/bin/python tests/benchmarks/bench_runtime.py [--samples N] [--json FILE] [MODEL.tflite ...]

Prints one row per zoo model (trained one epoch on digits and PTQ-converted, as in
tests/test_builtin_bitexact.py), per model in ../shared/models and per extra model given:

- builtin arena (M4F): bytes of arena the builtin runtime needs on a Cortex-M4F, metadata
  included (mcuquant.builtin.cross.device_arena_bytes: 32-bit struct sizes read from the cross
  compiler, activation plan from the runtime itself);
- builtin arena (host): the same on this 64-bit host (HostRuntime.arena_required);
- tflm export estimate: the arena the exporter writes into model_config.h for the tflm backend
  (mcuquant.export.estimate_arena_bytes: activations only, no TFLM bookkeeping; for the builtin
  backend the exporter writes the exact M4F figure of the first column);
- tflm arena (host): what TensorFlow Lite Micro's host interpreter reports with its
  RecordingMicroAllocator ("Arena allocation total", printed by print_allocations(); the PyPI
  tflite_micro runtime has no arena_used_bytes()). It is a 64-bit host figure: TFLM's structs
  hold pointers too, so on a 32-bit board it is smaller;
- samples/s of builtin-host and tflm-host on this host, one sample per invoke through
  mcuquant.interpreters.Runner (Python call overhead included for both).

Above the table: the runtime's code bytes per core (arm-none-eabi-size of a minimal linked image
minus an empty one, see mcuquant.builtin.cross).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))  # modelgen (zoo models as the tests build them), conftest (paths)


def tflm_arena_bytes(model: bytes) -> int | None:
    """TFLM's recorded arena use for `model`, parsed from print_allocations() (written to fd 2)."""
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(bytes(model), arena_size=max(16 * len(model), 1 << 20),
                                                 intrepreter_config=runtime.InterpreterConfig.kAllocationRecording)
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            interpreter.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        text = sink.read().decode(errors="replace")
    match = re.search(r"Arena allocation total (\d+) bytes", text)
    return int(match.group(1)) if match else None


def samples_per_second(kind: str, model: bytes, inputs: np.ndarray) -> float:
    from mcuquant.interpreters import Runner

    runner = Runner(kind, model)
    runner.invoke(inputs[0])  # warm-up
    start = time.perf_counter()
    for x in inputs:
        runner.invoke(x)
    return len(inputs) / (time.perf_counter() - start)


def measure(name: str, model: bytes, samples: int) -> dict:
    from mcuquant.builtin.cross import device_arena_bytes
    from mcuquant.builtin.host import HostRuntime
    from mcuquant.export import estimate_arena_bytes, parse_model

    info, _, _ = parse_model(model)
    host = HostRuntime(model)
    shape = host.input_shape[1:] if len(host.input_shape) > 1 else host.input_shape
    rng = np.random.default_rng(0)
    if host.inputs[0].dtype == np.int8:
        inputs = rng.integers(-128, 128, (samples, *shape), dtype=np.int8)
    else:
        inputs = rng.normal(size=(samples, *shape)).astype(host.inputs[0].dtype)
    return {
        "model": name, "bytes": len(model), "ops": len(info.operators),
        "builtin_arena_m4f": device_arena_bytes(model, "cortex-m4"),
        "builtin_arena_host": host.arena_required,
        "export_estimate": estimate_arena_bytes(info),
        "tflm_arena_host": tflm_arena_bytes(model),
        "builtin_samples_per_s": samples_per_second("builtin-host", model, inputs),
        "tflm_samples_per_s": samples_per_second("tflm-host", model, inputs),
    }


COLUMNS = (
    ("model", "model", "{}"), ("bytes", "model bytes", "{:,}"), ("ops", "ops", "{}"),
    ("builtin_arena_m4f", "builtin arena M4F", "{:,}"), ("builtin_arena_host", "builtin arena host", "{:,}"),
    ("export_estimate", "tflm export estimate", "{:,}"), ("tflm_arena_host", "tflm arena host", "{:,}"),
    ("builtin_samples_per_s", "builtin-host samples/s", "{:,.0f}"),
    ("tflm_samples_per_s", "tflm-host samples/s", "{:,.0f}"),
)  # fmt: skip


def print_table(rows: list[dict]) -> None:
    cells = [[title for _, title, _ in COLUMNS]]
    for row in rows:
        cells.append([("-" if row[key] is None else fmt.format(row[key])) for key, _, fmt in COLUMNS])
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    for k, r in enumerate(cells):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if k == 0:
            print("  ".join("-" * w for w in widths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", type=Path, help="further .tflite models to measure")
    parser.add_argument("--samples", type=int, default=200, help="samples timed per model and runtime (default 200)")
    parser.add_argument("--json", type=Path, help="also write the rows (and code sizes) as JSON")
    args = parser.parse_args(argv)

    from conftest import SHARED_MODELS
    from mcuquant.builtin.cross import CORES, cross_build
    from mcuquant.models import ZOO
    from modelgen import zoo_model

    code = {core: cross_build(core).code_bytes for core in CORES}
    print("builtin runtime code bytes (arm-none-eabi-size, minimal image minus an empty one): "
          + ", ".join(f"{core} {n:,}" for core, n in code.items()))
    print(f"Cortex-M4F: {code['cortex-m4']:,} bytes of flash\n")

    models = [(f"zoo:{z} (digits)", lambda z=z: zoo_model(z)[0]) for z in ZOO]
    models += [(p.name, p.read_bytes) for p in sorted(SHARED_MODELS.glob("*.tflite"))]
    models += [(p.name, p.read_bytes) for p in args.models]
    rows = []
    for name, load in models:
        print(f"measuring {name} ...", file=sys.stderr)
        rows.append(measure(name, load(), args.samples))
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps({"code_bytes": code, "models": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
