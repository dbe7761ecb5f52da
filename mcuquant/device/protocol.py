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

from cobs import cobs

from mcuquant.errors import TransportError

VERSION = 1
HEADER = struct.Struct("<BBHH")  # version, type, seq, body length
CRC = struct.Struct("<I")
OVERHEAD = HEADER.size + CRC.size
# The range of max_frame a device may announce (u16).
MIN_MAX_FRAME = 256
MAX_FRAME_LIMIT = 65535


def cobs_max_encoded(n: int) -> int:
    """Upper bound of the COBS encoding of n bytes (one code byte per 254, plus one)."""
    return n + n // 254 + 1


class MsgType(enum.IntEnum):
    HELLO = 0x01
    INPUT = 0x02
    INVOKE = 0x03
    READ_OUTPUT = 0x04
    ERROR = 0x7F
    HELLO_REPLY = 0x81
    INPUT_ACK = 0x82
    RESULT = 0x83
    OUTPUT_DATA = 0x84


REPLY_TO = {
    MsgType.HELLO: MsgType.HELLO_REPLY,
    MsgType.INPUT: MsgType.INPUT_ACK,
    MsgType.INVOKE: MsgType.RESULT,
    MsgType.READ_OUTPUT: MsgType.OUTPUT_DATA,
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

    ``read(timeout)`` returns the next frame, None when none completed in time, and raises
    FrameError for a frame it had to drop (the caller decides whether to retry). Bytes past a
    frame stay buffered for the next call. Oversized input is discarded up to the next delimiter
    without being stored.
    """

    POLL_SECONDS = 0.05

    def __init__(self, port, *, max_frame: int = MAX_FRAME_LIMIT):
        self.port = port
        self.max_frame = max_frame
        self._max_encoded = cobs_max_encoded(max_frame)
        self._buf = bytearray()
        self._overflow = False
        self._pending = bytearray()  # read from the port, not yet split

    def read(self, timeout: float) -> Frame | None:
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            frame = self._next_from_pending()
            if frame is not None:
                return frame
            remaining = deadline - time.monotonic()
            waiting = self.port.in_waiting
            if remaining <= 0 and not waiting:
                return None
            # Short polls, so a deadline is kept without reconfiguring the port on every read.
            poll = min(max(remaining, 0.0), self.POLL_SECONDS)
            if self.port.timeout != poll:
                self.port.timeout = poll
            self._pending += self.port.read(max(1, waiting))

    def _next_from_pending(self) -> Frame | None:
        while self._pending:
            end = self._pending.find(0)
            if end < 0:
                self._store(self._pending)
                self._pending.clear()
                return None
            self._store(self._pending[:end])
            del self._pending[: end + 1]
            encoded, overflow = bytes(self._buf), self._overflow
            self._buf.clear()
            self._overflow = False
            if overflow:
                raise FrameError(f"frame exceeds the maximum of {self.max_frame} bytes")
            if encoded:
                return decode_frame(encoded, max_frame=self.max_frame)
        return None

    def _store(self, data: bytes | bytearray) -> None:
        room = self._max_encoded - len(self._buf)
        if len(data) > room:
            self._overflow = True
            data = data[: max(room, 0)]
        self._buf += data


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

    @property
    def ready(self) -> bool:
        return self.backend_status == 0


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


_HELLO_FIXED = struct.Struct("<HBBBB32sII")
_SPEC_HEAD = struct.Struct("<BB")
_SPEC_TAIL = struct.Struct("<fiI")
_RESULT_FIXED = struct.Struct("<BBHIII")
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
                             bytes.fromhex(info.model_sha256), info.arena_used, info.arena_size)
    body += b"".join(_put_text(t) for t in (info.backend, info.counter_unit, info.firmware_version, info.error))
    for spec in (*info.inputs, *info.outputs):
        body += _SPEC_HEAD.pack(spec.tflite_type, len(spec.shape))
        body += struct.pack(f"<{len(spec.shape)}i", *spec.shape)
        body += _SPEC_TAIL.pack(spec.scale, spec.zero_point, spec.nbytes)
    return body


def parse_hello_reply(body: bytes, *, version: int = VERSION) -> DeviceInfo:
    r = _BodyReader("HELLO_REPLY", body)
    max_frame, status, n_in, n_out, _, sha, arena_used, arena_size = r.unpack(_HELLO_FIXED)
    backend, unit, fw_version, error = r.text(), r.text(), r.text(), r.text()
    specs = []
    for _ in range(n_in + n_out):
        tflite_type, ndims = r.unpack(_SPEC_HEAD)
        shape = struct.unpack(f"<{ndims}i", r.take(4 * ndims))
        scale, zero_point, nbytes = r.unpack(_SPEC_TAIL)
        specs.append(TensorSpec(TFLITE_DTYPES.get(tflite_type, f"tflite_type_{tflite_type}"), tuple(shape),
                                float(scale), zero_point, nbytes, tflite_type))
    r.done()
    if max_frame < MIN_MAX_FRAME:
        raise ProtocolError(f"HELLO_REPLY: max_frame {max_frame} is below the protocol's minimum of {MIN_MAX_FRAME}")
    return DeviceInfo(version, max_frame, status, sha.hex(), arena_used, arena_size, backend, unit, fw_version,
                      error, tuple(specs[:n_in]), tuple(specs[n_in:]))


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
    return _RESULT_FIXED.pack(result.status, 0, 0, result.counter_delta, result.inference, result.output_bytes) + tail


def parse_result(body: bytes) -> Result:
    r = _BodyReader("RESULT", body)
    status, _, _, delta, inference, total = r.unpack(_RESULT_FIXED)
    if status == 0:
        inline = r.take(len(body) - r.pos)
        if len(inline) > total:
            raise ProtocolError(f"RESULT: {len(inline)} inline output bytes but only {total} output bytes")
        return Result(status, delta, inference, total, inline, "")
    error = r.text()
    r.done()
    return Result(status, delta, inference, total, b"", error)


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
