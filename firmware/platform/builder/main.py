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
    custom_tflm_dir      (tflm backend only) absolute path of a TensorFlow Lite Micro Arduino
                         library folder (library.properties, src/tensorflow/...); its sources
                         are compiled into a static library here, see _build_tflm()
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


# TensorFlow Lite Micro, for the tflm backend. PlatformIO's library manager would refuse the
# Arduino library here (no Arduino framework) and would compile all of its src/, including
# board peripherals that need Arduino.h, so the builder compiles the TFLM part itself.
TFLM_MARKER = os.path.join("tensorflow", "lite", "micro", "micro_interpreter.h")
TFLM_DEFINES = ["ARDUINO", "TF_LITE_STATIC_MEMORY", "TF_LITE_STRIP_ERROR_STRINGS"]
# Kernels: only those of the ops the tflm backend can register (firmware/app/backend_tflm.cpp,
# MQ_TFLM_ADD_*; keep both lists in step), each as <stem>.cpp, <stem>_common.cpp and the CMSIS-NN
# cmsis_nn/<stem>.cpp, whichever exist. The other ~90 kernel files would double the build time
# (every TFLM source parses ~100k lines of headers) and some do not even assemble for every core
# (gcc 12.2 emits an invalid vcvtne for resize_nearest_neighbor.cpp on Cortex-M55).
TFLM_KERNELS = (
    "activations", "add", "concatenation", "conv", "depthwise_conv", "dequantize", "fully_connected",
    "hard_swish", "logistic", "mul", "pad", "pooling", "quantize", "reduce", "reshape", "softmax",
    "tanh",
    "kernel_util", "micro_tensor_utils",  # helpers the kernels share
)  # fmt: skip
TFLM_SRC_FILTER = [
    "-<*>",
    "+<tensorflow/lite/>",
    "+<third_party/cmsis_nn/Source/>",
    "-<tensorflow/lite/experimental/>",  # audio front end (+ kissfft): not an inference kernel
    "-<tensorflow/lite/micro/kernels/>",
    *(f"+<tensorflow/lite/micro/kernels/{d}{stem}{suffix}.cpp>"
      for stem in TFLM_KERNELS for d, suffix in (("", ""), ("", "_common"), ("cmsis_nn/", ""))),
    "-<tensorflow/lite/micro/all_ops_resolver.cpp>",  # would reference every kernel
    # test-only helpers
    "-<tensorflow/lite/micro/test_helpers.cpp>",
    "-<tensorflow/lite/micro/test_helper_custom_ops.cpp>",
    "-<tensorflow/lite/micro/fake_micro_context.cpp>",
    "-<tensorflow/lite/micro/mock_micro_graph.cpp>",
]


def _build_tflm(tflm_dir):
    """Compile the TFLM Arduino library at ``tflm_dir`` into a static library, make its headers
    visible to the project and link tflm_support.cpp (what TFLM needs from the C and C++ runtime
    libraries on these bare-metal boards).

    Defines go to every source, library and project alike, so that both see the same declarations
    and struct layouts: ARDUINO, the macro the Arduino library's headers test to declare its
    CMSIS-NN kernel variants (Register_CONV_2D_INT8() ...); TF_LITE_STATIC_MEMORY, as TFLM's own
    builds (and the tflite-micro host interpreter) use it: smaller tensor structs, no malloc; and
    TF_LITE_STRIP_ERROR_STRINGS: the library's only DebugLog() prints to the Arduino core's
    Serial, which does not exist here (and would be the protocol link if it did). The headers come
    in with -isystem and the library is compiled with -w: TFLM's warnings are not the firmware's.
    The library has no debug information either: each of its ~70 C++ sources parses ~100k lines
    of headers, and -g costs a fifth of the build time.
    """
    src = os.path.join(tflm_dir, "src")
    if not os.path.isfile(os.path.join(src, TFLM_MARKER)):
        sys.stderr.write(
            f"Error: custom_tflm_dir {tflm_dir} is not a TensorFlow Lite Micro Arduino library "
            f"(no src/{TFLM_MARKER}); point MCUQUANT_TFLM_DIR at a checkout of "
            "https://github.com/tensorflow/tflite-micro-arduino-examples\n"
        )
        env.Exit(1)
    env.Append(CPPDEFINES=TFLM_DEFINES, CCFLAGS=["-isystem", src])
    lib_env = env.Clone()
    # gcc 12.2 (Debian's arm-none-eabi-gcc) crashes compiling CMSIS-NN's MVE code
    # (arm_softmax_s8.c: internal compiler error in trunc_int_for_mode): on the Cortex-M55 the
    # library is built without MVE, so CMSIS-NN takes its DSP paths there.
    lib_env.Replace(CCFLAGS=[
        "-mcpu=cortex-m55+nomve" if f == "-mcpu=cortex-m55" else f
        for f in lib_env["CCFLAGS"] if f not in ("-Wall", "-Wextra", "-g")
    ] + ["-w"])  # fmt: skip
    env.Prepend(LIBS=[lib_env.BuildLibrary(os.path.join("$BUILD_DIR", "tflm"), src, TFLM_SRC_FILTER)])
    builder_dir = os.path.join(env.PioPlatform().get_dir(), "builder")
    env.BuildSources(os.path.join("$BUILD_DIR", "tflm_support"), builder_dir, ["-<*>", "+<tflm_support.cpp>"])


tflm_dir = env.GetProjectOption("custom_tflm_dir", "").strip()
if tflm_dir:
    _build_tflm(tflm_dir)

program = env.BuildProgram()
size_report = env.Alias("mcuquant_size", program, env.VerboseAction(print_size, "Flash and RAM use of $PIOMAINPROG (board limits):"))
AlwaysBuild(size_report)
Default([program, size_report])
