"""The report's figures (mcuquant.plots): real PNGs, decoded with Pillow."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_curve

from mcuquant import plots


def decoded(png: bytes) -> Image.Image:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(png))
    image.load()
    return image.convert("RGB")


@pytest.fixture(scope="module")
def rungs():
    """Labels and anomaly scores of three rungs: a float model and two int8 rungs, one bit-exact."""
    rng = np.random.default_rng(4)
    labels = np.r_[np.zeros(150, dtype=int), np.ones(90, dtype=int)]
    float_mse = rng.exponential(1.0, size=labels.size) + 1.2 * labels
    int8_mse = float_mse + rng.normal(scale=0.3, size=labels.size)
    return labels, float_mse, int8_mse


def test_roc_curves_png(rungs):
    labels, float_mse, int8_mse = rungs
    png = plots.roc_curves([("keras-float", labels, float_mse), ("ptq/tflm-host", labels, int8_mse),
                            ("ptq/device", labels, int8_mse.copy())], "digits one-class: ROC per rung")
    image = decoded(png)
    assert image.size == (520, 480)  # 5.2 x 4.8 inches at 100 dpi
    colours = image.getcolors(maxcolors=1 << 16)
    assert colours is not None and len(colours) > 20  # lines, legend and text, not a blank canvas
    # The rung lines are drawn in matplotlib's C0, C1, C2 (blue, orange, green).
    pixels = {rgb for _, rgb in colours}
    for rgb in ((0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E), (0x2C, 0xA0, 0x2C)):
        assert rgb in pixels


def test_precomputed_curve_draws_the_same_figure(rungs):
    labels, float_mse, _ = rungs
    fpr, tpr, _ = roc_curve(labels, float_mse)
    from_scores = plots.roc_curves([("keras-float", labels, float_mse)], "ROC")
    from_points = plots.roc_curves([{"label": "keras-float", "fpr": fpr.tolist(), "tpr": tpr.tolist()}], "ROC")
    assert from_points == from_scores  # same curve, same AUC in the legend (trapezoid = roc_auc_score)
    other_auc = plots.roc_curves([{"label": "keras-float", "fpr": fpr, "tpr": tpr, "auc": 0.5}], "ROC")
    assert other_auc != from_scores  # the legend shows the AUC given


def test_roc_curves_draw_user_names_as_text(rungs):
    labels, float_mse, _ = rungs
    image = decoded(plots.roc_curves([("$x^2$ rung " + "n" * 80, labels, float_mse)], "$title$"))
    assert image.size == (520, 480)
