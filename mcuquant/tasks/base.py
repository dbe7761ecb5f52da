"""The interface every task kind implements (see mcuquant.tasks)."""

from __future__ import annotations

import numpy as np


def pct(rate: float) -> str:
    return f"{100 * rate:.2f}%"


class Task:
    """One task kind. Subclasses set the class attributes and implement the methods."""

    name: str = ""
    metric: str = ""  # the rung result key the ladder plots ("error_rate", "mae", "auc")
    metric_label: str = ""  # its name in words
    lower_is_better: bool = True
    has_classes: bool = False  # predictions are classes: class flips and confusion matrices apply
    p_key: str = "p"  # the p-value's key in a comparison
    alpha: float = 0.05

    # --- training -------------------------------------------------------------------------
    def loss(self, keras, model) -> tuple[object, list]:
        """(loss, metrics) to compile ``model`` with (tf-keras module ``keras``)."""
        raise NotImplementedError

    def targets(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """What the model is trained to output for samples ``x`` with labels ``y``."""
        return y

    # --- measuring ------------------------------------------------------------------------
    def predictions(self, outputs: np.ndarray, x: np.ndarray, y_shape: tuple[int, ...] | None = None) -> np.ndarray:
        """Per-sample predictions from float (or dequantized) model outputs (N, ...) for samples ``x``."""
        raise NotImplementedError

    def score(self, predictions: np.ndarray, y: np.ndarray) -> dict:
        """One rung's metric with its 95% interval (and whatever else the kind reports per rung)."""
        raise NotImplementedError

    def score_all(self, predictions: dict[str, np.ndarray], y: np.ndarray) -> dict[str, dict]:
        """``score`` of every rung (a kind may share something across rungs, e.g. the class count)."""
        return {rid: self.score(p, y) for rid, p in predictions.items()}

    def compare(self, a: str, b: str, pred_a: np.ndarray, pred_b: np.ndarray, y: np.ndarray) -> dict:
        """Rung ``b`` against rung ``a`` on the same samples: paired test, ``"verdict"`` in words."""
        raise NotImplementedError

    def sample_size(self, comparison: dict, pred_a: np.ndarray, pred_b: np.ndarray, y: np.ndarray,
                    gap_points: float) -> dict | None:
        """Test samples the paired test needs to resolve the gap of ``comparison`` (``"samples_needed"``,
        None when there is no gap), or None when the kind has no sample-size formula."""
        return None

    def distinguishable(self, comparison: dict) -> bool:
        """Whether the paired test tells the two rungs apart at ``alpha``."""
        return comparison[self.p_key] < self.alpha

    def disagreements(self, pred_a: np.ndarray, pred_b: np.ndarray) -> np.ndarray | None:
        """Per-sample: do two rungs predict differently? None where every continuous value differs."""
        return None

    # --- words ----------------------------------------------------------------------------
    def rung_text(self, rung: dict) -> str:
        """``"keras-float 3.61% (95% CI 2.1%-6.1%, 13/360)"``: one rung's metric in words."""
        raise NotImplementedError

    def comparison_text(self, c: dict) -> str:
        """``"a vs b: +0.28 points, not distinguishable at n=360 (...)"``."""
        return f"{c['a']} vs {c['b']}: {c['verdict']}"

    # --- report ---------------------------------------------------------------------------
    def rung_columns(self) -> list[tuple[str, str, str]]:
        """(header, rung result key, number format) of the ladder table's metric columns; the formats
        are mcuquant.render's filters."""
        raise NotImplementedError

    def comparison_columns(self) -> list[tuple[str, str, str]]:
        """(header, comparison key, number format) of the comparison table's metric columns."""
        raise NotImplementedError

    def test_note(self) -> str:
        """One sentence naming the paired test and what ``diff`` means."""
        raise NotImplementedError

    def plot_value(self, rung: dict) -> tuple[float, float, float] | None:
        """(value, low, high) of the ladder plot, in the unit of ``plot_label``."""
        lo, hi = rung["ci95"]
        return rung[self.metric], lo, hi

    plot_label: str = ""

    def report_section(self, report: dict) -> dict | None:
        """The kind's own report section: ``{"id", "title", "note", "figures": [(key, alt, png)],
        "headers": [...], "rows": [[...]]}`` built from report.json alone, or None."""
        return None
