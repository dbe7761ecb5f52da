"""The three host interpreters on real models: byte-identical rates measured, never assumed.

Measured in DESIGN.md with random inputs: litert-ref matched tflm-host on 50/50 for KWS and ResNet-8,
47/50 for a small digits CNN, 0/50 for the anomaly autoencoder; litert (XNNPACK) 6/50 on ResNet-8.
So these tests check that `agreement` reports exactly what the outputs show, and that the first
diverging operator it names really is the first one whose output differs.
"""

import numpy as np
import pytest

from mcuquant.errors import ModelError
from mcuquant.graph import Tensor
from mcuquant.interpreters import RUNTIMES, Runner, agreement, dequantize, first_divergence, quantize

from conftest import random_int8_inputs

MODELS = ["kws_ref_model.tflite", "pretrainedResnet_quant.tflite"]


@pytest.fixture(scope="module", params=MODELS)
def model_outputs(request, shared_models):
    model = (shared_models / request.param).read_bytes()
    runners = {kind: Runner(kind, model) for kind in RUNTIMES}
    xq = random_int8_inputs(runners["tflm-host"].input.shape[1:], 30, seed=1)
    return model, xq, {kind: r.run(xq, progress=False) for kind, r in runners.items()}


def test_every_runtime_returns_int8_outputs_of_the_model_shape(model_outputs):
    model, xq, outputs = model_outputs
    out_shape = Runner("tflm-host", model).output.shape[1:]
    for kind, out in outputs.items():
        assert out.dtype == np.int8, kind
        assert out.shape == (len(xq), *out_shape), kind


@pytest.mark.parametrize("a,b", [("litert", "tflm-host"), ("litert-ref", "tflm-host"), ("litert", "litert-ref")])
def test_agreement_reports_exactly_the_mismatching_samples(model_outputs, a, b):
    model, xq, outputs = model_outputs
    result = agreement(model, xq, a, outputs[a], b, outputs[b], classification=True, max_traced=3)
    differs = [i for i in range(len(xq)) if not np.array_equal(outputs[a][i], outputs[b][i])]
    assert [m["index"] for m in result["mismatches"]] == differs
    assert result["bit_exact"] == len(xq) - len(differs)
    assert result["bit_exact_rate"] == pytest.approx(1 - len(differs) / len(xq))
    expected_max = max((int(np.abs(outputs[a][i].astype(int) - outputs[b][i]).max()) for i in differs), default=0)
    assert result["max_lsb_difference"] == expected_max
    flips = sum(np.argmax(outputs[a][i]) != np.argmax(outputs[b][i]) for i in differs)
    assert result["class_flips"] == flips


def test_runtime_agrees_with_itself(model_outputs):
    model, xq, outputs = model_outputs
    result = agreement(model, xq, "tflm-host", outputs["tflm-host"], "tflm-host", outputs["tflm-host"],
                       classification=True)
    assert result["bit_exact_rate"] == 1.0 and result["mismatches"] == []


def test_first_divergence_is_the_first_operator_whose_output_differs(shared_models):
    """ResNet-8 under LiteRT's optimized kernels vs TFLM: find a sample where they part and check the
    reported operator against an independent walk over all preserved tensors."""
    model = (shared_models / "pretrainedResnet_quant.tflite").read_bytes()
    a, b = Runner("litert", model, preserve_all=True), Runner("tflm-host", model, preserve_all=True)
    for x in random_int8_inputs(a.input.shape[1:], 20, seed=2):
        where = first_divergence(Runner("litert", model, preserve_all=True),
                                 Runner("tflm-host", model, preserve_all=True), x)
        if where is None:
            continue
        a.invoke(x)
        b.invoke(x)
        ops = a.graph.operators
        position = next(i for i, op in enumerate(ops) if op.index == where["op_index"])
        for op in ops[:position]:
            for t in op.outputs:
                assert np.array_equal(a.tensor(t), b.tensor(t)), f"op #{op.index} {op.name} already differs"
        t = ops[position].outputs[0]
        assert not np.array_equal(a.tensor(t), b.tensor(t))
        assert where["max_lsb_difference"] == int(np.abs(a.tensor(t).astype(int) - b.tensor(t)).max()) > 0
        return
    pytest.fail("LiteRT's builtin kernels matched TFLM on all 20 ResNet-8 samples, which DESIGN.md measured "
                "as rare; the divergence walk could not be checked")


def test_quantize_rounds_half_away_from_zero_and_clamps():
    t = Tensor(index=0, name="x", shape=(1, 4), dtype="int8", scales=(0.5,), zero_points=(-3,), quantized_dimension=0)
    x = np.array([0.25, -0.25, 0.75, 100.0, -100.0])
    assert quantize(x, t).tolist() == [1 - 3, -1 - 3, 2 - 3, 127, -128]
    assert dequantize(np.array([-3, 1], dtype=np.int8), t).tolist() == [0.0, 2.0]


def test_malformed_model_is_a_model_error(shared_models):
    model = (shared_models / "kws_ref_model.tflite").read_bytes()
    with pytest.raises(ModelError):
        Runner("litert", b"definitely not a flatbuffer")
    with pytest.raises(ModelError):
        Runner("tflm-host", model[: len(model) // 3])


def test_a_model_tflm_aborts_on_is_a_model_error_not_a_crash():
    """TFLM abort()s on a SOFTMAX row whose exponentials overflow (all 600 logits equal). A batch run
    of tflm-host (what the ladder, validate and explain use) happens in a child process, so this
    process survives and the error names the signal and the sample; other samples still run."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_builtin_ops_nonlinear import INT8, single_op_model

    model = single_op_model("SOFTMAX", (1, 600), INT8, (0.1, 0), INT8, (1 / 256, -128), beta=1.0)
    runner = Runner("tflm-host", model)
    peaked = np.full((2, 1, 600), -128, dtype=np.int8)
    peaked[:, 0, 7] = 127
    outputs = runner.run(peaked, progress=False)
    np.testing.assert_array_equal(outputs[0], runner.invoke(peaked[0]))  # the child computes what TFLM does here
    crashing = np.concatenate([peaked, np.zeros((1, 1, 600), dtype=np.int8)])
    with pytest.raises(ModelError, match=r"crashed with SIGABRT on the sample at index 2 \(2 of 3 samples had finished\)"):
        runner.run(crashing, progress=False)
