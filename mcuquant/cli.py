"""The `mcuquant` command: a thin layer over the Python API (each command is one API call).

Known errors (McuquantError) print as one line with the fix and exit 2; anything else is a bug
and prints its traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mcuquant import __version__
from mcuquant.errors import McuquantError

# CLI flag -> config key; every key of mcuquant.toml that a user commonly changes has a flag.
CONFIG_FLAGS = {
    "--model": ("model.source", "zoo:mlp|zoo:cnn|zoo:dscnn|zoo:resnet8 or a .keras/.h5/SavedModel path"),
    "--width": ("model.width", "zoo models: channel multiplier"),
    "--data": ("data.source", "builtin:digits, a .npz (x, y), a .csv or a folder of class folders"),
    "--split": ("data.split", "train,val,test fractions, e.g. 0.6,0.2,0.2"),
    "--seed": ("data.seed", "seed of the data split and representative set"),
    "--normalize": ("data.normalize", "minmax | standard | none (computed on the train split)"),
    "--task": ("data.task", "auto | classification | regression"),
    "--label-column": ("data.label_column", "CSV label column: index or header name (default: last)"),
    "--image-size": ("data.image_size", "image folders: resize to HEIGHT,WIDTH"),
    "--epochs": ("training.epochs", "float training epochs (default 30 for zoo models, 0 for your own)"),
    "--qat-epochs": ("training.qat_epochs", "quantization-aware fine-tuning epochs"),
    "--batch-size": ("training.batch_size", "training batch size"),
    "--lr": ("training.learning_rate", "float training learning rate"),
    "--qat-lr": ("training.qat_learning_rate", "QAT fine-tuning learning rate"),
    "--patience": ("training.patience", "early stopping: epochs without validation-loss improvement"),
    "--train-seed": ("training.seed", "seed of weight init and shuffling"),
    "--rep-samples": ("quantization.representative_samples", "PTQ calibration samples from the train split"),
    "--per-channel": ("quantization.per_channel", "true|false: per-channel weight scales"),
    "--int16x8": ("quantization.int16x8", "true|false: also evaluate a PTQ int16x8 model"),
    "--board": ("target.board", "target board profile"),
}


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="project file (default: ./mcuquant.toml if present)")
    group = parser.add_argument_group("overrides of mcuquant.toml keys")
    for flag, (key, help_text) in CONFIG_FLAGS.items():
        group.add_argument(flag, dest=key, metavar=key.split(".")[1].upper(), help=f"{help_text} [{key}]")


def _config_from_args(args: argparse.Namespace):
    from mcuquant.config import load_config

    overrides = {key: getattr(args, key) for key, _ in CONFIG_FLAGS.values()}
    names = {key: flag for flag, (key, _) in CONFIG_FLAGS.items()}
    return load_config(args.config, overrides, flag_names=names)


def cmd_compare(args: argparse.Namespace) -> int:
    from mcuquant.ladder import run_compare, write_json
    from mcuquant.report import print_report

    cfg = _config_from_args(args)
    report = run_compare(cfg, args.out, progress=not args.quiet)
    if args.json:
        write_json(report, args.json)
    print_report(report)
    print(f"report: {Path(args.json) if args.json else Path(args.out) / 'report.json'}  artifacts: {args.out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from mcuquant.errors import ModelError
    from mcuquant.export import export_model

    path = Path(args.model)
    try:
        tflite = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror}; give the path of a .tflite file") from None
    result = export_model(tflite, args.out, name=args.name or path.name, backend=args.backend, core=args.core)
    print(f"exported {path} ({result.model_bytes} bytes, sha256 {result.sha256[:12]}...) as `{result.identifier}`: "
          f"ops {', '.join(result.ops)}")
    if result.arena_exact:
        print(f"  builtin runtime on {result.core}: arena {result.arena_bytes} bytes (exact), "
              f"runtime code {result.runtime_code_bytes} bytes")
    else:
        print(f"  {args.backend} backend: arena estimate {result.arena_bytes} bytes (activations only)")
    for file in result.files:
        print(f"  {file}")
    return 0


def _kib(n: int) -> str:
    return f"{n / 1024:g} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:g} MiB"


def cmd_boards(args: argparse.Namespace) -> int:
    import json

    from mcuquant.boards import list_boards

    boards = list_boards()
    if args.json:
        print(json.dumps([{
            "name": b.name, "kind": b.kind, "description": b.description, "core": b.core, "fpu": b.fpu,
            "dsp": b.dsp, "flash_bytes": b.flash_bytes, "ram_bytes": b.ram_bytes, "counter": b.counter,
            "default_backend": b.default_backend, "serial": b.serial.transport, "baud": b.serial.baud,
            "qemu_machine": b.qemu.machine if b.qemu else None, "platformio_board": b.platformio.board,
            "emulated_equivalent": b.emulated_equivalent,
        } for b in boards], indent=2))  # fmt: skip
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="mcuquant boards: flash and RAM are the limits a build is checked against")
    for col in ("board", "core", "flash", "RAM", "serial", "counter", "backend", "runs on"):
        table.add_column(col, justify="right" if col in ("flash", "RAM") else "left", no_wrap=True)
    for i, b in enumerate(boards):
        if i and b.kind != boards[i - 1].kind:
            table.add_section()
        core = b.core.removeprefix("cortex-").removeprefix("xtensa-").upper().replace("PLUS", "+")
        core += "" if b.fpu == "none" else "+MVE" if b.fpu == "mve" else "F"
        runs_on = f"QEMU {b.qemu.machine}" if b.qemu else f"{b.platformio.platform}:{b.platformio.board}"
        table.add_row(b.name, core, _kib(b.flash_bytes), _kib(b.ram_bytes), b.serial.transport,
                      b.counter, b.default_backend, runs_on)
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = 120  # a pipe or file: no reason to squeeze into 80 columns
    console.print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcuquant",
        description="Train, quantize (QAT/PTQ) and measure int8 models for microcontrollers: "
                    "every step from the float Keras model to the device, on the same samples.")
    parser.add_argument("--version", action="version", version=f"mcuquant {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    compare = sub.add_parser(
        "compare", help="the accuracy ladder on the host: float, QAT, PTQ, LiteRT, TFLM",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train (or load) a model, fine-tune it with QAT, convert it to int8 with PTQ and from\n"
                    "the QAT model, and evaluate every rung on the same test split:\n"
                    "  keras-float, keras-qat, {ptq,qat}/litert, {ptq,qat}/litert-ref, {ptq,qat}/tflm-host,\n"
                    "  {ptq,qat}/builtin-host (mcuquant's C runtime on the host)\n"
                    "Error rates with Wilson 95% intervals, McNemar exact tests between rungs, and\n"
                    "byte-identical output rates between interpreters with the first diverging operator.",
        epilog="example:\n  mcuquant compare --data builtin:digits --model zoo:cnn --json out.json\n"
               "  mcuquant compare --model my_model.h5 --data my_data.npz --qat-epochs 2")
    _add_config_flags(compare)
    compare.add_argument("--out", default="mcuquant-out/compare", metavar="DIR",
                         help="work directory for models, .tflite files and report.json (default: %(default)s)")
    compare.add_argument("--json", metavar="FILE", help="also write the report to FILE")
    compare.add_argument("--quiet", action="store_true", help="no progress bars")
    compare.set_defaults(func=cmd_compare)

    export = sub.add_parser(
        "export", help="emit an int8 .tflite as an aligned C array and a model config header",
        description="Check the model against a device backend (ops, options, tensor and buffer references), "
                    "then write model_data.c/.h (16-byte aligned array and its length) and model_config.h "
                    "(ops, input/output shapes, scales, zero points, arena size, SHA-256).\n"
                    "For the builtin backend the model is checked by mcuquant's C runtime itself, the arena\n"
                    "size is exact for the chosen core and the runtime's code size is reported.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    export.add_argument("model", help="the .tflite file")
    export.add_argument("--out", default="mcuquant-out/export", metavar="DIR", help="output folder (default: %(default)s)")
    export.add_argument("--name", help="base of the C identifier (default: the model's file name)")
    export.add_argument("--backend", default="builtin", choices=("builtin", "tflm"),
                        help="device runtime the model must be supported by (default: %(default)s)")
    export.add_argument("--core", default="cortex-m4", choices=("cortex-m0plus", "cortex-m4", "cortex-m7"),
                        help="Cortex-M core for the builtin runtime's code size (default: %(default)s)")
    export.set_defaults(func=cmd_export)

    boards = sub.add_parser(
        "boards", help="list the board profiles (boards/*.toml) with their flash and RAM limits",
        description="List every board profile: emulated boards (QEMU, built offline with mcuquant's own "
                    "PlatformIO platform) and physical boards (PlatformIO's official platforms).")
    boards.add_argument("--json", action="store_true", help="print the profiles as JSON")
    boards.set_defaults(func=cmd_boards)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except McuquantError as exc:
        print(f"mcuquant: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mcuquant: interrupted", file=sys.stderr)
        return 130
