"""Conversion variants: tensor types, per-channel weights, QAT representative-set measurement,
and matching tensors of two conversions by graph structure."""

import numpy as np
import pytest

from mcuquant.graph import Graph, match_tensors, quantization_differences
from mcuquant.quantize import convert_ptq, convert_ptq16x8, convert_qat


@pytest.fixture(scope="module")
def conversions(trained_digits_cnn):
    model, qat_model, rep = trained_digits_cnn
    return {
        "ptq": convert_ptq(model, rep),
        "ptq_per_tensor": convert_ptq(model, rep, per_channel=False),
        "ptq16x8": convert_ptq16x8(model, rep),
        "qat": convert_qat(qat_model, rep),
    }


def _conv_weights(graph: Graph):
    return [graph.tensors[op.inputs[1]] for op in graph.operators if op.name == "CONV_2D"]


@pytest.mark.parametrize("variant", ["ptq", "qat"])
def test_int8_model_has_int8_input_output_and_activations(conversions, variant):
    graph = Graph.from_tflite(conversions[variant].tflite)
    assert graph.tensors[graph.inputs[0]].dtype == "int8"
    assert graph.tensors[graph.outputs[0]].dtype == "int8"
    for t in graph.activations():
        assert graph.tensors[t].dtype == "int8", graph.tensors[t].name
    assert all(op.name not in ("QUANTIZE", "DEQUANTIZE") for op in graph.operators)


def test_per_channel_weights_by_default_and_per_tensor_on_request(conversions):
    per_channel = _conv_weights(Graph.from_tflite(conversions["ptq"].tflite))
    per_tensor = _conv_weights(Graph.from_tflite(conversions["ptq_per_tensor"].tflite))
    assert per_channel and per_tensor
    for w in per_channel:
        assert len(w.scales) == w.shape[0] > 1  # one scale per output channel
        assert w.quantized_dimension == 0
        assert set(w.zero_points) == {0}  # TFLite spec: symmetric int8 weights
    for w in per_tensor:
        assert len(w.scales) == 1
    assert conversions["ptq"].summary()["per_channel_weights"] is True
    assert conversions["ptq_per_tensor"].summary()["per_channel_weights"] is False


def test_int16x8_has_int16_activations_and_int8_weights(conversions):
    graph = Graph.from_tflite(conversions["ptq16x8"].tflite)
    assert graph.tensors[graph.inputs[0]].dtype == "int16"
    assert graph.tensors[graph.outputs[0]].dtype == "int16"
    for t in graph.activations():
        assert graph.tensors[t].dtype == "int16"
        assert set(graph.tensors[t].zero_points) == {0}  # int16 activations are symmetric
    assert all(w.dtype == "int8" for w in _conv_weights(graph))


def test_qat_conversion_reports_whether_representative_set_moved_learned_ranges(conversions):
    check = conversions["qat"].notes["representative_set"]
    if check["required"]:
        assert check["tensors_compared"] == len(Graph.from_tflite(conversions["qat"].tflite).activations()) + 1
        assert check["tensors_changed"] == len(check["changed"])
        assert ("changed no" in check["finding"]) == (check["tensors_changed"] == 0)


def test_tensors_of_qat_and_ptq_conversions_match_by_structure_not_name(conversions):
    qat = Graph.from_tflite(conversions["qat"].tflite)
    ptq = Graph.from_tflite(conversions["ptq"].tflite)
    pairs = match_tensors(qat, ptq)
    assert len(pairs) == len(qat.activations()) + 1  # every activation and the input
    names_differ = [a for a, b in pairs if qat.tensors[a].name != ptq.tensors[b].name]
    assert names_differ, "QAT tensors carry quant_ prefixes, so names alone cannot match them"
    for a, b in pairs:
        assert qat.tensors[a].shape == ptq.tensors[b].shape
    diff = quantization_differences(qat, ptq)
    assert diff["unmatched"] == 0
    rel = [c["relative_scale_difference"] for c in diff["changed"]]
    assert rel == sorted(rel, reverse=True)
    for c in diff["changed"]:  # each reported change is real
        assert c["scale_a"] != c["scale_b"] or c["zero_point_a"] != c["zero_point_b"]


def test_model_compared_with_itself_has_no_quantization_differences(conversions):
    graph = Graph.from_tflite(conversions["ptq"].tflite)
    diff = quantization_differences(graph, graph)
    assert diff["changed"] == [] and diff["unmatched"] == 0


def test_conversion_is_deterministic(trained_digits_cnn, conversions):
    model, _, rep = trained_digits_cnn
    assert convert_ptq(model, rep).sha256 == conversions["ptq"].sha256


def test_summary_describes_the_model(conversions):
    s = conversions["ptq"].summary()
    assert s["input"]["dtype"] == "int8" and s["input"]["shape"] == [1, 8, 8, 1]
    assert s["output"]["shape"] == [1, 10]
    assert np.isclose(s["output"]["scale"], 1 / 256) and s["output"]["zero_point"] == -128  # softmax output
    assert "CONV_2D" in s["ops"] and s["bytes"] == len(conversions["ptq"].tflite)
