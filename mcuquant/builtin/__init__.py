"""mcuquant's builtin int8 runtime (C99, firmware/runtime/) seen from Python.

- :mod:`mcuquant.builtin.sources`: where the C sources are (checkout or installed package)
- :mod:`mcuquant.builtin.host`: host build (gcc) and :class:`HostRuntime`, the ``builtin-host`` rung
- :mod:`mcuquant.builtin.cross`: the arm-none-eabi build check, code size and device arena size
- :mod:`mcuquant.builtin.emulated`: any model on an emulated Cortex-M core (QEMU, semihosting runner)
"""
