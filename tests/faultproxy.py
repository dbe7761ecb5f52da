"""The project's fault-injecting TCP proxy, between a Link and a firmware's socket (QEMU's UART or
the host-built firmware).

    with FaultProxy(fw.url, {("to_host", 4): lose}) as proxy:
        Link.open(proxy.url, ...)

Faults, all optional:

* ``faults`` maps (direction, n) to a function of the n-th frame's COBS bytes in that direction
  ("to_device" or "to_host", counted from 0, re-sent frames included) returning the wire bytes
  to forward instead (see ``flip``, ``drop_byte``, ``lose``, ``garbage``, ``no_delimiter``);
* ``corrupt_rate``: each forwarded byte is flipped with this probability (seeded), in both
  directions; ``lose_rate``: each frame is dropped whole with this probability;
* ``flood(seconds, hold=...)``: from now on, send undelimited noise to the host as fast as the
  socket takes it for ``seconds``, between the real frames, or with ``hold=True`` instead of them
  (frames to the host are then held back until the flood ends).
"""

from __future__ import annotations

import random
import selectors
import socket
import threading
import time

DIRECTIONS = ("to_device", "to_host")


class FaultProxy:
    def __init__(self, target_url: str, faults: dict | None = None, *, corrupt_rate: float = 0.0,
                 lose_rate: float = 0.0, seed: int = 0):
        host, port = target_url.removeprefix("socket://").rsplit(":", 1)
        self.target = (host, int(port))
        self.faults = dict(faults or {})
        self.corrupt_rate, self.lose_rate = corrupt_rate, lose_rate
        self.rng = random.Random(seed)
        self.applied: list[tuple[str, int]] = []
        self.counts = {d: 0 for d in DIRECTIONS}  # frames forwarded
        self.corrupted_bytes = 0
        self.lost_frames = 0
        self.flood_bytes = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self.listener.getsockname()[1]}"
        self._stop = threading.Event()
        self._flood_until = 0.0
        self._hold = False
        self._noise = bytes(self.rng.randrange(1, 256) for _ in range(2048))  # no 0x00: never a delimiter
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    # -- faults started from the test ---------------------------------------------------------

    def flood(self, seconds: float, *, hold: bool = False) -> None:
        self._hold = hold
        self._flood_until = time.monotonic() + seconds

    # -- forwarding ---------------------------------------------------------------------------

    def _run(self) -> None:
        self.listener.settimeout(30)
        try:
            client, _ = self.listener.accept()
        except OSError:
            return
        upstream = socket.create_connection(self.target, timeout=10)
        peers = {client: (upstream, "to_device"), upstream: (client, "to_host")}
        pending = {client: bytearray(), upstream: bytearray()}
        held: list[bytes] = []
        with selectors.DefaultSelector() as sel, client, upstream:
            for s in peers:
                sel.register(s, selectors.EVENT_READ)
            while not self._stop.is_set():
                flooding = time.monotonic() < self._flood_until
                if flooding:  # one writer: the noise shares the line with the real frames, as on a wire
                    if not self._send(client, self._noise):
                        return
                    self.flood_bytes += len(self._noise)
                if held and not flooding:
                    for out in held:
                        if not self._send(client, out):
                            return
                    held.clear()
                for key, _ in sel.select(0.0005 if flooding else 0.02):
                    src = key.fileobj
                    dst, direction = peers[src]
                    try:
                        data = src.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    buf = pending[src]
                    buf += data
                    while (end := buf.find(0)) >= 0:
                        chunk = bytes(buf[:end])
                        del buf[: end + 1]
                        if not chunk:
                            continue
                        out = self._faulted(direction, chunk)
                        if direction == "to_host" and self._hold and time.monotonic() < self._flood_until:
                            held.append(out)
                        elif not self._send(dst, out):
                            return

    def _faulted(self, direction: str, chunk: bytes) -> bytes:
        n = self.counts[direction]
        self.counts[direction] += 1
        fault = self.faults.get((direction, n))
        if fault:
            self.applied.append((direction, n))
            return fault(chunk)
        if self.lose_rate and self.rng.random() < self.lose_rate:
            self.lost_frames += 1
            return b""
        if self.corrupt_rate:
            damaged = bytearray(chunk)
            for i in range(len(damaged)):
                if self.rng.random() < self.corrupt_rate:
                    damaged[i] ^= self.rng.randrange(1, 256)
                    self.corrupted_bytes += 1
            chunk = bytes(damaged)
        return b"\x00" + chunk + b"\x00"

    def _send(self, dst: socket.socket, out: bytes) -> bool:
        try:
            dst.sendall(out)
        except OSError:
            return False
        return True

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        self.thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def flip(chunk: bytes) -> bytes:
    damaged = bytearray(chunk)
    damaged[len(damaged) // 2] ^= 0x5A if damaged[len(damaged) // 2] != 0x5A else 0xA5
    return b"\x00" + bytes(damaged) + b"\x00"


def drop_byte(chunk: bytes) -> bytes:
    return b"\x00" + chunk[: len(chunk) // 2] + chunk[len(chunk) // 2 + 1 :] + b"\x00"


def lose(chunk: bytes) -> bytes:
    return b""


def garbage(chunk: bytes) -> bytes:
    noise = random.Random(len(chunk)).randbytes(300)
    return noise + b"\x00" + chunk + b"\x00"


def no_delimiter(chunk: bytes) -> bytes:
    """The frame without its closing 0x00 (the leading one stays)."""
    return b"\x00" + chunk


class RecordingPort:
    """A pyserial port that counts the bytes each way and, with ``record=True``, logs every frame
    as the host wrote or read it: ``events`` lists ("sent" | "received", COBS bytes) in the order the
    host saw them. Everything else is the wrapped port's."""

    def __init__(self, port, *, record: bool = False):
        object.__setattr__(self, "_port", port)
        object.__setattr__(self, "sent", 0)
        object.__setattr__(self, "received", 0)
        object.__setattr__(self, "events", [] if record else None)
        object.__setattr__(self, "_partial", {"sent": bytearray(), "received": bytearray()})

    def write(self, data):
        object.__setattr__(self, "sent", self.sent + len(data))
        self._log("sent", data)
        return self._port.write(data)

    def read(self, n=1):
        data = self._port.read(n)
        object.__setattr__(self, "received", self.received + len(data))
        self._log("received", data)
        return data

    def _log(self, direction: str, data: bytes) -> None:
        if self.events is None:
            return
        buf = self._partial[direction]
        buf += data
        while (end := buf.find(0)) >= 0:
            if end:
                self.events.append((direction, bytes(buf[:end])))
            del buf[: end + 1]

    def __getattr__(self, name):
        return getattr(self._port, name)

    def __setattr__(self, name, value):
        setattr(self._port, name, value)
