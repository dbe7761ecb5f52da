"""Anomaly detection with an autoencoder: per-sample reconstruction error as the anomaly score,
ROC AUC with DeLong's interval, paired DeLong test and score agreement between rungs.

Labels: 0 normal, 1 anomalous (mcuquant.data). The autoencoder is trained to reproduce its input on
normal samples only; a sample it reconstructs badly is scored as anomalous. An int8 rung's score is
computed on its dequantized output against the float sample, so input quantization counts as
part of the int8 model's error.
"""

from __future__ import annotations

import numpy as np

from mcuquant import stats
from mcuquant.tasks.base import Task


def reconstruction_error(outputs: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Mean squared error per sample between the model's output and its input (float64)."""
    n = len(x)
    out = np.asarray(outputs, dtype=np.float64).reshape(n, -1)
    ref = np.asarray(x, dtype=np.float64).reshape(n, -1)
    if out.shape != ref.shape:
        from mcuquant.errors import ModelError

        raise ModelError(f"an autoencoder must output its input's shape: {out.shape[1]} output values for "
                         f"{ref.shape[1]} input values per sample")
    return ((out - ref) ** 2).mean(axis=1)


class Anomaly(Task):
    name = "anomaly"
    metric = "auc"
    metric_label = "ROC AUC"
    plot_label = "ROC AUC"
    lower_is_better = False

    def loss(self, keras, model):
        return "mse", []

    def targets(self, x, y):
        return x  # an autoencoder reproduces its input

    def predictions(self, outputs, x, y_shape=None):
        return reconstruction_error(outputs, x)

    def score(self, predictions, y):
        from sklearn.metrics import roc_curve

        fpr, tpr, _ = roc_curve(y, predictions)  # drop_intermediate: only the corners of the curve
        return {**stats.roc_auc_rung(y, predictions), "score_mean": float(np.mean(predictions)),
                "roc": {"fpr": [round(float(v), 6) for v in fpr], "tpr": [round(float(v), 6) for v in tpr]}}

    def compare(self, a, b, pred_a, pred_b, y):
        return {**stats.compare_auc(a, b, y, pred_a, pred_b), "scores": stats.score_agreement(pred_a, pred_b)}

    def sample_size(self, comparison, pred_a, pred_b, y, gap_points):
        c = comparison
        entry = {"a": c["a"], "b": c["b"], "n": c["n"], "auc_a": c["auc_a"], "auc_b": c["auc_b"],
                 "p": c["p"], "distinguishable": c["p"] < self.alpha, "samples_needed": None,
                 "method": "Obuchowski & McClish (1997) with the DeLong variances measured here"}
        if c["auc_a"] != c["auc_b"]:
            needed = stats.auc_sample_size(y, pred_a, pred_b)
            entry.update(samples_needed=needed["n"], anomalous_needed=needed["n_anomalous"],
                         normal_needed=needed["n_normal"])
        return entry

    def rung_text(self, rung):
        lo, hi = rung["ci95"]
        return (f"{rung['id']} AUC {rung['auc']:.3f} (95% CI {lo:.3f}-{hi:.3f}, DeLong; "
                f"{rung['n_normal']} normal / {rung['n_anomalous']} anomalous)")

    def comparison_text(self, c):
        return (f"{c['a']} vs {c['b']}: AUC {c['auc_a']:.3f} vs {c['auc_b']:.3f}, {c['verdict']} (paired DeLong "
                f"p={c['p']:.3g}; anomaly scores' rank correlation {c['scores']['spearman']:.4f})")

    def rung_columns(self):
        return [("ROC AUC", "auc", "auc"), ("95% CI (DeLong)", "ci95", "auc_range")]

    def comparison_columns(self):
        return [("AUC a", "auc_a", "auc"), ("AUC b", "auc_b", "auc"), ("diff", "diff", "auc"), ("DeLong p", "p", "pvalue")]

    def test_note(self):
        return ("Paired DeLong test of two correlated ROC AUCs on the same samples; diff = AUC(b) minus AUC(a) "
                "(negative: b separates anomalies worse).")

    def report_section(self, report):
        from mcuquant import plots

        curves = [{"label": r["id"], "fpr": r["roc"]["fpr"], "tpr": r["roc"]["tpr"], "auc": r["auc"]}
                  for r in report["rungs"] if r.get("roc")]
        if not curves:
            return None
        figures = [("roc-curves", "ROC curves of every rung: " + ", ".join(c["label"] for c in curves),
                    plots.roc_curves(curves, "ROC curves: anomaly score = reconstruction MSE"))]
        return {"id": "roc", "title": "ROC curves", "figures": figures, "headers": [], "rows": [],
                "note": "True positive rate (anomalies found) against false positive rate (normal samples flagged), "
                        "as the threshold on the anomaly score moves."}
