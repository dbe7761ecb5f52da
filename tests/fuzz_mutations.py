"""Mutated TFLite models for fuzzing the builtin runtime's loader and kernels.

Two kinds of mutation, both deterministic in a seed:

- Byte-level edits guided by the model's structure. `FieldMap.of(model)` walks the flatbuffer once
  (TFLite schema field numbers below; a union takes two) and records where every interesting
  value lives: offsets, vector lengths, vtable entries, tensor indices in operators and subgraphs,
  opcode and buffer indices, shape dimensions, tensor types, scales, zero points, quantized
  dimensions, builtin option fields, operator codes. A mutant is then a copy of the bytes with a
  few values overwritten by hostile ones (out-of-range indices, dims of 2^31-1 or -1, vector
  lengths of 2^32-1, swapped offsets, NaN scales...), or a truncation at one of those positions,
  or random byte flips. This is cheap (microseconds), so it makes most of a campaign.
- Structural edits through the schema's object API (unpack, edit, re-serialize) for what byte
  edits cannot express cleanly: more dims than any runtime allows, per-channel vectors of the
  wrong length, an operator writing into a constant or reading its own output, tensors without
  quantization, several subgraphs, buffers shorter or longer than the tensor.

`mutants(seeds, n, seed)` yields (mutation name, bytes) pairs mixing both.
"""

from __future__ import annotations

import random
import struct
from collections import defaultdict
from dataclasses import dataclass, field

# (field number, kind, table type) per table of the TFLite schema that the runtime reads.
# kinds: "table", "vec_table", "vec_i32", "vec_f32", "vec_i64", "vec_u8", "string", scalar
# formats as struct codes ("<I", "<i", "<b", "<B", "<Q"), and "options" (a builtin options table).
_SCHEMA = {
    "Model": [(0, "<I", "version"), (1, "vec_table", "OperatorCode"), (2, "vec_table", "SubGraph"),
              (3, "string", None), (4, "vec_table", "Buffer")],
    "OperatorCode": [(0, "<b", "deprecated_builtin_code"), (1, "string", None), (2, "<i", "opcode_version"),
                     (3, "<i", "builtin_code")],
    "SubGraph": [(0, "vec_table", "Tensor"), (1, "vec_i32", "io_index"), (2, "vec_i32", "io_index"),
                 (3, "vec_table", "Operator"), (4, "string", None)],
    "Tensor": [(0, "vec_i32", "dim"), (1, "<B", "tensor_type"), (2, "<I", "buffer_index"), (3, "string", None),
               (4, "table", "QuantizationParameters"), (5, "<B", "is_variable"), (7, "vec_i32", "dim")],
    "QuantizationParameters": [(0, "vec_f32", "minmax"), (1, "vec_f32", "minmax"), (2, "vec_f32", "scale"),
                               (3, "vec_i64", "zero_point"), (6, "<i", "quantized_dimension")],
    "Operator": [(0, "<I", "opcode_index"), (1, "vec_i32", "tensor_index"), (2, "vec_i32", "tensor_index"),
                 (3, "<B", "options_type"), (4, "options", None), (8, "vec_i32", "tensor_index")],
    "Buffer": [(0, "vec_u8", "buffer_data"), (1, "<Q", "buffer_offset"), (2, "<Q", "buffer_offset")],
}  # fmt: skip

# Hostile values per site kind.
_I32_EDGES = (-2**31, -2**31 + 1, -2, -1, 0, 1, 2**15, 2**16, 46341, 2**30, 2**31 - 1)
_VALUES = {
    "tensor_index": lambda n: (-2, -1, n["tensors"], n["tensors"] + 1, 2**31 - 1, -2**31, 2**16, 0),
    "io_index": lambda n: (-1, -2, n["tensors"], 2**31 - 1, -2**31, 0),
    "opcode_index": lambda n: (n["opcodes"], n["opcodes"] + 1, 2**32 - 1, 2**31, 0),
    "buffer_index": lambda n: (n["buffers"], n["buffers"] + 1, 2**32 - 1, 2**31, 0, 1),
    "dim": lambda n: _I32_EDGES,
    "quantized_dimension": lambda n: (-1, -2**31, 1, 2, 3, 4, 6, 7, 2**31 - 1),
    "tensor_type": lambda n: tuple(range(0, 22)) + (127, 200, 255),
    "options_type": lambda n: tuple(range(0, 30)) + (127, 255),
    "builtin_code": lambda n: (-1, 32, 127, 128, 200, 2**31 - 1, -2**31) + tuple(range(0, 130, 7)),
    "deprecated_builtin_code": lambda n: (-1, 0, 3, 4, 32, 127, -128),
    "opcode_version": lambda n: (0, -1, 2**31 - 1, 2, 7),
    "version": lambda n: (0, 1, 2, 4, 2**32 - 1),
    "is_variable": lambda n: (1, 255),
    "buffer_offset": lambda n: (1, 2**63, 2**64 - 1, 16, 2**32),
    "option": lambda n: _I32_EDGES + (2, 3, 4, 5, 6, 7, 100),
}
_SCALES = (0.0, -0.0, -1.0, float("nan"), float("inf"), float("-inf"), 1e-45, 1e-38, 3.4e38, 1e30, 2.0**-40)
_ZERO_POINTS = (2**63 - 1, -2**63, 128, -129, 255, 256, 2**31, -2**31 - 1, 127, -128)


@dataclass
class FieldMap:
    """Positions of the values worth mutating in one model (byte offsets into it)."""

    sites: dict = field(default_factory=lambda: defaultdict(list))  # kind -> [(pos, struct format)]
    counts: dict = field(default_factory=dict)  # "tensors", "opcodes", "buffers"

    @classmethod
    def of(cls, model: bytes) -> "FieldMap":
        fm = cls()
        fm.counts = {"tensors": 0, "opcodes": 0, "buffers": 0}
        root = _u32(model, 0)
        fm._table(model, root, "Model", set())
        return fm

    def add(self, kind: str, pos: int, fmt: str) -> None:
        self.sites[kind].append((pos, fmt))

    def _table(self, buf: bytes, pos: int, kind: str, seen: set) -> None:
        if pos in seen:  # shared sub-objects (deduplicated by the writer) are walked once
            return
        seen.add(pos)
        self.add("table_start", pos, "<i")
        vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        vt_len = _u16(buf, vtable)
        self.add("vtable_len", vtable, "<H")
        self.add("vtable_len", vtable + 2, "<H")
        for fid, fkind, sub in _SCHEMA[kind]:
            slot = vtable + 4 + 2 * fid
            if 4 + 2 * fid >= vt_len or _u16(buf, slot) == 0:
                continue
            self.add("vtable_entry", slot, "<H")
            p = pos + _u16(buf, slot)
            if fkind.startswith("<"):
                self.add(sub, p, fkind)
                continue
            self.add("uoffset", p, "<I")
            target = p + _u32(buf, p)
            if fkind == "table":
                self._table(buf, target, sub, seen)
            elif fkind == "options":
                self._options(buf, target)
            elif fkind == "string":
                self.add("veclen", target, "<I")
            else:
                n = _u32(buf, target)
                self.add("veclen", target, "<I")
                if fkind == "vec_table":
                    self.counts[{"Tensor": "tensors", "OperatorCode": "opcodes", "Buffer": "buffers"}.get(sub, "_")] = n
                    for i in range(n):
                        e = target + 4 + 4 * i
                        self.add("uoffset", e, "<I")
                        self._table(buf, e + _u32(buf, e), sub, seen)
                elif fkind == "vec_u8":
                    if n:
                        self.add(sub, target + 4, f"{n}s")
                else:
                    width, fmt = {"vec_i32": (4, "<i"), "vec_f32": (4, "<f"), "vec_i64": (8, "<q")}[fkind]
                    site = {"vec_f32": "scale" if sub == "scale" else "minmax", "vec_i64": "zero_point"}.get(fkind, sub)
                    for i in range(n):
                        self.add(site, target + 4 + width * i, fmt)
                    if sub == "dim":
                        self.add("shape_len", target, "<I")
                    if sub in ("scale", "zero_point"):
                        self.add("quant_len", target, "<I")

    def _options(self, buf: bytes, pos: int) -> None:
        """Builtin options tables hold only scalars (and, for RESHAPE, one int vector): every
        present field is a site, its width taken as the gap to the next field (1, 2 or 4)."""
        self.add("table_start", pos, "<i")
        vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        vt_len = _u16(buf, vtable)
        offsets = sorted({_u16(buf, vtable + s) for s in range(4, vt_len, 2)} - {0})
        table_len = _u16(buf, vtable + 2)
        for s in range(4, vt_len, 2):
            self.add("vtable_entry", vtable + s, "<H")
        for i, off in enumerate(offsets):
            gap = (offsets[i + 1] if i + 1 < len(offsets) else table_len) - off
            fmt = "<i" if gap >= 4 else ("<h" if gap >= 2 else "<b")
            self.add("option", pos + off, fmt)


def _u16(buf, pos) -> int:
    return struct.unpack_from("<H", buf, pos)[0]


def _u32(buf, pos) -> int:
    return struct.unpack_from("<I", buf, pos)[0]


def _put(out: bytearray, pos: int, fmt: str, value) -> None:
    """Write `value` with `fmt`, wrapping integers to the field's width (e.g. 2^31 into "<i")."""
    if fmt[-1] in "bhiqBHIQ":
        bits = 8 * struct.calcsize(fmt)
        value = int(value) & ((1 << bits) - 1)
        if fmt[-1] in "bhiq" and value >= 1 << (bits - 1):
            value -= 1 << bits
    struct.pack_into(fmt, out, pos, value)


# ---------------------------------------------------------------------------------------------
# Byte-level mutations: each edits `out` in place (or returns a shorter copy for truncations).


def _set_site(out: bytearray, fm: FieldMap, rng: random.Random, kinds) -> str | None:
    kinds = [k for k in kinds if fm.sites.get(k)]
    if not kinds:
        return None
    kind = rng.choice(kinds)
    pos, fmt = rng.choice(fm.sites[kind])
    if kind == "scale" or kind == "minmax":
        value = rng.choice(_SCALES)
    elif kind == "zero_point":
        value = rng.choice(_ZERO_POINTS)
    elif kind in ("veclen", "shape_len", "quant_len"):
        old = _u32(out, pos)
        value = rng.choice((0, 1, old + 1, old - 1, old + 7, old * 2, 2**32 - 1, 2**31, 2**30, 2**28, 0x10000))
    elif kind == "uoffset":
        old = _u32(out, pos)
        other = rng.choice(fm.sites["uoffset"])[0]
        value = rng.choice((0, 4, len(out), len(out) - pos, 2**32 - 4, 2**31, old + 4, old - 4,
                            other + _u32(out, other) - pos))  # the last: points where another offset points
    elif kind == "table_start":
        value = rng.choice((0, 4, -4, 2**31 - 1, -2**31, pos + 1, pos - len(out), 1))
    elif kind in ("vtable_entry", "vtable_len"):
        value = rng.choice((0, 1, 3, 0xFFFF, 0x8000, 4, 256, 2**15 - 1))
    elif kind == "buffer_data":
        size = struct.calcsize(fmt)
        for _ in range(rng.randint(1, 16)):
            out[pos + rng.randrange(size)] = rng.randrange(256)
        return kind
    else:
        value = rng.choice(_VALUES[kind](fm.counts))
    _put(out, pos, fmt, value)
    return kind


def _swap_offsets(out: bytearray, fm: FieldMap, rng: random.Random) -> str | None:
    """Exchange the targets of two offsets (e.g. a tensor's shape with an operator's inputs)."""
    sites = fm.sites.get("uoffset")
    if not sites or len(sites) < 2:
        return None
    (a, _), (b, _) = rng.sample(sites, 2)
    ta, tb = a + _u32(out, a), b + _u32(out, b)
    _put(out, a, "<I", tb - a)
    _put(out, b, "<I", ta - b)
    return "swap_offsets"


def _byte_flips(out: bytearray, rng: random.Random) -> str:
    for _ in range(rng.choice((1, 1, 2, 4, 8, 32))):
        i = rng.randrange(len(out))
        out[i] = rng.choice((rng.randrange(256), out[i] ^ (1 << rng.randrange(8)), 0, 0xFF, 0x80, 0x7F))
    return "byte_flip"


def truncation_points(model: bytes, fm: FieldMap | None = None) -> list[int]:
    """Every length at which a recorded value starts or ends, and its neighbours (sorted)."""
    fm = fm or FieldMap.of(model)
    points = {0, 1, 4, 7, 8, len(model) - 1}
    for kind, sites in fm.sites.items():
        for pos, fmt in sites:
            size = struct.calcsize(fmt)
            points.update((pos, pos + 1, pos + size - 1, pos + size))
    return sorted(p for p in points if 0 <= p < len(model))


# ---------------------------------------------------------------------------------------------
# Structural mutations through the object API.


def _schema():
    from tflite_micro.python.tflite_micro import runtime

    return runtime.schema_fb


def _pack(model_t) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model_t.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _ints(vector) -> list[int]:
    """An object-API vector field (None, list or numpy array) as a list."""
    return [] if vector is None else [int(v) for v in vector]


def _structural(model: bytes, rng: random.Random) -> tuple[str, bytes]:
    fb = _schema()
    m = fb.ModelT.InitFromPackedBuf(model, 0)
    g = m.subgraphs[0]
    tensors, ops = g.tensors, g.operators or []
    op = rng.choice(ops) if ops else None
    t = rng.choice(tensors) if tensors else None
    constants = [i for i, x in enumerate(tensors) if x.buffer and x.buffer < len(m.buffers)
                 and m.buffers[x.buffer].data is not None and len(m.buffers[x.buffer].data)]
    choice = rng.randrange(16)
    name = ""
    if choice == 0 and t is not None:
        name = "many_dims"
        t.shape = [1] * rng.choice((7, 8, 16, 100)) + _ints(t.shape)
    elif choice == 1 and t is not None:
        name = "huge_shape"
        t.shape = [rng.choice((2**31 - 1, 2**16, 46341, 65536, -1, 0)) for _ in range(rng.randint(1, 6))]
    elif choice == 2 and t is not None and t.quantization is not None and t.quantization.scale is not None:
        name = "per_channel_count"
        q = t.quantization
        k = len(q.scale) + rng.choice((-1, 1, 5)) if len(q.scale) > 1 else rng.choice((2, 3, 1000))
        q.scale = [0.01] * max(k, 0)
        if rng.random() < 0.5:
            q.zeroPoint = [0] * max(len(q.scale) + rng.choice((-1, 0, 1)), 0)
    elif choice == 3 and t is not None:
        name = "no_quantization"
        t.quantization = None
    elif choice == 4 and op is not None and constants:
        name = "write_constant"  # an operator whose output is a weights tensor
        op.outputs = [rng.choice(constants)] + list(op.outputs[1:])
    elif choice == 5 and op is not None and op.outputs is not None and op.inputs is not None and len(op.inputs):
        name = "read_own_output"
        inputs = list(op.inputs)
        inputs[rng.randrange(len(inputs))] = op.outputs[0]
        op.inputs = inputs
    elif choice == 6 and op is not None:
        name = "io_count"
        which = rng.choice(("inputs", "outputs"))
        refs = _ints(getattr(op, which))
        refs = refs[:-1] if refs and rng.random() < 0.5 else refs + [rng.randrange(len(tensors))] * rng.randint(1, 3)
        setattr(op, which, refs)
    elif choice == 7:
        name = "graph_io"
        which = rng.choice(("inputs", "outputs"))
        refs = _ints(getattr(g, which))
        options = ([], refs * 2, refs + [rng.randrange(len(tensors))], constants[:1] or [0], [-1])
        setattr(g, which, rng.choice(options))
    elif choice == 8:
        name = "extra_subgraph"
        m.subgraphs = list(m.subgraphs) + [fb.ModelT.InitFromPackedBuf(model, 0).subgraphs[0]]
    elif choice == 9 and constants:
        name = "buffer_size"
        b = m.buffers[tensors[rng.choice(constants)].buffer]
        n = len(b.data)
        b.data = bytes(rng.randrange(256) for _ in range(rng.choice((0, 1, max(n - 1, 0), n + 1, n * 2))))
    elif choice == 10 and constants:
        name = "constant_becomes_activation"
        m.buffers[tensors[rng.choice(constants)].buffer].data = None
    elif choice == 11 and ops:
        name = "operator_order"
        ops = list(ops)
        rng.shuffle(ops)
        g.operators = ops
    elif choice == 12 and op is not None:
        name = "options_mismatch"  # options of another operator type
        other = rng.choice(ops)
        op.builtinOptionsType, op.builtinOptions = other.builtinOptionsType, other.builtinOptions
        if rng.random() < 0.5:
            op.builtinOptionsType, op.builtinOptions = 0, None
    elif choice == 13 and t is not None:
        name = "tensor_type"
        t.type = rng.choice((0, 1, 2, 3, 4, 7, 10, 17))
    elif choice == 14 and m.operatorCodes:
        name = "opcode"
        code = rng.choice(m.operatorCodes)
        code.builtinCode = rng.choice((32, 6, 114, 9, 25, 40, 200, 37, 38, 39, 41, 43, 45, 49, 54, 55, 70, 82, 98, 102))
        code.deprecatedBuiltinCode = min(code.builtinCode, 127)
        if code.builtinCode == 32:
            code.customCode = "fuzz"
    elif choice == 15 and t is not None and t.quantization is not None:
        name = "quantized_dimension"
        t.quantization.quantizedDimension = rng.choice((-1, 1, 2, 3, 4, 100))
    else:
        name = "empty_graph"
        g.operators = []
    return "object_api:" + name, _pack(m)


# ---------------------------------------------------------------------------------------------
# The campaign


@dataclass
class _Seed:
    model: bytes
    fields: FieldMap
    cuts: list


_BYTE_MUTATIONS = (
    ("index", ("tensor_index", "io_index", "opcode_index", "buffer_index")),
    ("shape", ("dim", "shape_len")),
    ("vector_length", ("veclen", "quant_len", "shape_len")),
    ("offset", ("uoffset", "table_start", "vtable_entry", "vtable_len")),
    ("quantization", ("scale", "zero_point", "quantized_dimension", "quant_len", "minmax")),
    ("type", ("tensor_type", "is_variable")),
    ("options", ("option", "options_type")),
    ("opcode", ("builtin_code", "deprecated_builtin_code", "opcode_version", "opcode_index")),
    ("misc", ("version", "buffer_offset", "buffer_data")),
)


def mutants(seeds: list[bytes], n: int, seed: int = 0, *, weights: list[float] | None = None,
            structural_share: float = 0.05):
    """Yield `n` (mutation name, model bytes) pairs from the seed models (picked with `weights`),
    reproducibly."""
    rng = random.Random(seed)
    prepared = []
    for model in seeds:
        fm = FieldMap.of(model)
        prepared.append(_Seed(bytes(model), fm, truncation_points(model, fm)))
    for _ in range(n):
        s = rng.choices(prepared, weights)[0]
        r = rng.random()
        if r < structural_share:
            name, data = _structural(s.model, rng)
            if rng.random() < 0.3:  # and a byte edit on top
                out = bytearray(data)
                _byte_flips(out, rng)
                name, data = name + "+byte_flip", bytes(out)
            yield name, data
            continue
        if r < structural_share + 0.08:
            cut = rng.choice(s.cuts) if rng.random() < 0.8 else rng.randrange(len(s.model))
            yield "truncate", s.model[:cut]
            continue
        out = bytearray(s.model)
        names = []
        for _ in range(1 if rng.random() < 0.7 else rng.randint(2, 4)):
            if rng.random() < 0.12:
                names.append(_byte_flips(out, rng))
            elif rng.random() < 0.05:
                names.append(_swap_offsets(out, s.fields, rng) or _byte_flips(out, rng))
            else:
                family, kinds = rng.choice(_BYTE_MUTATIONS)
                names.append(family if _set_site(out, s.fields, rng, kinds) else _byte_flips(out, rng))
        yield "+".join(names), bytes(out)


def frame(models) -> bytes:
    """The `mq_run --fuzz` input: each model preceded by its length as uint32 little-endian."""
    return b"".join(struct.pack("<I", len(m)) + m for m in models)
