"""The PlatformIO offline bootstrap, checked against the real PlatformIO.

The bootstrap builds PlatformIO's core package ``tool-scons`` from PyPI's scons into a fresh
PLATFORMIO_CORE_DIR; then a real ``pio run`` builds a C program with a minimal local
dev-platform (``platform = symlink://...``), with PlatformIO's network features switched off
and, where the kernel allows it, inside a network namespace with no network at all.

Needs PyPI (pip fetches scons) and a C compiler; the ARM build needs arm-none-eabi-gcc.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mcuquant.build.pio_bootstrap import (
    TOOL_SCONS_NAME,
    TOOL_SCONS_VERSION,
    ensure_tool_scons,
)

PIO_TIMEOUT_S = 300
BOOTSTRAP_TIMEOUT_S = 300

PIO = shutil.which(str(Path(sys.executable).parent / "pio"))
HOST_CC = shutil.which("gcc") or shutil.which("cc")
ARM_CC = shutil.which("arm-none-eabi-gcc")


def _clean_env(core_dir: Path) -> dict[str, str]:
    """The environment for PlatformIO: only our core folder, no network features."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORMIO_")}
    env.update(
        PLATFORMIO_CORE_DIR=str(core_dir),
        # No telemetry thread (it would open a socket at exit).
        PLATFORMIO_SETTING_ENABLE_TELEMETRY="No",
        # No "new PlatformIO version?" / core-package update check after the command.
        PLATFORMIO_DISABLE_UPGRADE_CHECK="true",
        PLATFORMIO_SETTING_CHECK_PLATFORMIO_INTERVAL="3650",
        PLATFORMIO_NO_ANSI="true",
    )
    return env


def _no_network_prefix() -> list[str]:
    """A command prefix running a program in a new network namespace, if the kernel lets us."""
    unshare = shutil.which("unshare")
    if not unshare:
        return []
    for prefix in ([unshare, "--net"], [unshare, "--map-root-user", "--net"]):
        try:
            probe = subprocess.run(
                [*prefix, "true"], capture_output=True, timeout=10, stdin=subprocess.DEVNULL
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return prefix
    return []


@pytest.fixture(scope="module")
def core_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh PlatformIO core folder bootstrapped through the command line."""
    core = tmp_path_factory.mktemp("pio-core")
    env = _clean_env(core)
    proc = subprocess.run(
        [sys.executable, "-m", "mcuquant.build.pio_bootstrap"],
        env=env,
        capture_output=True,
        text=True,
        timeout=BOOTSTRAP_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "installed tool-scons" in proc.stdout, proc.stdout
    return core


@pytest.fixture(scope="module")
def dev_platform(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A minimal local dev-platform whose builder compiles with a compiler named per env."""
    plat = tmp_path_factory.mktemp("platform-hostcc")
    (plat / "builder").mkdir()
    (plat / "platform.json").write_text(
        json.dumps(
            {
                "name": "hostcc",
                "version": "0.0.1",
                "title": "mcuquant test platform",
                "description": "Builds with a compiler found on PATH",
                "frameworks": {},
                "packages": {},
            }
        )
    )
    # PlatformIO looks for a class named <Name>Platform derived from PlatformBase.
    (plat / "platform.py").write_text(
        textwrap.dedent(
            """\
            from platformio.public import PlatformBase


            class HostccPlatform(PlatformBase):
                pass
            """
        )
    )
    (plat / "builder" / "main.py").write_text(
        textwrap.dedent(
            """\
            from SCons.Script import Default, DefaultEnvironment

            env = DefaultEnvironment()
            cc = env.GetProjectOption("custom_cc", "gcc")
            env.Replace(CC=cc, AS=cc, LINK=cc)
            env.Append(LINKFLAGS=env.GetProjectOption("custom_linkflags", "").split())
            env.Replace(PROGSUFFIX=env.GetProjectOption("custom_progsuffix", ""))
            program = env.BuildProgram()  # SCons env.Program over the project's src/
            Default(program)
            """
        )
    )
    return plat


@pytest.fixture()
def project(tmp_path: Path, dev_platform: Path) -> Path:
    proj = tmp_path / "project"
    (proj / "src").mkdir(parents=True)
    (proj / "src" / "main.c").write_text(
        textwrap.dedent(
            """\
            #include <stdio.h>

            int main(void) {
                printf("mcuquant pio %d\\n", 6 * 7);
                return 0;
            }
            """
        )
    )
    (proj / "platformio.ini").write_text(
        textwrap.dedent(
            f"""\
            [env]
            platform = symlink://{dev_platform.resolve()}

            [env:host]
            custom_cc = {HOST_CC}

            [env:arm]
            custom_cc = {ARM_CC}
            build_flags = -mcpu=cortex-m4 -mthumb
            custom_linkflags = -mcpu=cortex-m4 -mthumb --specs=nosys.specs
            custom_progsuffix = .elf
            """
        )
    )
    return proj


def _pio_run(project: Path, core_dir: Path, env_name: str) -> subprocess.CompletedProcess:
    assert PIO, f"PlatformIO's `pio` is missing next to {sys.executable}; run `make setup`"
    cmd = [*_no_network_prefix(), PIO, "run", "-d", str(project), "-e", env_name]
    try:
        proc = subprocess.run(
            cmd,
            env=_clean_env(core_dir),
            capture_output=True,
            text=True,
            timeout=PIO_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"`{' '.join(cmd)}` did not finish in {PIO_TIMEOUT_S} s:\n{exc.stdout}")
    assert proc.returncode == 0, f"`{' '.join(cmd)}` failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_bootstrap_writes_a_platformio_package(core_dir: Path) -> None:
    pkg = core_dir / "packages" / TOOL_SCONS_NAME
    assert (pkg / "SCons" / "Script" / "Main.py").is_file()
    assert json.loads((pkg / "package.json").read_text()) == {
        "name": TOOL_SCONS_NAME,
        "version": TOOL_SCONS_VERSION,
    }
    piopm = json.loads((pkg / ".piopm").read_text())
    assert piopm["type"] == "tool" and piopm["version"] == TOOL_SCONS_VERSION
    assert piopm["spec"]["owner"] == "platformio" and piopm["spec"]["name"] == TOOL_SCONS_NAME
    # No temporary folder left next to it.
    assert sorted(p.name for p in (core_dir / "packages").iterdir()) == [TOOL_SCONS_NAME]
    # The entry script PlatformIO runs is a working SCons.
    out = subprocess.run(
        [sys.executable, str(pkg / "scons.py"), "--version"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stderr
    assert "4.11.1" in out.stdout


@pytest.mark.skipif(HOST_CC is None, reason="no host C compiler (gcc/cc) on PATH")
def test_pio_run_builds_offline_with_host_gcc(core_dir: Path, project: Path) -> None:
    proc = _pio_run(project, core_dir, "host")
    assert "[SUCCESS]" in proc.stdout, proc.stdout
    program = project / ".pio" / "build" / "host" / "program"
    assert program.is_file(), proc.stdout
    ran = subprocess.run(
        [str(program)], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    )
    assert ran.returncode == 0
    assert ran.stdout == "mcuquant pio 42\n"


@pytest.mark.skipif(ARM_CC is None, reason="arm-none-eabi-gcc not installed (make setup)")
def test_pio_run_cross_compiles_for_cortex_m(core_dir: Path, project: Path) -> None:
    proc = _pio_run(project, core_dir, "arm")
    elf = project / ".pio" / "build" / "arm" / "program.elf"
    assert elf.is_file(), proc.stdout
    header = elf.read_bytes()[:20]
    assert header[:4] == b"\x7fELF"
    assert int.from_bytes(header[18:20], "little") == 40  # e_machine EM_ARM


def test_second_bootstrap_is_a_no_op(core_dir: Path) -> None:
    pkg = core_dir / "packages" / TOOL_SCONS_NAME
    before = {p: p.stat().st_mtime_ns for p in (pkg, pkg / ".piopm", pkg / "scons.py")}

    start = time.monotonic()
    assert ensure_tool_scons(core_dir) == pkg
    assert time.monotonic() - start < 1.0

    proc = subprocess.run(
        [sys.executable, "-m", "mcuquant.build.pio_bootstrap", "--core-dir", str(core_dir)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert "already present" in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_existing_package_from_platformio_is_left_alone(tmp_path: Path) -> None:
    # As if PlatformIO had fetched its own tool-scons on a machine with internet.
    pkg = tmp_path / "packages" / TOOL_SCONS_NAME
    pkg.mkdir(parents=True)
    (pkg / "package.json").write_text('{"name": "tool-scons", "version": "4.41101.0"}')
    assert ensure_tool_scons(tmp_path) == pkg
    assert sorted(p.name for p in pkg.iterdir()) == ["package.json"]


def test_env_var_decides_the_core_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "packages" / TOOL_SCONS_NAME
    pkg.mkdir(parents=True)
    monkeypatch.delenv("PLATFORMIO_PACKAGES_DIR", raising=False)
    monkeypatch.setenv("PLATFORMIO_CORE_DIR", str(tmp_path))
    assert ensure_tool_scons() == pkg
