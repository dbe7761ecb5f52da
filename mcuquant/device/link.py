"""A link to a device running mcuquant's firmware, over any pyserial URL.

    with Link.open("socket://127.0.0.1:4321", expected_sha256=sha) as link:
        print(link.info.backend, link.info.counter_unit)
        y, count = link.infer(x)          # one sample, without batch axis; count in link.info.counter_unit
        for y, count in link.infer_stream(xs):   # many samples, pipelined within the device's window
            ...

A serial port (``/dev/ttyACM0``), QEMU's UART (``socket://`` to ``-serial tcp:``) and the host-built
firmware (mcuquant.device.hostfw) are all reached the same way. The protocol is
firmware/protocol/PROTOCOL.md: requests stream with up to the device's window in flight; what is
in flight without a reply is re-sent with the same sequence numbers on a timeout or a damaged
exchange (the device answers a repeat from its reply cache, so nothing runs or counts twice);
what the device reports as an error is raised as a typed exception.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import serial

from mcuquant.device import protocol as p
from mcuquant.errors import DeviceMismatchError, ModelError, TransportError

log = logging.getLogger("mcuquant.device")


class DeviceErrorReply(TransportError):
    """The device refused a request (ERROR frame): ``code`` (protocol.ErrorCode) and ``text``."""

    def __init__(self, message: str, code: int, text: str):
        super().__init__(message)
        self.code, self.text = code, text


class DeviceNotReadyError(ModelError):
    """The firmware's backend could not load or run the model; ``info`` is the handshake (or None)."""

    def __init__(self, message: str, info: p.DeviceInfo | None = None):
        super().__init__(message)
        self.info = info


class Link:
    """Request/reply exchanges with one device over an open pyserial port.

    ``timeout``: seconds of silence after which a request is re-sent (also during an inference,
    when the device sends BUSY keep-alives; else ``invoke_timeout``); ``retries``: re-sends of one
    request before giving up with TransportError; ``handshake_timeout``: the same for HELLO
    (default max(timeout, 5 s): a device may still be booting); ``window``: at most this many
    requests in flight (default: the device's window). See ``_stream`` for the deadlines.
    """

    def __init__(self, port, *, expected_sha256: str | None = None, timeout: float = 1.0,
                 invoke_timeout: float = 30.0, retries: int = 3, name: str | None = None,
                 handshake_timeout: float | None = None, window: int | None = None):
        if retries < 0 or timeout <= 0 or invoke_timeout <= 0 or (handshake_timeout or 1) <= 0:
            raise ValueError("timeouts must be positive and retries non-negative")
        if window is not None and window < 1:
            raise ValueError("window must be at least 1")
        self.max_window = window
        # A device may still be booting when the link opens: HELLO waits longer than a reply.
        self.handshake_timeout = max(timeout, 5.0) if handshake_timeout is None else handshake_timeout
        self.port = port
        self.name = name or getattr(port, "portstr", None) or "device"
        self.expected_sha256 = expected_sha256.lower() if expected_sha256 else None
        self.timeout, self.invoke_timeout, self.retries = timeout, invoke_timeout, retries
        self.info: p.DeviceInfo | None = None
        self._reader = p.FrameReader(port)
        self._seq = 0
        # What went wrong on the way and was recovered from (for reports and tests).
        self.resends = 0
        self.bad_frames = 0
        self.stale_frames = 0
        self.busy_frames = 0  # keep-alives received during inferences
        self.retry_log: list[dict] = []  # every re-send: request, attempt, cause
        # The device's number of the last inference (1, 2, ... since it started).
        self.last_inference: int | None = None

    # -- opening and closing ------------------------------------------------------------------

    @classmethod
    def open(cls, url: str, *, expected_sha256: str | None = None, timeout: float = 1.0,
             invoke_timeout: float = 30.0, retries: int = 3, baudrate: int = 115200,
             handshake: bool = True, handshake_timeout: float | None = None) -> Link:
        """Open ``url`` (any pyserial URL or device path) and, by default, shake hands."""
        try:
            port = serial.serial_for_url(url, baudrate=baudrate, timeout=timeout, write_timeout=timeout)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise TransportError(f"cannot open {url}: {exc}") from exc
        link = cls(port, expected_sha256=expected_sha256, timeout=timeout, invoke_timeout=invoke_timeout,
                   retries=retries, name=url, handshake_timeout=handshake_timeout)
        if handshake:
            try:
                link.handshake()
            except BaseException:
                link.close()
                raise
        return link

    def close(self) -> None:
        # pyserial's socket:// skips closing its socket when shutdown() fails, as it does once the
        # peer is gone (a killed emulator): close it here so no descriptor leaks.
        sock = getattr(self.port, "_socket", None)
        try:
            self.port.close()
        except (serial.SerialException, OSError):
            pass
        if sock is not None and sock.fileno() != -1:
            sock.close()

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- requests -----------------------------------------------------------------------------

    def handshake(self) -> p.DeviceInfo:
        """HELLO: read what the device runs; refuse a different model or a backend that failed."""
        frame = self._exchange(p.MsgType.HELLO, b"", timeout=self.handshake_timeout)
        try:
            info = p.parse_hello_reply(frame.body, version=frame.version)
        except p.ProtocolError as exc:
            raise p.ProtocolError(f"{self.name}: {exc}: the firmware contradicts itself; rebuild and flash it with "
                                  "this mcuquant") from None
        self.info = info
        self._reader.set_max_frame(info.max_frame)
        if self.expected_sha256 and info.model_sha256 != self.expected_sha256:
            raise DeviceMismatchError(
                f"{self.name} runs the model with SHA-256 {info.model_sha256}, not the one being evaluated "
                f"({self.expected_sha256}): build and flash the firmware for this model")
        if not info.ready:
            raise DeviceNotReadyError(
                f"{self.name}: the {info.backend or '?'} backend could not load the model "
                f"(status {info.backend_status}): {info.error or 'no details'}", info)
        log.debug("%s: %s backend, model %s, arena %d/%d bytes, max frame %d, counter %r", self.name,
                  info.backend, info.model_sha256[:12], info.arena_used, info.arena_size, info.max_frame,
                  info.counter_unit)
        return info

    def infer(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        """Run one sample on a single-input, single-output model: (output, counter delta)."""
        outputs, delta = self.infer_all([self._single(x)])
        return outputs[0], delta

    def infer_all(self, inputs: Sequence[np.ndarray]) -> tuple[list[np.ndarray], int]:
        """Send every input, run one inference, read every output.

        Returns the outputs (shaped as the device reports them, without a leading batch axis of
        1) and the device counter's delta for the inference (unit: ``info.counter_unit``).
        """
        return next(self.infer_many([inputs]))

    def infer_stream(self, samples: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, int]]:
        """``infer`` for every sample of ``samples``, pipelined: (output, counter delta) in order."""
        for outputs, delta in self.infer_many([self._single(x)] for x in samples):
            yield outputs[0], delta

    def infer_many(self, samples: Iterable[Sequence[np.ndarray]]) -> Iterator[tuple[list[np.ndarray], int]]:
        """``infer_all`` for each item of ``samples`` (a list of inputs per sample), pipelined:
        yields (outputs, counter delta) per sample, in order.

        Each sample is its input's chunks (INPUT, the last one as RUN) and, for outputs larger than
        RUN_RESULT holds, READ_OUTPUT requests; they stream with up to the device's window in
        flight (PROTOCOL.md), so the next samples travel while the device computes.
        """
        info = self._ready_info()
        chunk = info.max_frame - p.OVERHEAD - 4
        out_total = sum(spec.nbytes for spec in info.outputs)
        inline = min(out_total, info.max_frame - p.OVERHEAD - p.RESULT_HEAD.size)

        def requests():
            for inputs in samples:
                if len(inputs) != len(info.inputs):
                    raise ValueError(f"the model takes {len(info.inputs)} inputs, got {len(inputs)}")
                data = b"".join(_tensor_bytes(x, spec, i) for i, (x, spec) in enumerate(zip(inputs, info.inputs)))
                offsets = list(range(0, len(data), chunk))
                for offset in offsets[:-1]:
                    yield p.MsgType.INPUT, p.encode_input(offset, data[offset : offset + chunk]), False, \
                        ("input", offset, min(chunk, len(data) - offset))
                yield p.MsgType.RUN, p.encode_input(offsets[-1], data[offsets[-1]:]), True, ("run",)
                for offset in range(inline, out_total, chunk):
                    want = min(chunk, out_total - offset)
                    yield p.MsgType.READ_OUTPUT, p.encode_read_output(offset, want), False, ("read", offset, want)

        out, result = bytearray(), None
        for tag, frame in self._stream(requests()):
            if tag[0] == "input":
                if p.parse_input_ack(frame.body) != tag[1:]:
                    raise p.ProtocolError(f"{self.name}: INPUT_ACK {p.parse_input_ack(frame.body)} does not "
                                          f"acknowledge offset {tag[1]}, {tag[2]} bytes")
                continue
            if tag[0] == "run":
                result = self._check_result(p.parse_result(frame.body), out_total, inline)
                out = bytearray(result.inline)
            else:
                offset, piece = p.parse_output_data(frame.body)
                if offset != tag[1] or len(piece) != tag[2]:
                    raise p.ProtocolError(f"{self.name}: OUTPUT_DATA at {offset} with {len(piece)} bytes, asked for "
                                          f"{tag[2]} at {tag[1]}")
                out += piece
            if len(out) == out_total:
                yield self._outputs(bytes(out)), result.counter_delta

    def _single(self, x) -> list:
        info = self._ready_info()
        if len(info.inputs) != 1 or len(info.outputs) != 1:
            raise ValueError(f"the device's model has {len(info.inputs)} inputs and {len(info.outputs)} outputs; "
                             "use infer_all")
        return [x]

    def _check_result(self, result: p.Result, out_total: int, inline: int) -> p.Result:
        if self.last_inference is not None and result.inference != (self.last_inference + 1) & 0xFFFFFFFF:
            raise p.ProtocolError(f"{self.name}: RESULT field inference is {result.inference} after "
                                  f"{self.last_inference}: the device was reset or ran an inference twice")
        self.last_inference = result.inference
        if result.status != 0:
            raise DeviceNotReadyError(f"{self.name}: inference failed on the device (status {result.status}): "
                                      f"{result.error or 'no details'}", self.info)
        if result.output_bytes != out_total:
            raise p.ProtocolError(f"{self.name}: RESULT announces {result.output_bytes} output bytes, the handshake "
                                  f"{out_total}")
        if len(result.inline) != inline:
            raise p.ProtocolError(f"{self.name}: RESULT carries {len(result.inline)} output bytes inline, a frame of "
                                  f"{self.info.max_frame} bytes holds {inline}")
        return result

    def _outputs(self, data: bytes) -> list[np.ndarray]:
        outputs, pos = [], 0
        for spec in self.info.outputs:
            arr = np.frombuffer(data[pos : pos + spec.nbytes], dtype=np.dtype(spec.dtype).newbyteorder("<"))
            outputs.append(arr.astype(np.dtype(spec.dtype)).reshape(spec.sample_shape))
            pos += spec.nbytes
        return outputs

    # -- exchanges ----------------------------------------------------------------------------

    def _ready_info(self) -> p.DeviceInfo:
        if self.info is None:
            raise TransportError(f"{self.name}: no handshake yet (call handshake() first)")
        if not self.info.ready:
            raise DeviceNotReadyError(f"{self.name}: the backend is not ready: {self.info.error}", self.info)
        return self.info

    def _send(self, wire: bytes, what: str) -> None:
        try:
            self.port.write(wire)
            self.port.flush()
        except (serial.SerialException, OSError) as exc:
            raise TransportError(f"{self.name}: sending {what} failed: {exc}") from exc

    def _exchange(self, msg_type: p.MsgType, body: bytes, *, timeout: float | None = None,
                  inference: bool = False) -> p.Frame:
        """Send one request alone and return its reply (see ``_stream`` for the deadlines)."""
        ((_, frame),) = list(self._stream([(msg_type, body, inference, None)], timeout=timeout, window=1))
        return frame

    def _stream(self, requests: Iterable[tuple], *, timeout: float | None = None,
                window: int | None = None) -> Iterator[tuple[object, p.Frame]]:
        """Send ``requests`` ((type, body, inference, tag) each) in order and yield (tag, reply) in
        the same order, with up to the device's window in flight and, beyond the request being
        executed, no more encoded bytes in flight than the device's rx_buffer.

        Deadlines that hold whatever arrives: a request gets a sequence number when it is sent; the
        requests in flight without a reply are re-sent (same seq: the device answers a re-send from
        its reply cache) when the line stays quiet for the reply timeout (at most ``retries`` times
        for the oldest), and after a corrupted frame, a frame-level ERROR, a BAD_SEQUENCE for a
        later request (one before it was lost) or a later request's reply (the oldest's was lost),
        at most once per hundredth of the reply timeout: corruption alone never exhausts the
        retries, and a flood cannot make the host spam the device. The oldest request fails the
        stream when its last quiet re-send stays unanswered for the reply timeout, and in any case
        ``timeout * (retries + 1)`` seconds (plus ``invoke_timeout`` for an inference) after it
        became the oldest. During an inference the device's BUSY frames prove it is computing, so
        silence means a lost frame after ``timeout``; a device that sends no BUSY frames
        (busy_ms 0) may be silent for up to ``invoke_timeout``.
        """
        info = self.info
        window = window or min(info.window if info else 1, self.max_window or p.MAX_WINDOW)
        rx_budget = info.rx_buffer if info else p.RX_UNLIMITED
        max_frame = info.max_frame if info else p.MAX_FRAME_LIMIT
        base = self.timeout if timeout is None else timeout
        pending: deque[_Request] = deque()  # sent, no reply used yet; oldest first
        early: dict[int, p.Frame] = {}  # replies to later requests that came before the oldest's
        source = iter(requests)
        queued = None  # the next request, not sent yet (no seq yet: seqs follow what was sent)

        def fill() -> None:
            nonlocal queued
            while True:
                if queued is None:
                    item = next(source, None)
                    if item is None:
                        return
                    msg_type, body, inference, tag = item
                    if p.OVERHEAD + len(body) > max_frame:
                        raise ValueError(f"{msg_type.name}: a {p.OVERHEAD + len(body)}-byte frame exceeds the "
                                         f"device's maximum of {max_frame}")
                    queued = (msg_type, body, inference, tag, p.cobs_max_encoded(p.OVERHEAD + len(body)) + 2)
                # Beyond the oldest (which the device may be executing), what waits in its receive buffer.
                if pending and (len(pending) >= window or
                                sum(r.size for r in pending) - pending[0].size + queued[4] > rx_budget):
                    return
                msg_type, body, inference, tag, size = queued
                seq, self._seq = self._seq, (self._seq + 1) & 0xFFFF
                request = _Request(seq, msg_type, p.encode_frame(msg_type, seq, body), inference, tag, size,
                                   f"{msg_type.name} (seq {seq})")
                self._send(request.wire, request.what)
                pending.append(request)
                queued = None

        fill()
        while pending:
            head = pending[0]
            frame = early.pop(head.seq, None)
            if frame is not None:  # kept while an earlier reply was missing: checked now, in its turn
                self._match(frame, head.seq, p.REPLY_TO[head.type], head.what)
            else:
                frame = self._await_oldest(pending, early, base, max_frame)
            pending.popleft()
            fill()
            yield head.tag, frame

    def _await_oldest(self, pending: deque, early: dict, base: float, max_frame: int) -> p.Frame:
        """Read until the reply to ``pending[0]`` comes, re-sending what is in flight without a reply
        as ``_stream`` says; replies to later requests are kept in ``early``."""
        head = pending[0]
        in_flight = sum(len(r.wire) for r in pending)
        silence = base + self._wire_seconds(in_flight + 2 * max_frame)
        computing = any(r.inference for r in pending)
        if computing and not (self.info and self.info.busy_ms):
            silence = max(silence, self.invoke_timeout)
        started = time.monotonic()
        give_up = started + silence * (self.retries + 1) + (self.invoke_timeout if head.inference else 0.0)
        seqs = {r.seq for r in pending}

        attempts = 1  # times the oldest was sent
        quiet_resends = 0  # re-sends after silence: at most `retries`
        min_gap = min(silence / 100, 0.01)  # re-sends after corruption: at most one per min_gap
        problem: tuple[str, BaseException | None] | None = None  # why the next re-send happens
        last_send = started
        quiet_until = started + silence
        corrupt_resend_at = None  # a re-send after corruption, held back to keep min_gap

        def corrupted(cause: str, exc: BaseException | None = None) -> None:
            """A damaged or telling frame: a re-send of what is missing, at most one per min_gap."""
            nonlocal problem, corrupt_resend_at
            problem = problem or (cause, exc)
            if corrupt_resend_at is None:
                corrupt_resend_at = last_send + min_gap

        while True:
            now = time.monotonic()
            if now >= give_up or (now >= quiet_until and quiet_resends >= self.retries):
                cause = problem[0] if problem else f"no reply within {silence:.3g} s"
                raise TransportError(f"{self.name}: no valid reply to {head.what} after {attempts} attempts in "
                                     f"{now - started:.1f} s; last cause: {cause}") from (problem[1] if problem else None)
            after_corruption = corrupt_resend_at is not None and now >= corrupt_resend_at
            if after_corruption or now >= quiet_until:
                if not after_corruption:
                    quiet_resends += 1
                problem = problem or (f"no reply within {silence:.3g} s", None)
                missing = [r for r in pending if r.seq not in early]
                log.warning("%s: re-send %d of %s%s: %s", self.name, attempts, head.what,
                            f" and {len(missing) - 1} more in flight" if len(missing) > 1 else "", problem[0])
                self.retry_log.append({"request": head.what, "attempt": attempts, "cause": problem[0],
                                       **({"frames": len(missing)} if len(missing) > 1 else {})})
                self.resends += 1
                attempts += 1
                problem, corrupt_resend_at = None, None
                for r in missing:
                    self._send(r.wire, r.what)
                last_send = time.monotonic()
                quiet_until = last_send + silence
                continue

            wake = min(quiet_until, give_up, corrupt_resend_at or give_up)
            try:
                frame = self._reader.read(wake - now)
            except p.FrameError as exc:
                self.bad_frames += 1
                corrupted(f"corrupted frame from the device ({exc})", exc)
                continue
            except (serial.SerialException, OSError) as exc:
                raise TransportError(f"{self.name}: link failed while waiting for the reply to {head.what}: "
                                     f"{exc}") from exc
            if frame is None:
                continue  # quiet: handled above
            if frame.type == p.MsgType.BUSY:
                if frame.seq in seqs:  # the device is computing a request in flight
                    self.busy_frames += 1
                    quiet_until = time.monotonic() + silence
                continue
            if _frame_level_error(frame):
                corrupted(f"the device reported {p.parse_error(frame.body)[0].name}")
                continue
            if frame.seq == head.seq:
                if self._match(frame, head.seq, p.REPLY_TO[head.type], head.what):
                    return frame
                continue
            if frame.seq in seqs and frame.seq not in early:
                if frame.type == p.MsgType.ERROR and p.parse_error(frame.body)[0] == p.ErrorCode.BAD_SEQUENCE:
                    corrupted(f"the device skipped seq {frame.seq}: a request before it was lost")
                else:  # a later request was answered: the oldest's reply was lost on the way
                    early[frame.seq] = frame
                    corrupted(f"the reply to {head.what} was lost (seq {frame.seq} answered)")
                continue
            self.stale_frames += 1
            log.debug("%s: dropped a stale %s (seq %d) while waiting for %s", self.name,
                      _type_name(frame.type), frame.seq, head.what)

    def _wire_seconds(self, n_bytes: int) -> float:
        """Time to move n bytes over a real UART at its baud rate (10 bits a byte); 0 for sockets."""
        if isinstance(self.port, serial.Serial) and getattr(self.port, "baudrate", 0):
            return 10.0 * n_bytes / self.port.baudrate
        return 0.0

    def _match(self, frame: p.Frame, seq: int, expect: p.MsgType, what: str) -> bool:
        """True for the reply to this request, False for frames to skip (stale replies, frame-level
        ERRORs); raises what the device reported about this request."""
        if frame.type == p.MsgType.ERROR:
            code, text = p.parse_error(frame.body)
            if code in _FRAME_LEVEL:
                return False
            if frame.seq != seq:
                self.stale_frames += 1
                return False
            name = code.name if isinstance(code, p.ErrorCode) else f"code {code}"
            if code == p.ErrorCode.BAD_VERSION:
                raise DeviceMismatchError(f"{self.name} speaks protocol version {frame.version} ({text}); this "
                                          f"mcuquant speaks {p.VERSION}: rebuild the firmware with this mcuquant")
            if code == p.ErrorCode.NOT_READY:
                raise DeviceNotReadyError(f"{self.name}: the backend is not ready: {text}", self.info)
            hint = " (was the device reset? open the link again)" if code == p.ErrorCode.BAD_SEQUENCE else ""
            raise DeviceErrorReply(f"{self.name} refused {what}: {name}: {text}{hint}", int(code), text)
        if frame.seq != seq:
            self.stale_frames += 1
            log.debug("%s: dropped a stale %s (seq %d) while waiting for %s", self.name,
                      _type_name(frame.type), frame.seq, what)
            return False
        if frame.version != p.VERSION:
            raise DeviceMismatchError(f"{self.name} speaks protocol version {frame.version}, this mcuquant "
                                      f"speaks {p.VERSION}")
        if frame.type != expect:
            raise p.ProtocolError(f"{self.name}: expected {expect.name} for {what}, got {_type_name(frame.type)}")
        return True


_FRAME_LEVEL = frozenset(c for c in p.ErrorCode if c.frame_level)


@dataclass
class _Request:
    """A request on the wire, waiting for its reply."""

    seq: int
    type: p.MsgType
    wire: bytes
    inference: bool  # RUN or INVOKE: the device computes before it answers
    tag: object  # the caller's note of what the reply answers
    size: int  # the most wire bytes a frame of its body can take (what the rx_buffer budget counts)
    what: str  # for messages: "RUN (seq 12)"


def _frame_level_error(frame: p.Frame) -> bool:
    """An ERROR about a frame the device could not read (maybe this request): worth a re-send."""
    return frame.type == p.MsgType.ERROR and p.parse_error(frame.body)[0] in _FRAME_LEVEL


def _type_name(msg_type: int) -> str:
    try:
        return p.MsgType(msg_type).name
    except ValueError:
        return f"type 0x{msg_type:02x}"


def _tensor_bytes(x, spec: p.TensorSpec, index: int) -> bytes:
    """The input's bytes in the device's dtype; integers must fit it (no silent wrap-around)."""
    arr = np.asarray(x)
    dtype = np.dtype(spec.dtype)
    if arr.size * dtype.itemsize != spec.nbytes:
        raise ValueError(f"input {index}: {arr.size} values of shape {arr.shape}, the device expects shape "
                         f"{spec.shape} ({spec.nbytes // dtype.itemsize} values)")
    if arr.dtype != dtype:
        if dtype.kind in "iu" and arr.dtype.kind in "iu":
            info = np.iinfo(dtype)
            if arr.size and (arr.min() < info.min or arr.max() > info.max):
                raise ValueError(f"input {index}: values outside {dtype}'s range [{info.min}, {info.max}]")
        elif not (dtype.kind == "f" and arr.dtype.kind in "fiu"):
            raise ValueError(f"input {index}: dtype {arr.dtype}, the device expects {dtype} (quantize first)")
    return np.ascontiguousarray(arr.astype(dtype.newbyteorder("<"))).tobytes()
