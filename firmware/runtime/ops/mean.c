/*
 * MEAN, int8 -> int8, over a constant int32 list of axes (negative axes count from the end,
 * duplicates are ignored, an empty list copies with requantization), keep_dims or not.
 *
 * As TFLM's int8 MEAN (QuantizedMeanOrSum, the path it takes for every axis combination): the
 * int32 sum over the reduced elements (wrapping), minus zero_point * count, requantized by
 * input_scale / output_scale (double) with the division by the count folded into the multiplier:
 *   shift = min(floor(log2(count)), 32, 31 + s);  multiplier' = (multiplier << shift) / count;
 *   s' = s - shift.
 * The result plus the output zero point is clamped to int8 (MEAN has no fused activation).
 * The reduced axes and the folded multiplier are computed once, by prepare() at mq_init: eval()
 * reads them from ctx->prepared.
 *
 * Without scratch memory, each output element sums its own reduced sub-space; output elements
 * come in the row-major order of the kept dimensions, which is the layout TFLM writes whatever
 * the output's stated shape.
 */
#include "../mq_fixedpoint.h"
#include "mq_op_util.h"

typedef struct mean_params {
    uint8_t reduced[MQ_MAX_DIMS]; /* 1 for every input dimension that is reduced */
    int32_t count;                /* elements summed per output element */
    int32_t multiplier;
    int shift;
} mean_params;

static int floor_log2(uint32_t v)
{
    int n = -1;
    while (v != 0) {
        v >>= 1;
        ++n;
    }
    return n;
}

static mq_status mean_prepare(const mq_op_ctx *ctx, mean_params *p)
{
    const mq_tensor *in, *axis, *out;
    int32_t m;
    int shift, fold;
    mq_status s;

    if (ctx->ninputs != 2 || ctx->noutputs != 1 || ctx->options == NULL) return MQ_ERR_MALFORMED;
    in = ctx->inputs[0];
    axis = ctx->inputs[1];
    out = ctx->outputs[0];
    if (in == NULL || axis == NULL || out == NULL) return MQ_ERR_MALFORMED;
    if ((s = mq_check_int8_activation(in)) != MQ_OK) return s;
    if ((s = mq_check_int8_activation(out)) != MQ_OK) return s;
    if ((s = mq_reduction_axes(in, axis, out, p->reduced, &p->count)) != MQ_OK) return s;

    if ((s = mq_checked_multiplier((double)in->scale / (double)out->scale, &m, &shift)) != MQ_OK) return s;
    fold = floor_log2((uint32_t)p->count);
    if (fold > 32) fold = 32;
    if (fold > 31 + shift) fold = 31 + shift; /* >= 0: QuantizeMultiplier keeps shift >= -31 */
    /* multiplier < 2^31 and 2^fold <= count, so the quotient fits in int32. */
    p->multiplier = (int32_t)((int64_t)((uint64_t)(uint32_t)m << fold) / p->count);
    p->shift = shift - fold;
    return MQ_OK;
}

mq_status mq_check_mean(const mq_op_ctx *ctx)
{
    mean_params p;
    return mean_prepare(ctx, &p);
}

mq_status mq_prepare_mean(const mq_op_ctx *ctx, uint8_t *out, uint32_t *bytes)
{
    *bytes = (uint32_t)sizeof(mean_params);
    if (out == NULL) return MQ_OK;
    memset(out, 0, sizeof(mean_params)); /* the padding too: exported blobs are reproducible */
    return mean_prepare(ctx, (mean_params *)(void *)out);
}

mq_status mq_eval_mean(const mq_op_ctx *ctx)
{
    const mq_tensor *in = ctx->inputs[0], *out = ctx->outputs[0];
    const int8_t *x = (const int8_t *)in->data;
    int8_t *y = (int8_t *)out->data;
    const int32_t rank = in->ndims;
    uint32_t stride[MQ_MAX_DIMS];
    int32_t kept_idx[MQ_MAX_DIMS] = {0}, red_idx[MQ_MAX_DIMS];
    uint32_t base = 0, out_i = 0;
    int32_t d;
    const mean_params *p = (const mean_params *)(const void *)ctx->prepared;

    for (d = rank - 1; d >= 0; --d) {
        stride[d] = d == rank - 1 ? 1u : stride[d + 1] * (uint32_t)in->dims[d + 1];
    }
    for (;;) {
        /* Sum the reduced sub-space at `base` (odometer over the reduced dimensions). */
        uint32_t sum = 0, off = base;
        int32_t v;
        for (d = 0; d < rank; ++d) red_idx[d] = 0;
        for (;;) {
            const int32_t xv = x[off];
            sum += (uint32_t)xv;
            if (!mq_odometer_step(rank, in->dims, stride, p->reduced, 1, red_idx, &off)) break;
        }
        /* sum - zero_point * count, wrapped to int32 as TFLM's cast does. */
        sum -= (uint32_t)in->zero_point * (uint32_t)p->count;
        v = mq_multiply_by_quantized_multiplier(mq_wrap_i32(sum), p->multiplier, p->shift);
        y[out_i++] = (int8_t)mq_clamp(mq_add_wrap(v, out->zero_point), MQ_INT8_MIN, MQ_INT8_MAX);

        /* Next output element: odometer over the kept dimensions. */
        if (!mq_odometer_step(rank, in->dims, stride, p->reduced, 0, kept_idx, &base)) return MQ_OK;
    }
}
