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
    "--model": ("model.source", "zoo:mlp|cnn|dscnn|resnet8 (images, features), zoo:conv1d|lstm (sequences), "
                                "zoo:autoencoder (anomaly) or a .keras/.h5/SavedModel path (tf-keras or Keras 3)"),
    "--width": ("model.width", "zoo models: channel multiplier"),
    "--data": ("data.source", "builtin:digits|digits-anomaly|basicmotions|gunpoint, a .npz (x, y), a .csv or a "
                              "folder of class folders"),
    "--split": ("data.split", "train,val,test fractions, e.g. 0.6,0.2,0.2"),
    "--seed": ("data.seed", "seed of the data split and representative set"),
    "--normalize": ("data.normalize", "minmax | standard | none (computed on the train split)"),
    "--task": ("data.task", "auto | classification | regression | anomaly"),
    "--normal-classes": ("data.normal_classes", "anomaly task: the classes taken as normal, e.g. 0 or 0,1 (default: "
                                                "the first class)"),
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
    "--board": ("target.board", "board profile, see `mcuquant boards` (default: qemu-nano33)"),
}


def _add_config_flags(parser: argparse.ArgumentParser, keys: tuple[str, ...] | None = None) -> None:
    """--config and the flags of CONFIG_FLAGS (only those whose key starts with one of ``keys``)."""
    parser.add_argument("--config", metavar="FILE", help="project file (default: ./mcuquant.toml if present)")
    group = parser.add_argument_group("overrides of mcuquant.toml keys")
    for flag, (key, help_text) in CONFIG_FLAGS.items():
        if keys is None or key.startswith(keys):
            group.add_argument(flag, dest=key, metavar=key.split(".")[1].upper(), help=f"{help_text} [{key}]")


def _config_from_args(args: argparse.Namespace):
    from mcuquant.config import load_config

    overrides = {key: getattr(args, key, None) for key, _ in CONFIG_FLAGS.values()}
    names = {key: flag for flag, (key, _) in CONFIG_FLAGS.items()}
    return load_config(args.config, overrides, flag_names=names)


def _rate(text: str) -> float:
    """A rate given as a fraction (0.05) or a percentage (5%)."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate: give a fraction like 0.05 or a percentage like 5%")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is outside [0, 1] (0% to 100%)")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


def cmd_compare(args: argparse.Namespace) -> int:
    from mcuquant.ladder import run_compare, write_json
    from mcuquant.render import write_report
    from mcuquant.report import print_report

    cfg = _config_from_args(args)
    report = run_compare(cfg, args.out, progress=not args.quiet)
    if args.json:
        write_json(report, args.json)
    files = write_report(report, args.out)
    print_report(report)
    print(f"report: {Path(args.json) if args.json else Path(args.out) / 'report.json'}, {files['html']}, "
          f"{files['markdown']}  artifacts: {args.out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from mcuquant.export import export_model
    from mcuquant.graph import read_int8_tflite

    path = Path(args.model)
    tflite = read_int8_tflite(path)
    result = export_model(tflite, args.out, name=args.name or path.name, backend=args.backend, core=args.core)
    print(f"exported {path} ({result.model_bytes} bytes, sha256 {result.sha256[:12]}...) as `{result.identifier}`: "
          f"ops {', '.join(result.ops)}")
    if result.arena_exact:
        print(f"  builtin runtime on {result.core}: arena {result.arena_bytes} bytes (exact), "
              f"runtime code {result.runtime_code_bytes} bytes")
    else:
        print(f"  {args.backend} backend: arena {result.arena_bytes} bytes "
              "(TFLM's own measurement on the host plus scratch headroom; see model_config.h)")
    for file in result.files:
        print(f"  {file}")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from mcuquant.device.harness import build
    from mcuquant.report import build_lines

    result, port = build(_config_from_args(args).target.board, args.model, args.out, backend=args.backend,
                         upload=not args.no_upload, port=args.port, progress=not args.quiet,
                         packages=args.packages)
    for line in build_lines(result, uploaded_to=port):
        print(line)
    board = result.project.board
    if board.emulated:
        print(f"measure it: mcuquant validate --board {board.name} --model {args.model}")
    elif port:
        print(f"measure it: mcuquant validate --board {board.name} --model {args.model} --port {port} --no-upload")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from mcuquant.device.validate import threshold_failures, validate
    from mcuquant.ladder import write_json
    from mcuquant.render import write_report
    from mcuquant.report import print_report

    cfg = _config_from_args(args)
    report = validate(
        cfg.target.board, args.model, data=getattr(args, "data.source"), data_options=cfg.data, samples=args.samples,
        out_dir=args.out, port=args.port, backend=args.backend, upload=not args.no_upload,
        require_labels=args.fail_under is not None, representative_samples=cfg.quantization.representative_samples,
        per_channel=cfg.quantization.per_channel, resume=args.resume, progress=not args.quiet,
    )
    if args.json:
        write_json(report, args.json)
    files = write_report(report, report["artifacts"]["dir"])
    print_report(report)
    print(f"report: {Path(report['artifacts']['dir']) / 'report.json'}, {files['html']}, {files['markdown']}"
          + (f" and {args.json}" if args.json else ""))
    failures = threshold_failures(report, fail_under=args.fail_under, min_bit_exact=args.min_bit_exact)
    for failure in failures:
        print(f"mcuquant: FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from mcuquant.demo import run_demo
    from mcuquant.report import print_explained

    report = run_demo(args.out, board=args.board, progress=not args.quiet)
    print_explained(report)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from mcuquant.explain import run_explain
    from mcuquant.report import print_explained

    cfg = _config_from_args(args)
    board = None if args.no_device else cfg.target.board
    report = run_explain(cfg, args.out, board=board, gap_points=args.gap, progress=not args.quiet)
    print_explained(report)
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from mcuquant.diff import format_diff, run_diff
    from mcuquant.ladder import write_json
    from mcuquant.report import wide_console

    console = wide_console()
    cfg = _config_from_args(args)
    result = run_diff(args.a, args.b, data=getattr(args, "data.source"), data_options=cfg.data, samples=args.samples)
    for item in format_diff(result, limit=args.limit):
        console.print(item)
    if args.json:
        write_json(result, args.json)
        print(f"diff: {args.json}")
    return 0


def cmd_layers(args: argparse.Namespace) -> int:
    from mcuquant.ladder import write_json
    from mcuquant.layers import format_rows, run_layers
    from mcuquant.report import wide_console

    console = wide_console()
    cfg = _config_from_args(args)
    result = run_layers(args.model, data=getattr(args, "data.source"), data_options=cfg.data, tflite=args.tflite,
                        representative_samples=cfg.quantization.representative_samples,
                        per_channel=cfg.quantization.per_channel, samples=args.samples, progress=not args.quiet)
    console.print(format_rows(result, limit=args.limit,
                              rest_in=f"in {args.json}" if args.json else "(--limit N shows more, --json FILE keeps all)"))
    if args.json:
        write_json(result, args.json)
        print(f"per-layer errors: {args.json}")
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
                         help="work directory: models, .tflite files, report.json/.html/.md (default: %(default)s)")
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

    build = sub.add_parser(
        "build", help="build the firmware for a board and a .tflite model (and flash a physical board)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Generate a complete PlatformIO project (platformio.ini, the firmware sources, the model as a\n"
                    "C array) in --out, run `pio run`, check flash and RAM use against the board's limits (a model\n"
                    "that does not fit fails with the required and available bytes) and, for a physical board,\n"
                    "upload it (`pio run -t upload`; the port is found by the board's USB VID:PID or given\n"
                    "with --port, after the build: an unplugged board loses no build, and running the command\n"
                    "again once it is plugged in only uploads). For an emulated board the result is the ELF that\n"
                    "QEMU runs.",
        epilog="examples:\n"
               "  mcuquant build --board qemu-nano33 --model mcuquant-out/compare/ptq.tflite\n"
               "  mcuquant build --board nano33 --model ptq.tflite --port /dev/ttyACM0\n"
               "  mcuquant build --board nano33 --model ptq.tflite --no-upload --out fw/nano33\n"
               "(`mcuquant boards` lists the boards)")
    build.add_argument("--model", required=True, metavar="M.tflite", help="the int8 model to embed")
    build.add_argument("--backend", choices=("builtin", "tflm"),
                       help="inference runtime on the device (default: the board's; tflm needs TFLM's sources: "
                            "PlatformIO's registry for physical boards or MCUQUANT_TFLM_DIR)")
    build.add_argument("--out", metavar="DIR", help="project folder (default: mcuquant-out/build/BOARD)")
    build.add_argument("--no-upload", action="store_true", help="physical boards: build only, do not flash")
    build.add_argument("--port", metavar="PORT",
                       help="physical boards: serial port to flash (default: found by USB id)")
    build.add_argument("--packages", metavar="DIR",
                       help="physical boards: take the PlatformIO platform, Arduino core, toolchain and libraries "
                            "from this local folder instead of PlatformIO's registry (offline builds; layout: "
                            "DIR/platforms/NAME, DIR/packages/NAME, DIR/libraries/REPO; default: "
                            "$MCUQUANT_PIO_PACKAGES)")
    build.add_argument("--quiet", action="store_true", help="no progress output")
    _add_config_flags(build, keys=("target.",))
    build.set_defaults(func=cmd_build)

    validate = sub.add_parser(
        "validate", help="measure int8 models on a board or its emulation: the */device rungs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Build the firmware, start QEMU (emulated boards: -icount, deterministic instruction counts)\n"
                    "or open the board's serial port, check that the device runs exactly this model (SHA-256 in\n"
                    "the handshake), stream the samples and compare every output byte with tflm-host.\n"
                    "The */device rung holds: error rate with its 95% CI (when there are labels), bit_exact_rate\n"
                    "against tflm-host with every mismatching sample, latency median and p95 with its unit\n"
                    "(QEMU: instructions, not cycles), arena bytes, flash and RAM use.\n\n"
                    "--model is one of:\n"
                    "  a `mcuquant compare` work folder (default: mcuquant-out/compare): its ptq and qat models on\n"
                    "    its test split; ptq/device and qat/device join its report.json\n"
                    "  M.tflite: with --data, its test split (normalized as in compare: --split/--seed/--normalize);\n"
                    "    without, --samples random int8 inputs (default 100, seeded by --seed)\n"
                    "  M.keras / M.h5 / SavedModel folder: converted with PTQ calibrated on --data's train split\n\n"
                    "Every result is recorded as it arrives ({variant}_device_journal.jsonl in the output folder):\n"
                    "a failed or interrupted run leaves report.json marked \"partial\" with what was measured, and\n"
                    "the same command with --resume measures only the missing samples.\n\n"
                    "Exit status: 0 ok, 1 when --fail-under or --min-bit-exact is not met, 2 on errors.",
        epilog="examples:\n"
               "  mcuquant compare --out work && mcuquant validate --board qemu-nano33 --model work\n"
               "  mcuquant validate --board qemu-m7 --model kws_ref_model.tflite --samples 20 --min-bit-exact 1\n"
               "  mcuquant validate --board qemu-nano33 --model float.keras --data builtin:digits --fail-under 5%\n"
               "  mcuquant validate --board nano33 --model ptq.tflite --data d.npz --port /dev/ttyACM0")
    validate.add_argument("--model", metavar="M", help="compare work folder, .tflite or Keras model (see above)")
    validate.add_argument("--samples", type=_positive, metavar="N",
                          help="measure the first N test samples, or N random inputs without --data (default 100)")
    validate.add_argument("--out", metavar="DIR",
                          help="folder for firmware projects and report.json (default: the compare work folder, "
                               "else mcuquant-out/validate)")
    validate.add_argument("--port", metavar="PORT", help="physical boards: serial port (default: found by USB id)")
    validate.add_argument("--backend", choices=("builtin", "tflm"), help="inference runtime (default: the board's)")
    validate.add_argument("--no-upload", action="store_true",
                          help="physical boards: do not build or flash; the board already runs the model "
                               "(`mcuquant build`), which the handshake checks")
    validate.add_argument("--json", metavar="FILE", help="also write the report to FILE")
    validate.add_argument("--resume", action="store_true",
                          help="continue an interrupted run: measure only the samples its journal lacks")
    validate.add_argument("--fail-under", type=_rate, metavar="ERR",
                          help="exit 1 when a device error rate is above ERR (0.05 or 5%%); needs labels")
    validate.add_argument("--min-bit-exact", type=_rate, metavar="R",
                          help="exit 1 when a device's byte-identical rate against tflm-host is below R (e.g. 1)")
    validate.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_config_flags(validate, keys=("data.", "quantization.representative", "quantization.per_channel", "target."))
    validate.set_defaults(func=cmd_validate)

    explain = sub.add_parser(
        "explain", help="where the accuracy went: findings in sentences, per-layer errors, HTML report",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the ladder (as `compare`), then the scenarios behind the usual questions, and state each\n"
                    "finding with numbers:\n"
                    "  (a) QAT converted to int8 vs its weights copied into the float model + PTQ: which activation\n"
                    "      ranges moved, by how much, how many predictions changed\n"
                    "  (b) float vs QAT vs PTQ with 95% intervals: distinguishable at this test-set size (McNemar)?\n"
                    "      how many samples would resolve the gap, and a gap of --gap points?\n"
                    "  (c) does calibrating on the evaluated data flatter the int8 model? (PTQ calibrated on the\n"
                    "      train split vs on the test split, both evaluated on the test split)\n"
                    "  (d) host vs device: each disagreement attributed to quantization, kernel implementation or\n"
                    "      transport (the models run on --board; skip with --no-device)\n"
                    "plus per-layer quantization errors (Keras layer names, worst first). Writes report.json,\n"
                    "a self-contained report.html (opens offline) and report.md in --out.",
        epilog="examples:\n  mcuquant explain --data builtin:digits --model zoo:cnn\n"
               "  mcuquant explain --data my_data.npz --model my_model.h5 --out work --no-device")
    _add_config_flags(explain)
    explain.add_argument("--out", default="mcuquant-out/explain", metavar="DIR",
                         help="work directory: models, report.json, report.html, report.md (default: %(default)s)")
    explain.add_argument("--gap", type=float, default=1.0, metavar="POINTS",
                         help="accuracy gap in percentage points whose required test-set size is stated "
                              "(default: %(default)s)")
    explain.add_argument("--no-device", action="store_true", help="skip the device measurement of finding (d)")
    explain.add_argument("--quiet", action="store_true", help="no progress bars")
    explain.set_defaults(func=cmd_explain)

    diff = sub.add_parser(
        "diff", help="tensor-by-tensor comparison of two int8 .tflite models of the same network",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Match the tensors of two int8 models by graph structure (names and order differ between\n"
                    "conversions) and compare activation scales and zero points, weight and bias buffers; the\n"
                    "tensors whose scale differs come first, largest relative difference first. With --data, both\n"
                    "models run on its test split (tflm-host): prediction agreement, class flips, error rates.",
        epilog="example (a QAT model converted directly vs its weights copied into the float model + PTQ):\n"
               "  mcuquant diff work/qat.tflite work/qat_weights_ptq.tflite --data builtin:digits")
    diff.add_argument("a", metavar="A.tflite")
    diff.add_argument("b", metavar="B.tflite")
    diff.add_argument("--samples", type=_positive, metavar="N", help="use the first N test samples (default: all)")
    diff.add_argument("--limit", type=_positive, default=20, metavar="N", help="rows per table (default: %(default)s)")
    diff.add_argument("--json", metavar="FILE", help="write the whole comparison to FILE")
    _add_config_flags(diff, keys=("data.",))
    diff.set_defaults(func=cmd_diff)

    layers = sub.add_parser(
        "layers", help="per-layer quantization error of an int8 model against its float Keras model",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the float Keras model and its int8 model (--tflite, or a PTQ conversion calibrated on the\n"
                    "train split of --data) on test samples, keep every intermediate tensor, and report per tensor:\n"
                    "RMSE and max error of the dequantized int8 activation against the float one, the same in\n"
                    "quantization steps, the share of float values clipped at the int8 range ends, and each\n"
                    "layer's own (local) error from TFLite's QuantizationDebugger. Named by Keras layers, worst first.",
        epilog="example:\n  mcuquant layers --model pretrainedResnet.h5 --data cifar_like.npz")
    layers.add_argument("--model", required=True, metavar="M", help="float Keras model (.keras, .h5, SavedModel)")
    layers.add_argument("--tflite", metavar="T", help="its int8 model (default: PTQ-converted here)")
    layers.add_argument("--samples", type=_positive, default=200, metavar="N",
                        help="test samples to compare on (default: %(default)s)")
    layers.add_argument("--limit", type=_positive, default=20, metavar="N", help="rows to print (default: %(default)s)")
    layers.add_argument("--json", metavar="FILE", help="write every row to FILE")
    layers.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_config_flags(layers, keys=("data.", "quantization.representative", "quantization.per_channel"))
    layers.set_defaults(func=cmd_layers)

    demo = sub.add_parser(
        "demo", help="the whole chain offline: digits -> CNN -> QAT and PTQ -> ladder -> qemu-nano33",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train the zoo CNN on sklearn's digits, fine-tune it with QAT, convert it with PTQ and from\n"
                    "QAT, evaluate every host rung, then build both int8 models for an emulated board, run them\n"
                    "in QEMU and add the ptq/device and qat/device rungs; explain where the accuracy went\n"
                    "(`mcuquant explain`): the full ladder and the findings, printed and written to\n"
                    "DIR/report.json, DIR/report.html and DIR/report.md. Offline; a few minutes on two cores.",
        epilog="example:\n  mcuquant demo --out mcuquant-out/demo")
    demo.add_argument("--out", default="mcuquant-out/demo", metavar="DIR", help="work folder (default: %(default)s)")
    demo.add_argument("--board", default="qemu-nano33", metavar="BOARD",
                      help="emulated board to measure on (default: %(default)s)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=cmd_demo)
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
