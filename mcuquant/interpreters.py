"""Host interpreters for int8 models, behind one small interface.

- `litert`:     ai-edge-litert with its default (optimized, XNNPACK) kernels
- `litert-ref`: ai-edge-litert with reference kernels (OpResolverType.BUILTIN_REF)
- `tflm-host`:  TensorFlow Lite Micro compiled for the host (PyPI tflite-micro): the bit-exact
                oracle for a device running TFLM or mcuquant's builtin runtime
- `builtin-host`: mcuquant's builtin C runtime compiled for the host (mcuquant.builtin.host)

They disagree more often than one would think (see DESIGN.md), so `agreement` measures how
often outputs are byte-identical and, for the samples where they are not, the first operator
whose output differs.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from mcuquant.errors import ModelError
from mcuquant.graph import Graph, Tensor
from mcuquant.progress import progress_bar
from mcuquant.tf_import import native_stderr_captured

RUNTIMES = ("litert", "litert-ref", "tflm-host", "builtin-host")


class Runner:
    """Runs one sample at a time; `tensor(i)` reads any tensor after `invoke` when preserving all."""

    def __init__(self, kind: str, model: bytes, *, preserve_all: bool = False):
        if kind not in RUNTIMES:
            raise ValueError(f"unknown runtime {kind!r}; known: {RUNTIMES}")
        self.kind = kind
        self.graph = Graph.from_tflite(model)
        if len(self.graph.inputs) != 1 or len(self.graph.outputs) != 1:
            raise ModelError(f"the model has {len(self.graph.inputs)} inputs and {len(self.graph.outputs)} outputs; "
                             "mcuquant evaluates models with one input and one output")
        self.input: Tensor = self.graph.tensors[self.graph.inputs[0]]
        self.output: Tensor = self.graph.tensors[self.graph.outputs[0]]
        if kind == "builtin-host":
            from mcuquant.builtin.host import HostRuntime

            self._builtin = HostRuntime(model, preserve_all=preserve_all)
        elif kind == "tflm-host":
            # Made on the first in-process invoke: TFLM may abort() while preparing some models, and a
            # batch `run` never needs it (it runs in a child process, see run).
            self._model, self._preserve_all, self._tflm_interpreter = bytes(model), preserve_all, None
        else:
            from ai_edge_litert.interpreter import Interpreter, OpResolverType

            resolver = OpResolverType.BUILTIN_REF if kind == "litert-ref" else OpResolverType.AUTO
            # Note: preserving all tensors makes LiteRT drop the XNNPACK delegate, so a traced
            # `litert` run uses LiteRT's builtin optimized kernels instead.
            # Hold back "INFO: Created TensorFlow Lite XNNPACK delegate" and the warning that
            # preserving tensors is meant for debugging (it is what we do with it).
            with native_stderr_captured(), warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                self._litert = Interpreter(model_content=bytes(model), experimental_op_resolver_type=resolver,
                                           experimental_preserve_all_tensors=preserve_all)
                self._litert.allocate_tensors()

    @property
    def _tflm(self):
        if self._tflm_interpreter is None:
            from tflite_micro.python.tflite_micro import runtime

            config = (runtime.InterpreterConfig.kPreserveAllTensors if self._preserve_all
                      else runtime.InterpreterConfig.kAllocationRecording)
            # The host has memory to spare; the arena a board needs is measured elsewhere.
            arena = max(16 * len(self._model), 1 << 20)
            try:
                self._tflm_interpreter = runtime.Interpreter.from_bytes(self._model, arena_size=arena,
                                                                        intrepreter_config=config)
            except (RuntimeError, ValueError) as exc:
                raise ModelError(f"TFLM cannot run this model: {exc}") from exc
        return self._tflm_interpreter

    def invoke(self, x: np.ndarray) -> np.ndarray:
        """Run one quantized sample (without batch axis); return the raw output (without batch axis)."""
        x = np.ascontiguousarray(x.reshape(self.input.shape).astype(self.input.dtype))
        if self.kind == "builtin-host":
            out = self._builtin.invoke(x)
        elif self.kind == "tflm-host":
            self._tflm.set_input(x, 0)
            self._tflm.invoke()
            out = self._tflm.get_output(0)
        else:
            self._litert.set_tensor(self.input.index, x)
            self._litert.invoke()
            out = self._litert.get_tensor(self.output.index)
        return np.array(out).reshape(self.output.shape[1:])

    def tensor(self, index: int) -> np.ndarray:
        if self.kind == "builtin-host":
            return self._builtin.tensor(index)
        if self.kind == "tflm-host":
            return np.array(self._tflm.GetTensor(index, 0)["tensor_data"])
        return np.array(self._litert.get_tensor(index))

    def run(self, xq: np.ndarray, *, label: str | None = None, progress: bool = True) -> np.ndarray:
        """Run every sample of `xq` (N, ...) and stack the outputs.

        tflm-host runs in a child process (mcuquant.tflm_child): a model TFLM aborts on gives a
        ModelError naming the sample instead of ending this process.
        """
        if self.kind == "tflm-host":
            return self._run_tflm_isolated(xq, label=label or self.kind, progress=progress)
        outputs = []
        with progress_bar(label or self.kind, len(xq), enabled=progress) as advance:
            for x in xq:
                outputs.append(self.invoke(x))
                advance()
        return np.stack(outputs)


    def _run_tflm_isolated(self, xq: np.ndarray, *, label: str, progress: bool) -> np.ndarray:
        n = len(xq)
        inputs = np.ascontiguousarray(xq.reshape((n, *self.input.shape)).astype(self.input.dtype))
        with tempfile.TemporaryDirectory(prefix="mcuquant-tflm-") as tmp:
            folder = Path(tmp)
            (folder / "model.tflite").write_bytes(self._model)
            np.save(folder / "inputs.npy", inputs)
            with open(folder / "stderr.txt", "w+b") as err, \
                    progress_bar(label, n, enabled=progress) as advance:
                child = subprocess.Popen([sys.executable, "-m", "mcuquant.tflm_child", tmp], stdout=subprocess.PIPE,
                                         stderr=err, stdin=subprocess.DEVNULL)
                done = 0
                try:
                    for _ in child.stdout:
                        done += 1
                        advance()
                    child.wait()
                finally:
                    if child.poll() is None:  # interrupted: leave no child behind
                        child.kill()
                        child.wait()
                    child.stdout.close()
                err.seek(0)
                message = " | ".join(line.strip() for line in err.read().decode("utf-8", "replace").splitlines()
                                     if line.strip())[-600:]
            if child.returncode == 0:
                return np.load(folder / "outputs.npy").reshape((n, *self.output.shape[1:]))
        if child.returncode < 0:
            name = signal.Signals(-child.returncode).name
            raise ModelError(f"TFLM (tflm-host) crashed with {name} on the sample at index {done} ({done} of {n} "
                             "samples had finished)"
                             f"{': ' + message if message else ''}. TFLM stops the process instead of returning "
                             "an error on some models, e.g. a SOFTMAX row whose exponentials overflow or a "
                             "requantization multiplier out of range; check the model's quantization parameters")
        raise ModelError(f"TFLM cannot run this model: {message or f'exit status {child.returncode}'}")


def quantize(x: np.ndarray, tensor: Tensor) -> np.ndarray:
    """Float samples -> the integer input tensor's values (round half away from zero, then clamp)."""
    info = np.iinfo(np.dtype(tensor.dtype))
    scaled = x / tensor.scales[0]
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)
    return np.clip(rounded + tensor.zero_points[0], info.min, info.max).astype(tensor.dtype)


def dequantize(q: np.ndarray, tensor: Tensor) -> np.ndarray:
    return ((q.astype(np.float32) - tensor.zero_points[0]) * tensor.scales[0]).astype(np.float32)


def first_divergence(a: Runner, b: Runner, x: np.ndarray) -> dict | None:
    """Run one sample through two runners built with preserve_all=True on the same model; return the
    first operator whose output differs.

    Returns None when the traced runs agree on every operator output (e.g. a difference that only
    XNNPACK produces, since tracing LiteRT disables it).
    """
    a.invoke(x)
    b.invoke(x)
    for op in a.graph.operators:
        for t in op.outputs:
            ta, tb = a.tensor(t).astype(np.int64), b.tensor(t).astype(np.int64)
            if ta.shape != tb.shape or not np.array_equal(ta, tb):
                diff = int(np.max(np.abs(ta - tb))) if ta.shape == tb.shape else None
                return {"op_index": op.index, "op": op.name, "tensor": a.graph.tensors[t].name,
                        "max_lsb_difference": diff,
                        "values_differing": int(np.count_nonzero(ta != tb)) if ta.shape == tb.shape else None,
                        "values": int(ta.size)}
    return None


def agreement(model: bytes, xq: np.ndarray, kind_a: str, out_a: np.ndarray, kind_b: str, out_b: np.ndarray,
              *, classification: bool, max_traced: int = 10) -> dict:
    """How often two runtimes give byte-identical outputs on the same inputs, and where they part.

    Every mismatching sample is listed (index, max LSB difference, class flip); the first `max_traced`
    are re-run with all tensors preserved to find the first diverging operator.
    """
    diff = np.abs(out_a.astype(np.int64) - out_b.astype(np.int64)).reshape(len(out_a), -1).max(axis=1)
    mismatching = np.flatnonzero(diff)
    mismatches = []
    for i in mismatching:
        entry = {"index": int(i), "max_lsb_difference": int(diff[i])}
        if classification:
            ca, cb = int(np.argmax(out_a[i])), int(np.argmax(out_b[i]))
            entry.update(class_a=ca, class_b=cb, class_flip=ca != cb)
        mismatches.append(entry)
    by_op: dict[tuple, dict] = {}
    if mismatches and max_traced:
        traced_a = Runner(kind_a, model, preserve_all=True)
        traced_b = Runner(kind_b, model, preserve_all=True)
    for entry in mismatches[:max_traced]:
        where = first_divergence(traced_a, traced_b, xq[entry["index"]])
        entry["first_divergence"] = where
        if where:
            key = (where["op_index"], where["op"], where["tensor"])
            slot = by_op.setdefault(key, {"op_index": key[0], "op": key[1], "tensor": key[2], "samples": 0,
                                          "max_lsb_difference": 0})
            slot["samples"] += 1
            slot["max_lsb_difference"] = max(slot["max_lsb_difference"], where["max_lsb_difference"] or 0)
    n = len(out_a)
    return {
        "a": kind_a, "b": kind_b, "n": n,
        "bit_exact": int(n - len(mismatching)),
        "bit_exact_rate": float((n - len(mismatching)) / n) if n else 1.0,
        "max_lsb_difference": int(diff.max()) if n else 0,
        "class_flips": sum(1 for m in mismatches if m.get("class_flip")),
        "mismatches": mismatches,
        "traced_samples": min(len(mismatches), max_traced),
        "first_divergence_by_op": sorted(by_op.values(), key=lambda s: s["op_index"]),
    }
