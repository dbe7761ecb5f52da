"""Locate the builtin runtime's C sources.

In a checkout (or an editable install) they are the top-level ``firmware/`` folder; in an
installed wheel the same folder ships as package data ``mcuquant/firmware`` (pyproject.toml maps
package ``mcuquant.firmware`` to ``firmware/``).
"""

from __future__ import annotations

from pathlib import Path

from mcuquant.errors import McuquantError

_MARKER = Path("runtime") / "mq_runtime.h"


def firmware_dir() -> Path:
    """The firmware/ folder: the checkout's if this module runs from one, else the installed copy."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "firmware", here.parents[1] / "firmware"):
        if (candidate / _MARKER).is_file():
            return candidate
    raise McuquantError(f"the builtin runtime's C sources were not found (looked for {_MARKER} under "
                        f"{here.parents[2] / 'firmware'} and {here.parents[1] / 'firmware'}); reinstall mcuquant")


def runtime_dir() -> Path:
    return firmware_dir() / "runtime"


def runtime_sources() -> list[Path]:
    """Every C file of the runtime: the core and whichever operator modules exist (sorted)."""
    rt = runtime_dir()
    return sorted(rt.glob("*.c")) + sorted((rt / "ops").glob("*.c"))


def runtime_headers() -> list[Path]:
    rt = runtime_dir()
    return sorted(rt.glob("*.h")) + sorted((rt / "ops").glob("*.h"))


def host_driver_source() -> Path:
    """firmware/host/mq_run.c: the command-line driver (runs models, fuzz mode)."""
    return firmware_dir() / "host" / "mq_run.c"
