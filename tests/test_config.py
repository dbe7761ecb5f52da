"""Tests for mcuquant.config: defaults, typed parsing of mcuquant.toml, CLI overrides and error messages."""

from __future__ import annotations

import re

import pytest

from mcuquant.config import (
    CHOICES,
    Config,
    DataConfig,
    ModelConfig,
    QuantizationConfig,
    TargetConfig,
    TrainingConfig,
    build_config,
    load_config,
)
from mcuquant.errors import ConfigError, McuquantError

# What the CLI passes: config key -> the flag that sets it (see mcuquant.cli.CONFIG_FLAGS).
FLAGS = {
    "model.source": "--model",
    "model.width": "--width",
    "data.source": "--data",
    "data.split": "--split",
    "data.seed": "--seed",
    "data.normalize": "--normalize",
    "data.task": "--task",
    "training.epochs": "--epochs",
    "training.qat_epochs": "--qat-epochs",
    "training.seed": "--train-seed",
    "quantization.per_channel": "--per-channel",
    "quantization.int16x8": "--int16x8",
    "target.board": "--board",
}

FULL_TOML = """\
[model]
source = "zoo:dscnn"
width = 2            # an integer where a float is expected

[data]
source = "data/train.npz"
split = [0.5, 0.25, 0.25]
seed = 7
normalize = "standard"
task = "classification"
label_column = "label"
image_size = [32, 24]

[training]
qat_epochs = 2
batch_size = 64
learning_rate = 0.01
qat_learning_rate = 1     # integer -> float
patience = 3
seed = 11

[quantization]
representative_samples = 50
per_channel = false
int16x8 = true

[target]
board = "nucleo_f446re"
"""


def write(tmp_path, text: str, name: str = "mcuquant.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def cli_error(overrides: dict) -> str:
    """Build from CLI-style text overrides and return the ConfigError message."""
    with pytest.raises(ConfigError) as info:
        build_config({}, overrides, flag_names=FLAGS)
    return str(info.value)


@pytest.fixture(autouse=True)
def _no_project_file_in_cwd(tmp_path, monkeypatch):
    """load_config() reads ./mcuquant.toml when present: run every test in an empty folder."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


# --------------------------------------------------------------------------------------------
# Defaults and parsing


def test_defaults_without_a_file():
    cfg = load_config()
    assert cfg == Config()
    assert cfg.model == ModelConfig(source="zoo:cnn", width=1.0)
    assert cfg.data.source == "builtin:digits"
    assert cfg.data.split == (0.6, 0.2, 0.2)
    assert cfg.data.image_size is None
    assert cfg.training.epochs is None  # decided later: 30 for zoo models, 0 for the user's own
    assert cfg.training.qat_epochs == 3
    assert cfg.quantization.per_channel is True
    assert cfg.target.board == "qemu-nano33"
    assert build_config() == Config()


def test_default_file_in_cwd_is_read_when_present():
    with open("mcuquant.toml", "w") as f:
        f.write('[data]\nseed = 5\n')
    assert load_config().data.seed == 5


def test_full_file_parses_into_typed_values(tmp_path):
    cfg = load_config(write(tmp_path, FULL_TOML))
    assert cfg.model == ModelConfig(source="zoo:dscnn", width=2.0)
    assert isinstance(cfg.model.width, float)
    assert cfg.data == DataConfig(source="data/train.npz", split=(0.5, 0.25, 0.25), seed=7, normalize="standard",
                                  task="classification", label_column="label", image_size=(32, 24))
    assert isinstance(cfg.data.split, tuple) and isinstance(cfg.data.image_size, tuple)
    assert cfg.training == TrainingConfig(epochs=None, qat_epochs=2, batch_size=64, learning_rate=0.01,
                                          qat_learning_rate=1.0, patience=3, seed=11)
    assert type(cfg.training.qat_learning_rate) is float
    assert cfg.quantization == QuantizationConfig(representative_samples=50, per_channel=False, int16x8=True)
    assert cfg.target == TargetConfig(board="nucleo_f446re")
    # Plain data for report.json
    assert cfg.to_dict()["data"]["split"] == (0.5, 0.25, 0.25)
    assert cfg.to_dict()["training"]["epochs"] is None


def test_integer_split_becomes_floats_and_partial_file_keeps_other_defaults(tmp_path):
    cfg = load_config(write(tmp_path, "[data]\nsplit = [0.5, 0, 0.5]\n"))  # TOML integer 0 -> 0.0
    assert cfg.data.split == (0.5, 0.0, 0.5)
    assert all(type(f) is float for f in cfg.data.split)
    assert cfg.data.seed == 0 and cfg.model == ModelConfig() and cfg.training == TrainingConfig()


def test_epochs_zero_and_label_column_index(tmp_path):
    cfg = load_config(write(tmp_path, "[training]\nepochs = 0\n[data]\nlabel_column = 0\n"))
    assert cfg.training.epochs == 0
    assert cfg.data.label_column == 0


def test_cli_text_overrides_win_over_the_file(tmp_path):
    path = write(tmp_path, FULL_TOML)
    cfg = load_config(path, {
        "data.split": "0.7,0.1,0.2",
        "data.seed": "5",
        "quantization.per_channel": "true",
        "quantization.int16x8": "false",
        "data.source": "other/data.csv",
        "model.source": "zoo:mlp",
        "model.width": "0.5",
        "training.epochs": "12",
        "data.normalize": "none",
        "training.seed": None,  # a flag that was not given keeps the file's value
    }, flag_names=FLAGS)
    assert cfg.data.split == (0.7, 0.1, 0.2)
    assert cfg.data.seed == 5
    assert cfg.quantization.per_channel is True
    assert cfg.quantization.int16x8 is False
    assert cfg.data.source == "other/data.csv"
    assert cfg.model == ModelConfig(source="zoo:mlp", width=0.5)
    assert cfg.training.epochs == 12
    assert cfg.data.normalize == "none"
    assert cfg.training.seed == 11  # from the file
    assert cfg.target.board == "nucleo_f446re"  # untouched keys keep the file's values


def test_split_override_tolerates_spaces():
    assert build_config({}, {"data.split": "0.5, 0.3, 0.2"}).data.split == (0.5, 0.3, 0.2)


@pytest.mark.parametrize("text", ["runs/a,b.npz", "2024", "true", "1.5", "data 2.csv"])
def test_text_for_a_string_key_is_taken_verbatim(text):
    # A path (or folder name) that happens to look like TOML stays the string the user typed.
    assert build_config({}, {"data.source": text}).data.source == text


def test_label_column_override_is_an_index_or_a_name():
    assert build_config({}, {"data.label_column": "-2"}).data.label_column == -2
    assert build_config({}, {"data.label_column": "species"}).data.label_column == "species"


def test_non_string_overrides_from_the_api_are_used_as_is():
    cfg = build_config({}, {"data.split": (0.8, 0.1, 0.1), "training.epochs": 4, "quantization.int16x8": True})
    assert cfg.data.split == (0.8, 0.1, 0.1)
    assert cfg.training.epochs == 4
    assert cfg.quantization.int16x8 is True


# --------------------------------------------------------------------------------------------
# Unknown sections and keys


def test_unknown_section_names_it_suggests_and_lists_sections(tmp_path):
    path = write(tmp_path, "[trainig]\nepochs = 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: unknown section [trainig].")
    assert "Did you mean 'training'?" in msg
    assert "Allowed sections: model, data, training, quantization, target" in msg


def test_unknown_key_names_it_suggests_and_lists_keys(tmp_path):
    path = write(tmp_path, "[training]\nepoch = 3\n")
    with pytest.raises(ConfigError, match=re.escape("unknown key 'training.epoch'. Did you mean 'epochs'?")) as info:
        load_config(path)
    msg = str(info.value)
    assert msg.startswith(str(path))
    assert ("Allowed keys in [training]: epochs, qat_epochs, batch_size, learning_rate, qat_learning_rate, "
            "patience, seed") in msg


def test_unknown_key_without_close_match_still_lists_keys():
    with pytest.raises(ConfigError, match=r"unknown key 'target\.xyzzy'\. Allowed keys in \[target\]: board$"):
        build_config({"target": {"xyzzy": 1}})


def test_section_that_is_not_a_table(tmp_path):
    with pytest.raises(ConfigError, match=r"\[model\] must be a table of keys"):
        load_config(write(tmp_path, 'model = "zoo:cnn"\n'))


def test_unknown_override_section_is_a_config_error():
    with pytest.raises(ConfigError, match=r"unknown override 'trainign\.epochs'\. Did you mean 'training'\?"):
        build_config({}, {"trainign.epochs": 3})


def test_unknown_override_key_names_it():
    with pytest.raises(ConfigError, match=r"override data\.sed: unknown key 'data\.sed'\. Did you mean 'seed'\?"):
        build_config({}, {"data.sed": "3"})


# --------------------------------------------------------------------------------------------
# Types


def test_wrong_type_in_file_names_file_key_and_value(tmp_path):
    path = write(tmp_path, '[training]\nepochs = "x"\n')
    with pytest.raises(ConfigError, match=re.escape(f"{path}: training.epochs must be an integer, got 'x'")):
        load_config(path)


@pytest.mark.parametrize("section, key, value, expected", [
    ("training", "batch_size", 32.5, "an integer"),
    ("training", "batch_size", True, "an integer"),  # a bool is not an integer here
    ("training", "learning_rate", "fast", "a number"),
    ("training", "learning_rate", False, "a number"),
    ("quantization", "per_channel", 1, "true or false"),
    ("quantization", "int16x8", "yes", "true or false"),
    ("model", "source", 3, "a string"),
    ("data", "split", [0.5, 0.5], "a list of 3 values, each a number"),
    ("data", "split", "0.6,0.2,0.2", "a list of 3 values, each a number"),
    ("data", "label_column", 1.5, "an integer or a string"),
    ("data", "image_size", [8.5, 8], "a list of 2 values, each an integer"),
])
def test_wrong_type_errors(section, key, value, expected):
    with pytest.raises(ConfigError, match=re.escape(f"{section}.{key} must be {expected}, got {value!r}")):
        build_config({section: {key: value}}, source="proj.toml")


def test_bad_list_element_names_the_element():
    with pytest.raises(ConfigError, match=re.escape("proj.toml: data.split must be a number, got 'a'")):
        build_config({"data": {"split": [0.6, "a", 0.4]}}, source="proj.toml")


def test_wrong_type_from_a_flag_names_the_flag():
    msg = cli_error({"data.seed": "abc"})
    assert msg == "--seed: data.seed must be an integer, got 'abc'"


def test_bool_flag_rejects_other_words():
    assert cli_error({"quantization.per_channel": "yes"}) == (
        "--per-channel: quantization.per_channel must be true or false, got 'yes'")


def test_split_flag_with_two_values():
    msg = cli_error({"data.split": "0.6,0.4"})
    assert msg.startswith("--split: data.split must be a list of 3 values")
    assert "[0.6, 0.4]" in msg


# --------------------------------------------------------------------------------------------
# Choices


def test_choice_error_lists_allowed_values_and_suggests(tmp_path):
    path = write(tmp_path, '[data]\nnormalize = "min-max"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert f"{path}: data.normalize must be one of minmax, standard, none; got 'min-max'." in msg
    assert "Did you mean 'minmax'?" in msg


def test_choice_error_from_flag():
    msg = cli_error({"data.task": "segmentation"})
    assert msg.startswith("--task: data.task must be one of auto, classification, regression, anomaly; got 'segmentation'")


@pytest.mark.parametrize("key", sorted(CHOICES))
def test_every_choice_is_accepted(key):
    section, name = key.split(".")
    for value in CHOICES[key]:
        assert getattr(getattr(build_config({section: {name: value}}), section), name) == value


# --------------------------------------------------------------------------------------------
# Ranges


@pytest.mark.parametrize("split", [[0.6, 0.2, 0.3], [0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [1.2, -0.1, -0.1]])
def test_split_must_be_fractions_summing_to_one(split):
    with pytest.raises(ConfigError, match=r"data\.split must be three fractions \[train, validation, test\] "
                                          r"that sum to 1, with train and test > 0; got \("):
        build_config({"data": {"split": split}})


def test_split_may_skip_validation():
    assert build_config({"data": {"split": [0.8, 0, 0.2]}}).data.split == (0.8, 0.0, 0.2)


def test_split_flag_not_summing_to_one_names_the_flag():
    assert cli_error({"data.split": "0.7,0.2,0.2"}).startswith("--split: data.split must be three fractions")


def test_qat_epochs_zero_is_rejected_with_the_reason():
    with pytest.raises(ConfigError, match=r"training\.qat_epochs must be an integer >= 1 \(QAT learns .*\); got 0"):
        build_config({"training": {"qat_epochs": 0}})
    assert cli_error({"training.qat_epochs": "0"}).startswith("--qat-epochs: training.qat_epochs must be")


@pytest.mark.parametrize("value", [-0.001, 0, float("inf"), float("nan")])
def test_learning_rate_must_be_finite_and_positive(value):
    with pytest.raises(ConfigError, match=r"training\.learning_rate must be a finite number > 0; got"):
        build_config({"training": {"learning_rate": value}})


def test_negative_learning_rate_in_file(tmp_path):
    path = write(tmp_path, "[training]\nqat_learning_rate = -1e-4\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: training.qat_learning_rate must be a finite "
                                                    f"number > 0; got -0.0001")):
        load_config(path)


@pytest.mark.parametrize("size, fragment", [
    ([0, 8], "must be [height, width] in pixels; got (0, 8)"),
    ([8, -1], "must be [height, width] in pixels; got (8, -1)"),
    ([8, 8, 3], "must be a list of 2 values, each an integer, got [8, 8, 3]"),
    ([8], "must be a list of 2 values, each an integer, got [8]"),
    ("8x8", "must be a list of 2 values, each an integer, got '8x8'"),
])
def test_image_size_errors(size, fragment):
    with pytest.raises(ConfigError, match=re.escape(f"data.image_size {fragment}")):
        build_config({"data": {"image_size": size}})


def test_image_size_from_text_override():
    assert build_config({}, {"data.image_size": "32,32"}).data.image_size == (32, 32)


@pytest.mark.parametrize("section, key, value", [
    ("model", "width", 0.0),
    ("model", "width", 16.5),
    ("training", "epochs", -1),
    ("training", "batch_size", 0),
    ("training", "patience", 0),
    ("quantization", "representative_samples", 0),
    ("data", "seed", -1),
    ("training", "seed", 2**32),
])
def test_out_of_range_values(section, key, value):
    with pytest.raises(ConfigError, match=rf"{section}\.{key} must be .*; got {re.escape(repr(value))}$"):
        build_config({section: {key: value}})


def test_seed_flags_reject_negative_seeds():
    assert cli_error({"data.seed": "-1"}) == "--seed: data.seed must be an integer in [0, 2**32); got -1"
    assert cli_error({"training.seed": "-3"}).startswith("--train-seed: training.seed must be an integer in")


def test_override_without_flag_name_says_override():
    with pytest.raises(ConfigError, match=r"^override training\.epochs: training\.epochs must be an integer >= 0; "
                                          r"got -2$"):
        build_config({}, {"training.epochs": -2})


# --------------------------------------------------------------------------------------------
# The file itself


def test_missing_explicit_file_is_an_error(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=re.escape(f"config file {missing} not found")):
        load_config(missing)


def test_invalid_toml_names_the_file(tmp_path):
    path = write(tmp_path, "[training\nepochs = 3\n", name="broken.toml")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: not valid TOML: ")):
        load_config(path)


def test_folder_or_binary_file_as_config_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=re.escape(f"cannot read config file {tmp_path}")):
        load_config(tmp_path)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(ConfigError, match=re.escape(f"cannot read config file {binary}")):
        load_config(binary)


def test_config_errors_are_mcuquant_errors():
    # The CLI turns McuquantError into one line and exit status 2.
    assert issubclass(ConfigError, McuquantError)


def test_config_is_immutable():
    cfg = Config()
    with pytest.raises(AttributeError):
        cfg.data.seed = 3  # type: ignore[misc]


def test_normal_classes_are_a_list_of_labels_passed_to_the_data(tmp_path):
    path = write(tmp_path, '[data]\nsource = "builtin:digits-anomaly"\nnormal_classes = [3, "5"]\n')
    cfg = load_config(path)
    assert cfg.data.normal_classes == (3, "5") and DataConfig().normal_classes is None
    assert cfg.data.load().normal_classes == ["3", "5"]
    assert build_config({}, {"data.normal_classes": "1,2"}).data.normal_classes == (1, 2)
    assert build_config({}, {"data.normal_classes": "walking"}).data.normal_classes == ("walking",)  # one flag value
    with pytest.raises(ConfigError, match=re.escape("data.normal_classes must be a list of values, each an integer "
                                                    "or a string, got 'cat'")):
        build_config({"data": {"normal_classes": "cat"}})
