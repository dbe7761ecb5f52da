"""Models saved by Keras 3 (the `keras` package, not tf-keras) through every command.

A functional CNN with BatchNormalization, DepthwiseConv2D, a residual Add and
GlobalAveragePooling2D is built and trained briefly in Keras 3 on digits, saved as .keras, .h5
and exported as a SavedModel; `mcuquant compare` and then `mcuquant validate --board
qemu-nano33` (marked ``qemu``) run on the .keras and the .h5. The tf-keras translation that
makes QAT possible is checked against real Keras 3 outputs, for several layer kinds, and a
layer it cannot translate is named.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from test_cli import assert_one_error_line, run

from mcuquant.errors import ModelError
from mcuquant.models import keras3 as k3
from mcuquant.models import load_user_model
from mcuquant.tf_import import keras, keras3

SPLIT = "0.6,0.3,0.1"  # 180 test samples: every rung, the translation check and QEMU run on them
HOST_RUNGS = ["keras-float", "keras-qat"] + [f"{v}/{r}" for v in ("ptq", "qat")
                                             for r in ("litert", "litert-ref", "tflm-host", "builtin-host")]


def _residual_cnn(k):
    L = k.layers
    inputs = k.Input((8, 8, 1), name="pixels")
    x = L.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    y = L.DepthwiseConv2D(3, padding="same")(x)
    y = L.BatchNormalization()(y)
    y = L.Activation("relu")(y)
    x = L.Add()([x, y])
    x = L.GlobalAveragePooling2D()(x)
    return k.Model(inputs, L.Dense(10, activation="softmax")(x), name="k3_residual_cnn")


@pytest.fixture(scope="module")
def k3_files(digits, tmp_path_factory):
    """The Keras 3 CNN trained 8 epochs on the digits train split: the model and its saved files."""
    k = keras3()
    k.utils.set_random_seed(0)
    model = _residual_cnn(k)
    model.compile(k.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(digits.x_train, digits.y_train, epochs=8, batch_size=32, verbose=0)
    folder = tmp_path_factory.mktemp("k3")
    files = {"model": model, "keras": folder / "cnn.keras", "h5": folder / "cnn.h5", "export": folder / "exported"}
    k3.save_model(model, files["keras"])
    k3.save_model(model, files["h5"])
    model.export(str(files["export"]), verbose=False)
    return files


# ---------------------------------------------------------------------------------------------
# Loading: which Keras wrote the file


def test_keras3_files_load_with_keras3_and_predict_as_saved(k3_files, digits):
    expected = k3_files["model"].predict(digits.x_test, verbose=0)
    for kind in ("keras", "h5", "export"):
        assert k3.saved_by_keras3(k3_files[kind]), kind
        model = load_user_model(k3_files[kind])
        assert k3.is_keras3(model) and k3.is_exported(model) == (kind == "export")
        assert model.input_shape == (None, 8, 8, 1) and model.output_shape == (None, 10)
        np.testing.assert_allclose(model.predict(digits.x_test, verbose=0), expected, rtol=0, atol=1e-6)


def test_tf_keras_files_still_load_with_tf_keras(tmp_path, digits):
    tfk = keras()
    model = tfk.Sequential([tfk.Input((8, 8, 1)), tfk.layers.Flatten(), tfk.layers.Dense(10, activation="softmax")])
    expected = model.predict(digits.x_test, verbose=0)
    for name in ("m.h5", "m.keras", "saved"):
        path = tmp_path / name
        if name.endswith(".h5"):
            with pytest.warns(UserWarning, match="HDF5 file"):
                model.save(path)
        else:
            model.save(path)
        assert not k3.saved_by_keras3(path), name
        loaded = load_user_model(path)
        assert type(loaded).__module__.startswith("tf_keras.")
        np.testing.assert_array_equal(loaded.predict(digits.x_test, verbose=0), expected)


def test_a_file_that_is_no_model_is_still_one_clear_error(tmp_path):
    path = tmp_path / "broken.keras"
    path.write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="could not load Keras model"):
        load_user_model(path)


# ---------------------------------------------------------------------------------------------
# Translation to tf-keras


def test_functional_translation_computes_the_same_outputs(k3_files, digits):
    model = load_user_model(k3_files["keras"])
    translated, record = k3.to_tf_keras(model, digits.x_test)
    assert type(translated).__module__.startswith("tf_keras.")
    assert [(l.name, type(l).__name__) for l in translated.layers] == [(l.name, type(l).__name__) for l in model.layers]
    assert record["passed"] and record["samples"] == len(digits.x_test) and record["layers"] == len(model.layers)
    assert record["from"].startswith("keras 3.") and record["to"].startswith("tf-keras 2.")
    # Tolerance: 1e-4 of the output range; the softmax outputs span almost [0, 1].
    assert 0.5e-4 < record["tolerance"] <= 1e-4
    assert record["max_abs_difference"] <= record["tolerance"]
    # BN moving statistics are weights too: Keras 3 trained them, the translation holds them.
    bn = [l for l in translated.layers if type(l).__name__ == "BatchNormalization"][0]
    assert not np.allclose(bn.moving_variance.numpy(), 1.0)


def test_the_check_fails_when_a_weight_differs(k3_files, digits):
    """The check is not vacuous: one weight changed by 1% of its size is caught."""
    model = load_user_model(k3_files["keras"])
    translated = k3.translate(model)
    dense = translated.get_layer("dense")
    kernel, bias = dense.get_weights()
    kernel[0, 0] += 0.01 * np.abs(kernel).max()
    dense.set_weights([kernel, bias])
    record = k3.check_translation(model, translated, digits.x_test)
    assert not record["passed"] and record["max_abs_difference"] > record["tolerance"]


def _random_weights(model, seed=0):
    """Weights away from their initial values (BN variances positive), so a mis-copied one shows."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        layer.set_weights([np.abs(w) + 0.5 if "variance" in v.path else rng.normal(0, 0.3, w.shape).astype(w.dtype)
                           for v, w in zip(layer.weights, layer.get_weights())])
    return model


@pytest.mark.parametrize("name", ["sequence", "image_sequential", "dense_branches"])
def test_translation_of_layer_kinds(name):
    k = keras3()
    L = k.layers
    k.utils.set_random_seed(1)
    if name == "sequence":  # what a Conv1D/LSTM accelerometer model uses
        model = k.Sequential([k.Input((20, 3)), L.Conv1D(8, 3, activation="relu"), L.MaxPooling1D(2),
                              L.LSTM(6, return_sequences=True), L.GlobalAveragePooling1D(), L.Dropout(0.3),
                              L.Dense(4, activation="softmax")], name=name)
        x = np.random.default_rng(0).normal(size=(64, 20, 3)).astype(np.float32)
    elif name == "image_sequential":
        model = k.Sequential([k.Input((8, 8, 2)), L.Conv2D(4, 3, padding="same"), L.BatchNormalization(),
                              L.LeakyReLU(negative_slope=0.1), L.AveragePooling2D(2), L.SeparableConv2D(6, 2),
                              L.Flatten(), L.Dense(5), L.Softmax()], name=name)
        x = np.random.default_rng(0).random((64, 8, 8, 2)).astype(np.float32)
    else:  # functional with a shared input, Reshape, Concatenate and a linear output
        inputs = k.Input((12,))
        a = L.Dense(8, activation="tanh")(inputs)
        b = L.Reshape((3, 4))(inputs)
        b = L.Flatten()(L.Conv1D(2, 2, activation="sigmoid")(b))
        x_ = L.Concatenate()([a, b])
        model = k.Model(inputs, L.Dense(3)(L.ReLU(max_value=6.0)(x_)), name=name)
        x = np.random.default_rng(0).normal(size=(64, 12)).astype(np.float32)
    _random_weights(model)
    translated, record = k3.to_tf_keras(model, x)
    assert record["passed"] and record["max_abs_difference"] <= record["tolerance"]
    assert [type(l).__name__ for l in translated.layers if type(l).__name__ != "InputLayer"] == \
           [type(l).__name__ for l in model.layers if type(l).__name__ != "InputLayer"]
    # Outputs this far from the initial ones: the weights were copied, not re-initialized.
    fresh = k3.translate(k.models.clone_model(model))
    assert np.abs(fresh.predict(x, verbose=0) - translated.predict(x, verbose=0)).max() > 100 * record["tolerance"]


def test_a_layer_that_cannot_be_translated_is_named():
    k = keras3()

    class Doubling(k.layers.Layer):
        def call(self, x):
            return 2.0 * x

    inputs = k.Input((4,))
    model = k.Model(inputs, k.layers.Dense(2)(Doubling(name="times_two")(inputs)))
    with pytest.raises(ModelError) as err:
        k3.translate(model)
    message = str(err.value)
    for fragment in ("'times_two'", "(Doubling)", "not a built-in Keras layer", "re-save the model with tf-keras",
                     "replace the layer"):
        assert fragment in message

    # A built-in layer tf-keras does not have, and a Keras 3 option tf-keras lacks.
    model = k.Sequential([k.Input((4,)), k.layers.RMSNormalization(name="rms")])
    with pytest.raises(ModelError, match=r"'rms' \(RMSNormalization\).*tf-keras has no RMSNormalization layer"):
        k3.translate(model)
    model = k.Sequential([k.Input((4,)), k.layers.Dense(3, lora_rank=2, name="adapted")])
    with pytest.raises(ModelError, match=r"'adapted' \(Dense\).*lora_rank=2 has no tf-keras equivalent"):
        k3.translate(model)


def test_an_exported_savedmodel_runs_and_converts_but_cannot_be_translated(k3_files, digits):
    """model.export() keeps a traced graph: the float rung and PTQ work, QAT needs the .keras/.h5."""
    from mcuquant.interpreters import Runner, quantize
    from mcuquant.quantize import convert_ptq, representative_samples

    model = load_user_model(k3_files["export"])
    conv = convert_ptq(model, representative_samples(digits.x_train, 100, seed=0))
    summary = conv.summary()
    assert summary["input"]["dtype"] == summary["output"]["dtype"] == "int8" and summary["per_channel_weights"]
    runner = Runner("tflm-host", conv.tflite)
    int8 = np.argmax(runner.run(quantize(digits.x_test, runner.input), progress=False), axis=1)
    float_ = np.argmax(model.predict(digits.x_test, verbose=0), axis=1)
    assert (int8 == float_).mean() > 0.9  # the same network, int8
    with pytest.raises(ModelError, match=r"exported SavedModel.*cannot be rebuilt in tf-keras for QAT.*\.keras or \.h5"):
        k3.translate(model)


@pytest.mark.parametrize("kind", ["flatten", "lstm"])
def test_keras3_conversions_hold_no_batch_shape_arithmetic(tmp_path, kind):
    """TF converts a Keras 3 model exported for any batch size, which leaves SHAPE, STRIDED_SLICE and
    PACK around every Flatten; mcuquant exports it for a batch of one, so the builtin runtime runs it
    and its bytes are tflm-host's. A Keras 3 LSTM (a While loop, which crashes the quantizer) is
    converted from its tf-keras translation, one fused LSTM op."""
    from mcuquant.interpreters import Runner, quantize
    from mcuquant.quantize import convert_ptq

    k = keras3()
    k.utils.set_random_seed(0)
    if kind == "flatten":
        layers = [k.Input((8, 8, 1)), k.layers.Conv2D(4, 3, activation="relu"), k.layers.Flatten(),
                  k.layers.Dense(10, activation="softmax")]
    else:
        layers = [k.Input((12, 3)), k.layers.LSTM(5), k.layers.Dense(4)]
    model = k.Sequential(layers)
    x = np.random.default_rng(0).random((40, *model.input_shape[1:])).astype(np.float32)
    k3.save_model(model, tmp_path / "m.keras")
    model.export(str(tmp_path / "exported"), verbose=False)
    if kind == "lstm":  # Keras 3 traces an LSTM as a While loop; only the .keras has layers to translate
        with pytest.raises(ModelError, match=r"recurrent loop.*Give the \.keras or \.h5 file"):
            convert_ptq(load_user_model(tmp_path / "exported"), x)
    for path in (tmp_path / "m.keras",) + ((tmp_path / "exported",) if kind == "flatten" else ()):
        conv = convert_ptq(load_user_model(path), x)
        ops = conv.summary()["ops"]
        if kind == "flatten":
            assert ops == ["CONV_2D", "FULLY_CONNECTED", "RESHAPE", "SOFTMAX"], (path.name, ops)
        else:  # the STRIDED_SLICE takes the last step's hidden state
            assert ops == ["FULLY_CONNECTED", "STRIDED_SLICE", "UNIDIRECTIONAL_SEQUENCE_LSTM"], ops
        oracle, builtin = Runner("tflm-host", conv.tflite), Runner("builtin-host", conv.tflite)
        xq = quantize(x, oracle.input)
        np.testing.assert_array_equal(builtin.run(xq, progress=False), oracle.run(xq, progress=False))


def test_per_channel_switch_applies_to_keras3_models(k3_files, digits):
    from mcuquant.quantize import convert_ptq, representative_samples

    model = load_user_model(k3_files["h5"])
    conv = convert_ptq(model, representative_samples(digits.x_train, 50, seed=0), per_channel=False)
    assert not conv.summary()["per_channel_weights"]


# ---------------------------------------------------------------------------------------------
# The commands


def test_layers_names_keras3_tensors_after_the_model_layers(k3_files):
    """Keras 3 converts with its own name scopes ("functional_1/conv2d_1/..."); rows still name the
    model's layers, and the debugger's local errors are found."""
    from mcuquant.layers import run_layers

    result = run_layers(k3_files["keras"], data="builtin:digits", samples=50, representative_samples=100,
                        progress=False)
    names = {l.name for l in k3_files["model"].layers}
    by_op = {r["op"]: r for r in result["rows"]}
    assert by_op["CONV_2D"]["keras_layers"] == ["conv2d", "batch_normalization", "re_lu"]
    assert by_op["ADD"]["keras_layers"] == ["add"]
    assert all(set(r["keras_layers"]) <= names for r in result["rows"])
    assert all(r["local_rmse_over_scale"] is not None for r in result["rows"] if r["op"] != "INPUT")


def test_layers_on_an_exported_savedmodel_prints_only_its_table(k3_files, capsys):
    """The converter exports a Keras 3 model before converting it, which prints the SavedModel's
    endpoints ("Saved artifact at ..."): none of that reaches mcuquant's output."""
    rc, out, err = run(["layers", "--model", str(k3_files["export"]), "--data", "builtin:digits", "--samples", "20",
                        "--limit", "3"], capsys)
    assert rc == 0, err
    assert "per-layer int8 error" in out and "more tensors (--limit N shows more, --json FILE keeps all)" in out
    assert "Saved artifact" not in out + err and "TensorSpec" not in out + err


def test_qat_weights_are_copied_into_the_translation(k3_files, digits):
    """explain copies the QAT model's weights into "the float model": for a Keras 3 model that is its
    tf-keras translation, the model QAT was made from."""
    from mcuquant.diff import copy_qat_weights
    from mcuquant.tf_import import tfmot

    model = load_user_model(k3_files["keras"])
    qat = tfmot().quantization.keras.quantize_model(k3.translate(model))
    qat.get_layer("quant_dense").weights[0].assign(np.full((16, 10), 0.25, np.float32))  # as if QAT had trained it
    clone = copy_qat_weights(qat, model)
    assert type(clone).__module__.startswith("tf_keras.")
    np.testing.assert_array_equal(clone.get_layer("dense").get_weights()[0], 0.25)
    np.testing.assert_array_equal(clone.get_layer("conv2d").get_weights()[0], model.get_layer("conv2d").get_weights()[0])


@pytest.fixture(scope="module")
def explained_export(k3_files, tmp_path_factory):
    """`mcuquant explain --no-device` on the exported SavedModel folder: (work folder, report)."""
    from mcuquant.cli import main

    work = tmp_path_factory.mktemp("explain-export")
    rc = main(["explain", "--model", str(k3_files["export"]), "--data", "builtin:digits", "--split", SPLIT,
               "--out", str(work), "--rep-samples", "100", "--no-device", "--quiet"])
    assert rc == 0
    return work, json.loads((work / "report.json").read_text())


def test_an_exported_savedmodel_gets_the_float_and_ptq_rungs_and_says_why_no_qat(explained_export, k3_files):
    """model.export() keeps a traced graph, which tfmot cannot make quantization-aware: the ladder
    has every float and PTQ rung, and the report says why QAT is missing and what to give instead."""
    work, report = explained_export
    assert [r["id"] for r in report["rungs"]] == [r for r in HOST_RUNGS if "qat" not in r]
    assert set(report["conversions"]) == {"ptq"} and not (work / "qat.tflite").exists()
    assert "exported SavedModel" in report["model"]["qat_training"]["skipped"]
    assert ".keras or .h5" in report["model"]["qat_training"]["skipped"]
    assert report["artifacts"]["float_model"] == str(k3_files["export"])
    from mcuquant.data import Dataset

    test = Dataset.load(work / "dataset.npz")  # keras-float is the exported graph itself, run on the test split
    float_errors = np.mean(np.argmax(k3_files["model"].predict(test.x_test, verbose=0), axis=1) != test.y_test)
    rungs = {r["id"]: r for r in report["rungs"]}
    assert rungs["keras-float"]["error_rate"] == pytest.approx(float_errors)
    assert rungs["ptq/builtin-host"]["error_rate"] == rungs["ptq/tflm-host"]["error_rate"]
    assert {c["b"] for c in report["comparisons"] if c["a"] == "keras-float"} >= {"ptq/tflm-host", "ptq/builtin-host"}
    findings = {f["id"]: " ".join(f["sentences"]) for f in report["explain"]["findings"]}
    assert findings["a"].startswith("No QAT model to compare: the model is an exported SavedModel")
    assert "ptq/tflm-host" in findings["b"] and "keras-qat" not in findings["b"]
    assert set(report["explain"]["layers"]) == {"ptq"} and report["explain"]["layers"]["ptq"]["rows"]
    assert "Range differences (mcuquant explain)" in (work / "report.html").read_text()


def _validated_on_qemu(work, capsys) -> dict:
    """`mcuquant validate --board qemu-nano33` on a compare work folder: its report afterwards."""
    rc, _, err = run(["validate", "--board", "qemu-nano33", "--model", str(work), "--quiet"], capsys)
    assert rc == 0, err
    return json.loads((work / "report.json").read_text())


@pytest.mark.qemu
def test_an_exported_savedmodel_validates_on_qemu(explained_export, pio_core, capsys):
    work, _ = explained_export
    report = _validated_on_qemu(work, capsys)
    device = [r for r in report["rungs"] if r["id"].endswith("/device")]
    assert [r["id"] for r in device] == ["ptq/device"]
    assert device[0]["bit_exact_rate"] == 1.0 and device[0]["n"] == report["dataset"]["n_test"]


@pytest.fixture(scope="module", params=["keras", "h5"])
def compared(request, k3_files, tmp_path_factory):
    """`mcuquant compare` on the Keras 3 .keras / .h5 file: (work folder, report)."""
    from mcuquant.cli import main

    work = tmp_path_factory.mktemp(f"compare-{request.param}")
    rc = main(["compare", "--model", str(k3_files[request.param]), "--data", "builtin:digits", "--split", SPLIT,
               "--out", str(work), "--qat-epochs", "1", "--rep-samples", "100", "--quiet"])
    assert rc == 0
    return work, json.loads((work / "report.json").read_text())


def test_compare_runs_every_host_rung_with_the_translation_check(compared, k3_files):
    from mcuquant.data import load_dataset

    work, report = compared
    digits = load_dataset("builtin:digits", split=tuple(float(f) for f in SPLIT.split(",")))
    assert [r["id"] for r in report["rungs"]] == HOST_RUNGS
    translation = report["model"]["translation"]
    assert translation["passed"] and translation["samples"] == len(digits.x_test) == report["dataset"]["n_test"]
    assert translation["layers"] == len(k3_files["model"].layers)
    assert 0 <= translation["max_abs_difference"] <= translation["tolerance"]
    # keras-float is the Keras 3 model itself.
    rungs = {r["id"]: r for r in report["rungs"]}
    float_errors = np.mean(np.argmax(k3_files["model"].predict(digits.x_test, verbose=0), axis=1) != digits.y_test)
    assert rungs["keras-float"]["error_rate"] == pytest.approx(float_errors)
    assert report["conversions"]["ptq"]["input"]["dtype"] == "int8"
    assert (work / "float.keras").is_file()


@pytest.mark.qemu
def test_validate_on_qemu_is_byte_identical(compared, pio_core, capsys):
    work, _ = compared
    report = _validated_on_qemu(work, capsys)
    ids = [r["id"] for r in report["rungs"]]
    assert set(HOST_RUNGS + ["ptq/device", "qat/device"]) <= set(ids)
    for rung in (r for r in report["rungs"] if r["id"].endswith("/device")):
        assert rung["bit_exact_rate"] == 1.0 and rung["n"] == report["dataset"]["n_test"]
    assert report["model"]["translation"]["passed"]
