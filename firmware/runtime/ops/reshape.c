/*
 * RESHAPE: the output tensor's shape comes from the model (the converter resolves -1 and the
 * optional shape input ahead of time, and TFLM reads the shape from the output tensor too);
 * the data is copied unchanged. Any element type, as long as input and output agree. When the
 * planner lets the output take the input's memory (mq_in_place_reshape) there is nothing to copy.
 */
#include <string.h>

#include "../mq_ops.h"

mq_status mq_check_reshape(const mq_op_ctx *ctx)
{
    if ((ctx->ninputs != 1 && ctx->ninputs != 2) || ctx->noutputs != 1) return MQ_ERR_MALFORMED;
    const mq_tensor *in = ctx->inputs[0];
    const mq_tensor *out = ctx->outputs[0];
    if (in == NULL) return MQ_ERR_MALFORMED;
    if (in->type != out->type) return MQ_ERR_UNSUPPORTED_TYPE;
    /* Same type, so equal byte counts mean equal element counts. */
    if (in->bytes != out->bytes) return MQ_ERR_SHAPE;
    return MQ_OK;
}

mq_status mq_eval_reshape(const mq_op_ctx *ctx)
{
    const mq_tensor *in = ctx->inputs[0];
    mq_tensor *out = ctx->outputs[0];
    if (in->bytes != 0 && out->data != in->data) memcpy(out->data, in->data, in->bytes);
    return MQ_OK;
}

int32_t mq_in_place_reshape(const mq_op_ctx *ctx)
{
    (void)ctx;
    return 0;
}
