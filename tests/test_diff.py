"""`mcuquant diff`: two int8 conversions of one network compared tensor by tensor and on samples.

The seed 000 scenario (a QAT model converted to int8 vs its weights copied into the float model
and converted with PTQ) runs on the trained digits CNN; every number the diff reports is checked
against an independent reading of the two models (LiteRT constant buffers, Runner outputs).
"""

import warnings

import numpy as np
import pytest

from mcuquant.config import DataConfig
from mcuquant.diff import copy_qat_weights, diff_models, format_diff, keras_layer_names, run_diff
from mcuquant.errors import ConfigError, ModelError
from mcuquant.graph import Graph
from mcuquant.interpreters import Runner, dequantize, quantize


@pytest.fixture(scope="module")
def seed000(trained_digits_cnn):
    """(qat int8 bytes, ptq-of-copied-weights int8 bytes, the copied Keras model)."""
    from mcuquant.quantize import convert_ptq, convert_qat

    float_model, qat_model, representative = trained_digits_cnn
    copied = copy_qat_weights(qat_model, float_model)
    return (convert_qat(qat_model, representative).tflite, convert_ptq(copied, representative).tflite, copied)


def _constant_buffers(model: bytes) -> dict[str, np.ndarray]:
    """Every quantized constant of `model`, by tensor name, read with LiteRT directly."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_content=model,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    graph = Graph.from_tflite(model)
    produced = set(graph.activations()) | set(graph.inputs)
    return {t.name: interpreter.get_tensor(i) for i, t in graph.tensors.items() if i not in produced and t.scales}


def _perturb_one_scale(model: bytes) -> tuple[bytes, str]:
    """`model` with one activation's scale multiplied by 1.5 in the flatbuffer (a value stored once)."""
    graph = Graph.from_tflite(model)
    for t in graph.activations():
        tensor = graph.tensors[t]
        pattern = np.float32(tensor.scales[0]).tobytes()
        if model.count(pattern) == 1:
            return model.replace(pattern, np.float32(tensor.scales[0] * 1.5).tobytes()), tensor.name
    raise AssertionError("no activation scale is stored once")


def test_keras_layer_names_from_converter_tensor_names():
    name = "zoo_cnn/quant_conv2d/Relu;zoo_cnn/quant_conv2d/BiasAdd;zoo_cnn/quant_conv2d/Conv2D"
    assert keras_layer_names(name) == ["conv2d"]
    # The converter names a fused op from its last op back (as it does for the MLPerf ResNet): model order.
    assert keras_layer_names("m/re_lu/Relu;m/batch_normalization/FusedBatchNormV3;m/conv2d/BiasAdd;m/conv2d/Conv2D") == [
        "conv2d", "batch_normalization", "re_lu"]
    assert keras_layer_names("serving_default_input:0") == ["input"]
    assert keras_layer_names("input_1") == ["input_1"]
    assert keras_layer_names("StatefulPartitionedCall:0") == []
    assert keras_layer_names("arith.constant") == []


def test_copy_qat_weights_copies_every_variable(trained_digits_cnn, seed000):
    float_model, qat_model, _ = trained_digits_cnn
    copied = seed000[2]
    assert copied is not float_model
    qat_values = {v.name: v.numpy() for v in qat_model.weights}
    compared = 0
    for layer in copied.layers:
        for w in layer.weights:
            np.testing.assert_array_equal(w.numpy(), qat_values[w.name])
            compared += 1
    assert compared == 8  # kernel and bias of conv2d, conv2d_1, dense, logits
    # QAT fine-tuning moved the weights, so the copy is not the float model
    # (Keras numbers auto-named layers per session, "dense" or "dense_20": find it by type.)
    hidden = next(layer.name for layer in float_model.layers if type(layer).__name__ == "Dense" and layer.name != "logits")
    dense = [m.get_layer(hidden).get_weights()[0] for m in (copied, float_model)]
    assert not np.array_equal(*dense)


def test_copy_qat_weights_reshapes_the_conv1d_kernel_qat_holds_in_4d():
    """QAT's Conv1D keeps its kernel as (1, k, in, out); the copy gets it back as Keras' (k, in, out)."""
    from mcuquant.config import TrainingConfig
    from mcuquant.models import build_zoo_model
    from mcuquant.train import make_quantization_aware

    float_model = build_zoo_model("conv1d", (20, 3), 4)
    qat_model = make_quantization_aware(float_model, "classification", TrainingConfig())
    conv = next(layer for layer in float_model.layers if type(layer).__name__ == "Conv1D")
    qat_kernel = next(v for v in qat_model.weights if v.name == conv.kernel.name)
    assert tuple(qat_kernel.shape) == (1, *conv.kernel.shape)
    qat_kernel.assign(qat_kernel + 0.5)  # as if QAT had moved it
    copied = copy_qat_weights(qat_model, float_model).get_layer(conv.name)
    np.testing.assert_array_equal(copied.kernel.numpy(), qat_kernel.numpy()[0])
    assert not np.array_equal(copied.kernel.numpy(), conv.kernel.numpy())


def test_copy_qat_weights_names_a_missing_layer(trained_digits_cnn, digits):
    from mcuquant.tf_import import keras

    _, qat_model, _ = trained_digits_cnn
    k = keras()
    inputs = k.Input(shape=digits.input_shape)
    other = k.Model(inputs, k.layers.Dense(3, name="not_in_qat")(k.layers.Flatten()(inputs)))
    with pytest.raises(ModelError, match="float layer 'not_in_qat' has no counterpart in the QAT model"):
        copy_qat_weights(qat_model, other)


def test_seed000_qat_vs_copied_weights_ptq(seed000, digits):
    qat, ptq, _ = seed000
    result = diff_models(qat, ptq, name_a="qat", name_b="ptq-copied", x=digits.x_test, y=digits.y_test)
    rows, summary = result["tensors"], result["summary"]
    assert summary["unmatched_a"] == summary["unmatched_b"] == []
    assert summary["matched"] == len(rows) == 16  # input, 7 op outputs, 4 weights, 4 biases
    # The answer to seed 000: the activations' quantization differs although the weights were copied.
    changed = [r for r in rows if r["relative_scale_difference"] > 0]
    assert summary["scale_differs"] == len(changed) > 0
    assert any(r["kind"] == "activation" for r in changed)
    assert rows[:len(changed)] == changed  # the differing ones first...
    differences = [r["relative_scale_difference"] for r in changed]
    assert differences == sorted(differences, reverse=True)  # ...largest first
    for r in rows:
        sa, sb = np.array(r["scale_a"]), np.array(r["scale_b"])
        expected = np.max(np.abs(sa - sb) / np.abs(sa))
        assert r["relative_scale_difference"] == pytest.approx(expected, rel=1e-9, abs=0)
    # Weight and bias values, checked against the buffers read independently.
    buffers_a, buffers_b = _constant_buffers(qat), _constant_buffers(ptq)
    constants = [r for r in rows if r["kind"] in ("weights", "bias")]
    assert len(constants) == 8 == len(buffers_a)
    for r in constants:
        va, vb = buffers_a[r["name_a"]].astype(np.int64), buffers_b[r["name_b"]].astype(np.int64)
        assert r["values_differing"] == np.count_nonzero(va != vb)
        assert r["max_value_difference"] == np.abs(va - vb).max()
        assert r["keras_layers"] and r["shape"] == list(va.shape)
    assert summary["constants_differ"] == sum(r["values_differing"] > 0 for r in constants)
    text = [line for line in format_diff(result) if isinstance(line, str)]
    assert text[0].startswith(f"qat (A) vs ptq-copied (B): {summary['scale_differs']} of 16 matched tensors have a "
                              "different scale")


def test_output_agreement_matches_an_independent_count(seed000, digits):
    qat, ptq, _ = seed000
    result = diff_models(qat, ptq, x=digits.x_test, y=digits.y_test)["outputs"]
    raw = {}
    for name, model in (("a", qat), ("b", ptq)):
        runner = Runner("tflm-host", model)
        raw[name] = (runner.run(quantize(digits.x_test, runner.input), progress=False), runner.output)
    class_a, class_b = (np.argmax(r.reshape(len(r), -1), axis=1) for r, _ in raw.values())
    n = len(digits.x_test)
    assert result["n"] == n
    assert result["same_prediction"] == np.count_nonzero(class_a == class_b)
    assert result["class_flips"] == np.count_nonzero(class_a != class_b) == len(result["flips"])
    assert result["agreement_rate"] == pytest.approx(np.mean(class_a == class_b))
    assert [f["index"] for f in result["flips"]] == list(np.flatnonzero(class_a != class_b))
    assert all(f["label"] == digits.y_test[f["index"]] for f in result["flips"])
    assert result["error_rate_a"] == pytest.approx(np.mean(class_a != digits.y_test))
    assert result["error_rate_b"] == pytest.approx(np.mean(class_b != digits.y_test))
    # the output tensor is the softmax's fixed 1/256 scale in both models
    assert result["byte_identical"] == np.count_nonzero((raw["a"][0] == raw["b"][0]).reshape(n, -1).all(axis=1))
    deq = [dequantize(r, t).reshape(n, -1) for r, t in raw.values()]
    assert result["max_abs_output_difference"] == pytest.approx(np.abs(deq[0] - deq[1]).max())


def test_a_model_against_itself_and_against_one_perturbed_scale(seed000, digits):
    _, ptq, _ = seed000
    same = diff_models(ptq, ptq, x=digits.x_test[:50], y=digits.y_test[:50])
    assert same["summary"]["scale_differs"] == same["summary"]["zero_point_differs"] == 0
    assert same["summary"]["constants_differ"] == 0
    assert all(r["relative_scale_difference"] == 0 for r in same["tensors"])
    assert same["outputs"]["agreement_rate"] == 1.0 and same["outputs"]["byte_identical"] == 50
    assert same["a"]["sha256"] == same["b"]["sha256"]

    perturbed, name = _perturb_one_scale(ptq)
    result = diff_models(ptq, perturbed, x=digits.x_test[:50], y=digits.y_test[:50])
    assert result["summary"]["scale_differs"] == 1
    top = result["tensors"][0]
    assert (top["name_a"], top["kind"]) == (name, "activation")
    assert top["relative_scale_difference"] == pytest.approx(0.5, rel=1e-6)
    assert result["summary"]["constants_differ"] == 0  # the buffers are untouched
    assert result["a"]["sha256"] != result["b"]["sha256"]


def test_regression_outputs_report_the_largest_difference(seed000, digits):
    _, ptq, _ = seed000
    perturbed, _ = _perturb_one_scale(ptq)
    x = digits.x_test[:30]
    out = diff_models(ptq, perturbed, x=x, task="regression")["outputs"]
    outputs = []
    for model in (ptq, perturbed):
        runner = Runner("tflm-host", model)
        outputs.append(dequantize(runner.run(quantize(x, runner.input), progress=False), runner.output).reshape(30, -1))
    difference = np.abs(outputs[0] - outputs[1]).max(axis=1)
    assert out["max_abs_output_difference"] == pytest.approx(difference.max())
    assert out["same_prediction"] == np.count_nonzero(difference == 0)
    assert out["class_flips"] is None and out["error_rate_a"] is None


def test_run_diff_reads_files_and_the_test_split(seed000, tmp_path):
    qat, ptq, _ = seed000
    (tmp_path / "qat.tflite").write_bytes(qat)
    (tmp_path / "ptq.tflite").write_bytes(ptq)
    result = run_diff(tmp_path / "qat.tflite", tmp_path / "ptq.tflite", data="builtin:digits",
                      data_options=DataConfig(), samples=40, progress=False)
    assert result["outputs"]["n"] == 40 and result["outputs"]["error_rate_a"] is not None
    assert result["a"]["name"].endswith("qat.tflite") and result["b"]["bytes"] == len(ptq)
    no_data = run_diff(tmp_path / "qat.tflite", tmp_path / "ptq.tflite")
    assert no_data["outputs"] is None and no_data["tensors"] == result["tensors"]


def test_errors_name_the_problem(seed000, trained_digits_cnn, digits, tmp_path):
    from mcuquant.models import build_zoo_model
    from mcuquant.quantize import convert_ptq
    from mcuquant.tf_import import native_stderr_captured, tensorflow

    _, ptq, _ = seed000
    good = tmp_path / "ptq.tflite"
    good.write_bytes(ptq)
    with pytest.raises(ModelError, match="not found"):
        run_diff(tmp_path / "missing.tflite", good)
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"not a model at all" * 10)
    with pytest.raises(ModelError, match="not a TFLite model"):
        run_diff(garbage, good)
    with pytest.raises(ConfigError, match="--samples needs --data"):
        run_diff(good, good, samples=5)

    float_model = trained_digits_cnn[0]
    with warnings.catch_warnings(), native_stderr_captured():
        warnings.simplefilter("ignore", UserWarning)
        float_tflite = bytes(tensorflow().lite.TFLiteConverter.from_keras_model(float_model).convert())
    (tmp_path / "float.tflite").write_bytes(float_tflite)
    with pytest.raises(ModelError, match="float model: convert with int8 quantization first"):
        run_diff(tmp_path / "float.tflite", good)
    # int8 inside, float input and output: the samples could not be fed as a device would
    tf = tensorflow()
    converter = tf.lite.TFLiteConverter.from_keras_model(float_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[None]] for x in digits.x_train[:20])
    with warnings.catch_warnings(), native_stderr_captured():
        warnings.simplefilter("ignore", UserWarning)
        float_io = bytes(converter.convert())
    with pytest.raises(ModelError, match="float32 input or output .*convert with full integer quantization"):
        diff_models(float_io, ptq)

    unrelated = build_zoo_model("mlp", digits.input_shape, digits.num_classes)
    mlp = convert_ptq(unrelated, digits.x_train[:20]).tflite
    with pytest.raises(ModelError, match="not the same network"):
        diff_models(ptq, mlp)
