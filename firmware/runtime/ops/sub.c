/*
 * SUB, int8 - int8 -> int8 with broadcasting (up to MQ_MAX_DIMS dimensions) and a fused
 * activation.
 *
 * The arithmetic is that of ADD with the second scaled operand subtracted: both inputs, offset by
 * their zero points, are shifted left by 20 bits and scaled by input_scale / (2 * max_input_scale);
 * the difference is scaled by 2 * max_input_scale / (2^20 * output_scale), offset by the output
 * zero point and clamped. The larger scale is chosen in float, the ratios are computed in double,
 * as ADD's: so does the tflite-micro build that serves as the oracle (measured: TFLM sources of
 * 2023-2026 compute SUB's ratios in float, which changes about one result in 65536 at some
 * quantizations; the PyPI build matches the double version on all of them).
 * Every multiplier must lie in (0, 1): TFLM aborts otherwise, check() rejects.
 */
#include "../mq_fixedpoint.h"
#include "mq_op_util.h"

#define SUB_LEFT_SHIFT 20

typedef struct sub_params {
    int32_t in1_offset, in2_offset, out_offset;
    int32_t in1_multiplier, in2_multiplier, out_multiplier;
    int in1_shift, in2_shift, out_shift;
    int32_t act_min, act_max;
} sub_params;

/* A multiplier in (0, 1) quantized with a shift <= 0, as QuantizeMultiplierSmallerThanOneExp. */
static mq_status below_one(double real, int32_t *multiplier, int *shift)
{
    if (!(real > 0.0 && real < 1.0)) return MQ_ERR_QUANTIZATION;
    mq_quantize_multiplier(real, multiplier, shift);
    return *shift > 0 ? MQ_ERR_QUANTIZATION : MQ_OK;
}

static mq_status sub_prepare(const mq_op_ctx *ctx, sub_params *p, mq_broadcast *bc)
{
    const mq_tensor *a, *b, *out;
    double twice_max;
    mq_status s;

    if ((s = mq_binary_int8_operands(ctx, &a, &b, &out, bc)) != MQ_OK) return s;

    p->in1_offset = -a->zero_point;
    p->in2_offset = -b->zero_point;
    p->out_offset = out->zero_point;
    twice_max = 2.0 * (double)(a->scale > b->scale ? a->scale : b->scale);
    if ((s = below_one((double)a->scale / twice_max, &p->in1_multiplier, &p->in1_shift)) != MQ_OK) return s;
    if ((s = below_one((double)b->scale / twice_max, &p->in2_multiplier, &p->in2_shift)) != MQ_OK) return s;
    s = below_one(twice_max / ((double)(1 << SUB_LEFT_SHIFT) * (double)out->scale), &p->out_multiplier,
                  &p->out_shift);
    if (s != MQ_OK) return s;
    return mq_activation_range_int8(ctx->options->activation, out, &p->act_min, &p->act_max);
}

mq_status mq_check_sub(const mq_op_ctx *ctx)
{
    sub_params p;
    mq_broadcast bc;
    return sub_prepare(ctx, &p, &bc);
}

static void sub_row(const int8_t *in1, uint32_t step1, const int8_t *in2, uint32_t step2,
                    int8_t *out, int32_t n, const void *params)
{
    const sub_params *p = (const sub_params *)params;
    int32_t i;
    for (i = 0; i < n; ++i) {
        /* |value| <= 255: the shifted values stay below 2^28, their difference cannot overflow. */
        const int32_t v1 = (p->in1_offset + in1[(uint32_t)i * step1]) * (1 << SUB_LEFT_SHIFT);
        const int32_t v2 = (p->in2_offset + in2[(uint32_t)i * step2]) * (1 << SUB_LEFT_SHIFT);
        const int32_t diff = mq_multiply_by_quantized_multiplier(v1, p->in1_multiplier, p->in1_shift) -
                             mq_multiply_by_quantized_multiplier(v2, p->in2_multiplier, p->in2_shift);
        const int32_t r = mq_multiply_by_quantized_multiplier(diff, p->out_multiplier, p->out_shift) +
                          p->out_offset;
        out[i] = (int8_t)mq_clamp(r, p->act_min, p->act_max);
    }
}

mq_status mq_eval_sub(const mq_op_ctx *ctx)
{
    sub_params p;
    mq_broadcast bc;
    mq_status s = sub_prepare(ctx, &p, &bc);
    if (s != MQ_OK) return s;
    mq_broadcast_run(&bc, (const int8_t *)ctx->inputs[0]->data, (const int8_t *)ctx->inputs[1]->data,
                     (int8_t *)ctx->outputs[0]->data, sub_row, &p);
    return MQ_OK;
}
