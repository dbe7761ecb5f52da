"""The builtin runtime as compiled for emulated Cortex-M cores against tflm-host, byte for byte.

The host build never runs the kernels' DSP-extension paths (``__ARM_FEATURE_DSP``: ACLE
intrinsics and inline assembly in mq_dot.c, mq_gemm.c, conv_2d.c, depthwise_conv_2d.c, pooling.c)
nor the Helium (MVE) GEMM of mq_gemm.c. Here the runtime runs on qemu-nano33 (Cortex-M4F,
mps2-an386), qemu-m7 (Cortex-M7, mps2-an500) and qemu-m55 (Cortex-M55, mps3-an547) through
the semihosting runner of mcuquant.builtin.emulated (one image per core, built once and cached):

- the random-model campaign, in test_builtin_bitexact.py (the same file, so that under `--dist
  loadfile` it reuses the host campaign's conversions): MCUQUANT_DSP_PROPERTY_MODELS per core in
  the default run (default 25), 500 per core under --runslow;
- the MLPerf Tiny models of ../shared/models x random inputs, with the arena-computed and with
  the host-exported prepared data (kws and ResNet: the DSP CONV_2D and DEPTHWISE_CONV_2D paths);
- that a malformed model gives a status, not a hang.

Needs qemu-system-arm and arm-none-eabi-gcc (`make setup`); without them every test skips.
"""

from __future__ import annotations

import numpy as np
import pytest

from mcuquant.builtin.emulated import run_on_emulated_core
from mcuquant.builtin.host import HostRuntime
from mcuquant.errors import McuquantError, ModelError
from mcuquant.interpreters import Runner

from conftest import SHARED_MODELS, qemu_children, random_int8_inputs
from test_builtin_bitexact import DSP_BOARDS

SHARED_INPUTS = 10

pytestmark = [pytest.mark.qemu, pytest.mark.usefixtures("qemu_tools")]


def _shared_names() -> list[str]:
    names = sorted(p.stem for p in SHARED_MODELS.glob("*.tflite"))
    return names or ["kws_ref_model", "pretrainedResnet_quant"]  # the shared_models fixture then skips


@pytest.mark.parametrize("prepared", [False, True], ids=["arena", "prepared"])
@pytest.mark.parametrize("name", _shared_names())
@pytest.mark.parametrize("board", DSP_BOARDS)
def test_shared_model_is_bit_exact_on_emulated_core(shared_models, board, name, prepared):
    tflite = (shared_models / f"{name}.tflite").read_bytes()
    oracle = Runner("tflm-host", tflite)
    xq = random_int8_inputs(oracle.input.shape[1:], SHARED_INPUTS, seed=5)
    blob = HostRuntime(tflite).prepared_blob() if prepared else None
    run = run_on_emulated_core(tflite, xq, board, prepared=blob)
    expected = oracle.run(xq, progress=False)
    ours = run.outputs[0]
    assert ours.dtype == expected.dtype and ours.size == expected.size
    ours = ours.reshape(expected.shape)
    if ours.tobytes() != expected.tobytes():
        bad = [k for k in range(len(xq)) if ours[k].tobytes() != expected[k].tobytes()]
        k = bad[0]
        e = int(np.flatnonzero(ours[k] != expected[k])[0])
        pytest.fail(f"{name} on {board}: {len(bad)}/{len(xq)} samples differ from tflm-host; sample {k}, element "
                    f"{e}: {board} {ours[k].ravel()[e]} vs tflm-host {expected[k].ravel()[e]}", pytrace=False)


@pytest.mark.parametrize("board", DSP_BOARDS)
def test_malformed_model_gives_a_status_not_a_hang(shared_models, board):
    tflite = (shared_models / "kws_ref_model.tflite").read_bytes()
    x = np.zeros((1, 490), dtype=np.int8)
    with pytest.raises(ModelError) as info:
        run_on_emulated_core(tflite[: len(tflite) // 3], x, board, timeout=30)
    assert info.value.status in ("MQ_ERR_TRUNCATED", "MQ_ERR_MALFORMED")
    with pytest.raises(ModelError) as info:
        run_on_emulated_core(b"\x00" * 64, x, board, timeout=30)
    assert info.value.status.startswith("MQ_ERR_")


def test_wrong_input_size_is_an_error(shared_models):
    tflite = (shared_models / "kws_ref_model.tflite").read_bytes()
    with pytest.raises(ModelError, match=r"\(1, 49, 10, 1\) int8 \(490 bytes a sample\); got \(491,\) int8"):
        run_on_emulated_core(tflite, np.zeros((2, 491), dtype=np.int8), "qemu-nano33", timeout=30)


def test_a_run_past_its_timeout_is_an_error_and_qemu_is_gone(shared_models):
    tflite = (shared_models / "pretrainedResnet_quant.tflite").read_bytes()
    x = random_int8_inputs((32, 32, 3), 50, seed=1)  # about 2e9 instructions: far more than 1 s
    with pytest.raises(McuquantError, match="no result after"):
        run_on_emulated_core(tflite, x, "qemu-nano33", timeout=1.0)
    assert qemu_children() == []
