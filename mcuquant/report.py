"""Presenting a ladder report: a terminal table (rich). The JSON written by the ladder is the source."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def ladder_table(report: dict) -> Table:
    classification = report["task"] == "classification"
    n = report["dataset"]["n_test"]
    table = Table(title=f"accuracy ladder on {report['dataset']['name']} (test split, n={n})")
    table.add_column("rung")
    if classification:
        table.add_column("error rate", justify="right")
        table.add_column("95% CI (Wilson)", justify="right")
    else:
        table.add_column("MAE", justify="right")
        table.add_column("RMSE", justify="right")
    table.add_column("vs previous rung")
    verdicts = {(c["a"], c["b"]): c for c in report["comparisons"]}
    previous = None
    for rung in report["rungs"]:
        if classification:
            cells = [_pct(rung["error_rate"]), f"[{_pct(rung['ci95'][0])}, {_pct(rung['ci95'][1])}]"]
        else:
            cells = [f"{rung['mae']:.4g}", f"{rung['rmse']:.4g}"]
        against = verdicts.get((previous, rung["id"])) if previous else None
        table.add_row(rung["id"], *cells, against["verdict"] if against else "")
        previous = rung["id"]
    return table


def agreement_table(report: dict) -> Table:
    table = Table(title="integer interpreters: byte-identical outputs (same model, same quantized inputs)")
    for col in ("model", "a vs b", "byte-identical", "max |diff| (LSB)", "class flips", "first diverging op"):
        table.add_column(col)
    for a in report["agreement"]:
        first = ", ".join(f"#{s['op_index']} {s['op']} ({s['samples']} traced)" for s in a["first_divergence_by_op"])
        table.add_row(a["variant"], f"{a['a']} vs {a['b']}", f"{a['bit_exact']}/{a['n']} ({_pct(a['bit_exact_rate'])})",
                      str(a["max_lsb_difference"]), str(a["class_flips"]), first or "-")
    return table


def print_report(report: dict, console: Console | None = None) -> None:
    console = console or Console(width=None if Console().is_terminal else 140)
    console.print(ladder_table(report))
    float_vs = [c for c in report["comparisons"] if c["a"] == "keras-float" and "/" in c["b"]]
    if float_vs:
        console.print("[bold]keras-float vs each int8 rung[/bold]")
        for c in float_vs:
            console.print(f"  {c['b']:<20} {c['verdict']}")
    console.print(agreement_table(report))
    qat = report.get("conversions", {}).get("qat", {}).get("representative_set", {})
    if qat.get("required"):
        console.print(f"QAT conversion needed a representative set: {qat['finding']} "
                      f"({qat['tensors_compared']} activation tensors compared).")
