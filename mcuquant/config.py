"""The project file `mcuquant.toml`: what to train, on which data, how to quantize, for which board.

Every key has a default, so the file is optional; every CLI flag overrides one key. Validation
happens before any work and names the bad key, the allowed values and where the value came from
(the file or a flag). Example::

    [model]
    source = "zoo:cnn"          # zoo:mlp | zoo:cnn | zoo:dscnn | zoo:resnet8 | path to .keras/.h5/SavedModel

    [data]
    source = "builtin:digits"   # builtin:digits | file.npz | file.csv | folder of class folders
    split = [0.6, 0.2, 0.2]     # train / validation / test
    seed = 0

    [training]
    epochs = 30                 # omit: 30 for zoo models, 0 (keep the weights) for your own model
    qat_epochs = 3

    [quantization]
    representative_samples = 200

    [target]
    board = "qemu-nano33"
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcuquant.errors import ConfigError

DEFAULT_FILE = "mcuquant.toml"


@dataclass(frozen=True)
class ModelConfig:
    source: str = "zoo:cnn"
    width: float = 1.0  # zoo models: multiplies every layer's channel count


@dataclass(frozen=True)
class DataConfig:
    source: str = "builtin:digits"
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    seed: int = 0
    normalize: str = "minmax"
    task: str = "auto"
    label_column: int | str = -1  # CSV only: index or header name
    image_size: tuple[int, int] | None = None  # image folders only: (height, width)
    # task "anomaly" on a labelled source: the classes (labels as in the data) that are normal;
    # None: the first class in sorted order
    normal_classes: tuple[int | str, ...] | None = None

    def load(self, source: str | None = None):
        """The split data set of ``source`` (default: this config's), loaded with these options."""
        from mcuquant.data import load_dataset

        return load_dataset(self.source if source is None else source, split=self.split, seed=self.seed,
                            normalize=self.normalize, task=self.task, label_column=self.label_column,
                            image_size=self.image_size, normal_classes=self.normal_classes)


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int | None = None  # None: 30 for zoo models, 0 for user models (already trained)
    qat_epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 1e-3
    qat_learning_rate: float = 1e-4
    patience: int = 5  # early stopping on validation loss
    seed: int = 0


@dataclass(frozen=True)
class QuantizationConfig:
    representative_samples: int = 200  # drawn from the train split
    per_channel: bool = True
    int16x8: bool = False  # also convert and evaluate a 16-bit-activation model (ptq16x8 rungs)


@dataclass(frozen=True)
class TargetConfig:
    board: str = "qemu-nano33"


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    target: TargetConfig = field(default_factory=TargetConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Keys whose values are restricted to a set of words.
CHOICES: dict[str, tuple[str, ...]] = {
    "data.normalize": ("minmax", "standard", "none"),
    "data.task": ("auto", "classification", "regression", "anomaly"),
}

# Range checks: key -> (predicate, what the value must be).
CHECKS: dict[str, tuple[typing.Callable[[Any], bool], str]] = {
    "model.width": (lambda v: 0 < v <= 16, "a number in (0, 16]"),
    "data.split": (
        lambda v: len(v) == 3 and all(f >= 0 for f in v) and abs(sum(v) - 1) < 1e-6 and v[0] > 0 and v[2] > 0,
        "three fractions [train, validation, test] that sum to 1, with train and test > 0",
    ),
    "data.image_size": (lambda v: v is None or (len(v) == 2 and min(v) > 0), "[height, width] in pixels"),
    "data.seed": (lambda v: 0 <= v < 2**32, "an integer in [0, 2**32)"),
    "training.epochs": (lambda v: v is None or v >= 0, "an integer >= 0"),
    "training.qat_epochs": (lambda v: v >= 1, "an integer >= 1 (QAT learns its activation ranges while training)"),
    "training.batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "training.learning_rate": (lambda v: 0 < v < float("inf"), "a finite number > 0"),
    "training.qat_learning_rate": (lambda v: 0 < v < float("inf"), "a finite number > 0"),
    "training.patience": (lambda v: v >= 1, "an integer >= 1"),
    "training.seed": (lambda v: 0 <= v < 2**32, "an integer in [0, 2**32)"),
    "quantization.representative_samples": (lambda v: v >= 1, "an integer >= 1"),
}

def _section_classes() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def _suggest(word: str, options: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def _coerce(key: str, value: Any, hint: Any, origin: str) -> Any:
    """Check `value` against the annotated type `hint`; return it in the dataclass's form."""
    def fail(expected: str) -> typing.NoReturn:
        raise ConfigError(f"{origin}: {key} must be {expected}, got {value!r}")

    origin_type = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin_type in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg, origin)
            except ConfigError:
                continue  # try the next member of the union
        fail(" or ".join(_type_word(a) for a in args if a is not type(None)))
    if origin_type is tuple and args[-1] is Ellipsis:  # tuple[X, ...]: a list of any length
        if not isinstance(value, (list, tuple)):
            fail(f"a list of values, each {_type_word(args[0])}")
        return tuple(_coerce(key, v, args[0], origin) for v in value)
    if origin_type is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            fail(f"a list of {len(args)} values, each {_type_word(args[0])}")
        return tuple(_coerce(key, v, a, origin) for v, a in zip(value, args))
    if hint is bool:
        if not isinstance(value, bool):
            fail("true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail("an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail("a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            fail("a string")
        return value
    raise TypeError(f"unhandled config type {hint!r} for {key}")  # a bug in this module, not user input


def _takes_any_length(hint: Any) -> bool:
    """Whether `hint` is tuple[X, ...] (or that or None): a list of any length."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_takes_any_length(a) for a in typing.get_args(hint))
    return typing.get_origin(hint) is tuple and typing.get_args(hint)[-1] is Ellipsis


def _type_word(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_word(a) for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        return f"a list of {'values' if args[-1] is Ellipsis else f'{len(args)} values'}, each {_type_word(args[0])}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(hint, str(hint))


def _parse_value(key: str, text: str) -> Any:
    """A CLI override arrives as text: read it as TOML so `--split 0.7,0.1,0.2` and `--seed 3` work."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        if "," in text:
            return [_parse_value(key, part.strip()) for part in text.split(",")]
        return text  # a bare word, e.g. a path or a choice


def build_config(file_values: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None,
                 *, source: str = DEFAULT_FILE, flag_names: dict[str, str] | None = None) -> Config:
    """Validate nested `file_values` (as read from TOML) and dotted `overrides` into a Config.

    `overrides` maps "section.key" to a value (or to text from a CLI flag, which is parsed);
    `flag_names` maps "section.key" to the CLI flag that set it, so errors name the flag.
    """
    sections = _section_classes()
    merged: dict[str, dict[str, tuple[Any, str]]] = {name: {} for name in sections}
    for section, table in (file_values or {}).items():
        if section not in sections:
            raise ConfigError(f"{source}: unknown section [{section}].{_suggest(section, sections)} "
                              f"Allowed sections: {', '.join(sections)}")
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{section}] must be a table of keys")
        for key, value in table.items():
            merged[section][key] = (value, source)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        if section not in sections:
            raise ConfigError(f"unknown override '{dotted}'.{_suggest(section, sections)} "
                              f"Allowed sections: {', '.join(sections)}")
        if isinstance(value, str) and typing.get_type_hints(sections[section]).get(key) is not str:
            value = _parse_value(dotted, value)  # text for a str key (a path, a board) stays as given
            if _takes_any_length(typing.get_type_hints(sections[section]).get(key)) and not isinstance(value, list):
                value = [value]  # `--normal-classes 0`: a list of one
        merged[section][key] = (value, (flag_names or {}).get(dotted, f"override {dotted}"))

    built = {}
    for section, cls in sections.items():
        hints = typing.get_type_hints(cls)
        values = {}
        for key, (value, origin) in merged[section].items():
            dotted = f"{section}.{key}"
            if key not in hints:
                raise ConfigError(f"{origin}: unknown key '{dotted}'.{_suggest(key, hints)} "
                                  f"Allowed keys in [{section}]: {', '.join(hints)}")
            value = _coerce(dotted, value, hints[key], origin)
            if dotted in CHOICES and value not in CHOICES[dotted]:
                raise ConfigError(f"{origin}: {dotted} must be one of {', '.join(CHOICES[dotted])}; "
                                  f"got {value!r}.{_suggest(str(value), CHOICES[dotted])}")
            if dotted in CHECKS and not CHECKS[dotted][0](value):
                raise ConfigError(f"{origin}: {dotted} must be {CHECKS[dotted][1]}; got {value!r}")
            if dotted == "target.board":  # every command naming a board refuses an unknown one before work
                from mcuquant.boards import get_board

                try:
                    get_board(value)
                except ConfigError as exc:
                    raise ConfigError(f"{origin}: {exc}") from None
            values[key] = value
        built[section] = cls(**values)
    return Config(**built)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                flag_names: dict[str, str] | None = None) -> Config:
    """Read `path` (default: ./mcuquant.toml when it exists) and apply `overrides`.

    An explicitly given path must exist; the default file is optional.
    """
    if path is None:
        path = Path(DEFAULT_FILE)
        if not path.exists():
            return build_config({}, overrides, flag_names=flag_names)
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found; create it or drop --config to use the defaults") from None
    except (OSError, UnicodeDecodeError) as exc:  # a folder, no permission, not UTF-8 text
        raise ConfigError(f"cannot read config file {path}: {exc}; give a UTF-8 TOML file") from None
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return build_config(values, overrides, source=str(path), flag_names=flag_names)
