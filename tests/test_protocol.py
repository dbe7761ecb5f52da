"""The serial protocol (firmware/protocol/PROTOCOL.md) and the link to the host-built firmware.

Three layers, each against real counterparts:
- framing, byte by byte: the Python reader over pyserial's loop:// and the device's C receiver
  (mq_protocol.c, compiled here) on the same damaged streams; CRC against zlib.crc32, COBS
  against the PyPI `cobs` package;
- the device's request handling, through the host-built firmware (the real main loop, server and
  builtin backend, compiled with AddressSanitizer/UBSan) with raw frames;
- the Link, end to end with a real exported model: outputs byte-identical with tflm-host and the
  builtin runtime on the host, and a fault-injecting TCP proxy between link and firmware.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import os
import random
import signal
import socket
import subprocess
import time
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import serial
from cobs import cobs
from hypothesis import given, settings
from hypothesis import strategies as st

from mcuquant import __version__
from mcuquant.builtin.sources import firmware_dir
from mcuquant.device import protocol as p
from mcuquant.device.hostfw import HostFirmware, build_host_firmware
from mcuquant.device.link import DeviceErrorReply, DeviceNotReadyError, Link
from mcuquant.errors import DeviceMismatchError, TransportError
from mcuquant.interpreters import Runner

from faultproxy import FaultProxy, RecordingPort, drop_byte, flip, garbage, lose
from conftest import random_int8_inputs

STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Wshadow", "-Wconversion"]
# Short timeouts keep the fault-injection tests quick; the firmware answers in milliseconds.
FAST = {"timeout": 0.5, "invoke_timeout": 1.0, "retries": 3}


# ---------------------------------------------------------------------------------------------
# The device's framing code, compiled for ctypes with a small shim that feeds mq_rx.

SHIM_C = r"""
#include "mq_protocol.h"
size_t shim_rx_size(void) { return sizeof(mq_rx); }
/* Feed bytes at time now_ms; per event write kind (1 frame, 2 error), type or code, seq, crc. */
int shim_feed(mq_rx *rx, const uint8_t *data, size_t len, uint32_t now_ms, uint32_t *ev, int max_events)
{
    int n = 0;
    size_t i;
    for (i = 0; i < len; ++i) {
        mq_frame f;
        mq_proto_error e = MQ_PROTO_OK;
        mq_rx_event r = mq_rx_push(rx, data[i], now_ms, &f, &e);
        if (r == MQ_RX_NONE || n >= max_events) continue;
        ev[4 * n] = (uint32_t)r;
        ev[4 * n + 1] = r == MQ_RX_FRAME ? f.type : (uint32_t)e;
        ev[4 * n + 2] = r == MQ_RX_FRAME ? f.seq : 0u;
        ev[4 * n + 3] = r == MQ_RX_FRAME ? f.crc : 0u;
        ++n;
    }
    return n;
}
"""


@pytest.fixture(scope="module")
def clib(tmp_path_factory):
    """mq_protocol.c + shim as a shared library, built with the project's strict warnings."""
    out = tmp_path_factory.mktemp("proto")
    (out / "shim.c").write_text(SHIM_C)
    proto = firmware_dir() / "protocol"
    lib = out / "libmqproto.so"
    subprocess.run(["gcc", *STRICT, "-O1", "-shared", "-fPIC", f"-I{proto}", str(proto / "mq_protocol.c"),
                    str(out / "shim.c"), "-o", str(lib)], check=True, capture_output=True, text=True)
    c = ctypes.CDLL(str(lib))
    c.mq_crc32.restype = ctypes.c_uint32
    c.mq_crc32.argtypes = [ctypes.c_uint32, ctypes.c_char_p, ctypes.c_size_t]
    c.mq_cobs_encode.restype = ctypes.c_size_t
    c.mq_cobs_encode.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t]
    c.mq_cobs_decode.restype = ctypes.c_int
    c.mq_cobs_decode.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
                                 ctypes.POINTER(ctypes.c_size_t)]
    c.mq_frame_encode.restype = ctypes.c_size_t
    c.mq_frame_encode.argtypes = [ctypes.c_uint8, ctypes.c_uint16, ctypes.c_char_p, ctypes.c_size_t,
                                  ctypes.c_void_p, ctypes.c_size_t]
    c.shim_rx_size.restype = ctypes.c_size_t
    c.shim_feed.restype = ctypes.c_int
    c.shim_feed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint32,
                            ctypes.c_void_p, ctypes.c_int]
    c.mq_rx_reset.argtypes = [ctypes.c_void_p]
    return c


def c_cobs_encode(clib, data: bytes) -> bytes:
    buf = ctypes.create_string_buffer(p.cobs_max_encoded(len(data)))
    n = clib.mq_cobs_encode(data, len(data), buf, len(buf))
    assert n > 0
    return buf.raw[:n]


def c_cobs_decode(clib, data: bytes) -> bytes | None:
    buf = ctypes.create_string_buffer(max(len(data), 1))
    n = ctypes.c_size_t(0)
    return buf.raw[: n.value] if clib.mq_cobs_decode(data, len(data), buf, len(buf), ctypes.byref(n)) == 0 else None


class CReceiver:
    """The device's mq_rx, fed a byte stream; events as ("frame", type, seq, crc) or ("error", code)."""

    def __init__(self, clib):
        self.clib = clib
        self.rx = ctypes.create_string_buffer(clib.shim_rx_size())
        clib.mq_rx_reset(self.rx)

    def feed(self, data: bytes, now_ms: int = 0) -> list[tuple]:
        ev = (ctypes.c_uint32 * (4 * 64))()
        n = self.clib.shim_feed(self.rx, data, len(data), now_ms, ev, 64)
        return [("frame", ev[4 * i + 1], ev[4 * i + 2], ev[4 * i + 3]) if ev[4 * i] == 1 else ("error", ev[4 * i + 1])
                for i in range(n)]


class PyReceiver:
    """mcuquant.device.protocol.FrameReader over pyserial's loop://, events as for CReceiver."""

    def __init__(self, max_frame: int = 512):
        self.port = serial.serial_for_url("loop://", timeout=0)
        self.reader = p.FrameReader(self.port, max_frame=max_frame)

    def feed(self, data: bytes, now_ms: int = 0) -> list[tuple]:
        events = []
        # loop:// holds 4096 bytes: write in pieces and read in between, as a port would.
        for start in range(0, len(data), 1024):
            self.port.write(data[start : start + 1024])
            while True:
                try:
                    frame = self.reader.read(0)  # loop:// already holds every byte written
                except p.FrameError:
                    events.append(("error",))
                    continue
                if frame is None:
                    break
                events.append(("frame", frame.type, frame.seq, frame.crc))
        return events


def receivers(clib):
    return [CReceiver(clib), PyReceiver()]


def frame_event(msg_type: int, seq: int, body: bytes) -> tuple:
    raw = p.frame_bytes(msg_type, seq, body)
    return ("frame", msg_type, seq, int.from_bytes(raw[-4:], "little"))


def errors_then(events: list[tuple], good: tuple) -> bool:
    """At least one dropped frame, then exactly the good one: nothing damaged was accepted."""
    return len(events) >= 2 and events[-1] == good and all(e[0] == "error" for e in events[:-1])


def strip_event(e: tuple) -> tuple:
    return e[:1] if e[0] == "error" else e


# ---------------------------------------------------------------------------------------------
# CRC-32 and COBS


def test_crc32_is_zlib_crc32_in_python_and_c(clib):
    rng = random.Random(1)
    vectors = [b"", b"\x00", b"123456789", bytes(range(256)) * 3] + [rng.randbytes(rng.randrange(700)) for _ in range(200)]
    for data in vectors:
        assert p.crc32(data) == zlib.crc32(data)
        assert clib.mq_crc32(0, data, len(data)) == zlib.crc32(data)
    assert clib.mq_crc32(0, b"123456789", 9) == 0xCBF43926  # the standard check value
    # Chunked like zlib.crc32(b, zlib.crc32(a)).
    assert clib.mq_crc32(clib.mq_crc32(0, b"12345", 5), b"6789", 4) == 0xCBF43926


cobs_payloads = st.one_of(
    st.binary(max_size=800),
    st.lists(st.sampled_from([b"\x00", b"\x01", b"\xff", b"\x01" * 253, b"\x02" * 254, b"\x03" * 255]),
             max_size=6).map(b"".join),
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(cobs_payloads)
def test_c_cobs_is_byte_identical_with_the_cobs_package(clib, data):
    encoded = c_cobs_encode(clib, data)
    assert encoded == cobs.encode(data)
    assert len(encoded) <= p.cobs_max_encoded(len(data))
    assert c_cobs_decode(clib, encoded) == data


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(min_size=1, max_size=600).filter(lambda b: 0 not in b))
def test_c_cobs_decoder_agrees_on_arbitrary_input(clib, data):
    try:
        expected = cobs.decode(data)
    except cobs.DecodeError:
        expected = None
    assert c_cobs_decode(clib, data) == expected


def test_cobs_decode_rejects_truncated_block(clib):
    assert c_cobs_decode(clib, b"\x05ab") is None
    with pytest.raises(p.FrameError, match="COBS"):
        p.decode_frame(b"\x05ab")


# ---------------------------------------------------------------------------------------------
# Frames


def test_hello_frame_matches_the_spec_example():
    wire = p.encode_frame(p.MsgType.HELLO, 0)
    assert wire == bytes.fromhex("00 03 03 01 01 01 01 05 bd fa 36 0a 00")
    assert wire.hex(" ") in (firmware_dir() / "protocol" / "PROTOCOL.md").read_text()


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.integers(0, 255), st.integers(0, 0xFFFF), st.binary(max_size=502))
def test_c_and_python_frames_are_byte_identical(clib, msg_type, seq, body):
    buf = ctypes.create_string_buffer(600)
    n = clib.mq_frame_encode(msg_type, seq, body, len(body), buf, len(buf))
    wire = p.encode_frame(msg_type, seq, body)
    assert buf.raw[:n] == wire
    frame = p.decode_frame(wire[1:-1])
    assert (frame.version, frame.type, frame.seq, frame.body) == (p.VERSION, msg_type, seq, body)


def test_c_frame_encode_refuses_what_does_not_fit(clib):
    buf = ctypes.create_string_buffer(600)
    assert clib.mq_frame_encode(2, 1, b"x" * 503, 503, buf, 600) == 0  # body above MQ_PROTO_MAX_BODY
    assert clib.mq_frame_encode(2, 1, b"x" * 100, 100, buf, 50) == 0  # output buffer too small


def test_frames_round_trip_over_loop(clib):
    frames = [(p.MsgType.HELLO, 0, b""), (p.MsgType.INPUT, 1, p.encode_input(0, bytes(range(256)) * 1)),
              (p.MsgType.INVOKE, 2, b""), (p.MsgType.READ_OUTPUT, 0xFFFF, p.encode_read_output(7, 9)),
              (p.MsgType.ERROR, 3, p.encode_error(p.ErrorCode.BAD_REQUEST, "no")), (0x81, 4, b"\x00" * 300)]
    stream = b"".join(p.encode_frame(*f) for f in frames)
    for rx in receivers(clib):
        assert rx.feed(stream) == [frame_event(*f) for f in frames]


GOOD = (p.MsgType.INVOKE, 7, b"")
DAMAGED = (p.MsgType.INPUT, 6, p.encode_input(0, bytes(range(1, 200))))


@pytest.mark.parametrize("kind", ["C", "python"])
def test_corrupted_byte_anywhere_is_dropped_never_accepted(clib, kind):
    wire = p.encode_frame(*DAMAGED)
    for pos in range(1, len(wire) - 1):
        for flip in (0x01, 0x80, 0xFF):
            damaged = bytearray(wire)
            damaged[pos] ^= flip
            rx = CReceiver(clib) if kind == "C" else PyReceiver()
            events = [strip_event(e) for e in rx.feed(bytes(damaged) + p.encode_frame(*GOOD))]
            assert errors_then(events, frame_event(*GOOD)), (pos, flip, events)


@pytest.mark.parametrize("kind", ["C", "python"])
def test_dropped_byte_anywhere_is_dropped_never_accepted(clib, kind):
    wire = p.encode_frame(*DAMAGED)
    for pos in range(1, len(wire) - 1):
        damaged = wire[:pos] + wire[pos + 1 :]
        rx = CReceiver(clib) if kind == "C" else PyReceiver()
        events = [strip_event(e) for e in rx.feed(damaged + p.encode_frame(*GOOD))]
        assert errors_then(events, frame_event(*GOOD)), (pos, events)


def test_garbage_before_a_frame_is_skipped(clib):
    rng = random.Random(7)
    for _ in range(20):
        garbage = rng.randbytes(rng.randrange(1, 3000))
        for rx in receivers(clib):
            events = [strip_event(e) for e in rx.feed(garbage + p.encode_frame(*GOOD))]
            assert events[-1] == frame_event(*GOOD)
            assert all(e[0] == "error" for e in events[:-1])


def test_oversized_frame_is_dropped_without_growing_the_buffer(clib):
    huge = b"\x00" + b"\x01" * 20000 + b"\x00"
    for rx in receivers(clib):
        events = rx.feed(huge + p.encode_frame(*GOOD))
        assert [strip_event(e) for e in events] == [("error",), frame_event(*GOOD)]
        if isinstance(rx, CReceiver):
            assert events[0] == ("error", p.ErrorCode.TOO_LARGE)
        else:
            assert len(rx.reader._buf) == 0
    # A well-formed frame above max_frame is refused too, not just bytes without a delimiter.
    rx = PyReceiver(max_frame=128)
    big = p.encode_frame(p.MsgType.INPUT, 1, b"\x05" * 200)
    assert [strip_event(e) for e in rx.feed(big + p.encode_frame(*GOOD))] == [("error",), frame_event(*GOOD)]


def test_truncated_frame_is_closed_off_by_the_next_one(clib):
    wire = p.encode_frame(*DAMAGED)
    for cut in (2, len(wire) // 2, len(wire) - 2):
        for rx in receivers(clib):
            events = [strip_event(e) for e in rx.feed(wire[:cut] + p.encode_frame(*GOOD))]
            assert events == [("error",), frame_event(*GOOD)], cut


def test_empty_frames_are_ignored_and_a_stalled_partial_frame_expires(clib):
    for rx in receivers(clib):
        assert rx.feed(b"\x00" * 10) == []
    # Device: a partial frame older than MQ_PROTO_RX_TIMEOUT_MS is discarded when bytes resume,
    # so a frame sent later without a leading delimiter still decodes.
    rx = CReceiver(clib)
    assert rx.feed(b"\x07garbage", now_ms=0) == []
    assert rx.feed(p.encode_frame(*GOOD)[1:], now_ms=2000) == [frame_event(*GOOD)]


def test_message_bodies_round_trip():
    spec = p.TensorSpec("int8", (1, 49, 10, 1), 0.5, -3, 490, 9)
    info = p.DeviceInfo(p.VERSION, 512, 0, "ab" * 32, 1000, 2000, "builtin", "instructions", "0.1.0", "", (spec,),
                        (p.TensorSpec("int8", (1, 12), 1 / 256, -128, 12, 9),), busy_ms=50)
    assert p.parse_hello_reply(p.encode_hello_reply(info)) == info
    assert p.parse_busy(p.encode_busy(1234, 17)) == (1234, 17)
    result = p.Result(0, 1234, 5, 12, bytes(range(12)), "")
    assert p.parse_result(p.encode_result(result)) == result
    failed = p.Result(11, 0, 6, 12, b"", "MQ_ERR_SHAPE")
    assert p.parse_result(p.encode_result(failed)) == failed
    assert p.parse_input_ack(p.encode_input_ack(512, 490)) == (512, 490)
    assert p.parse_output_data(p.encode_output_data(3, b"xyz")) == (3, b"xyz")
    assert p.parse_error(p.encode_error(p.ErrorCode.NOT_READY, "arena")) == (p.ErrorCode.NOT_READY, "arena")
    with pytest.raises(p.ProtocolError, match="ends early"):
        p.parse_hello_reply(p.encode_hello_reply(info)[:-1])
    with pytest.raises(p.ProtocolError, match="unexpected bytes"):
        p.parse_input_ack(p.encode_input_ack(0, 1) + b"\x00")


_GOOD_HELLO = p.DeviceInfo(p.VERSION, 512, 0, "ab" * 32, 1000, 2000, "builtin", "instructions", "0.1.0", "",
                           (p.TensorSpec("int8", (1, 8, 8, 1), 0.5, -3, 64, 9),),
                           (p.TensorSpec("int8", (1, 10), 1 / 256, -128, 10, 9),), busy_ms=50)


def _with_input(**changes):
    return dataclasses.replace(_GOOD_HELLO, inputs=(dataclasses.replace(_GOOD_HELLO.inputs[0], **changes),))


# (the contradicting handshake, the field the error names)
BAD_HELLOS = {
    "input bytes vs shape": (_with_input(nbytes=100), r"input 0 bytes: 100 contradicts its shape \(1, 8, 8, 1\) of int8 "
                                                       r"\(64 bytes\)"),
    "int16 bytes vs shape": (_with_input(dtype="int16", tflite_type=7), r"input 0 bytes: 64 contradicts .* \(128 bytes\)"),
    "zero dimension": (_with_input(shape=(1, 0, 8, 1)), r"input 0 shape: \(1, 0, 8, 1\) has a dimension below 1"),
    "unknown dtype": (_with_input(dtype="tflite_type_99", tflite_type=99), "input 0 dtype: TFLite type 99"),
    "negative scale": (_with_input(scale=-0.5), "input 0 scale"),
    "output bytes": (dataclasses.replace(_GOOD_HELLO, outputs=(dataclasses.replace(_GOOD_HELLO.outputs[0], nbytes=12),)),
                     "output 0 bytes: 12 contradicts"),
    "no outputs": (dataclasses.replace(_GOOD_HELLO, outputs=()), "n_outputs: a ready backend lists"),
    "arena": (dataclasses.replace(_GOOD_HELLO, arena_used=3000), "arena_used: 3000 bytes used of an arena of 2000"),
    "failed but lists tensors": (dataclasses.replace(_GOOD_HELLO, backend_status=3), "backend_status: 3 .not ready."),
    "max_frame": (dataclasses.replace(_GOOD_HELLO, max_frame=100), "max_frame: 100 is below"),
}


@pytest.mark.parametrize("case", list(BAD_HELLOS))
def test_a_handshake_that_contradicts_itself_names_the_field(case):
    info, message = BAD_HELLOS[case]
    with pytest.raises(p.ProtocolError, match="HELLO_REPLY field " + message):
        p.parse_hello_reply(p.encode_hello_reply(info))


def test_a_contradicting_handshake_is_one_clear_error_naming_the_device():
    """Over a real link, as a device would send it: a TransportError naming the device and the field."""
    from mcuquant.errors import TransportError

    port = serial.serial_for_url("loop://", timeout=0.05)
    port.write(p.encode_frame(p.MsgType.HELLO_REPLY, 0, p.encode_hello_reply(BAD_HELLOS["input bytes vs shape"][0])))
    with pytest.raises(TransportError, match=r"loop://: HELLO_REPLY field input 0 bytes: 100 .* rebuild and flash"):
        Link(port, name="loop://", handshake_timeout=1).handshake()


def test_inputs_are_checked_before_anything_is_sent():
    spec = p.TensorSpec("int8", (1, 4), 0.1, 0, 4, 9)
    port = serial.serial_for_url("loop://", timeout=0)
    link = Link(port)
    link.info = p.DeviceInfo(1, 512, 0, "00" * 32, 0, 0, "builtin", "", "", "", (spec,), (spec,))
    for bad, match in ((np.array([1, 2, 3, 128]), "range"), (np.zeros(4, np.float32), "quantize first"),
                       (np.zeros(5, np.int8), "expects shape")):
        with pytest.raises(ValueError, match=match):
            link.infer(bad)
    assert port.in_waiting == 0  # nothing went out
    with pytest.raises(ValueError, match="takes 1 inputs"):
        link.infer_all([])


# ---------------------------------------------------------------------------------------------
# The host-built firmware


@pytest.fixture(scope="module")
def kws_model(shared_models) -> bytes:
    return (shared_models / "kws_ref_model.tflite").read_bytes()


@pytest.fixture(scope="module")
def kws_fw(kws_model) -> Path:
    """The firmware around the MLPerf Tiny KWS model, with AddressSanitizer and UBSan."""
    return build_host_firmware(kws_model, name="kws_ref_model.tflite", sanitize=True)


@pytest.fixture(scope="module")
def kws_tflm(kws_model) -> Runner:
    return Runner("tflm-host", kws_model)


def sanitizer_report(text: str) -> bool:
    return "Sanitizer" in text or "runtime error" in text


@contextmanager
def running(exe: Path):
    """A host firmware for one test; afterwards it is gone and reported no memory error."""
    fw = HostFirmware(exe, accept_timeout=20)
    with fw:
        yield fw
    assert fw.returncode is not None
    assert not Path(f"/proc/{fw.pid}").exists()  # stopped and reaped
    assert not sanitizer_report(fw.stderr_text()), fw.stderr_text()


def raw_port(fw: HostFirmware):
    return serial.serial_for_url(fw.url, timeout=1.0, write_timeout=1.0)


def ask(port, reader: p.FrameReader, msg_type: int, seq: int, body: bytes = b"", *, version: int = p.VERSION,
        timeout: float = 2.0) -> p.Frame:
    port.write(p.encode_frame(msg_type, seq, body, version=version))
    frame = reader.read(timeout)
    assert frame is not None, f"no reply to type 0x{msg_type:02x} seq {seq}"
    return frame


def test_handshake_reports_the_exported_model(kws_model, kws_fw, kws_tflm, tmp_path):
    from mcuquant.export import export_model

    exported = export_model(kws_model, tmp_path, name="kws_ref_model.tflite")
    with running(kws_fw) as fw, Link.open(fw.url, **FAST) as link:
        info = link.info
        assert info.model_sha256 == exported.sha256 == hashlib.sha256(kws_model).hexdigest()
        assert f'#define MCUQUANT_MODEL_SHA256 "{info.model_sha256}"' in (tmp_path / "model_config.h").read_text()
        assert (info.backend, info.counter_unit, info.firmware_version) == ("builtin", "microseconds", __version__)
        assert info.protocol_version == p.VERSION and info.max_frame == 512 and info.ready and info.error == ""
        for spec, tensor in ((info.inputs[0], kws_tflm.input), (info.outputs[0], kws_tflm.output)):
            assert spec.shape == tuple(tensor.shape)
            assert spec.dtype == np.dtype(tensor.dtype).name == "int8"
            assert spec.scale == pytest.approx(tensor.scales[0], rel=1e-7)
            assert spec.zero_point == tensor.zero_points[0]
            assert spec.nbytes == int(np.prod(tensor.shape))
        from mcuquant.builtin.host import HostRuntime

        # The firmware's runtime is the host runtime's code on the same (64-bit) host, its prepared
        # data in the exported array (flash), not in the arena.
        runtime = HostRuntime(kws_model)
        assert info.arena_used == HostRuntime(kws_model, prepared=runtime.prepared_blob()).arena_required
        assert info.arena_used == runtime.arena_required - runtime.prepared_bytes
        assert info.arena_used <= info.arena_size


def test_outputs_are_byte_identical_with_tflm_and_builtin_host(kws_model, kws_fw, kws_tflm):
    xs = random_int8_inputs(kws_tflm.input.shape[1:], 6, seed=3)
    builtin = Runner("builtin-host", kws_model)
    # Default timeouts: this test asserts that nothing needed a retry, even on a busy machine.
    with running(kws_fw) as fw, Link.open(fw.url, expected_sha256=hashlib.sha256(kws_model).hexdigest()) as link:
        for i, x in enumerate(xs):
            y, count = link.infer(x)
            expected = kws_tflm.invoke(x)
            assert y.dtype == expected.dtype and y.shape == expected.shape
            assert y.tobytes() == expected.tobytes(), i
            assert y.tobytes() == builtin.invoke(x).tobytes(), i
            assert count > 0 and link.last_inference == i + 1
        assert link.resends == link.bad_frames == link.stale_frames == 0


def test_wrong_model_hash_is_refused(kws_fw):
    with running(kws_fw) as fw:
        with pytest.raises(DeviceMismatchError, match="SHA-256"):
            Link.open(fw.url, expected_sha256="00" * 32, **FAST)


def test_firmware_exits_when_the_link_closes(kws_fw):
    with running(kws_fw) as fw:
        with Link.open(fw.url, **FAST):
            pass
        assert fw.wait(timeout=10) == 0


@pytest.fixture(scope="module")
def conv_model() -> bytes:
    """A tiny PTQ conv model: with 256-byte frames its 288-byte input takes two INPUT chunks and
    its 1152-byte output one RESULT (230 bytes inline) and four READ_OUTPUT."""
    from mcuquant.quantize import convert_ptq
    from mcuquant.tf_import import tensorflow

    tf = tensorflow()
    inp = tf.keras.Input((12, 12, 2))
    # Seeded weights: the same model every run, so the firmware build stays cached.
    out = tf.keras.layers.Conv2D(8, 3, padding="same", activation="relu",
                                 kernel_initializer=tf.keras.initializers.GlorotUniform(seed=0),
                                 bias_initializer=tf.keras.initializers.RandomUniform(-0.1, 0.1, seed=1))(inp)
    rep = np.random.default_rng(0).normal(size=(32, 12, 12, 2)).astype(np.float32)
    return convert_ptq(tf.keras.Model(inp, out), rep).tflite


def test_small_frames_chunk_inputs_and_read_outputs(conv_model):
    exe = build_host_firmware(conv_model, name="conv", sanitize=True, max_frame=256)
    tflm = Runner("tflm-host", conv_model)
    xs = random_int8_inputs(tflm.input.shape[1:], 4, seed=5)
    builtin = Runner("builtin-host", conv_model)
    with running(exe) as fw, FaultProxy(fw.url, {}) as proxy, Link.open(proxy.url, **FAST) as link:
        assert link.info.max_frame == 256 and link.info.inputs[0].nbytes == 288 and link.info.outputs[0].nbytes == 1152
        for x in xs:
            y, _ = link.infer(x)
            assert y.tobytes() == tflm.invoke(x).tobytes() == builtin.invoke(x).tobytes()
        # Per inference: INPUT + RUN (the last chunk) + 4 READ_OUTPUT, after the HELLO.
        assert proxy.counts == {"to_device": 1 + 6 * len(xs), "to_host": 1 + 6 * len(xs)}


def _in_flight(events) -> tuple[int, int]:
    """From a RecordingPort's events: the most requests the host had in flight (sent, no reply
    read yet), and the most wire bytes in flight beyond the oldest of them."""
    sent: dict[int, int] = {}  # seq -> wire bytes, for requests without a reply yet
    most, most_beyond = 0, 0
    for direction, chunk in events:
        frame = p.decode_frame(chunk)
        if direction == "sent":
            sent[frame.seq] = len(chunk) + 2
            most = max(most, len(sent))
            most_beyond = max(most_beyond, sum(sent.values()) - sent[min(sent)])
        elif frame.type != p.MsgType.BUSY:
            sent.pop(frame.seq, None)
    return most, most_beyond


@pytest.mark.parametrize("rx_buffer", [None, 300])
def test_samples_stream_within_the_window_and_the_devices_rx_buffer(conv_model, rx_buffer, monkeypatch):
    """Per sample INPUT, RUN and four READ_OUTPUT of up to 256 bytes: with a flow-controlled link
    the host keeps the device's window (4) full; with a 300-byte receive buffer announced, never
    more than 300 bytes wait behind the request being executed. Outputs stay byte-identical."""
    exe = build_host_firmware(conv_model, name="conv", sanitize=True, max_frame=256)
    if rx_buffer is not None:
        monkeypatch.setenv("MCUQUANT_HOSTFW_RX_BUFFER", str(rx_buffer))
    tflm = Runner("tflm-host", conv_model)
    xs = random_int8_inputs(tflm.input.shape[1:], 12, seed=6)
    with running(exe) as fw, Link(RecordingPort(raw_port(fw), record=True), **FAST) as link:
        link.handshake()
        assert link.info.window == 4
        assert link.info.rx_buffer == (p.RX_UNLIMITED if rx_buffer is None else rx_buffer)
        outputs = [y for y, _ in link.infer_stream(xs)]
        assert [y.tobytes() for y in outputs] == [tflm.invoke(x).tobytes() for x in xs]
        assert link.resends == 0
        most, beyond = _in_flight(link.port.events)
    assert most <= 4
    if rx_buffer is None:
        assert most == 4 and beyond > 300  # pipelined: the budget below does bind
    else:
        assert beyond <= rx_buffer


def test_the_device_answers_re_sends_from_a_window_of_replies(kws_fw, kws_tflm):
    x = random_int8_inputs(kws_tflm.input.shape[1:], 1, seed=9)[0].tobytes()
    expected = kws_tflm.invoke(np.frombuffer(x, np.int8)).tobytes()
    with running(kws_fw) as fw, raw_port(fw) as port:
        reader = p.FrameReader(port)

        def send(msg_type, seq, offset, data):
            port.write(p.encode_frame(msg_type, seq, p.encode_input(offset, data)))

        def error_of(frame):
            assert frame.type == p.MsgType.ERROR
            return p.parse_error(frame.body)[0]

        info = p.parse_hello_reply(ask(port, reader, p.MsgType.HELLO, 0).body)
        assert info.window == 4 and info.rx_buffer == p.RX_UNLIMITED
        # Four chunks written back to back, then read: one reply each, in order.
        for i in range(4):
            send(p.MsgType.INPUT, 1 + i, 100 * i, x[100 * i : 100 * (i + 1)])
        acks = [reader.read(2.0) for _ in range(4)]
        assert [(f.seq, p.parse_input_ack(f.body)) for f in acks] == [(1 + i, (100 * i, 100)) for i in range(4)]
        # Re-sends within the window get the cached reply and store nothing twice.
        assert ask(port, reader, p.MsgType.INPUT, 1, p.encode_input(0, x[:100])) == acks[0]
        assert ask(port, reader, p.MsgType.INPUT, 3, p.encode_input(200, x[200:300])) == acks[2]
        run = ask(port, reader, p.MsgType.RUN, 5, p.encode_input(400, x[400:]))
        assert p.parse_result(run.body).inline == expected and p.parse_result(run.body).inference == 1
        assert error_of(ask(port, reader, p.MsgType.INPUT, 1, p.encode_input(0, x[:100]))) == \
            p.ErrorCode.BAD_SEQUENCE  # four requests later: out of the window
        # A lost request (seq 7): what follows it is refused, not run out of order; sent again, all run.
        send(p.MsgType.INPUT, 6, 0, x[:100])
        send(p.MsgType.RUN, 8, 200, x[200:])
        first_ack = reader.read(2.0)
        assert p.parse_input_ack(first_ack.body) == (0, 100) and error_of(reader.read(2.0)) == p.ErrorCode.BAD_SEQUENCE
        send(p.MsgType.INPUT, 6, 0, x[:100])
        send(p.MsgType.INPUT, 7, 100, x[100:200])
        send(p.MsgType.RUN, 8, 200, x[200:])
        replies = [reader.read(2.0) for _ in range(3)]
        assert replies[0] == first_ack and p.parse_input_ack(replies[1].body) == (100, 100)
        assert p.parse_result(replies[2].body).inline == expected and p.parse_result(replies[2].body).inference == 2
        # HELLO starts a new session with an empty cache.
        assert ask(port, reader, p.MsgType.HELLO, 9).seq == 9
        assert error_of(ask(port, reader, p.MsgType.RUN, 8, p.encode_input(200, x[200:]))) == p.ErrorCode.BAD_SEQUENCE


def test_backend_failure_is_reported_in_the_handshake(kws_model):
    exe = build_host_firmware(kws_model, name="kws_ref_model.tflite", arena_bytes=64)
    with running(exe) as fw:
        with pytest.raises(DeviceNotReadyError, match=r"MQ_ERR_ARENA_TOO_SMALL: the model needs \d+ arena bytes") as err:
            Link.open(fw.url, **FAST)
        info = err.value.info
        assert info.backend_status == 11 and info.arena_size == 64 and info.arena_used > 64
        assert info.inputs == () and info.outputs == ()
        assert info.model_sha256 == hashlib.sha256(kws_model).hexdigest()
    with running(exe) as fw, raw_port(fw) as port:
        reader = p.FrameReader(port)
        assert ask(port, reader, p.MsgType.HELLO, 0).type == p.MsgType.HELLO_REPLY
        reply = ask(port, reader, p.MsgType.INPUT, 1, p.encode_input(0, b"\x00"))
        assert p.parse_error(reply.body)[0] == p.ErrorCode.NOT_READY and "ARENA" in p.parse_error(reply.body)[1]


def test_device_sequence_rules_and_reply_cache(kws_fw, kws_tflm):
    x = random_int8_inputs(kws_tflm.input.shape[1:], 1, seed=9)[0].tobytes()
    with running(kws_fw) as fw, raw_port(fw) as port:
        reader = p.FrameReader(port)

        def error_of(frame):
            assert frame.type == p.MsgType.ERROR
            return p.parse_error(frame.body)[0]

        assert error_of(ask(port, reader, p.MsgType.INVOKE, 5)) == p.ErrorCode.BAD_SEQUENCE  # no HELLO yet
        bad_version = ask(port, reader, p.MsgType.HELLO, 0, version=p.VERSION + 1)
        assert error_of(bad_version) == p.ErrorCode.BAD_VERSION and bad_version.version == p.VERSION
        assert ask(port, reader, p.MsgType.HELLO, 100).seq == 100
        assert error_of(ask(port, reader, p.MsgType.INVOKE, 101)) == p.ErrorCode.BAD_REQUEST  # no input yet
        assert error_of(ask(port, reader, p.MsgType.INPUT, 103, p.encode_input(0, x))) == p.ErrorCode.BAD_SEQUENCE
        assert p.parse_input_ack(ask(port, reader, p.MsgType.INPUT, 102, p.encode_input(0, x)).body) == (0, len(x))
        first = ask(port, reader, p.MsgType.INVOKE, 103)
        again = ask(port, reader, p.MsgType.INVOKE, 103)  # a host retry: the cached reply, not a second run
        assert again == first and p.parse_result(first.body).inference == 1
        assert p.parse_result(first.body).inline == kws_tflm.invoke(np.frombuffer(x, np.int8)).tobytes()
        # Same seq, other content: refused, nothing executed.
        assert error_of(ask(port, reader, p.MsgType.READ_OUTPUT, 103, p.encode_read_output(0, 1))) == \
            p.ErrorCode.BAD_SEQUENCE
        assert error_of(ask(port, reader, 0x42, 104)) == p.ErrorCode.UNKNOWN_TYPE
        assert error_of(ask(port, reader, p.MsgType.READ_OUTPUT, 105, p.encode_read_output(10, 5))) == \
            p.ErrorCode.BAD_REQUEST  # past the 12 output bytes
        assert p.parse_output_data(ask(port, reader, p.MsgType.READ_OUTPUT, 106, p.encode_read_output(4, 8)).body) == \
            (4, p.parse_result(first.body).inline[4:])
        # Input must come in order and in full before every INVOKE.
        assert error_of(ask(port, reader, p.MsgType.INPUT, 107, p.encode_input(10, x[10:20]))) == \
            p.ErrorCode.BAD_REQUEST
        assert error_of(ask(port, reader, p.MsgType.INVOKE, 108)) == p.ErrorCode.BAD_REQUEST
        assert error_of(ask(port, reader, p.MsgType.INPUT, 109, p.encode_input(0, x + b"\x00"))) == \
            p.ErrorCode.BAD_REQUEST  # one byte past the input
        ask(port, reader, p.MsgType.INPUT, 110, p.encode_input(0, x[:100]))
        ask(port, reader, p.MsgType.INPUT, 111, p.encode_input(100, x[100:]))
        assert p.parse_result(ask(port, reader, p.MsgType.INVOKE, 112).body).inference == 2
        # RUN: the last chunk, then the inference; a retry gets the cached RUN_RESULT.
        ask(port, reader, p.MsgType.INPUT, 113, p.encode_input(0, x[:100]))
        run = ask(port, reader, p.MsgType.RUN, 114, p.encode_input(100, x[100:]))
        assert run.type == p.MsgType.RUN_RESULT and ask(port, reader, p.MsgType.RUN, 114, p.encode_input(100, x[100:])) == run
        assert p.parse_result(run.body).inference == 3 and p.parse_result(run.body).inline == p.parse_result(first.body).inline
        assert error_of(ask(port, reader, p.MsgType.RUN, 115, p.encode_input(0, x[:100]))) == p.ErrorCode.BAD_REQUEST
        assert p.parse_result(ask(port, reader, p.MsgType.RUN, 116, p.encode_input(0, x)).body).inference == 4


def test_oversized_and_garbage_frames_get_errors_and_the_device_keeps_serving(kws_fw):
    with running(kws_fw) as fw, raw_port(fw) as port:
        reader = p.FrameReader(port)
        port.write(b"\x00" + b"\x01" * 5000 + b"\x00")
        frame = reader.read(2.0)
        assert frame.type == p.MsgType.ERROR and p.parse_error(frame.body)[0] == p.ErrorCode.TOO_LARGE
        port.write(b"\x00\x03\x01\x01\x00")  # a 2-byte frame: shorter than header + CRC
        assert p.parse_error(reader.read(2.0).body)[0] == p.ErrorCode.BAD_FRAME
        damaged = bytearray(p.encode_frame(p.MsgType.HELLO, 0))
        damaged[8] ^= 0x10
        port.write(bytes(damaged))
        assert p.parse_error(reader.read(2.0).body)[0] == p.ErrorCode.BAD_CRC
        link = Link(port, **FAST)
        assert link.handshake().ready


def test_hostile_frames_never_break_the_device(kws_fw, kws_tflm):
    """Random valid-CRC requests in sequence (random types, offsets, lengths) and raw garbage,
    under AddressSanitizer/UBSan; the device answers each and then still infers correctly."""
    rng = random.Random(11)
    x = random_int8_inputs(kws_tflm.input.shape[1:], 1, seed=12)[0]
    replies = []

    def drain(reader):
        while True:
            try:
                frame = reader.read(0.05)
            except p.FrameError:
                continue
            if frame is None:
                return
            replies.append(p.parse_error(frame.body)[0] if frame.type == p.MsgType.ERROR else p.MsgType(frame.type))

    with running(kws_fw) as fw, raw_port(fw) as port:
        reader = p.FrameReader(port)
        ask(port, reader, p.MsgType.HELLO, 0)
        seq = 1

        def send(msg, body):
            nonlocal seq
            port.write(p.encode_frame(msg, seq, body))
            if p.OVERHEAD + len(body) <= 512:  # executed (and seq consumed) unless above max_frame
                seq = (seq + 1) & 0xFFFF

        for i in range(400):
            kind = rng.randrange(6)
            if kind == 0:
                port.write(rng.randbytes(rng.randrange(1, 700)))
                continue
            if kind == 5:  # a well-formed inference amid the noise
                send(p.MsgType.INPUT, p.encode_input(0, x.tobytes()))
                send(p.MsgType.INVOKE, b"")
                continue
            if kind == 1:
                body = p.encode_input(rng.choice([0, 1, 489, 490, 491, 2**32 - 1, rng.randrange(2**32)]),
                                      rng.randbytes(rng.randrange(0, 510)))
                msg = p.MsgType.INPUT
            elif kind == 2:
                body = p.encode_read_output(rng.choice([0, 11, 12, 13, 2**32 - 1]), rng.choice([0, 1, rng.randrange(2**16)]))
                msg = p.MsgType.READ_OUTPUT
            elif kind == 3:
                body, msg = rng.randbytes(rng.choice([0, 0, 1, 6])), rng.choice([p.MsgType.INVOKE, p.MsgType.READ_OUTPUT])
            else:
                body, msg = rng.randbytes(rng.randrange(0, 600)), rng.randrange(256)
            if msg == p.MsgType.HELLO:
                msg = p.MsgType.INVOKE
            send(msg, body)
            if i % 20 == 0:  # read replies now and then so no socket buffer fills up
                drain(reader)
        drain(reader)
        link = Link(port, **FAST)
        link.handshake()
        y, _ = link.infer(x)
        assert y.tobytes() == kws_tflm.invoke(x).tobytes()
    # Every frame within max_frame was executed in sequence; the mix shows what was exercised.
    assert p.ErrorCode.BAD_SEQUENCE not in replies
    for expected in (p.MsgType.INPUT_ACK, p.MsgType.RESULT, p.ErrorCode.BAD_REQUEST, p.ErrorCode.UNKNOWN_TYPE,
                     p.ErrorCode.TOO_LARGE):
        assert expected in replies, (expected, sorted(set(map(str, replies))))


# ---------------------------------------------------------------------------------------------
# Fault injection between the link and the firmware


# Frames per direction with the KWS model (input fits one frame): 0 HELLO, then one RUN per
# inference (k + 1 for inference k), replies likewise; re-sent frames count too.
FAULTS = {
    "corrupted reply": {("to_host", 4): flip},
    "reply missing a byte": {("to_host", 4): drop_byte},
    "lost reply": {("to_host", 4): lose},
    "corrupted request": {("to_device", 3): flip},
    "request missing a byte": {("to_device", 4): drop_byte},
    "lost request": {("to_device", 4): lose},
    "garbage to the device": {("to_device", 3): garbage},
    "garbage to the host": {("to_host", 2): garbage},
    "garbage before the handshake": {("to_device", 0): garbage},
    "several at once": {("to_host", 2): lose, ("to_device", 3): flip, ("to_host", 4): drop_byte,
                        ("to_device", 6): garbage},
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_link_recovers_from_a_damaged_exchange(kws_model, kws_fw, kws_tflm, fault):
    xs = random_int8_inputs(kws_tflm.input.shape[1:], 8, seed=21)
    with running(kws_fw) as fw, FaultProxy(fw.url, FAULTS[fault]) as proxy:
        with Link.open(proxy.url, expected_sha256=hashlib.sha256(kws_model).hexdigest(), **FAST) as link:
            for i, x in enumerate(xs):
                y, _ = link.infer(x)
                assert y.tobytes() == kws_tflm.invoke(x).tobytes(), (fault, i)
                # Inference numbers 1, 2, 3, ...: a retried INVOKE never ran twice.
                assert link.last_inference == i + 1
        assert sorted(proxy.applied) == sorted(FAULTS[fault])
        # Garbage beside an intact frame costs nothing: the reply right behind it is taken, no re-send.
        assert link.resends >= 1 or fault.startswith("garbage")


STREAM_FAULTS = {
    "lost request": {("to_device", 30): lose},
    "lost reply": {("to_host", 40): lose},
    "corrupted request": {("to_device", 50): flip},
    "reply missing a byte": {("to_host", 60): drop_byte},
    "all of them": {("to_device", 30): lose, ("to_host", 40): lose, ("to_device", 50): flip,
                    ("to_host", 60): drop_byte},
}


@pytest.mark.parametrize("fault", list(STREAM_FAULTS))
def test_a_stream_recovers_from_a_fault_inside_the_window_without_waiting_for_silence(conv_model, fault):
    """Four requests in flight (INPUT, RUN, READ_OUTPUT of 20 samples): a frame lost or damaged in
    the middle is re-sent because of what arrives next (a BAD_SEQUENCE for a later request, a later
    request's reply, a corrupted frame), not after a quiet reply timeout; nothing runs twice."""
    exe = build_host_firmware(conv_model, name="conv", sanitize=True, max_frame=256)
    tflm = Runner("tflm-host", conv_model)
    xs = random_int8_inputs(tflm.input.shape[1:], 20, seed=8)
    with running(exe) as fw, FaultProxy(fw.url, STREAM_FAULTS[fault]) as proxy:
        with Link.open(proxy.url, timeout=5.0, invoke_timeout=5.0, retries=3) as link:
            outputs = [y.tobytes() for y, _ in link.infer_stream(xs)]
            assert link.last_inference == len(xs)  # every sample ran once
    assert outputs == [tflm.invoke(x).tobytes() for x in xs]
    assert sorted(proxy.applied) == sorted(STREAM_FAULTS[fault])
    assert link.resends >= 1
    assert not [r for r in link.retry_log if r["cause"].startswith("no reply within")], link.retry_log


def test_retries_are_bounded_and_raise_transport_error(kws_fw, kws_tflm, caplog):
    x = random_int8_inputs(kws_tflm.input.shape[1:], 1, seed=1)[0]
    lose_all_runs = {("to_device", n): lose for n in range(1, 20)}
    with running(kws_fw) as fw, FaultProxy(fw.url, lose_all_runs) as proxy:
        with Link.open(proxy.url, timeout=0.3, invoke_timeout=0.3, retries=2) as link:
            started = time.monotonic()
            with pytest.raises(TransportError, match=r"no valid reply to RUN \(seq 1\) after 3 attempts"):
                link.infer(x)
            assert time.monotonic() - started < 3
    assert sum("re-send" in r.getMessage() for r in caplog.records) == 2


def test_killed_firmware_gives_transport_error_and_no_orphan(kws_fw, kws_tflm):
    xs = random_int8_inputs(kws_tflm.input.shape[1:], 2, seed=2)
    fw = HostFirmware(kws_fw, accept_timeout=20)
    with fw, Link.open(fw.url, **FAST) as link:
        link.infer(xs[0])
        os.kill(fw.pid, signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(TransportError):
            link.infer(xs[1])
        assert time.monotonic() - started < 5
    assert fw.returncode == -signal.SIGKILL
    assert not Path(f"/proc/{fw.pid}").exists()


def test_a_device_that_lost_the_session_is_reported_not_retried(kws_fw, kws_tflm):
    x = random_int8_inputs(kws_tflm.input.shape[1:], 1, seed=4)[0]
    with running(kws_fw) as fw, Link.open(fw.url, **FAST) as link:
        link.port.write(p.encode_frame(p.MsgType.HELLO, 500))  # another session started on the device
        with pytest.raises(DeviceErrorReply, match="BAD_SEQUENCE.*reset") as err:
            link.infer(x)
        assert err.value.code == p.ErrorCode.BAD_SEQUENCE and link.resends == 0 and link.stale_frames == 1


def test_unreachable_port_is_a_transport_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(TransportError, match="cannot open"):
            Link.open(f"socket://127.0.0.1:{port}", timeout=0.5)


def test_firmware_is_stopped_when_the_harness_fails(kws_fw):
    fw = HostFirmware(kws_fw, accept_timeout=20)
    with pytest.raises(RuntimeError):
        with fw:
            assert fw.returncode is None
            raise RuntimeError("harness failed")
    assert fw.returncode is not None
    assert not Path(f"/proc/{fw.pid}").exists()


def test_nobody_connecting_ends_the_firmware(kws_fw):
    fw = HostFirmware(kws_fw, accept_timeout=0.3)
    with fw:
        assert fw.wait(timeout=10) == 2
    assert "no connection" in fw.stderr_text()


@pytest.mark.parametrize("name", ["arena.tflite", "interpreter.tflite", "error_text.tflite"])
def test_model_named_like_a_firmware_variable_still_builds(kws_model, name):
    """The model's C identifier comes from its file name; the firmware's own file-scope names must
    not collide with it (they are prefixed)."""
    exe = build_host_firmware(kws_model, name=name)
    assert exe.is_file()
