"""Faults on the link, through the project's fault proxy (tests/faultproxy.py): deadlines that hold
whatever arrives, fast recovery of a lost frame, and nothing lost when a run dies.

* a flood of undelimited bytes, longer than the reply timeout: the run finishes byte-identical or
  fails with a clear error, in a time that does not grow with the flood (host-built firmware);
* a lost RUN_RESULT on the digits CNN in QEMU is recovered in under 5 s (one reply timeout);
* QEMU killed after half the samples: report.json is marked partial with what was measured, and
  `validate --resume` completes it with the outputs of an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time

import numpy as np
import pytest

from conftest import qemu_children, random_int8_inputs
from faultproxy import FaultProxy, lose, no_delimiter
from mcuquant.boards import get_board
from mcuquant.device import harness
from mcuquant.device.hostfw import HostFirmware, build_host_firmware
from mcuquant.device.link import Link
from mcuquant.device.qemu import QemuEmulator
from mcuquant.errors import TransportError
from mcuquant.interpreters import Runner


@pytest.fixture(scope="module")
def kws(shared_models) -> bytes:
    return (shared_models / "kws_ref_model.tflite").read_bytes()


@pytest.fixture(scope="module")
def kws_fw(kws):
    return build_host_firmware(kws, name="kws_ref_model.tflite")


@pytest.fixture(scope="module")
def kws_oracle(kws) -> Runner:
    return Runner("tflm-host", kws)


def _infer_all(link, xs, oracle):
    for x in xs:
        y, _ = link.infer(x)
        assert y.tobytes() == oracle.invoke(x).tobytes()


@pytest.mark.parametrize("flood_seconds", [3.0, 12.0])
def test_a_flood_with_a_lost_reply_recovers_in_time_the_flood_does_not_set(kws, kws_fw, kws_oracle, flood_seconds):
    """Undelimited noise arrives faster than it is read, and the reply it hides is lost: protocol v1
    waited for the flood to end; now the noise counts as bad frames and forces a re-send at once."""
    xs = random_int8_inputs(kws_oracle.input.shape[1:], 6, seed=3)
    with HostFirmware(kws_fw, accept_timeout=20) as fw, FaultProxy(fw.url, {("to_host", 2): lose}) as proxy:
        with Link.open(proxy.url, expected_sha256=hashlib.sha256(kws).hexdigest(), timeout=1.0) as link:
            _infer_all(link, xs[:1], kws_oracle)
            proxy.flood(flood_seconds)
            started = time.monotonic()
            _infer_all(link, xs[1:], kws_oracle)
            took = time.monotonic() - started
    assert proxy.applied == [("to_host", 2)] and proxy.flood_bytes > 100_000
    assert link.bad_frames >= 1 and link.resends >= 1
    assert took < 3.0, f"{took:.1f} s for 5 samples under a {flood_seconds:g} s flood"
    assert any("without a frame delimiter" in r["cause"] for r in link.retry_log)


@pytest.mark.parametrize("flood_seconds", [6.0, 20.0])
def test_a_flood_that_hides_every_reply_fails_clearly_in_bounded_time(kws, kws_fw, kws_oracle, flood_seconds):
    """Nothing but noise reaches the host: a TransportError naming the cause, after at most
    (reply timeout) x (retries + 1) plus the inference allowance, however long the flood lasts."""
    x = random_int8_inputs(kws_oracle.input.shape[1:], 1, seed=4)[0]
    with HostFirmware(kws_fw, accept_timeout=20) as fw, FaultProxy(fw.url) as proxy:
        with Link.open(proxy.url, timeout=0.5, invoke_timeout=1.0, retries=3) as link:
            proxy.flood(flood_seconds, hold=True)
            started = time.monotonic()
            with pytest.raises(TransportError, match=r"no valid reply to RUN .* after \d attempts .* last cause"):
                link.infer(x)
            took = time.monotonic() - started
    assert took < 4.0, f"{took:.1f} s under a {flood_seconds:g} s flood"


def test_a_lost_closing_delimiter_costs_no_timeout(kws, kws_fw, kws_oracle):
    xs = random_int8_inputs(kws_oracle.input.shape[1:], 3, seed=5)
    with HostFirmware(kws_fw, accept_timeout=20) as fw, FaultProxy(fw.url, {("to_host", 2): no_delimiter}) as proxy:
        with Link.open(proxy.url, timeout=2.0) as link:
            started = time.monotonic()
            _infer_all(link, xs, kws_oracle)
            took = time.monotonic() - started
    assert proxy.applied == [("to_host", 2)] and link.resends == 0
    assert took < 1.5


# ---------------------------------------------------------------------------------------------
# On QEMU


@pytest.fixture(scope="module")
def digits_elf(pio_core, digits_cnn, tmp_path_factory):
    tflite = digits_cnn.read_bytes()
    result = harness.build_firmware(get_board("qemu-nano33"), tflite, tmp_path_factory.mktemp("digits-fw"),
                                    progress=False)
    return result.elf, tflite


@pytest.mark.qemu
def test_a_lost_result_on_qemu_is_recovered_in_under_5_s(digits_elf, digits):
    elf, tflite = digits_elf
    oracle = Runner("tflm-host", tflite)
    from mcuquant.interpreters import quantize

    xq = quantize(digits.x_test[:20], oracle.input)
    with QemuEmulator(get_board("qemu-nano33"), elf) as emu, FaultProxy(emu.url, {("to_host", 5): lose}) as proxy:
        with Link.open(proxy.url, expected_sha256=hashlib.sha256(tflite).hexdigest(), timeout=harness.REPLY_TIMEOUT_S,
                       invoke_timeout=harness.INVOKE_TIMEOUT_S, handshake_timeout=harness.HANDSHAKE_TIMEOUT_S) as link:
            times = []
            for x in xq:
                started = time.monotonic()
                y, _ = link.infer(x)
                times.append(time.monotonic() - started)
                assert y.tobytes() == oracle.invoke(x).tobytes()
    assert proxy.applied == [("to_host", 5)] and link.resends == 1
    assert "no reply within" in link.retry_log[0]["cause"]
    assert max(times) < 5.0 and sorted(times)[-2] < 0.5  # only the sample whose result was lost waited


@pytest.mark.qemu
def test_killed_qemu_leaves_a_partial_report_and_resume_completes_it(digits_cnn, pio_core, tmp_path, capsys):
    from test_cli import run

    args = ["validate", "--board", "qemu-nano33", "--model", str(digits_cnn), "--data", "builtin:digits",
            "--samples", "200", "--quiet"]
    journal = tmp_path / "killed" / "digits_cnn_device_journal.jsonl"
    killed = []

    def kill_qemu_at_half():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if journal.is_file() and journal.read_text().count('"i":') >= 100:
                pids = qemu_children()
                if pids:
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
                    return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_qemu_at_half, daemon=True)
    killer.start()
    rc, _, err = run(args + ["--out", str(tmp_path / "killed")], capsys)
    killer.join()
    assert killed and rc == 2 and "QEMU running qemu-nano33 ended" in err and "Traceback" not in err
    report = json.loads((tmp_path / "killed" / "report.json").read_text())
    part = report["partial"]["variants"]["digits_cnn"]
    assert 100 <= part["measured"] < 200 and part["n"] == 200
    assert part["byte_identical_with_tflm_host"] == part["measured"] and "--resume" in report["partial"]["resume"]

    rc, out, err = run(args + ["--out", str(tmp_path / "killed"), "--resume"], capsys)
    assert rc == 0, err
    resumed = json.loads((tmp_path / "killed" / "report.json").read_text())
    assert "partial" not in resumed
    device = resumed["rungs"][-1]
    assert device["n"] == 200 and device["bit_exact_rate"] == 1.0
    assert device["link"]["resumed_samples"] == part["measured"]

    rc, _, err = run(args + ["--out", str(tmp_path / "whole")], capsys)
    assert rc == 0, err
    whole = json.loads((tmp_path / "whole" / "report.json").read_text())
    a = np.load(tmp_path / "killed" / "digits_cnn_device_outputs.npz")
    b = np.load(tmp_path / "whole" / "digits_cnn_device_outputs.npz")
    np.testing.assert_array_equal(a["device"], b["device"])
    np.testing.assert_array_equal(a["counts"], b["counts"])  # QEMU -icount: the same instructions
    skip = {"link", "elf"}
    assert {k: v for k, v in device.items() if k not in skip} == \
        {k: v for k, v in whole["rungs"][-1].items() if k not in skip}
    assert qemu_children() == []


@pytest.mark.slow
@pytest.mark.qemu
def test_soak_10000_samples_through_a_faulty_link(digits_elf, digits, capsys):
    """10,000 samples on qemu-nano33 through the fault proxy: 0.1% of bytes corrupted and 0.1% of
    frames lost, both ways. The run finishes, every output is tflm-host's, and the re-sends are
    counted and printed."""
    from mcuquant.interpreters import quantize

    elf, tflite = digits_elf
    oracle = Runner("tflm-host", tflite)
    pool = quantize(digits.x_test, oracle.input)
    xq = pool[np.arange(10_000) % len(pool)]
    expected = oracle.run(xq, progress=False)
    started = time.monotonic()
    with QemuEmulator(get_board("qemu-nano33"), elf) as emu, \
            FaultProxy(emu.url, corrupt_rate=0.001, lose_rate=0.001, seed=7) as proxy:
        with Link.open(proxy.url, expected_sha256=hashlib.sha256(tflite).hexdigest(), timeout=harness.REPLY_TIMEOUT_S,
                       invoke_timeout=harness.INVOKE_TIMEOUT_S, handshake_timeout=harness.HANDSHAKE_TIMEOUT_S) as link:
            run = harness.measure(link, xq, progress=False)
    np.testing.assert_array_equal(run.outputs.reshape(expected.shape), expected)
    assert proxy.corrupted_bytes > 100 and proxy.lost_frames > 5 and run.resends >= proxy.lost_frames
    with capsys.disabled():
        print(f"\nsoak: {len(xq)} samples in {time.monotonic() - started:.0f} s, byte-identical with tflm-host; "
              f"{proxy.corrupted_bytes} bytes corrupted, {proxy.lost_frames} frames lost, {run.resends} re-sends, "
              f"{run.bad_frames} bad frames dropped")
