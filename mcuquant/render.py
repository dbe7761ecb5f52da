"""Render a ladder report (the report.json dict) as one self-contained HTML file and a Markdown file.

    write_report(report, out_dir) -> {"html": out_dir/report.html, "markdown": out_dir/report.md}

The report dict is the only input: nothing else is read. report.html embeds its figures as base64
PNG data URIs and its stylesheet inline, and carries a Content-Security-Policy that allows nothing
else (no scripts, no fetches), so it opens offline and a name like ``<script>`` in a rung or layer
cannot run. report.md links the same figures as PNG files in ``report_files/`` next to it.

Sections appear in a fixed order, each saying "not measured" when its data is absent: findings,
the ladder (plot, rungs, comparisons, sample sizes), confusion matrices, per-layer error, range
diff and calibration, host vs device, sizes and latency. Templates are report.html.j2 (autoescaped)
and report.md.j2 (every value escaped for Markdown) in the repository's templates/ folder.
"""

from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2
from markupsafe import Markup

from mcuquant import plots
from mcuquant.errors import ConfigError
from mcuquant.export import TEMPLATES_DIR
from mcuquant.tasks import get_task

FIGURES_DIR = "report_files"  # PNGs of report.md, next to it
MAX_LISTED = 50  # rows of long per-sample lists (mismatches, flips); report.json has all of them


@dataclass
class Image:
    key: str
    alt: str
    png: bytes

    @property
    def file(self) -> str:
        return f"{FIGURES_DIR}/{self.key}.png"

    @property
    def uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


# ---------------------------------------------------------------------------------------------
# Number formatting (jinja filters). None (not measured) is shown as a dash.

DASH = "\u2013"


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def pct(x, digits: int = 2) -> str:
    return DASH if _missing(x) else f"{100 * x:.{digits}f}%"


def pct_range(ci) -> str:
    if not ci or any(_missing(v) for v in ci):
        return DASH
    return f"{100 * ci[0]:.2f}{DASH}{100 * ci[1]:.2f}%"


def num_range(ci) -> str:
    if not ci or any(_missing(v) for v in ci):
        return DASH
    return f"{ci[0]:.4g}{DASH}{ci[1]:.4g}"


def pvalue(p) -> str:
    if _missing(p):
        return DASH
    return "<0.001" if p < 0.001 else f"{p:.3g}"


def count(n) -> str:
    """Counts with thousands separators; a float count (a median) to an integer from 100 up."""
    if _missing(n):
        return DASH
    if isinstance(n, bool) or not isinstance(n, (int, float)):
        return str(n)
    if isinstance(n, float) and not n.is_integer():
        return f"{n:,.0f}" if abs(n) >= 100 else f"{n:.3g}"
    return f"{int(n):,}" if isinstance(n, float) else f"{n:,}"


def num(x, digits: int = 4) -> str:
    return DASH if _missing(x) else f"{x:.{digits}g}"


def points(x) -> str:
    """Percentage points with their sign (0.00 has none)."""
    return DASH if _missing(x) else f"{x:+.2f}" if round(x, 2) else "0.00"


def used_of(used, limit) -> str:
    """Bytes used, of the limit, with the share."""
    if _missing(used):
        return DASH
    return f"{used:,} of {limit:,} ({100 * used / limit:.1f}%)" if limit else f"{used:,}"


def scales(values) -> str:
    """A tensor's scale: the value, or the range over its channels."""
    if not values:
        return DASH
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{min(values):.4g}{DASH}{max(values):.4g} ({len(values)} ch.)"


def listing(values) -> str:
    return ", ".join(str(v) for v in values) if values else DASH


def zero_points(values) -> str:
    """A tensor's zero point(s): one value when the channels share it (int8 weights always do)."""
    if not values:
        return DASH
    if len(set(values)) == 1:
        return f"{values[0]}" + (f" ({len(values)} ch.)" if len(values) > 1 else "")
    return f"{min(values)}{DASH}{max(values)} ({len(values)} ch.)"


def auc(x) -> str:
    return DASH if _missing(x) else f"{x:.3f}"


def auc_range(ci) -> str:
    if not ci or any(_missing(v) for v in ci):
        return DASH
    return f"{ci[0]:.3f}{DASH}{ci[1]:.3f}"


_FILTERS = {"auc": auc, "auc_range": auc_range, "pct": pct, "pct_range": pct_range, "num_range": num_range, "pvalue": pvalue, "count": count,
            "num": num, "points": points, "used_of": used_of, "scales": scales, "listing": listing,
            "zero_points": zero_points}



def cell(value, fmt: str) -> str:
    """``value`` in the number format ``fmt`` (one of the filters above), as the tasks name them."""
    return _FILTERS[fmt](value)


# ---------------------------------------------------------------------------------------------
# Template environments.

_MD_SPECIAL = re.compile(r"([\\`*\[\]|<>])")


def markdown_text(value) -> str:
    """A value as literal Markdown text: one line, punctuation that would format or open HTML escaped.
    Markup values are the template's own Markdown and pass unchanged."""
    if isinstance(value, Markup):
        return str(value)
    if value is None:
        return ""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(value).split()))


def _environment(autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        autoescape=autoescape,
        finalize=None if autoescape else markdown_text,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(_FILTERS)
    return env


_HTML = _environment(autoescape=True)
_MARKDOWN = _environment(autoescape=False)

# ---------------------------------------------------------------------------------------------
# The report, as the templates need it.


def _slug(text: str, index: int) -> str:
    """An id/file name safe anywhere: lowercase letters, digits and dashes, unique by index."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:40]
    return f"{index}-{cleaned}" if cleaned else str(index)


def _is_device(rung: dict) -> bool:
    return str(rung.get("id", "")).endswith("/device") or "board" in rung


def _check(report) -> None:
    rungs = report.get("rungs") if isinstance(report, dict) else None
    if not isinstance(rungs, list) or not all(isinstance(r, dict) and "id" in r for r in rungs):
        raise ConfigError("not a mcuquant report (no \"rungs\" list of rungs with ids): pass the report.json that "
                          "`mcuquant compare`, `validate` or `demo` wrote")


def _ladder(report: dict, task, images: list[Image]) -> dict:
    """The ladder plot and tables: metric columns and the paired test's note come from the task kind."""
    scored = [r for r in report["rungs"] if task is not None and not _missing(r.get(task.metric))]
    if scored:
        alt = (f"accuracy ladder: {task.metric_label} with 95% interval per rung, "
               + ", ".join(str(r["id"]) for r in scored))
        values = [(str(r["id"]), *task.plot_value(r)) for r in scored]
        images.append(Image("ladder-plot", alt, plots.ladder_png(values, label=task.plot_label,
                                                                 title=f"accuracy ladder: {task.metric_label} "
                                                                       "with 95% interval")))
    rung_columns = task.rung_columns() if task else []
    comparison_columns = task.comparison_columns() if task else []
    return {"rungs": report["rungs"], "scored": bool(scored), "image": images[-1] if scored else None,
            "comparisons": report.get("comparisons") or [], "test_note": task.test_note() if task else "",
            "rung_headers": [h for h, _, _ in rung_columns],
            "rung_cells": [[cell(r.get(k), f) for _, k, f in rung_columns] for r in report["rungs"]],
            "comparison_headers": [h for h, _, _ in comparison_columns],
            "comparison_cells": [[cell(c.get(k), f) for _, k, f in comparison_columns]
                                 for c in report.get("comparisons") or []]}


def _task_section(report: dict, task, images: list[Image]) -> dict | None:
    """The task kind's own section (confusion matrices, per-output errors, ROC curves)."""
    section = task.report_section(report) if task is not None else None
    if section is None:
        return None
    figures = []
    for index, (key, alt, png) in enumerate(section["figures"]):
        figures.append(Image(_slug(key, index), alt, png))
    images.extend(figures)
    return {**section, "figures": figures}


def _layers(explain: dict, images: list[Image]) -> list[dict]:
    out = []
    for index, (variant, result) in enumerate((explain.get("layers") or {}).items()):
        if not result:
            continue
        rows = result.get("rows") or []
        image = None
        if rows:
            image = Image(f"layers-{_slug(variant, index)}", f"per-layer quantization error of {variant}, worst first",
                          plots.layers_png(str(variant), rows))
            images.append(image)
        out.append({"variant": variant, "slug": _slug(variant, index), "result": result, "rows": rows, "image": image,
                    "clipped": len(rows) > plots.MAX_LAYER_BARS})
    return out


def _extras(section: dict | None, skip: tuple[str, ...]) -> list[tuple[str, object]]:
    """A section's plain scalar fields (notes, methods, counts) that the template has no column for."""
    return [(k, v) for k, v in (section or {}).items()
            if k not in skip and isinstance(v, (str, int, float, bool)) and v is not None]


def _range_diff(explain: dict) -> dict | None:
    weights = explain.get("weights_copied")
    if not weights:
        return None
    diff = weights.get("diff") or {}
    tensors = diff.get("tensors") or []
    differing = [t for t in tensors if (t.get("relative_scale_difference") or 0) > 0 or t.get("zero_point_differs")]
    outputs = diff.get("outputs")
    return {"diff": diff, "differing": differing, "matched": len(tensors), "summary": diff.get("summary") or {},
            "outputs": outputs, "flips": ((outputs or {}).get("flips") or [])[:MAX_LISTED],
            "extras": _extras(weights, ("diff",))}


def _device_mismatches(rungs: list[dict]) -> list[dict]:
    out = []
    for rung in rungs:
        listed = rung.get("mismatches")
        if listed is None:
            continue
        out.append({"rung": rung["id"], "oracle": rung.get("oracle"), "n": rung.get("n"),
                    "total": len(listed), "rows": listed[:MAX_LISTED]})
    return out


def context(report: dict) -> tuple[dict, list[Image]]:
    """The templates' variables, and the figures (drawn here) in the order they appear."""
    _check(report)
    explain = report.get("explain") or {}
    dataset = report.get("dataset") or {}
    task_name = report.get("task") or dataset.get("task")
    task = get_task(task_name) if task_name else None
    images: list[Image] = []
    device_rungs = [r for r in report["rungs"] if _is_device(r)]
    device = explain.get("device")
    calibration = explain.get("calibration")
    variables = {
        "report": report,
        "dataset": dataset,
        "model": report.get("model") or {},
        "task": task_name,
        "has_classes": bool(task and task.has_classes),
        "findings": explain.get("findings") or [],
        "ladder": _ladder(report, task, images),
        "sample_size": explain.get("sample_size") or [],
        "task_section": _task_section(report, task, images),
        "layers": _layers(explain, images),
        "range_diff": _range_diff(explain),
        "calibration": calibration,
        "calibration_extras": _extras(calibration, ("rungs", "comparison")),
        "calibration_cells": [[cell(r.get(k), f) for _, k, f in task.rung_columns()]
                              for r in (calibration or {}).get("rungs") or []] if task else [],
        "agreement": report.get("agreement") or [],
        "device": device,
        "device_disagreements": ((device or {}).get("disagreements") or [])[:MAX_LISTED],
        "device_mismatches": _device_mismatches(device_rungs),
        "device_rungs": device_rungs,
        "latency_notes": sorted({r["latency"]["note"] for r in device_rungs if (r.get("latency") or {}).get("note")}),
        "conversions": report.get("conversions") or {},
        "max_listed": MAX_LISTED,
        "max_layer_bars": plots.MAX_LAYER_BARS,
    }
    return variables, images


def write_report(report: dict, out_dir) -> dict:
    """Write report.html (self-contained) and report.md (+ report_files/*.png) into out_dir.

    Returns {"html": Path, "markdown": Path}. Raises ConfigError when ``report`` is not a
    mcuquant report (no "rungs").
    """
    variables, images = context(report)
    out = Path(out_dir)
    figures = out / FIGURES_DIR
    figures.mkdir(parents=True, exist_ok=True)
    for image in images:
        (out / image.file).write_bytes(image.png)
    html = out / "report.html"
    html.write_text(_HTML.get_template("report.html.j2").render(variables), encoding="utf-8")
    markdown = out / "report.md"
    markdown.write_text(_MARKDOWN.get_template("report.md.j2").render(variables), encoding="utf-8")
    return {"html": html, "markdown": markdown}
