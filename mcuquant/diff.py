"""Tensor-by-tensor comparison of two int8 models of the same network.

Why two conversions of one network disagree (seed 000: a QAT model converted to int8 vs its
weights copied into the float model and converted with PTQ) is answered by their quantization
parameters: activation scales and zero points, weight and bias buffers, and what the models
predict on the same samples. Tensors are matched by graph structure (`Graph.structural_keys`),
since names and order differ between conversions; a constant (weights, bias) is known by its
consumer operator and input position. The result follows the diff format of issue 6
(report["explain"]["weights_copied"]["diff"]): plain JSON-serialisable data.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np

from mcuquant.config import DataConfig
from mcuquant.errors import ConfigError, DatasetError, ModelError
from mcuquant.graph import Graph, Tensor, integer_graph
from mcuquant.interpreters import RUNTIMES, Runner, dequantize, quantize
from mcuquant.tasks import get_task
from mcuquant.tf_import import native_stderr_captured

# Parts of converter tensor names that are not Keras layers.
_NOT_LAYERS = ("StatefulPartitionedCall", "PartitionedCall", "Identity", "arith.constant", "tfl.")


# ---------------------------------------------------------------------------------------------
# Names and weights


def keras_layer_names(tensor_name: str) -> list[str]:
    """Keras layers named in a converter tensor name, in order, without tfmot's "quant_" prefix.

    "model/quant_conv2d/Relu;model/quant_conv2d/BiasAdd" -> ["conv2d"]; the graph input
    "serving_default_input:0" -> ["input"]. Each ";"-separated part is "model/layer/op...", so the
    second component is the layer (for a nested model that is the sub-model's name). Names only:
    the converter lists a fused op's names from its last op back to its first ("Relu;BiasAdd;Conv2D"),
    so the list is reversed to read in model order.
    """
    layers: list[str] = []
    for part in tensor_name.split(";"):
        part = part.split(":")[0]
        components = part.split("/")
        if len(components) >= 3:
            layer = components[1]
        elif len(components) == 1:  # a graph input: its Keras Input layer's name
            layer = part.removeprefix("serving_default_")
        else:
            continue
        layer = layer.removeprefix("quant_")
        if layer and not layer.startswith(_NOT_LAYERS) and layer not in layers:
            layers.append(layer)
    return layers[::-1]


def copy_qat_weights(qat_model, float_model):
    """A clone of `float_model` holding the weights of `qat_model` (a tfmot quantize_model of it).

    tfmot's QuantizeWrapper keeps the inner layer's variables (kernel, bias, BN statistics) under
    the inner layer's names but detaches the kernel from the inner layer, so variables are matched
    by their attribute name ("kernel:0") among the wrapper's weights, not via `wrapper.layer`.
    A Keras 3 `float_model` is cloned as its tf-keras translation, the model QAT was made from.
    """
    from mcuquant.models import keras3
    from mcuquant.tf_import import keras

    if keras3.is_keras3(float_model):
        float_model = keras3.translate(float_model)
    qat_by_name = {}
    for layer in qat_model.layers:
        inner = getattr(layer, "layer", None)  # QuantizeWrapper(V2)
        qat_by_name[inner.name if inner is not None else layer.name] = layer
    clone = keras().models.clone_model(float_model)
    clone.set_weights(float_model.get_weights())
    for layer in clone.layers:
        if not layer.weights:
            continue
        source = qat_by_name.get(layer.name)
        if source is None:
            raise ModelError(f"float layer '{layer.name}' has no counterpart in the QAT model '{qat_model.name}': "
                             "give the QAT model made from this float model (tfmot quantize_model keeps layer names)")
        # QAT's Conv1D (qat_layers.McuquantConv1D) holds its kernel as (1, k, in, out): back to (k, in, out)
        values = [_source_variable(source, layer.name, w).numpy().reshape(tuple(w.shape)) for w in layer.weights]
        layer.set_weights(values)
    return clone


def _attribute(variable_name: str) -> str:
    return variable_name.rsplit("/", 1)[-1]


def _source_variable(qat_layer, layer_name: str, target):
    candidates = [v for v in qat_layer.weights if _attribute(v.name) == _attribute(target.name)]
    if len(candidates) > 1:  # prefer the inner layer's own variable
        candidates = [v for v in candidates if v.name.startswith(f"{layer_name}/")] or candidates
    if not candidates or tuple(candidates[0].shape) not in (tuple(target.shape), (1, *target.shape)):
        raise ModelError(f"float layer '{layer_name}': QAT layer '{qat_layer.name}' has no variable "
                         f"'{_attribute(target.name)}' of shape {tuple(target.shape)}; the two models are not the "
                         "same network")
    return candidates[0]


# ---------------------------------------------------------------------------------------------
# Matching tensors


def _load(model: bytes, name: str) -> Graph:
    graph = integer_graph(model, name)
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ModelError(f"{name} has {len(graph.inputs)} inputs and {len(graph.outputs)} outputs; mcuquant diff "
                         "compares models with one input and one output")
    return graph


def _keyed_tensors(graph: Graph) -> dict[str, tuple[int, str, int]]:
    """Structural key -> (tensor index, kind, op index) for inputs, activations and quantized constants.

    A constant is keyed by its first consumer's output key and its input position; a key that
    occurs more than once (identical branches) gets its occurrence number, in execution order.
    """
    keys = graph.structural_keys()
    produced = set(graph.activations())
    entries: list[tuple[str, int, str, int]] = [(keys[t], t, "input", -1) for t in graph.inputs]
    seen_constants: set[int] = set()
    for op in graph.operators:
        for position, t in enumerate(op.inputs):
            if t < 0 or t in produced or t in graph.inputs or t in seen_constants:
                continue
            tensor = graph.tensors[t]
            if not tensor.scales:
                continue  # an operator parameter such as a RESHAPE's shape, not quantized data
            seen_constants.add(t)
            kind = "bias" if tensor.dtype in ("int32", "int64") else "weights"
            entries.append((f"{keys[op.outputs[0]]}/in{position}", t, kind, op.index))
        entries.extend((keys[t], t, "activation", op.index) for t in op.outputs)
    keyed: dict[str, tuple[int, str, int]] = {}
    occurrences: dict[str, int] = {}
    for key, t, kind, op_index in entries:
        n = occurrences.get(key, 0)
        occurrences[key] = n + 1
        keyed[f"{key}#{n}"] = (t, kind, op_index)
    return keyed


def _relative_scale_difference(a: Tensor, b: Tensor) -> float:
    """max over channels of |sa - sb| / |sa|; a per-tensor scale is compared with every channel's."""
    if a.scales == b.scales:
        return 0.0
    sa, sb = np.array(a.scales, dtype=np.float64), np.array(b.scales, dtype=np.float64)
    if sa.size == 0 or sb.size == 0 or (sa.size != sb.size and 1 not in (sa.size, sb.size)):
        return float("inf")  # one side unquantized, or channel counts that cannot be compared
    return float(np.max(np.abs(sa - sb) / np.maximum(np.abs(sa), 1e-30)))


def _constants(model: bytes):
    """LiteRT reads constant buffers after allocate_tensors (no delegate, so nothing is repacked)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    with native_stderr_captured(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        interpreter = Interpreter(model_content=bytes(model),
                                  experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interpreter.allocate_tensors()
    return interpreter


def _compare_tensors(a: bytes, ga: Graph, b: bytes, gb: Graph) -> tuple[list[dict], list[str], list[str]]:
    keyed_a, keyed_b = _keyed_tensors(ga), _keyed_tensors(gb)
    ops_a = {op.index: op.name for op in ga.operators}
    constants_a = constants_b = None
    rows = []
    for key, (ta, kind, op_a) in keyed_a.items():
        if key not in keyed_b:
            continue
        tb, _, op_b = keyed_b[key]
        x, y = ga.tensors[ta], gb.tensors[tb]
        row = {
            "kind": kind, "op": ops_a.get(op_a, "input"), "op_index_a": op_a, "op_index_b": op_b,
            "name_a": x.name, "name_b": y.name,
            "keras_layers": list(dict.fromkeys(keras_layer_names(x.name) + keras_layer_names(y.name))),
            "shape": list(x.shape),
            "scale_a": list(x.scales), "scale_b": list(y.scales),
            "zero_point_a": list(x.zero_points), "zero_point_b": list(y.zero_points),
            "relative_scale_difference": _relative_scale_difference(x, y),
            "zero_point_differs": not _same_zero_points(x, y),
            "values_differing": None, "max_value_difference": None,
        }
        if kind in ("weights", "bias"):
            if constants_a is None:
                constants_a, constants_b = _constants(a), _constants(b)
            va = constants_a.get_tensor(ta).astype(np.int64)
            vb = constants_b.get_tensor(tb).astype(np.int64)
            if va.shape == vb.shape:
                row["values_differing"] = int(np.count_nonzero(va != vb))
                row["max_value_difference"] = int(np.max(np.abs(va - vb))) if va.size else 0
        rows.append(row)
    matched_a = {keyed_a[k][0] for k in keyed_a if k in keyed_b}
    matched_b = {keyed_b[k][0] for k in keyed_b if k in keyed_a}
    unmatched_a = [ga.tensors[t].name for t, _, _ in keyed_a.values() if t not in matched_a]
    unmatched_b = [gb.tensors[t].name for t, _, _ in keyed_b.values() if t not in matched_b]
    # Python's sort is stable: equal scales keep execution order.
    rows.sort(key=lambda r: -r["relative_scale_difference"])
    return rows, unmatched_a, unmatched_b


def _same_zero_points(a: Tensor, b: Tensor) -> bool:
    """Per-tensor and per-channel zero points are the same when every channel's is."""
    za, zb = np.array(a.zero_points), np.array(b.zero_points)
    if za.size != zb.size and 1 not in (za.size, zb.size):
        return False
    return bool(np.all(za == zb)) if za.size and zb.size else za.size == zb.size


# ---------------------------------------------------------------------------------------------
# Outputs on the same samples


def _compare_outputs(a: bytes, b: bytes, x: np.ndarray, y: np.ndarray | None, *, task: str,
                     runtime: str, progress: bool, name_a: str = "A", name_b: str = "B") -> dict:
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")
    runner_a, runner_b = Runner(runtime, a), Runner(runtime, b)
    x = np.asarray(x, dtype=np.float32)
    for name, runner in (("A", runner_a), ("B", runner_b)):
        if x.ndim < 2 or int(np.prod(x.shape[1:])) != int(np.prod(runner.input.shape[1:])):
            raise DatasetError(f"samples of shape {x.shape[1:]} do not fit model {name}'s input "
                               f"{runner.input.shape[1:]}: give samples of the data the model was trained on")
    if runner_a.output.shape != runner_b.output.shape:
        raise ModelError(f"the models' outputs differ in shape ({runner_a.output.shape} vs {runner_b.output.shape}): "
                         "they are not the same network")
    if y is not None and len(y) != len(x):
        raise DatasetError(f"{len(y)} labels for {len(x)} samples: give one label per sample")
    n = len(x)
    raw_a = runner_a.run(quantize(x, runner_a.input), label=f"A/{runtime}", progress=progress)
    raw_b = runner_b.run(quantize(x, runner_b.input), label=f"B/{runtime}", progress=progress)
    out_a = dequantize(raw_a, runner_a.output).reshape(n, -1)
    out_b = dequantize(raw_b, runner_b.output).reshape(n, -1)
    oa, ob = runner_a.output, runner_b.output
    same_quantization = (oa.dtype, oa.scales, oa.zero_points) == (ob.dtype, ob.scales, ob.zero_points)
    byte_identical = (int(np.count_nonzero((raw_a.reshape(n, -1) == raw_b.reshape(n, -1)).all(axis=1)))
                      if same_quantization else None)
    absolute = np.abs(out_a.astype(np.float64) - out_b.astype(np.float64))
    result = {"n": n, "runtime": runtime, "byte_identical": byte_identical,
              "max_abs_output_difference": float(absolute.max()) if n else 0.0}
    kind = get_task(task)
    if kind.has_classes:
        class_a, class_b = np.argmax(out_a, axis=1), np.argmax(out_b, axis=1)
        flipped = np.flatnonzero(class_a != class_b)
        labels = None if y is None else np.asarray(y).astype(np.int64).reshape(n)
        result.update(
            same_prediction=int(n - len(flipped)), agreement_rate=float((n - len(flipped)) / n) if n else 1.0,
            class_flips=int(len(flipped)),
            flips=[{"index": int(i), "label": None if labels is None else int(labels[i]),
                    "class_a": int(class_a[i]), "class_b": int(class_b[i])} for i in flipped],
            error_rate_a=None if labels is None else float(np.mean(class_a != labels)),
            error_rate_b=None if labels is None else float(np.mean(class_b != labels)),
        )
    else:  # values or anomaly scores: the same prediction means the same dequantized output
        same = int(np.count_nonzero(absolute.max(axis=1) == 0)) if n else 0
        result.update(same_prediction=same, agreement_rate=float(same / n) if n else 1.0, class_flips=None, flips=[],
                      error_rate_a=None, error_rate_b=None)
        if y is not None:
            pred_a = kind.predictions(out_a, x, np.shape(y))
            pred_b = kind.predictions(out_b, x, np.shape(y))
            scores = kind.score_all({"a": pred_a, "b": pred_b}, np.asarray(y))
            result.update({f"{kind.metric}_a": scores["a"][kind.metric], f"{kind.metric}_b": scores["b"][kind.metric],
                           "comparison": kind.compare(name_a, name_b, pred_a, pred_b, np.asarray(y))})
    return result


# ---------------------------------------------------------------------------------------------
# The API


def diff_models(a: bytes, b: bytes, *, name_a: str = "A", name_b: str = "B", x: np.ndarray | None = None,
                y: np.ndarray | None = None, task: str = "classification", runtime: str = "tflm-host",
                progress: bool = False) -> dict:
    """Compare two int8 .tflite models of the same network tensor by tensor, and on samples `x`.

    `x` are float samples (each model quantizes them with its own input scale and zero point) run
    on `runtime`; `y` labels give error rates. Tensors whose scale differs come first, largest
    relative difference first. `op_index_*` is -1 for the graph input. Raises ModelError for a
    file that is not an int8 .tflite and for two models with no operator in common.
    """
    a, b = bytes(a), bytes(b)
    ga, gb = _load(a, name_a), _load(b, name_b)
    rows, unmatched_a, unmatched_b = _compare_tensors(a, ga, b, gb)
    if not any(r["kind"] == "activation" for r in rows):
        raise ModelError(f"{name_a} and {name_b} have no operator in common: they are not the same network "
                         "(diff compares two conversions of one network)")
    summary = {
        "matched": len(rows), "unmatched_a": unmatched_a, "unmatched_b": unmatched_b,
        "scale_differs": sum(r["relative_scale_difference"] > 0 for r in rows),
        "zero_point_differs": sum(r["zero_point_differs"] for r in rows),
        "constants": sum(r["kind"] in ("weights", "bias") for r in rows),
        # values_differing None: the buffers differ in shape
        "constants_differ": sum(r["kind"] in ("weights", "bias") and r["values_differing"] != 0 for r in rows),
    }
    outputs = None
    if x is not None:
        outputs = _compare_outputs(a, b, x, y, task=task, runtime=runtime, progress=progress, name_a=name_a,
                                   name_b=name_b)
    return {"a": _identity(a, name_a), "b": _identity(b, name_b), "tensors": rows, "summary": summary,
            "outputs": outputs}


def _identity(model: bytes, name: str) -> dict:
    return {"name": name, "bytes": len(model), "sha256": hashlib.sha256(model).hexdigest()}


def _read_model(path: str | Path) -> bytes:
    from mcuquant.graph import read_int8_tflite

    return read_int8_tflite(path)


def run_diff(path_a: str | Path, path_b: str | Path, *, data: str | None = None,
             data_options: DataConfig = DataConfig(), samples: int | None = None, runtime: str = "tflm-host",
             progress: bool = True) -> dict:
    """`mcuquant diff A.tflite B.tflite`: read both models and compare them; with `data`, also on its
    test split (the first `samples` samples, default all), loaded with `data_options`."""
    if samples is not None and samples < 1:
        raise ConfigError(f"--samples must be at least 1, not {samples}")
    if samples is not None and data is None:
        raise ConfigError("--samples needs --data: the models are compared on samples of the test split")
    a, b = _read_model(path_a), _read_model(path_b)
    x = y = None
    task = "classification"  # without data an output vector is read as class scores
    if data is not None:
        from mcuquant.graph import integer_graph
        from mcuquant.models.loading import fit_data_to_tflite

        dataset = data_options.load(data)
        for path, model in ((path_a, a), (path_b, b)):
            graph = integer_graph(model, str(path))
            dataset = fit_data_to_tflite(dataset, Path(path).name, graph.tensors[graph.inputs[0]].shape,
                                         graph.tensors[graph.outputs[0]].shape)
        n = len(dataset.x_test) if samples is None else min(samples, len(dataset.x_test))
        x, y = dataset.x_test[:n], dataset.y_test[:n]
        task = dataset.task
    return diff_models(a, b, name_a=str(path_a), name_b=str(path_b), x=x, y=y, task=task,
                       runtime=runtime, progress=progress)


# ---------------------------------------------------------------------------------------------
# Terminal presentation


def _scales(scales: list[float]) -> str:
    if not scales:
        return "-"
    if len(scales) == 1:
        return f"{scales[0]:.4g}"
    return f"{len(scales)}ch ≤{max(scales):.3g}"  # per channel: the largest


def _zero_points(zero_points: list[int]) -> str:
    if len(set(zero_points)) <= 1:
        return str(zero_points[0]) if zero_points else "-"
    return f"{len(zero_points)}ch {min(zero_points)}..{max(zero_points)}"  # rare: int8 weights are symmetric


def _percent(fraction: float) -> str:
    """Small differences (float32 rounding of the same scale) stay visible instead of "0.0%"."""
    return f"{100 * fraction:.1f}%" if fraction >= 1e-3 else f"{100 * fraction:.1e}%"


def _where(row: dict) -> str:
    layers = "+".join(row["keras_layers"])
    op = "input" if row["kind"] == "input" else f"#{row['op_index_a']} {row['op']}"
    return f"{op} {row['kind']}" + (f" ({layers})" if layers else "")


def format_diff(result: dict, limit: int = 20) -> list:
    """The diff for a terminal: a summary line, the tensors whose scale differs (largest relative
    difference first, at most `limit`), the constants whose values differ, the output agreement."""
    from rich.table import Table

    s, rows = result["summary"], result["tensors"]
    lines: list = [
        f"{result['a']['name']} (A) vs {result['b']['name']} (B): {s['scale_differs']} of {s['matched']} matched "
        f"tensors have a different scale; {s['zero_point_differs']} a different zero point; "
        f"{s['constants_differ']} of {s.get('constants', 0)} weight/bias tensors hold different values"
        + (f"; unmatched: {len(s['unmatched_a'])} in A, {len(s['unmatched_b'])} in B"
           if s["unmatched_a"] or s["unmatched_b"] else "")
    ]
    changed = [r for r in rows if r["relative_scale_difference"] > 0]
    if changed:
        table = Table(title="tensors whose scale differs (largest relative difference first; zp: zero point)")
        for col in ("tensor", "scale A", "scale B", "rel. diff", "zp A", "zp B"):
            table.add_column(col, justify="left" if col == "tensor" else "right")
        for r in changed[:limit]:
            table.add_row(_where(r), _scales(r["scale_a"]), _scales(r["scale_b"]),
                          _percent(r["relative_scale_difference"]), _zero_points(r["zero_point_a"]),
                          _zero_points(r["zero_point_b"]))
        lines.append(table)
        if len(changed) > limit:
            lines.append(f"... and {len(changed) - limit} more tensors whose scale differs")
    differing = [r for r in rows if r["kind"] in ("weights", "bias") and r["values_differing"] != 0]
    if differing:
        table = Table(title="weight and bias tensors whose integer values differ")
        for col in ("tensor", "values differing", "max |difference|"):
            table.add_column(col, justify="left" if col == "tensor" else "right")
        for r in differing[:limit]:
            size = int(np.prod(r["shape"])) if r["shape"] else 1
            table.add_row(_where(r), "shape differs" if r["values_differing"] is None else
                          f"{r['values_differing']:,} of {size:,}", str(r["max_value_difference"] or "-"))
        lines.append(table)
        if len(differing) > limit:
            lines.append(f"... and {len(differing) - limit} more weight or bias tensors whose values differ")
    else:
        lines.append("weights and biases: identical integer values")
    out = result["outputs"]
    if out is not None:
        line = (f"outputs on {out['n']} samples ({out['runtime']}): same prediction {out['same_prediction']} "
                f"({100 * out['agreement_rate']:.1f}%)")
        if out["class_flips"] is not None:
            line += f", {out['class_flips']} class flips"
        line += f", max |output difference| {out['max_abs_output_difference']:.4g}"
        if out["byte_identical"] is not None:
            line += f", byte-identical {out['byte_identical']}"
        if out["error_rate_a"] is not None:
            line += f"; error rate A {100 * out['error_rate_a']:.2f}%, B {100 * out['error_rate_b']:.2f}%"
        if "comparison" in out:
            line += f"; {out['comparison']['verdict']}"
            line += "".join(f"; {m.upper()} A {out[m + '_a']:.4g}, B {out[m + '_b']:.4g}" for m in ("mae", "auc")
                            if m + "_a" in out)
        lines.append(line)
    return lines
