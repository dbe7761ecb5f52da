"""Build a generated project with PlatformIO and check that it fits the board.

``build_project(project)`` runs ``pio run`` (PlatformIO's core package tool-scons is bootstrapped
from PyPI first if PlatformIO does not have it), shows progress (the current step in a rich
status line, compiler warnings and errors as they come), keeps the whole log in
``<project>/build.log``, parses the flash and RAM use that PlatformIO (or mcuquant's dev-platform)
prints, and checks both against the board's limits.

Errors carry the fix, as one line where possible:

* the firmware does not fit: :class:`FirmwareTooLargeError` with required and available bytes
  (from the linker's "region `RAM' overflowed by N bytes", PlatformIO's size check, or the
  parsed use);
* a physical board whose PlatformIO platform is not installed while PlatformIO's registry is
  unreachable: :class:`BuildError` naming the board's emulated equivalent;
* anything else: :class:`BuildError` with the compiler's error lines and the log's path.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mcuquant.build.image import image_sizes
from mcuquant.build.project import Project
from mcuquant.errors import BuildError, FirmwareTooLargeError  # noqa: F401 (raised here, imported from here)

#: Where PlatformIO fetches platforms and libraries from.
PIO_REGISTRY_HOST = "api.registry.platformio.org"
BUILD_TIMEOUT_S = 900


@dataclass(frozen=True)
class BuildResult:
    project: Project
    elf: Path
    flash_used: int
    flash_limit: int
    ram_used: int
    ram_limit: int
    log: Path
    seconds: float
    heap_bytes: int = 0  # RAM the linker script reserves for a heap, apart from ram_used
    stack_bytes: int = 0  # RAM it reserves for the stack, apart from ram_used


_USAGE_RE = re.compile(r"^(RAM|Flash):\s+\[[= ]*\]\s+-?[\d.]+%\s+\(used (\d+) bytes from (\d+) bytes\)")  # shown while building
_OVERFLOW_RE = re.compile(r"region [`'](\w+)' overflowed by (\d+) bytes")
_PIO_TOO_BIG_RE = re.compile(r"The (program|data) size \((\d+) bytes\) is greater than maximum allowed \((\d+) bytes\)")
_STEP_RE = re.compile(r"^(Compiling|Linking|Building|Checking size|Indexing|Archiving|Processing) ")
_PROBLEM_RE = re.compile(r"(error|warning):|\*\*\*|Error:|Error\b|undefined reference", re.IGNORECASE)


def pio_env() -> dict[str, str]:
    """The environment for PlatformIO: the caller's, minus telemetry and update checks."""
    env = dict(os.environ)
    env.update(
        PLATFORMIO_SETTING_ENABLE_TELEMETRY="No",
        PLATFORMIO_DISABLE_UPGRADE_CHECK="true",
        PLATFORMIO_SETTING_CHECK_PLATFORMIO_INTERVAL="3650",
        PLATFORMIO_NO_ANSI="true",
    )
    return env


def registry_reachable(timeout: float = 3.0) -> bool:
    """Whether PlatformIO's package registry answers a TCP connection."""
    try:
        with socket.create_connection((PIO_REGISTRY_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def platform_installed(name: str) -> bool:
    """Whether PlatformIO has the platform ``name`` installed in its platforms folder."""
    from mcuquant.build.pio_bootstrap import default_core_dir

    env_dir = os.environ.get("PLATFORMIO_PLATFORMS_DIR")
    platforms = Path(env_dir).expanduser() if env_dir else default_core_dir() / "platforms"
    return platforms.is_dir() and any(
        p.is_dir() and (p.name == name or p.name.startswith(name + "@")) for p in platforms.iterdir()
    )


def build_project(project: Project, *, progress: bool = True, targets: tuple[str, ...] = (),
                  upload_port: str | None = None, timeout: float = BUILD_TIMEOUT_S) -> BuildResult:
    """Run ``pio run`` for ``project`` and check flash and RAM against the board's limits.

    ``targets``: extra PlatformIO targets (e.g. ``("upload",)`` with ``upload_port``).
    """
    from mcuquant.build.pio_bootstrap import ensure_tool_scons

    board = project.board
    if (not board.emulated and project.packages is None and not platform_installed(board.platformio.platform)
            and not registry_reachable()):
        raise BuildError(
            f"cannot build for {board.name}: PlatformIO's registry ({PIO_REGISTRY_HOST}) is unreachable, so its "
            f"platform {board.platformio.platform!r} cannot be installed; build for the emulated equivalent "
            f"instead: --board {board.emulated_equivalent}"
        )
    ensure_tool_scons()
    cmd = [sys.executable, "-m", "platformio", "run", "-d", str(project.directory), "-e", project.env_name]
    for target in targets:
        cmd += ["-t", target]
    if upload_port:
        cmd += ["--upload-port", upload_port]
    log_path = project.directory / "build.log"
    start = time.monotonic()
    returncode, lines = _run_streaming(cmd, log_path, progress, timeout, f"building {board.name}")
    seconds = time.monotonic() - start

    _raise_if_too_large(lines, board.name)
    if returncode != 0 and project.packages is not None:
        _raise_if_package_missing(lines, project.packages, log_path)
    if returncode != 0:
        problems = [line for line in lines if _PROBLEM_RE.search(line) and "warning:" not in line.lower()]
        detail = "\n".join((problems or list(lines))[-15:])
        raise BuildError(f"`pio run` failed for {board.name} (exit {returncode}); full log: {log_path}\n{detail}")

    elf = project.elf
    if not elf.is_file():
        raise BuildError(f"`pio run` succeeded but {elf} is missing; full log: {log_path}")
    # The figures come from the image's sections (mcuquant.build.image): PlatformIO's RAM line may
    # count a heap that takes all remaining RAM. The stack must fit beside the firmware's data; a
    # heap reservation is what is left over.
    sizes = image_sizes(elf)
    flash_used, ram_used = sizes.flash, sizes.ram
    for region, used, limit in (("flash", flash_used, board.flash_bytes), ("RAM", ram_used + sizes.stack, board.ram_bytes)):
        if used > limit:
            raise _too_large(board.name, region, used, limit)
    return BuildResult(project, elf, flash_used, board.flash_bytes, ram_used, board.ram_bytes, log_path, seconds,
                       heap_bytes=sizes.heap, stack_bytes=sizes.stack)


_INSTALLING_RE = re.compile(r"(?:Tool Manager|Platform Manager|Library Manager): Installing (?:[\w.-]+/)?([\w.-]+)")


def _raise_if_package_missing(lines: list[str], packages: Path, log_path: Path) -> None:
    """With a local package folder, PlatformIO reaching for its registry means the folder lacks a package."""
    wanted = [m.group(1) for line in lines if (m := _INSTALLING_RE.search(line))]
    if wanted:
        raise BuildError(f"PlatformIO tried to download {', '.join(dict.fromkeys(wanted))}, which the package folder "
                         f"{packages} does not hold: add it under packages/ (a package) or libraries/ (a library) "
                         f"and build again; full log: {log_path}")


def _too_large(board: str, region: str, required: int, available: int) -> FirmwareTooLargeError:
    return FirmwareTooLargeError(
        f"the firmware does not fit {board}: {region} needs {required} bytes, the board has {available} bytes "
        f"({required - available} bytes too many); use a smaller model or a board with more {region}",
        region, required, available,
    )


def _raise_if_too_large(lines: list[str], board: str) -> None:
    """Turn the linker's and PlatformIO's size complaints into one FirmwareTooLargeError."""
    from mcuquant.boards import get_board

    limits = None
    for line in lines:
        m = _OVERFLOW_RE.search(line)
        if m:
            region = "flash" if m.group(1).upper() == "FLASH" else m.group(1)
            if limits is None:
                b = get_board(board)
                limits = {"flash": b.flash_bytes, "RAM": b.ram_bytes}
            available = limits.get(region)
            if available is not None:
                raise _too_large(board, region, available + int(m.group(2)), available)
        m = _PIO_TOO_BIG_RE.search(line)
        if m:
            region = "flash" if m.group(1) == "program" else "RAM"
            raise _too_large(board, region, int(m.group(2)), int(m.group(3)))


def _run_streaming(cmd: list[str], log_path: Path, progress: bool, timeout: float, title: str) -> tuple[int, list[str]]:
    """Run ``cmd``, writing every line to ``log_path``; with ``progress``, show the current step
    in a status line and print warnings and errors as they come. Returns (exit code, lines)."""
    lines: list[str] = []
    status = None
    console = None
    if progress:
        from rich.console import Console

        console = Console(stderr=True, highlight=False)
        status = console.status(f"{title}: starting PlatformIO")
        status.start()
    deadline = time.monotonic() + timeout
    try:
        with open(log_path, "w", encoding="utf-8") as log, subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=pio_env(),
            text=True, errors="replace", bufsize=1, start_new_session=True,
        ) as proc:
            assert proc.stdout is not None
            try:
                for raw in proc.stdout:
                    line = raw.rstrip("\n")
                    lines.append(line)
                    log.write(raw)
                    if status is not None and console is not None:
                        if _STEP_RE.match(line):
                            status.update(f"{title}: {line[:100]}")
                        elif _PROBLEM_RE.search(line) or _USAGE_RE.match(line) or _OVERFLOW_RE.search(line):
                            console.print(line, markup=False)
                    if time.monotonic() > deadline:
                        raise subprocess.TimeoutExpired(cmd, timeout)
                proc.wait(timeout=max(deadline - time.monotonic(), 1))
            except BaseException:
                _kill_group(proc)
                raise
    except subprocess.TimeoutExpired:
        raise BuildError(f"`pio run` did not finish within {timeout:g} s; full log: {log_path}") from None
    except OSError as exc:
        raise BuildError(f"cannot run PlatformIO ({' '.join(cmd[:4])}): {exc}") from exc
    finally:
        if status is not None:
            status.stop()
    return proc.returncode, lines


def _kill_group(proc: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
