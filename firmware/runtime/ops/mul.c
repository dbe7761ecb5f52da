/*
 * MUL, int8 * int8 -> int8 with broadcasting (any ranks up to MQ_MAX_DIMS, as TFLM) and a fused
 * activation. As TFLM's reference integer Mul: (x1 - zp1) * (x2 - zp2) requantized by
 * input1_scale * input2_scale / output_scale (all in double), plus the output zero point, clamped.
 * The multiplier is computed once, by prepare() at mq_init: eval() reads it from ctx->prepared.
 */
#include "../mq_fixedpoint.h"
#include "mq_op_util.h"

typedef struct mul_params {
    int32_t in1_offset, in2_offset, out_offset;
    int32_t multiplier;
    int shift;
    int32_t act_min, act_max;
} mul_params;

static mq_status mul_prepare(const mq_op_ctx *ctx, mul_params *p, mq_broadcast *bc)
{
    const mq_tensor *a, *b, *out;
    mq_status s;

    if ((s = mq_binary_int8_operands(ctx, &a, &b, &out, bc)) != MQ_OK) return s;

    p->in1_offset = -a->zero_point;
    p->in2_offset = -b->zero_point;
    p->out_offset = out->zero_point;
    s = mq_checked_multiplier((double)a->scale * (double)b->scale / (double)out->scale,
                              &p->multiplier, &p->shift);
    if (s != MQ_OK) return s;
    return mq_activation_range_int8(ctx->options->activation, out, &p->act_min, &p->act_max);
}

mq_status mq_check_mul(const mq_op_ctx *ctx)
{
    mul_params p;
    mq_broadcast bc;
    return mul_prepare(ctx, &p, &bc);
}

mq_status mq_prepare_mul(const mq_op_ctx *ctx, uint8_t *out, uint32_t *bytes)
{
    mq_broadcast bc;
    *bytes = (uint32_t)sizeof(mul_params);
    return out == NULL ? MQ_OK : mul_prepare(ctx, (mul_params *)(void *)out, &bc);
}

static void mul_row(const int8_t *in1, uint32_t step1, const int8_t *in2, uint32_t step2,
                    int8_t *out, int32_t n, const void *params)
{
    const mul_params *p = (const mul_params *)params;
    int32_t i;
    for (i = 0; i < n; ++i) {
        /* |product| <= 255 * 255: no overflow before requantization. */
        const int32_t prod = (p->in1_offset + in1[(uint32_t)i * step1]) *
                             (p->in2_offset + in2[(uint32_t)i * step2]);
        const int32_t r = mq_multiply_by_quantized_multiplier(prod, p->multiplier, p->shift);
        out[i] = (int8_t)mq_clamp(mq_add_wrap(r, p->out_offset), p->act_min, p->act_max);
    }
}

mq_status mq_eval_mul(const mq_op_ctx *ctx)
{
    mq_broadcast bc;
    (void)mq_broadcast_prepare(ctx->inputs[0], ctx->inputs[1], ctx->outputs[0], &bc); /* checked at mq_init */
    mq_broadcast_run(&bc, (const int8_t *)ctx->inputs[0]->data, (const int8_t *)ctx->inputs[1]->data,
                     (int8_t *)ctx->outputs[0]->data, mul_row, ctx->prepared);
    return MQ_OK;
}
