"""Presenting a ladder report: terminal tables (rich). The JSON written by the ladder is the source.

A report from `mcuquant compare` has host rungs only; `mcuquant validate` and `mcuquant demo` add
`*/device` rungs, shown in the ladder (error rate, when there are labels) and in a device table
(byte-identical rate against tflm-host, latency with its unit, arena, flash and RAM).
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from mcuquant.tasks import get_task


def wide_console() -> Console:
    """The terminal's width, or 140 columns when the output is a file or a pipe (tables stay unwrapped)."""
    return Console(width=None if Console().is_terminal else 140)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _scored(report: dict) -> bool:
    """Whether the rungs carry a metric (not so for a device measured on unlabelled inputs)."""
    if not report.get("task") or not report["rungs"]:
        return False
    metric = get_task(report["task"]).metric
    return all(metric in r for r in report["rungs"])


def ladder_table(report: dict) -> Table:
    from mcuquant.render import cell

    task = get_task(report["task"]) if report.get("task") else None
    n = report["dataset"]["n_test"]
    table = Table(title=f"accuracy ladder on {report['dataset']['name']} (test split, n={n})")
    table.add_column("rung")
    columns = [c for c in task.rung_columns() if c[1] != "errors"] if task else []
    for header, _, _ in columns:
        table.add_column(header, justify="right")
    table.add_column("vs previous rung")
    verdicts = {(c["a"], c["b"]): c for c in report["comparisons"]}
    previous = None
    for rung in report["rungs"]:
        cells = [cell(rung.get(key), fmt) for _, key, fmt in columns]
        against = verdicts.get((previous, rung["id"])) if previous else None
        table.add_row(rung["id"], *cells, against["verdict"] if against else "")
        previous = rung["id"]
    return table


def agreement_table(report: dict) -> Table:
    table = Table(title="integer interpreters: byte-identical outputs (same model, same quantized inputs)")
    for col in ("model", "a vs b", "byte-identical", "max |diff| (LSB)", "class flips", "first diverging op"):
        table.add_column(col)
    for a in report["agreement"]:
        if a["a"] == "device":
            continue  # the device table shows these
        first = ", ".join(f"#{s['op_index']} {s['op']} ({s['samples']} traced)" for s in a["first_divergence_by_op"])
        table.add_row(a["variant"], f"{a['a']} vs {a['b']}", f"{a['bit_exact']}/{a['n']} ({_pct(a['bit_exact_rate'])})",
                      str(a["max_lsb_difference"]), str(a["class_flips"]), first or "-")
    return table


def _count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _bytes(used: int | None, limit: int | None) -> str:
    """Bytes used and the share of the board's limit."""
    if used is None:
        return "-"
    return f"{used:,} ({100 * used / limit:.0f}%)" if limit else f"{used:,}"


def _ms(ms: float | None) -> str:
    """A physical board's latency in milliseconds beside its count."""
    return "" if ms is None else f" ({ms:,.1f} ms)" if ms >= 10 else f" ({ms:.3g} ms)"


def device_table(report: dict) -> Table:
    """One row per `*/device` rung: agreement with the oracle, latency, memory."""
    rungs = [r for r in report["rungs"] if r["id"].endswith("/device")]
    units = {r["latency"]["unit"] for r in rungs if r["latency"].get("unit")}
    boards = ", ".join(dict.fromkeys(f"{r['board']} ({r['backend']} runtime)" for r in rungs))
    table = Table(title=f"on {boards}: outputs vs tflm-host, latency, memory (bytes, % of the board's limit)")
    for col in ("rung", "byte-identical", "max LSB", "flips", "latency median", "p95", "arena", "flash", "RAM"):
        table.add_column(col, justify="left" if col == "rung" else "right", no_wrap=True)
    for r in rungs:
        lat = r["latency"]
        unit = f" {lat['unit'][:5]}." if lat.get("unit") and len(units) > 1 else ""
        table.add_row(r["id"],
                      f"{r['bit_exact']}/{r['n']} ({_pct(r['bit_exact_rate'])})", str(r["max_lsb_difference"]),
                      "-" if r.get("class_flips") is None else str(r["class_flips"]),
                      "-" if lat.get("median") is None else f"{lat['median']:,.0f}{unit}" + _ms(lat.get("median_ms")),
                      "-" if lat.get("p95") is None else f"{lat['p95']:,}{unit}" + _ms(lat.get("p95_ms")),
                      _count(r.get("arena_bytes")), _bytes(r.get("flash_bytes"), r.get("flash_limit")),
                      _bytes(r.get("ram_bytes"), r.get("ram_limit")))
    notes = sorted({r["latency"]["note"] for r in rungs})
    if len(units) == 1:
        notes = [f"latency unit: {units.pop()}: {notes[0]}"] if len(notes) == 1 else notes
    table.caption = "; ".join(notes)
    return table


def mismatch_lines(report: dict, limit: int = 10) -> list[str]:
    """The device's mismatching samples (first ``limit`` per rung), one line each."""
    lines = []
    for r in (r for r in report["rungs"] if r["id"].endswith("/device") and r["mismatches"]):
        lines.append(f"{r['id']}: {len(r['mismatches'])} sample(s) differ from {r['oracle']}:")
        for m in r["mismatches"][:limit]:
            flip = ""
            if "class_flip" in m:
                same = f", same class {m['class_a']}"
                flip = f", class {m['class_b']} -> {m['class_a']}" if m["class_flip"] else same
            lines.append(f"  sample {m['index']}: max {m['max_lsb_difference']} LSB{flip}")
        if len(r["mismatches"]) > limit:
            lines.append(f"  ... {len(r['mismatches']) - limit} more in report.json")
    return lines


def print_report(report: dict, console: Console | None = None) -> None:
    console = console or wide_console()
    if _scored(report):
        console.print(ladder_table(report))
    float_vs = [c for c in report.get("comparisons", []) if c["a"] == "keras-float" and "/" in c["b"]]
    if float_vs:
        console.print("[bold]keras-float vs each int8 rung[/bold]")
        for c in float_vs:
            console.print(f"  {c['b']:<20} {c['verdict']}")
    oracle_vs = [c for c in report.get("comparisons", []) if "device vs oracle" in c.get("kind", "")]
    if oracle_vs:
        console.print("[bold]tflm-host vs the device (same samples)[/bold]")
        for c in oracle_vs:
            console.print(f"  {c['b']:<20} {c['verdict']}")
    if any(a["a"] != "device" for a in report.get("agreement", [])):
        console.print(agreement_table(report))
    qat = report.get("conversions", {}).get("qat", {}).get("representative_set", {})
    if qat.get("required"):
        console.print(f"QAT conversion needed a representative set: {qat['finding']} "
                      f"({qat['tensors_compared']} activation tensors compared).")
    if any(r["id"].endswith("/device") for r in report["rungs"]):
        console.print(device_table(report))
        for line in mismatch_lines(report):
            console.print(line, markup=False, highlight=False)


def _reserved(result) -> str:
    """What the linker script reserves besides the firmware's own RAM (read from the image's sections)."""
    parts = [f"stack {result.stack_bytes:,}"] if result.stack_bytes else []
    if result.heap_bytes:
        parts.append(f"heap {result.heap_bytes:,}")
    return f" + reserved: {', '.join(parts)} bytes" if parts else ""


def build_lines(result, *, uploaded_to: str | None = None) -> list[str]:
    """What `mcuquant build` made: the project, flash and RAM against the board's limits, the arena."""
    project = result.project
    lines = [f"built {project.board.name} ({project.backend} backend) in {result.seconds:.1f} s: {project.directory}",
             f"  flash {result.flash_used:,} of {result.flash_limit:,} bytes "
             f"({100 * result.flash_used / result.flash_limit:.0f}%), RAM {result.ram_used:,} of "
             f"{result.ram_limit:,} bytes ({100 * result.ram_used / result.ram_limit:.0f}%) used by the firmware"
             + _reserved(result)]
    if project.arena_bytes is not None:
        lines.append(f"  model {project.model_sha256[:12]}..., arena {project.arena_bytes:,} bytes (in the RAM above)")
    if project.board.emulated:
        lines.append(f"  ELF for QEMU {project.board.qemu.machine}: {result.elf}")
    elif uploaded_to:
        lines.append(f"  uploaded to {uploaded_to}")
    lines.append(f"  build log: {result.log}")
    return lines


def findings_lines(report: dict) -> list[str]:
    """The findings of `mcuquant explain`, one paragraph per finding."""
    lines = []
    for f in report.get("explain", {}).get("findings", []):
        lines.append(f"({f['id']}) {f['title']}")
        lines.extend(f"    {sentence}" for sentence in f["sentences"])
    return lines


def print_explained(report: dict, console: Console | None = None) -> None:
    """The ladder, the findings with their numbers, and where the full report is."""
    console = console or wide_console()
    print_report(report, console)
    explain = report.get("explain")
    if not explain:
        return
    layers = explain.get("layers", {}).get("ptq")
    if layers and layers.get("rows"):
        from mcuquant.layers import format_rows

        console.print(format_rows(layers, limit=8))
    console.print("[bold]Findings[/bold]")
    for line in findings_lines(report):
        console.print(line, markup=False, highlight=False)
    artifacts = report["artifacts"]
    folder = Path(artifacts["dir"])
    console.print(f"report: {folder / 'report.json'}, {folder / artifacts.get('html', 'report.html')}, "
                  f"{folder / artifacts.get('markdown', 'report.md')}", markup=False, highlight=False)
