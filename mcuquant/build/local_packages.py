"""Physical-board builds from a local folder of PlatformIO packages instead of PlatformIO's registry.

For machines that cannot reach the registry or GitHub (air-gapped labs, offline CI) and for builds
that must use exactly the packages someone vetted. ``mcuquant build --packages DIR`` (or
``$MCUQUANT_PIO_PACKAGES``) makes the generated platformio.ini take everything from ``DIR``::

    DIR/platforms/<platform>/   a dev-platform tree (platform.json at its root, builder submodules
                                filled in), named as the board profile's platform: nordicnrf52, ...
    DIR/packages/<package>/     a PlatformIO package (package.json with "name" and "version"), named
                                as in the platform's platform.json "packages": framework-arduino-mbed,
                                toolchain-gccarmnoneeabi, ...
    DIR/libraries/<repo>/       an Arduino library, named as the git repository in lib_deps
                                (tflite-micro-arduino-examples for the tflm backend)

platformio.ini then says ``platform = symlink://DIR/platforms/<platform>``, ``platform_packages =
<package> @ symlink://DIR/packages/<package>`` for every package of that platform the folder holds,
and lib_deps ``symlink://DIR/libraries/<repo>``. The platform's version must be the one the board
profile pins. README ("Physical boards offline") says how to make such a folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from mcuquant.boards import Board
from mcuquant.errors import ConfigError

ENV_VAR = "MCUQUANT_PIO_PACKAGES"


@dataclass(frozen=True)
class LocalPackages:
    root: Path
    platform: Path  # DIR/platforms/<platform>
    platform_packages: tuple[str, ...]  # "name @ symlink://..." lines for platformio.ini

    def library(self, git_url: str) -> Path:
        """The folder in DIR/libraries/ that stands for the library at ``git_url`` (``URL#commit``)."""
        repo = git_url.split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
        path = self.root / "libraries" / repo
        if not path.is_dir():
            raise ConfigError(f"{self.root}/libraries/{repo} is missing: the local package folder needs the library "
                              f"{git_url} there (git clone it and check out that commit)")
        return path


def packages_folder(packages: str | Path | None = None) -> Path | None:
    """``packages``, else $MCUQUANT_PIO_PACKAGES, resolved; None when neither is set."""
    folder = packages or os.environ.get(ENV_VAR) or None
    if folder is None:
        return None
    path = Path(folder).expanduser().resolve()
    if not path.is_dir():
        raise ConfigError(f"the PlatformIO package folder {path} (--packages / ${ENV_VAR}) is not a folder")
    return path


def local_packages(board: Board, root: Path) -> LocalPackages:
    """What ``root`` provides for ``board``'s platform, checked against the board profile's pin."""
    assert board.platformio is not None, "only physical boards use PlatformIO's platforms"
    name, version = board.platformio.platform, board.platformio.platform_version
    platform = root / "platforms" / name
    manifest_path = platform / "platform.json"
    if not manifest_path.is_file():
        raise ConfigError(f"{platform} holds no platform.json: the package folder {root} has no PlatformIO platform "
                          f"{name!r} for {board.name} (expected platforms/{name}/, a checkout of "
                          f"platform-{name} {version or ''} with its submodules)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{manifest_path} is not readable JSON: {exc}") from exc
    found = str(manifest.get("version", ""))
    if version and found != version:
        raise ConfigError(f"{manifest_path} is {name} {found or '(no version)'}, but the board profile {board.name} "
                          f"pins {name} {version}: put release {version} there")
    lines = []
    for package in sorted(manifest.get("packages", {})):
        folder = root / "packages" / package
        if (folder / "package.json").is_file():
            lines.append(f"{package} @ symlink://{folder.as_posix()}")
    return LocalPackages(root, platform, tuple(lines))
