"""The report's figures (matplotlib), each returned as PNG bytes.

Figures are drawn on matplotlib's Agg canvas directly (``Figure`` + ``FigureCanvasAgg``), never
through pyplot: no global backend switch, no open-figure registry, nothing shown on screen, so
rendering works headless and does not disturb a caller's own matplotlib session. matplotlib is
imported inside the functions: importing mcuquant stays free of it.

Every label drawn here is user data (rung ids, layer names, class names): mathtext parsing is off
so a ``$`` in a name is drawn as a ``$``.
"""

from __future__ import annotations

import io
import warnings

# One colour per ladder family, so PTQ and QAT rungs read as two series.
FAMILY_COLOURS = {"keras": "#555555", "ptq": "#1f77b4", "qat": "#d62728"}
OTHER_COLOUR = "#2ca02c"
MAX_LAYER_BARS = 40  # taller charts stop being readable; the table lists every layer
MAX_ANNOTATED_CLASSES = 20  # count labels in confusion cells up to this many classes
_LABEL_CHARS = 48


def _short(label: str, limit: int = _LABEL_CHARS) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "\u2026"


def _family(rung_id: str) -> str:
    return rung_id.split("/")[0] if "/" in rung_id else rung_id.split("-")[0]


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # Names in scripts DejaVu Sans lacks are drawn as boxes; that is not an error.
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from", category=UserWarning)
        figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _rc():
    import matplotlib

    return matplotlib.rc_context({"text.parse_math": False, "font.size": 9, "axes.titlesize": 10})


def ladder_png(values: list[tuple[str, float, float, float]], *, label: str, title: str) -> bytes:
    """Each rung's metric with its 95% interval as error bars, rungs in ladder order.

    ``values``: (rung id, value, interval low, interval high) in the unit of ``label``, as the task
    kind gives them (mcuquant.tasks: error rate in percent, MAE, ROC AUC). Rungs without the metric
    (unlabelled device runs) are left out by the caller.
    """
    import math

    with _rc():
        figure = _new_figure(max(5.0, 0.75 * len(values) + 1.5), 3.6)
        axes = figure.add_subplot()
        for position, (rung_id, value, lo, hi) in enumerate(values):
            below, above = value - lo, hi - value
            bars = None if math.isnan(below) or math.isnan(above) else [[max(below, 0.0)], [max(above, 0.0)]]
            colour = FAMILY_COLOURS.get(_family(rung_id), OTHER_COLOUR)
            axes.errorbar([position], [value], yerr=bars, fmt="o", color=colour, ecolor=colour,
                          capsize=4, markersize=6, linewidth=1.5)
        axes.set_xticks(range(len(values)))
        axes.set_xticklabels([_short(v[0], 24) for v in values], rotation=35, ha="right")
        axes.set_xlim(-0.6, len(values) - 0.4)
        axes.set_ylim(bottom=0)
        axes.set_ylabel(label)
        axes.set_title(title)
        axes.grid(axis="y", alpha=0.3)
        return _png(figure)


def confusion_png(rung_id: str, matrix: list[list[int]], class_names: list[str] | None = None) -> bytes:
    """A heatmap of one rung's confusion matrix (rows: true class, columns: predicted), with counts."""
    import numpy as np

    counts = np.asarray(matrix, dtype=np.int64)
    k = counts.shape[0]
    names = [_short(str(c), 12) for c in class_names] if class_names and len(class_names) == k else [str(i) for i in range(k)]
    with _rc():
        side = min(6.0, max(2.8, 0.32 * k + 1.6))
        figure = _new_figure(side, side)
        axes = figure.add_subplot()
        axes.imshow(counts, cmap="Blues", interpolation="nearest")
        if k <= MAX_ANNOTATED_CLASSES:
            threshold = counts.max() / 2 if counts.size else 0
            for (i, j), value in np.ndenumerate(counts):
                if value:
                    axes.text(j, i, str(value), ha="center", va="center", fontsize=7,
                              color="white" if value > threshold else "black")
        ticks = range(k)
        axes.set_xticks(ticks)
        axes.set_yticks(ticks)
        axes.set_xticklabels(names, rotation=90 if k > 10 else 0, fontsize=7)
        axes.set_yticklabels(names, fontsize=7)
        axes.set_xlabel("predicted class")
        axes.set_ylabel("true class")
        axes.set_title(_short(rung_id, 30))
        return _png(figure)


def layers_png(variant: str, rows: list[dict]) -> bytes:
    """Per-layer quantization error: horizontal bars of rmse_over_scale, worst at the top.

    A diamond marks ``local_rmse_over_scale`` (the layer's own error, from TFLite's
    QuantizationDebugger) where present; the share of clipped float values is written at the
    bar's end when it is not zero. At most MAX_LAYER_BARS rows are drawn (worst first).
    """
    shown = sorted(rows, key=lambda r: r["rmse_over_scale"], reverse=True)[:MAX_LAYER_BARS]
    with _rc():
        figure = _new_figure(7.5, max(2.2, 0.32 * len(shown) + 1.3))
        axes = figure.add_subplot()
        positions = list(range(len(shown)))
        values = [r["rmse_over_scale"] for r in shown]
        axes.barh(positions, values, color="#1f77b4", height=0.65, label="accumulated RMSE / scale")
        local = [(p, r["local_rmse_over_scale"]) for p, r in zip(positions, shown)
                 if r.get("local_rmse_over_scale") is not None]
        if local:
            axes.plot([v for _, v in local], [p for p, _ in local], "D", color="#ff7f0e", markersize=5,
                      label="local RMSE / scale (QuantizationDebugger)")
        top = max(values + [v for _, v in local] + [1e-9])
        for position, row in zip(positions, shown):
            if row.get("clipped_share"):
                axes.text(row["rmse_over_scale"] + 0.01 * top, position, f"clipped {100 * row['clipped_share']:.2f}%",
                          va="center", fontsize=7, color="#b00000")
        axes.set_yticks(positions)
        axes.set_yticklabels([_short(f"#{r['op_index']} {r['layer']}") for r in shown], fontsize=7)
        axes.invert_yaxis()  # worst first, at the top
        axes.set_xlim(0, top * 1.25)
        axes.set_xlabel("RMSE in quantization steps (error / scale)")
        axes.set_title(_short(f"{variant}: per-layer error against the float model", 70))
        axes.grid(axis="x", alpha=0.3)
        figure.legend(loc="outside lower center", ncols=2, fontsize=7, frameon=False)
        return _png(figure)


# Line styles cycle with the colours so that rungs with the same curve (tflm-host and a
# bit-exact device) stay visible on top of each other.
_ROC_STYLES = ("-", "--", "-.", ":")


def roc_curves(curves: list, title: str) -> bytes:
    """ROC curves of several rungs on one square chart, each rung's AUC in the legend.

    Each curve is either ``(label, labels, scores)`` — 0/1 labels (1 = anomalous) and anomaly
    scores, higher = more anomalous, drawn with ``sklearn.metrics.roc_curve`` and its AUC from
    ``roc_auc_score`` — or a precomputed mapping ``{"label", "fpr", "tpr"}`` with an optional
    ``"auc"`` (otherwise the trapezoidal area under the points, ``sklearn.metrics.auc``, which
    equals ``roc_auc_score`` for a full curve from (0, 0) to (1, 1)). The dotted diagonal is
    chance.
    """
    from sklearn.metrics import auc, roc_auc_score, roc_curve

    with _rc():
        figure = _new_figure(5.2, 4.8)
        axes = figure.add_subplot()
        axes.plot([0, 1], [0, 1], ":", color="#999999", linewidth=1, label="chance (AUC 0.5)")
        for index, curve in enumerate(curves):
            if isinstance(curve, dict):
                label, fpr, tpr = curve["label"], curve["fpr"], curve["tpr"]
                area = curve.get("auc")
                if area is None:
                    area = auc(fpr, tpr)
            else:
                label, labels, scores = curve
                fpr, tpr, _ = roc_curve(labels, scores)
                area = roc_auc_score(labels, scores)
            axes.plot(fpr, tpr, _ROC_STYLES[index % len(_ROC_STYLES)], color=f"C{index % 10}",
                      linewidth=1.6, label=f"{_short(str(label), 32)} (AUC {area:.3f})")
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1.01)
        axes.set_aspect("equal")
        axes.set_xlabel("false positive rate (normal samples flagged)")
        axes.set_ylabel("true positive rate (anomalies found)")
        axes.set_title(_short(title, 70))
        axes.grid(alpha=0.3)
        axes.legend(loc="lower right", fontsize=7)
        return _png(figure)
