"""The bad-input catalogue crossed with every command that reads that input: each answer is one
`mcuquant: error: ...` line naming the file and the problem, exit status 2, no traceback, and
nothing built or emulated first.

The catalogue: bad .tflite files (missing, a folder, empty, 8 bytes, random bytes, truncated,
float, dynamic-range) against export, build, validate, diff and layers; integer models the runtime
does not run (int16x8, an unsupported op) against export, build and validate; bad data (NaN, inf,
wrong sample shape, a label out of range or more classes than outputs, negative labels, targets
that do not fit the outputs) against validate (.tflite and Keras), compare, explain, layers and
diff;
Keras models with NaN weights, and training that diverges, against the commands that take a Keras
model; an unknown board, as a flag and in mcuquant.toml, in every command that takes one; typos
in mcuquant.toml against every command that reads it.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from test_cli import assert_one_error_line, run


@pytest.fixture(scope="module")
def bad_tflites(tmp_path_factory, shared_models):
    """{case: (path, words the error must contain)}."""
    from mcuquant.tf_import import keras, tensorflow

    folder = tmp_path_factory.mktemp("bad-tflite")
    good = (shared_models / "kws_ref_model.tflite").read_bytes()
    tf, k = tensorflow(), keras()
    model = k.Sequential([k.Input((8, 8, 1)), k.layers.Flatten(), k.layers.Dense(32), k.layers.Dense(10)])
    dynamic = tf.lite.TFLiteConverter.from_keras_model(model)
    dynamic.optimizations = [tf.lite.Optimize.DEFAULT]  # no representative set: int8 weights, float activations
    files = {
        "empty": (b"", "is empty (0 bytes)"),
        "8 bytes": (good[:8], "truncated or corrupt"),
        "random": (np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes(),
                   "is not a TFLite model (no TFL3"),
        "truncated": (good[: len(good) // 2], "truncated or corrupt"),
        "float": (bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert()), "is a float model"),
        "dynamic range": (bytes(dynamic.convert()), "(dynamic-range quantization"),
    }
    cases = {}
    for case, (data, words) in files.items():
        path = folder / f"{case.replace(' ', '_')}.tflite"
        path.write_bytes(data)
        cases[case] = (path, words)
    cases["missing"] = (folder / "nowhere.tflite", "not found")
    (folder / "dir.tflite").mkdir()
    cases["a folder"] = (folder / "dir.tflite", "is a folder")
    return cases


COMMANDS = {
    "export": lambda m, tmp: ["export", str(m), "--out", str(tmp / "out")],
    "build": lambda m, tmp: ["build", "--board", "qemu-nano33", "--model", str(m), "--out", str(tmp / "fw")],
    "validate": lambda m, tmp: ["validate", "--board", "qemu-nano33", "--model", str(m), "--samples", "2",
                                "--out", str(tmp / "v"), "--quiet"],
    "diff": lambda m, tmp: ["diff", str(m), str(m)],
}
CASES = ["missing", "a folder", "empty", "8 bytes", "random", "truncated", "float", "dynamic range"]


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("case", CASES)
def test_a_bad_tflite_is_one_clear_error_in_every_command(bad_tflites, command, case, tmp_path, capsys):
    path, words = bad_tflites[case]
    rc, _, err = run(COMMANDS[command](path, tmp_path), capsys)
    assert rc == 2
    if case != "a folder" or command != "validate":  # validate reads a folder as a compare work folder
        assert_one_error_line(err, path.name, words)
    else:
        assert_one_error_line(err, str(path))
    assert not (tmp_path / "fw").exists() and not (tmp_path / "v" / "firmware").exists()  # nothing built


@pytest.mark.parametrize("case", CASES)
def test_layers_with_a_bad_tflite_is_one_clear_error(bad_tflites, trained_digits_cnn, case, tmp_path, capsys):
    model, _, _ = trained_digits_cnn
    keras_path = tmp_path / "cnn.keras"
    model.save(keras_path)
    path, words = bad_tflites[case]
    rc, _, err = run(["layers", "--model", str(keras_path), "--tflite", str(path), "--data", "builtin:digits",
                      "--samples", "5"], capsys)
    assert rc == 2
    assert_one_error_line(err, path.name, words)
    assert os.path.exists(keras_path)


# ---------------------------------------------------------------------------------------------
# Bad data, for the commands that read data with a model


@pytest.fixture(scope="module")
def bad_data(tmp_path_factory, digits):
    """{case: (npz path, words the error must contain)}, digits-like except for one fault each."""
    folder = tmp_path_factory.mktemp("bad-data")
    x = np.concatenate([digits.x_train, digits.x_val, digits.x_test])[..., 0]
    y = np.concatenate([digits.y_train, digits.y_val, digits.y_test])
    first = np.zeros(x.shape, bool)
    first.flat[5] = True
    faults = {
        "NaN": (dict(x=np.where(first, np.nan, x), y=y), "NaN values"),
        "inf": (dict(x=np.where(first, np.inf, x), y=y), "infinite values"),
        "wrong sample shape": (dict(x=np.random.default_rng(0).random((100, 32, 32, 3), np.float32),
                                    y=np.arange(100) % 10), "takes samples of shape (8, 8, 1)"),
        "label out of range": (dict(x=x, y=np.where(np.arange(len(y)) == 3, 12, y)), "has 10 outputs but the data has 11"),
        "negative labels": (dict(x=x, y=y - 1), "negative labels"),
        "targets that do not fit": (dict(x=x, y=np.random.default_rng(0).random((len(y), 3), np.float32)),
                                    "outputs 10 values per sample but the data has 3 regression targets"),
    }
    cases = {}
    for case, (arrays, words) in faults.items():
        path = folder / f"{case.replace(' ', '_')}.npz"
        np.savez(path, **arrays)
        cases[case] = (path, words)
    return cases


@pytest.fixture(scope="module")
def digits_keras(trained_digits_cnn, tmp_path_factory):
    model, _, _ = trained_digits_cnn
    path = tmp_path_factory.mktemp("keras") / "cnn.keras"
    model.save(path)
    return path


DATA_CASES = ["NaN", "inf", "wrong sample shape", "label out of range", "negative labels", "targets that do not fit"]


@pytest.mark.parametrize("command", ["validate-tflite", "validate-keras", "compare", "explain", "layers", "diff"])
@pytest.mark.parametrize("case", DATA_CASES)
def test_bad_data_is_one_clear_error_before_any_work(bad_data, digits_cnn, digits_keras, command, case, tmp_path,
                                                     capsys):
    path, words = bad_data[case]
    argv = {
        "validate-tflite": ["validate", "--board", "qemu-nano33", "--model", str(digits_cnn)],
        "validate-keras": ["validate", "--board", "qemu-nano33", "--model", str(digits_keras)],
        "compare": ["compare", "--model", str(digits_keras), "--qat-epochs", "1"],
        "explain": ["explain", "--model", str(digits_keras), "--qat-epochs", "1", "--board", "qemu-nano33"],
        "layers": ["layers", "--model", str(digits_keras)],
        "diff": ["diff", str(digits_cnn), str(digits_cnn)],
    }[command] + ["--data", str(path)]
    if command not in ("layers", "diff"):  # these two write nothing but what --json asks for
        argv += ["--out", str(tmp_path / "out"), "--quiet"]
    rc, _, err = run(argv, capsys)
    assert rc == 2
    assert_one_error_line(err, words)
    assert not (tmp_path / "out" / "firmware").exists() and not (tmp_path / "out" / "ptq.tflite").exists()


# ---------------------------------------------------------------------------------------------
# Keras models that cannot be quantized: NaN weights, and training that diverges


@pytest.fixture(scope="module")
def nan_keras(trained_digits_cnn, tmp_path_factory):
    from mcuquant.tf_import import keras

    model, _, _ = trained_digits_cnn
    copy = keras().models.clone_model(model)
    weights = [w.copy() for w in model.get_weights()]
    weights[0].flat[3] = np.nan
    copy.set_weights(weights)
    path = tmp_path_factory.mktemp("nan") / "nan.keras"
    copy.save(path)
    return path


KERAS_COMMANDS = {
    "compare": lambda m, out: ["compare", "--model", m, "--data", "builtin:digits", "--qat-epochs", "1", "--out", out,
                               "--quiet"],
    "explain": lambda m, out: ["explain", "--model", m, "--data", "builtin:digits", "--qat-epochs", "1",
                               "--board", "qemu-nano33", "--out", out, "--quiet"],
    "validate": lambda m, out: ["validate", "--model", m, "--data", "builtin:digits", "--board", "qemu-nano33",
                                "--out", out, "--quiet"],
    "layers": lambda m, out: ["layers", "--model", m, "--data", "builtin:digits", "--samples", "5"],
}


@pytest.mark.parametrize("command", list(KERAS_COMMANDS))
def test_a_keras_model_with_nan_weights_is_one_clear_error_before_any_work(nan_keras, command, tmp_path, capsys):
    rc, _, err = run(KERAS_COMMANDS[command](str(nan_keras), str(tmp_path / "out")), capsys)
    assert rc == 2
    assert_one_error_line(err, "nan.keras has NaN or infinite weights in layer", "(1 of ")
    assert not (tmp_path / "out" / "firmware").exists() and not (tmp_path / "out" / "ptq.tflite").exists()


@pytest.mark.parametrize("command", ["compare", "explain"])
def test_training_that_diverges_names_the_epoch_and_the_learning_rate(command, tmp_path, capsys):
    argv = KERAS_COMMANDS[command]("zoo:mlp", str(tmp_path / "out")) + ["--epochs", "2", "--lr", "1e9"]
    rc, _, err = run(argv, capsys)
    assert rc == 2
    assert_one_error_line(err, "float training diverged: the loss became nan at epoch 1", "learning rate 1e+09",
                          "--lr")
    assert not (tmp_path / "out" / "ptq.tflite").exists()  # nothing converted from the broken weights


def test_report_json_is_strict_json_even_with_non_finite_numbers(tmp_path):
    import json

    from mcuquant.ladder import write_json

    path = write_json({"a": float("nan"), "b": [np.float32("inf"), 1.5], "c": np.array([np.nan, 2.0])},
                      tmp_path / "report.json")
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [None, 1.5], "c": [None, 2.0]}


# ---------------------------------------------------------------------------------------------
# An unknown board, wherever a board can be named


@pytest.mark.parametrize("argv", [
    ["compare", "--data", "builtin:digits"],
    ["validate", "--model", "x.tflite"],
    ["build", "--model", "x.tflite"],
    ["explain", "--data", "builtin:digits"],
], ids=lambda a: a[0])
def test_an_unknown_board_is_refused_before_any_work(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = run(argv + ["--board", "nano35", "--quiet"], capsys)
    assert rc == 2
    assert_one_error_line(err, "unknown board 'nano35'", "did you mean 'nano33'")
    (tmp_path / "mcuquant.toml").write_text('[target]\nboard = "nano35"\n')
    rc, _, err = run(argv + ["--quiet"], capsys)
    assert rc == 2
    assert_one_error_line(err, "mcuquant.toml", "unknown board 'nano35'")
    assert list(tmp_path.iterdir()) == [tmp_path / "mcuquant.toml"]  # nothing written


def test_an_unknown_board_in_the_demo_names_the_flag(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = run(["demo", "--board", "nano35", "--quiet"], capsys)
    assert rc == 2
    assert_one_error_line(err, "--board: unknown board 'nano35'", "did you mean 'nano33'")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Typos in mcuquant.toml, against every command that reads it

TYPOS = {
    "unknown section": ('[dat]\nsource = "builtin:digits"\n', ["unknown section [dat]", "Did you mean 'data'"]),
    "unknown key": ('[data]\nsorce = "builtin:digits"\n', ["unknown key 'data.sorce'", "Did you mean 'source'"]),
    "wrong type": ('[training]\nepochs = "ten"\n', ["training.epochs must be an integer, got 'ten'"]),
    "bad choice": ('[data]\nnormalize = "minmaxx"\n', ["data.normalize must be one of", "Did you mean 'minmax'"]),
    "not TOML": ("[data\nsource = 1\n", ["not valid TOML", "line 1"]),
    "board of the wrong type": ("[target]\nboard = 5\n", ["target.board must be a string"]),
}
CONFIG_COMMANDS = {
    "compare": ["compare", "--quiet"],
    "build": ["build", "--model", "x.tflite", "--no-upload"],
    "validate": ["validate", "--model", "x.tflite", "--quiet"],
    "explain": ["explain", "--quiet"],
    "diff": ["diff", "x.tflite", "x.tflite"],
    "layers": ["layers", "--model", "x.keras", "--data", "builtin:digits"],
}


@pytest.mark.parametrize("command", list(CONFIG_COMMANDS))
@pytest.mark.parametrize("typo", list(TYPOS))
def test_a_config_typo_is_one_clear_error_in_every_command_that_reads_it(command, typo, tmp_path, capsys,
                                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)
    text, words = TYPOS[typo]
    (tmp_path / "mcuquant.toml").write_text(text)
    rc, _, err = run(CONFIG_COMMANDS[command], capsys)
    assert rc == 2
    assert_one_error_line(err, "mcuquant.toml", *words)
    assert list(tmp_path.iterdir()) == [tmp_path / "mcuquant.toml"]  # nothing written
    (tmp_path / "mcuquant.toml").rename(tmp_path / "project.toml")  # and the same through --config
    rc, _, err = run(CONFIG_COMMANDS[command] + ["--config", "project.toml"], capsys)
    assert rc == 2
    assert_one_error_line(err, "project.toml", *words)


def test_fail_under_on_a_regression_task_is_refused_before_the_run(digits_cnn, tmp_path, capsys):
    path = tmp_path / "targets.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.random((100, 8, 8), np.float32), y=rng.random((100, 10), np.float32))
    rc, _, err = run(["validate", "--board", "qemu-nano33", "--model", str(digits_cnn), "--data", str(path),
                      "--fail-under", "5%", "--out", str(tmp_path / "v"), "--quiet"], capsys)
    assert rc == 2
    assert_one_error_line(err, "--fail-under gates a classification error rate", "regression task",
                          "--min-bit-exact")
    assert not (tmp_path / "v" / "firmware").exists()


@pytest.fixture(scope="module")
def unrunnable_tflites(tmp_path_factory):
    """Valid integer models the builtin runtime does not run: {case: (path, words)}."""
    from mcuquant.quantize import convert_ptq, convert_ptq16x8
    from mcuquant.tf_import import keras, tensorflow

    tf, k = tensorflow(), keras()
    folder = tmp_path_factory.mktemp("unrunnable")
    rep = np.random.default_rng(0).random((50, 8, 8, 1), np.float32)
    k.utils.set_random_seed(0)
    plain = k.Sequential([k.Input((8, 8, 1)), k.layers.Conv2D(4, 3), k.layers.Flatten(), k.layers.Dense(10)])
    inp = k.Input((8, 8, 1))
    x = k.layers.Lambda(lambda v: tf.math.squared_difference(v, 0.5))(k.layers.Conv2D(4, 3)(inp))
    odd = k.Model(inp, k.layers.Dense(10)(k.layers.Flatten()(x)))
    cases = {"int16x8": (convert_ptq16x8(plain, rep).tflite, "16-bit activations (int16x8 quantization)"),
             "unsupported op": (convert_ptq(odd, rep).tflite, "op SQUARED_DIFFERENCE is not supported by the 'builtin'")}
    out = {}
    for case, (data, words) in cases.items():
        path = folder / f"{case.replace(' ', '_')}.tflite"
        path.write_bytes(data)
        out[case] = (path, words)
    return out


@pytest.mark.parametrize("command", ["export", "build", "validate"])
@pytest.mark.parametrize("case", ["int16x8", "unsupported op"])
def test_a_model_the_runtime_cannot_run_is_one_clear_error_before_any_build(unrunnable_tflites, command, case,
                                                                           tmp_path, capsys):
    path, words = unrunnable_tflites[case]
    rc, _, err = run(COMMANDS[command](path, tmp_path), capsys)
    assert rc == 2
    assert_one_error_line(err, path.name, words)
    assert not (tmp_path / "fw").exists() and not (tmp_path / "v" / "firmware").exists()
