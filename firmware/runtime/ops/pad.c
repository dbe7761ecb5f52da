/*
 * PAD (and its PADV2 form with a third, constant-value input) for int8 tensors of rank <= 5.
 *
 * The paddings input is a constant int32 or int64 tensor of 2 x rank values (before, after per
 * dimension, each >= 0). The fill value is the output's zero point, or the constant-value input,
 * which TFLM requires to share the output's scale and zero point. Like TFLM, the input and output
 * quantization are not compared: bytes are copied unchanged.
 */
#include <string.h>

#include "../mq_ops.h"

#define MQ_PAD_MAX_RANK 5

/* Padding k (dimension k / 2, before when k is even, after when odd), any supported width. */
static int64_t padding_at(const mq_tensor *paddings, uint32_t k)
{
    if (paddings->type == MQ_INT64) {
        int64_t v;
        memcpy(&v, (const uint8_t *)paddings->data + 8u * (size_t)k, sizeof v);
        return v;
    }
    int32_t v;
    memcpy(&v, (const uint8_t *)paddings->data + 4u * (size_t)k, sizeof v);
    return v;
}

mq_status mq_check_pad(const mq_op_ctx *ctx)
{
    if ((ctx->ninputs != 2 && ctx->ninputs != 3) || ctx->noutputs != 1) return MQ_ERR_MALFORMED;
    const mq_tensor *in = ctx->inputs[0];
    const mq_tensor *paddings = ctx->inputs[1];
    const mq_tensor *value = ctx->ninputs == 3 ? ctx->inputs[2] : NULL;
    const mq_tensor *out = ctx->outputs[0];
    if (in == NULL || paddings == NULL) return MQ_ERR_MALFORMED;
    if (in->type != MQ_INT8 || out->type != MQ_INT8) return MQ_ERR_UNSUPPORTED_TYPE;
    if (in->ndims > MQ_PAD_MAX_RANK || out->ndims != in->ndims) return MQ_ERR_SHAPE;

    if (!paddings->is_constant) return MQ_ERR_UNSUPPORTED_OPTION; /* as TFLM: sizes fixed at load */
    if (paddings->type != MQ_INT32 && paddings->type != MQ_INT64) return MQ_ERR_UNSUPPORTED_TYPE;
    if (mq_tensor_elements(paddings) != 2u * out->ndims) return MQ_ERR_SHAPE;
    for (uint32_t d = 0; d < out->ndims; ++d) {
        const int64_t before = padding_at(paddings, 2u * d), after = padding_at(paddings, 2u * d + 1u);
        if (before < 0 || after < 0 || before > INT32_MAX || after > INT32_MAX) return MQ_ERR_UNSUPPORTED_OPTION;
        if ((int64_t)in->dims[d] + before + after != out->dims[d]) return MQ_ERR_SHAPE;
    }

    if (value == NULL) {
        /* The fill value is the output zero point: it must be an int8 value. */
        if (out->zero_point < -128 || out->zero_point > 127) return MQ_ERR_QUANTIZATION;
    } else {
        if (value->type != MQ_INT8) return MQ_ERR_UNSUPPORTED_TYPE;
        if (mq_tensor_elements(value) != 1) return MQ_ERR_SHAPE;
        if (value->zero_point != out->zero_point || (double)value->scale != (double)out->scale)
            return MQ_ERR_QUANTIZATION;
    }
    return MQ_OK;
}

mq_status mq_eval_pad(const mq_op_ctx *ctx)
{
    const mq_tensor *in = ctx->inputs[0];
    const mq_tensor *paddings = ctx->inputs[1];
    const mq_tensor *value = ctx->ninputs == 3 ? ctx->inputs[2] : NULL;
    const mq_tensor *out = ctx->outputs[0];
    if (out->bytes == 0) return MQ_OK;
    const int8_t fill = value != NULL ? *(const int8_t *)value->data : (int8_t)out->zero_point;

    /* Shapes extended to MQ_PAD_MAX_RANK with leading 1s (padding 0). */
    enum { R = MQ_PAD_MAX_RANK };
    int32_t in_dims[R], out_dims[R], before[R];
    uint32_t in_stride[R];
    const uint32_t lead = R - (uint32_t)out->ndims;
    for (uint32_t d = 0; d < R; ++d) {
        in_dims[d] = d < lead ? 1 : in->dims[d - lead];
        out_dims[d] = d < lead ? 1 : out->dims[d - lead];
        before[d] = d < lead ? 0 : (int32_t)padding_at(paddings, 2u * (d - lead));
    }
    in_stride[R - 1] = 1;
    for (uint32_t d = R - 1; d > 0; --d) in_stride[d - 1] = in_stride[d] * (uint32_t)in_dims[d];

    /* One innermost row at a time; idx counts the outer coordinates like an odometer. */
    const size_t row = (size_t)out_dims[R - 1];
    const size_t left = (size_t)before[R - 1], copy = (size_t)in_dims[R - 1];
    const int8_t *src = (const int8_t *)in->data;
    int8_t *dst = (int8_t *)out->data;
    int32_t idx[R - 1] = {0};
    const uint32_t rows = out->bytes / (uint32_t)row;
    for (uint32_t r = 0; r < rows; ++r, dst += row) {
        int inside = 1;
        size_t offset = 0;
        for (uint32_t d = 0; d < R - 1; ++d) {
            const int32_t i = idx[d] - before[d];
            if (i < 0 || i >= in_dims[d]) {
                inside = 0;
                break;
            }
            offset += (size_t)i * in_stride[d];
        }
        if (!inside) {
            memset(dst, (unsigned char)fill, row);
        } else {
            memset(dst, (unsigned char)fill, left);
            if (copy != 0) memcpy(dst + left, src + offset, copy);
            memset(dst + left + copy, (unsigned char)fill, row - left - copy);
        }
        for (uint32_t d = R - 1; d-- > 0;) {
            if (++idx[d] < out_dims[d]) break;
            idx[d] = 0;
        }
    }
    return MQ_OK;
}
