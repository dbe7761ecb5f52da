"""Run a firmware ELF in QEMU for an emulated board; its UART becomes a pyserial URL.

    with QemuEmulator(get_board("qemu-nano33"), elf) as emu:
        port = serial.serial_for_url(emu.url, timeout=5)   # socket://127.0.0.1:PORT
        ...
    # QEMU is gone here, whatever happened inside the block (errors, Ctrl-C)

QEMU runs with:

* ``-icount shift=0``: virtual time advances exactly 1 ns per guest instruction, so the HAL's
  counter (firmware/hal/mps2) reports exact, repeatable instruction counts;
* ``-semihosting-config enable=on,target=native``: the firmware ends QEMU with an exit status
  and prints fault reports on QEMU's stderr (:meth:`QemuEmulator.stderr_text`);
* ``-serial tcp:127.0.0.1:PORT,server=on,wait=on``: UART0 on a loopback TCP port; with
  ``wait=on`` (the default) the guest starts only when the first client connects, so it never
  talks to nobody. The port is free when chosen and QEMU is retried on another one if it was
  taken in the meantime; ``nodelay=on`` turns Nagle off on QEMU's side, otherwise each small
  reply waits for the host's delayed ACK (~44 ms per exchange instead of ~2 ms);
* ``-no-reboot``: a reset request ends QEMU instead of rebooting the firmware.

The process runs in its own session (so a terminal's Ctrl-C reaches only Python, which then
stops it), is killed with its process group on stop, when the object is garbage-collected or
at interpreter exit, and on Linux also when the Python process dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from mcuquant.boards import Board
from mcuquant.device.process import ManagedProcess
from mcuquant.errors import ConfigError, TransportError

QEMU_BINARY = "qemu-system-arm"
#: Bind attempts when the chosen port is taken between choosing and QEMU's bind.
_PORT_ATTEMPTS = 5
_LISTENING = "waiting for connection"


def qemu_binary() -> str:
    """Path of qemu-system-arm; ConfigError saying how to install it when missing."""
    path = shutil.which(os.environ.get("MCUQUANT_QEMU", QEMU_BINARY))
    if path is None:
        raise ConfigError(f"{QEMU_BINARY} not found on PATH; install it (Debian: apt-get install qemu-system-arm, "
                          "or `make setup`) or set MCUQUANT_QEMU to its path")
    return path


def qemu_command(board: Board, elf: str | Path, serial: str) -> list[str]:
    """The QEMU command line for ``board`` running ``elf`` with UART0 on chardev ``serial``."""
    if not board.emulated or board.qemu is None:
        raise ConfigError(f"board {board.name} is not emulated; emulated boards: see `mcuquant boards`")
    return [
        qemu_binary(),
        "-M", board.qemu.machine,
        "-cpu", board.qemu.cpu,
        "-kernel", str(elf),
        "-icount", "shift=0",
        "-semihosting-config", "enable=on,target=native",
        "-display", "none",
        "-monitor", "none",
        "-serial", serial,
        "-no-reboot",
    ]  # fmt: skip


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when the parent dies (Linux; elsewhere a no-op)."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class QemuEmulator(ManagedProcess):
    """A QEMU process running ``elf`` for an emulated ``board``; ``url`` reaches its UART.

    ``wait_for_client``: start the guest only when the first client connects (default).
    ``start_timeout``: seconds to wait for QEMU to listen.
    """

    def __init__(self, board: Board, elf: str | Path, *, wait_for_client: bool = True, start_timeout: float = 10.0):
        qemu_command(board, elf, "null")  # fails now, not at start(), for a board QEMU cannot run
        super().__init__()
        self.board = board
        self.elf = Path(elf)
        self.wait_for_client = wait_for_client
        self.start_timeout = start_timeout
        self.port: int | None = None
        self.url: str | None = None
        self.command: list[str] = []

    def start(self) -> QemuEmulator:
        if self.proc is not None:
            raise TransportError("this emulator was already started; create a new QemuEmulator")
        if not self.elf.is_file():
            raise ConfigError(f"firmware {self.elf} not found; build it first (mcuquant build --board {self.board.name})")
        last = ""
        for _ in range(_PORT_ATTEMPTS):
            port = _free_port()
            wait = "on" if self.wait_for_client else "off"
            self.command = qemu_command(self.board, self.elf, f"tcp:127.0.0.1:{port},server=on,wait={wait},nodelay=on")
            self._spawn(self.command, stdout_pipe=False, preexec_fn=_die_with_parent)
            try:
                if self._wait_listening(port):
                    self.port, self.url = port, f"socket://127.0.0.1:{port}"
                    return self
            except BaseException:
                self.stop()
                raise
            last = self.stderr_text().strip()
            self.stop()
            if "Address already in use" not in last:
                break
            self.proc = None
        raise TransportError(f"QEMU ({' '.join(self.command)}) did not start: {last or 'no output'}")

    def _wait_listening(self, port: int) -> bool:
        """True once QEMU listens on ``port``; False if it exited; TransportError on timeout."""
        assert self.proc is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if self.wait_for_client:
                if _LISTENING in self.stderr_text():
                    return True
            elif _port_listening(port):
                return True
            time.sleep(0.005)
        raise TransportError(f"QEMU did not listen on 127.0.0.1:{port} within {self.start_timeout:g} s: "
                             f"{self.stderr_text().strip() or 'no output'}")

    def wait(self, timeout: float | None = None) -> int:
        """Wait for QEMU to end by itself; TransportError after ``timeout`` seconds."""
        if self.proc is None:
            raise TransportError("the emulator was not started")
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TransportError(f"QEMU ({self.board.name}) still running after {timeout:g} s") from None


def _port_listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port, without connecting (Linux /proc), else by
    connecting (which, for a QEMU started with wait=off, only costs the guest's early output)."""
    hex_port = f":{port:04X}"
    try:
        with open("/proc/net/tcp", encoding="ascii") as f:
            next(f)
            return any(parts[1].endswith(hex_port) and parts[3] == "0A" for parts in (l.split() for l in f))
    except OSError:
        pass
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
