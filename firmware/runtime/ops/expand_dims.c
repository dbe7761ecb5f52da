/*
 * EXPAND_DIMS: inserts a dimension of size 1 at a constant int32 axis (negative counts from the
 * end, -1 appends); the data is copied unchanged. As TFLM: int8 or float32 (int16 too there,
 * which this runtime has no use for), the axis a constant of one element, and the output shape
 * exactly the input's with the new dimension.
 */
#include <string.h>

#include "mq_op_util.h"

mq_status mq_check_expand_dims(const mq_op_ctx *ctx)
{
    const mq_tensor *in, *axis, *out;
    int32_t a, i;
    if (ctx->ninputs != 2 || ctx->noutputs != 1) return MQ_ERR_MALFORMED;
    in = ctx->inputs[0];
    axis = ctx->inputs[1];
    out = ctx->outputs[0];
    if (in == NULL || axis == NULL || out == NULL) return MQ_ERR_MALFORMED;
    if ((in->type != MQ_INT8 && in->type != MQ_FLOAT32) || out->type != in->type) return MQ_ERR_UNSUPPORTED_TYPE;
    if (axis->type != MQ_INT32) return MQ_ERR_UNSUPPORTED_TYPE;
    if (!axis->is_constant || axis->data == NULL) return MQ_ERR_UNSUPPORTED_OPTION;
    if (axis->ndims > 1 || mq_tensor_elements(axis) != 1) return MQ_ERR_SHAPE;

    a = mq_load_i32(axis->data, 0);
    if (a < 0) a += (int32_t)in->ndims + 1;
    if (a < 0 || a > (int32_t)in->ndims) return MQ_ERR_SHAPE;
    if (out->ndims != in->ndims + 1) return MQ_ERR_SHAPE;
    for (i = 0; i < (int32_t)out->ndims; ++i) {
        const int32_t want = i < a ? in->dims[i] : (i == a ? 1 : in->dims[i - 1]);
        if (out->dims[i] != want) return MQ_ERR_SHAPE;
    }
    return MQ_OK;
}

mq_status mq_eval_expand_dims(const mq_op_ctx *ctx)
{
    const mq_tensor *in = ctx->inputs[0];
    mq_tensor *out = ctx->outputs[0];
    if (in->bytes != 0 && out->data != in->data) memcpy(out->data, in->data, in->bytes);
    return MQ_OK;
}

/* The data is unchanged: the output may take the input's memory (then nothing is copied). */
int32_t mq_in_place_expand_dims(const mq_op_ctx *ctx)
{
    (void)ctx;
    return 0;
}
