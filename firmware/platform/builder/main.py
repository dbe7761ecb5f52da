"""SCons build script of the mcuquant-qemu dev-platform (PlatformIO runs it for `pio run`).

Compiles the project's src/ (mcuquant copies the firmware sources there when it generates the
project) with the arm-none-eabi toolchain found on PATH, links with the project's linker script
and prints flash and RAM use in PlatformIO's usual format, which mcuquant.build.pio parses:

    RAM:   [==        ]  15.2% (used 39880 bytes from 262144 bytes)
    Flash: [=         ]   5.9% (used 58200 bytes from 983040 bytes)

Project options (platformio.ini, written by mcuquant.build.project):
    custom_cpu_flags     compiler and linker flags of the core, e.g. -mcpu=cortex-m4 -mthumb ...
    custom_ldscript      linker script, relative to the project folder
    custom_flash_bytes   the board's flash and RAM limits, for the report (the linker script
    custom_ram_bytes     already enforces them)
    custom_toolchain     prefix of the tools (default: arm-none-eabi-)
build_flags, build_unflags and build_src_filter work as usual.
"""

import os
import shutil
import subprocess
import sys

from SCons.Script import AlwaysBuild, Default, DefaultEnvironment

env = DefaultEnvironment()


def _option(name, default=None):
    value = env.GetProjectOption(name, default)
    if value is None or (isinstance(value, str) and not value.strip()):
        sys.stderr.write(f"Error: platformio.ini lacks `{name}`; regenerate the project with mcuquant\n")
        env.Exit(1)
    return value


prefix = _option("custom_toolchain", "arm-none-eabi-").strip()
for tool in ("gcc", "g++", "size"):
    if shutil.which(prefix + tool) is None:
        sys.stderr.write(
            f"Error: {prefix}{tool} not found on PATH; install the Arm GNU toolchain "
            "(Debian: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi "
            "libstdc++-arm-none-eabi-newlib, or `make setup`)\n"
        )
        env.Exit(1)

cpu_flags = _option("custom_cpu_flags").split()
ldscript = os.path.join(env.subst("$PROJECT_DIR"), _option("custom_ldscript").strip())
if not os.path.isfile(ldscript):
    sys.stderr.write(f"Error: linker script {ldscript} not found; regenerate the project with mcuquant\n")
    env.Exit(1)
flash_limit = int(_option("custom_flash_bytes"))
ram_limit = int(_option("custom_ram_bytes"))

env.Replace(
    AR=prefix + "gcc-ar",
    AS=prefix + "gcc",
    CC=prefix + "gcc",
    CXX=prefix + "g++",
    LINK=prefix + "g++",  # g++ so that a C++ backend links its runtime support; C-only is unaffected
    OBJCOPY=prefix + "objcopy",
    RANLIB=prefix + "gcc-ranlib",
    SIZETOOL=prefix + "size",
    PROGNAME="firmware",
    PROGSUFFIX=".elf",
)
env.Append(
    ASFLAGS=cpu_flags,
    CCFLAGS=cpu_flags + ["-O2", "-g", "-ffunction-sections", "-fdata-sections", "-Wall", "-Wextra"],
    CFLAGS=["-std=c99"],
    # No exceptions, RTTI or atexit registration: nothing on the firmware needs them, and
    # static destructors never run (the emulator ends through semihosting).
    CXXFLAGS=["-std=gnu++17", "-fno-exceptions", "-fno-rtti", "-fno-use-cxa-atexit", "-fno-threadsafe-statics"],
    LINKFLAGS=cpu_flags
    + [
        "-nostartfiles",  # firmware/hal/mps2/startup_mps2.c is the start-up code
        "--specs=nano.specs",
        "-Wl,--gc-sections",
        "-Wl,-Map=" + os.path.join(env.subst("$BUILD_DIR"), "firmware.map"),
        "-T",
        ldscript,
    ],
    LIBS=["m"],
)

# Flash holds code, constants and the initial values of .data; RAM holds the stack, .data and
# .bss (section names as in templates/mps2.ld.j2).
FLASH_SECTIONS = (".text", ".ARM.extab", ".ARM.exidx", ".data")
RAM_SECTIONS = (".stack", ".data", ".bss")


def _usage_line(used, total):
    share = used / total if total else 0.0
    blocks = min(int(round(10 * share)), 10)
    return "[{:10}] {: 6.1%} (used {:d} bytes from {:d} bytes)".format("=" * blocks, share, used, total)


def print_size(target, source, env):  # noqa: ARG001 (SCons action signature)
    elf = str(source[0])
    out = subprocess.run([prefix + "size", "-A", "-d", elf], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.stderr.write(f"Error: {prefix}size failed on {elf}: {out.stderr.strip()}\n")
        return 1
    sizes = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sizes[parts[0]] = int(parts[1])
    flash = sum(sizes.get(name, 0) for name in FLASH_SECTIONS)
    ram = sum(sizes.get(name, 0) for name in RAM_SECTIONS)
    print("RAM:   " + _usage_line(ram, ram_limit))
    print("Flash: " + _usage_line(flash, flash_limit))
    return 0


program = env.BuildProgram()
size_report = env.Alias("mcuquant_size", program, env.VerboseAction(print_size, "Flash and RAM use of $PIOMAINPROG (board limits):"))
AlwaysBuild(size_report)
Default([program, size_report])
