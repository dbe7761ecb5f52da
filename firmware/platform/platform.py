"""PlatformIO dev-platform for mcuquant's emulated boards (the build itself: builder/main.py).

PlatformIO finds the class by the platform's name: "mcuquant-qemu" -> McuquantqemuPlatform.
It declares no packages, frameworks or uploaders: the toolchain comes from PATH, so nothing is
ever fetched from PlatformIO's registry.
"""

from platformio.public import PlatformBase


class McuquantqemuPlatform(PlatformBase):
    pass
