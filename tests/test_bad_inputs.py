"""The bad-input catalogue crossed with every command that reads that input: each answer is one
`mcuquant: error: ...` line naming the file and the problem, exit status 2, no traceback, and
nothing built or emulated first.

Catalogue so far: bad .tflite files (missing, a folder, empty, 8 bytes, random bytes, truncated,
float) against export, build, validate, diff and layers.
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
    model = k.Sequential([k.Input((8, 8, 1)), k.layers.Flatten(), k.layers.Dense(10)])
    files = {
        "empty": (b"", "is empty (0 bytes)"),
        "8 bytes": (good[:8], "truncated or corrupt"),
        "random": (np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes(),
                   "is not a TFLite model (no TFL3"),
        "truncated": (good[: len(good) // 2], "truncated or corrupt"),
        "float": (bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert()), "float32 input"),
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
CASES = ["missing", "a folder", "empty", "8 bytes", "random", "truncated", "float"]


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
