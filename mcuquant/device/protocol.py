"""mcuquant serial protocol, host side: frames and messages as pure functions.

The wire format is specified in firmware/protocol/PROTOCOL.md; the device side is
firmware/protocol/mq_protocol.c and firmware/app/mq_server.c. Nothing here touches a port except
:class:`FrameReader`, which reads from any pyserial port object (``serial.serial_for_url``: a
UART, ``socket://`` for QEMU and the host-built firmware, ``loop://`` in tests).
"""

from __future__ import annotations

import enum
import struct
import time
import zlib
from dataclasses import dataclass

import numpy as np

from cobs import cobs

from mcuquant.errors import TransportError

VERSION = 3
HEADER = struct.Struct("<BBHH")  # version, type, seq, body length
CRC = struct.Struct("<I")
OVERHEAD = HEADER.size + CRC.size
# The range of max_frame a device may announce (u16).
MIN_MAX_FRAME = 256
MAX_FRAME_LIMIT = 65535
#: The largest window a device may announce (firmware MQ_PROTO_WINDOW).
MAX_WINDOW = 32
#: HELLO_REPLY rx_buffer of a flow-controlled link: no limit on the bytes in flight.
RX_UNLIMITED = 0xFFFFFFFF


def cobs_max_encoded(n: int) -> int:
    """Upper bound of the COBS encoding of n bytes (one code byte per 254, plus one)."""
    return n + n // 254 + 1


class MsgType(enum.IntEnum):
    HELLO = 0x01
    INPUT = 0x02
    INVOKE = 0x03
    READ_OUTPUT = 0x04
    RUN = 0x05
    ERROR = 0x7F
    HELLO_REPLY = 0x81
    INPUT_ACK = 0x82
    RESULT = 0x83
    OUTPUT_DATA = 0x84
    RUN_RESULT = 0x85
    BUSY = 0xFE


REPLY_TO = {
    MsgType.HELLO: MsgType.HELLO_REPLY,
    MsgType.INPUT: MsgType.INPUT_ACK,
    MsgType.INVOKE: MsgType.RESULT,
    MsgType.READ_OUTPUT: MsgType.OUTPUT_DATA,
    MsgType.RUN: MsgType.RUN_RESULT,
}


class ErrorCode(enum.IntEnum):
    BAD_CRC = 1
    BAD_FRAME = 2
    TOO_LARGE = 3
    BAD_VERSION = 4
    UNKNOWN_TYPE = 5
    BAD_SEQUENCE = 6
    BAD_REQUEST = 7
    NOT_READY = 8

    @property
    def frame_level(self) -> bool:
        """The device could not trust the header: the ERROR's seq means nothing."""
        return self in (ErrorCode.BAD_CRC, ErrorCode.BAD_FRAME, ErrorCode.TOO_LARGE)


class ProtocolError(TransportError):
    """Bytes from the device that do not follow the protocol."""


class FrameError(ProtocolError):
    """A frame that had to be dropped: invalid COBS, CRC mismatch, bad length, too large."""


# TFLite TensorType -> numpy dtype name.
TFLITE_DTYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16",
                 9: "int8", 10: "float64", 12: "uint64", 15: "uint32", 16: "uint16"}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Frames


@dataclass(frozen=True)
class Frame:
    version: int
    type: int
    seq: int
    body: bytes
    crc: int


def crc32(data: bytes) -> int:
    """CRC-32 of PROTOCOL.md: IEEE 802.3, exactly zlib.crc32."""
    return zlib.crc32(data) & 0xFFFFFFFF


def frame_bytes(msg_type: int, seq: int, body: bytes = b"", *, version: int = VERSION) -> bytes:
    """The decoded frame: header, body, CRC-32."""
    if not 0 <= seq <= 0xFFFF:
        raise ValueError(f"sequence number {seq} is not a u16")
    if len(body) > MAX_FRAME_LIMIT - OVERHEAD:
        raise ValueError(f"body of {len(body)} bytes exceeds the protocol's largest frame")
    head = HEADER.pack(version, msg_type, seq, len(body)) + bytes(body)
    return head + CRC.pack(crc32(head))


def encode_frame(msg_type: int, seq: int, body: bytes = b"", *, version: int = VERSION) -> bytes:
    """Wire bytes of one frame: 0x00, COBS(frame), 0x00."""
    return b"\x00" + cobs.encode(frame_bytes(msg_type, seq, body, version=version)) + b"\x00"


def decode_frame(encoded: bytes, *, max_frame: int = MAX_FRAME_LIMIT) -> Frame:
    """Decode the bytes between two delimiters; raises FrameError for anything to drop."""
    if len(encoded) > cobs_max_encoded(max_frame):
        raise FrameError(f"frame of {len(encoded)} encoded bytes exceeds the maximum of {max_frame} bytes")
    try:
        data = cobs.decode(bytes(encoded))
    except cobs.DecodeError as exc:
        raise FrameError(f"invalid COBS encoding: {exc}") from None
    if len(data) > max_frame:
        raise FrameError(f"frame of {len(data)} bytes exceeds the maximum of {max_frame}")
    if len(data) < OVERHEAD:
        raise FrameError(f"frame of {len(data)} bytes is shorter than header and CRC ({OVERHEAD})")
    (crc,) = CRC.unpack_from(data, len(data) - CRC.size)
    if crc32(data[: -CRC.size]) != crc:
        raise FrameError("CRC mismatch")
    version, msg_type, seq, length = HEADER.unpack_from(data)
    if length != len(data) - OVERHEAD:
        raise FrameError(f"length field {length} disagrees with the {len(data) - OVERHEAD}-byte body")
    return Frame(version, msg_type, seq, bytes(data[HEADER.size : -CRC.size]), crc)


class FrameReader:
    """Splits the byte stream of a pyserial port into frames (esptool's slip_reader, for COBS).

    ``read(timeout)`` returns the next frame, or None when none completed within ``timeout``
    seconds: a deadline that holds whatever arrives, noise included. It raises FrameError for a
    frame it had to drop (the caller decides whether to retry), and as soon as more bytes than
    the largest frame arrive without a delimiter (a flood, or a lost delimiter): the rest is then
    discarded up to the next delimiter without being stored. A frame whose closing delimiter was
    lost is still read once the line goes quiet (its CRC must check). Bytes past a frame stay
    buffered for the next call.
    """

    POLL_SECONDS = 0.05
    READ_CHUNK = 65536

    def __init__(self, port, *, max_frame: int = MAX_FRAME_LIMIT):
        self.port = port
        self.max_frame = max_frame
        self._max_encoded = cobs_max_encoded(max_frame)
        self._buf = bytearray()
        self._overflow = False  # more bytes than a frame since the last delimiter (already reported)
        self._pending = bytearray()  # read from the port, not yet split

    def read(self, timeout: float) -> Frame | None:
        deadline = time.monotonic() + max(timeout, 0.0)
        last_look = False  # past the deadline, bytes already waiting are read once (read(0) polls)
        while True:
            frame = self._next_from_pending()
            if frame is not None:
                return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if last_look or not self.port.in_waiting:
                    return None
                last_look = True
            # Wait a short poll for one byte, then take whatever else is there in one non-blocking
            # read: pyserial's socket:// reports 1 for in_waiting, so sizing reads by it would move
            # a byte per call, and noise would outrun the reader.
            data = self._read(min(max(remaining, 0.0), self.POLL_SECONDS), 1)
            if data:
                data += self._read(0, self.READ_CHUNK)
            if data:
                self._pending += data
            elif self._buf and not self._overflow:
                frame = self._quiet_frame()
                if frame is not None:
                    return frame

    def set_max_frame(self, max_frame: int) -> None:
        """The device's announced maximum: more bytes than that without a delimiter is noise."""
        self.max_frame = max_frame
        self._max_encoded = cobs_max_encoded(max_frame)

    def _read(self, timeout: float, size: int) -> bytes:
        if self.port.timeout != timeout:
            self.port.timeout = timeout
        return self.port.read(size)

    def _quiet_frame(self) -> Frame | None:
        """The buffered bytes as a frame whose closing delimiter was lost, if they are one."""
        try:
            frame = decode_frame(bytes(self._buf), max_frame=self.max_frame)
        except FrameError:
            return None  # a frame still arriving, or garbage the next delimiter closes off
        self._buf.clear()
        return frame

    def _next_from_pending(self) -> Frame | None:
        while self._pending:
            end = self._pending.find(0)
            chunk = self._pending if end < 0 else self._pending[:end]
            newly_overflowed = self._store(chunk)
            if end < 0:
                self._pending = bytearray()
            else:
                del self._pending[: end + 1]
            if newly_overflowed:
                if end >= 0:  # the delimiter that ended the overlong run starts the next frame afresh
                    self._buf.clear()
                    self._overflow = False
                raise FrameError(f"more than {self._max_encoded} bytes without a frame delimiter (noise, or a lost "
                                 "delimiter)")
            if end < 0:
                return None
            encoded, overflow = bytes(self._buf), self._overflow
            self._buf.clear()
            self._overflow = False
            if encoded and not overflow:
                return decode_frame(encoded, max_frame=self.max_frame)
        return None

    def _store(self, data: bytes | bytearray) -> bool:
        """Buffer ``data`` of the frame being received; True when this makes it overflow."""
        if self._overflow:
            return False
        room = self._max_encoded - len(self._buf)
        if len(data) > room:
            self._overflow = True
            self._buf.clear()
            return True
        self._buf += data
        return False


# ---------------------------------------------------------------------------------------------
# Message bodies


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor as the device reports it."""

    dtype: str  # numpy dtype name, e.g. "int8"
    shape: tuple[int, ...]
    scale: float
    zero_point: int
    nbytes: int
    tflite_type: int

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape without a leading batch axis of 1 (what Runner.invoke returns)."""
        return self.shape[1:] if self.shape[:1] == (1,) else self.shape


@dataclass(frozen=True)
class DeviceInfo:
    """What the device says about itself in HELLO_REPLY."""

    protocol_version: int
    max_frame: int
    backend_status: int  # 0: the model is loaded and ready
    model_sha256: str  # hex
    arena_used: int
    arena_size: int
    backend: str
    counter_unit: str
    firmware_version: str
    error: str  # why the backend is not ready ("" when it is)
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    busy_ms: int = 0  # BUSY keep-alive interval during an inference (device ms); 0: the device sends none
    window: int = 1  # requests the host may have in flight (the device caches that many replies)
    rx_buffer: int = RX_UNLIMITED  # bytes the link holds while the device is busy (RX_UNLIMITED: flow control)

    @property
    def ready(self) -> bool:
        return self.backend_status == 0

    @classmethod
    def from_dict(cls, d: dict) -> DeviceInfo:
        """The inverse of ``dataclasses.asdict`` (as a journal stores the handshake)."""
        specs = {k: tuple(TensorSpec(**{**spec, "shape": tuple(spec["shape"])}) for spec in d[k])
                 for k in ("inputs", "outputs")}
        return cls(**{**d, **specs})


@dataclass(frozen=True)
class Result:
    """RESULT: status (0 ok), counter delta, inference number, total output bytes, inline output
    bytes or error text."""

    status: int
    counter_delta: int
    inference: int
    output_bytes: int
    inline: bytes
    error: str


_HELLO_FIXED = struct.Struct("<HBBBB32sIIHBBI")
_SPEC_HEAD = struct.Struct("<BB")
_SPEC_TAIL = struct.Struct("<fiI")
RESULT_HEAD = struct.Struct("<BBHIII")
_OFFSET = struct.Struct("<I")
_OFFSET_LEN16 = struct.Struct("<IH")
_OFFSET_LEN32 = struct.Struct("<II")


class _BodyReader:
    def __init__(self, what: str, body: bytes):
        self.what, self.body, self.pos = what, body, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.body):
            raise ProtocolError(f"{self.what}: body of {len(self.body)} bytes ends early (needed {self.pos + n})")
        out = self.body[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, st: struct.Struct) -> tuple:
        return st.unpack(self.take(st.size))

    def text(self) -> str:
        (n,) = self.take(1)
        return self.take(n).decode("utf-8", "replace")

    def done(self) -> None:
        if self.pos != len(self.body):
            raise ProtocolError(f"{self.what}: {len(self.body) - self.pos} unexpected bytes at the end")


def _put_text(text: str) -> bytes:
    data = text.encode("utf-8")[:255]
    return bytes([len(data)]) + data


def encode_hello_reply(info: DeviceInfo) -> bytes:
    body = _HELLO_FIXED.pack(info.max_frame, info.backend_status, len(info.inputs), len(info.outputs), 0,
                             bytes.fromhex(info.model_sha256), info.arena_used, info.arena_size, info.busy_ms,
                             info.window, 0, info.rx_buffer)
    body += b"".join(_put_text(t) for t in (info.backend, info.counter_unit, info.firmware_version, info.error))
    for spec in (*info.inputs, *info.outputs):
        body += _SPEC_HEAD.pack(spec.tflite_type, len(spec.shape))
        body += struct.pack(f"<{len(spec.shape)}i", *spec.shape)
        body += _SPEC_TAIL.pack(spec.scale, spec.zero_point, spec.nbytes)
    return body


def parse_hello_reply(body: bytes, *, version: int = VERSION) -> DeviceInfo:
    """The handshake, cross-checked: ProtocolError names the field that contradicts another."""
    r = _BodyReader("HELLO_REPLY", body)
    (max_frame, status, n_in, n_out, _, sha, arena_used, arena_size, busy_ms, window, _,
     rx_buffer) = r.unpack(_HELLO_FIXED)
    backend, unit, fw_version, error = r.text(), r.text(), r.text(), r.text()
    specs = []
    for _ in range(n_in + n_out):
        tflite_type, ndims = r.unpack(_SPEC_HEAD)
        shape = struct.unpack(f"<{ndims}i", r.take(4 * ndims))
        scale, zero_point, nbytes = r.unpack(_SPEC_TAIL)
        specs.append(TensorSpec(TFLITE_DTYPES.get(tflite_type, f"tflite_type_{tflite_type}"), tuple(shape),
                                float(scale), zero_point, nbytes, tflite_type))
    r.done()
    info = DeviceInfo(version, max_frame, status, sha.hex(), arena_used, arena_size, backend, unit, fw_version,
                      error, tuple(specs[:n_in]), tuple(specs[n_in:]), busy_ms, window, rx_buffer)
    check_hello(info)
    return info


def check_hello(info: DeviceInfo) -> None:
    """Every figure of a handshake against the others and the protocol's limits."""
    def bad(field: str, why: str):
        raise ProtocolError(f"HELLO_REPLY field {field}: {why}")

    if info.max_frame < MIN_MAX_FRAME:
        bad("max_frame", f"{info.max_frame} is below the protocol's minimum of {MIN_MAX_FRAME}")
    if not 1 <= info.window <= MAX_WINDOW:
        bad("window", f"{info.window} is outside 1..{MAX_WINDOW}")
    if not info.ready:  # arena_used may then be what the model would need
        if info.inputs or info.outputs:
            bad("backend_status", f"{info.backend_status} (not ready) but {len(info.inputs)} inputs and "
                                  f"{len(info.outputs)} outputs listed")
        return
    if info.arena_size and info.arena_used > info.arena_size:
        bad("arena_used", f"{info.arena_used} bytes used of an arena of {info.arena_size}")
    if not info.inputs or not info.outputs:
        bad("n_inputs" if not info.inputs else "n_outputs", "a ready backend lists at least one input and one output")
    for kind, specs in (("input", info.inputs), ("output", info.outputs)):
        for i, spec in enumerate(specs):
            where = f"{kind} {i}"
            if spec.tflite_type not in TFLITE_DTYPES:
                bad(f"{where} dtype", f"TFLite type {spec.tflite_type} is not one this host knows")
            if any(d <= 0 for d in spec.shape):
                bad(f"{where} shape", f"{spec.shape} has a dimension below 1")
            expected = int(np.prod(spec.shape, dtype=np.int64)) * np.dtype(spec.dtype).itemsize
            if spec.nbytes != expected:
                bad(f"{where} bytes", f"{spec.nbytes} contradicts its shape {spec.shape} of {spec.dtype} "
                                      f"({expected} bytes)")
            if spec.scale < 0 or spec.scale != spec.scale:
                bad(f"{where} scale", f"{spec.scale} is not a quantization scale")


def encode_input(offset: int, data: bytes) -> bytes:
    return _OFFSET.pack(offset) + bytes(data)


def parse_input(body: bytes) -> tuple[int, bytes]:
    (offset,) = _BodyReader("INPUT", body).unpack(_OFFSET)
    return offset, body[_OFFSET.size :]


def encode_input_ack(offset: int, length: int) -> bytes:
    return _OFFSET_LEN32.pack(offset, length)


def parse_input_ack(body: bytes) -> tuple[int, int]:
    r = _BodyReader("INPUT_ACK", body)
    offset, length = r.unpack(_OFFSET_LEN32)
    r.done()
    return offset, length


def encode_result(result: Result) -> bytes:
    tail = result.inline if result.status == 0 else _put_text(result.error)
    return RESULT_HEAD.pack(result.status, 0, 0, result.counter_delta, result.inference, result.output_bytes) + tail


def parse_result(body: bytes) -> Result:
    r = _BodyReader("RESULT", body)
    status, _, _, delta, inference, total = r.unpack(RESULT_HEAD)
    if status == 0:
        inline = r.take(len(body) - r.pos)
        if len(inline) > total:
            raise ProtocolError(f"RESULT: {len(inline)} inline output bytes but only {total} output bytes")
        return Result(status, delta, inference, total, inline, "")
    error = r.text()
    r.done()
    return Result(status, delta, inference, total, b"", error)


def parse_busy(body: bytes) -> tuple[int, int]:
    """BUSY: (milliseconds since the inference started, operators done), device clock."""
    r = _BodyReader("BUSY", body)
    elapsed, ops = r.unpack(_OFFSET_LEN32)
    r.done()
    return elapsed, ops


def encode_busy(elapsed_ms: int, ops: int) -> bytes:
    return _OFFSET_LEN32.pack(elapsed_ms, ops)


def encode_read_output(offset: int, length: int) -> bytes:
    return _OFFSET_LEN16.pack(offset, length)


def encode_output_data(offset: int, data: bytes) -> bytes:
    return _OFFSET.pack(offset) + bytes(data)


def parse_output_data(body: bytes) -> tuple[int, bytes]:
    (offset,) = _BodyReader("OUTPUT_DATA", body).unpack(_OFFSET)
    return offset, body[_OFFSET.size :]


def encode_error(code: int, text: str = "") -> bytes:
    return bytes([code]) + text.encode("utf-8")


def parse_error(body: bytes) -> tuple[ErrorCode | int, str]:
    """(code, text); a code this host does not know stays an int."""
    if not body:
        raise ProtocolError("ERROR: empty body")
    try:
        code: ErrorCode | int = ErrorCode(body[0])
    except ValueError:
        code = body[0]
    return code, body[1:].decode("utf-8", "replace")
