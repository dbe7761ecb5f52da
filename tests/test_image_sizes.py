"""Flash and RAM read from a linked image's sections (mcuquant.build.image), heap and stack apart.

The images are linked here by arm-none-eabi-gcc with a linker script laid out as the nano33's mbed
core lays out its RAM: .data, .bss, then a .heap section that takes all the RAM left and a stack
region at the top. A size line that summed every RAM section would read that board as full.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from mcuquant.build.image import image_sizes
from mcuquant.errors import BuildError

pytestmark = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")

RAM_BYTES = 256 * 1024
STACK_BYTES = 32 * 1024

PROGRAM = r"""
const unsigned char table[3000] = {1, 2, 3};    /* .rodata: flash */
unsigned char state[100] = {7};                 /* .data: RAM, and flash for its initial values */
unsigned char arena[20000];                     /* .bss: RAM */
int main(void) { return table[2] + state[0] + arena[5]; }
void _start(void) { main(); for (;;) {} }
"""

# As mbed's linker script for the nRF52840: the heap runs from the end of .bss up to the stack.
LINKER_SCRIPT = f"""
MEMORY {{ FLASH (rx) : ORIGIN = 0x0, LENGTH = 1024K
         RAM (rwx) : ORIGIN = 0x20000000, LENGTH = {RAM_BYTES} }}
ENTRY(_start)
SECTIONS {{
  .text : {{ *(.text*) *(.rodata*) }} > FLASH
  .data : {{ *(.data*) }} > RAM AT > FLASH
  .bss (NOLOAD) : {{ *(.bss*) *(COMMON) }} > RAM
  .heap (NOLOAD) : {{ __end__ = .; . = ORIGIN(RAM) + LENGTH(RAM) - {STACK_BYTES}; __HeapLimit = .; }} > RAM
  .stack_dummy (NOLOAD) : {{ . = . + {STACK_BYTES}; }} > RAM
}}
"""


@pytest.fixture(scope="module")
def mbed_like_elf(tmp_path_factory):
    d = tmp_path_factory.mktemp("image")
    (d / "main.c").write_text(PROGRAM)
    (d / "link.ld").write_text(LINKER_SCRIPT)
    elf = d / "firmware.elf"
    subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-O1", "-nostdlib", "-T", str(d / "link.ld"),
                    str(d / "main.c"), "-o", str(elf)], check=True, capture_output=True)
    return elf


def test_heap_and_stack_reservations_are_apart_from_the_firmware_use(mbed_like_elf):
    sizes = image_sizes(mbed_like_elf)
    kinds = {name: kind for name, _, kind in sizes.sections}
    assert kinds[".heap"] == "heap" and kinds[".stack_dummy"] == "stack" and kinds[".bss"] == "ram"
    assert kinds[".data"] == "ram+flash" and kinds[".text"] == "flash"
    assert sizes.stack == STACK_BYTES
    # The heap takes what .data, .bss and the stack leave: counted in, the board would look full.
    assert sizes.ram + sizes.heap + sizes.stack == RAM_BYTES
    assert 20_100 <= sizes.ram < 21_000  # the 20,000-byte arena and the 100 bytes of state, aligned
    assert 3_100 <= sizes.flash < 4_000  # the table, the code, the initial values of state


def test_a_file_that_is_not_an_elf_is_a_build_error(tmp_path):
    bad = tmp_path / "firmware.elf"
    bad.write_bytes(b"not an ELF file")
    with pytest.raises(BuildError, match="cannot read the firmware image"):
        image_sizes(bad)
