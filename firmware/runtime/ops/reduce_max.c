/*
 * REDUCE_MAX, int8 -> int8, over a constant int32 list of axes (negative axes count from the
 * end, duplicates are ignored, an empty list copies), keep_dims or not. As TFLM: the input and
 * output quantization must be identical (no requantization happens) and each output element is
 * the largest raw value of its reduced sub-space. Output elements come in the row-major order of
 * the kept dimensions, which is the layout TFLM writes whatever the output's stated shape.
 */
#include "mq_op_util.h"

typedef struct reduce_params {
    uint8_t reduced[MQ_MAX_DIMS]; /* 1 for every input dimension that is reduced */
} reduce_params;

static mq_status reduce_prepare(const mq_op_ctx *ctx, reduce_params *p)
{
    const mq_tensor *in, *axis, *out;
    int32_t count;
    mq_status s;

    if (ctx->ninputs != 2 || ctx->noutputs != 1) return MQ_ERR_MALFORMED;
    in = ctx->inputs[0];
    axis = ctx->inputs[1];
    out = ctx->outputs[0];
    if (in == NULL || axis == NULL || out == NULL) return MQ_ERR_MALFORMED;
    if ((s = mq_check_int8_activation(in)) != MQ_OK) return s;
    if ((s = mq_check_int8_activation(out)) != MQ_OK) return s;
    if ((double)in->scale != (double)out->scale || in->zero_point != out->zero_point) return MQ_ERR_QUANTIZATION;
    return mq_reduction_axes(in, axis, out, p->reduced, &count);
}

mq_status mq_check_reduce_max(const mq_op_ctx *ctx)
{
    reduce_params p;
    return reduce_prepare(ctx, &p);
}

mq_status mq_eval_reduce_max(const mq_op_ctx *ctx)
{
    const mq_tensor *in = ctx->inputs[0];
    const int8_t *x = (const int8_t *)in->data;
    int8_t *y = (int8_t *)ctx->outputs[0]->data;
    const int32_t rank = in->ndims;
    uint32_t stride[MQ_MAX_DIMS];
    int32_t kept_idx[MQ_MAX_DIMS] = {0}, red_idx[MQ_MAX_DIMS];
    uint32_t base = 0, out_i = 0;
    int32_t d;
    reduce_params p;
    const mq_status s = reduce_prepare(ctx, &p);
    if (s != MQ_OK) return s;

    for (d = rank - 1; d >= 0; --d) stride[d] = d == rank - 1 ? 1u : stride[d + 1] * (uint32_t)in->dims[d + 1];
    for (;;) {
        /* The largest value of the reduced sub-space at `base` (odometer over reduced dimensions). */
        int8_t best = MQ_INT8_MIN;
        uint32_t off = base;
        for (d = 0; d < rank; ++d) red_idx[d] = 0;
        for (;;) {
            if (x[off] > best) best = x[off];
            if (!mq_odometer_step(rank, in->dims, stride, p.reduced, 1, red_idx, &off)) break;
        }
        y[out_i++] = best;

        /* Next output element: odometer over the kept dimensions. */
        if (!mq_odometer_step(rank, in->dims, stride, p.reduced, 0, kept_idx, &base)) return MQ_OK;
    }
}
