"""Quantization-aware training: the same loss as the float model, and honest range status."""

import numpy as np
import pytest

from mcuquant.config import TrainingConfig
from mcuquant.train import QAT_EMA_DECAY, make_quantization_aware, qat_range_status, quantization_aware, train_float
from mcuquant.train import set_seeds
from mcuquant.tf_import import keras


def _dense_classifier(softmax: bool):
    k = keras()
    inp = k.Input((8, 8, 1))
    x = k.layers.Flatten()(inp)
    x = k.layers.Dense(32, activation="relu")(x)
    return k.Model(inp, k.layers.Dense(10, activation="softmax" if softmax else None)(x))


@pytest.mark.parametrize("softmax", [True, False], ids=["softmax-ended", "logits-ended"])
def test_qat_model_is_trained_on_the_float_models_loss(digits, softmax):
    """Before fine-tuning, the QAT model's loss on a fixed batch equals the float model's up to
    fake-quant noise. A QAT model compiled with from_logits=True on tfmot's wrapped softmax makes
    Keras warn (an error under this suite's filterwarnings) and trains on another loss."""
    set_seeds(0)
    model = _dense_classifier(softmax)
    cfg = TrainingConfig()
    train_float(model, digits, cfg, epochs=3, progress=False)
    qat = make_quantization_aware(model, "classification", cfg)
    x, y = digits.x_test[:128], digits.y_test[:128]
    # One forward pass in training mode sets the weight quantizers' ranges (no weight changes).
    qat(digits.x_train[:256], training=True)
    float_loss = model.evaluate(x, y, verbose=0)[0]
    qat_loss = qat.evaluate(x, y, verbose=0)[0]
    assert float_loss < 2.0  # trained: far below the uniform guess's ln(10) = 2.30
    assert qat_loss == pytest.approx(float_loss, rel=0.05)
    # Training runs the same loss too: no warning, and the loss goes down, not to ln(10).
    qat.fit(digits.x_train, digits.y_train, epochs=1, batch_size=32, verbose=0)
    assert qat.evaluate(x, y, verbose=0)[0] < 2.0


def test_range_status_says_how_far_ranges_moved_from_tfmots_initial_values(digits):
    set_seeds(0)
    model = _dense_classifier(True)
    cfg = TrainingConfig(qat_epochs=1)
    train_float(model, digits, cfg, epochs=1, progress=False)
    qat, history = quantization_aware(model, digits, cfg, progress=False)
    steps = history["steps"]
    assert steps == int(np.ceil(len(digits.x_train) / cfg.batch_size))
    status = history["activation_ranges"]
    assert status["steps"] == steps and not status["learned"]
    assert status["initial_share_left"] == pytest.approx(QAT_EMA_DECAY**steps)
    assert status["steps_needed"] > 10 * steps
    # Every activation range holds about decay**steps of the initial -6: the data moved it very little.
    mins = [r["min"] for r in status["ranges"]]
    assert mins and all(m == pytest.approx(-6 * QAT_EMA_DECAY**steps, rel=0.05) for m in mins)
    assert qat_range_status(qat, status["steps_needed"])["learned"]
