/*
 * ADD and SUB, int8 (+|-) int8 -> int8 with broadcasting (any ranks up to MQ_MAX_DIMS, as TFLM's
 * BroadcastBinaryOpSimple handles them) and a fused activation.
 *
 * As TFLM's reference integer Add: both inputs, offset by their zero points, are shifted left by
 * 20 bits and scaled by input_scale / (2 * max_input_scale); their sum (SUB: their difference) is
 * scaled by 2 * max_input_scale / (2^20 * output_scale), offset by the output zero point and
 * clamped. All three multipliers must be below one (TFLM aborts otherwise; here check() rejects).
 * The larger scale is chosen in float, the ratios are computed in double, for SUB too: so does the
 * tflite-micro build that serves as the oracle (measured: TFLM sources of 2023-2026 compute SUB's
 * ratios in float, which changes about one result in 65536 at some quantizations; the PyPI build
 * matches the double version on all of them).
 */
#include "../mq_fixedpoint.h"
#include "mq_op_util.h"

#define ADD_LEFT_SHIFT 20

typedef struct add_params {
    int32_t in1_offset, in2_offset, out_offset;
    int32_t in1_multiplier, in2_multiplier, out_multiplier;
    int in1_shift, in2_shift, out_shift;
    int32_t act_min, act_max;
    int32_t sign; /* +1 ADD, -1 SUB: the second scaled operand is added or subtracted */
} add_params;

/* A multiplier in (0, 1) quantized with a shift <= 0, as QuantizeMultiplierSmallerThanOneExp. */
static mq_status below_one(double real, int32_t *multiplier, int *shift)
{
    if (!(real > 0.0 && real < 1.0)) return MQ_ERR_QUANTIZATION;
    mq_quantize_multiplier(real, multiplier, shift);
    return *shift > 0 ? MQ_ERR_QUANTIZATION : MQ_OK;
}

static mq_status add_prepare(const mq_op_ctx *ctx, int32_t sign, add_params *p, mq_broadcast *bc)
{
    const mq_tensor *a, *b, *out;
    double twice_max, real1, real2, real_out;
    mq_status s;

    if ((s = mq_binary_int8_operands(ctx, &a, &b, &out, bc)) != MQ_OK) return s;

    p->sign = sign;
    p->in1_offset = -a->zero_point;
    p->in2_offset = -b->zero_point;
    p->out_offset = out->zero_point;
    /* The larger scale is chosen in float, everything after in double (as TFLM). */
    twice_max = 2.0 * (double)(a->scale > b->scale ? a->scale : b->scale);
    real1 = (double)a->scale / twice_max;
    real2 = (double)b->scale / twice_max;
    real_out = twice_max / ((double)(1 << ADD_LEFT_SHIFT) * (double)out->scale);
    if ((s = below_one(real1, &p->in1_multiplier, &p->in1_shift)) != MQ_OK) return s;
    if ((s = below_one(real2, &p->in2_multiplier, &p->in2_shift)) != MQ_OK) return s;
    if ((s = below_one(real_out, &p->out_multiplier, &p->out_shift)) != MQ_OK) return s;
    return mq_activation_range_int8(ctx->options->activation, out, &p->act_min, &p->act_max);
}

static mq_status check(const mq_op_ctx *ctx, int32_t sign)
{
    add_params p;
    mq_broadcast bc;
    return add_prepare(ctx, sign, &p, &bc);
}

/* The multipliers (computed in double) once, at mq_init. */
static mq_status prepare(const mq_op_ctx *ctx, int32_t sign, uint8_t *out, uint32_t *bytes)
{
    mq_broadcast bc;
    *bytes = (uint32_t)sizeof(add_params);
    return out == NULL ? MQ_OK : add_prepare(ctx, sign, (add_params *)(void *)out, &bc);
}

/* The output may take the memory of an input of its own shape: element i of that input is read
 * before element i of the output is written, and nothing else reads it. */
int32_t mq_in_place_add(const mq_op_ctx *ctx)
{
    if (ctx->inputs[0]->bytes == ctx->outputs[0]->bytes) return 0;
    if (ctx->inputs[1]->bytes == ctx->outputs[0]->bytes) return 1;
    return -1;
}

static void add_row(const int8_t *in1, uint32_t step1, const int8_t *in2, uint32_t step2,
                    int8_t *out, int32_t n, const void *params)
{
    const add_params *p = (const add_params *)params;
    int32_t i;
    for (i = 0; i < n; ++i) {
        /* |value| <= 255, so the shifted values stay below 2^28 and their sum or difference cannot
         * overflow. */
        const int32_t v1 = (p->in1_offset + in1[(uint32_t)i * step1]) * (1 << ADD_LEFT_SHIFT);
        const int32_t v2 = (p->in2_offset + in2[(uint32_t)i * step2]) * (1 << ADD_LEFT_SHIFT);
        const int32_t sum = mq_multiply_by_quantized_multiplier(v1, p->in1_multiplier, p->in1_shift) +
                            p->sign * mq_multiply_by_quantized_multiplier(v2, p->in2_multiplier, p->in2_shift);
        const int32_t r = mq_multiply_by_quantized_multiplier(sum, p->out_multiplier, p->out_shift) +
                          p->out_offset;
        out[i] = (int8_t)mq_clamp(r, p->act_min, p->act_max);
    }
}

mq_status mq_eval_add(const mq_op_ctx *ctx)
{
    mq_broadcast bc;
    (void)mq_broadcast_prepare(ctx->inputs[0], ctx->inputs[1], ctx->outputs[0], &bc); /* checked at mq_init */
    mq_broadcast_run(&bc, (const int8_t *)ctx->inputs[0]->data, (const int8_t *)ctx->inputs[1]->data,
                     (int8_t *)ctx->outputs[0]->data, add_row, ctx->prepared);
    return MQ_OK;
}

mq_status mq_check_add(const mq_op_ctx *ctx) { return check(ctx, 1); }
mq_status mq_prepare_add(const mq_op_ctx *ctx, uint8_t *out, uint32_t *bytes) { return prepare(ctx, 1, out, bytes); }
mq_status mq_check_sub(const mq_op_ctx *ctx) { return check(ctx, -1); }
mq_status mq_prepare_sub(const mq_op_ctx *ctx, uint8_t *out, uint32_t *bytes) { return prepare(ctx, -1, out, bytes); }
/* The same loop: the sign is in the prepared parameters. */
mq_status mq_eval_sub(const mq_op_ctx *ctx) { return mq_eval_add(ctx); }
/* The same rule: SUB reads and writes element by element too. */
int32_t mq_in_place_sub(const mq_op_ctx *ctx) { return mq_in_place_add(ctx); }
