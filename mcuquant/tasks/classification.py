"""Classification: error rate with a Wilson interval, McNemar's exact test between rungs."""

from __future__ import annotations

import numpy as np

from mcuquant import stats
from mcuquant.tasks.base import Task, pct


def confusion_matrix(y: np.ndarray, predictions: np.ndarray, n_classes: int) -> list[list[int]]:
    """Counts per (true class, predicted class): rows are the true classes."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (y.astype(np.int64), predictions.astype(np.int64)), 1)
    return matrix.tolist()


def sample_size_entry(comparison: dict, gap_points: float) -> dict:
    """How many test samples McNemar's test needs (alpha 0.05, power 0.8) to resolve the observed gap
    and a gap of ``gap_points``, with the discordance this test split measured (or the minimal one).
    """
    n = comparison["n"]
    ea, eb = comparison["error_rate_a"], comparison["error_rate_b"]
    discordant = (comparison["a_only_correct"] + comparison["b_only_correct"]) / n
    entry = {"a": comparison["a"], "b": comparison["b"], "n": n, "error_rate_a": ea, "error_rate_b": eb,
             "gap_points": 100 * (eb - ea), "discordant_rate": discordant, "mcnemar_p": comparison["mcnemar_p"],
             "distinguishable": comparison["mcnemar_p"] < 0.05}
    # From the discordant counts themselves: no rounding can put the gap above the discordance.
    a_only, b_only = comparison["a_only_correct"] / n, comparison["b_only_correct"] / n
    entry["samples_needed"] = stats.mcnemar_sample_size(a_only, b_only) if a_only != b_only else None
    # The given gap: around the better rung's error rate, with the measured discordance when it can
    # hold such a gap, else the smallest discordance that can (every discordant sample one way).
    gap = gap_points / 100
    base = min(ea, eb)
    d = min(max(discordant, gap), min(2 * base + gap, 2.0 - 2 * base - gap))
    entry["given_gap_points"] = gap_points
    entry["given_gap_discordant_rate"] = d
    entry["samples_needed_for_given_gap"] = (stats.mcnemar_sample_size((d + gap) / 2, (d - gap) / 2)
                                             if base + gap <= 1 else None)  # no error rate above 100%
    return entry


class Classification(Task):
    name = "classification"
    metric = "error_rate"
    metric_label = "error rate"
    plot_label = "error rate (%)"
    has_classes = True
    p_key = "mcnemar_p"

    def loss(self, keras, model):
        from mcuquant.models import ends_in_softmax

        # A softmax-ended model outputs probabilities; tfmot's wrappers are seen through, so a QAT
        # model compiled with its float model gets the same loss.
        return keras.losses.SparseCategoricalCrossentropy(from_logits=not ends_in_softmax(model)), ["accuracy"]

    def predictions(self, outputs, x, y_shape=None):
        return np.argmax(np.asarray(outputs).reshape(len(outputs), -1), axis=1)

    def score(self, predictions, y, n_classes: int | None = None):
        n_classes = n_classes or int(max(y.max(initial=0), predictions.max(initial=0))) + 1
        return {**stats.classification_rung(predictions == y), "confusion": confusion_matrix(y, predictions, n_classes)}

    def score_all(self, predictions, y):
        n_classes = int(max([y.max(initial=0)] + [p.max(initial=0) for p in predictions.values()])) + 1
        return {rid: self.score(p, y, n_classes) for rid, p in predictions.items()}

    def compare(self, a, b, pred_a, pred_b, y):
        return stats.compare_classification(a, b, pred_a == y, pred_b == y)

    def sample_size(self, comparison, pred_a, pred_b, y, gap_points):
        return sample_size_entry(comparison, gap_points)

    def disagreements(self, pred_a, pred_b):
        return pred_a != pred_b

    def rung_text(self, rung):
        lo, hi = rung["ci95"]
        return f"{rung['id']} {pct(rung['error_rate'])} (95% CI {pct(lo)}-{pct(hi)}, {rung['errors']}/{rung['n']})"

    def comparison_text(self, c):
        return (f"{c['a']} vs {c['b']}: {c['diff_points']:+.2f} points of error rate, {c['verdict']} "
                f"(McNemar exact p={c['mcnemar_p']:.3g}; right/wrong differ on "
                f"{pct((c['a_only_correct'] + c['b_only_correct']) / c['n'])} of samples)")

    def rung_columns(self):
        return [("errors", "errors", "count"), ("error rate", "error_rate", "pct"), ("95% CI (Wilson)", "ci95", "pct_range")]

    def comparison_columns(self):
        return [("error a", "error_rate_a", "pct"), ("error b", "error_rate_b", "pct"), ("diff (points)", "diff_points", "points"),
                ("only a right", "a_only_correct", "count"), ("only b right", "b_only_correct", "count"),
                ("McNemar p", "mcnemar_p", "pvalue")]

    def test_note(self):
        return ("McNemar's exact test on the same samples; diff = error rate of b minus a, in percentage points "
                "(positive: b is worse).")

    def report_section(self, report):
        from mcuquant import plots

        names = (report.get("dataset") or {}).get("class_names")
        figures = [(f"confusion-{i}", f"confusion matrix of {r['id']}", plots.confusion_png(str(r["id"]), r["confusion"], names))
                   for i, r in enumerate(report["rungs"]) if r.get("confusion")]
        return {"id": "confusion", "title": "Confusion matrices", "figures": figures, "headers": [], "rows": [],
                "note": "Rows: true class; columns: predicted class; cells: test samples."}

    def plot_value(self, rung):
        lo, hi = rung["ci95"]
        return 100 * rung["error_rate"], 100 * lo, 100 * hi
