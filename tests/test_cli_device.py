"""`mcuquant build`, `mcuquant validate` and `mcuquant demo` as a user runs them.

Errors are one line ("mcuquant: error: ...", exit 2) and come before any build where they can;
--fail-under / --min-bit-exact failures exit 1. The QEMU tests (marked ``qemu``) build real
firmware; the demo runs end to end in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import qemu_children
from serial.tools import list_ports

from mcuquant.build import pio
from mcuquant.cli import main

from test_cli import assert_one_error_line, run


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """An empty working folder: no ./mcuquant.toml, no mcuquant-out/ of an earlier run."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


@pytest.fixture
def kws_file(shared_models, tmp_path) -> Path:
    path = tmp_path / "kws.tflite"
    path.write_bytes((shared_models / "kws_ref_model.tflite").read_bytes())
    return path


# ---------------------------------------------------------------------------------------------
# Help


@pytest.mark.parametrize("command, fragments", [
    ("build", ["--board", "--no-upload", "--port", "flash and RAM", "examples:", "mcuquant build --board qemu-nano33"]),
    ("validate", ["--fail-under", "--min-bit-exact", "bit_exact_rate", "instructions, not cycles", "random int8",
                  "compare` work folder", "Exit status: 0 ok, 1", "examples:"]),
    ("demo", ["--out", "qemu-nano33", "example:"]),
])  # fmt: skip
def test_help_teaches_with_examples(command, fragments, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for fragment in fragments:
        assert fragment in text, fragment


# ---------------------------------------------------------------------------------------------
# One-line errors, before any work


def test_validate_unplugged_board_names_port_flag(capsys, kws_file, monkeypatch):
    monkeypatch.setattr(list_ports, "comports", lambda *a, **k: [])
    rc, out, err = run(["validate", "--board", "nano33", "--model", str(kws_file)], capsys)
    assert rc == 2
    assert_one_error_line(err, "no serial port of nano33", "ports seen: none", "--port")
    assert not Path("mcuquant-out").exists()  # nothing was built or written


def test_validate_with_a_missing_port(capsys, kws_file):
    rc, _, err = run(["validate", "--board", "nano33", "--model", str(kws_file), "--port", "/dev/mcuquant-none",
                      "--no-upload", "--samples", "2", "--quiet"], capsys)
    assert rc == 2
    assert_one_error_line(err, "cannot open /dev/mcuquant-none for nano33", "plugged in", "--port")


def test_physical_build_without_registry_is_one_line(capsys, kws_file, monkeypatch):
    # Here the registry is unreachable anyway; the patch makes the test mean the same elsewhere.
    monkeypatch.setattr(pio, "registry_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(pio, "platform_installed", lambda name: False)
    rc, _, err = run(["build", "--board", "nano33", "--model", str(kws_file), "--no-upload", "--quiet"], capsys)
    assert rc == 2
    assert_one_error_line(err, "cannot build for nano33", "registry", "--board qemu-nano33")
    # validate builds (and flashes) a physical board first: the same one line.
    monkeypatch.setattr(list_ports, "comports", lambda *a, **k: [])
    rc, _, err = run(["validate", "--board", "nano33", "--model", str(kws_file), "--port", "/dev/ttyACM0",
                      "--samples", "2", "--quiet"], capsys)
    assert rc == 2
    assert_one_error_line(err, "cannot build for nano33", "--board qemu-nano33")


def test_build_compiles_before_it_looks_for_the_port(capsys, kws_file, monkeypatch):
    """`build` with an upload builds first: with no board plugged in and no way to build, the build's
    problem is what it reports, not the missing port (the port is looked for only to upload)."""
    monkeypatch.setattr(pio, "registry_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(pio, "platform_installed", lambda name: False)
    monkeypatch.setattr(list_ports, "comports", lambda *a, **k: [])
    rc, _, err = run(["build", "--board", "nano33", "--model", str(kws_file), "--quiet"], capsys)
    assert rc == 2
    assert_one_error_line(err, "cannot build for nano33", "registry")
    assert "serial port" not in err


@pytest.mark.parametrize("argv, fragments", [
    (["validate", "--board", "qemu-nano33", "--model", "KWS", "--fail-under", "5%"],
     ["--fail-under needs labels", "--data"]),
    (["validate", "--board", "qemu-nano33", "--model", "KWS", "--port", "/dev/ttyACM0"], ["emulated", "drop --port"]),
    (["validate", "--board", "qemu-nano33"], ["no --model given", "mcuquant compare"]),
    (["validate", "--board", "qemu-nano33", "--model", "model.onnx"], ["expected a .tflite file"]),
    (["validate", "--board", "qemu-nano33", "--model", "missing.tflite"], ["missing.tflite not found"]),
    (["validate", "--board", "qemu-nano", "--model", "KWS"], ["unknown board 'qemu-nano'", "qemu-nano33"]),
    (["build", "--board", "qemu-nano33", "--model", "float.keras"], ["takes an int8 .tflite"]),
    (["build", "--board", "qemu-m3", "--model", "KWS", "--port", "/dev/ttyACM0"], ["emulated", "drop --port"]),
])  # fmt: skip
def test_user_errors_are_one_line_and_build_nothing(argv, fragments, capsys, kws_file):
    argv = [str(kws_file) if a == "KWS" else a for a in argv]
    rc, _, err = run(argv, capsys)
    assert rc == 2
    assert_one_error_line(err, *fragments)
    assert not Path("mcuquant-out").exists()


def test_compare_work_folder_takes_no_data_flag(capsys, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "report.json").write_text("{}")
    rc, _, err = run(["validate", "--model", str(work), "--data", "builtin:digits"], capsys)
    assert rc == 2
    assert_one_error_line(err, "is a compare work folder", "drop --data")


@pytest.mark.parametrize("value", ["abc", "150%", "-0.1", "2"])
def test_bad_rates_are_argparse_errors(value, capsys, kws_file):
    with pytest.raises(SystemExit) as exit_:
        main(["validate", "--model", str(kws_file), "--min-bit-exact", value])
    assert exit_.value.code == 2
    assert "--min-bit-exact" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# On QEMU


@pytest.mark.qemu
def test_build_refuses_a_model_too_large_for_the_board(pio_core, capsys, tmp_path):
    """A conv layer whose output alone (96x96x32 int8 = 288 KiB) exceeds the Nano 33's 256 KiB RAM."""
    from mcuquant.quantize import convert_ptq
    from mcuquant.tf_import import tensorflow

    tf = tensorflow()
    inp = tf.keras.Input((96, 96, 1))
    x = tf.keras.layers.Conv2D(32, 3, padding="same", activation="relu",
                               kernel_initializer=tf.keras.initializers.GlorotUniform(seed=0))(inp)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    out = tf.keras.layers.Dense(10, kernel_initializer=tf.keras.initializers.GlorotUniform(seed=1))(x)
    representative = np.random.default_rng(0).random((8, 96, 96, 1)).astype(np.float32)
    model = tmp_path / "big.tflite"
    model.write_bytes(convert_ptq(tf.keras.Model(inp, out), representative).tflite)

    rc, out_text, err = run(["build", "--board", "qemu-nano33", "--model", str(model), "--out", str(tmp_path / "fw"),
                             "--quiet"], capsys)
    assert rc == 2
    line = assert_one_error_line(err, "does not fit qemu-nano33", "the board has 262144 bytes")
    required = int(line.split("RAM needs ")[1].split()[0])
    assert required > 96 * 96 * 32 > 262144
    # The same model fits a board with more RAM.
    rc, out_text, err = run(["build", "--board", "qemu-m7", "--model", str(model), "--out", str(tmp_path / "fw7"),
                             "--quiet"], capsys)
    assert rc == 0, err
    assert "built qemu-m7 (builtin backend)" in out_text and "firmware.elf" in out_text


@pytest.mark.qemu
def test_fail_under_exits_1_for_a_keras_model_converted_on_the_fly(pio_core, capsys, tmp_path):
    """An untrained zoo CNN (.keras) is converted with PTQ on the digits train split, measured on
    qemu-m3 and fails --fail-under (it guesses), while its byte-identical rate passes."""
    from mcuquant.data import load_dataset
    from mcuquant.models import build_zoo_model
    from mcuquant.train import set_seeds

    digits = load_dataset("builtin:digits")
    set_seeds(0)
    build_zoo_model("cnn", digits.input_shape, digits.num_classes).save(tmp_path / "untrained.keras")
    rc, out, err = run(["validate", "--board", "qemu-m3", "--model", str(tmp_path / "untrained.keras"), "--data",
                        "builtin:digits", "--samples", "20", "--out", str(tmp_path / "v"), "--json",
                        str(tmp_path / "r.json"), "--fail-under", "50%", "--min-bit-exact", "1", "--quiet"], capsys)
    report = json.loads((tmp_path / "r.json").read_text())
    host, device = report["rungs"]
    assert (host["id"], device["id"]) == ("ptq/tflm-host", "ptq/device")
    assert device["bit_exact_rate"] == 1.0 and device["error_rate"] == host["error_rate"] > 0.5
    assert rc == 1
    fails = [line for line in err.splitlines() if line.startswith("mcuquant: FAIL: ")]
    assert fails == [f"mcuquant: FAIL: ptq/device on qemu-m3: error rate {100 * device['error_rate']:.2f}% is above "
                     "--fail-under 50.00%"]
    assert "Traceback" not in err and "ptq/device" in out and (tmp_path / "v" / "ptq.tflite").is_file()


@pytest.mark.qemu
def test_validate_passes_its_thresholds_and_prints_the_device_table(pio_core, capsys, kws_file, tmp_path):
    rc, out, err = run(["validate", "--board", "qemu-m33", "--model", str(kws_file), "--samples", "3",
                        "--out", str(tmp_path / "v"), "--min-bit-exact", "1", "--quiet"], capsys)
    assert rc == 0, err
    assert "kws/device" in out and "3/3 (100.00%)" in out and "instructions" in out
    assert f"report: {tmp_path / 'v' / 'report.json'}" in out
    report = json.loads((tmp_path / "v" / "report.json").read_text())
    assert report["rungs"][0]["board"] == "qemu-m33" and report["dataset"]["n_test"] == 3


@pytest.mark.qemu
def test_demo_end_to_end(pio_core, tmp_path):
    """`python -m mcuquant demo`: the full ladder with ptq/device and qat/device on qemu-nano33."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "mcuquant", "demo", "--out", str(tmp_path / "demo"), "--quiet"],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path, env=dict(os.environ))
    seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert seconds < 600, f"the demo took {seconds:.0f} s"
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    ids = [r["id"] for r in report["rungs"]]
    assert ids == ["keras-float", "keras-qat", "ptq/litert", "ptq/litert-ref", "ptq/tflm-host", "ptq/builtin-host",
                   "ptq/device", "qat/litert", "qat/litert-ref", "qat/tflm-host", "qat/builtin-host", "qat/device"]
    by_id = {r["id"]: r for r in report["rungs"]}
    for variant in ("ptq", "qat"):
        device, host = by_id[f"{variant}/device"], by_id[f"{variant}/tflm-host"]
        assert device["board"] == "qemu-nano33" and device["n"] == report["dataset"]["n_test"] == 360
        assert device["bit_exact_rate"] == 1.0 and device["mismatches"] == []
        assert device["error_rate"] == host["error_rate"] and len(device["ci95"]) == 2
        assert device["latency"]["unit"] == "instructions" and device["latency"]["median"] > 0
        assert device["arena_bytes"] > 0 and device["flash_bytes"] > 0 and device["ram_bytes"] > 0
        pairs = {(c["a"], c["b"]): c for c in report["comparisons"]}
        assert pairs[(f"{variant}/tflm-host", f"{variant}/device")]["bit_exact_rate"] == 1.0
        assert ("keras-float", f"{variant}/device") in pairs
        agree = [a for a in report["agreement"] if a["a"] == "device" and a["variant"] == variant]
        assert len(agree) == 1 and agree[0]["bit_exact_rate"] == 1.0
    assert report["device"]["board"] == "qemu-nano33"
    # The demo is `mcuquant explain` on digits: findings printed, the HTML report beside report.json.
    assert [f["id"] for f in report["explain"]["findings"]] == ["a", "b", "c", "d"]
    assert "(d) Host vs device" in proc.stdout and (tmp_path / "demo" / "report.html").stat().st_size > 10_000
    # The printed ladder shows the device rungs with latency and memory.
    assert "ptq/device" in proc.stdout and "qat/device" in proc.stdout and "latency median" in proc.stdout
    assert "instructions" in proc.stdout and "not CPU cycles" in proc.stdout
    assert qemu_children() == []
