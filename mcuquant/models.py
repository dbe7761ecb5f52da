"""Models: a small zoo sized to the data, and loading of the user's own Keras models.

Zoo models use only layers that convert to the int8 TFLite ops mcuquant's runtimes support
(CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, AVERAGE/MAX_POOL_2D, ADD, RESHAPE, SOFTMAX) and end
in a softmax for classification, as the MLPerf Tiny reference models do.
"""

from __future__ import annotations

from pathlib import Path

from mcuquant.errors import ModelError
from mcuquant.tf_import import keras

ZOO = ("mlp", "cnn", "dscnn", "resnet8")
_ZOO_LIST = ", ".join("zoo:" + z for z in ZOO)  # for error messages


def _channels(n: int, width: float) -> int:
    return max(1, int(round(n * width)))


def build_zoo_model(name: str, input_shape: tuple[int, ...], num_classes: int | None, *,
                    outputs: int = 1, width: float = 1.0):
    """Build zoo model `name` ("mlp", "cnn", "dscnn", "resnet8") for one sample of `input_shape`.

    `num_classes` None means regression with `outputs` linear outputs.
    """
    L = keras().layers
    if name not in ZOO:
        raise ModelError(f"unknown zoo model 'zoo:{name}'; available: {_ZOO_LIST}")
    if name != "mlp" and len(input_shape) != 3:
        raise ModelError(f"zoo:{name} needs image-like samples (height, width, channels); the data has "
                         f"samples of shape {input_shape}. Use zoo:mlp for flat feature vectors.")
    inputs = keras().Input(shape=input_shape, name="input")
    x = {"mlp": _mlp, "cnn": _cnn, "dscnn": _dscnn, "resnet8": _resnet8}[name](inputs, input_shape, width, L)
    if num_classes is None:
        out = L.Dense(outputs, name="regression")(x)
    else:
        x = L.Dense(num_classes, name="logits")(x)
        out = L.Softmax(name="probabilities")(x)
    return keras().Model(inputs, out, name=f"zoo_{name}")


def _stride_for(size: int) -> int:
    """Downsample early only when the input is large enough to keep a useful feature map."""
    return 2 if size >= 16 else 1


def _mlp(x, input_shape, width, L):
    x = L.Flatten()(x)
    x = L.Dense(_channels(64, width), activation="relu")(x)
    return L.Dense(_channels(32, width), activation="relu")(x)


def _cnn(x, input_shape, width, L):
    s = _stride_for(min(input_shape[:2]))
    x = L.Conv2D(_channels(16, width), 3, strides=s, padding="same", activation="relu")(x)
    x = L.Conv2D(_channels(32, width), 3, padding="same", activation="relu")(x)
    x = L.MaxPooling2D(2)(x)
    x = L.Flatten()(x)
    return L.Dense(_channels(32, width), activation="relu")(x)


def _conv_bn_relu(x, filters, kernel, strides, L):
    x = L.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
    x = L.BatchNormalization()(x)
    return L.ReLU()(x)


def _dscnn(x, input_shape, width, L):
    """Depthwise-separable CNN in the style of the MLPerf Tiny keyword-spotting DS-CNN."""
    h, w = input_shape[:2]
    kernel = (min(10, h), min(4, w)) if h >= 16 else (3, 3)
    filters = _channels(64, width)
    x = _conv_bn_relu(x, filters, kernel, _stride_for(min(h, w)), L)
    for _ in range(4):
        x = L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = L.ReLU()(x)
        x = _conv_bn_relu(x, filters, 1, 1, L)
    x = L.AveragePooling2D(pool_size=tuple(int(d) for d in x.shape[1:3]))(x)
    return L.Flatten()(x)


def _resnet8(x, input_shape, width, L):
    """ResNet-8 in the style of the MLPerf Tiny image-classification reference model."""
    x = _conv_bn_relu(x, _channels(16, width), 3, 1, L)
    for filters, strides in ((16, 1), (32, 2), (64, 2)):
        filters = _channels(filters, width)
        y = _conv_bn_relu(x, filters, 3, strides, L)
        y = L.Conv2D(filters, 3, padding="same", use_bias=False)(y)
        y = L.BatchNormalization()(y)
        if strides != 1 or x.shape[-1] != filters:
            x = L.Conv2D(filters, 1, strides=strides, padding="same")(x)
        x = L.ReLU()(L.Add()([x, y]))
    x = L.AveragePooling2D(pool_size=tuple(int(d) for d in x.shape[1:3]))(x)
    return L.Flatten()(x)


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
    """Load a Keras model from .keras, .h5 or a SavedModel folder (with tf-keras, without compiling)."""
    check_model_source(str(path))
    try:
        return keras().models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many unrelated types for unreadable files
        raise ModelError(f"could not load Keras model {path}: {exc}") from exc


def ends_in_softmax(model) -> bool:
    """Whether the model outputs probabilities (softmax) rather than logits."""
    last = model.layers[-1]
    last = getattr(last, "layer", last)  # tfmot's QuantizeWrapper holds the real layer
    activation = getattr(last, "activation", None)
    return type(last).__name__ == "Softmax" or getattr(activation, "__name__", "") == "softmax"


def check_model_fits_data(model, input_shape: tuple[int, ...], num_classes: int | None) -> None:
    """Fail before training when the model cannot take the data or predict its labels."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelError(f"model '{model.name}' has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
                         "mcuquant evaluates models with one input and one output")
    expected = tuple(model.input_shape[1:])
    if len(expected) != len(input_shape) or any(e is not None and e != d for e, d in zip(expected, input_shape)):
        raise ModelError(f"model '{model.name}' takes samples of shape {expected} but the data has {input_shape}; "
                         "resize the data (e.g. [data] image_size) or use a model built for it")
    out = model.output_shape[-1]
    if num_classes is not None and out != num_classes:
        raise ModelError(f"model '{model.name}' has {out} outputs but the data has {num_classes} classes")
