/*
 * DEQUANTIZE, int8 -> float32, as TensorFlow Lite Micro's reference kernel computes it:
 * y = float(double(scale) * (x - zero_point)).
 *
 * The double product of a float scale (24-bit significand) and an integer of at most 9 bits is
 * exact, so rounding it once to float equals the float product scale * (x - zero_point) bit for
 * bit; this runtime multiplies in float, which Cortex-M4F/M7 FPUs do in hardware.
 */
#include <string.h>

#include "mq_fixed_math.h"

mq_status mq_check_dequantize(const mq_op_ctx *ctx)
{
    const mq_tensor *in, *out;
    mq_status s = mq_nl_check_io(ctx);
    if (s != MQ_OK) return s;
    in = ctx->inputs[0];
    out = ctx->outputs[0];
    if (in->type != MQ_INT8 || out->type != MQ_FLOAT32) return MQ_ERR_UNSUPPORTED_TYPE;
    s = mq_nl_check_same_shape(in, 1u, out, 4u);
    if (s != MQ_OK) return s;
    return mq_nl_check_int8_quantization(in);
}

mq_status mq_eval_dequantize(const mq_op_ctx *ctx)
{
    const mq_tensor *in = ctx->inputs[0];
    const int8_t *x = (const int8_t *)in->data;
    uint8_t *y = (uint8_t *)ctx->outputs[0]->data;
    const uint32_t n = mq_tensor_elements(in);
    const float scale = in->scale;
    const int32_t zp = in->zero_point;
    uint32_t i;
    for (i = 0; i < n; ++i) {
        const float v = scale * (float)((int32_t)x[i] - zp);
        memcpy(y + (size_t)i * 4u, &v, sizeof v); /* no alignment assumption on the output */
    }
    return MQ_OK;
}
