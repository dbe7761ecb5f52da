"""Conversion to TFLite: PTQ full-int8, PTQ int16x8 and QAT -> int8.

Inputs and outputs are int8 (int16 for int16x8) by default, as a microcontroller wants them.
Representative samples are drawn from the train split only, so evaluation on the test split is
never flattered by calibration on the same samples.
"""

from __future__ import annotations

import hashlib
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from mcuquant.errors import ModelError
from mcuquant.graph import Graph, quantization_differences
from mcuquant.models import keras3
from mcuquant.tf_import import converter_output_captured, tensorflow

# The converter's complaint when a QAT model is converted with int8 I/O but no representative set.
_NEEDS_REPRESENTATIVE = "representative_dataset"
_converter_demands_representative = False  # set once this process's converter refused a QAT model without one


@dataclass
class Conversion:
    """One converted model and what is worth knowing about how it was made."""

    variant: str  # "ptq", "qat" or "ptq16x8"
    tflite: bytes
    notes: dict = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.tflite).hexdigest()

    def summary(self) -> dict:
        graph = Graph.from_tflite(self.tflite)
        inp, out = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
        return {
            "variant": self.variant, "bytes": len(self.tflite), "sha256": self.sha256,
            "ops": sorted({op.name for op in graph.operators}),
            "input": {"shape": list(inp.shape), "dtype": inp.dtype, "scale": inp.scales[0], "zero_point": inp.zero_points[0]},
            "output": {"shape": list(out.shape), "dtype": out.dtype, "scale": out.scales[0], "zero_point": out.zero_points[0]},
            "per_channel_weights": any(t.per_channel for t in graph.tensors.values()),
            **self.notes,
        }


def representative_samples(x_train: np.ndarray, n: int, seed: int) -> np.ndarray:
    """`n` samples of the train split (all of them when it is smaller), chosen with `seed`."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(x_train), size=min(n, len(x_train)), replace=False)
    return x_train[np.sort(idx)].astype(np.float32)


def _convert(model, representative: np.ndarray | None, *, int16x8: bool = False, per_channel: bool = True,
             dense_per_channel: bool = True) -> bytes:
    with tflite_converter(model) as converter:
        return _quantized(converter, representative, int16x8=int16x8, per_channel=per_channel,
                          dense_per_channel=dense_per_channel)


@contextmanager
def tflite_converter(model):
    """The TFLite converter of a tf-keras or Keras 3 model, valid inside the `with` block.

    TF's own route for a Keras 3 model exports it with a batch of any size, and the converter then
    keeps the shape arithmetic (SHAPE, STRIDED_SLICE, PACK) of every Flatten or Reshape in the int8
    model. Exported here for a batch of one, what a microcontroller runs, each becomes one RESHAPE."""
    with tempfile.TemporaryDirectory(prefix="mcuquant-export-") as folder:
        yield _converter(model, folder)


def _converter(model, folder: str):
    tf = tensorflow()
    if not keras3.is_keras3(model):
        return tf.lite.TFLiteConverter.from_keras_model(model)
    spec = tf.TensorSpec((1, *model.input_shape[1:]), model.inputs[0].dtype, name="input")
    if _has_loop(model, spec):
        # Keras 3 traces LSTM/GRU/SimpleRNN as a While loop, which the converter cannot quantize (TF 2.21
        # crashes the process on it); tf-keras's recurrent layers fuse into UNIDIRECTIONAL_SEQUENCE_LSTM.
        # The ladder checks the translation against the Keras 3 model (report.json, model.translation).
        if keras3.is_exported(model):
            raise ModelError(f"exported SavedModel '{model.name}' holds a recurrent loop (a Keras 3 LSTM, GRU or "
                             "SimpleRNN traced as a While op), which the TFLite converter cannot quantize. Give the "
                             ".keras or .h5 file of the model (model.save()): mcuquant then converts its verified "
                             "tf-keras translation, whose LSTM becomes one UNIDIRECTIONAL_SEQUENCE_LSTM")
        return tf.lite.TFLiteConverter.from_keras_model(keras3.translate(model))
    try:
        with converter_output_captured():  # export prints the endpoints it writes
            model.export(folder, input_signature=[spec], verbose=False)
    except Exception as exc:  # Keras raises ValueError, TypeError... for a model it cannot trace
        raise ModelError(f"could not export Keras 3 model '{model.name}' for a batch of one to convert it: {exc}") from exc
    return tf.lite.TFLiteConverter.from_saved_model(folder)


def _has_loop(model, spec) -> bool:
    """Whether the graph `model` traces to for `spec` holds a While loop (in any function it calls)."""
    tf = tensorflow()
    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec).graph.as_graph_def()
    ops = {node.op for node in graph.node} | {node.op for f in graph.library.function for node in f.node_def}
    return bool(ops & {"While", "StatelessWhile"})


def _quantized(converter, representative: np.ndarray | None, *, int16x8: bool, per_channel: bool,
               dense_per_channel: bool = True) -> bytes:
    tf = tensorflow()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if int16x8:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int16
    else:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    if not per_channel:
        converter._experimental_disable_per_channel = True  # no public switch exists
    elif not dense_per_channel:  # convolutions per channel, FULLY_CONNECTED per tensor (TFLM before 2024-09)
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    if representative is not None:
        def samples():
            for x in representative:
                yield [x[None, ...]]
        converter.representative_dataset = samples
    try:
        with warnings.catch_warnings(), converter_output_captured():
            # "Statistics for quantized inputs were expected": int8 I/O is what we ask for
            warnings.simplefilter("ignore", UserWarning)
            return bytes(converter.convert())
    except Exception as exc:  # the converter raises ConverterError, ValueError, RuntimeError...
        raise ModelError(f"TFLite conversion failed: {exc}") from exc


def convert_ptq(float_model, representative: np.ndarray, *, per_channel: bool = True,
                dense_per_channel: bool = True) -> Conversion:
    """Post-training full-integer quantization, calibrated on `representative`; ``dense_per_channel=False``
    keeps FULLY_CONNECTED weights per tensor (for a TFLM without per-channel dense layers)."""
    return Conversion("ptq", _convert(float_model, representative, per_channel=per_channel,
                                      dense_per_channel=dense_per_channel),
                      {"representative_samples": len(representative),
                       **({} if dense_per_channel else {"dense_layers": "per tensor"})})


def convert_ptq16x8(float_model, representative: np.ndarray) -> Conversion:
    """Post-training quantization with int16 activations and int8 weights."""
    return Conversion("ptq16x8", _convert(float_model, representative, int16x8=True),
                      {"representative_samples": len(representative)})


def convert_qat(qat_model, representative: np.ndarray) -> Conversion:
    """Convert a tfmot QAT model to int8, and measure whether a representative set altered it.

    QAT learns activation ranges while training; the converter should only read them. TF 2.21
    nevertheless demands a representative set for int8 I/O. When it does, the model is converted
    twice, with the given samples and with the same samples scaled by ten, and every activation's
    scale and zero point is compared: a parameter that moves was calibrated, not learned.
    """
    global _converter_demands_representative
    if not _converter_demands_representative:
        try:
            tflite = _convert(qat_model, None)
            return Conversion("qat", tflite, {"representative_set": {"required": False}})
        except ModelError as exc:
            if _NEEDS_REPRESENTATIVE not in str(exc):
                raise
        # The demand comes from the converter, not the model: ask once per process (the refused try
        # costs about as much as a conversion).
        _converter_demands_representative = True
    tflite = _convert(qat_model, representative)
    scaled = _convert(qat_model, representative * 10.0)
    diff = quantization_differences(Graph.from_tflite(tflite), Graph.from_tflite(scaled))
    check = {
        "required": True,
        "method": "converted with the representative set and with it scaled x10; activation "
                  "quantization parameters compared tensor by tensor (matched by graph structure)",
        "tensors_compared": diff["compared"],
        "tensors_changed": len(diff["changed"]),
        "changed": diff["changed"],
        "finding": ("the representative set changed no QAT-learned quantization parameter"
                    if not diff["changed"] else
                    f"{len(diff['changed'])} of {diff['compared']} activation quantization parameters depend on "
                    "the representative set: they are calibrated, not learned by QAT"),
    }
    return Conversion("qat", tflite, {"representative_set": check, "representative_samples": len(representative)})
