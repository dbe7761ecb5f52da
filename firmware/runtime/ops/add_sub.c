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
 *
 * A scaled operand depends on its int8 input only: prepare() tabulates both (256 int32 each, SUB's
 * second one negated), so an element costs two table loads, an add and the output's fused
 * requantization (mq_requant_fused). 2 KB of prepared data per operator, in flash when exported.
 */
#include "../mq_fixedpoint.h"
#include "mq_op_util.h"

#define ADD_LEFT_SHIFT 20

typedef struct add_params {
    int32_t in1_offset, in2_offset, out_offset;
    int32_t in1_multiplier, in2_multiplier, out_multiplier;
    int in1_shift, in2_shift, out_shift;
    int32_t act_min, act_max;
} add_params;

/* A multiplier in (0, 1) quantized with a shift <= 0, as QuantizeMultiplierSmallerThanOneExp. */
static mq_status below_one(double real, int32_t *multiplier, int *shift)
{
    if (!(real > 0.0 && real < 1.0)) return MQ_ERR_QUANTIZATION;
    mq_quantize_multiplier(real, multiplier, shift);
    return *shift > 0 ? MQ_ERR_QUANTIZATION : MQ_OK;
}

static mq_status add_prepare(const mq_op_ctx *ctx, add_params *p, mq_broadcast *bc)
{
    const mq_tensor *a, *b, *out;
    double twice_max, real1, real2, real_out;
    mq_status s;

    if ((s = mq_binary_int8_operands(ctx, &a, &b, &out, bc)) != MQ_OK) return s;

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

static mq_status check(const mq_op_ctx *ctx)
{
    add_params p;
    mq_broadcast bc;
    return add_prepare(ctx, &p, &bc);
}

/* What eval() reads: the output's requantization and the two operands' tables (index x + 128). */
typedef struct add_prepared {
    int32_t out_multiplier, out_shift, out_offset, act_min, act_max;
    int32_t scaled1[256], scaled2[256]; /* MultiplyByQuantizedMultiplier((x + offset) << 20, m, s) */
} add_prepared;

static mq_status prepare(const mq_op_ctx *ctx, int32_t sign, uint8_t *out, uint32_t *bytes)
{
    add_params p;
    mq_broadcast bc;
    add_prepared *t = (add_prepared *)(void *)out;
    int32_t x;
    mq_status s;
    *bytes = (uint32_t)sizeof(add_prepared);
    if (out == NULL) return MQ_OK;
    if ((s = add_prepare(ctx, &p, &bc)) != MQ_OK) return s;
    t->out_multiplier = p.out_multiplier;
    t->out_shift = p.out_shift;
    t->out_offset = p.out_offset;
    t->act_min = p.act_min;
    t->act_max = p.act_max;
    for (x = -128; x < 128; ++x) {
        /* |x + offset| <= 255: the shifted value stays below 2^28. */
        const int32_t v1 = (p.in1_offset + x) * (1 << ADD_LEFT_SHIFT), v2 = (p.in2_offset + x) * (1 << ADD_LEFT_SHIFT);
        const int32_t a2 = mq_multiply_by_quantized_multiplier(v2, p.in2_multiplier, p.in2_shift);
        t->scaled1[x + 128] = mq_multiply_by_quantized_multiplier(v1, p.in1_multiplier, p.in1_shift);
        t->scaled2[x + 128] = sign > 0 ? a2 : -a2;
    }
    return MQ_OK;
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
    const add_prepared *t = (const add_prepared *)params;
    const int32_t *scaled1 = t->scaled1 + 128, *scaled2 = t->scaled2 + 128;
    const int32_t m = t->out_multiplier, shift = t->out_shift, zp = t->out_offset, lo = t->act_min, hi = t->act_max;
    const int64_t k = mq_requant_constant(shift);
    int32_t i;
    /* The operands' sum is below 2^29 in magnitude (each scaled by a multiplier below one). */
    if (step1 == 1u && step2 == 1u && shift < 0) { /* the usual case, with mq_requant_fused's shift < 0 branch */
        const int32_t r = -shift - 1;
        for (i = 0; i < n; ++i) {
            const int32_t sum = scaled1[in1[i]] + scaled2[in2[i]];
            const int64_t t = (int64_t)sum * m + (k - (int64_t)((uint64_t)((uint32_t)sum >> 31) << 31));
            out[i] = (int8_t)mq_clamp(((int32_t)(t >> 32) >> r) + zp, lo, hi);
        }
        return;
    }
    for (i = 0; i < n; ++i) {
        const int32_t sum = scaled1[in1[(uint32_t)i * step1]] + scaled2[in2[(uint32_t)i * step2]];
        out[i] = (int8_t)mq_clamp(mq_requant_fused(sum, m, shift, k) + zp, lo, hi);
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

mq_status mq_check_add(const mq_op_ctx *ctx) { return check(ctx); }
mq_status mq_prepare_add(const mq_op_ctx *ctx, uint8_t *out, uint32_t *bytes) { return prepare(ctx, 1, out, bytes); }
mq_status mq_check_sub(const mq_op_ctx *ctx) { return check(ctx); }
mq_status mq_prepare_sub(const mq_op_ctx *ctx, uint8_t *out, uint32_t *bytes) { return prepare(ctx, -1, out, bytes); }
/* The same loop: SUB's sign is in its second table. */
mq_status mq_eval_sub(const mq_op_ctx *ctx) { return mq_eval_add(ctx); }
/* The same rule: SUB reads and writes element by element too. */
int32_t mq_in_place_sub(const mq_op_ctx *ctx) { return mq_in_place_add(ctx); }
