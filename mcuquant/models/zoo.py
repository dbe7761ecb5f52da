"""The model zoo: small models sized to the data.

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
