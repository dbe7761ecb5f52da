/*
 * TRANSPOSE, int8, rank 1..5 (TFLM's limit), by a constant int32 permutation: output dimension i
 * is input dimension perm[i]. Values are moved unchanged (TFLM compares no quantization).
 * TFLM checks each perm entry's range but not that they are distinct; a repeated entry is
 * rejected here (the output could not have the permuted shape).
 */
#include "mq_op_util.h"

#define TRANSPOSE_MAX_RANK 5

typedef struct transpose_params {
    int32_t rank;
    int32_t dims[TRANSPOSE_MAX_RANK];        /* output dimensions */
    uint32_t in_stride[TRANSPOSE_MAX_RANK];  /* input element stride of output dimension i */
} transpose_params;

static mq_status transpose_prepare(const mq_op_ctx *ctx, transpose_params *p)
{
    const mq_tensor *in, *perm, *out;
    uint32_t stride[TRANSPOSE_MAX_RANK];
    int used[TRANSPOSE_MAX_RANK] = {0};
    int32_t i;
    mq_status s;

    if (ctx->ninputs != 2 || ctx->noutputs != 1) return MQ_ERR_MALFORMED;
    in = ctx->inputs[0];
    perm = ctx->inputs[1];
    out = ctx->outputs[0];
    if (in == NULL || perm == NULL || out == NULL) return MQ_ERR_MALFORMED;
    if (in->type != MQ_INT8 || out->type != MQ_INT8) return MQ_ERR_UNSUPPORTED_TYPE;
    if (in->ndims < 1 || in->ndims > TRANSPOSE_MAX_RANK || out->ndims != in->ndims) return MQ_ERR_SHAPE;
    if ((s = mq_check_dims_positive(in)) != MQ_OK) return s;
    if (perm->type != MQ_INT32) return MQ_ERR_UNSUPPORTED_TYPE;
    if (!perm->is_constant || perm->data == NULL) return MQ_ERR_UNSUPPORTED_OPTION; /* as TFLM */
    if (perm->ndims != 1 || perm->dims[0] != (int32_t)in->ndims) return MQ_ERR_SHAPE;

    p->rank = in->ndims;
    stride[p->rank - 1] = 1;
    for (i = p->rank - 2; i >= 0; --i) stride[i] = stride[i + 1] * (uint32_t)in->dims[i + 1];
    for (i = 0; i < p->rank; ++i) {
        const int32_t k = mq_load_i32(perm->data, (uint32_t)i);
        if (k < 0 || k >= p->rank || used[k]) return MQ_ERR_UNSUPPORTED_OPTION;
        used[k] = 1;
        if (out->dims[i] != in->dims[k]) return MQ_ERR_SHAPE;
        p->dims[i] = out->dims[i];
        p->in_stride[i] = stride[k];
    }
    return MQ_OK;
}

mq_status mq_check_transpose(const mq_op_ctx *ctx)
{
    transpose_params p;
    return transpose_prepare(ctx, &p);
}

mq_status mq_eval_transpose(const mq_op_ctx *ctx)
{
    const int8_t *x = (const int8_t *)ctx->inputs[0]->data;
    int8_t *y = (int8_t *)ctx->outputs[0]->data;
    int32_t idx[TRANSPOSE_MAX_RANK] = {0};
    uint32_t src = 0, dst = 0;
    int32_t d;
    transpose_params p;
    const mq_status s = transpose_prepare(ctx, &p);
    if (s != MQ_OK) return s;

    /* The output in row-major order; `src` follows it through the input (odometer). */
    for (;;) {
        y[dst++] = x[src];
        for (d = p.rank - 1; d >= 0; --d) {
            if (++idx[d] < p.dims[d]) {
                src += p.in_stride[d];
                break;
            }
            idx[d] = 0;
            src -= p.in_stride[d] * (uint32_t)(p.dims[d] - 1);
        }
        if (d < 0) return MQ_OK;
    }
}
