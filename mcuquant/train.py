"""Float training and quantization-aware fine-tuning (tfmot), with fixed seeds and early stopping."""

from __future__ import annotations

from mcuquant.config import TrainingConfig
from mcuquant.data import Dataset
from mcuquant.errors import ModelError
from mcuquant.models import ends_in_softmax
from mcuquant.progress import progress_bar
from mcuquant.tf_import import keras, tensorflow, tfmot


def set_seeds(seed: int) -> None:
    """Same seed, same data, same code: same weights (op determinism trades a little speed)."""
    keras().utils.set_random_seed(seed)
    tensorflow().config.experimental.enable_op_determinism()


def _compile(model, task: str, learning_rate: float) -> None:
    k = keras()
    if task == "classification":
        loss = k.losses.SparseCategoricalCrossentropy(from_logits=not ends_in_softmax(model))
        metrics = ["accuracy"]
    else:
        loss, metrics = "mse", ["mae"]
    model.compile(optimizer=k.optimizers.Adam(learning_rate), loss=loss, metrics=metrics)


def _fit(model, data: Dataset, epochs: int, cfg: TrainingConfig, label: str, progress: bool) -> dict:
    k = keras()

    class _Bar(k.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            advance(**{key: float(v) for key, v in (logs or {}).items() if key in ("loss", "val_loss", "val_accuracy")})

    stop = k.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True)
    has_val = len(data.x_val) > 0
    with progress_bar(label, epochs, enabled=progress) as advance:
        history = model.fit(
            data.x_train, data.y_train,
            validation_data=(data.x_val, data.y_val) if has_val else None,
            epochs=epochs, batch_size=cfg.batch_size, shuffle=True, verbose=0,
            callbacks=[_Bar()] + ([stop] if has_val else []),
        )
    return {"epochs_run": len(history.history["loss"]), **{k_: [float(v) for v in vs] for k_, vs in history.history.items()}}


def train_float(model, data: Dataset, cfg: TrainingConfig, epochs: int, *, progress: bool = True) -> dict:
    """Train `model` in float; returns the Keras history (losses per epoch)."""
    set_seeds(cfg.seed)
    _compile(model, data.task, cfg.learning_rate)
    if epochs == 0:
        return {"epochs_run": 0}
    return _fit(model, data, epochs, cfg, "train float", progress)


def quantization_aware(float_model, data: Dataset, cfg: TrainingConfig, *, progress: bool = True):
    """Wrap `float_model` with tfmot's default 8-bit scheme and fine-tune it; returns (qat_model, history).

    The float model is left untouched. QAT learns the activation ranges while training, which is
    why at least one epoch is needed before conversion.
    """
    set_seeds(cfg.seed)
    try:
        qat_model = tfmot().quantization.keras.quantize_model(float_model)
    except Exception as exc:  # tfmot raises RuntimeError/ValueError for layers it cannot wrap
        raise ModelError(f"tfmot cannot make '{float_model.name}' quantization-aware: {exc}. "
                         "Layers without a default 8-bit quantize config need quantize_annotate_layer "
                         "with a custom QuantizeConfig.") from exc
    _compile(qat_model, data.task, cfg.qat_learning_rate)
    history = _fit(qat_model, data, cfg.qat_epochs, cfg, "QAT fine-tune", progress)
    return qat_model, history
