"""Models saved by Keras 3 (the `keras` package, TensorFlow >= 2.16's default Keras).

They load with Keras 3 itself, which runs the float rung, and TFLite's converter takes them
directly (`from_keras_model` exports a Keras 3 model with training=False before converting).
tfmot's QAT works only on tf-keras models, so `translate` rebuilds the model in tf-keras from its
config, layer by layer, with every weight copied; `check_translation` then requires both float
models to give the same outputs on the evaluated samples before the translation is used.

A SavedModel written by Keras 3's `model.export()` (or any SavedModel without tf-keras metadata)
holds a traced graph and no layers: it is wrapped in a Keras 3 `TFSMLayer`, which can run the
float rung and be converted with PTQ, but not be translated for QAT.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import numpy as np

from mcuquant.errors import ModelError
from mcuquant.tf_import import keras, keras3, tensorflow

# Translation check: both float models' outputs on the same samples may differ by at most this
# share of the Keras 3 model's output range. Two float32 implementations of the same layers
# differ by rounding (~1e-7 relative per op, different op orders, fused vs. unfused batch norm);
# 1e-4 of the range leaves room for that through deep models, yet is 40 times below one int8
# quantization step of the output (range / 255), so a translation that passes cannot change what
# an int8 model of it sees.
TOLERANCE_OF_RANGE = 1e-4
_RECURRENT = ("LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional")
_RENAMED = {"InputLayer": {"batch_shape": "batch_input_shape"}, "LeakyReLU": {"negative_slope": "alpha"}}
# Keras 3 options tf-keras does not have, with the value that means "not used".
_KERAS3_ONLY = {"optional": False, "quantization_config": None, "lora_rank": None, "lora_alpha": None,
                "rms_scaling": False, "zero_output_for_mask": False}
_FIX = "re-save the model with tf-keras (TF_USE_LEGACY_KERAS=1, `import tf_keras`), or replace the layer"


# ---------------------------------------------------------------------------------------------
# Which Keras wrote a file, and loading it


def saved_by_keras3(path: str | Path) -> bool:
    """Whether `path` was written by Keras 3: a .keras zip whose metadata.json says so, an .h5 whose
    `keras_version` attribute does, or a SavedModel folder without tf-keras' keras_metadata.pb
    (`model.export()`). Unreadable files say False: tf-keras' loader then reports what is wrong."""
    path = Path(path)
    if path.is_dir():
        return (path / "saved_model.pb").is_file() and not (path / "keras_metadata.pb").is_file()
    try:
        if path.suffix == ".keras":
            with zipfile.ZipFile(path) as archive:
                version = json.loads(archive.read("metadata.json")).get("keras_version", "")
        else:
            import h5py

            with h5py.File(path, "r") as f:
                version = f.attrs.get("keras_version", "")
                version = version.decode() if isinstance(version, bytes) else str(version)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return False
    return version.split(".")[0].isdigit() and int(version.split(".")[0]) >= 3


def load(path: str | Path):
    """The Keras 3 model at `path` (.keras, .h5, or an exported SavedModel folder), not compiled."""
    path = Path(path)
    k = keras3()
    try:
        if path.is_dir():
            return _load_exported(path, k)
        return k.models.load_model(path, compile=False)
    except ModelError:
        raise
    except Exception as exc:  # Keras raises many unrelated types for unreadable files
        raise ModelError(f"could not load Keras 3 model {path}: {exc}") from exc


def _load_exported(path: Path, k):
    """A Keras 3 model of one TFSMLayer calling the SavedModel's "serve" endpoint (or "serving_default")."""
    signatures = tensorflow().saved_model.load(str(path)).signatures
    endpoint = next((e for e in ("serve", "serving_default") if e in signatures), None)
    if endpoint is None:
        raise ModelError(f"SavedModel {path} has no 'serve' or 'serving_default' endpoint; export it with "
                         "Keras 3's model.export() or save it with tf-keras")
    args, kwargs = signatures[endpoint].structured_input_signature
    specs = list(args) + list(kwargs.values())
    if len(specs) != 1:
        raise ModelError(f"SavedModel {path} takes {len(specs)} inputs; mcuquant evaluates models with one input")
    spec = specs[0]
    inputs = k.Input(batch_shape=tuple(spec.shape), dtype=spec.dtype.name, name=spec.name or "input")
    outputs = k.layers.TFSMLayer(str(path), call_endpoint=endpoint)(inputs)
    if isinstance(outputs, dict):
        if len(outputs) != 1:
            raise ModelError(f"SavedModel {path} has {len(outputs)} outputs; mcuquant evaluates models with one output")
        outputs = next(iter(outputs.values()))
    return k.Model(inputs, outputs, name=path.name)


def save_model(model, path: str | Path) -> None:
    """`model.save(path)` for a tf-keras or Keras 3 model. Keras 3.15 saving under numpy 2 warns that
    its Variable.__array__ "doesn't accept a copy keyword": a Keras bug of no consequence here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="__array__ implementation doesn't accept a copy keyword",
                                category=DeprecationWarning)
        model.save(path)


def is_keras3(model) -> bool:
    """Whether `model` is a Keras 3 model (tf-keras classes live in the `tf_keras` package)."""
    return type(model).__module__.split(".")[0] == "keras"


def is_exported(model) -> bool:
    """Whether `model` wraps an exported SavedModel (see `load`): it has no layers to translate."""
    return any(type(layer).__name__ == "TFSMLayer" for layer in model.layers)


# ---------------------------------------------------------------------------------------------
# Translation to tf-keras


def translate(model):
    """A tf-keras model equivalent to the Keras 3 `model` (Sequential or functional), weights copied.

    Each layer is rebuilt from its Keras 3 config by the tf-keras class of the same name; a layer
    tf-keras has no class or option for raises ModelError naming it and what to do.
    """
    if is_exported(model):
        raise ModelError(f"model '{model.name}' is an exported SavedModel (model.export()): it holds a traced graph, "
                         "no layers, so it cannot be rebuilt in tf-keras for QAT. Give the .keras or .h5 file "
                         "saved with model.save()")
    tfk = keras()
    # A static batch of one lets the converter fuse a tf-keras LSTM into UNIDIRECTIONAL_SEQUENCE_LSTM
    # (with any batch size it fails on the TensorList ops of the loop), as the zoo's lstm does.
    recurrent = any(type(layer).__name__ in _RECURRENT for layer in model.layers)

    def batch_shape(shape):
        return (1, *shape[1:]) if recurrent else tuple(shape)

    if type(model).__name__ == "Sequential":
        translated = tfk.Sequential([tfk.Input(batch_shape=batch_shape(model.input_shape), name=model.inputs[0].name)]
                                    + [translate_layer(layer) for layer in model.layers], name=model.name)
    else:
        config = model.get_config()
        operations = {op.name: op for op in model.operations}  # layers, and keras.ops calls
        tensors = {}  # keras_history (layer name, node index, tensor index) -> tf-keras tensor
        for entry in config["layers"]:
            op = operations.get(entry["name"])
            if entry["class_name"] == "InputLayer":
                inp = tfk.Input(batch_shape=batch_shape(op.batch_shape), dtype=op.dtype, name=op.name)
                tensors[(op.name, 0, 0)] = inp
                continue
            layer = translate_layer(op, entry["class_name"], entry["name"])
            for node_index, node in enumerate(entry["inbound_nodes"]):
                args = _resolved(node["args"], tensors)
                kwargs = {key: v for key, v in _resolved(node["kwargs"], tensors).items() if v is not None}
                out = layer(*args, **kwargs)
                for i, t in enumerate(tensorflow().nest.flatten(out)):
                    tensors[(op.name, node_index, i)] = t
        translated = tfk.Model(_endpoints(config["input_layers"], tensors), _endpoints(config["output_layers"], tensors),
                               name=model.name)
    _copy_weights(model, translated)
    return translated


def translate_layer(layer, class_name: str | None = None, name: str | None = None):
    """The tf-keras layer made from the Keras 3 `layer`'s config (no weights yet); `class_name` and
    `name` come from the model config when `layer` is not one of the model's layers."""
    class_name = class_name or type(layer).__name__
    where = f"layer '{name or layer.name}' ({class_name})"
    if not type(layer).__module__.startswith("keras.src.layers"):
        what = "a nested model" if class_name in ("Functional", "Sequential", "Model") else (
            "not a built-in Keras layer (a custom layer or a keras.ops call)")
        raise ModelError(f"cannot translate {where} to tf-keras for QAT: it is {what}. tfmot quantizes flat models of "
                         f"built-in layers; {_FIX}")
    target = getattr(keras().layers, class_name, None)
    if target is None:
        raise ModelError(f"cannot translate {where} to tf-keras for QAT: tf-keras has no {class_name} layer; {_FIX}")
    config = _tf_keras_config(layer.get_config(), where)
    for old, new in _RENAMED.get(class_name, {}).items():
        if old in config:
            config[new] = config.pop(old)
    for key, unused in _KERAS3_ONLY.items():
        if key in config:
            if config[key] != unused:
                raise ModelError(f"cannot translate {where} to tf-keras for QAT: its option {key}={config[key]!r} has "
                                 f"no tf-keras equivalent; {_FIX}")
            del config[key]
    try:
        return target.from_config(config)
    except Exception as exc:  # tf-keras raises TypeError/ValueError for options it does not know
        raise ModelError(f"cannot translate {where} to tf-keras for QAT: {exc}; {_FIX}") from exc


def _tf_keras_config(value, where: str):
    """A Keras 3 config made readable by tf-keras: dtype policies become their name, serialized
    objects lose Keras 3's module keys, initializers go (every weight is copied afterwards)."""
    if isinstance(value, (list, tuple)):
        return type(value)(_tf_keras_config(v, where) for v in value)
    if not isinstance(value, dict):
        return value
    if value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
        return value["config"]["name"]
    if "class_name" in value and "config" in value:
        registered = value.get("registered_name")
        if registered and registered != value["class_name"]:
            raise ModelError(f"cannot translate {where} to tf-keras for QAT: it uses the custom object '{registered}'; "
                             f"{_FIX}")
        return {"class_name": value["class_name"], "config": _tf_keras_config(value["config"], where)}
    return {key: _tf_keras_config(v, where) for key, v in value.items() if not key.endswith("_initializer")}


def _resolved(value, tensors: dict):
    """A Keras 3 node's call arguments with each serialized tensor replaced by its tf-keras tensor."""
    if isinstance(value, (list, tuple)):
        return [_resolved(v, tensors) for v in value]
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            return tensors[tuple(value["config"]["keras_history"])]
        return {key: _resolved(v, tensors) for key, v in value.items()}
    return value


def _endpoints(layers: list, tensors: dict):
    """Model inputs/outputs: one [name, node, tensor] triple or a list of them."""
    if layers and isinstance(layers[0], str):
        return tensors[tuple(layers)]
    return [tensors[tuple(entry)] for entry in layers]


def _copy_weights(model, translated) -> None:
    by_name = {layer.name: layer for layer in translated.layers}
    for layer in model.layers:
        values = layer.get_weights()
        target = by_name[layer.name]
        shapes = [tuple(w.shape) for w in target.weights]
        if shapes != [v.shape for v in values]:
            raise ModelError(f"cannot translate layer '{layer.name}' ({type(layer).__name__}) to tf-keras for QAT: its "
                             f"weights have shapes {[v.shape for v in values]} in Keras 3 but {shapes} in tf-keras; "
                             f"{_FIX}")
        target.set_weights(values)


# ---------------------------------------------------------------------------------------------
# The check


def check_translation(model, translated, x: np.ndarray) -> dict:
    """Both float models on the samples `x`: the record report["model"]["translation"] holds."""
    import tf_keras

    expected = np.asarray(model.predict(x, batch_size=256, verbose=0), np.float64)
    got = np.asarray(translated.predict(x, batch_size=256, verbose=0), np.float64)
    output_range = float(expected.max() - expected.min()) if expected.size else 0.0
    tolerance = TOLERANCE_OF_RANGE * (output_range or 1.0)  # constant outputs: an absolute 1e-4
    difference = float(np.abs(expected - got).max()) if expected.size else 0.0
    return {"from": f"keras {keras3().__version__}", "to": f"tf-keras {tf_keras.__version__}", "samples": int(len(x)),
            "max_abs_difference": difference, "tolerance": tolerance,
            "tolerance_rule": f"{TOLERANCE_OF_RANGE:g} x the Keras 3 model's output range on these samples",
            "passed": bool(difference <= tolerance), "layers": len(translated.layers)}


def to_tf_keras(model, x: np.ndarray):
    """(tf-keras translation of `model`, check record); ModelError when the outputs on `x` disagree."""
    translated = translate(model)
    record = check_translation(model, translated, x)
    if not record["passed"]:
        raise ModelError(f"the tf-keras translation of Keras 3 model '{model.name}' does not compute the same outputs: "
                         f"max difference {record['max_abs_difference']:.3g} on {record['samples']} samples, tolerance "
                         f"{record['tolerance']:.3g}. QAT would train another network; {_FIX}")
    return translated, record
