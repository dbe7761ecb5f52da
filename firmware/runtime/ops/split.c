/*
 * SPLIT (inputs: axis, tensor) and SPLIT_V (inputs: tensor, size_splits, axis), int8: the input
 * cut along a constant int32 axis into the outputs, in order. As TFLM, the pieces' sizes come
 * from the output shapes (num_splits and size_splits are not read); SPLIT's outputs all have
 * the same shape. Every output has the input's shape except along the axis, where the sizes add
 * up to the input's. Values are copied unchanged.
 */
#include <string.h>

#include "mq_op_util.h"

/* Checks the input, axis and outputs; *axis_out: the axis resolved (negative counts from the end). */
static mq_status split_prepare(const mq_op_ctx *ctx, const mq_tensor *in, const mq_tensor *axis,
                               int equal_pieces, int32_t *axis_out)
{
    int64_t total = 0;
    int32_t a;
    uint32_t i;
    uint8_t d;
    mq_status s;

    if (in == NULL || axis == NULL || ctx->noutputs < 1) return MQ_ERR_MALFORMED;
    if (in->type != MQ_INT8) return MQ_ERR_UNSUPPORTED_TYPE;
    if ((s = mq_check_dims_positive(in)) != MQ_OK) return s;
    if (axis->type != MQ_INT32) return MQ_ERR_UNSUPPORTED_TYPE;
    if (!axis->is_constant || axis->data == NULL) return MQ_ERR_UNSUPPORTED_OPTION; /* as TFLM */
    if (mq_tensor_elements(axis) != 1) return MQ_ERR_SHAPE;
    a = mq_load_i32(axis->data, 0);
    if (a < 0) a += (int32_t)in->ndims;
    if (a < 0 || a >= (int32_t)in->ndims) return MQ_ERR_SHAPE;

    for (i = 0; i < ctx->noutputs; ++i) {
        const mq_tensor *out = ctx->outputs[i];
        if (out == NULL) return MQ_ERR_MALFORMED;
        if (out->type != MQ_INT8) return MQ_ERR_UNSUPPORTED_TYPE;
        if (out->ndims != in->ndims || out->dims[a] < 1) return MQ_ERR_SHAPE;
        for (d = 0; d < in->ndims; ++d) {
            if (d != a && out->dims[d] != in->dims[d]) return MQ_ERR_SHAPE;
        }
        if (equal_pieces && out->dims[a] != ctx->outputs[0]->dims[a]) return MQ_ERR_SHAPE;
        total += out->dims[a];
    }
    if (total != in->dims[a]) return MQ_ERR_SHAPE;
    *axis_out = a;
    return MQ_OK;
}

static void split_run(const mq_op_ctx *ctx, const mq_tensor *in, int32_t axis)
{
    const int8_t *x = (const int8_t *)in->data;
    uint32_t outer = 1, inner = 1, k, i;
    int32_t d;
    for (d = 0; d < axis; ++d) outer *= (uint32_t)in->dims[d];
    for (d = axis + 1; d < (int32_t)in->ndims; ++d) inner *= (uint32_t)in->dims[d];
    for (k = 0; k < outer; ++k) {
        for (i = 0; i < ctx->noutputs; ++i) {
            const uint32_t n = (uint32_t)ctx->outputs[i]->dims[axis] * inner;
            memcpy((int8_t *)ctx->outputs[i]->data + (size_t)k * n, x, n);
            x += n;
        }
    }
}

/* SPLIT (split_v = 0) or SPLIT_V (split_v = 1): its input and resolved axis. */
static mq_status operands(const mq_op_ctx *ctx, int split_v, const mq_tensor **in, int32_t *axis)
{
    if (ctx->ninputs != (split_v ? 3u : 2u)) return MQ_ERR_MALFORMED;
    *in = ctx->inputs[split_v ? 0 : 1];
    return split_prepare(ctx, *in, ctx->inputs[split_v ? 2 : 0], !split_v, axis);
}

static mq_status split_eval(const mq_op_ctx *ctx, int split_v)
{
    const mq_tensor *in;
    int32_t axis;
    const mq_status s = operands(ctx, split_v, &in, &axis);
    if (s == MQ_OK) split_run(ctx, in, axis);
    return s;
}

mq_status mq_check_split(const mq_op_ctx *ctx)
{
    const mq_tensor *in;
    int32_t axis;
    return operands(ctx, 0, &in, &axis);
}

mq_status mq_eval_split(const mq_op_ctx *ctx)
{
    return split_eval(ctx, 0);
}

mq_status mq_check_split_v(const mq_op_ctx *ctx)
{
    const mq_tensor *in;
    int32_t axis;
    return operands(ctx, 1, &in, &axis);
}

mq_status mq_eval_split_v(const mq_op_ctx *ctx)
{
    return split_eval(ctx, 1);
}
