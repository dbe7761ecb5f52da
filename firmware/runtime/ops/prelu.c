/*
 * PRELU, int8 input and int8 alpha (broadcast against the input, up to MQ_MAX_DIMS dimensions)
 * -> int8, as TFLM's reference kernel:
 *   v = x - in_zp
 *   y = out_zp + MultiplyByQuantizedMultiplier(v, in_scale / out_scale)                for v >= 0
 *   y = out_zp + MultiplyByQuantizedMultiplier(v * (a - alpha_zp),
 *                                              in_scale * alpha_scale / out_scale)    for v < 0
 * clamped to int8, the ratios in double. Alpha may be a constant or an activation. Both
 * multipliers are computed once, by prepare() at mq_init: eval() reads them from ctx->prepared.
 */
#include "../mq_fixedpoint.h"
#include "mq_op_util.h"

typedef struct prelu_params {
    int32_t in_offset, alpha_offset, out_offset;
    int32_t multiplier_pos, multiplier_neg;
    int shift_pos, shift_neg;
} prelu_params;

static mq_status prelu_prepare(const mq_op_ctx *ctx, prelu_params *p, mq_broadcast *bc)
{
    const mq_tensor *in, *alpha, *out;
    mq_status s;
    if ((s = mq_binary_int8_operands(ctx, &in, &alpha, &out, bc)) != MQ_OK) return s;
    s = mq_checked_multiplier((double)in->scale / (double)out->scale, &p->multiplier_pos, &p->shift_pos);
    if (s != MQ_OK) return s;
    s = mq_channel_multiplier(in->scale, alpha->scale, out->scale, &p->multiplier_neg, &p->shift_neg);
    if (s != MQ_OK) return s;
    p->in_offset = -in->zero_point;
    p->alpha_offset = -alpha->zero_point;
    p->out_offset = out->zero_point;
    return MQ_OK;
}

mq_status mq_check_prelu(const mq_op_ctx *ctx)
{
    prelu_params p;
    mq_broadcast bc;
    return prelu_prepare(ctx, &p, &bc);
}

mq_status mq_prepare_prelu(const mq_op_ctx *ctx, uint8_t *out, uint32_t *bytes)
{
    mq_broadcast bc;
    *bytes = (uint32_t)sizeof(prelu_params);
    return out == NULL ? MQ_OK : prelu_prepare(ctx, (prelu_params *)(void *)out, &bc);
}

static void prelu_row(const int8_t *in, uint32_t step_in, const int8_t *alpha, uint32_t step_alpha,
                      int8_t *out, int32_t n, const void *params)
{
    const prelu_params *p = (const prelu_params *)params;
    int32_t i;
    for (i = 0; i < n; ++i) {
        const int32_t v = p->in_offset + in[(uint32_t)i * step_in];
        int32_t r;
        if (v >= 0) {
            r = mq_multiply_by_quantized_multiplier(v, p->multiplier_pos, p->shift_pos);
        } else {
            /* |v * a| <= 255 * 255: no overflow before requantization. */
            const int32_t a = p->alpha_offset + alpha[(uint32_t)i * step_alpha];
            r = mq_multiply_by_quantized_multiplier(v * a, p->multiplier_neg, p->shift_neg);
        }
        out[i] = (int8_t)mq_clamp(mq_add_wrap(r, p->out_offset), MQ_INT8_MIN, MQ_INT8_MAX);
    }
}

mq_status mq_eval_prelu(const mq_op_ctx *ctx)
{
    mq_broadcast bc;
    (void)mq_broadcast_prepare(ctx->inputs[0], ctx->inputs[1], ctx->outputs[0], &bc); /* checked at mq_init */
    mq_broadcast_run(&bc, (const int8_t *)ctx->inputs[0]->data, (const int8_t *)ctx->inputs[1]->data,
                     (int8_t *)ctx->outputs[0]->data, prelu_row, ctx->prepared);
    return MQ_OK;
}
