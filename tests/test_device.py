"""The device-measuring loop (mcuquant.device.harness) and `validate` (mcuquant.device.validate).

Without QEMU: the loop over the host-built firmware (the same main loop, protocol and runtime as on
a board), the rung's fields, port detection and the CI thresholds. With QEMU (marked ``qemu``;
a missing qemu-system-arm or arm-none-eabi-gcc skips, saying which, and MCUQUANT_REQUIRE_QEMU=1
turns that into a failure): the acceptance of issue 5 on three emulated cores and three models,
a model too large for the board, a wrong model hash and an emulator killed mid-run.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from serial.tools import list_ports, list_ports_common

from mcuquant.boards import get_board
from mcuquant.device import harness
from mcuquant.device.hostfw import HostFirmware, build_host_firmware
from mcuquant.device.link import Link
from mcuquant.device.validate import threshold_failures, validate
from mcuquant.errors import ConfigError, DeviceMismatchError, TransportError
from mcuquant.interpreters import Runner
from mcuquant.ladder import Rung, comparison_pairs, load_rungs, save_rungs

from conftest import qemu_children, random_int8_inputs

# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def kws(shared_models) -> bytes:
    return (shared_models / "kws_ref_model.tflite").read_bytes()


@pytest.fixture(scope="module")
def resnet(shared_models) -> bytes:
    return (shared_models / "pretrainedResnet_quant.tflite").read_bytes()


@pytest.fixture(scope="module")
def kws_oracle(kws) -> Runner:
    return Runner("tflm-host", kws)


# ---------------------------------------------------------------------------------------------
# The loop and the rung, over the host-built firmware (no QEMU)


@pytest.fixture(scope="module")
def kws_hostfw(kws) -> Path:
    # Same name and flags as tests/test_protocol.py: the build is cached once for both.
    return build_host_firmware(kws, name="kws_ref_model.tflite", sanitize=True)


def test_measure_streams_every_sample_and_the_rung_matches_tflm_host(kws, kws_hostfw, kws_oracle):
    xs = random_int8_inputs(kws_oracle.input.shape[1:], 6, seed=11)
    oracle = kws_oracle.run(xs, progress=False)
    with HostFirmware(kws_hostfw, accept_timeout=20) as fw:
        with Link.open(fw.url, expected_sha256=hashlib.sha256(kws).hexdigest()) as link:
            run = harness.measure(link, xs, progress=False)
        assert "Sanitizer" not in fw.stderr_text()
    assert run.outputs.shape == (6, 12) and run.outputs.dtype == np.int8
    assert run.outputs.tobytes() == oracle.tobytes()
    assert run.counts.shape == (6,) and (run.counts > 0).all()
    assert run.resends == run.bad_frames == 0

    board = get_board("qemu-nano33")  # the rung names the board; nothing here runs on it
    rung = harness.device_rung("kws", board, run, oracle, classification=True)
    assert rung["id"] == "kws/device" and rung["oracle"] == "tflm-host" and rung["backend"] == "builtin"
    assert (rung["n"], rung["bit_exact"], rung["bit_exact_rate"], rung["max_lsb_difference"]) == (6, 6, 1.0, 0)
    assert rung["mismatches"] == [] and rung["class_flips"] == 0
    assert rung["latency"]["unit"] == "microseconds" and rung["latency"]["n"] == 6
    assert rung["arena_bytes"] == run.info.arena_used > 0
    assert rung["flash_bytes"] is None and "not built" in rung["build_note"]

    # Every sample where the device and the oracle part is listed, with its LSB distance and
    # whether the predicted class changed.
    # (The oracle's outputs are altered here: the device's are real and right.)
    other = oracle.copy().astype(np.int16)
    other[2, 0] += 3 if other[2, 0] < 0 else -3
    top = int(np.argmax(oracle[4]))
    other[4, top], other[4, (top + 1) % 12] = -128, 127  # another class wins
    other = other.astype(np.int8)
    rung = harness.device_rung("kws", board, run, other, classification=True)
    assert rung["bit_exact"] == 4 and rung["bit_exact_rate"] == pytest.approx(4 / 6)
    by_index = {m["index"]: m for m in rung["mismatches"]}
    assert sorted(by_index) == [2, 4]
    assert by_index[2]["max_lsb_difference"] == 3
    expected = np.abs(oracle[4].astype(int) - other[4].astype(int)).max()
    assert by_index[4]["max_lsb_difference"] == expected > 0
    assert by_index[4]["class_flip"] and (by_index[4]["class_a"], by_index[4]["class_b"]) == (top, (top + 1) % 12)
    assert rung["max_lsb_difference"] == max(3, expected)
    assert rung["class_flips"] == sum(m["class_flip"] for m in rung["mismatches"]) >= 1


def test_latency_is_median_and_nearest_rank_p95_with_its_unit():
    lat = harness.latency(np.array([50, 10, 30, 20, 40]), "instructions")
    assert (lat["median"], lat["p95"], lat["min"], lat["max"], lat["n"]) == (30.0, 50, 10, 50, 5)
    assert "not CPU cycles" in lat["note"] and "QEMU" in lat["note"]
    counts = np.arange(1, 101)
    assert harness.latency(counts, "cycles")["p95"] == 95  # a measured value, not an interpolation
    assert harness.latency(counts, "")["unit"] is None
    assert "median_ms" not in lat  # QEMU's instructions take no time


def test_latency_on_a_physical_board_is_in_cycles_and_milliseconds_at_its_clock():
    nano = get_board("nano33")
    assert nano.counter_unit == "cycles" and nano.cpu_clock_hz == 64_000_000
    lat = harness.latency(np.array([640_000, 1_280_000, 960_000]), nano.counter_unit, nano.cpu_clock_hz)
    assert lat["median"] == 960_000 and lat["median_ms"] == 15.0 and lat["p95_ms"] == 20.0
    assert "64 MHz" in lat["note"]
    pico = get_board("pico")  # micros(): milliseconds whatever the clock
    assert harness.latency(np.array([2500]), pico.counter_unit, pico.cpu_clock_hz)["median_ms"] == 2.5
    assert get_board("qemu-nano33").cpu_clock_hz is None


def test_ladder_pairs_each_device_rung_with_its_oracle_and_keeps_rungs_on_disk(tmp_path):
    ids = ["keras-float", "ptq/tflm-host", "ptq/builtin-host", "ptq/device", "qat/tflm-host", "qat/device"]
    pairs = {(a, b): why for a, b, why in comparison_pairs(ids)}
    assert "device vs oracle" in pairs[("ptq/tflm-host", "ptq/device")]
    assert "device vs oracle" in pairs[("qat/tflm-host", "qat/device")]
    assert pairs[("ptq/builtin-host", "ptq/device")] == "adjacent"
    rungs = [Rung("keras-float", np.array([1, 2])),
             Rung("ptq/device", np.array([1, 3]), np.array([[5], [-7]], np.int8))]
    loaded = load_rungs(save_rungs(rungs, tmp_path / "rungs.npz"))
    assert [r.id for r in loaded] == ["keras-float", "ptq/device"] and loaded[0].raw is None
    assert np.array_equal(loaded[1].raw, rungs[1].raw) and loaded[1].raw.dtype == np.int8


# ---------------------------------------------------------------------------------------------
# Port detection and CI thresholds


def _port(device: str, vid: int | None = None, pid: int | None = None, description: str = "n/a"):
    info = list_ports_common.ListPortInfo(device, skip_link_detection=True)
    info.vid, info.pid, info.description = vid, pid, description
    return info


def test_port_is_found_by_the_boards_usb_id(monkeypatch):
    nano = get_board("nano33")
    ports = [_port("/dev/ttyS0"), _port("/dev/ttyACM3", 0x2341, 0x805A, "Nano 33 BLE"),
             _port("/dev/ttyUSB0", 0x10C4, 0xEA60)]
    monkeypatch.setattr(list_ports, "comports", lambda *a, **k: ports)
    assert harness.find_port(nano) == "/dev/ttyACM3"
    assert harness.find_port(get_board("esp32")) == "/dev/ttyUSB0"
    assert harness.find_port(nano, "/dev/ttyACM9") == "/dev/ttyACM9"  # given: used as is


def test_unplugged_board_names_the_ports_seen_and_port_flag(monkeypatch):
    seen = [_port("/dev/ttyS0"), _port("/dev/ttyUSB0", 0x10C4, 0xEA60, "CP2102")]
    monkeypatch.setattr(list_ports, "comports", lambda *a, **k: seen)
    with pytest.raises(TransportError) as err:
        harness.find_port(get_board("nano33"))
    message = str(err.value)
    assert "no serial port of nano33 (USB 2341:805a, 2341:005a)" in message and "--port" in message
    assert "/dev/ttyS0 (no USB id)" in message and "/dev/ttyUSB0 (10c4:ea60 CP2102)" in message
    monkeypatch.setattr(list_ports, "comports", lambda *a, **k: [_port("/dev/ttyACM0", 0x2341, 0x805A),
                                                                 _port("/dev/ttyACM1", 0x2341, 0x005A)])
    with pytest.raises(ConfigError, match=r"several ports look like nano33: /dev/ttyACM0 .*choose one with --port"):
        harness.find_port(get_board("nano33"))
    with pytest.raises(ConfigError, match="emulated"):
        harness.find_port(get_board("qemu-nano33"), "/dev/ttyACM0")


def test_validate_on_an_unplugged_board_fails_before_any_work(monkeypatch, kws, tmp_path):
    monkeypatch.setattr(list_ports, "comports", lambda *a, **k: [])
    model = tmp_path / "kws.tflite"
    model.write_bytes(kws)
    with pytest.raises(TransportError, match=r"no serial port of pico .*ports seen: none.*--port"):
        validate("pico", model, out_dir=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    # A given port that is not there: the error says so and names --port.
    with pytest.raises(TransportError, match=r"cannot open /dev/mcuquant-no-such-port for pico .*plugged in.*--port"):
        validate("pico", model, out_dir=tmp_path / "out", port="/dev/mcuquant-no-such-port", upload=False,
                 samples=2, progress=False)


def _device_rung(**fields) -> dict:
    rung = {"id": "ptq/device", "board": "qemu-m3", "oracle": "tflm-host", "n": 50, "bit_exact": 50,
            "bit_exact_rate": 1.0, "error_rate": 0.04}
    rung.update(fields)
    return rung


def test_thresholds_name_the_rung_and_the_numbers():
    report = {"task": "classification", "rungs": [{"id": "ptq/tflm-host", "error_rate": 0.9}, _device_rung(),
                                                  _device_rung(id="qat/device", bit_exact=49, bit_exact_rate=0.98)]}
    assert threshold_failures(report) == []
    assert threshold_failures(report, fail_under=0.04, min_bit_exact=0.98) == []  # the host rung does not count
    assert threshold_failures(report, fail_under=0.039) == [
        "ptq/device on qemu-m3: error rate 4.00% is above --fail-under 3.90%",
        "qat/device on qemu-m3: error rate 4.00% is above --fail-under 3.90%"]
    assert threshold_failures(report, min_bit_exact=1.0) == [
        "qat/device on qemu-m3: byte-identical with tflm-host on 49/50 samples (98.00%), below --min-bit-exact 100.00%"]
    unlabelled = {"task": None, "rungs": [_device_rung()]}
    del unlabelled["rungs"][0]["error_rate"]
    with pytest.raises(ConfigError, match="--fail-under needs a classification error rate.*no labels"):
        threshold_failures(unlabelled, fail_under=0.1)


# ---------------------------------------------------------------------------------------------
# On QEMU: the acceptance of issue 5


# Few samples: each is measured twice, and ResNet-8 costs ~110M instructions per inference in QEMU.
MODELS = {"digits_cnn": 10, "kws_ref_model": 4, "pretrainedResnet_quant": 2}


@pytest.mark.qemu
@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("board", ["qemu-nano33", "qemu-m3", "qemu-m7"])
def test_validate_is_bit_exact_with_repeatable_latency(board, model, pio_core, digits_cnn, shared_models, tmp_path):
    path = digits_cnn if model == "digits_cnn" else shared_models / f"{model}.tflite"
    data = "builtin:digits" if model == "digits_cnn" else None
    report = validate(board, path, data=data, samples=MODELS[model], out_dir=tmp_path, progress=False)
    device = report["rungs"][-1]
    assert device["id"] == f"{model}/device" and device["board"] == board and device["backend"] == "builtin"
    assert device["n"] == MODELS[model] and device["bit_exact_rate"] == 1.0 and device["mismatches"] == []
    lat = device["latency"]
    assert lat["unit"] == "instructions" and "not CPU cycles" in lat["note"]
    assert 0 < lat["min"] <= lat["median"] <= lat["p95"] <= lat["max"]
    b = get_board(board)
    assert 0 < device["flash_bytes"] <= b.flash_bytes == device["flash_limit"]
    assert device["arena_bytes"] < device["ram_bytes"] <= b.ram_bytes == device["ram_limit"]
    with np.load(tmp_path / f"{model}_device_outputs.npz") as npz:
        outputs, counts, oracle = npz["device"], npz["counts"], npz["tflm_host"]
    assert outputs.tobytes() == oracle.tobytes() and counts.min() > 0

    # A second run of the same firmware in a fresh QEMU: the same outputs and the same counts.
    xq = np.load(tmp_path / f"{model}_test_inputs.npy")
    with harness.open_device(b, elf=device["elf"], expected_sha256=device["model_sha256"]) as link:
        again = harness.measure(link, xq, progress=False)
    assert again.outputs.tobytes() == outputs.tobytes()
    assert np.array_equal(again.counts, counts)

    if data:  # labelled: the tflm-host rung, the device's error rate and the paired test between them
        host, device = report["rungs"]
        assert host["id"] == f"{model}/tflm-host" and device["error_rate"] == host["error_rate"]
        assert device["ci95"][0] <= device["error_rate"] <= device["ci95"][1]
        (pair,) = [c for c in report["comparisons"] if "device vs oracle" in c["kind"]]
        assert pair["bit_exact_rate"] == 1.0 and pair["verdict"].startswith("identical right/wrong outcomes")
    else:
        assert report["task"] is None and report["dataset"]["name"] == "random int8 inputs (seed 0)"


@pytest.fixture(scope="module")
def kws_elf(pio_core, kws, tmp_path_factory) -> Path:
    result = harness.build_firmware(get_board("qemu-nano33"), kws, tmp_path_factory.mktemp("kws-fw"), progress=False)
    return result.elf


@pytest.mark.qemu
def test_a_different_model_hash_is_refused_and_qemu_stopped(kws_elf, resnet):
    with pytest.raises(DeviceMismatchError, match=r"SHA-256 .* not the one being evaluated"):
        with harness.open_device(get_board("qemu-nano33"), elf=kws_elf,
                                 expected_sha256=hashlib.sha256(resnet).hexdigest()):
            pytest.fail("the handshake accepted another model")
    assert qemu_children() == []


@pytest.mark.qemu
def test_emulator_killed_mid_run_is_a_clear_transport_error(kws_elf, kws, kws_oracle):
    xs = random_int8_inputs(kws_oracle.input.shape[1:], 200, seed=1)  # ~200 ms each: far longer than the test
    killed = []

    def kill_qemu_soon():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not killed:
            pids = qemu_children()
            if pids:
                time.sleep(1.0)  # let a few inferences through first
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_qemu_soon, daemon=True)
    killer.start()
    started = time.monotonic()
    with pytest.raises(TransportError) as err:
        with harness.open_device(get_board("qemu-nano33"), elf=kws_elf,
                                 expected_sha256=hashlib.sha256(kws).hexdigest()) as link:
            harness.measure(link, xs, progress=False)
    killer.join()
    assert killed, "QEMU never appeared"
    assert time.monotonic() - started < 15
    message = str(err.value)
    assert "QEMU running qemu-nano33 ended (exit status -9) during the measurement" in message
    assert qemu_children() == []


@pytest.mark.qemu
def test_interrupt_during_a_measurement_stops_qemu(kws_elf, kws, kws_oracle):
    x = random_int8_inputs(kws_oracle.input.shape[1:], 1)[0]
    with pytest.raises(KeyboardInterrupt):
        with harness.open_device(get_board("qemu-nano33"), elf=kws_elf,
                                 expected_sha256=hashlib.sha256(kws).hexdigest()) as link:
            link.infer(x)
            assert len(qemu_children()) == 1
            raise KeyboardInterrupt
    assert qemu_children() == []
