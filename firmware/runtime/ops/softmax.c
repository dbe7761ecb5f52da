/*
 * SOFTMAX, int8 -> int8, over the last dimension, as TensorFlow Lite Micro's reference kernel
 * computes it (fixed-point exp, no lookup table in its int8 path):
 *
 *   multiplier, shift = QuantizeMultiplier(min(beta * in_scale * 2^26, 2^31 - 1))  (double)
 *   diff_min          = -floor((2^5 - 1) * 2^26 / 2^shift)
 *   per row: d = x - max(row); for d >= diff_min, e(d) = exp(srdhm(d * 2^shift, multiplier)
 *            read as Q5) in Q0; sum = sum of e(d) / 2^12 (Q12);
 *            1/sum as a Q0 significand and a power of two (the reciprocal step of gemm-lowp);
 *            y = rdivpot(srdhm(reciprocal, e(d)), exponent) - 128, clamped; d < diff_min -> -128
 *
 * The output must be quantized with scale exactly 1/256 and zero point -128 (TFLM's check).
 * An int16 output (which TFLM also allows) is rejected: this runtime handles int8 tensors only.
 *
 * A row whose sum of exponentials reaches 512 (only possible with 512 or more elements in the
 * last dimension) gives a right shift outside [0, 31]; TFLM stops there with a failed
 * TFLITE_CHECK, this runtime returns MQ_ERR_LIMIT from eval() instead.
 *
 * The multiplier, shift and diff_min are computed once, by prepare() at mq_init (the double
 * arithmetic stays out of mq_invoke): eval() reads them from ctx->prepared.
 *
 * Cost: exp is evaluated twice per element (for the sum, then for the output), ~12 64-bit
 * multiplications each, rather than keeping a per-row scratch buffer.
 */
#include <math.h>

#include "mq_fixed_math.h"

#define SCALED_DIFF_INTEGER_BITS 5
#define ACCUMULATION_INTEGER_BITS 12

typedef struct softmax_params {
    int32_t multiplier, diff_min;
    int shift;
} softmax_params;

static mq_status softmax_params_of(const mq_op_ctx *ctx, softmax_params *p)
{
    const double beta = (double)ctx->options->beta;
    const double scale = (double)ctx->inputs[0]->scale;
    double real = beta * scale * (double)(1L << (31 - SCALED_DIFF_INTEGER_BITS));
    /* NaN, a negative beta or a multiplier <= 1 fail a TFLITE_CHECK in TFLM's Prepare. */
    if (!(real > 1.0)) return MQ_ERR_QUANTIZATION;
    if (real > 2147483647.0) real = 2147483647.0;
    mq_quantize_multiplier(real, &p->multiplier, &p->shift); /* shift in [1, 31] */
    /* floor(31 * 2^26 / 2^shift), exact in integers */
    p->diff_min = -(int32_t)(((int64_t)31 << 26) >> p->shift);
    return MQ_OK;
}

mq_status mq_check_softmax(const mq_op_ctx *ctx)
{
    const mq_tensor *in, *out;
    softmax_params p;
    mq_status s = mq_nl_check_io(ctx);
    if (s != MQ_OK) return s;
    in = ctx->inputs[0];
    out = ctx->outputs[0];
    if (ctx->options == 0) return MQ_ERR_MALFORMED;
    if (in->type != MQ_INT8 || out->type != MQ_INT8) return MQ_ERR_UNSUPPORTED_TYPE;
    if (in->ndims < 1) return MQ_ERR_SHAPE;
    s = mq_nl_check_same_shape(in, 1, out, 1);
    if (s != MQ_OK) return s;
    s = mq_nl_check_int8_quantization(in);
    if (s != MQ_OK) return s;
    if (out->nscales != 1 || out->scale != 1.0f / 256.0f || out->zero_point != -128)
        return MQ_ERR_QUANTIZATION;
    return softmax_params_of(ctx, &p);
}

mq_status mq_prepare_softmax(const mq_op_ctx *ctx, uint8_t *out, uint32_t *bytes)
{
    *bytes = (uint32_t)sizeof(softmax_params);
    return out == NULL ? MQ_OK : softmax_params_of(ctx, (softmax_params *)(void *)out);
}

/* exp(scaled x - max) in Q0 for one difference d >= diff_min. */
static int32_t softmax_exp(int32_t d, const softmax_params *p)
{
    /* |d| <= -diff_min keeps d * 2^shift within 31 * 2^26 */
    const int32_t scaled = mq_srdhm(mq_shift_left_wrapping(d, p->shift), p->multiplier);
    return mq_exp_on_negative_values(scaled, SCALED_DIFF_INTEGER_BITS);
}

mq_status mq_eval_softmax(const mq_op_ctx *ctx)
{
    const mq_tensor *in = ctx->inputs[0];
    const int8_t *x = (const int8_t *)in->data;
    int8_t *y = (int8_t *)ctx->outputs[0]->data;
    const uint32_t depth = (uint32_t)in->dims[in->ndims - 1];
    const uint32_t n = mq_tensor_elements(in);
    const softmax_params p = *(const softmax_params *)(const void *)ctx->prepared;
    uint32_t row, c;
    if (depth == 0) return MQ_OK; /* no elements */
    for (row = 0; row < n / depth; ++row) {
        const int8_t *xr = x + (size_t)row * depth;
        int8_t *yr = y + (size_t)row * depth;
        int32_t max = -128, sum = 0, reciprocal;
        int headroom, exponent;
        uint32_t normalized;
        for (c = 0; c < depth; ++c) {
            if (xr[c] > max) max = xr[c];
        }
        for (c = 0; c < depth; ++c) {
            const int32_t d = (int32_t)xr[c] - max;
            if (d >= p.diff_min) {
                /* Q0 -> Q12; the running sum wraps like the reference's int32 addition */
                sum = mq_wrap_add(sum, mq_rounding_divide_by_pot(softmax_exp(d, &p), ACCUMULATION_INTEGER_BITS));
            }
        }
        /* sum = 2^(12 - headroom) * (1 + f), f in [0, 1): 1/sum = 2^(headroom - 12) / (1 + f) */
        headroom = 0;
        while (headroom < 32 && !(((uint32_t)sum << headroom) & 0x80000000u)) ++headroom;
        normalized = headroom < 32 ? (uint32_t)sum << headroom : 0u;
        reciprocal = mq_one_over_one_plus_x_q0((int32_t)(normalized - 0x80000000u));
        exponent = (ACCUMULATION_INTEGER_BITS - headroom) + 31 - 8;
        if (exponent < 0 || exponent > 31) return MQ_ERR_LIMIT;
        for (c = 0; c < depth; ++c) {
            const int32_t d = (int32_t)xr[c] - max;
            int32_t v = -128;
            if (d >= p.diff_min) {
                v = mq_rounding_divide_by_pot(mq_srdhm(reciprocal, softmax_exp(d, &p)), exponent) - 128;
                if (v > 127) v = 127;
                if (v < -128) v = -128;
            }
            yr[c] = (int8_t)v;
        }
    }
    return MQ_OK;
}
