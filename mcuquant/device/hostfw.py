"""The firmware built for the host: the same main loop, protocol and backend as on a board, with
firmware/hal/hal_host.c as HAL, so the serial harness can be run and tested without QEMU.

    exe = build_host_firmware(tflite_bytes)
    with HostFirmware(exe) as fw, Link.open(fw.url, expected_sha256=sha) as link:
        y, microseconds = link.infer(x)

The process listens on a free loopback TCP port, which pyserial reaches as ``socket://`` (the
same way as QEMU's ``-serial tcp:``), serves one connection and exits when it closes. It is always
stopped: on leaving the ``with`` block, on errors, and at interpreter exit.
"""

from __future__ import annotations

import hashlib
import os
import selectors
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from mcuquant.builtin.host import HOST_CFLAGS, SANITIZE_FLAGS, cache_dir, find_gcc
from mcuquant.builtin.sources import firmware_dir, runtime_headers, runtime_sources
from mcuquant.device.process import ManagedProcess
from mcuquant.errors import McuquantError, TransportError

# Firmware sources of the host build, relative to firmware/ (the runtime comes from sources.py).
FIRMWARE_SOURCES = ("app/main.c", "app/mq_server.c", "app/backend_builtin.c", "protocol/mq_protocol.c",
                    "hal/hal_host.c")
INCLUDE_DIRS = ("runtime", "protocol", "app", "hal")
# The host has memory to spare: the arena is the export's activation estimate plus this much for
# the runtime's metadata. The exact need is what the device reports (DeviceInfo.arena_used).
HOST_ARENA_MARGIN = 1 << 20
EXECUTABLE = "mcuquant-hostfw"
_COMPILE_TIMEOUT_S = 300


def build_host_firmware(tflite: bytes, *, name: str = "model", sanitize: bool = False,
                        arena_bytes: int | None = None, max_frame: int | None = None,
                        cache: Path | None = None) -> Path:
    """Export ``tflite`` and compile the host firmware around it; returns the executable.

    Builds are cached by a hash of every source, the exported model, the flags and the compiler
    version, so a rebuild happens only when something changed (concurrent builds are safe: each
    compiles in its own folder and renames it into place). ``arena_bytes`` overrides the arena
    (e.g. too small on purpose); ``max_frame`` the protocol's maximum frame size.
    """
    from mcuquant.export import export_model

    compiler = find_gcc()
    compiler_version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    fw = firmware_dir()
    root = Path(cache) if cache else cache_dir() / "hostfw"
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="export-", dir=root) as tmp:
        export = export_model(tflite, Path(tmp), name=name)
        arena = arena_bytes if arena_bytes is not None else export.arena_bytes + HOST_ARENA_MARGIN
        defines = [f"-DMCUQUANT_BUILTIN_ARENA_BYTES={int(arena)}u"]
        if max_frame is not None:
            defines.append(f"-DMQ_PROTO_MAX_FRAME={int(max_frame)}u")
        flags = [*HOST_CFLAGS, *(SANITIZE_FLAGS if sanitize else ()), *defines]
        sources = [fw / s for s in FIRMWARE_SOURCES] + runtime_sources() + [Path(tmp) / "model_data.c"]
        headers = (runtime_headers() + sorted(h for d in INCLUDE_DIRS[1:] for h in (fw / d).glob("*.h"))
                   + sorted(Path(tmp).glob("*.h")))

        key = hashlib.sha256()
        key.update("\0".join([compiler_version, *flags]).encode())
        for f in sources + headers:
            key.update(f.name.encode() + b"\0" + f.read_bytes())
        out_dir = root / key.hexdigest()[:24]
        exe = out_dir / EXECUTABLE
        if exe.is_file():
            return exe

        build = Path(tempfile.mkdtemp(prefix="build-", dir=root))
        includes = [f"-I{fw / d}" for d in INCLUDE_DIRS] + [f"-I{fw / 'runtime' / 'ops'}", f"-I{tmp}"]
        cmd = [compiler, *flags, *includes, *map(str, sources), "-o", str(build / EXECUTABLE), "-lm"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_COMPILE_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            shutil.rmtree(build, ignore_errors=True)
            raise McuquantError(f"building the host firmware timed out after {_COMPILE_TIMEOUT_S} s") from exc
        if proc.returncode != 0:
            shutil.rmtree(build, ignore_errors=True)
            raise McuquantError("building the host firmware failed:\n" + " ".join(cmd) + "\n"
                                + (proc.stderr or proc.stdout).strip())
        try:
            os.replace(build, out_dir)
        except OSError:  # another process finished the same build first
            shutil.rmtree(build, ignore_errors=True)
    if not exe.is_file():
        raise McuquantError(f"host firmware build produced no {exe}")
    return exe


class HostFirmware(ManagedProcess):
    """A running host firmware: ``url`` is its ``socket://127.0.0.1:PORT``.

    ``accept_timeout``: the process exits by itself if nobody connects within this many seconds.
    """

    def __init__(self, executable: Path | str, *, accept_timeout: float = 30.0, start_timeout: float = 10.0):
        super().__init__()
        self.executable = Path(executable)
        self.accept_timeout = accept_timeout
        self.start_timeout = start_timeout
        self.url: str | None = None

    def start(self) -> HostFirmware:
        env = dict(os.environ, MCUQUANT_HOSTFW_PORT="0",
                   MCUQUANT_HOSTFW_ACCEPT_TIMEOUT_MS=str(int(self.accept_timeout * 1000)))
        self._spawn([str(self.executable)], stdout_pipe=True, env=env)
        try:
            port = self._read_port()
        except BaseException:
            self.stop()
            raise
        self.url = f"socket://127.0.0.1:{port}"
        return self

    def _read_port(self) -> int:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + self.start_timeout
        line = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not sel.select(remaining):
                    raise TransportError(f"host firmware {self.executable} did not report its port within "
                                         f"{self.start_timeout:g} s")
                byte = os.read(self.proc.stdout.fileno(), 1)
                if not byte:
                    self.proc.wait(timeout=5)
                    raise TransportError(f"host firmware exited with status {self.proc.returncode} before "
                                         f"listening: {self.stderr_text().strip()}")
                line += byte
        key, _, value = line.decode("ascii", "replace").strip().partition("=")
        if key != "MCUQUANT_HOSTFW_PORT" or not value.isdigit():
            raise TransportError(f"host firmware printed {line!r} instead of its port")
        return int(value)

    def wait(self, timeout: float | None = None) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)
