"""Per-layer quantization error (mcuquant.layers) on real models: the MLPerf ResNet-8 and a trained digits CNN."""

import numpy as np
import pytest

from mcuquant.errors import DatasetError, ModelError
from mcuquant.layers import format_rows, layer_errors


@pytest.fixture(scope="module")
def resnet(shared_models):
    """The MLPerf ResNet-8 float model, its PTQ conversion (32 random images) and its layer errors."""
    from mcuquant.models import load_user_model
    from mcuquant.quantize import convert_ptq

    model = load_user_model(shared_models / "pretrainedResnet.h5")
    images = np.random.default_rng(0).random((48, 32, 32, 3)).astype(np.float32)
    representative, x = images[:32], images[32:]
    tflite = convert_ptq(model, representative).tflite
    return model, tflite, x, layer_errors(model, tflite, x, representative=representative)


def test_rows_name_the_keras_layers_and_are_sorted_worst_first(resnet):
    model, _, x, result = resnet
    names = {layer.name for layer in model.layers}
    rows = result["rows"]
    assert result["samples"] == len(x) and result["unmatched"] == []
    assert len(rows) == 17  # the input and the 16 operator outputs
    for row in rows:
        assert row["keras_layers"] and set(row["keras_layers"]) <= names, row
        assert row["layer"] == "+".join(row["keras_layers"])
    layers = {row["layer"] for row in rows}
    assert "conv2d+batch_normalization+activation" in layers and "add+activation_2" in layers
    errors = [row["rmse_over_scale"] for row in rows]
    assert errors == sorted(errors, reverse=True)
    assert any(row["op"] == "INPUT" for row in rows)
    shown = _rendered(format_rows(result, limit=5))
    assert rows[0]["layer"] in shown and rows[5]["layer"] not in shown and "12 more tensors" in shown


def _rendered(table) -> str:
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


def test_metrics_match_an_independent_computation(resnet):
    """First conv op vs a Keras sub-model and LiteRT run directly, by hand."""
    from ai_edge_litert.interpreter import Interpreter
    from mcuquant.tf_import import keras

    model, tflite, x, result = resnet
    row = next(r for r in result["rows"] if r["layer"] == "conv2d+batch_normalization+activation")
    reference = keras().Model(model.input, model.get_layer("activation").output).predict(x, verbose=0)

    with pytest.warns(UserWarning, match="preserve_all_tensors"):
        interpreter = Interpreter(model_content=tflite, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    (in_scale, in_zp) = inp["quantization"]
    index = next(d["index"] for d in interpreter.get_tensor_details() if d["name"] == row["tensor"])
    dequantized = []
    for sample in x:
        interpreter.set_tensor(inp["index"], np.clip(np.round(sample / in_scale) + in_zp, -128, 127).astype(np.int8)[None])
        interpreter.invoke()
        dequantized.append((interpreter.get_tensor(index).astype(np.float64) - row["zero_point"]) * row["scale"])
    error = np.stack(dequantized).reshape(reference.shape) - reference
    rmse = np.sqrt(np.mean(error ** 2))
    low, high = (-128 - row["zero_point"]) * row["scale"], (127 - row["zero_point"]) * row["scale"]
    clipped = np.mean((reference < low) | (reference > high))

    assert row["n_values"] == reference.size
    assert row["rmse"] == pytest.approx(rmse, rel=1e-3)
    assert row["max_abs_error"] == pytest.approx(np.abs(error).max(), rel=1e-3, abs=1e-5)
    assert row["rmse_over_scale"] == pytest.approx(rmse / row["scale"], rel=1e-3)
    assert row["clipped_share"] == pytest.approx(clipped, abs=1e-4)


def test_local_errors_of_ptq_are_about_rounding(resnet):
    """A layer's own error, fed exact inputs, is rounding: ~1/sqrt(12) = 0.29 steps for many layers."""
    _, _, _, result = resnet
    local = [r["local_rmse_over_scale"] for r in result["rows"] if r["local_rmse_over_scale"] is not None]
    assert len(local) >= 12, result["notes"]
    assert all(0 <= v < 3 for v in local)
    assert sum(0.2 <= v <= 0.45 for v in local) >= 5, local


def test_badly_calibrated_activations_show_as_clipping(trained_digits_cnn, digits):
    """Calibrating on samples scaled x0.1 shrinks every range: values clip, and the error grows."""
    from mcuquant.quantize import convert_ptq

    model, _, representative = trained_digits_cnn
    x = digits.x_test[:100]
    good = layer_errors(model, convert_ptq(model, representative).tflite, x)
    bad = layer_errors(model, convert_ptq(model, representative * 0.1).tflite, x)
    good_rows, bad_rows = ({r["layer"]: r for r in res["rows"]} for res in (good, bad))
    assert set(good_rows) == set(bad_rows)
    first_conv = next(name for name in bad_rows if name.startswith("conv2d"))
    assert bad_rows[first_conv]["clipped_share"] > 0.05
    assert good_rows[first_conv]["clipped_share"] < bad_rows[first_conv]["clipped_share"] / 10
    assert bad_rows[first_conv]["rmse"] > 3 * good_rows[first_conv]["rmse"]
    assert bad["rows"][0]["clipped_share"] > 0  # the worst row is a clipping one


def test_qat_model_rows_use_float_layer_names_without_local_errors(trained_digits_cnn, digits):
    from mcuquant.quantize import convert_qat

    model, qat_model, representative = trained_digits_cnn
    result = layer_errors(model, convert_qat(qat_model, representative).tflite, digits.x_test[:50],
                          representative=representative)
    names = {layer.name for layer in model.layers}
    assert result["unmatched"] == []
    # Keras numbers auto-named layers per session ("conv2d" or "conv2d_14"): take the model's own names.
    weighted = {layer.name for layer in model.layers if type(layer).__name__ in ("Conv2D", "Dense")}
    assert len(weighted) == 4 and weighted <= {name for r in result["rows"] for name in r["keras_layers"]}
    assert all(set(r["keras_layers"]) <= names for r in result["rows"])
    # QAT learned its own ranges: the debugger's PTQ re-quantization does not describe this model
    assert sum(r["local_rmse_over_scale"] is None for r in result["rows"]) >= 2
    assert any("other quantization parameters" in note for note in result["notes"])


def test_bad_inputs_are_named(trained_digits_cnn, digits):
    from mcuquant.models import build_zoo_model
    from mcuquant.quantize import convert_ptq
    from mcuquant.tf_import import tensorflow

    model, _, representative = trained_digits_cnn
    tflite = convert_ptq(model, representative).tflite
    with pytest.raises(DatasetError, match=r"shape \(8, 8\)"):
        layer_errors(model, tflite, digits.x_test[:4, :, :, 0])
    x = digits.x_test[:4].copy()
    x[2, 3, 3, 0] = np.nan
    with pytest.raises(DatasetError, match=r"NaN/inf values in samples \[2\]"):
        layer_errors(model, tflite, x)
    float_tflite = bytes(tensorflow().lite.TFLiteConverter.from_keras_model(model).convert())
    with pytest.raises(ModelError, match="float model"):
        layer_errors(model, float_tflite, digits.x_test[:4])
    other = build_zoo_model("mlp", digits.input_shape, digits.num_classes)
    with pytest.raises(ModelError, match="not the same network"):
        layer_errors(model, convert_ptq(other, representative).tflite, digits.x_test[:4])


def test_cli_layers_on_the_resnet_names_and_sorts_keras_layers(shared_models, tmp_path):
    """`mcuquant layers --model pretrainedResnet.h5 --data D`: PTQ-converted on D's train split, rows named."""
    import json

    from mcuquant.cli import main

    rng = np.random.default_rng(1)
    data = tmp_path / "images.npz"
    np.savez(data, x=rng.random((120, 32, 32, 3)).astype(np.float32), y=np.arange(120) % 10)
    out = tmp_path / "layers.json"
    assert main(["layers", "--model", str(shared_models / "pretrainedResnet.h5"), "--data", str(data),
                 "--normalize", "none", "--samples", "12", "--rep-samples", "32", "--json", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert result["samples"] == 12 and len(rows) == 17
    assert [r["rmse_over_scale"] for r in rows] == sorted((r["rmse_over_scale"] for r in rows), reverse=True)
    assert all(r["keras_layers"] for r in rows)
    assert sum(r["local_rmse_over_scale"] is not None for r in rows) >= 5  # PTQ here: the debugger applies


def test_cli_layers_needs_data(shared_models, capsys):
    from mcuquant.cli import main

    assert main(["layers", "--model", str(shared_models / "pretrainedResnet.h5")]) == 2
    assert "give --data" in capsys.readouterr().err
