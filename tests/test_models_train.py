"""Zoo models sized to the data, user-model checks, repeatable training, QAT wrapping."""

import numpy as np
import pytest

from mcuquant.config import TrainingConfig
from mcuquant.errors import ModelError
from mcuquant.graph import Graph
from mcuquant.models import ZOO, build_zoo_model, check_model_fits_data, ends_in_softmax, load_user_model
from mcuquant.quantize import convert_ptq, convert_qat
from mcuquant.train import quantization_aware, set_seeds, train_float

# Operators mcuquant's device runtimes implement (DESIGN.md, issue 4).
RUNTIME_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D", "ADD",
               "RESHAPE", "SOFTMAX"}


IMAGE_ZOO = ("mlp", "cnn", "dscnn", "resnet8")
assert set(IMAGE_ZOO) | {"conv1d", "lstm", "autoencoder"} == set(ZOO)


@pytest.mark.parametrize("name", IMAGE_ZOO)
@pytest.mark.parametrize("shape", [(8, 8, 1), (32, 32, 3), (49, 10, 1)])
def test_zoo_model_fits_input_and_converts_to_supported_int8_ops(name, shape):
    model = build_zoo_model(name, shape, num_classes=10)
    assert tuple(model.input_shape[1:]) == shape and model.output_shape == (None, 10)
    assert ends_in_softmax(model)
    if shape != (8, 8, 1):
        return  # conversion once per zoo model keeps the suite quick
    rep = np.random.default_rng(0).random((8, *shape), dtype=np.float32)
    graph = Graph.from_tflite(convert_ptq(model, rep).tflite)
    assert {op.name for op in graph.operators} <= RUNTIME_OPS


def test_zoo_width_scales_parameters():
    small = build_zoo_model("cnn", (8, 8, 1), 10, width=0.5).count_params()
    large = build_zoo_model("cnn", (8, 8, 1), 10, width=2.0).count_params()
    assert large > 4 * small


def test_zoo_regression_head_is_linear():
    model = build_zoo_model("mlp", (5,), None, outputs=2)
    assert model.output_shape == (None, 2) and not ends_in_softmax(model)


def test_unknown_zoo_model_and_flat_data_for_cnn_are_model_errors():
    with pytest.raises(ModelError, match="available: zoo:mlp"):
        build_zoo_model("vgg", (8, 8, 1), 10)
    with pytest.raises(ModelError, match="zoo:mlp for flat"):
        build_zoo_model("cnn", (64,), 10)


def test_user_model_shape_and_class_checks(shared_models):
    model = load_user_model(shared_models / "pretrainedResnet.h5")
    check_model_fits_data(model, (32, 32, 3), 10)
    with pytest.raises(ModelError, match=r"takes samples of shape \(32, 32, 3\) but the data has \(8, 8, 1\)"):
        check_model_fits_data(model, (8, 8, 1), 10)
    with pytest.raises(ModelError, match="10 outputs but the data has 4 classes"):
        check_model_fits_data(model, (32, 32, 3), 4)


def test_unloadable_user_models_are_model_errors(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_user_model(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="could not load"):
        load_user_model(tmp_path / "junk.h5")
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(ModelError, match="expected a .keras or .h5"):
        load_user_model(tmp_path / "model.onnx")


def _train_once(digits, seed):
    set_seeds(seed)
    model = build_zoo_model("mlp", digits.input_shape, digits.num_classes)
    train_float(model, digits, TrainingConfig(seed=seed), epochs=2, progress=False)
    return model.get_weights()


def test_training_repeats_exactly_with_the_same_seed(digits):
    first, again, other = _train_once(digits, 0), _train_once(digits, 0), _train_once(digits, 1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_qat_wraps_a_copy_and_learns_ranges(trained_digits_cnn):
    model, qat_model, _ = trained_digits_cnn
    assert any(type(layer).__name__.startswith("QuantizeWrapper") for layer in qat_model.layers)
    assert not any("Quantize" in type(layer).__name__ for layer in model.layers)  # float model untouched
    ranges = [w for w in qat_model.weights if "max" in w.name]
    assert ranges and any(float(np.max(w.numpy())) > 0 for w in ranges)


@pytest.mark.parametrize("form", ["model.keras", "model.h5", "saved_model_dir"])
@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file:UserWarning")
def test_user_models_load_from_every_keras_format(tmp_path, form):
    model = build_zoo_model("mlp", (8, 8, 1), 10)
    path = tmp_path / form
    model.save(path)
    loaded = load_user_model(path)
    x = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


# ------------------------------------------------------------------ sequences, anomaly detection


def _ops(tflite: bytes) -> list[str]:
    return [op.name for op in Graph.from_tflite(tflite).operators]


def test_image_zoo_models_take_2d_samples_as_one_channel():
    for name in ("cnn", "dscnn", "resnet8"):
        assert build_zoo_model(name, (8, 8), 10).input_shape == (None, 8, 8, 1)


@pytest.mark.parametrize("name", ["conv1d", "lstm"])
def test_sequence_zoo_models_take_steps_by_channels(name):
    model = build_zoo_model(name, (100, 6), 4)
    batch = 1 if name == "lstm" else None  # the LSTM converts to UNIDIRECTIONAL_SEQUENCE_LSTM only so
    assert model.input_shape == (batch, 100, 6) and model.output_shape == (batch, 4) and ends_in_softmax(model)
    assert build_zoo_model(name, (150,), 2).input_shape == (batch, 150, 1)
    assert build_zoo_model(name, (50, 3), None, outputs=2).output_shape == (batch, 2)
    with pytest.raises(ModelError, match=r"zoo:\w+ needs sequences \(steps, channels\).*\(8, 8, 1\).*zoo:cnn"):
        build_zoo_model(name, (8, 8, 1), 10)


def test_autoencoder_is_sized_like_mlperf_tiny_ad_and_reconstructs_its_input():
    def dense_units(model):
        return [layer.units for layer in model.layers if type(layer).__name__ == "Dense"]

    mlperf = build_zoo_model("autoencoder", (640,), None)
    assert mlperf.output_shape == (None, 640) and dense_units(mlperf) == [128] * 4 + [8] + [128] * 4 + [640]
    assert not ends_in_softmax(mlperf)
    small = build_zoo_model("autoencoder", (8, 8, 1), None, task="anomaly")
    assert small.input_shape == small.output_shape == (1, 8, 8, 1)
    assert dense_units(small) == [32] * 4 + [8] + [32] * 4 + [64]
    assert sum(type(layer).__name__ == "BatchNormalization" for layer in small.layers) == 9
    with pytest.raises(ModelError, match="reconstructs its input for anomaly detection.*classification use zoo:mlp"):
        build_zoo_model("autoencoder", (8, 8, 1), 10)
    with pytest.raises(ModelError, match="zoo:cnn predicts classes.*use zoo:autoencoder"):
        build_zoo_model("cnn", (8, 8, 1), None, task="anomaly")


def _basicmotions():
    from mcuquant.data import load_dataset

    return load_dataset("builtin:basicmotions")


def test_new_zoo_models_fit_and_convert_to_the_expected_int8_ops():
    """Conv1D lowers to EXPAND_DIMS/CONV_2D/RESHAPE, the LSTM fuses into one op, the autoencoder
    is FULLY_CONNECTED layers (batch norm folded) between two RESHAPEs."""
    data = _basicmotions()
    rng = np.random.default_rng(0)
    expected = {
        "conv1d": ["EXPAND_DIMS", "CONV_2D", "RESHAPE", "EXPAND_DIMS", "MAX_POOL_2D", "RESHAPE"] * 2
                  + ["MEAN", "FULLY_CONNECTED", "SOFTMAX"],
        "lstm": ["UNIDIRECTIONAL_SEQUENCE_LSTM", "STRIDED_SLICE", "FULLY_CONNECTED", "SOFTMAX"],
    }
    for name, ops in expected.items():
        model = build_zoo_model(name, data.input_shape, data.num_classes)
        train_float(model, data, TrainingConfig(batch_size=16), epochs=1, progress=False)
        probabilities = model.predict(data.x_test, verbose=0)
        assert probabilities.shape == (16, 4)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
        assert _ops(convert_ptq(model, data.x_train[:8]).tflite) == ops
    lstm = model
    one_by_one = np.concatenate([lstm.predict(x[None], verbose=0) for x in data.x_test[:3]])
    np.testing.assert_allclose(one_by_one, probabilities[:3], rtol=1e-5)  # batch of 1 or not: same result

    auto = build_zoo_model("autoencoder", (8, 8, 1), None)
    x = rng.random((40, 8, 8, 1), dtype=np.float32)
    auto.compile("adam", "mse")
    auto.fit(x, x, epochs=1, batch_size=8, verbose=0)
    assert auto.predict(x, verbose=0).shape == x.shape
    assert _ops(convert_ptq(auto, x[:8]).tflite) == ["RESHAPE"] + ["FULLY_CONNECTED"] * 10 + ["RESHAPE"]


def test_qat_covers_conv1d_and_pooling_1d_and_converts_to_the_ptq_ops():
    from mcuquant.tf_import import keras

    data = _basicmotions()
    L = keras().layers
    inputs = keras().Input(data.input_shape)
    x = L.Conv1D(8, 5, padding="same", activation="relu")(inputs)
    x = L.MaxPooling1D(2)(x)
    x = L.Conv1D(8, 3, strides=2, use_bias=False)(x)
    x = L.GlobalMaxPooling1D()(x)
    model = keras().Model(inputs, L.Softmax()(L.Dense(4)(x)))
    cfg = TrainingConfig(qat_epochs=2, batch_size=8)
    train_float(model, data, cfg, epochs=5, progress=False)
    qat_model, _ = quantization_aware(model, data, cfg, progress=False)
    assert not any("Quantize" in type(layer).__name__ for layer in model.layers)  # float model untouched
    ptq, qat = convert_ptq(model, data.x_train[:16]), convert_qat(qat_model, data.x_train[:16])
    assert _ops(qat.tflite) == _ops(ptq.tflite)
    graph = Graph.from_tflite(qat.tflite)
    kernels = [graph.tensors[op.inputs[1]] for op in graph.operators if op.name == "CONV_2D"]
    assert [len(k.scales) for k in kernels] == [8, 8]  # per-channel weights, as PTQ gives
    # the int8 model computes what the QAT model simulated
    from mcuquant.interpreters import Runner, dequantize, quantize

    runner = Runner("tflm-host", qat.tflite)
    int8 = np.stack([dequantize(runner.invoke(quantize(s, runner.input)), runner.output) for s in data.x_test])
    fake_quant = qat_model.predict(data.x_test, verbose=0)
    assert np.abs(int8.reshape(fake_quant.shape) - fake_quant).max() < 0.05


def test_qat_covers_the_zoo_lstm():
    data = _basicmotions()
    model = build_zoo_model("lstm", data.input_shape, data.num_classes)
    cfg = TrainingConfig(qat_epochs=1, batch_size=16)
    train_float(model, data, cfg, epochs=1, progress=False)
    qat_model, _ = quantization_aware(model, data, cfg, progress=False)
    ops = _ops(convert_qat(qat_model, data.x_train[:8]).tflite)
    # The converter calibrates the LSTM itself; where its input scale differs from the QAT-learned
    # one it requantizes the input first (DEQUANTIZE + QUANTIZE).
    assert [op for op in ops if op not in ("DEQUANTIZE", "QUANTIZE")] == _ops(convert_ptq(model, data.x_train[:8]).tflite)
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in ops
