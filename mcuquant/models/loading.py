"""Loading the user's own Keras models, and checks that a model fits the data."""

from __future__ import annotations

from pathlib import Path

from mcuquant.errors import ModelError
from mcuquant.models import keras3
from mcuquant.models.zoo import ZOO, _ZOO_LIST
from mcuquant.tf_import import keras


def check_model_source(source: str) -> None:
    """Cheap early check of `model.source`, before any data is loaded or TensorFlow imported."""
    if source.startswith("zoo:"):
        if source[4:] not in ZOO:
            raise ModelError(f"unknown zoo model '{source}'; available: {_ZOO_LIST}")
        return
    path = Path(source)
    if not path.exists():
        raise ModelError(f"model {path} not found; give a .keras/.h5 file, a SavedModel folder or zoo:NAME "
                         f"({_ZOO_LIST})")
    if path.is_file() and path.suffix not in (".keras", ".h5", ".hdf5"):
        raise ModelError(f"model {path}: expected a .keras or .h5 file or a SavedModel folder")


def load_user_model(path: str | Path):
    """Load a Keras model from .keras, .h5 or a SavedModel folder, without compiling: with Keras 3
    when Keras 3 wrote it (models.keras3), else with tf-keras."""
    check_model_source(str(path))
    if keras3.saved_by_keras3(path):
        model = keras3.load(path)
    else:
        try:
            model = keras().models.load_model(path, compile=False)
        except Exception as exc:  # Keras raises many unrelated types for unreadable files
            raise ModelError(f"could not load Keras model {path}: {exc}") from exc
    bad = non_finite_weights(model)
    if bad:
        raise ModelError(f"model {path} has NaN or infinite weights in {bad}: it cannot be quantized (its training "
                         "probably diverged); save it again from a checkpoint before the divergence, or retrain "
                         "with a lower learning rate")
    return model


def non_finite_weights(model) -> str | None:
    """'layer NAME (k of n weights)' for the first layer holding NaN or inf weights, else None."""
    import numpy as np

    for layer in model.layers:
        values = [np.asarray(w) for w in layer.get_weights()]
        bad = sum(int((~np.isfinite(v)).sum()) for v in values if v.dtype.kind == "f")
        if bad:
            return f"layer '{layer.name}' ({bad} of {sum(v.size for v in values)} weights)"
    return None


def ends_in_softmax(model) -> bool:
    """Whether the model outputs probabilities (softmax) rather than logits.

    Sees through tfmot's wrappers: a QAT model's last layer is a QuantizeWrapper holding the real
    layer, and a wrapped Dense(activation="softmax") has its activation replaced by a
    QuantizeAwareActivation that keeps the original function as ``.activation``.
    """
    last = model.layers[-1]
    last = getattr(last, "layer", last)  # tfmot's QuantizeWrapper holds the real layer
    if type(last).__name__ == "Softmax":
        return True
    activation = getattr(last, "activation", None)
    if type(activation).__name__ == "QuantizeAwareActivation":
        activation = activation.activation
    return getattr(activation, "__name__", "") == "softmax"


def check_model_fits_data(model, data, num_classes: int | None = None) -> None:
    """Fail before training when the model cannot take the data or predict its targets.

    ``data`` is a Dataset (its task decides what the output must be: one score per class, one value
    per regression target, or the input's shape for an anomaly autoencoder), or just a sample shape
    with ``num_classes`` (None: any output).
    """
    import math

    input_shape, task, outputs = (data, None, 1) if isinstance(data, tuple) else \
        (data.input_shape, data.task, data.outputs)
    if task == "classification":
        num_classes = data.num_classes
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelError(f"model '{model.name}' has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
                         "mcuquant evaluates models with one input and one output")
    expected = tuple(model.input_shape[1:])
    if len(expected) != len(input_shape) or any(e is not None and e != d for e, d in zip(expected, input_shape)):
        raise ModelError(f"model '{model.name}' takes samples of shape {expected} but the data has {input_shape}; "
                         "give data of that shape (image folders: [data] image_size resizes) or use a model built "
                         "for it")
    out_shape = tuple(model.output_shape[1:])
    out = out_shape[-1] if out_shape else 1
    if num_classes is not None and out != num_classes:
        raise ModelError(f"model '{model.name}' has {out} outputs but the data has {num_classes} classes")
    if task == "regression" and math.prod(out_shape) != outputs:
        raise ModelError(f"model '{model.name}' outputs {math.prod(out_shape)} values per sample but the data has "
                         f"{outputs} regression target{'s' if outputs > 1 else ''} per sample")
    if task == "anomaly" and math.prod(out_shape) != math.prod(input_shape):
        raise ModelError(f"model '{model.name}' outputs {out_shape} per sample; an anomaly autoencoder must reproduce "
                         f"its input {input_shape} (anomaly score = reconstruction error): use zoo:autoencoder or a "
                         "model whose output has the input's size")


def fit_data_to_tflite(dataset, name: str, input_shape: tuple[int, ...], output_shape: tuple[int, ...]):
    """``dataset`` as the .tflite model ``name`` (shapes with their batch axis) takes it (a channel
    axis added), or DatasetError/ModelError when its samples, classes or targets do not fit."""
    from types import SimpleNamespace

    shape_of = SimpleNamespace(name=name, inputs=[0], outputs=[0], input_shape=(None, *input_shape[1:]),
                               output_shape=(None, *output_shape[1:]))
    dataset = dataset.for_model_input(tuple(input_shape[1:]))
    check_model_fits_data(shape_of, dataset)
    return dataset
