"""Datasets: load, validate, split and normalize the data every later stage trains and measures on.

Sources accepted by :func:`load_dataset`:

- ``builtin:digits``: sklearn's ``load_digits`` (ships with scikit-learn, works offline):
  1797 8x8 images with raw values 0..16, shaped (N, 8, 8, 1), classes "0".."9".
- ``file.npz`` with arrays ``x`` (N, ...) and ``y`` (N,). A 3-D ``x`` (N, H, W) is taken as
  single-channel images and gets a trailing channel axis, (N, H, W, 1), because conv layers need one.
- ``file.csv``: numeric feature columns plus one label column (``label_column``, default last).
  The first row is a header when none of its cells is a number. Comma-separated, UTF-8.
- a folder with one sub-folder per class holding .png/.jpg/.jpeg/.bmp images (other files are
  ignored). Class names are the sorted folder names. Grayscale images stay one channel; if any
  image has colour, every image is converted to RGB (3 channels) so no colour is thrown away.

Labels: text labels are classes (sorted). With ``task="auto"`` integer labels mean classification,
float labels regression, except float labels that are all whole numbers with at most
:data:`MAX_AUTO_CLASSES` distinct values, which are classification too (pass
``task="regression"`` for integer targets). Classification labels are re-coded 0..K-1 in sorted
order of their original values; ``class_names`` keeps the originals. ``y`` of shape (N, 1) is
flattened to (N,).

Splitting is deterministic in ``seed``: the validation and test counts are rounded up, as sklearn
does, and train gets the rest (builtin:digits with the defaults: 1077 / 360 / 360). Each split
is stratified when sklearn can (every class has >= 2 samples and each part can hold one sample per
class); otherwise that split quietly falls back to a plain shuffled one. Normalization statistics
come from the train split only and are applied identically to all three splits.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mcuquant.errors import DatasetError

NORMALIZE_METHODS = ("minmax", "standard", "none")
TASKS = ("auto", "classification", "regression")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
# task="auto": float labels that are all whole numbers are classes when there are at most this many.
MAX_AUTO_CLASSES = 256
_FORMAT = "mcuquant-dataset"
_FORMAT_VERSION = 1
_ARRAYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
_SOURCES_HELP = (
    "give builtin:NAME (builtins: {builtins}), a .npz file with arrays x and y, a .csv file, "
    "or a folder with one sub-folder of images per class"
)


# --------------------------------------------------------------------------------------------
# Normalization


@dataclass(frozen=True)
class Normalization:
    """``model_input = (raw - offset) / scale`` with scalar offset and scale.

    Both are float32 values (kept as Python floats) and :meth:`apply` computes in float32, so a
    device doing the same two float32 operations gets bit-identical inputs.
    """

    method: str
    offset: float
    scale: float

    def __post_init__(self) -> None:
        if self.method not in NORMALIZE_METHODS:
            raise DatasetError(f"unknown normalization {self.method!r}; use one of {', '.join(NORMALIZE_METHODS)}")
        if not (math.isfinite(self.offset) and math.isfinite(self.scale)) or self.scale == 0:
            raise DatasetError(
                f"normalization needs a finite offset and a finite non-zero scale, got "
                f"offset={self.offset}, scale={self.scale}"
            )

    @classmethod
    def fit(cls, method: str, x: np.ndarray) -> Normalization:
        """Compute the statistics of ``method`` over all values of ``x`` (the train split).

        minmax: offset = min, scale = max - min. standard: offset = mean, scale = population std.
        none: offset 0, scale 1. Constant data (scale 0) gets scale 1 so nothing divides by zero.
        """
        if method == "none":
            return cls("none", 0.0, 1.0)
        values = np.asarray(x, dtype=np.float32)
        if method == "minmax":
            low = float(values.min())
            offset, scale = low, float(values.max()) - low
        elif method == "standard":
            offset, scale = float(values.mean(dtype=np.float64)), float(values.std(dtype=np.float64))
        else:
            raise DatasetError(f"unknown normalization {method!r}; use one of {', '.join(NORMALIZE_METHODS)}")
        offset, scale = float(np.float32(offset)), float(np.float32(scale))
        return cls(method, offset, scale if scale != 0 else 1.0)

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Return ``(raw - offset) / scale`` as float32, computed in float32."""
        return (np.asarray(raw, dtype=np.float32) - np.float32(self.offset)) / np.float32(self.scale)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "offset": self.offset, "scale": self.scale}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalization:
        try:
            return cls(str(d["method"]), float(d["offset"]), float(d["scale"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(
                f"bad normalization record {d!r}: needs method, offset and scale ({exc})"
            ) from None


# --------------------------------------------------------------------------------------------
# Dataset


@dataclass(eq=False)
class Dataset:
    """Three normalized splits plus everything needed to reproduce them.

    x arrays are float32 and already normalized; y is int64 class indices (classification) or
    float32 targets (regression). ``split`` is the (train, validation, test) fractions used.
    """

    name: str
    task: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    normalization: Normalization
    class_names: list[str] | None
    seed: int
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)

    def __post_init__(self) -> None:
        self.split = tuple(float(f) for f in self.split)
        if self.class_names is not None:
            self.class_names = [str(c) for c in self.class_names]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one sample."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int | None:
        return len(self.class_names) if self.task == "classification" and self.class_names is not None else None

    def __eq__(self, other: object) -> bool:
        # The generated dataclass __eq__ would compare arrays with ==, which numpy cannot reduce to a bool.
        if not isinstance(other, Dataset):
            return NotImplemented
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if not (
                    isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
                    and a.dtype == b.dtype and np.array_equal(a, b)
                ):
                    return False
            elif a != b:
                return False
        return True

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description (no arrays) for reports and logs."""
        return {
            "name": self.name,
            "task": self.task,
            "n_train": len(self.x_train),
            "n_val": len(self.x_val),
            "n_test": len(self.x_test),
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "normalization": self.normalization.to_dict(),
            "seed": self.seed,
            "split": list(self.split),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write one .npz (exactly at ``path``) holding the six arrays and a JSON metadata string."""
        path = Path(path)
        meta = {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "name": self.name,
            "task": self.task,
            "normalization": self.normalization.to_dict(),
            "class_names": self.class_names,
            "seed": self.seed,
            "split": list(self.split),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        # Writing through a file object stops numpy from appending ".npz" to the name.
        with open(path, "wb") as f:
            np.savez_compressed(f, metadata=np.array(json.dumps(meta)), **{k: getattr(self, k) for k in _ARRAYS})
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Dataset:
        """Read a file written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise DatasetError(f"no saved dataset at {path}; write one with Dataset.save() first")
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            meta = json.loads(str(arrays.pop("metadata")[()]))
        except (OSError, ValueError, KeyError) as exc:
            raise DatasetError(f"{path} is not a dataset saved by mcuquant ({exc}); re-create it") from None
        if meta.get("format") != _FORMAT or meta.get("version") != _FORMAT_VERSION:
            raise DatasetError(
                f"{path} holds format {meta.get('format')!r} version {meta.get('version')!r}; "
                f"expected {_FORMAT!r} version {_FORMAT_VERSION}: re-create it with this mcuquant"
            )
        missing = [k for k in _ARRAYS if k not in arrays]
        if missing:
            raise DatasetError(f"{path} lacks arrays {missing}; re-create it")
        return cls(
            name=meta["name"],
            task=meta["task"],
            normalization=Normalization.from_dict(meta["normalization"]),
            class_names=meta["class_names"],
            seed=meta["seed"],
            split=tuple(meta["split"]),
            **{k: arrays[k] for k in _ARRAYS},
        )


# --------------------------------------------------------------------------------------------
# Validation


def check_array(x: Any, *, what: str) -> None:
    """Raise :class:`DatasetError` unless ``x`` is a non-empty array of finite real numbers.

    Messages name ``what``, how many values are bad and the first sample (index along axis 0)
    holding one, plus the fix.
    """
    x = np.asarray(x)
    if x.ndim == 0:
        raise DatasetError(f"{what} is a single value, not an array of samples; give an array of shape (N, ...)")
    if x.size == 0:
        raise DatasetError(f"{what} is empty (shape {x.shape}); the data source holds no samples")
    if x.dtype.kind in "OUS":
        flat = x.ravel().tolist()  # Python objects, so the message shows 'a', not np.str_('a')
        bad = [i for i, v in enumerate(flat) if not _is_number(v)]
        where = (
            f"{len(bad)} values are not numbers (first in sample {_sample_of(bad[0], x.shape)}: {flat[bad[0]]!r})"
            if bad else "all values are text"
        )
        raise DatasetError(
            f"{what} has dtype {x.dtype} and {where}; {what} must be numeric: fix those values and "
            f"store it as numbers (e.g. array.astype('float32'))"
        )
    if x.dtype.kind not in "biuf":
        raise DatasetError(f"{what} has dtype {x.dtype}; {what} must hold real numbers (int or float)")
    if x.dtype.kind == "f":
        nan, inf = np.isnan(x), np.isinf(x)
        n_nan, n_inf = int(nan.sum()), int(inf.sum())
        if n_nan or n_inf:
            counts = " and ".join(f"{n} {kind}" for n, kind in ((n_nan, "NaN"), (n_inf, "infinite")) if n)
            first = int(np.argmax((nan | inf).reshape(len(x), -1).any(axis=1)))
            raise DatasetError(
                f"{what} has {counts} values (first in sample {first}); clean or impute them before training"
            )


def _is_number(v: Any) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def _sample_of(flat_index: int, shape: tuple[int, ...]) -> int:
    return int(np.unravel_index(flat_index, shape)[0])


# --------------------------------------------------------------------------------------------
# Sources


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images[..., np.newaxis], digits.target


_BUILTINS: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] = {"digits": _load_digits}


def _sources_help() -> str:
    return _SOURCES_HELP.format(builtins=", ".join(sorted(_BUILTINS)))


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.files)
            if "x" not in keys or "y" not in keys:
                raise DatasetError(
                    f"{path} holds arrays {keys}; expected arrays named 'x' (samples) and 'y' (labels): "
                    f"save with np.savez(path, x=..., y=...)"
                )
            return npz["x"], npz["y"]
    except (OSError, ValueError) as exc:
        # allow_pickle=False: object arrays (and non-npz files numpy takes for pickles) are refused, never unpickled.
        raise DatasetError(
            f"cannot read {path} as .npz ({exc}); save it with np.savez(path, x=..., y=...) "
            f"holding numeric arrays (text labels are fine), not Python objects"
        ) from None


def _read_csv(path: Path, label_column: int | str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            rows = [(reader.line_num, [c.strip() for c in row]) for row in reader if any(c.strip() for c in row)]
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path} is not UTF-8 text ({exc}); save the CSV as UTF-8") from None
    except (OSError, csv.Error) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None
    if not rows:
        raise DatasetError(f"{path} has no rows; the CSV needs feature columns and a label column")

    header = rows[0][1] if not any(_is_number(c) for c in rows[0][1]) else None
    data = rows[1:] if header is not None else rows
    if not data:
        raise DatasetError(f"{path} has a header but no data rows")
    width = len(rows[0][1])
    if width < 2:
        raise DatasetError(f"{path} has {width} column; it needs at least one feature column and a label column")
    for line, cells in data:
        if len(cells) != width:
            raise DatasetError(
                f"{path} line {line} has {len(cells)} cells, expected {width} like line {rows[0][0]}; "
                f"every row needs the same columns"
            )

    label = _label_index(path, label_column, header, width)
    features = [i for i in range(width) if i != label]
    x = np.empty((len(data), len(features)), dtype=np.float64)
    for r, (line, cells) in enumerate(data):
        for c, col in enumerate(features):
            try:
                x[r, c] = float(cells[col])
            except ValueError:
                name = f" ({header[col]!r})" if header else ""
                raise DatasetError(
                    f"{path} line {line}, column {col + 1}{name}: {cells[col]!r} is not a number; "
                    f"feature columns must be numeric: fix or drop that row"
                ) from None

    for line, cells in data:
        if not cells[label]:
            raise DatasetError(
                f"{path} line {line} has an empty label (column {label + 1}); fill it in or drop the row"
            )
    return x, _parse_labels([cells[label] for _, cells in data])


def _label_index(path: Path, label_column: int | str, header: list[str] | None, width: int) -> int:
    if isinstance(label_column, str):
        if header is None:
            raise DatasetError(
                f"label_column={label_column!r} names a column but {path} has no header row; "
                f"give the column's index instead"
            )
        if label_column not in header:
            raise DatasetError(f"{path} has no column {label_column!r}; its columns are {header}")
        return header.index(label_column)
    if isinstance(label_column, bool) or not isinstance(label_column, int) or not -width <= label_column < width:
        raise DatasetError(
            f"label_column={label_column!r} is out of range for {path}'s {width} columns; "
            f"give an index in [{-width}, {width - 1}] or a header name"
        )
    return label_column % width


def _parse_labels(labels: list[str]) -> np.ndarray:
    """All integers -> int64, all numbers -> float64, anything else -> text classes."""
    for parse, dtype in ((int, np.int64), (float, np.float64)):
        try:
            return np.array([parse(v) for v in labels], dtype=dtype)
        except (ValueError, OverflowError):
            pass
    return np.array(labels, dtype=str)


# Pillow modes read as one channel: "1" and "LA" become 8-bit "L"; 16-bit ("I;16*" -> "I") and
# float ("F") grayscale keep their raw values. Every other mode (RGBA, P, CMYK, ...) becomes RGB.
_GRAY_MODES = {"1": "L", "L": "L", "LA": "L", "La": "L", "I": "I", "I;16": "I", "I;16B": "I", "I;16L": "I", "F": "F"}


def _read_image_folder(root: Path, image_size: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DatasetError(
            f"{root} has no sub-folders; an image dataset needs one sub-folder per class "
            f"(e.g. {root / 'cat' / '1.png'}, {root / 'dog' / '2.png'})"
        )
    images: list[np.ndarray] = []
    labels: list[str] = []
    first: tuple[Path, tuple[int, int]] | None = None
    for class_dir in classes:
        files = sorted(p for p in class_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DatasetError(
                f"class folder {class_dir} has no images ({', '.join(IMAGE_SUFFIXES)}); add some or remove the folder"
            )
        for file in files:
            try:
                with Image.open(file) as im:
                    im = im.convert(_GRAY_MODES.get(im.mode, "RGB"))
            except OSError as exc:
                raise DatasetError(f"cannot read image {file}: {exc}; replace or remove the file") from None
            if image_size is not None:
                im = im.resize((image_size[1], image_size[0]), Image.Resampling.BILINEAR)
            size = (im.height, im.width)
            if first is None:
                first = (file, size)
            elif size != first[1]:
                raise DatasetError(
                    f"image {file} is {size[0]}x{size[1]} (height x width) but {first[0]} is "
                    f"{first[1][0]}x{first[1][1]}; all images must share one size: pass "
                    f"image_size=(height, width) to resize them"
                )
            arr = np.asarray(im)
            images.append(arr if arr.ndim == 3 else arr[..., np.newaxis])
            labels.append(class_dir.name)
    if any(a.shape[-1] == 3 for a in images):
        # Mixed grayscale and colour: promote grayscale to RGB rather than drop colour.
        images = [np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a for a in images]
    return np.stack(images), np.array(labels, dtype=str)


def _read_source(
    source: str, label_column: int | str, image_size: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Return raw (x, y) from ``source``, before any validation."""
    if source.startswith("builtin:"):
        name = source.removeprefix("builtin:")
        if name not in _BUILTINS:
            raise DatasetError(f"unknown builtin dataset {name!r}; builtins: {', '.join(sorted(_BUILTINS))}")
        loaded = _BUILTINS[name]()
    else:
        path = Path(source)
        if not path.exists():
            raise DatasetError(f"no such file or folder: {source!r}; {_sources_help()}")
        if path.is_dir():
            return _read_image_folder(path, image_size)
        suffix = path.suffix.lower()
        if suffix == ".npz":
            loaded = _read_npz(path)
        elif suffix == ".csv":
            return _read_csv(path, label_column)
        else:
            raise DatasetError(f"unsupported data file {source!r} (suffix {suffix or 'none'!r}); {_sources_help()}")
    x, y = loaded
    if x.ndim == 3:
        x = x[..., np.newaxis]  # (N, H, W) images -> (N, H, W, 1): conv layers need a channel axis
    return x, y


# --------------------------------------------------------------------------------------------
# Labels and splits


def _encode_labels(y: np.ndarray, task: str) -> tuple[np.ndarray, str, list[str] | None]:
    """Resolve ``task`` and return (y ready for training, task, class names)."""
    text = y.dtype.kind in "US"
    if task == "auto":
        if text or y.dtype.kind in "biu":
            task = "classification"
        else:
            task = "classification" if _is_integral(y) and len(np.unique(y)) <= MAX_AUTO_CLASSES else "regression"
    if task == "regression":
        if text:
            raise DatasetError(
                f"task='regression' needs numeric labels but y holds text (e.g. {str(y[0])!r}); "
                f"use task='classification' or numeric targets"
            )
        return y.astype(np.float32), task, None

    if y.dtype.kind == "f" and not _is_integral(y):
        first = int(np.argmax(y != np.round(y)))
        raise DatasetError(
            f"task='classification' needs whole-number labels but y[{first}] = {y[first]}; "
            f"use task='regression' or round/bin the labels"
        )
    values, codes = np.unique(y, return_inverse=True)
    if len(values) < 2:
        raise DatasetError(
            f"y has a single class ({values[0].item()!r}); classification needs at least 2 classes: "
            f"add samples of other classes or use task='regression'"
        )
    names = [str(v) if text else str(int(v)) for v in values]
    return codes.astype(np.int64), task, names


def _is_integral(y: np.ndarray) -> bool:
    return bool(np.all(y == np.round(y)))


def _split_sizes(n: int, split: tuple[float, float, float]) -> tuple[int, int, int]:
    """(n_train, n_val, n_test): val and test are rounded up, like sklearn's train_test_split."""

    def count(fraction: float) -> int:
        # round() first so 0.7 * 10 = 7.000000000000001 counts as 7, not 8
        return max(1, math.ceil(round(fraction * n, 6))) if fraction > 0 else 0

    n_val, n_test = count(split[1]), count(split[2])
    return n - n_val - n_test, n_val, n_test


def _split_off(
    indices: np.ndarray, y: np.ndarray | None, n_out: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``n_out`` of ``indices`` off; stratified by ``y`` when every class fits both parts."""
    from sklearn.model_selection import train_test_split

    stratify = None
    if y is not None:
        counts = np.unique(y[indices], return_counts=True)[1]
        k = len(counts)
        # sklearn's own preconditions for a stratified split; otherwise split without stratifying.
        if counts.min() >= 2 and n_out >= k and len(indices) - n_out >= k:
            stratify = y[indices]
    keep, out = train_test_split(indices, test_size=n_out, random_state=seed, stratify=stratify)
    return np.asarray(keep), np.asarray(out)


# --------------------------------------------------------------------------------------------
# Entry point


def load_dataset(
    source: str | os.PathLike,
    *,
    split: tuple[float, float, float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    normalize: str = "minmax",
    task: str = "auto",
    label_column: int | str = -1,
    image_size: tuple[int, int] | None = None,
) -> Dataset:
    """Load ``source``, validate it, split it deterministically and normalize it from the train split.

    ``label_column`` applies to CSV files only; ``image_size`` (height, width) to image folders
    only (images are resized with bilinear filtering). Every problem raises :class:`DatasetError`.
    """
    source = str(source)
    split = _check_options(split, seed, normalize, task)
    if image_size is not None:
        if (
            len(image_size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in image_size)
        ):
            raise DatasetError(f"image_size must be (height, width) in whole pixels > 0, got {image_size!r}")
        if not Path(source).is_dir():
            raise DatasetError(f"image_size applies to image folders only; {source!r} is not a folder: drop image_size")

    x, y = _read_source(source, label_column, image_size)
    x, y = np.asarray(x), np.asarray(y)

    check_array(x, what="x")
    if x.ndim < 2:
        raise DatasetError(
            f"x has shape {x.shape}; it must be (N, features...) with one row per sample: "
            f"reshape a single feature with x.reshape(-1, 1)"
        )
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DatasetError(
            f"y has shape {y.shape}; it must hold one label per sample, shape (N,): "
            f"for one-hot labels use y.argmax(axis=1)"
        )
    if y.dtype.kind in "US":
        y = y.astype(str)  # text labels are class names; bytes are decoded
    else:
        check_array(y, what="y")
    if len(x) != len(y):
        raise DatasetError(f"x has {len(x)} samples but y has {len(y)} labels; they must match one to one")

    y, task, class_names = _encode_labels(y, task)

    n_train, n_val, n_test = _split_sizes(len(x), split)
    if min(n_train, n_test) < 1:
        raise DatasetError(
            f"{len(x)} samples are too few for split {split}: that gives {n_train} train, {n_val} validation "
            f"and {n_test} test samples; every split needs at least one: add samples or change the split"
        )
    strata = y if task == "classification" else None
    rest, test = _split_off(np.arange(len(x)), strata, n_test, seed)
    train, val = _split_off(rest, strata, n_val, seed) if n_val else (rest, rest[:0])

    x = x.astype(np.float32)
    norm = Normalization.fit(normalize, x[train])
    return Dataset(
        name=source,
        task=task,
        x_train=norm.apply(x[train]),
        y_train=y[train],
        x_val=norm.apply(x[val]),
        y_val=y[val],
        x_test=norm.apply(x[test]),
        y_test=y[test],
        normalization=norm,
        class_names=class_names,
        seed=int(seed),  # a numpy integer would not survive json.dumps in save()
        split=split,
    )


def _check_options(split: Any, seed: Any, normalize: Any, task: Any) -> tuple[float, float, float]:
    """Validate the options before touching any file; return ``split`` as a float tuple."""
    try:
        fractions = tuple(float(f) for f in split)
    except (TypeError, ValueError):
        fractions = ()
    if (
        len(fractions) != 3
        or not all(math.isfinite(f) and f >= 0 for f in fractions)
        or abs(sum(fractions) - 1) > 1e-6
        or fractions[0] <= 0
        or fractions[2] <= 0
    ):
        raise DatasetError(
            f"split={split!r} is invalid; give three fractions (train, validation, test) that are >= 0, "
            f"sum to 1 and have train > 0 and test > 0, e.g. (0.6, 0.2, 0.2)"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise DatasetError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    if normalize not in NORMALIZE_METHODS:
        raise DatasetError(f"normalize={normalize!r} is unknown; use one of {', '.join(NORMALIZE_METHODS)}")
    if task not in TASKS:
        raise DatasetError(f"task={task!r} is unknown; use one of {', '.join(TASKS)}")
    return fractions
