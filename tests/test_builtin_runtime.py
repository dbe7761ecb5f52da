"""The builtin C runtime: host and cross builds, byte-identity with tflm-host, error codes, arena sizing.

The oracle is TFLM's host interpreter (tflm-host) on real models (MLPerf Tiny) and on small PTQ
models converted here; models with specific defects are made by editing a real converted model
with the TFLite schema's object API (tflite-micro's schema_fb), never by hand-written bytes.
"""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import struct
import subprocess

import numpy as np
import pytest

from conftest import random_int8_inputs
from mcuquant.builtin import cross, host, sources
from mcuquant.errors import McuquantError, ModelError, UnsupportedOpError
from mcuquant.interpreters import Runner, first_divergence

SHARED = ["kws_ref_model.tflite", "pretrainedResnet_quant.tflite"]


def _schema():
    from tflite_micro.python.tflite_micro import runtime

    return runtime.schema_fb


def edit(model: bytes, change) -> bytes:
    """Unpack a .tflite with the schema's object API, apply change(ModelT), pack it again."""
    import flatbuffers

    m = _schema().ModelT.InitFromPackedBuf(model, 0)
    change(m)
    b = flatbuffers.Builder(0)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def tflm_outputs(model: bytes, xs: np.ndarray) -> np.ndarray:
    runner = Runner("tflm-host", model)
    return np.stack([runner.invoke(x) for x in xs])


def builtin_outputs(model: bytes, xs: np.ndarray) -> np.ndarray:
    runner = Runner("builtin-host", model)
    return np.stack([runner.invoke(x) for x in xs])


def status_of(model: bytes) -> McuquantError:
    with pytest.raises(ModelError) as info:
        host.HostRuntime(model)
    return info.value


@pytest.fixture(scope="module")
def small_models():
    """Two small PTQ models: PAD (asymmetric), CONV_2D, CONCATENATION (axes 3 and 1), RESHAPE,
    FULLY_CONNECTED, SOFTMAX; and one with a SQUARED_DIFFERENCE the builtin runtime does not implement."""
    from mcuquant.quantize import convert_ptq
    from mcuquant.tf_import import keras, tensorflow

    K, tf = keras(), tensorflow()
    L = K.layers
    inp = K.Input((8, 8, 2), batch_size=1)
    a = L.Conv2D(4, 3, activation="relu")(L.ZeroPadding2D(((1, 2), (0, 1)))(inp))
    b = L.Conv2D(3, (1, 2))(L.ZeroPadding2D(((0, 1), (0, 0)))(inp))
    c = L.Concatenate(axis=-1)([a, b])
    d = L.Concatenate(axis=1)([c, c])
    out = L.Dense(5, activation="softmax")(L.Reshape((-1,))(d))
    rng = np.random.default_rng(0)
    mix = convert_ptq(K.Model(inp, out), rng.normal(size=(20, 8, 8, 2)).astype(np.float32)).tflite

    inp = K.Input((6,), batch_size=1)
    unsupported = K.Model(inp, tf.math.squared_difference(L.Dense(4)(inp), L.Dense(4)(inp)))
    unsupported = convert_ptq(unsupported, rng.normal(size=(20, 6)).astype(np.float32)).tflite
    return {"mix": mix, "unsupported": unsupported}


def op_names(model: bytes) -> list[str]:
    from mcuquant.export import parse_model

    return [op.name for op in parse_model(model)[0].operators]


# ---------------------------------------------------------------------------------------------
# Builds.


def test_sources_found_and_every_operator_module_present():
    names = {p.name for p in sources.runtime_sources()}
    assert {"mq_interpreter.c", "mq_flatbuffer.c", "mq_model.c", "mq_planner.c", "mq_ops_table.c"} <= names
    assert {"reshape.c", "pad.c", "concatenation.c", "conv_2d.c", "softmax.c"} <= names
    assert "_pending.c" not in names
    assert sources.host_driver_source().is_file()


@pytest.mark.parametrize("sanitize", [False, True], ids=["plain", "asan-ubsan"])
def test_host_build_is_warning_free(sanitize):
    """-Werror is among the flags, so a successful build is a warning-free build."""
    assert "-Werror" in host.HOST_CFLAGS and "-pedantic" in host.HOST_CFLAGS
    build = host.build_host(sanitize=sanitize)
    assert build.mq_run.is_file()
    assert (build.library is None) == sanitize
    if not sanitize:
        assert build.library.is_file()


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
@pytest.mark.parametrize("core", list(cross.CORES))
def test_cross_build_is_warning_free_with_a_code_size(core):
    assert "-Werror" in cross.CROSS_CFLAGS
    result = cross.cross_build(core)
    assert result.code_bytes > 10_000 and result.objects_code_bytes > 10_000
    assert result.text >= result.code_bytes
    assert result.struct_sizes["ptr"] == 4  # a 32-bit target, unlike the host
    # Compact metadata (small models are dominated by it): a tensor's shape stays in the model, an
    # operator's options are read from the model at mq_init, the planner's entries are 16-bit.
    assert result.struct_sizes["tensor"] <= 44 and result.struct_sizes["op"] <= 36
    assert result.struct_sizes["plan_entry"] <= 20


def test_ctypes_mirror_matches_the_compiler_layout(tmp_path):
    sizes = cross.probe_struct_sizes(host.find_gcc(), shutil.which("nm") or "nm", host.HOST_CFLAGS, tmp_path)
    assert ctypes.sizeof(host.MqTensor) == sizes["tensor"]
    assert ctypes.sizeof(host.MqInterpreter) == sizes["interpreter"]
    assert ctypes.sizeof(ctypes.c_void_p) == sizes["ptr"]


# ---------------------------------------------------------------------------------------------
# Byte-identity with tflm-host.


@pytest.mark.parametrize("name", SHARED)
def test_shared_models_match_tflm_host(shared_models, name):
    model = (shared_models / name).read_bytes()
    rt = host.HostRuntime(model)
    xs = random_int8_inputs(rt.input_shape[1:], 8, seed=3)
    np.testing.assert_array_equal(builtin_outputs(model, xs), tflm_outputs(model, xs))


def test_small_ptq_model_matches_tflm_host_and_traces_no_divergence(small_models):
    model = small_models["mix"]
    assert op_names(model) == ["PAD", "PAD", "CONV_2D", "CONV_2D", "CONCATENATION", "CONCATENATION", "RESHAPE",
                               "FULLY_CONNECTED", "SOFTMAX"]
    xs = random_int8_inputs((8, 8, 2), 20, seed=4)
    np.testing.assert_array_equal(builtin_outputs(model, xs), tflm_outputs(model, xs))
    a, b = Runner("builtin-host", model, preserve_all=True), Runner("tflm-host", model, preserve_all=True)
    for x in xs[:3]:
        assert first_divergence(a, b, x) is None  # every intermediate tensor identical


def test_negative_concatenation_axes_match_tflm_host(small_models):
    def negative_axes(m):
        for op in m.subgraphs[0].operators:
            if op.builtinOptionsType == _schema().BuiltinOptions.ConcatenationOptions:
                op.builtinOptions.axis -= 4  # 3 -> -1, 1 -> -3 on these rank-4 tensors

    model = edit(small_models["mix"], negative_axes)
    xs = random_int8_inputs((8, 8, 2), 5, seed=5)
    expected = tflm_outputs(small_models["mix"], xs)
    np.testing.assert_array_equal(tflm_outputs(model, xs), expected)
    np.testing.assert_array_equal(builtin_outputs(model, xs), expected)


def _pad_ops(m):
    fb = _schema()
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in m.operatorCodes]
    return [op for op in m.subgraphs[0].operators if codes[op.opcodeIndex] == fb.BuiltinOperator.PAD]


def test_int64_paddings_give_the_same_result(small_models):
    fb = _schema()

    def int64_paddings(m):
        for op in _pad_ops(m):
            t = m.subgraphs[0].tensors[op.inputs[1]]
            buf = m.buffers[t.buffer]
            values = np.frombuffer(bytes(bytearray(buf.data)), dtype="<i4")
            buf.data = np.frombuffer(values.astype("<i8").tobytes(), dtype=np.uint8)
            t.type = fb.TensorType.INT64

    model = edit(small_models["mix"], int64_paddings)
    xs = random_int8_inputs((8, 8, 2), 5, seed=6)
    np.testing.assert_array_equal(builtin_outputs(model, xs), tflm_outputs(small_models["mix"], xs))


def _add_pad_value(model: bytes, value: int, zero_point_delta: int = 0) -> bytes:
    """PAD with a third input: a constant int8 fill value (the PADV2 form TFLM accepts under PAD)."""
    fb = _schema()

    def change(m):
        sg = m.subgraphs[0]
        op = _pad_ops(m)[0]
        out = sg.tensors[op.outputs[0]]
        buf = fb.BufferT()
        buf.data = np.array([value & 0xFF], dtype=np.uint8)
        m.buffers.append(buf)
        t = fb.TensorT()
        t.shape, t.type, t.buffer, t.name = np.array([], dtype=np.int32), fb.TensorType.INT8, len(m.buffers) - 1, b"v"
        q = fb.QuantizationParametersT()
        q.scale = np.array(out.quantization.scale, dtype=np.float32)
        q.zeroPoint = np.array(out.quantization.zeroPoint, dtype=np.int64) + zero_point_delta
        t.quantization = q
        sg.tensors.append(t)
        op.inputs = np.array([*op.inputs, len(sg.tensors) - 1], dtype=np.int32)

    return edit(model, change)


def test_pad_fill_value_input_matches_tflm_host(small_models):
    model = _add_pad_value(small_models["mix"], 77)
    xs = random_int8_inputs((8, 8, 2), 5, seed=7)
    got = builtin_outputs(model, xs)
    np.testing.assert_array_equal(got, tflm_outputs(model, xs))
    assert not np.array_equal(got, tflm_outputs(small_models["mix"], xs))  # the fill value mattered


def test_quantization_tflm_rejects_is_rejected(small_models):
    """A PAD fill value with another zero point than the output, a CONCATENATION input with
    another scale: TFLM refuses both; so does the builtin runtime, naming the operator."""
    bad_pad = _add_pad_value(small_models["mix"], 77, zero_point_delta=1)

    def rescale_concat_input(m):
        sg = m.subgraphs[0]
        for op in sg.operators:
            if op.builtinOptionsType == _schema().BuiltinOptions.ConcatenationOptions:
                sg.tensors[op.inputs[0]].quantization.scale = np.array([0.5], dtype=np.float32)
                return

    bad_concat = edit(small_models["mix"], rescale_concat_input)
    for model, op_index, op_name in ((bad_pad, 0, "PAD"), (bad_concat, 4, "CONCATENATION")):
        tflm = Runner("tflm-host", model)
        with pytest.raises(ModelError, match="TFLM cannot run this model"):
            tflm.run(np.zeros((1, *tflm.input.shape[1:]), dtype=tflm.input.dtype), progress=False)
        err = status_of(model)
        assert (err.status, err.op_index, err.op_name) == ("MQ_ERR_QUANTIZATION", op_index, op_name)


# ---------------------------------------------------------------------------------------------
# Error codes.


def test_unsupported_op_names_the_operator(small_models):
    model = small_models["unsupported"]
    assert op_names(model)[2] == "SQUARED_DIFFERENCE"
    with pytest.raises(UnsupportedOpError) as info:
        Runner("builtin-host", model)
    err = info.value
    assert (err.status, err.op_index, err.op_name) == ("MQ_ERR_UNSUPPORTED_OP", 2, "SQUARED_DIFFERENCE")
    assert "operator 2 (SQUARED_DIFFERENCE)" in str(err)


def test_truncated_models_are_rejected_with_an_error_code(shared_models):
    model = (shared_models / "kws_ref_model.tflite").read_bytes()
    seen = set()
    for n in [0, 3, 7, 8, 12, 64, 1000, len(model) // 2, len(model) - 100, len(model) - 1]:
        err = status_of(model[:n])
        assert err.status in ("MQ_ERR_TRUNCATED", "MQ_ERR_MALFORMED"), (n, str(err))
        seen.add(err.status)
    assert "MQ_ERR_TRUNCATED" in seen


def test_garbage_and_foreign_files_are_rejected():
    rng = np.random.default_rng(0)
    for _ in range(20):
        junk = rng.integers(0, 256, size=int(rng.integers(8, 4000)), dtype=np.uint8).tobytes()
        assert status_of(junk).status in ("MQ_ERR_TRUNCATED", "MQ_ERR_MALFORMED")
    assert status_of(b"\x10\x00\x00\x00NOPE" + bytes(64)).status == "MQ_ERR_MALFORMED"  # no TFL3 identifier


def test_structural_defects_get_their_own_codes(small_models):
    fb = _schema()
    model = small_models["mix"]

    def version_2(m):
        m.version = 2

    def external_buffer(m):
        m.buffers[1].offset, m.buffers[1].size = 1024, 16

    def input_out_of_range(m):
        op = m.subgraphs[0].operators[3]
        op.inputs = np.array([999, *op.inputs[1:]], dtype=np.int32)

    def two_subgraphs(m):
        m.subgraphs.append(m.subgraphs[0])

    def wrong_constant_size(m):
        t = m.subgraphs[0].tensors[m.subgraphs[0].operators[2].inputs[2]]  # a bias
        m.buffers[t.buffer].data = np.zeros(4, dtype=np.uint8)

    def writes_a_constant(m):
        op = m.subgraphs[0].operators[2]
        op.outputs = np.array([op.inputs[1]], dtype=np.int32)

    def custom_op(m):
        m.operatorCodes[m.subgraphs[0].operators[6].opcodeIndex].builtinCode = fb.BuiltinOperator.CUSTOM
        m.operatorCodes[m.subgraphs[0].operators[6].opcodeIndex].deprecatedBuiltinCode = fb.BuiltinOperator.CUSTOM
        m.operatorCodes[m.subgraphs[0].operators[6].opcodeIndex].customCode = b"MyOp"

    cases = [
        (version_2, "MQ_ERR_UNSUPPORTED_VERSION", -1),
        (external_buffer, "MQ_ERR_UNSUPPORTED_VERSION", -1),
        (two_subgraphs, "MQ_ERR_UNSUPPORTED_VERSION", -1),
        (input_out_of_range, "MQ_ERR_MALFORMED", 3),
        (wrong_constant_size, "MQ_ERR_MALFORMED", -1),
        (writes_a_constant, "MQ_ERR_MALFORMED", 2),
        (custom_op, "MQ_ERR_UNSUPPORTED_OP", 6),
    ]
    for change, status, op_index in cases:
        err = status_of(edit(model, change))
        assert (err.status, err.op_index) == (status, op_index), (change.__name__, str(err))


# ---------------------------------------------------------------------------------------------
# Arena sizing.


@pytest.mark.parametrize("name", SHARED)
def test_arena_required_is_exactly_what_fits(shared_models, name):
    rt = host.HostRuntime((shared_models / name).read_bytes())
    need = rt.arena_required
    assert need % host.ARENA_ALIGN == 0 and 0 < rt.activation_bytes < need
    assert rt.try_arena(need) == ("MQ_OK", need)
    assert rt.try_arena(need - host.ARENA_ALIGN) == ("MQ_ERR_ARENA_TOO_SMALL", need)
    status, bound = rt.try_arena(0)  # no room even for the metadata: an upper bound
    assert status == "MQ_ERR_ARENA_TOO_SMALL" and bound >= need
    assert rt.try_arena(bound) == ("MQ_OK", need)


@pytest.mark.parametrize("name", SHARED)
def test_outputs_written_over_inputs_shrink_the_activations_and_keep_the_bits(shared_models, name):
    """Convolutions, ADD and RESHAPE take the memory of an input nothing reads afterwards: the
    activation area (scratch included) is below the tensors-only plan, and the outputs are
    unchanged (tflm-host is the oracle)."""
    from mcuquant.export import estimate_arena_bytes, parse_model

    model = (shared_models / name).read_bytes()
    info, _, _ = parse_model(model)
    rt = host.HostRuntime(model)
    assert rt.activation_bytes < estimate_arena_bytes(info)
    xs = random_int8_inputs(rt.input_shape, 5, seed=7)
    assert np.array_equal(builtin_outputs(model, xs), tflm_outputs(model, xs))


def test_preserve_all_needs_more_arena_and_keeps_every_tensor(shared_models):
    model = (shared_models / "kws_ref_model.tflite").read_bytes()
    plain, traced = host.HostRuntime(model), host.HostRuntime(model, preserve_all=True)
    assert traced.arena_required > plain.arena_required


def test_arena_formula_matches_the_runtime_and_gives_the_32_bit_figure(shared_models, tmp_path):
    """mq_arena_bytes with the host's struct sizes reproduces what mq_init asked for; with a
    Cortex-M's it gives the device arena (no pointer-size dependence in the activation plan)."""
    sizes = cross.probe_struct_sizes(host.find_gcc(), shutil.which("nm") or "nm", host.HOST_CFLAGS, tmp_path)
    model = (shared_models / "kws_ref_model.tflite").read_bytes()
    rt = host.HostRuntime(model)
    assert rt.arena_bytes_for(sizes) == rt.arena_required
    # The planner's entries live where the activations go later: smaller, they cost nothing extra;
    # larger than the activations, they set the work area.
    assert rt.arena_bytes_for({**sizes, "plan_entry": 1}) == rt.arena_required
    # Entries only for what gets placed: the non-constant tensors and the operators that may ask for
    # scratch memory (convolutions here), not the weights and the other operators.
    huge, twice = (rt.arena_bytes_for({**sizes, "plan_entry": n}) for n in (10**6, 2 * 10**6))
    it = rt._it
    activations = sum(1 for t in range(it.ntensors) if not it.tensors[t].is_constant)
    lib = host.load_library()
    names = [lib.mq_op_name(lib.mq_op_code_at(ctypes.byref(it), i)).decode() for i in range(it.nops)]
    with_scratch = sum(1 for name in names if name in ("CONV_2D", "DEPTHWISE_CONV_2D"))
    assert activations < it.ntensors and 0 < with_scratch < it.nops
    assert twice - huge == (activations + with_scratch) * 10**6
    if shutil.which("arm-none-eabi-gcc"):
        device = cross.device_arena_bytes(model, "cortex-m4")
        assert rt.activation_bytes < device < rt.arena_required


# ---------------------------------------------------------------------------------------------
# The mq_run driver.


def test_mq_run_under_sanitizers_matches_the_library(shared_models, tmp_path):
    model_path = shared_models / "kws_ref_model.tflite"
    rt = host.HostRuntime(model_path.read_bytes())
    xs = random_int8_inputs(rt.input_shape, 3, seed=8)
    (tmp_path / "in.bin").write_bytes(xs.tobytes())
    exe = host.build_host(sanitize=True).mq_run
    proc = subprocess.run([exe, model_path, tmp_path / "in.bin", tmp_path / "out.bin"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"arena_required {rt.arena_required}"
    got = np.frombuffer((tmp_path / "out.bin").read_bytes(), dtype=np.int8).reshape(3, -1)
    np.testing.assert_array_equal(got, np.stack([rt.invoke(x).reshape(-1) for x in xs]))


def test_mq_run_error_line_and_fuzz_stream(small_models, shared_models, tmp_path):
    exe = host.build_host(sanitize=True).mq_run
    (tmp_path / "sub.tflite").write_bytes(small_models["unsupported"])
    (tmp_path / "in.bin").write_bytes(bytes(6))
    proc = subprocess.run([exe, tmp_path / "sub.tflite", tmp_path / "in.bin", tmp_path / "out.bin"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stdout.startswith("error MQ_ERR_UNSUPPORTED_OP op 2 SQUARED_DIFFERENCE: ")

    kws = (shared_models / "kws_ref_model.tflite").read_bytes()
    stream = [kws, kws[:100], b"", small_models["unsupported"]]
    data = b"".join(struct.pack("<I", len(m)) + m for m in stream)
    proc = subprocess.run([exe, "--fuzz"], input=data, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().split() == ["MQ_OK", "MQ_ERR_TRUNCATED", "MQ_ERR_TRUNCATED", "MQ_ERR_UNSUPPORTED_OP"]


# ---------------------------------------------------------------------------------------------
# Packaging.


def test_wheel_ships_the_c_sources_and_sources_finds_them(tmp_path):
    import sys
    import zipfile
    from pathlib import Path

    # Build from a clean copy: a stale build/ folder in the checkout could leak old files into the wheel.
    checkout, root = Path(__file__).resolve().parents[1], tmp_path / "src"
    top_level = {".venv", ".git", "build", "dist", "mcuquant.egg-info", ".pytest_cache", ".hypothesis", "mcuquant-out"}

    def ignore(folder, names):
        return [n for n in names if n == "__pycache__" or (Path(folder) == checkout and n in top_level)]

    shutil.copytree(checkout, root, ignore=ignore)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    tmp_path / "whl", root], check=True, timeout=600)
    wheel = next((tmp_path / "whl").glob("mcuquant-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        z.extractall(tmp_path / "site")
    for rel in ("runtime/mq_runtime.h", "runtime/mq_interpreter.c", "runtime/ops/pad.c", "host/mq_run.c"):
        assert f"mcuquant/firmware/{rel}" in names
    code = ("from mcuquant.builtin import sources; import mcuquant; "
            "print(sources.firmware_dir(), len(sources.runtime_sources()), mcuquant.__file__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"}).stdout.split()
    assert out[0] == str(tmp_path / "site" / "mcuquant" / "firmware")
    assert int(out[1]) == len(sources.runtime_sources())


def test_cross_builds_use_the_flags_the_boards_firmware_is_built_with():
    from mcuquant.boards import list_boards

    arm = [b for b in list_boards() if b.core.startswith("cortex-")]
    assert {b.core for b in arm} == set(cross.CORES)
    for board in arm:
        assert cross.CORES[board.core] == tuple(board.cpu_flags()), board.name


# ---------------------------------------------------------------------------------------------
# Prepared data: computed once by mq_init, or made ahead and passed in (flash), bound by SHA-256.


@pytest.mark.parametrize("lengths", [(0, 0), (3, 0), (55, 0), (56, 0), (63, 1), (64, 0), (30, 40), (1000, 333)])
def test_the_runtimes_sha256_is_fips_180_4(lengths):
    lib = host.load_library()
    rng = np.random.default_rng(sum(lengths))
    a, b = (rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in lengths)
    digest = ctypes.create_string_buffer(32)
    lib.mq_sha256_pair.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p]
    lib.mq_sha256_pair(a, len(a), b, len(b), digest)
    assert digest.raw == hashlib.sha256(a + b).digest()


def test_prepared_data_made_ahead_replaces_arena_memory_and_is_bound_to_its_model(shared_models):
    kws = (shared_models / "kws_ref_model.tflite").read_bytes()
    rt = host.HostRuntime(kws)
    blob = rt.prepared_blob()
    header = host.PREPARED_HEADER_BYTES
    assert blob[:4] == b"MQP1" and len(blob) == header + rt.prepared_bytes and rt.prepared_bytes > 0
    assert blob[8:40] == hashlib.sha256(kws + blob[header:]).digest()
    ahead = host.HostRuntime(kws, prepared=blob)
    assert ahead.prepared_bytes == 0 and ahead.arena_required == rt.arena_required - rt.prepared_bytes
    xs = np.random.default_rng(3).integers(-128, 128, (5, *rt.inputs[0].shape), dtype=np.int8)
    assert all(ahead.invoke(x).tobytes() == rt.invoke(x).tobytes() for x in xs)

    damaged = bytearray(blob)
    damaged[header + 7] ^= 1
    other = (shared_models / "pretrainedResnet_quant.tflite").read_bytes()
    for wrong in (bytes(damaged), host.HostRuntime(other).prepared_blob(), blob[:-16]):
        with pytest.raises(ModelError, match="MQ_ERR_PREPARED"):
            host.HostRuntime(kws, prepared=wrong)
