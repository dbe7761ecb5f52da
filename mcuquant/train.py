"""Float training and quantization-aware fine-tuning (tfmot), with fixed seeds and early stopping."""

from __future__ import annotations

import math

from mcuquant.config import TrainingConfig
from mcuquant.data import Dataset
from mcuquant.errors import ModelError
from mcuquant.progress import progress_bar
from mcuquant.tasks import get_task
from mcuquant.tf_import import keras, tensorflow


def set_seeds(seed: int) -> None:
    """Same seed, same data, same code: same weights (op determinism trades a little speed)."""
    keras().utils.set_random_seed(seed)
    tensorflow().config.experimental.enable_op_determinism()


def _compile(model, task: str, learning_rate: float, *, outputs_of=None) -> None:
    """Compile with the task's loss. ``outputs_of`` is the model whose output kind (probabilities or
    logits) decides the loss: the float model for its QAT model, so both train on the same loss."""
    k = keras()
    loss, metrics = get_task(task).loss(k, model if outputs_of is None else outputs_of)
    model.compile(optimizer=k.optimizers.Adam(learning_rate), loss=loss, metrics=metrics)


def _fit(model, data: Dataset, epochs: int, cfg: TrainingConfig, label: str, progress: bool, *,
         qat: bool = False) -> dict:
    k = keras()

    class _Bar(k.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            advance(**{key: float(v) for key, v in (logs or {}).items() if key in ("loss", "val_loss", "val_accuracy")})

    stop = k.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True)
    has_val = len(data.x_val) > 0
    task = get_task(data.task)
    with progress_bar(label, epochs, enabled=progress) as advance:
        history = model.fit(
            data.x_train, task.targets(data.x_train, data.y_train),
            validation_data=(data.x_val, task.targets(data.x_val, data.y_val)) if has_val else None,
            epochs=epochs, batch_size=cfg.batch_size, shuffle=True, verbose=0,
            callbacks=[_Bar()] + ([stop] if has_val else []),
        )
    epochs_run = len(history.history["loss"])
    _check_converged(model, history.history, cfg, qat=qat)
    return {"epochs_run": epochs_run, "steps": epochs_run * math.ceil(len(data.x_train) / cfg.batch_size),
            **{k_: [float(v) for v in vs] for k_, vs in history.history.items()}}


def _check_converged(model, history: dict, cfg: TrainingConfig, *, qat: bool) -> None:
    """A training run whose loss or weights went NaN/inf ends here, naming the epoch and the fix, instead
    of failing later in conversion with a message about scales."""
    from mcuquant.models.loading import non_finite_weights

    losses = history.get("loss", [])
    epoch = next((i + 1 for i, v in enumerate(losses) if not math.isfinite(v)), None)
    bad = non_finite_weights(model)
    if epoch is None and bad is None:
        return
    what, rate, flag, key = (("QAT fine-tuning", cfg.qat_learning_rate, "--qat-lr", "qat_learning_rate") if qat else
                             ("float training", cfg.learning_rate, "--lr", "learning_rate"))
    where = f"the loss became {losses[epoch - 1]} at epoch {epoch}" if epoch else f"NaN/inf weights in {bad}"
    raise ModelError(f"{what} diverged: {where} (learning rate {rate:g}); lower the learning rate ({flag}, "
                     f"[training] {key}) or check the data's scale (--normalize)")


def train_float(model, data: Dataset, cfg: TrainingConfig, epochs: int, *, progress: bool = True) -> dict:
    """Train `model` in float; returns the Keras history (losses per epoch)."""
    set_seeds(cfg.seed)
    _compile(model, data.task, cfg.learning_rate)
    if epochs == 0:
        return {"epochs_run": 0}
    return _fit(model, data, epochs, cfg, "train float", progress)


def make_quantization_aware(float_model, task: str, cfg: TrainingConfig):
    """`float_model` wrapped with tfmot's default 8-bit scheme, compiled with the float model's loss,
    not yet fine-tuned. The float model is left untouched."""
    from mcuquant.qat_layers import quantize_model  # imports tfmot: only when QAT starts

    set_seeds(cfg.seed)
    try:
        # tfmot's default 8-bit scheme, plus mcuquant's configs for Conv1D, MaxPooling1D, LSTM, ...
        qat_model = quantize_model(float_model)
    except Exception as exc:  # tfmot raises RuntimeError/ValueError for layers it cannot wrap
        raise ModelError(f"tfmot cannot make '{float_model.name}' quantization-aware: {exc}. "
                         "Layers without a default 8-bit quantize config need quantize_annotate_layer "
                         "with a custom QuantizeConfig.") from exc
    _compile(qat_model, task, cfg.qat_learning_rate, outputs_of=float_model)
    return qat_model


def quantization_aware(float_model, data: Dataset, cfg: TrainingConfig, *, progress: bool = True):
    """Wrap `float_model` for QAT and fine-tune it; returns (qat_model, history).

    QAT learns the activation ranges while training, which is why at least one epoch is needed
    before conversion.
    """
    qat_model = make_quantization_aware(float_model, data.task, cfg)
    history = _fit(qat_model, data, cfg.qat_epochs, cfg, "QAT fine-tune", progress, qat=True)
    history["activation_ranges"] = qat_range_status(qat_model, history["steps"])
    return qat_model, history


# tfmot's MovingAverageQuantizer: activation ranges start at [-6, 6] and follow each training batch's
# min/max with an exponential moving average of this decay (tfmot quant_ops, ema_decay=0.999).
QAT_RANGE_INIT = (-6.0, 6.0)
QAT_EMA_DECAY = 0.999
QAT_LEARNED_SHARE = 0.95  # a range counts as learned once less than 5% of its initial value is left


def qat_range_status(qat_model, steps: int) -> dict:
    """How far QAT's activation ranges have moved from tfmot's initial [-6, 6] after ``steps`` batches.

    After s steps a range still holds ``decay**s`` of its initial value, whatever the data; with
    few steps every range sits near [-6, 6] and the QAT model's scales are tfmot's defaults, not
    learned ones. Returns ``{"steps", "ema_decay", "initial_share_left", "steps_needed", "learned",
    "ranges": [{"layer", "min", "max"}, ...]}``.
    """
    ranges: dict[str, dict] = {}
    for w in qat_model.weights:
        name = w.name.split(":")[0]
        for end in ("post_activation", "output"):
            for side in ("min", "max"):
                if name.endswith(f"/{end}_{side}"):
                    ranges.setdefault(name.rsplit("/", 1)[0], {})[side] = float(w.numpy())
    needed = math.ceil(math.log(1 - QAT_LEARNED_SHARE) / math.log(QAT_EMA_DECAY))
    left = QAT_EMA_DECAY ** steps
    return {"steps": int(steps), "ema_decay": QAT_EMA_DECAY, "initial_share_left": left, "steps_needed": needed,
            "learned": steps >= needed,
            "ranges": [{"layer": layer, **r} for layer, r in ranges.items() if len(r) == 2]}
