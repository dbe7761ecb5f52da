"""The model zoo: small models sized to the data.

Zoo models use only layers that convert to int8 TFLite ops mcuquant's runtimes support, and end
in a softmax for classification, as the MLPerf Tiny reference models do:

- mlp, cnn, dscnn, resnet8: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, AVERAGE/MAX_POOL_2D, ADD,
  RESHAPE, SOFTMAX. The image models take (height, width, channels); 2-D samples (height, width)
  get a model for (height, width, 1) (``Dataset.for_model_input`` adds the axis to the data).
- conv1d, for (steps, channels) sequences: Keras lowers Conv1D and MaxPooling1D to EXPAND_DIMS,
  CONV_2D / MAX_POOL_2D and RESHAPE; GlobalAveragePooling1D becomes MEAN.
- lstm, for (steps, channels) sequences: UNIDIRECTIONAL_SEQUENCE_LSTM, STRIDED_SLICE (the last
  step), FULLY_CONNECTED, SOFTMAX. Its input has a static batch size of 1: with an unknown batch
  size the converter cannot fuse the Keras LSTM into UNIDIRECTIONAL_SEQUENCE_LSTM (it fails on
  the TensorList ops of the loop). The interpreters run one sample at a time anyway, and Keras
  still trains and predicts it in batches.
  Both sequence models take 1-D samples (steps,) as (steps, 1).
- autoencoder, for anomaly detection: shaped like the MLPerf Tiny anomaly-detection model
  (640 -> 4 x [Dense 128, BatchNormalization, ReLU] -> Dense 8 bottleneck -> 4 x [Dense 128 ...]
  -> 640), with the widths scaled down for small inputs, the output reshaped to the input shape:
  FULLY_CONNECTED (batch norm folded, ReLU fused) and RESHAPE. For samples of more than one axis
  its input has a static batch size of 1 too: with an unknown batch size Keras' Reshape computes
  the target shape at run time, which converts to SHAPE, STRIDED_SLICE and PACK ops.
"""

from __future__ import annotations

import math

from mcuquant.errors import ModelError
from mcuquant.tf_import import keras

ZOO = ("mlp", "cnn", "dscnn", "resnet8", "conv1d", "lstm", "autoencoder")
_ZOO_LIST = ", ".join("zoo:" + z for z in ZOO)  # for error messages
_IMAGE_MODELS = ("cnn", "dscnn", "resnet8")
_SEQUENCE_MODELS = ("conv1d", "lstm")
_PREDICTORS = ("mlp", *_IMAGE_MODELS, *_SEQUENCE_MODELS)  # classification and regression
TASKS = ("classification", "regression", "anomaly")


def _channels(n: int, width: float) -> int:
    return max(1, int(round(n * width)))


def build_zoo_model(name: str, input_shape: tuple[int, ...], num_classes: int | None, *,
                    outputs: int = 1, width: float = 1.0, task: str | None = None):
    """Build zoo model `name` (one of ZOO) for one sample of `input_shape`.

    `task` None means classification when `num_classes` is given, else regression with `outputs`
    linear outputs (the autoencoder: anomaly detection). For "anomaly" the model reconstructs its
    input: output shape = input shape, no softmax.
    """
    L = keras().layers
    if name not in ZOO:
        raise ModelError(f"unknown zoo model 'zoo:{name}'; available: {_ZOO_LIST}")
    if task is None:
        task = "anomaly" if name == "autoencoder" and num_classes is None else (
            "classification" if num_classes is not None else "regression")
    if task not in TASKS:
        raise ModelError(f"unknown task {task!r} for zoo:{name}; use one of {', '.join(TASKS)}")
    if task == "anomaly" and name != "autoencoder":
        raise ModelError(f"zoo:{name} predicts classes or targets; for anomaly detection (output = reconstructed "
                         f"input) use zoo:autoencoder")
    if task != "anomaly" and name == "autoencoder":
        raise ModelError(f"zoo:autoencoder reconstructs its input for anomaly detection (task 'anomaly'); for "
                         f"{task} use {', '.join('zoo:' + z for z in _PREDICTORS)}")
    if task == "classification" and not num_classes:
        raise ModelError(f"zoo:{name} for classification needs the number of classes")
    input_shape = _model_input_shape(name, tuple(int(d) for d in input_shape))

    # A static batch size lets the LSTM convert to UNIDIRECTIONAL_SEQUENCE_LSTM and the autoencoder's
    # final Reshape to one RESHAPE (module docstring).
    static_batch = name == "lstm" or (name == "autoencoder" and len(input_shape) > 1)
    inputs = keras().Input(shape=input_shape, batch_size=1 if static_batch else None, name="input")
    if name == "autoencoder":
        return keras().Model(inputs, _autoencoder(inputs, input_shape, width, L), name="zoo_autoencoder")
    x = {"mlp": _mlp, "cnn": _cnn, "dscnn": _dscnn, "resnet8": _resnet8, "conv1d": _conv1d,
         "lstm": _lstm}[name](inputs, input_shape, width, L)
    if task == "regression":
        out = L.Dense(outputs, name="regression")(x)
    else:
        x = L.Dense(num_classes, name="logits")(x)
        out = L.Softmax(name="probabilities")(x)
    return keras().Model(inputs, out, name=f"zoo_{name}")


def _model_input_shape(name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The sample shape zoo:`name` is built for, given the data's: a channel axis added where needed."""
    if name in _IMAGE_MODELS:
        if len(shape) == 2:
            return (*shape, 1)  # (height, width) -> one channel
        if len(shape) != 3:
            raise ModelError(f"zoo:{name} needs image-like samples (height, width, channels); the data has "
                             f"samples of shape {shape}. Use zoo:mlp for flat feature vectors.")
    if name in _SEQUENCE_MODELS:
        if len(shape) == 1:
            return (*shape, 1)  # (steps,) -> one channel
        if len(shape) != 2:
            raise ModelError(f"zoo:{name} needs sequences (steps, channels); the data has samples of shape "
                             f"{shape}. Use zoo:cnn, zoo:dscnn or zoo:resnet8 for images, zoo:mlp for any shape.")
    return shape


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


def _conv1d(x, input_shape, width, L):
    """Two Conv1D blocks, max-pooled while the sequence is long enough, then global average pooling."""
    steps = input_shape[0]
    for filters in (16, 32):
        x = L.Conv1D(_channels(filters, width), min(5, steps), padding="same", activation="relu")(x)
        if steps >= 8:
            x = L.MaxPooling1D(2)(x)
            steps //= 2
    return L.GlobalAveragePooling1D()(x)


def _lstm(x, input_shape, width, L):
    return L.LSTM(_channels(32, width))(x)  # the last step's hidden state


def _autoencoder(x, input_shape, width, L):
    """Dense encoder/decoder with a narrow bottleneck, after the MLPerf Tiny AD model.

    MLPerf's 640 inputs use 128-wide layers and an 8-wide bottleneck; smaller inputs get
    narrower layers (half the input size, at least 16) and bottleneck (an eighth, at least 2),
    so the model cannot simply copy its input through. `width` scales the 128-wide layers.
    """
    size = math.prod(input_shape)
    hidden = _channels(min(128, max(16, size // 2)), width)
    bottleneck = max(2, min(8, size // 8))
    if len(input_shape) > 1:
        x = L.Flatten()(x)
    for units in (hidden,) * 4 + (bottleneck,) + (hidden,) * 4:
        x = L.Dense(units)(x)
        x = L.BatchNormalization()(x)
        x = L.ReLU()(x)
    x = L.Dense(size, name="reconstruction")(x)
    return L.Reshape(input_shape)(x) if len(input_shape) > 1 else x
