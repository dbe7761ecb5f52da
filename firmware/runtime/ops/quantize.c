/*
 * QUANTIZE as TensorFlow Lite Micro's reference kernel computes its int8 paths:
 *
 *   float32 -> int8: y = clamp(int(roundf(x / out_scale)) + out_zp), a float division and
 *                    rounding half away from zero;
 *   int8 -> int8:    requantization, y = clamp(out_zp + MultiplyByQuantizedMultiplier(x - in_zp))
 *                    with the multiplier of double(in_scale) / double(out_scale).
 *
 * Other type pairs TFLM accepts (int16, int32, uint8) are rejected: this runtime handles int8
 * and float32 tensors only. The output must be per-tensor quantized, as TFLM requires.
 *
 * Where x / out_scale does not fit int32 (huge inputs, inf, NaN) TFLM's float-to-int conversion
 * is undefined and differs between x86 and Arm; this runtime saturates (NaN counts as 0), which
 * is what the conversion instruction of Arm cores does. Everywhere else it is bit-exact.
 *
 * The int8 -> int8 multiplier is computed once, by prepare() at mq_init: eval() reads it from
 * ctx->prepared. The float path needs nothing prepared (single precision only).
 */
#include <math.h>
#include <string.h>

#include "mq_fixed_math.h"

typedef struct requantize_params {
    int32_t multiplier;
    int shift;
} requantize_params;

static mq_status requantize_params_of(const mq_tensor *in, const mq_tensor *out, requantize_params *p)
{
    mq_quantize_multiplier((double)in->scale / (double)out->scale, &p->multiplier, &p->shift);
    /* the reference shifts x - in_zp left by `shift` in an int: beyond 30 that is undefined, and
     * a scale ratio of 2^30 is not a real model */
    return p->shift > 30 ? MQ_ERR_QUANTIZATION : MQ_OK;
}

mq_status mq_check_quantize(const mq_op_ctx *ctx)
{
    const mq_tensor *in, *out;
    mq_status s = mq_nl_check_io(ctx);
    if (s != MQ_OK) return s;
    in = ctx->inputs[0];
    out = ctx->outputs[0];
    if (out->type != MQ_INT8 || (in->type != MQ_FLOAT32 && in->type != MQ_INT8)) return MQ_ERR_UNSUPPORTED_TYPE;
    s = mq_nl_check_same_shape(in, in->type == MQ_FLOAT32 ? 4u : 1u, out, 1u);
    if (s != MQ_OK) return s;
    s = mq_nl_check_int8_quantization(out);
    if (s != MQ_OK) return s;
    if (in->type == MQ_INT8) {
        requantize_params p;
        s = mq_nl_check_int8_quantization(in);
        if (s != MQ_OK) return s;
        return requantize_params_of(in, out, &p);
    }
    return MQ_OK;
}

mq_status mq_prepare_quantize(const mq_op_ctx *ctx, uint8_t *out, uint32_t *bytes)
{
    const mq_tensor *in = ctx->inputs[0];
    *bytes = in->type == MQ_INT8 ? (uint32_t)sizeof(requantize_params) : 0u;
    if (out == NULL || *bytes == 0u) return MQ_OK;
    return requantize_params_of(in, ctx->outputs[0], (requantize_params *)(void *)out);
}

/* roundf(v) converted to int32, saturating; NaN -> 0. */
static int32_t saturating_int32(float v)
{
    if (v != v) return 0;
    if (v >= 2147483648.0f) return INT32_MAX;
    if (v < -2147483648.0f) return INT32_MIN;
    return (int32_t)v;
}

mq_status mq_eval_quantize(const mq_op_ctx *ctx)
{
    const mq_tensor *in = ctx->inputs[0], *out = ctx->outputs[0];
    int8_t *y = (int8_t *)out->data;
    const uint32_t n = mq_tensor_elements(out);
    const int32_t out_zp = out->zero_point;
    uint32_t i;
    if (in->type == MQ_FLOAT32) {
        const uint8_t *x = (const uint8_t *)in->data;
        const float scale = out->scale;
        for (i = 0; i < n; ++i) {
            float v;
            int64_t q;
            memcpy(&v, x + (size_t)i * 4u, sizeof v); /* constant tensors may be unaligned */
            q = (int64_t)saturating_int32(roundf(v / scale)) + out_zp;
            y[i] = (int8_t)(q < -128 ? -128 : q > 127 ? 127 : q);
        }
    } else {
        const int8_t *x = (const int8_t *)in->data;
        const int32_t in_zp = in->zero_point;
        const requantize_params p = *(const requantize_params *)(const void *)ctx->prepared;
        for (i = 0; i < n; ++i) {
            const int32_t q = mq_wrap_add(mq_multiply_by_quantized_multiplier((int32_t)x[i] - in_zp,
                                                                               p.multiplier, p.shift), out_zp);
            y[i] = (int8_t)(q < -128 ? -128 : q > 127 ? 127 : q);
        }
    }
    return MQ_OK;
}
