"""Regression with one or several outputs: MAE/RMSE with a t-interval, Wilcoxon signed-rank between rungs."""

from __future__ import annotations

import numpy as np

from mcuquant import stats
from mcuquant.tasks.base import Task


class Regression(Task):
    name = "regression"
    metric = "mae"
    metric_label = "MAE"
    plot_label = "MAE"

    def loss(self, keras, model):
        return "mse", ["mae"]

    def predictions(self, outputs, x, y_shape=None):
        outputs = np.asarray(outputs, dtype=np.float32)
        return outputs.reshape(y_shape if y_shape is not None else (len(outputs), -1))

    def score(self, predictions, y):
        return stats.regression_rung(y, predictions.reshape(y.shape))

    def compare(self, a, b, pred_a, pred_b, y):
        return stats.compare_regression(a, b, stats.absolute_errors(y, pred_a.reshape(y.shape)),
                                        stats.absolute_errors(y, pred_b.reshape(y.shape)))

    def rung_text(self, rung):
        lo, hi = rung["mae_ci95"]
        text = f"{rung['id']} MAE {rung['mae']:.4g} (95% CI {lo:.4g}-{hi:.4g}), RMSE {rung['rmse']:.4g}"
        per_output = rung.get("per_output") or []
        if per_output:
            text += " [per output MAE " + ", ".join(f"{o['mae']:.3g}" for o in per_output) + "]"
        return text

    def comparison_text(self, c):
        return f"{c['a']} vs {c['b']}: MAE {c['mae_a']:.4g} vs {c['mae_b']:.4g}, {c['verdict']} (Wilcoxon p={c['p']:.3g})"

    def rung_columns(self):
        return [("MAE", "mae", "num"), ("95% CI (MAE)", "mae_ci95", "num_range"), ("RMSE", "rmse", "num")]

    def comparison_columns(self):
        return [("MAE a", "mae_a", "num"), ("MAE b", "mae_b", "num"), ("diff", "diff", "num"), ("Wilcoxon p", "p", "pvalue")]

    def test_note(self):
        return ("Wilcoxon signed-rank test on per-sample absolute errors (mean over outputs); diff = MAE(b) "
                "minus MAE(a).")

    def report_section(self, report):
        rows = [[r["id"], o["output"], f"{o['mae']:.4g}", f"{o['mae_ci95'][0]:.4g}\u2013{o['mae_ci95'][1]:.4g}",
                 f"{o['rmse']:.4g}"] for r in report["rungs"] for o in r.get("per_output") or []]
        if not rows:
            return None
        return {"id": "per-output", "title": "Per output", "figures": [],
                "headers": ["rung", "output", "MAE", "95% CI (MAE)", "RMSE"], "rows": rows,
                "note": "The overall MAE and RMSE average every output equally."}

    def plot_value(self, rung):
        lo, hi = rung["mae_ci95"]
        return rung["mae"], lo, hi
