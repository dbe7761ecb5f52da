/*
 * CONCATENATION of int8 tensors along any axis (negative axes count from the end).
 *
 * As TFLM requires for int8: no fused activation, at most 10 inputs, and every input with the
 * output's exact scale and zero point (the kernel copies bytes, it never requantizes).
 */
#include <string.h>

#include "../mq_ops.h"

#define MQ_CONCAT_MAX_INPUTS 10

/* The axis option, counted from the front (at mq_init: eval() reads it from ctx->prepared). */
static int32_t positive_axis(const mq_op_ctx *ctx)
{
    const int32_t axis = ctx->options->axis;
    return axis < 0 ? axis + (int32_t)ctx->outputs[0]->ndims : axis;
}

mq_status mq_prepare_concatenation(const mq_op_ctx *ctx, uint8_t *out, uint32_t *bytes)
{
    const int32_t axis = positive_axis(ctx);
    *bytes = (uint32_t)sizeof axis;
    if (out != NULL) memcpy(out, &axis, sizeof axis);
    return MQ_OK;
}

mq_status mq_check_concatenation(const mq_op_ctx *ctx)
{
    if (ctx->ninputs < 1 || ctx->ninputs > MQ_CONCAT_MAX_INPUTS || ctx->noutputs != 1) return MQ_ERR_MALFORMED;
    if (ctx->options->activation != MQ_ACT_NONE) return MQ_ERR_UNSUPPORTED_OPTION;
    const mq_tensor *out = ctx->outputs[0];
    if (out->type != MQ_INT8) return MQ_ERR_UNSUPPORTED_TYPE;
    const int32_t axis = positive_axis(ctx);
    if (axis < 0 || axis >= (int32_t)out->ndims) return MQ_ERR_SHAPE;

    int64_t axis_total = 0;
    for (uint32_t i = 0; i < ctx->ninputs; ++i) {
        const mq_tensor *in = ctx->inputs[i];
        if (in == NULL) return MQ_ERR_MALFORMED;
        if (in->type != MQ_INT8) return MQ_ERR_UNSUPPORTED_TYPE;
        if (in->ndims != out->ndims) return MQ_ERR_SHAPE;
        for (int32_t d = 0; d < (int32_t)out->ndims; ++d)
            if (d != axis && in->dims[d] != out->dims[d]) return MQ_ERR_SHAPE;
        axis_total += in->dims[axis];
        /* Compared as TFLM does: the float scales widened to double, so NaN never matches. */
        if ((double)in->scale != (double)out->scale || in->zero_point != out->zero_point)
            return MQ_ERR_QUANTIZATION;
    }
    if (axis_total != out->dims[axis]) return MQ_ERR_SHAPE;
    return MQ_OK;
}

mq_status mq_eval_concatenation(const mq_op_ctx *ctx)
{
    const mq_tensor *out = ctx->outputs[0];
    const int32_t axis = *(const int32_t *)(const void *)ctx->prepared;
    /* Checked: every dimension outside the axis matches the output, so sizes are products of its dims. */
    uint32_t outer = 1, inner = 1;
    for (int32_t d = 0; d < axis; ++d) outer *= (uint32_t)out->dims[d];
    for (int32_t d = axis + 1; d < (int32_t)out->ndims; ++d) inner *= (uint32_t)out->dims[d];
    if (out->bytes == 0) return MQ_OK;

    int8_t *dst = (int8_t *)out->data;
    for (uint32_t o = 0; o < outer; ++o) {
        for (uint32_t i = 0; i < ctx->ninputs; ++i) {
            const mq_tensor *in = ctx->inputs[i];
            const size_t chunk = (size_t)in->dims[axis] * inner;
            memcpy(dst, (const int8_t *)in->data + (size_t)o * chunk, chunk);
            dst += chunk;
        }
    }
    return MQ_OK;
}
