"""Flash and RAM of a linked firmware, read from its ELF sections (pyelftools), not from a size line.

Build tools print one "RAM" figure whose meaning depends on the linker script: the mbed core of the
nano33 gives all remaining RAM to a ``.heap`` section, STM32duino reserves ``._user_heap_stack``, our
mps2 script a ``.stack``. Read from the sections, the firmware's own use (code and constants in
flash; ``.data``, ``.bss`` and the like in RAM) is kept apart from what the linker script merely
reserves for a heap or the stack.

Classification of every allocated, non-empty section:
- a name with ``heap`` in it: heap reservation; with ``stack`` (and no ``heap``): stack reservation;
- not written at run time (code, constants, exception tables): flash;
- written and with contents (``.data``): RAM, and flash for its initial values;
- written and without contents (``.bss``, ``.noinit``): RAM.
Code that a core runs from RAM (ESP32's IRAM, ``.ramfunc``) counts as flash only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mcuquant.errors import BuildError

_SHF_WRITE, _SHF_ALLOC = 0x1, 0x2


@dataclass(frozen=True)
class ImageSizes:
    flash: int  # bytes in flash: code, constants, initial values of .data
    ram: int  # static RAM the firmware itself uses (.data, .bss, ...), without the reservations below
    heap: int  # RAM the linker script reserves for a heap (0: none)
    stack: int  # RAM it reserves for the stack (0: none named)
    sections: tuple[tuple[str, int, str], ...]  # (name, bytes, "flash" | "ram" | "ram+flash" | "heap" | "stack")


def _kind(name: str, flags: int, nobits: bool) -> str:
    lowered = name.lower()
    if "heap" in lowered:
        return "heap"
    if "stack" in lowered:
        return "stack"
    if not flags & _SHF_WRITE:
        return "flash"
    return "ram" if nobits else "ram+flash"


def image_sizes(elf: str | Path) -> ImageSizes:
    """The sizes of the linked firmware ``elf``; BuildError if it cannot be read as an ELF."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    path = Path(elf)
    sections = []
    try:
        with path.open("rb") as f:
            for s in ELFFile(f).iter_sections():
                flags, size = s["sh_flags"], s["sh_size"]
                if not flags & _SHF_ALLOC or size == 0:
                    continue
                sections.append((s.name, size, _kind(s.name, flags, s["sh_type"] == "SHT_NOBITS")))
    except (OSError, ELFError) as exc:
        raise BuildError(f"cannot read the firmware image {path}: {exc}") from exc
    total = {k: sum(n for _, n, kind in sections if kind == k) for k in ("flash", "ram", "ram+flash", "heap", "stack")}
    return ImageSizes(flash=total["flash"] + total["ram+flash"], ram=total["ram"] + total["ram+flash"],
                      heap=total["heap"], stack=total["stack"], sections=tuple(sections))
