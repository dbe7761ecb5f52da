"""Per-layer quantization error: where an int8 model departs from its float Keras model.

Every activation tensor of the int8 model is compared with the same tensor of a *float* .tflite
converted from the Keras model (no optimizations, so the converter fuses the same layers into
the same ops). Both run in LiteRT with all intermediate tensors preserved; tensors are paired
by graph structure (`graph.match_tensors`), then by tensor name, then by the Keras layers a
tensor's name refers to. The error is accumulated: a tensor's error includes everything
upstream of it.

With a representative set, TensorFlow's QuantizationDebugger adds each layer's *local* error
(the float op fed the dequantized input of the quantized op), which isolates one layer's own
rounding from the error it inherits.
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from mcuquant.config import DataConfig
from mcuquant.errors import ConfigError, DatasetError, ModelError
from mcuquant.graph import Graph, match_tensors
from mcuquant.interpreters import Runner, dequantize, quantize
from mcuquant.models import keras3
from mcuquant.progress import progress_bar
from mcuquant.quantize import tflite_converter
from mcuquant.tf_import import converter_output_captured, tensorflow

REFERENCE = "keras float model"
INPUT_OP_INDEX = -1  # the model input's row is not produced by an operator
_SAME_SCALE = 1e-6  # relative tolerance when checking the debugger quantized the same way


def layer_errors(float_model, tflite: bytes, x: np.ndarray, *, representative: np.ndarray | None = None,
                 max_samples: int = 200, progress: bool = False) -> dict:
    """Error of each int8 activation tensor against the float model's, on the float samples `x`.

    Returns {"reference", "samples", "rows", "unmatched", "method", "notes"} (rows as in the
    issue-6 schema, plus the model input as op "INPUT", op_index -1). Rows are sorted worst first
    by `rmse_over_scale`: the error in quantization steps compares tensors of any magnitude, and a
    tensor far above ~0.3 steps (pure rounding) is where precision is lost.

    `representative`: the samples the int8 model was calibrated on; given, the QuantizationDebugger
    re-quantizes the float model with them and each row gets `local_rmse_over_scale` (None where
    the debugger's tensor is quantized differently from `tflite`'s, e.g. a QAT model).

    For a QAT model, pass the float model QAT started from: its errors then include the weight
    changes of QAT training, not only quantization.
    """
    quantized = Runner("litert-ref", tflite, preserve_all=True)
    x = _checked_samples(float_model, quantized, x)[:max_samples]
    translated = keras3.is_keras3(float_model) and not keras3.is_exported(float_model)
    if translated:  # its tf-keras translation, checked on these samples, has the layer graph _KerasNames reads
        float_model, _ = keras3.to_tf_keras(float_model, x)
    tensors = _quantized_activations(quantized.graph)
    reference = Runner("litert-ref", _float_tflite(float_model), preserve_all=True)
    names = _KerasNames(float_model)
    pairs, how = _match(quantized.graph, reference.graph, tensors, names)
    if not pairs:
        raise ModelError("no activation tensor of the int8 model matches the float model: they are not the same "
                         "network; give the .tflite converted from this Keras model")

    totals = {t: _Totals() for t in pairs}
    xq = quantize(x, quantized.input) if quantized.input.scales else x
    with progress_bar("per-layer error", len(x), enabled=progress) as advance:
        for sample, sample_q in zip(x, xq):
            quantized.invoke(sample_q)
            reference.invoke(sample)
            for t, f in pairs.items():
                tensor = quantized.graph.tensors[t]
                totals[t].add(dequantize(quantized.tensor(t), tensor), reference.tensor(f), tensor)
            advance()

    # A model converted from Keras 3 has tensor names of Keras 3's own name scopes ("functional_1/conv2d_1/..."),
    # which are not its layer names: its tensors are named after their float counterparts in the translation.
    named_graph, named = (reference.graph, pairs) if translated else (quantized.graph, {t: t for t in pairs})
    lookup = {quantized.graph.tensors[t].name: named_graph.tensors[named[t]].name for t in pairs}
    producer = quantized.graph.producer()
    rows = []
    for t in pairs:
        tensor, op = quantized.graph.tensors[t], producer.get(t)
        layers = names.layers_of(named_graph, named[t])
        rows.append({"op_index": op.index if op else INPUT_OP_INDEX, "op": op.name if op else "INPUT",
                     "tensor": tensor.name, "keras_layers": layers,
                     "layer": "+".join(layers), "scale": tensor.scales[0], "zero_point": tensor.zero_points[0],
                     **totals[t].metrics(tensor.scales[0]), "local_rmse_over_scale": None})
    method = (f"int8 tensors (LiteRT reference kernels, all tensors preserved) vs a float .tflite of the Keras "
              f"model on {len(x)} samples; tensors paired by {how}")
    notes = []
    if representative is not None:
        method += "; local errors from tf.lite.experimental.QuantizationDebugger"
        notes += _add_local_errors(rows, float_model, quantized.graph, representative, x, names, lookup)
    rows.sort(key=lambda r: -r["rmse_over_scale"])
    unmatched = [quantized.graph.tensors[t].name for t in tensors if t not in pairs]
    return {"reference": REFERENCE, "samples": len(x), "rows": rows, "unmatched": unmatched,
            "method": method, "notes": notes}


def run_layers(model: str | Path, *, data: str | None, data_options: DataConfig = DataConfig(),
               tflite: str | Path | None = None, representative_samples: int = 200, per_channel: bool = True,
               samples: int = 200, progress: bool = True) -> dict:
    """`mcuquant layers`: the float Keras model at `model` against its int8 model (`tflite`, or a PTQ
    conversion calibrated on `data`'s train split), on the first `samples` samples of the test split."""
    from mcuquant.models import check_model_fits_data, load_user_model
    from mcuquant.quantize import convert_ptq, representative_samples as draw

    if data is None:
        raise ConfigError("give --data: the layers are compared on its test split (and PTQ is calibrated on its "
                          "train split)")
    dataset = data_options.load(data)
    float_model = load_user_model(model)
    dataset = dataset.for_model_input(tuple(float_model.input_shape[1:]))
    check_model_fits_data(float_model, dataset)
    representative = draw(dataset.x_train, representative_samples, data_options.seed)
    if tflite is None:
        int8 = convert_ptq(float_model, representative, per_channel=per_channel).tflite
    else:
        from mcuquant.graph import read_int8_tflite

        int8 = read_int8_tflite(tflite)
    result = layer_errors(float_model, int8, dataset.x_test, max_samples=samples,
                          representative=representative if tflite is None else None, progress=progress)
    result["model"] = str(model)
    result["tflite"] = str(tflite) if tflite else "PTQ-converted from the model"
    return result


def format_rows(result: dict, limit: int = 15, *, rest_in: str = "in report.json"):
    """The worst `limit` rows of a `layer_errors` result as a rich Table; the caption says where the
    other rows are (`rest_in`)."""
    from rich.table import Table

    table = Table(title=f"per-layer int8 error vs the {result['reference']} ({result['samples']} samples, "
                        "worst first; errors in quantization steps)")
    for column in ("op", "layer", "rmse/scale", "max/scale", "clipped", "local rmse/scale", "scale"):
        table.add_column(column, justify="left" if column in ("op", "layer") else "right")
    for r in result["rows"][:limit]:
        local = r["local_rmse_over_scale"]
        table.add_row(f"{r['op_index']} {r['op']}", r["layer"], f"{r['rmse_over_scale']:.2f}",
                      f"{r['max_over_scale']:.1f}", f"{100 * r['clipped_share']:.2f}%",
                      "-" if local is None else f"{local:.2f}", f"{r['scale']:.3g}")
    if len(result["rows"]) > limit:
        table.caption = f"{len(result['rows']) - limit} more tensors {rest_in}"
    return table


class _Totals:
    """Running sums over samples for one tensor."""

    def __init__(self):
        self.n = self.clipped = 0
        self.squared = self.max_abs = 0.0

    def add(self, dequantized: np.ndarray, reference: np.ndarray, tensor) -> None:
        reference = reference.astype(np.float64).reshape(dequantized.shape)
        error = dequantized.astype(np.float64) - reference
        info = np.iinfo(np.dtype(tensor.dtype))
        low, high = [(q - tensor.zero_points[0]) * tensor.scales[0] for q in (info.min, info.max)]
        self.n += error.size
        self.squared += float(np.sum(error * error))
        self.max_abs = max(self.max_abs, float(np.max(np.abs(error))) if error.size else 0.0)
        self.clipped += int(np.count_nonzero((reference < low) | (reference > high)))

    def metrics(self, scale: float) -> dict:
        rmse = float(np.sqrt(self.squared / self.n)) if self.n else 0.0
        return {"n_values": self.n, "rmse": rmse, "max_abs_error": self.max_abs,
                "rmse_over_scale": rmse / scale, "max_over_scale": self.max_abs / scale,
                "clipped_share": self.clipped / self.n if self.n else 0.0}


def _checked_samples(float_model, quantized: Runner, x) -> np.ndarray:
    x = np.asarray(x)
    expected = tuple(float_model.input_shape[1:])
    shape = tuple(x.shape[1:])
    if x.ndim != len(expected) + 1 or any(e is not None and e != s for e, s in zip(expected, shape)):
        raise DatasetError(f"samples of shape {shape} (array {x.shape}) do not fit model '{float_model.name}', which "
                           f"takes {expected}; pass an array (N, {', '.join(str(e) for e in expected)})")
    if len(x) == 0:
        raise DatasetError("no samples given; pass at least one float sample")
    if not np.issubdtype(x.dtype, np.number):
        raise DatasetError(f"samples have dtype {x.dtype}; pass float samples as the Keras model takes them")
    bad = ~np.isfinite(x.astype(np.float64))
    if bad.any():
        samples = np.flatnonzero(bad.reshape(len(x), -1).any(axis=1))
        raise DatasetError(f"{int(bad.sum())} NaN/inf values in samples {samples[:5].tolist()}"
                           f"{'...' if len(samples) > 5 else ''}; clean or drop them")
    if tuple(quantized.input.shape[1:]) != shape:
        raise ModelError(f"the .tflite takes samples of shape {tuple(quantized.input.shape[1:])} but model "
                         f"'{float_model.name}' takes {shape}: not the same network; give the .tflite converted from it")
    return x.astype(np.float32)


def _quantized_activations(graph: Graph) -> list[int]:
    """Integer tensors with a scale (model input and operator outputs), in execution order."""
    tensors = [t for t in graph.inputs + tuple(graph.activations())
               if graph.tensors[t].dtype in ("int8", "int16") and graph.tensors[t].scales]
    if not tensors:
        raise ModelError("the .tflite has no quantized activations (it is a float model); give the int8 model, "
                         "e.g. from quantize.convert_ptq or `mcuquant compare`")
    return tensors


def _float_tflite(float_model) -> bytes:
    try:
        with tflite_converter(float_model) as converter, converter_output_captured():
            return bytes(converter.convert())
    except Exception as exc:  # the converter raises many types
        raise ModelError(f"could not convert the float model to a float .tflite for reference: {exc}") from exc


def _match(quantized: Graph, reference: Graph, tensors: list[int], names: "_KerasNames") -> tuple[dict, str]:
    """{int8 tensor: float tensor}, and how they were paired.

    Graph structure decides whether the models are the same network; tensor and Keras layer names
    only fill gaps (different networks share names like "logits"), and alone must pair at least
    half of the tensors.
    """
    wanted = set(tensors)
    pairs = {a: b for a, b in match_tensors(_without_io_conversions(quantized), reference) if a in wanted}
    structural = len(set(pairs) - set(quantized.inputs) - set(_io_conversions(quantized)))
    how = ["graph structure"]
    if len(pairs) < len(tensors):
        taken = set(pairs.values())
        candidates = [t for t in reference.inputs + tuple(reference.activations()) if t not in taken]
        by_name = _unique(candidates, lambda t: reference.tensors[t].name)
        by_layers = _unique(candidates, lambda t: tuple(names.layers_in_name(reference.tensors[t].name)))
        before = len(pairs)
        for t in tensors:
            if t in pairs:
                continue
            found = by_name.get(quantized.tensors[t].name)
            if found is None:
                found = by_layers.get(tuple(names.layers_in_name(quantized.tensors[t].name)))
            if found is not None and found not in pairs.values() and \
                    reference.tensors[found].shape == quantized.tensors[t].shape:
                pairs[t] = found
        if len(pairs) > before:
            how.append("tensor names / Keras layer names")
        if not structural and 2 * (len(pairs) - before) < len(tensors):
            pairs = {}
    return pairs, " then ".join(how)


def _without_io_conversions(graph: Graph) -> Graph:
    """The graph of a float-I/O int8 model seen from inside its QUANTIZE/DEQUANTIZE of input and output,
    so that its structure compares with the float model's."""
    conversions = _io_conversions(graph)
    if not conversions:
        return graph
    operators = tuple(op for op in graph.operators
                      if not (op.name in ("QUANTIZE", "DEQUANTIZE") and set(op.inputs + op.outputs) & set(conversions)))
    inputs = tuple(next((t for t, end in conversions.items() if end == "input" and t in op.outputs), i)
                   for i in graph.inputs for op in graph.operators if i in op.inputs and op.name == "QUANTIZE") \
        or graph.inputs
    outputs = tuple(next((t for t, end in conversions.items() if end == "output" and t in op.inputs), o)
                    for o in graph.outputs for op in graph.operators if o in op.outputs and op.name == "DEQUANTIZE") \
        or graph.outputs
    return Graph(tensors=graph.tensors, operators=operators, inputs=inputs, outputs=outputs)


def _unique(items, key) -> dict:
    """key -> item for keys that exactly one item has (ambiguous or empty keys are dropped)."""
    counts = Counter(key(t) for t in items)
    return {key(t): t for t in items if key(t) and counts[key(t)] == 1}


def _io_conversions(graph: Graph) -> dict[int, str]:
    """Integer tensors of a float-I/O model that hold the model input or output: a QUANTIZE of the
    input ("input") and what a DEQUANTIZE turns into the output ("output")."""
    found = {}
    for op in graph.operators:
        if op.name == "QUANTIZE" and set(op.inputs) <= set(graph.inputs):
            found.update({t: "input" for t in op.outputs})
        if op.name == "DEQUANTIZE" and set(op.outputs) <= set(graph.outputs):
            found.update({t: "output" for t in op.inputs})
    return found


class _KerasNames:
    """Maps converter tensor names ("model/activation/Relu;model/conv2d/BiasAdd;...") to Keras layer names."""

    def __init__(self, model):
        self.order = {layer.name: i for i, layer in enumerate(model.layers)}
        self.inbound = {layer.name: _inbound_layers(layer, self.order) for layer in model.layers}
        self.input_names = [n for n in getattr(model, "input_names", []) if n] or ["input"]
        self.output_names = [n for n in getattr(model, "output_names", []) if n in self.order]
        self._layers: dict[int, dict[int, list[str]]] = {}

    def _layer(self, component: str) -> str | None:
        for name in (component, component.removeprefix("quant_")):  # tfmot wraps layers as quant_<name>
            if name in self.order:
                return name
        return None

    def counts_in_name(self, tensor_name: str) -> Counter:
        """How many ';'-separated parts of the name mention each layer (the last path component is the op)."""
        counts = Counter()
        for part in tensor_name.split(";"):
            counts.update({self._layer(c) for c in re.split(r"[/:]", part)[:-1]} - {None})
        return counts

    def layers_in_name(self, tensor_name: str) -> list[str]:
        return sorted(self.counts_in_name(tensor_name), key=self.order.get)

    def layers_of(self, graph: Graph, tensor: int) -> list[str]:
        """The Keras layers fused into the op producing `tensor`, in model order; never empty."""
        if id(graph) not in self._layers:
            self._layers[id(graph)] = self._assign(graph)
        return self._layers[id(graph)].get(tensor) or self._fallback(graph, tensor)

    def _assign(self, graph: Graph) -> dict[int, list[str]]:
        """Layers per tensor of `graph`.

        Some converters add stray parts naming another op's layer (the MLPerf ResNet-8 .tflite names
        conv2d_2 in conv2d's op): a layer named by several ops stays where it is named most, unless
        that would leave an op with none. Others leave out a folded layer (a BatchNormalization
        after a Conv2D): a layer no op names joins the op of the layer feeding it, when it is that
        layer's only consumer (not the model's output layer: the output tensor is often named
        "StatefulPartitionedCall:0" and gets the output layer's name).
        """
        counts = {t: self.counts_in_name(graph.tensors[t].name) for t in graph.inputs + tuple(graph.activations())}
        most = Counter()
        for c in counts.values():
            for layer, n in c.items():
                most[layer] = max(most[layer], n)
        assigned = {t: {name for name, n in c.items() if n == most[name]} or set(c) for t, c in counts.items()}
        holders = Counter(name for layers in assigned.values() for name in layers)
        owner = {name: t for t, layers in assigned.items() for name in layers if holders[name] == 1}
        consumers = Counter(parent for parents in self.inbound.values() for parent in parents)
        for name in sorted(self.order, key=self.order.get):
            parents = self.inbound[name]
            if name not in most and name not in self.output_names and len(parents) == 1 and parents[0] in owner and consumers[parents[0]] == 1:
                owner[name] = owner[parents[0]]
                assigned[owner[name]].add(name)
        return {t: sorted(layers, key=self.order.get) for t, layers in assigned.items()}

    def _fallback(self, graph: Graph, tensor: int) -> list[str]:
        conversions = _io_conversions(graph)
        if tensor in graph.inputs or conversions.get(tensor) == "input":
            return self.input_names[:1]
        if (tensor in graph.outputs or conversions.get(tensor) == "output") and self.output_names:
            return self.output_names[:1]
        op = graph.producer()[tensor]
        return [f"{op.name.lower()}_{op.index}"]


def _inbound_layers(layer, known: dict) -> list[str]:
    """Names of the layers feeding `layer` within the model (tf-keras functional graph)."""
    names = []
    for node in getattr(layer, "inbound_nodes", []):
        inbound = node.inbound_layers if isinstance(node.inbound_layers, (list, tuple)) else [node.inbound_layers]
        names += [parent.name for parent in inbound if parent.name in known and parent.name != layer.name]
    return names


def _add_local_errors(rows: list[dict], float_model, graph: Graph, representative: np.ndarray,
                      x: np.ndarray, names: _KerasNames, lookup: dict[str, str]) -> list[str]:
    """Fill `local_rmse_over_scale` from TF's QuantizationDebugger; return notes on what did not apply.
    `lookup`: the name each row's tensor is known by in `float_model`'s conversions."""
    if graph.tensors[graph.inputs[0]].dtype == "int16" or any(
            graph.tensors[t].dtype == "int16" for t in graph.activations()):
        return ["no local errors: the QuantizationDebugger quantizes to int8, the model has int16 activations"]
    try:
        statistics = _debugger_statistics(float_model, graph, np.asarray(representative, np.float32), x)
    except Exception as exc:  # the debugger is experimental: report, never fail the analysis
        return [f"no local errors: QuantizationDebugger failed ({type(exc).__name__}: {str(exc)[:200]})"]
    by_layers = _unique(list(statistics.values()), lambda s: tuple(names.layers_in_name(s["tensor_name"])))
    different = missing = 0
    for row in rows:
        name = lookup[row["tensor"]]
        s = (statistics.get(name) or statistics.get(_without_trailing_digit(name))
             or by_layers.get(tuple(names.layers_in_name(name))))  # QAT: "quant_conv2d/..."
        if s is None:
            missing += row["op"] != "INPUT"  # the debugger measures op outputs only
            continue
        if abs(s["scale"] - row["scale"]) > _SAME_SCALE * row["scale"] or s["zero_point"] != row["zero_point"]:
            different += 1  # the debugger's model is not this one here (QAT, other calibration)
            continue
        row["local_rmse_over_scale"] = float(np.sqrt(s["mean_squared_error"]) / s["scale"])
    notes = []
    if different:
        notes.append(f"{different} tensors have no local error: the debugger's PTQ calibration on the representative "
                     "set gives them other quantization parameters than this model (e.g. a QAT model)")
    if missing:
        notes.append(f"{missing} tensors have no local error: the debugger's model has no tensor of that name")
    return notes


def _debugger_statistics(float_model, graph: Graph, representative: np.ndarray, x: np.ndarray) -> dict:
    """{tensor name: {"mean_squared_error", "scale", "zero_point"}} from the QuantizationDebugger."""
    tf = tensorflow()
    with tflite_converter(float_model) as converter:
        return _debugged(converter, graph, representative, x)


def _debugged(converter, graph: Graph, representative: np.ndarray, x: np.ndarray) -> dict:
    tf = tensorflow()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if not any(t.per_channel for t in graph.tensors.values()):
        converter._experimental_disable_per_channel = True  # quantize weights as the given model does

    def calibration():
        for sample in representative:
            yield [sample[None, ...]]

    def debug_samples():
        for sample in x:
            yield [sample[None, ...]]

    converter.representative_dataset = calibration
    with warnings.catch_warnings(), converter_output_captured():
        # tf.lite.Interpreter's deprecation notice and "Statistics for quantized inputs were expected"
        warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated", category=UserWarning)
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs", category=UserWarning)
        debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=debug_samples)
        debugger.run()
        dump = io.StringIO()
        debugger.layer_statistics_dump(dump)
    statistics = {}
    for r in csv.DictReader(io.StringIO(dump.getvalue())):
        entry = {"mean_squared_error": float(r["mean_squared_error"]), "scale": float(r["scale"]),
                 "zero_point": int(float(r["zero_point"])), "tensor_name": r["tensor_name"]}
        statistics[r["tensor_name"]] = entry
    for name, entry in list(statistics.items()):
        statistics.setdefault(_without_trailing_digit(name), entry)
    return statistics


def _without_trailing_digit(name: str) -> str:
    """The debugger's dump may drop a converter-added trailing digit ("Conv2D1" -> "Conv2D")."""
    return name[:-1] if name[-1:].isdigit() else name
