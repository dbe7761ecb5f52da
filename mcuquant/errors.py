"""The exceptions mcuquant raises.

Every error a user can cause derives from :class:`McuquantError`; the CLI prints those as one
line (the message carries the fix) and anything else with a traceback.
"""


class McuquantError(Exception):
    """Root of every error mcuquant raises on purpose."""


class ConfigError(McuquantError):
    """A bad project file, flag or option value."""


class DatasetError(McuquantError):
    """Data that cannot be used: unreadable, NaN/inf, wrong shape or dtype, labels that don't fit."""


class ModelError(McuquantError):
    """A model that cannot be loaded, trained, quantized or converted."""


class UnsupportedOpError(ModelError):
    """A model uses an operator or option the chosen backend does not support."""


class TransportError(McuquantError):
    """The link to a board or emulator failed: timeout, bad frame, closed port."""


class DeviceMismatchError(McuquantError):
    """The board runs something other than what is being evaluated (e.g. a different model hash)."""


class BuildError(McuquantError):
    """The firmware could not be built."""


class FirmwareTooLargeError(BuildError):
    """The firmware does not fit the board: ``region`` ("flash" or "RAM") needs ``required`` bytes
    and the board has ``available``."""

    def __init__(self, message: str, region: str, required: int, available: int):
        super().__init__(message)
        self.region, self.required, self.available = region, required, available
