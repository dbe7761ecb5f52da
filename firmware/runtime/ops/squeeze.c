/*
 * SQUEEZE: removes dimensions of size 1, those listed in the options (squeeze_dims, negative
 * counting from the end, each of size 1; at most 8, as TFLM's parser) or, with an empty list,
 * all of them. The data is copied unchanged; any element type, input and output alike. TFLM
 * only checks that the output is large enough; here it must have exactly the remaining
 * dimensions.
 */
#include <string.h>

#include "mq_op_util.h"

#define SQUEEZE_MAX_DIMS 8

mq_status mq_check_squeeze(const mq_op_ctx *ctx)
{
    const mq_op_options *o = ctx->options;
    const mq_tensor *in, *out;
    int squeeze[MQ_MAX_DIMS] = {0};
    int32_t i, kept = 0;
    if (ctx->ninputs != 1 || ctx->noutputs != 1 || o == NULL) return MQ_ERR_MALFORMED;
    in = ctx->inputs[0];
    out = ctx->outputs[0];
    if (in == NULL || out == NULL) return MQ_ERR_MALFORMED;
    if (in->type != out->type) return MQ_ERR_UNSUPPORTED_TYPE;
    if (o->nsqueeze_dims > SQUEEZE_MAX_DIMS) return MQ_ERR_UNSUPPORTED_OPTION;

    for (i = 0; i < (int32_t)in->ndims; ++i) squeeze[i] = o->nsqueeze_dims == 0 && in->dims[i] == 1;
    for (i = 0; i < (int32_t)o->nsqueeze_dims; ++i) {
        int32_t d = mq_load_i32(o->squeeze_dims, (uint32_t)i);
        if (d < 0) d += (int32_t)in->ndims;
        if (d < 0 || d >= (int32_t)in->ndims || in->dims[d] != 1) return MQ_ERR_SHAPE;
        squeeze[d] = 1;
    }
    for (i = 0; i < (int32_t)in->ndims; ++i) {
        if (squeeze[i]) continue;
        if (kept >= (int32_t)out->ndims || out->dims[kept] != in->dims[i]) return MQ_ERR_SHAPE;
        ++kept;
    }
    return kept == (int32_t)out->ndims && in->bytes == out->bytes ? MQ_OK : MQ_ERR_SHAPE;
}

mq_status mq_eval_squeeze(const mq_op_ctx *ctx)
{
    const mq_tensor *in = ctx->inputs[0];
    mq_tensor *out = ctx->outputs[0];
    if (in->bytes != 0 && out->data != in->data) memcpy(out->data, in->data, in->bytes);
    return MQ_OK;
}

/* The data is unchanged: the output may take the input's memory (then nothing is copied). */
int32_t mq_in_place_squeeze(const mq_op_ctx *ctx)
{
    (void)ctx;
    return 0;
}
