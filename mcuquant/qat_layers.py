"""Quantization-aware training for layers tfmot 0.8.1's default 8-bit scheme leaves out.

tfmot's registry has no QuantizeConfig for Conv1D, MaxPooling1D or LSTM (they are commented out
there), so its `quantize_model` refuses every model that holds one. This module
annotates those layers with QuantizeConfigs of its own, written against tfmot's public
QuantizeConfig and Quantizer API, so that the QAT model converts to the int8 ops PTQ gives:

- Conv1D: the kernel is fake-quantized per output channel, symmetric in [-127, 127] with the
  range max|w| of the current weights, which is how the converter quantizes a CONV_2D kernel
  (Keras runs Conv1D as a Conv2D over an added axis). tfmot's own per-channel quantizer handles
  only 2-D and 4-D kernels, hence a quantizer here. The output (after the activation) gets a
  learned moving-average range, as tfmot's Conv2D does.
- MaxPooling1D: nothing is quantized; it only picks values, so its output keeps the scale of
  its input (which TFLite's MAX_POOL_2D requires anyway). UpSampling1D is not covered: with the
  same pass-through config, UpSampling1D + AveragePooling1D converted with a QUANTIZE op per
  step (the converter calibrates the CONCATENATION it lowers to), unlike PTQ.
- LSTM: nothing is quantized either: the LSTM trains in float during QAT and the converter
  calibrates its int8 weights and 16-bit cell state from the representative set, as in PTQ. The
  converted QAT model then requantizes the LSTM's input from its QAT-learned scale to the
  calibrated one (a DEQUANTIZE + QUANTIZE pair before UNIDIRECTIONAL_SEQUENCE_LSTM).

Models without such layers go to tfmot's `quantize_model` unchanged. Importing this module imports
TensorFlow and tfmot (its classes subclass tfmot's), so import it where QAT starts.
"""

from __future__ import annotations

from mcuquant.errors import ModelError
from mcuquant.tf_import import keras, tensorflow, tfmot

_q = tfmot().quantization.keras
tf = tensorflow()


class McuquantPerChannelWeights(_q.quantizers.Quantizer):
    """Symmetric int8 fake quantization per last-axis channel, range max|w| of the current weights."""

    def build(self, tensor_shape, name, layer):
        return {}  # no state: the range is read from the weights themselves

    def __call__(self, inputs, training, weights, **kwargs):
        axes = list(range(inputs.shape.rank - 1))
        # straight-through: the range follows the weights but passes no gradient back to them;
        # the floor keeps an all-zero channel from giving an empty range
        bound = tf.stop_gradient(tf.maximum(tf.reduce_max(tf.abs(inputs), axis=axes), 1e-9))
        return tf.quantization.fake_quant_with_min_max_vars_per_channel(
            inputs, -bound, bound, num_bits=8, narrow_range=True)

    def get_config(self):
        return {}


class McuquantConv1D(keras().layers.Layer):
    """Keras' Conv1D computed the way Keras itself lowers it (a Conv2D over an added axis), but
    holding the kernel in that 4-D shape: a fake quantization of the 3-D kernel cannot be
    converted (the converter cannot move its channel axis through the reshape to 4-D)."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation_rate=1, activation=None,
                 use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.strides = filters, int(kernel_size), int(strides)
        self.padding, self.dilation_rate, self.use_bias = padding, int(dilation_rate), use_bias
        self.activation = keras().activations.get(activation)

    @classmethod
    def of(cls, conv):
        """The layer equivalent to Keras Conv1D `conv`; options it cannot express are refused."""
        c = conv.get_config()
        if c["padding"] not in ("valid", "same") or c.get("groups", 1) != 1 or c["data_format"] != "channels_last":
            raise ModelError(f"layer '{conv.name}' (Conv1D with padding={c['padding']!r}, groups={c.get('groups', 1)}, "
                             f"data_format={c['data_format']!r}) has no QAT support in mcuquant; QAT covers Conv1D "
                             "with padding 'valid' or 'same', groups=1, channels_last")
        return cls(c["filters"], c["kernel_size"][0], c["strides"][0], c["padding"], c["dilation_rate"][0],
                   c["activation"], c["use_bias"], name=conv.name)

    def build(self, input_shape):
        self.kernel = self.add_weight("kernel", (1, self.kernel_size, int(input_shape[-1]), self.filters))
        self.bias = self.add_weight("bias", (self.filters,), initializer="zeros") if self.use_bias else None

    def call(self, inputs):
        x = tf.nn.conv2d(tf.expand_dims(inputs, 1), self.kernel, strides=(1, 1, self.strides, 1),
                         padding=self.padding.upper(), dilations=(1, 1, self.dilation_rate, 1))
        x = tf.squeeze(x, 1)
        if self.use_bias:
            x = tf.nn.bias_add(x, self.bias)
        return self.activation(x)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding, "dilation_rate": self.dilation_rate,
                "activation": keras().activations.serialize(self.activation), "use_bias": self.use_bias}


class McuquantConv1DConfig(_q.QuantizeConfig):
    """Kernel per channel (McuquantPerChannelWeights), output after the activation per tensor."""

    def get_weights_and_quantizers(self, layer):
        return [(layer.kernel, McuquantPerChannelWeights())]

    def get_activations_and_quantizers(self, layer):
        return [(layer.activation, _q.quantizers.MovingAverageQuantizer(
            num_bits=8, per_axis=False, symmetric=False, narrow_range=False))]

    def set_quantize_weights(self, layer, quantize_weights):
        layer.kernel = quantize_weights[0]

    def set_quantize_activations(self, layer, quantize_activations):
        layer.activation = quantize_activations[0]

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {}


class McuquantPassThroughConfig(_q.QuantizeConfig):
    """Quantizes nothing in the layer: its output keeps the quantization of its input."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {}


_L = keras().layers
# Keras layer class -> the QuantizeConfig class for it (Conv1D: for the McuquantConv1D replacing it)
CONFIGS: dict[type, type] = {
    _L.Conv1D: McuquantConv1DConfig,
    _L.MaxPooling1D: McuquantPassThroughConfig,
    _L.LSTM: McuquantPassThroughConfig,
}
# what tfmot must find by name when it clones the annotated model
_CUSTOM_OBJECTS = {cls.__name__: cls for cls in (McuquantPerChannelWeights, McuquantConv1D, McuquantConv1DConfig,
                                                 McuquantPassThroughConfig)}


def quantize_model(float_model):
    """tfmot's `quantize_model`, with this module's QuantizeConfigs for the layers tfmot lacks."""
    if not any(type(layer) in CONFIGS for layer in float_model.layers):
        return _q.quantize_model(float_model)
    replaced = {}  # McuquantConv1D -> the Conv1D it stands for

    def annotate(layer):
        config = CONFIGS.get(type(layer))
        if isinstance(layer, _L.Conv1D) and type(layer) is _L.Conv1D:
            replaced[layer.name] = layer
            layer = McuquantConv1D.of(layer)
        # any other layer is wrapped as it is, so the annotated model shares the float model's weights
        return _q.quantize_annotate_layer(layer, config() if config else None)

    with _q.quantize_scope(_CUSTOM_OBJECTS):
        annotated = keras().models.clone_model(float_model, clone_function=annotate)
        for wrapper in annotated.layers:
            conv = replaced.get(getattr(wrapper, "layer", wrapper).name)
            if conv is not None:
                wrapper.layer.kernel.assign(conv.kernel[tf.newaxis])  # (k, in, out) -> (1, k, in, out)
                if conv.use_bias:
                    wrapper.layer.bias.assign(conv.bias)
        return _q.quantize_apply(annotated)
