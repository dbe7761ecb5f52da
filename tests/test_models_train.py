"""Zoo models sized to the data, user-model checks, repeatable training, QAT wrapping."""

import numpy as np
import pytest

from mcuquant.config import TrainingConfig
from mcuquant.errors import ModelError
from mcuquant.graph import Graph
from mcuquant.models import ZOO, build_zoo_model, check_model_fits_data, ends_in_softmax, load_user_model
from mcuquant.quantize import convert_ptq
from mcuquant.train import set_seeds, train_float

# Operators mcuquant's device runtimes implement (DESIGN.md, issue 4).
RUNTIME_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D", "ADD",
               "RESHAPE", "SOFTMAX"}


@pytest.mark.parametrize("name", ZOO)
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
