"""Offline bootstrap of PlatformIO's core package ``tool-scons``.

PlatformIO drives every build through SCons, which it does not ship in its own wheel: on the
first ``pio run`` it downloads the core package ``tool-scons`` from its package registry into
``<core_dir>/packages/tool-scons``. Where that registry is unreachable (offline CI, this
project's build machines) the download fails and nothing builds.

SCons itself is on PyPI, so this module builds an equivalent package from PyPI's
``scons==4.11.1``: the SCons Python package, a ``scons.py`` entry script (PlatformIO runs
``python <tool-scons>/scons.py ...``), a ``package.json`` and a ``.piopm`` that tell
PlatformIO's package manager which version is installed (4.41101.0 is PlatformIO's encoding of
SCons 4.11.1 and satisfies PlatformIO 6.2's requirement ``~4.41101.0``).

When the folder already exists (for example because PlatformIO fetched it itself on a machine
with internet) nothing is touched. The install goes into a temporary folder next to the target
and is moved into place with one rename, so an interrupted run never leaves a half-built
package where PlatformIO would find it.

Command line: ``python -m mcuquant.build.pio_bootstrap [--core-dir DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mcuquant.errors import ConfigError, McuquantError

SCONS_PYPI_VERSION = "4.11.1"
#: PlatformIO's version of the tool-scons package made from SCons 4.11.1.
TOOL_SCONS_VERSION = "4.41101.0"
TOOL_SCONS_NAME = "tool-scons"
#: How long pip may take to fetch and install scons (seconds).
PIP_TIMEOUT_S = 600

# PlatformIO's package manager skips folders whose name starts with this prefix, so a temporary
# folder left behind by a killed run is never mistaken for an installed package.
_TMP_PREFIX = "_tmp_installing-mcuquant-tool-scons-"

_SCONS_ENTRY = '''\
"""SCons entry point for PlatformIO.

Part of the tool-scons package that mcuquant built from PyPI scons=={scons_version}
(python -m mcuquant.build.pio_bootstrap). PlatformIO runs: python scons.py [args].
"""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import SCons.Script  # noqa: E402  (needs the sys.path entry above)

if __name__ == "__main__":
    sys.exit(SCons.Script.main())
'''


def default_core_dir() -> Path:
    """PlatformIO's core folder: ``$PLATFORMIO_CORE_DIR`` or ``~/.platformio``."""
    env = os.environ.get("PLATFORMIO_CORE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".platformio"


def packages_dir(core_dir: Path | None = None) -> Path:
    """Where PlatformIO looks for its tool packages.

    An explicit ``core_dir`` means ``<core_dir>/packages``. Otherwise PlatformIO's own
    environment variables decide: ``$PLATFORMIO_PACKAGES_DIR`` if set, else the default core
    folder's ``packages``.
    """
    if core_dir is not None:
        return Path(core_dir).expanduser() / "packages"
    env = os.environ.get("PLATFORMIO_PACKAGES_DIR")
    if env:
        return Path(env).expanduser()
    return default_core_dir() / "packages"


def ensure_tool_scons(core_dir: Path | None = None) -> Path:
    """Make sure PlatformIO's ``tool-scons`` package exists; build it from PyPI if not.

    Returns the package folder. Does nothing when the folder already exists.
    Raises :class:`~mcuquant.errors.ConfigError` when it cannot be built.
    """
    return _ensure(core_dir)[0]


def _ensure(core_dir: Path | None) -> tuple[Path, bool]:
    """Like :func:`ensure_tool_scons`, also telling whether it installed anything."""
    pkgs = packages_dir(core_dir)
    target = pkgs / TOOL_SCONS_NAME
    if target.exists():
        if not target.is_dir():
            raise ConfigError(
                f"{target} exists but is not a folder; remove it and run "
                "`python -m mcuquant.build.pio_bootstrap` again"
            )
        return target, False

    try:
        pkgs.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=pkgs))
        tmp.chmod(0o755)  # mkdtemp makes it private; the package folder should not be
    except OSError as exc:
        raise ConfigError(
            f"cannot create PlatformIO's packages folder {pkgs}: {exc}; make it writable or "
            "point PLATFORMIO_CORE_DIR at a writable folder"
        ) from exc
    try:
        _pip_install_scons(tmp)
        _write_package_files(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process may have installed it in the meantime: that one wins.
            if (target / "scons.py").is_file() or (target / ".piopm").is_file():
                return target, False
            raise
    except OSError as exc:
        raise ConfigError(
            f"cannot install {TOOL_SCONS_NAME} into {target}: {exc}; make {pkgs} writable or "
            "point PLATFORMIO_CORE_DIR at a writable folder"
        ) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target, True


def _pip_install_scons(dest: Path) -> None:
    cmd = [
        sys.executable, "-m", "pip", "install",
        "--target", str(dest),
        "--no-deps",
        "--no-input",
        "--disable-pip-version-check",
        "--no-warn-script-location",
        f"scons=={SCONS_PYPI_VERSION}",
    ]
    try:
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=PIP_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        raise ConfigError(
            f"pip did not install scons=={SCONS_PYPI_VERSION} within {PIP_TIMEOUT_S} s; check "
            "that PyPI (or your pip index) is reachable, then run "
            "`python -m mcuquant.build.pio_bootstrap` again"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot run pip with {sys.executable}: {exc}") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise ConfigError(
            f"`pip install scons=={SCONS_PYPI_VERSION}` failed (exit {proc.returncode}); check "
            "that PyPI (or your pip index) is reachable and that pip works in "
            f"{sys.executable}, then run `python -m mcuquant.build.pio_bootstrap` again. "
            f"pip said:\n{tail}"
        )
    if not (dest / "SCons" / "Script" / "__init__.py").is_file():
        raise ConfigError(
            f"pip reported success but {dest} holds no SCons package; check pip's configuration "
            "(PIP_* variables, pip.conf) and run `python -m mcuquant.build.pio_bootstrap` again"
        )
    # Console scripts carry a shebang of this interpreter; PlatformIO never uses them.
    shutil.rmtree(dest / "bin", ignore_errors=True)


def _write_package_files(dest: Path) -> None:
    (dest / "scons.py").write_text(
        _SCONS_ENTRY.format(scons_version=SCONS_PYPI_VERSION), encoding="utf-8"
    )
    manifest = {"name": TOOL_SCONS_NAME, "version": TOOL_SCONS_VERSION}
    (dest / "package.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    piopm = {
        "type": "tool",
        "name": TOOL_SCONS_NAME,
        "version": TOOL_SCONS_VERSION,
        "spec": {
            "owner": "platformio",
            "id": 1,
            "name": TOOL_SCONS_NAME,
            "requirements": None,
            "uri": None,
        },
    }
    (dest / ".piopm").write_text(json.dumps(piopm), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mcuquant.build.pio_bootstrap",
        description=(
            "Install PlatformIO's core package tool-scons without PlatformIO's package "
            "registry. PlatformIO runs every build through SCons and normally downloads it "
            "from its registry on the first `pio run`; where that registry is unreachable, "
            f"this builds the same package from PyPI's scons=={SCONS_PYPI_VERSION} into "
            "<core-dir>/packages/tool-scons. If that folder already exists (e.g. PlatformIO "
            "fetched it itself), nothing is changed."
        ),
    )
    parser.add_argument(
        "--core-dir",
        type=Path,
        default=None,
        help=(
            "PlatformIO core folder (default: $PLATFORMIO_CORE_DIR, else ~/.platformio; "
            "$PLATFORMIO_PACKAGES_DIR is honoured when this is not given)"
        ),
    )
    args = parser.parse_args(argv)
    try:
        path, installed = _ensure(args.core_dir)
    except McuquantError as exc:
        print(f"pio_bootstrap: error: {exc}", file=sys.stderr)
        return 1
    if installed:
        print(f"pio_bootstrap: installed {TOOL_SCONS_NAME} {TOOL_SCONS_VERSION} "
              f"(PyPI scons=={SCONS_PYPI_VERSION}) into {path}")
    else:
        print(f"pio_bootstrap: {TOOL_SCONS_NAME} already present at {path}; nothing to do")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
