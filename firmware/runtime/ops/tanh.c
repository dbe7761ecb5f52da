/*
 * TANH, int8 -> int8, as TensorFlow Lite Micro's reference integer kernel computes it:
 * x - in_zp is rescaled to Q4 (mq_q4_input_of), tanh is evaluated in fixed point (mq_tanh_q0),
 * and the Q0 result is rounded to 1/128 steps with zero point 0. Inputs at or beyond the radius
 * where Q4 would overflow saturate to -128 / 127 directly.
 *
 * TFLM checks nothing about the output quantization and always produces scale 1/128, zero point
 * 0 (what the converter assigns); this runtime does the same, so it accepts the same models.
 *
 * Cost: as LOGISTIC (~20 64-bit multiplications per value; a 256-byte stack table per invoke
 * when the tensor has more than 256 elements).
 *
 * The Q4 rescaling (frexp of the input scale, in double) is computed once, by prepare() at
 * mq_init: eval() reads it from ctx->prepared.
 */
#include "mq_fixed_math.h"

static int8_t tanh_one(int32_t x, const mq_q4_input *p)
{
    const int32_t d = x - p->zero_point;
    if (d <= -p->radius) return -128;
    if (d >= p->radius) return 127;
    {
        /* |d| < radius keeps d * 2^shift below 2^31 */
        const int32_t in_q4 = mq_multiply_by_quantized_multiplier(d, p->multiplier, p->shift);
        const int32_t out = mq_rounding_divide_by_pot(mq_tanh_q0(in_q4, 4), 24);
        return (int8_t)(out < -128 ? -128 : out > 127 ? 127 : out);
    }
}

mq_status mq_check_tanh(const mq_op_ctx *ctx)
{
    mq_q4_input p;
    const mq_status s = mq_nl_check_int8_unary(ctx);
    if (s != MQ_OK) return s;
    return mq_q4_input_of(ctx->inputs[0], &p);
}

mq_status mq_prepare_tanh(const mq_op_ctx *ctx, uint8_t *out, uint32_t *bytes)
{
    *bytes = (uint32_t)sizeof(mq_q4_input);
    return out == NULL ? MQ_OK : mq_q4_input_of(ctx->inputs[0], (mq_q4_input *)(void *)out);
}

mq_status mq_eval_tanh(const mq_op_ctx *ctx)
{
    const int8_t *x = (const int8_t *)ctx->inputs[0]->data;
    int8_t *y = (int8_t *)ctx->outputs[0]->data;
    const uint32_t n = mq_tensor_elements(ctx->inputs[0]);
    mq_q4_map(x, y, n, tanh_one, (const mq_q4_input *)(const void *)ctx->prepared);
    return MQ_OK;
}
