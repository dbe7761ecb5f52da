"""Export of a .tflite model as C sources: compile and run what is generated, reject bad models."""

import hashlib
import shutil
import subprocess

import flatbuffers
import pytest

from mcuquant.errors import ModelError, UnsupportedOpError
from mcuquant.export import c_identifier, check_model, estimate_arena_bytes, export_model, parse_model

MAIN_C = r"""
#include <stdio.h>
#include <stdint.h>
#include "model_data.h"
#include "model_config.h"

int main(void) {
    static const unsigned char sha[32] = MCUQUANT_MODEL_SHA256_BYTES;
    static const int in_dims[MCUQUANT_INPUT0_RANK] = MCUQUANT_INPUT0_DIMS;
    unsigned long sum = 0;
    unsigned int i;
    for (i = 0; i < MCUQUANT_MODEL_DATA_LEN; ++i) sum = (sum * 31u + MCUQUANT_MODEL_DATA[i]) & 0xffffffffu;
    printf("len=%u\n", MCUQUANT_MODEL_DATA_LEN);
    printf("size=%u\n", (unsigned int)MCUQUANT_MODEL_BYTES);
    printf("align=%u\n", (unsigned int)((uintptr_t)MCUQUANT_MODEL_DATA % 16u));
    printf("first=%02x%02x%02x%02x%02x%02x%02x%02x\n", MCUQUANT_MODEL_DATA[0], MCUQUANT_MODEL_DATA[1],
           MCUQUANT_MODEL_DATA[2], MCUQUANT_MODEL_DATA[3], MCUQUANT_MODEL_DATA[4], MCUQUANT_MODEL_DATA[5],
           MCUQUANT_MODEL_DATA[6], MCUQUANT_MODEL_DATA[7]);
    printf("sum=%lu\n", sum);
    printf("sha=");
    for (i = 0; i < 32; ++i) printf("%02x", sha[i]);
    printf("\nsha_str=%s\n", MCUQUANT_MODEL_SHA256);
    printf("arena=%u\n", (unsigned int)MCUQUANT_ARENA_BYTES);
    printf("in0=%d,%d scale=%.9g zp=%d\n", in_dims[0], in_dims[MCUQUANT_INPUT0_RANK - 1],
           (double)MCUQUANT_INPUT0_SCALE, MCUQUANT_INPUT0_ZERO_POINT);
    return 0;
}
"""

WARN = ["-std=c99", "-Wall", "-Wextra", "-Werror"]


@pytest.fixture(scope="module")
def kws_bytes(shared_models) -> bytes:
    return (shared_models / "kws_ref_model.tflite").read_bytes()


def _checksum(data: bytes) -> int:
    s = 0
    for b in data:
        s = (s * 31 + b) & 0xFFFFFFFF
    return s


def test_export_compiles_and_runs_with_gcc(kws_bytes, tmp_path):
    if shutil.which("gcc") is None:
        pytest.skip("gcc not found on PATH")
    result = export_model(kws_bytes, tmp_path, name="kws_ref_model.tflite")
    assert result.identifier == "kws_ref_model"
    assert {p.name for p in result.files} == {"model_data.c", "model_data.h", "model_config.h"}
    (tmp_path / "main.c").write_text(MAIN_C)
    subprocess.run(["gcc", *WARN, "-c", "model_data.c", "-o", "model_data.o"], cwd=tmp_path, check=True)
    subprocess.run(["gcc", *WARN, "-c", "main.c", "-o", "main.o"], cwd=tmp_path, check=True)
    subprocess.run(["gcc", "main.o", "model_data.o", "-o", "check"], cwd=tmp_path, check=True)
    out = subprocess.run([str(tmp_path / "check")], capture_output=True, text=True, check=True, timeout=10).stdout
    got = dict(line.split("=", 1) for line in out.splitlines() if "=" in line and not line.startswith("in0"))
    sha = hashlib.sha256(kws_bytes).hexdigest()
    assert int(got["len"]) == len(kws_bytes)
    assert int(got["size"]) == len(kws_bytes)
    assert int(got["align"]) == 0
    assert got["first"] == kws_bytes[:8].hex()
    assert int(got["sum"]) == _checksum(kws_bytes)
    assert got["sha"] == sha == got["sha_str"] == result.sha256
    assert int(got["arena"]) == result.arena_bytes
    assert "in0=1,1 scale=0.584702909 zp=83" in out
    banner = (tmp_path / "model_data.c").read_text()
    assert "mcuquant 0.1.0" in banner and sha in banner


def test_export_cross_compiles_for_cortex_m4(kws_bytes, tmp_path):
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not found on PATH (apt-get install gcc-arm-none-eabi)")
    export_model(kws_bytes, tmp_path, name="kws_ref_model.tflite")
    (tmp_path / "main.c").write_text(MAIN_C)
    flags = ["-mcpu=cortex-m4", "-mthumb", *WARN, "-c"]
    for src in ("model_data.c", "main.c"):
        subprocess.run(["arm-none-eabi-gcc", *flags, src, "-o", src + ".o"], cwd=tmp_path, check=True)
    # The array is 16-byte aligned in the ARM object file too: its section is aligned to >= 16
    # and the symbol sits at a multiple of 16 inside it.
    readelf, nm = shutil.which("arm-none-eabi-readelf"), shutil.which("arm-none-eabi-nm")
    if readelf and nm:
        sections = subprocess.run([readelf, "-S", "-W", "model_data.c.o"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
        rodata = [line.split() for line in sections.splitlines() if " .rodata" in line]
        assert rodata and int(rodata[0][-1]) >= 16
        symbols = subprocess.run([nm, "model_data.c.o"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
        value = next(int(line.split()[0], 16) for line in symbols.splitlines() if line.endswith(" kws_ref_model"))
        assert value % 16 == 0


def test_export_is_byte_identical(kws_bytes, tmp_path):
    export_model(kws_bytes, tmp_path / "a", name="kws_ref_model.tflite")
    export_model(kws_bytes, tmp_path / "b", name="kws_ref_model.tflite")
    for name in ("model_data.c", "model_data.h", "model_config.h"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("3d-model (v2).tflite", "model_3d_model_v2"),
        ("int.tflite", "int_model"),
        ("main", "main_model"),
        ("__weird__.tflite", "weird"),
        ("modèle.tflite", "mod_le"),
        ("", "model"),
        ("---.tflite", "model"),
        ("kws_ref_model.tflite", "kws_ref_model"),
    ],
)
def test_c_identifier(name, expected):
    assert c_identifier(name) == expected


def test_c_identifier_unique():
    assert c_identifier("a.tflite", taken={"a"}) == "a_2"
    assert c_identifier("a.tflite", taken={"a", "a_2"}) == "a_3"
    assert c_identifier("a.tflite", taken={"a_len"}) == "a_2"


def test_awkward_names_compile(kws_bytes, tmp_path):
    if shutil.which("gcc") is None:
        pytest.skip("gcc not found on PATH")
    for i, name in enumerate(["3d-model (v2).tflite", "int.tflite", "evil*/name\n#error x.tflite"]):
        out = tmp_path / str(i)
        result = export_model(kws_bytes, out, name=name)
        subprocess.run(["gcc", *WARN, "-c", "model_data.c"], cwd=out, check=True)
        assert f"const unsigned char {result.identifier}[]" in (out / "model_data.c").read_text()


def _patched(data: bytes, edit) -> bytes:
    """Re-serialize a model after editing it through the schema's object API."""
    from tflite_micro.python.tflite_micro import runtime

    fb = runtime.schema_fb
    model = fb.ModelT.InitFromPackedBuf(bytearray(data), 0)
    edit(model, fb)
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _with_op(kws_bytes, name: str) -> bytes:
    def edit(model, fb):
        # Operator code 2 is AVERAGE_POOL_2D, used by operator 9 only.
        model.operatorCodes[2].builtinCode = getattr(fb.BuiltinOperator, name)
        model.operatorCodes[2].deprecatedBuiltinCode = getattr(fb.BuiltinOperator, name)

    return _patched(kws_bytes, edit)


def test_unsupported_op_names_index_and_op(kws_bytes, tmp_path):
    bad = _with_op(kws_bytes, "TILE")
    problems = check_model(bad, "builtin")
    assert problems == ["operator 9 (TILE): op TILE is not supported by the 'builtin' backend; no mcuquant backend "
                        "runs it: replace the layer that produces it"]
    with pytest.raises(UnsupportedOpError, match=r"operator 9 \(TILE\)"):
        export_model(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing emitted


def test_op_of_the_other_backend_is_named_with_its_backend(kws_bytes, tmp_path):
    """SUB runs on the builtin runtime, not (yet) in the tflm backend's resolver."""
    model = _with_op(kws_bytes, "SUB")
    assert check_model(model, "tflm") == ["operator 9 (SUB): op SUB is not supported by the 'tflm' backend; the "
                                          "'builtin' backend runs it: export with `--backend builtin`"]
    assert check_model(model, "builtin") == []


def test_unsupported_fused_activation(kws_bytes):
    def tanh_conv(model, fb):
        model.subgraphs[0].operators[0].builtinOptions.fusedActivationFunction = fb.ActivationFunctionType.TANH

    problems = check_model(_patched(kws_bytes, tanh_conv), "builtin")
    assert problems == ["operator 0 (CONV_2D): fused activation TANH is not supported"]


def test_out_of_range_indices(kws_bytes):
    def bad_refs(model, fb):
        model.subgraphs[0].operators[3].inputs[0] = 999
        model.subgraphs[0].tensors[5].buffer = 4000

    problems = check_model(_patched(kws_bytes, bad_refs), "builtin")
    assert any("operator 3 (DEPTHWISE_CONV_2D): tensor index 999 out of range" in p for p in problems)
    assert any("tensor 5" in p and "buffer index 4000 out of range" in p for p in problems)
    with pytest.raises(ModelError, match="tensor index 999"):
        export_model(_patched(kws_bytes, bad_refs), "/nonexistent/never-written")


def test_non_int8_activation(kws_bytes):
    def float_act(model, fb):
        model.subgraphs[0].tensors[23].type = fb.TensorType.FLOAT32

    problems = check_model(_patched(kws_bytes, float_act), "builtin")
    assert problems and all("tensor 23" in p and "FLOAT32" in p for p in problems)
    # Tensor 23 is written by operator 1 and read by operator 2.
    assert problems[0].startswith("operator 1 (DEPTHWISE_CONV_2D): output 0 (tensor 23 ")
    assert problems[1].startswith("operator 2 (CONV_2D): input 0 (tensor 23 ")


@pytest.mark.parametrize("cut", [0, 7, 8, 64, 1000, 20000, -1, -4, -100])
def test_truncated_model_is_model_error(kws_bytes, cut):
    with pytest.raises(ModelError):
        problems = check_model(kws_bytes[:cut], "builtin")
        if problems:  # a cut that leaves a parseable-but-broken model must still be rejected
            raise ModelError("; ".join(problems))


@pytest.mark.parametrize("junk", [b"", b"garbage" * 10, b"\xff" * 4096, b"\x00" * 4 + b"TFL3" + b"\xff" * 100, bytes(range(256)) * 8])
def test_garbage_is_model_error(junk, tmp_path):
    with pytest.raises(ModelError):
        export_model(junk, tmp_path)


def test_random_byte_flips_never_escape_as_other_errors(kws_bytes, tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    for _ in range(200):
        data = bytearray(kws_bytes)
        for pos in rng.integers(0, 2048, size=4):  # the tables live at the start of the file
            data[pos] = int(rng.integers(0, 256))
        try:
            check_model(bytes(data), "builtin")
        except ModelError:
            pass


def test_unknown_backend_is_config_error(kws_bytes):
    from mcuquant.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown backend"):
        check_model(kws_bytes, "cmsis")


def test_arena_estimate(kws_bytes, shared_models):
    for data in (kws_bytes, (shared_models / "pretrainedResnet_quant.tflite").read_bytes()):
        info, structural, unsupported = parse_model(data)
        assert info is not None and not structural and not unsupported
        arena = estimate_arena_bytes(info)
        largest = max(t.nbytes for t in info.tensors if not t.is_constant)
        assert arena > 0 and arena >= largest and arena % 16 == 0
        # Never more than keeping every activation alive at once.
        assert arena <= sum(-(-t.nbytes // 16) * 16 for t in info.tensors if not t.is_constant)
    # kws: two 1x25x5x64 int8 activations are alive together and nothing bigger exists.
    info, _, _ = parse_model(kws_bytes)
    assert estimate_arena_bytes(info) == 2 * 25 * 5 * 64


def test_cli_export_writes_the_files_and_refuses_garbage(shared_models, tmp_path, capsys):
    from mcuquant.cli import main

    assert main(["export", str(shared_models / "kws_ref_model.tflite"), "--out", str(tmp_path / "ok")]) == 0
    assert sorted(p.name for p in (tmp_path / "ok").iterdir()) == ["model_config.h", "model_data.c", "model_data.h"]
    assert "kws_ref_model" in (tmp_path / "ok" / "model_data.h").read_text()
    (tmp_path / "bad.tflite").write_bytes(b"\x00" * 64)
    assert main(["export", str(tmp_path / "bad.tflite"), "--out", str(tmp_path / "bad")]) == 2
    assert "mcuquant: error:" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # nothing emitted for a bad model


def test_builtin_export_has_the_runtime_arena_and_code_size(kws_bytes, tmp_path):
    """The builtin backend's arena is the runtime's own figure for a 32-bit core: its activation plan
    plus the metadata laid out with the struct sizes the cross compiler reports."""
    from mcuquant.builtin.cross import cross_build
    from mcuquant.builtin.host import HostRuntime

    result = export_model(kws_bytes, tmp_path, name="kws")
    assert result.arena_exact and result.core == "cortex-m4"
    runtime = HostRuntime(kws_bytes)
    sizes = cross_build("cortex-m4").struct_sizes
    # The operators' prepared data goes to flash (model_data.c), so the arena holds none of it.
    in_flash = HostRuntime(kws_bytes, prepared=runtime.prepared_blob())
    assert result.arena_bytes == in_flash.arena_bytes_for(sizes) == runtime.arena_bytes_for(sizes) - runtime.prepared_bytes
    assert f"{result.identifier}_prepared[]" in (tmp_path / "model_data.c").read_text()
    metadata = result.arena_bytes - runtime.activation_bytes  # the planner's entries fit the activation area
    # Outputs written over their inputs (the convolutions, RESHAPE) make the builtin's activations,
    # scratch included, smaller than the tensors-only plan the export estimates for tflm.
    info, _, _ = parse_model(kws_bytes)
    assert runtime.activation_bytes < estimate_arena_bytes(info)
    assert 0 < metadata < result.arena_bytes
    assert result.runtime_code_bytes == cross_build("cortex-m4").code_bytes > 10_000
    config = (tmp_path / "model_config.h").read_text()
    assert f"#define MCUQUANT_ARENA_BYTES {result.arena_bytes}u" in config
    assert "#define MCUQUANT_ARENA_EXACT 1" in config
    tflm = export_model(kws_bytes, tmp_path / "tflm", name="kws", backend="tflm")
    assert not tflm.arena_exact and tflm.runtime_code_bytes is None
