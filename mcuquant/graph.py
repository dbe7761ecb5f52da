"""A TFLite model's graph as plain data: operators, tensors, quantization parameters.

Two conversions of the same network (QAT vs PTQ, two representative sets) name and order their
tensors differently, so tensors are matched by graph structure: a tensor's key is derived from
the operator that produces it and, recursively, the keys of that operator's inputs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcuquant.errors import ModelError


#: Integer types a device runs (int16 for int16x8 activations).
INTEGER_IO = ("int8", "int16")


_WANTED = "give an int8 .tflite (`mcuquant compare` writes ptq.tflite and qat.tflite)"


def read_int8_tflite(path: str | Path) -> bytes:
    """The bytes of the full-integer .tflite file at ``path``, or ModelError naming the file, what
    is wrong with it and what to give instead: missing, a folder, empty, or any fault of
    :func:`integer_graph`."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path} not found: {_WANTED}")
    if path.is_dir():
        raise ModelError(f"{path} is a folder: {_WANTED}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror}") from None
    if not data:
        raise ModelError(f"{path} is empty (0 bytes): {_WANTED}")
    integer_graph(data, str(path))
    return data


def integer_graph(data: bytes, name: str) -> "Graph":
    """The graph of a full-integer TFLite model, or ModelError: not a TFLite flatbuffer, truncated
    or corrupt, a float model, or float inputs/outputs around int8 kernels (dynamic-range
    quantization, or a conversion without int8 input and output types), which a microcontroller
    does not run."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelError(f"{name} is not a TFLite model (no TFL3 flatbuffer identifier in its first 8 bytes): {_WANTED}")
    try:
        graph = Graph.from_tflite(data)
    except ModelError as exc:
        raise ModelError(f"{name} is truncated or corrupt ({len(data)} bytes): {exc}; {_WANTED}") from None
    if not any(t.scales and t.dtype in INTEGER_IO for t in graph.tensors.values()):
        raise ModelError(f"{name} is a float model: convert with int8 quantization first (e.g. `mcuquant compare` "
                         "writes ptq.tflite and qat.tflite)")
    for i in graph.inputs + graph.outputs:
        t = graph.tensors[i]
        if t.dtype not in INTEGER_IO or not t.scales:
            raise ModelError(f"{name} has {t.dtype} input or output '{t.name}' (dynamic-range quantization, or a "
                             "conversion without int8 input and output types), which a microcontroller is not fed: "
                             "convert with full integer quantization (a representative_dataset and "
                             "converter.inference_input_type = inference_output_type = tf.int8; `mcuquant compare` "
                             "writes ptq.tflite)")
    return graph


@dataclass(frozen=True)
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scales: tuple[float, ...]
    zero_points: tuple[int, ...]
    quantized_dimension: int

    @property
    def per_channel(self) -> bool:
        return len(self.scales) > 1


@dataclass(frozen=True)
class Operator:
    index: int
    name: str  # builtin op name, e.g. CONV_2D
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class Graph:
    tensors: dict[int, Tensor]
    operators: tuple[Operator, ...]  # in execution order
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    @classmethod
    def from_tflite(cls, model: bytes) -> "Graph":
        from ai_edge_litert.interpreter import Interpreter

        try:
            interpreter = Interpreter(model_content=bytes(model))
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"not a valid .tflite model: {exc}") from exc
        tensors = {}
        for d in interpreter.get_tensor_details():
            q = d["quantization_parameters"]
            tensors[d["index"]] = Tensor(
                index=d["index"], name=d["name"], shape=tuple(int(s) for s in d["shape"]),
                dtype=np.dtype(d["dtype"]).name, scales=tuple(float(s) for s in q["scales"]),
                zero_points=tuple(int(z) for z in q["zero_points"]), quantized_dimension=int(q["quantized_dimension"]))
        operators = tuple(
            Operator(index=o["index"], name=o["op_name"], inputs=tuple(int(i) for i in o["inputs"]),
                     outputs=tuple(int(i) for i in o["outputs"]))
            for o in interpreter._get_ops_details())  # the public API has no op list
        return cls(tensors=tensors, operators=operators,
                   inputs=tuple(d["index"] for d in interpreter.get_input_details()),
                   outputs=tuple(d["index"] for d in interpreter.get_output_details()))

    def producer(self) -> dict[int, Operator]:
        return {t: op for op in self.operators for t in op.outputs}

    def activations(self) -> list[int]:
        """Tensors computed at run time (operator outputs), in execution order."""
        return [t for op in self.operators for t in op.outputs]

    def structural_keys(self) -> dict[int, str]:
        """A key per tensor that two conversions of the same network share, whatever the names/order."""
        keys: dict[int, str] = {}
        for position, t in enumerate(self.inputs):
            keys[t] = f"input{position}"
        for op in self.operators:  # execution order is a topological order
            parts = [op.name]
            for i in op.inputs:
                if i < 0:
                    parts.append("none")
                elif i in keys:
                    parts.append(keys[i])
                else:  # a constant: weights or bias, known by its shape
                    parts.append(f"const{self.tensors[i].shape}")
            digest = hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]
            for position, t in enumerate(op.outputs):
                keys[t] = f"{op.name}:{digest}:{position}"
        return keys


def match_tensors(a: Graph, b: Graph) -> list[tuple[int, int]]:
    """Pairs (index in a, index in b) of activation tensors that play the same role in both graphs."""
    keys_b = {key: t for t, key in b.structural_keys().items()}
    keys_a = a.structural_keys()
    return [(t, keys_b[keys_a[t]]) for t in a.inputs + tuple(a.activations()) if keys_a[t] in keys_b]


def quantization_differences(a: Graph, b: Graph) -> dict:
    """Compare scales and zero points of matched activation tensors of two graphs.

    Returns {"compared": n, "unmatched": n, "changed": [{tensor_a, tensor_b, op, scale_a, scale_b,
    zero_point_a, zero_point_b, relative_scale_difference}], sorted by relative difference}.
    """
    producer = a.producer()
    pairs = match_tensors(a, b)
    changed = []
    for ta, tb in pairs:
        x, y = a.tensors[ta], b.tensors[tb]
        if x.scales == y.scales and x.zero_points == y.zero_points:
            continue
        sa, sb = np.array(x.scales or (0.0,)), np.array(y.scales or (0.0,))
        rel = float(np.max(np.abs(sa - sb) / np.maximum(np.abs(sa), 1e-30))) if sa.shape == sb.shape else float("inf")
        changed.append({
            "tensor_a": x.name, "tensor_b": y.name, "op": producer[ta].name if ta in producer else "input",
            "scale_a": list(x.scales), "scale_b": list(y.scales),
            "zero_point_a": list(x.zero_points), "zero_point_b": list(y.zero_points),
            "relative_scale_difference": rel,
        })
    changed.sort(key=lambda c: -c["relative_scale_difference"])
    n_activations = len(a.inputs) + len(a.activations())
    return {"compared": len(pairs), "unmatched": n_activations - len(pairs), "changed": changed}
