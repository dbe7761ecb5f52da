"""Tests for the `mcuquant` command: help, and user errors as one line with exit status 2.

Nothing here trains a model: every error must happen before training starts, and a guard makes
the tests fail loudly if training is reached.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from mcuquant import __version__
from mcuquant.cli import CONFIG_FLAGS, build_parser, main


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Run in an empty folder (no ./mcuquant.toml) and fail if any test reaches training."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)

    import mcuquant.train

    def training_reached(*args, **kwargs):
        raise AssertionError("training started: the error should have been raised before any training")

    monkeypatch.setattr(mcuquant.train, "train_float", training_reached)
    monkeypatch.setattr(mcuquant.train, "quantization_aware", training_reached)


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def assert_one_error_line(err: str, *fragments: str) -> str:
    """stderr ends in exactly one 'mcuquant: error: ...' line (no traceback); return that line."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("mcuquant: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    for fragment in fragments:
        assert fragment in errors[0], f"{fragment!r} not in {errors[0]!r}"
    return errors[0]


def python(code_or_args: list[str], cwd, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *code_or_args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------------------------
# Help, version, no command


def test_help_in_a_subprocess_is_fast_and_lists_compare(tmp_path):
    started = time.monotonic()
    result = python(["-m", "mcuquant", "--help"], cwd=tmp_path)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: mcuquant")
    assert "compare" in result.stdout
    assert result.stderr == ""
    assert elapsed < 10, f"mcuquant --help took {elapsed:.1f} s"


def test_building_the_parser_does_not_import_tensorflow(tmp_path):
    code = "import mcuquant.cli, sys; mcuquant.cli.build_parser(); print('tensorflow' in sys.modules)"
    result = python(["-c", code], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"mcuquant {__version__}"


def test_no_command_prints_help_and_exits_2(capsys):
    rc, out, _ = run([], capsys)
    assert rc == 2
    assert out.startswith("usage: mcuquant") and "compare" in out


def test_compare_help_mentions_rungs_flags_and_example(capsys):
    with pytest.raises(SystemExit) as info:
        main(["compare", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    text = " ".join(out.split())  # argparse wraps to the terminal width
    for rung in ("keras-float", "keras-qat", "{ptq,qat}/litert,", "{ptq,qat}/litert-ref", "{ptq,qat}/tflm-host"):
        assert rung in text
    assert "Wilson 95% intervals" in text  # a literal '%%' would mean a formatting slip
    assert "\n  mcuquant compare --data builtin:digits --model zoo:cnn --json out.json\n" in out  # unwrapped
    for flag, (key, _) in CONFIG_FLAGS.items():
        assert flag in out and f"[{key}]" in text
    assert "--out DIR" in out and "(default: mcuquant-out/compare)" in text


def test_every_config_flag_maps_to_a_real_config_key():
    from mcuquant.config import build_config

    parser = build_parser()
    compare = parser.parse_args(["compare"])
    for flag, (key, _) in CONFIG_FLAGS.items():
        assert getattr(compare, key) is None  # unset flags leave the file's value alone
        section, name = key.split(".")
        default = getattr(getattr(build_config(), section), name)
        if default is None:  # keys whose default is decided later: give a valid value
            default = {"training.epochs": 4, "data.image_size": (32, 24), "data.normal_classes": (0, 1)}[key]
        # Each key fed its default as flag text must validate: the key exists and the text parses.
        if isinstance(default, tuple):
            text = ",".join(map(str, default))
        elif isinstance(default, bool):
            text = str(default).lower()
        else:
            text = str(default)
        assert getattr(getattr(build_config({}, {key: text}), section), name) == default, flag


def test_unknown_flag_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["compare", "--sede", "3"])
    assert info.value.code == 2
    assert "unrecognized arguments: --sede" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# Config errors


def test_bad_seed_flag_is_one_line_naming_the_flag(capsys, tmp_path):
    out_dir = tmp_path / "out"
    rc, out, err = run(["compare", "--seed", "abc", "--out", str(out_dir)], capsys)
    assert rc == 2
    line = assert_one_error_line(err, "--seed", "data.seed must be an integer", "'abc'")
    assert line == "mcuquant: error: --seed: data.seed must be an integer, got 'abc'"
    assert err.strip() == line
    assert out == ""
    assert not out_dir.exists()  # rejected before any work


@pytest.mark.parametrize("argv, fragments", [
    (["--split", "0.5,0.5,0.5"], ["--split", "data.split must be three fractions"]),
    (["--normalize", "zscore"], ["--normalize", "one of minmax, standard, none"]),
    (["--qat-epochs", "0"], ["--qat-epochs", "training.qat_epochs must be an integer >= 1"]),
    (["--per-channel", "maybe"], ["--per-channel", "true or false", "'maybe'"]),
    (["--train-seed", "-1"], ["--train-seed", "training.seed must be an integer in [0, 2**32)"]),
])
def test_bad_flag_values(argv, fragments, capsys, tmp_path):
    rc, _, err = run(["compare", *argv, "--out", str(tmp_path / "out")], capsys)
    assert rc == 2
    assert_one_error_line(err, *fragments)


def test_bad_value_in_config_file_names_the_file(capsys, tmp_path):
    cfg = tmp_path / "proj.toml"
    cfg.write_text("[training]\nbatch_size = 0\n")
    rc, _, err = run(["compare", "--config", str(cfg), "--out", str(tmp_path / "out")], capsys)
    assert rc == 2
    assert_one_error_line(err, f"{cfg}: training.batch_size must be an integer >= 1; got 0")


def test_flag_overrides_a_bad_file_value(capsys, tmp_path):
    # The file's bad seed never matters when the flag replaces it; the run then stops at the data.
    cfg = tmp_path / "proj.toml"
    cfg.write_text('[data]\nseed = "x"\n')
    rc, _, err = run(["compare", "--config", str(cfg), "--seed", "1", "--data", "builtin:nope",
                      "--out", str(tmp_path / "out")], capsys)
    assert rc == 2
    assert_one_error_line(err, "unknown builtin dataset 'nope'")


def test_missing_config_file(capsys, tmp_path):
    missing = tmp_path / "missing.toml"
    rc, _, err = run(["compare", "--config", str(missing)], capsys)
    assert rc == 2
    assert_one_error_line(err, f"config file {missing} not found")


def test_invalid_toml_config_file(capsys, tmp_path):
    cfg = tmp_path / "broken.toml"
    cfg.write_text("[data\n")
    rc, _, err = run(["compare", "--config", str(cfg)], capsys)
    assert rc == 2
    assert_one_error_line(err, f"{cfg}: not valid TOML")


def test_folder_as_config_file(capsys, tmp_path):
    rc, _, err = run(["compare", "--config", str(tmp_path)], capsys)
    assert rc == 2
    assert_one_error_line(err, f"cannot read config file {tmp_path}")


# --------------------------------------------------------------------------------------------
# Data and model errors: before training


def test_unknown_builtin_dataset_fails_fast(capsys, tmp_path):
    started = time.monotonic()
    rc, _, err = run(["compare", "--data", "builtin:nope", "--out", str(tmp_path / "out")], capsys)
    elapsed = time.monotonic() - started
    assert rc == 2
    assert_one_error_line(err, "unknown builtin dataset 'nope'", "builtins: basicmotions, digits, digits-anomaly, gunpoint")
    assert elapsed < 10, f"the data error took {elapsed:.1f} s"


def test_missing_data_file_lists_the_sources(capsys, tmp_path):
    missing = tmp_path / "nope.npz"
    rc, _, err = run(["compare", "--data", str(missing), "--out", str(tmp_path / "out")], capsys)
    assert rc == 2
    assert_one_error_line(err, f"no such file or folder: {str(missing)!r}", "builtin:NAME (builtins: basicmotions, digits, digits-anomaly, gunpoint)", "x_test and y_test")


def test_data_with_nan_is_rejected(capsys, tmp_path):
    x = np.random.default_rng(0).normal(size=(40, 4))
    x[7, 2] = np.nan
    path = tmp_path / "with,nan.npz"  # a comma in the path: the flag's text is still taken as one path
    np.savez(path, x=x, y=np.arange(40) % 2)
    rc, _, err = run(["compare", "--data", str(path), "--model", "zoo:mlp", "--out", str(tmp_path / "out")], capsys)
    assert rc == 2
    assert_one_error_line(err, "x has 1 NaN values (first in sample 7)", "clean or impute")


def test_data_and_config_errors_do_not_import_tensorflow(tmp_path):
    """In a fresh interpreter: config and data errors return 2 without ever importing TensorFlow."""
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.full((10, 3), np.nan), y=np.arange(10) % 2)
    cases = [
        ["compare", "--data", "builtin:nope"],
        ["compare", "--data", str(bad)],
        ["compare", "--seed", "abc"],
    ]
    code = (
        "import contextlib, io, json, sys, mcuquant.cli\n"
        f"cases = {json.dumps(cases)}\n"
        "results = []\n"
        "for argv in cases:\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err):\n"
        "        rc = mcuquant.cli.main(argv + ['--out', 'out'])\n"
        "    results.append([rc, err.getvalue().strip(), 'tensorflow' in sys.modules])\n"
        "print(json.dumps(results))\n"
    )
    result = python(["-c", code], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout.strip().splitlines()[-1])
    for argv, (rc, err, tf_imported) in zip(cases, results):
        assert rc == 2, (argv, err)
        assert err.startswith("mcuquant: error: ") and "\n" not in err, (argv, err)
        assert not tf_imported, f"{argv}: TensorFlow was imported before the error"


def test_missing_model_file_names_the_path(capsys, tmp_path):
    tiny = tmp_path / "tiny.npz"
    np.savez(tiny, x=np.random.default_rng(0).normal(size=(30, 4)), y=np.arange(30) % 3)
    rc, _, err = run(["compare", "--data", str(tiny), "--model", "/nonexistent.h5", "--out", str(tmp_path / "out")],
                     capsys)
    assert rc == 2
    assert_one_error_line(err, "model /nonexistent.h5 not found", "zoo:cnn")


def test_model_file_with_wrong_suffix(capsys, tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not keras")
    tiny = tmp_path / "tiny.npz"
    np.savez(tiny, x=np.random.default_rng(0).normal(size=(30, 4)), y=np.arange(30) % 3)
    rc, _, err = run(["compare", "--data", str(tiny), "--model", str(model), "--out", str(tmp_path / "out")], capsys)
    assert rc == 2
    assert_one_error_line(err, f"model {model}: expected a .keras or .h5 file or a SavedModel folder")
