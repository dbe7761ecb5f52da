"""Generate a complete PlatformIO project for a board and an exported model.

The firmware sources are copied into the project's src/, so the folder can be opened in an IDE
and rebuilt with a plain `pio run` (an emulated board's project refers to mcuquant's dev-platform
by its absolute path; a physical board's project needs nothing from mcuquant). The model is
exported into src/model/ with :func:`mcuquant.export.export_model`, the board's facts go into
include/mq_board.h, and platformio.ini names the environment:

* emulated boards: mcuquant's local dev-platform (firmware/platform/, ``platform =
  symlink://...``, offline) plus a linker script generated from the board profile whose FLASH
  and RAM regions have the board's sizes, so a firmware that would not fit fails to link;
* physical boards: PlatformIO's official platform with the Arduino framework; the ``tflm``
  backend comes from the TFLM Arduino library's git URL pinned to a commit (``lib_deps``,
  mcuquant.build.tflm_library), or from a local
  library folder given as ``tflm_dir`` / ``$MCUQUANT_TFLM_DIR``.

The ``tflm`` backend on an emulated board needs such a local library folder: the dev-platform
compiles it (``custom_tflm_dir`` in platformio.ini; no registry, no git). Either way TFLM is
built with TF_LITE_STATIC_MEMORY (as TFLM's own builds and the tflite-micro host interpreter:
no malloc) and TF_LITE_STRIP_ERROR_STRINGS: the library's log goes to the Arduino ``Serial``,
which is the serial link itself, and on boards other than the Nano 33 BLE the library defines
no DebugLog() at all.

Layout of a generated project::

    platformio.ini  mcuquant.ld (emulated)  mcuquant-project.json (what was generated from what)
    include/mq_board.h
    src/app/ src/protocol/ src/hal/ src/runtime/ (builtin backend) src/model/

Regenerating a project replaces include/ and src/ entirely and keeps PlatformIO's .pio/ cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jinja2

from mcuquant import __version__
from mcuquant.build import local_packages, tflm_library
from mcuquant.boards import Board, get_board
from mcuquant.errors import ConfigError

# ---------------------------------------------------------------------------------------------
# What a project compiles: globs relative to firmware/, copied to the same relative path under
# src/. "{hal}" is the board's HAL family (firmware/hal/<hal>/); "{backend}" the backend name.

#: Sources every firmware needs: the main loop and server, the protocol, the board's HAL.
COMMON_SOURCES = (
    "app/*.c", "app/*.cpp", "app/*.h",
    "protocol/*.c", "protocol/*.h",
    "hal/mq_hal.h", "hal/{hal}/*.c", "hal/{hal}/*.cpp", "hal/{hal}/*.h",
)  # fmt: skip
#: The app's backend glue: only the chosen backend's file goes in (backend_builtin.c, ...).
BACKEND_GLUE = "app/backend_*"
#: The backends' own sources (tflm comes as a library through platformio.ini instead).
BACKEND_SOURCES: dict[str, tuple[str, ...]] = {
    "builtin": ("runtime/**/*.c", "runtime/**/*.h"),
    "tflm": (),
}
#: Defines the tflm backend's builds get (the dev-platform adds them itself for emulated boards).
TFLM_BUILD_FLAGS = ("-DTF_LITE_STATIC_MEMORY", "-DTF_LITE_STRIP_ERROR_STRINGS")
#: Stack reserved at the bottom of RAM on emulated boards (counted against the RAM limit).
DEFAULT_STACK_BYTES = 16384
MANIFEST = "mcuquant-project.json"
LDSCRIPT = "mcuquant.ld"


def _templates_dir() -> Path:
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "templates", here.parents[1] / "templates"):
        if (candidate / "platformio.ini.j2").is_file():
            return candidate
    return here.parents[2] / "templates"


_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(_templates_dir())),
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


def firmware_root() -> Path:
    """firmware/ of the checkout, or the copy installed as package data."""
    from mcuquant.builtin.sources import firmware_dir

    return firmware_dir()


def platform_dir() -> Path:
    """The local PlatformIO dev-platform that builds the emulated boards."""
    return firmware_root() / "platform"


@dataclass(frozen=True)
class Project:
    board: Board
    directory: Path
    env_name: str  # the [env:...] in platformio.ini (the board's name)
    backend: str | None  # None when a custom app replaced the firmware (tests, bring-up)
    model_sha256: str | None
    arena_bytes: int | None  # the export's MCUQUANT_ARENA_BYTES (exact for builtin, measured + margin for tflm)
    files: tuple[str, ...]  # every generated file, relative to directory, sorted
    packages: Path | None = None  # the local PlatformIO package folder it builds from (physical boards)

    @property
    def elf(self) -> Path:
        """Where `pio run` puts the firmware of this project."""
        return self.directory / ".pio" / "build" / self.env_name / "firmware.elf"


def firmware_sources(board: Board, backend: str | None, root: Path | None = None) -> list[str]:
    """The firmware files (relative to ``root``, default firmware/) a project for ``board`` gets.

    ``backend=None`` means the HAL only (a custom app brings the rest).
    """
    root = root or firmware_root()
    patterns = ["hal/mq_hal.h", "hal/{hal}/*.c", "hal/{hal}/*.cpp", "hal/{hal}/*.h"]
    if backend is not None:
        patterns = [*COMMON_SOURCES, *BACKEND_SOURCES[backend]]
    found: set[str] = set()
    for pattern in patterns:
        found.update(p.relative_to(root).as_posix() for p in root.glob(pattern.format(hal=board.hal)) if p.is_file())
    glue = {p for p in found if Path(p).match(BACKEND_GLUE)}
    found -= {p for p in glue if Path(p).stem != f"backend_{backend}"}
    return sorted(found)


def generate_project(
    board: Board | str,
    out_dir: str | Path,
    *,
    tflite: bytes | None = None,
    model_name: str = "model",
    backend: str | None = None,
    app_dir: str | Path | None = None,
    build_flags: tuple[str, ...] = (),
    tflm_dir: str | Path | None = None,
    stack_bytes: int = DEFAULT_STACK_BYTES,
    firmware: str | Path | None = None,
    packages: str | Path | None = None,
) -> Project:
    """Write a PlatformIO project for ``board`` into ``out_dir`` and return what was generated.

    ``tflite``: the int8 model to embed (exported into src/model/ for ``backend``); ``backend``
    defaults to the board's. ``app_dir``: a folder of C sources that replaces the firmware's
    app, protocol and backend (the HAL stays), for bring-up and tests. ``tflm_dir`` (default
    ``$MCUQUANT_TFLM_DIR``): a local TFLM Arduino library instead of the git URL.
    ``firmware``: another firmware tree than the installed one (tests). ``packages`` (default
    ``$MCUQUANT_PIO_PACKAGES``): a folder of PlatformIO packages a physical board's project takes
    its platform, framework, toolchain and libraries from (mcuquant.build.local_packages).
    """
    from mcuquant.export import export_model

    board = get_board(board) if isinstance(board, str) else board
    backend = backend or board.default_backend
    if backend not in BACKEND_SOURCES:
        raise ConfigError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKEND_SOURCES)}")
    tflm_dir = tflm_dir or os.environ.get("MCUQUANT_TFLM_DIR") or None
    if backend == "tflm" and board.emulated and tflm_dir is None:
        raise ConfigError(f"the tflm backend needs TensorFlow Lite Micro's sources, which no reachable registry "
                          f"has: set MCUQUANT_TFLM_DIR to a TFLM Arduino library folder, or build {board.name} "
                          "with the builtin backend")
    local = None
    if not board.emulated and (folder := local_packages.packages_folder(packages)) is not None:
        local = local_packages.local_packages(board, folder)
        if backend == "tflm" and app_dir is None and tflm_dir is None:
            tflm_dir = local.library(tflm_library.PINNED.source)
    tflm_path = _tflm_folder(tflm_dir) if backend == "tflm" and app_dir is None and tflm_dir is not None else None
    if stack_bytes <= 0 or stack_bytes % 8:
        raise ConfigError(f"stack_bytes must be a positive multiple of 8, not {stack_bytes}")
    root = Path(firmware) if firmware else firmware_root()
    out = Path(out_dir)
    app_sources: list[Path] = []
    if app_dir is not None:
        app = Path(app_dir)
        app_sources = sorted(p for p in app.glob("*") if p.is_file() and p.suffix in (".c", ".cpp", ".h"))
        if not app_sources:
            raise ConfigError(f"{app} holds no .c, .cpp or .h files")

    with tempfile.TemporaryDirectory(prefix="mcuquant-export-") as tmp:
        # Export first: a model the backend cannot run fails before the folder is touched.
        # The tflm backend's model is checked against the TFLM it will be built with.
        tflm = None if backend != "tflm" else tflm_library.library_in(tflm_path) if tflm_path else tflm_library.PINNED
        export = None if tflite is None else export_model(tflite, tmp, name=model_name, backend=backend, tflm=tflm)
        _prepare(out)
        files = [_copy(f, out / "src" / "model" / f.name) for f in (export.files if export else ())]
    sha, arena = (export.sha256, export.arena_bytes) if export else (None, None)
    for rel in firmware_sources(board, None if app_dir else backend, root):
        files.append(_copy(root / rel, out / "src" / rel))
    files.extend(_copy(p, out / "src" / "app" / p.name) for p in app_sources)

    context_backend = backend if app_dir is None else None  # None: a custom app, no backend
    context = {
        "version": __version__,
        "board": board,
        "env_name": board.name,
        "backend": context_backend,
        "model_name": model_name if tflite is not None else None,
        "sha256": sha,
        "include_dirs": sorted({f.parent.relative_to(out).as_posix() for f in files if f.suffix == ".h"}),
        "build_flags": [*(TFLM_BUILD_FLAGS if context_backend == "tflm" and not board.emulated else ()), *build_flags],
        "lib_deps": _lib_deps(board, context_backend, tflm_path),
        "lib_ignore": list(tflm_library.UNUSED_DEPENDENCIES) if context_backend == "tflm" and not board.emulated else [],
        "tflm_dir": tflm_path.as_posix() if tflm_path is not None and board.emulated else None,
        "local_platform": local.platform.as_posix() if local else None,
        "platform_packages": list(local.platform_packages) if local else [],
    }
    if board.emulated:
        q = board.qemu
        assert q is not None
        files.append(_render("mps2.ld.j2", out / LDSCRIPT, {
            "version": __version__, "board": board.name, "machine": q.machine, "flash_origin": q.flash_origin,
            "flash_bytes": board.flash_bytes, "ram_origin": q.ram_origin, "ram_bytes": board.ram_bytes,
            "stack_bytes": stack_bytes,
        }))  # fmt: skip
        context.update(platform_dir=platform_dir().resolve().as_posix(), ldscript=LDSCRIPT,
                       cpu_flags=" ".join(board.cpu_flags()))
    files.append(_render("mq_board.h.j2", out / "include" / "mq_board.h", context))
    files.append(_render("platformio.ini.j2", out / "platformio.ini", context))

    rel_files = tuple(sorted(f.relative_to(out).as_posix() for f in files))
    manifest = {
        "generator": f"mcuquant {__version__}",
        "board": board.name,
        "env": board.name,
        "backend": context["backend"],
        "model": None if tflite is None else {
            "name": model_name, "sha256": sha, "bytes": len(tflite), "arena_bytes": arena,
        },
        "files": {f: hashlib.sha256((out / f).read_bytes()).hexdigest() for f in rel_files},
    }  # fmt: skip
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return Project(board, out, board.name, context["backend"], sha, arena, rel_files,
                   local.root if local else None)


def _prepare(out: Path) -> None:
    """Make ``out`` ready: new, empty, or a project generated before (src/ and include/ go)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder; choose another output folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise ConfigError(f"{out} is not empty and was not generated by mcuquant (no {MANIFEST}); "
                          "choose an empty or new output folder")
    for generated in ("src", "include"):
        shutil.rmtree(out / generated, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def _copy(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return dest


def _render(template: str, dest: Path, context: dict) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(_ENV.get_template(template).render(context), encoding="utf-8")
    return dest


def _tflm_folder(tflm_dir: str | Path) -> Path:
    """The TFLM Arduino library folder ``tflm_dir``, resolved, or a ConfigError saying what is wrong."""
    path = Path(tflm_dir).expanduser().resolve()
    if not path.is_dir():
        raise ConfigError(f"MCUQUANT_TFLM_DIR / tflm_dir {path} is not a folder")
    if not (path / tflm_library.MARKER).is_file():
        raise ConfigError(f"MCUQUANT_TFLM_DIR / tflm_dir {path} is not a TensorFlow Lite Micro Arduino library "
                          f"(no {tflm_library.MARKER}); use a checkout of {tflm_library.ARDUINO_LIBRARY_URL}")
    return path


def _lib_deps(board: Board, backend: str | None, tflm_path: Path | None) -> list[str]:
    """platformio.ini lib_deps: TFLM for a physical board's tflm backend (emulated: the dev-platform)."""
    if backend != "tflm" or board.emulated:
        return []
    if tflm_path is not None:
        return [f"symlink://{tflm_path.as_posix()}"]
    return [tflm_library.PINNED.source]
