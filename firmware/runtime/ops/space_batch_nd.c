/*
 * SPACE_TO_BATCH_ND and BATCH_TO_SPACE_ND, int8, rank 3 ([N, H, C], treated as [N, H, 1, C]) or
 * 4 ([N, H, W, C]), as TFLM's reference kernels. The converter emits them around a dilated
 * convolution (e.g. a dilated Conv1D with a dynamic batch): SPACE_TO_BATCH_ND pads the spatial
 * axes and moves each of the block_h x block_w phases into its own batch entry, BATCH_TO_SPACE_ND
 * interleaves them back and crops.
 *
 * block_shape (one value per spatial axis, >= 1) and paddings / crops (before, after per spatial
 * axis, >= 0; paddings 0, see below) are constant int32 tensors. TFLM checks only ranks and
 * types and trusts the shapes; here the output shape must be the one these values imply
 * (anything else would make TFLM read or write out of bounds). Values are moved unchanged.
 *
 * SPACE_TO_BATCH_ND with non-zero paddings is rejected: TFLM fills padded positions with a pad
 * value it never initializes (SpaceToBatchParams.output_offset, whatever its arena block held:
 * measured 0 in a fresh interpreter, the previous model's bytes in a reused one), so no device can
 * be byte-identical with it there. The converter pads a dilated convolution with SAME padding
 * this way; with VALID or causal padding the paddings are zero.
 */
#include <string.h>

#include "mq_op_util.h"

typedef struct space_params {
    int32_t block_h, block_w;
    int32_t before_h, before_w; /* SPACE_TO_BATCH_ND: padding; BATCH_TO_SPACE_ND: crop */
    int32_t in_dims[4], out_dims[4]; /* as [N, H, W, C] */
} space_params;

/* [N, H, C] as [N, H, 1, C]. */
static void as_4d(const mq_tensor *t, int32_t *dims)
{
    dims[0] = t->dims[0];
    dims[1] = t->dims[1];
    dims[2] = t->ndims == 4 ? t->dims[2] : 1;
    dims[3] = t->dims[t->ndims - 1];
}

/* A constant int32 tensor of n elements, each >= lo. */
static mq_status constant_values(const mq_tensor *t, uint32_t n, int32_t lo)
{
    uint32_t i;
    if (t == NULL) return MQ_ERR_MALFORMED;
    if (t->type != MQ_INT32) return MQ_ERR_UNSUPPORTED_TYPE;
    if (!t->is_constant || t->data == NULL) return MQ_ERR_UNSUPPORTED_OPTION;
    if (mq_tensor_elements(t) != n) return MQ_ERR_SHAPE;
    for (i = 0; i < n; ++i) {
        if (mq_load_i32(t->data, i) < lo) return MQ_ERR_UNSUPPORTED_OPTION;
    }
    return MQ_OK;
}

/*
 * Operands and parameters; `to_batch` selects SPACE_TO_BATCH_ND. The spatial side is the input
 * of SPACE_TO_BATCH_ND and the output of BATCH_TO_SPACE_ND; the batch side the other one.
 */
static mq_status space_prepare(const mq_op_ctx *ctx, int to_batch, space_params *p)
{
    const mq_tensor *in, *block, *pads, *out;
    const int32_t *space, *batch;
    int64_t padded_h, padded_w;
    int32_t after_h, after_w, spatial;
    mq_status s;

    if (ctx->ninputs != 3 || ctx->noutputs != 1) return MQ_ERR_MALFORMED;
    in = ctx->inputs[0];
    block = ctx->inputs[1];
    pads = ctx->inputs[2];
    out = ctx->outputs[0];
    if (in == NULL || out == NULL) return MQ_ERR_MALFORMED;
    if (in->type != MQ_INT8 || out->type != MQ_INT8) return MQ_ERR_UNSUPPORTED_TYPE;
    if (in->ndims < 3 || in->ndims > 4 || out->ndims != in->ndims) return MQ_ERR_SHAPE;
    if ((s = mq_check_dims_positive(in)) != MQ_OK) return s;
    if ((s = mq_check_dims_positive(out)) != MQ_OK) return s;
    spatial = in->ndims - 2;
    if ((s = constant_values(block, (uint32_t)spatial, 1)) != MQ_OK) return s;
    if ((s = constant_values(pads, 2u * (uint32_t)spatial, 0)) != MQ_OK) return s;

    p->block_h = mq_load_i32(block->data, 0);
    p->block_w = spatial == 2 ? mq_load_i32(block->data, 1) : 1;
    p->before_h = mq_load_i32(pads->data, 0);
    after_h = mq_load_i32(pads->data, 1);
    p->before_w = spatial == 2 ? mq_load_i32(pads->data, 2) : 0;
    after_w = spatial == 2 ? mq_load_i32(pads->data, 3) : 0;
    if (to_batch && (p->before_h | after_h | p->before_w | after_w) != 0) return MQ_ERR_UNSUPPORTED_OPTION;
    as_4d(in, p->in_dims);
    as_4d(out, p->out_dims);
    space = to_batch ? p->in_dims : p->out_dims;
    batch = to_batch ? p->out_dims : p->in_dims;

    /* The spatial side padded (or uncropped) is the batch side's spatial size times the block. */
    padded_h = (int64_t)space[1] + p->before_h + after_h;
    padded_w = (int64_t)space[2] + p->before_w + after_w;
    if (padded_h != (int64_t)batch[1] * p->block_h || padded_w != (int64_t)batch[2] * p->block_w) return MQ_ERR_SHAPE;
    /* Spatial coordinates (up to the padded size) and phases are computed in int32. */
    if (padded_h > INT32_MAX || padded_w > INT32_MAX) return MQ_ERR_LIMIT;
    if ((int64_t)p->block_h * p->block_w > batch[0] ||
        (int64_t)batch[0] != (int64_t)space[0] * p->block_h * p->block_w)
        return MQ_ERR_SHAPE;
    return batch[3] == space[3] ? MQ_OK : MQ_ERR_SHAPE;
}

mq_status mq_check_space_to_batch_nd(const mq_op_ctx *ctx)
{
    space_params p;
    return space_prepare(ctx, 1, &p);
}

mq_status mq_check_batch_to_space_nd(const mq_op_ctx *ctx)
{
    space_params p;
    return space_prepare(ctx, 0, &p);
}

mq_status mq_eval_space_to_batch_nd(const mq_op_ctx *ctx)
{
    const int8_t *x = (const int8_t *)ctx->inputs[0]->data;
    int8_t *y = (int8_t *)ctx->outputs[0]->data;
    space_params p;
    int32_t ob, oh, ow;
    const mq_status s = space_prepare(ctx, 1, &p);
    if (s != MQ_OK) return s;

    /* Without padding every output position maps to an input position. */
    for (ob = 0; ob < p.out_dims[0]; ++ob) {
        const int32_t b = ob % p.in_dims[0], phase = ob / p.in_dims[0];
        const int32_t shift_h = phase / p.block_w, shift_w = phase % p.block_w;
        for (oh = 0; oh < p.out_dims[1]; ++oh) {
            for (ow = 0; ow < p.out_dims[2]; ++ow) {
                memcpy(y + mq_offset4(p.out_dims, ob, oh, ow, 0),
                       x + mq_offset4(p.in_dims, b, oh * p.block_h + shift_h, ow * p.block_w + shift_w, 0),
                       (size_t)p.in_dims[3]);
            }
        }
    }
    return MQ_OK;
}

mq_status mq_eval_batch_to_space_nd(const mq_op_ctx *ctx)
{
    const int8_t *x = (const int8_t *)ctx->inputs[0]->data;
    int8_t *y = (int8_t *)ctx->outputs[0]->data;
    space_params p;
    int32_t ib, ih, iw;
    const mq_status s = space_prepare(ctx, 0, &p);
    if (s != MQ_OK) return s;

    for (ib = 0; ib < p.in_dims[0]; ++ib) {
        const int32_t b = ib % p.out_dims[0], phase = ib / p.out_dims[0];
        for (ih = 0; ih < p.in_dims[1]; ++ih) {
            const int32_t h = ih * p.block_h + phase / p.block_w - p.before_h;
            if (h < 0 || h >= p.out_dims[1]) continue;
            for (iw = 0; iw < p.in_dims[2]; ++iw) {
                const int32_t w = iw * p.block_w + phase % p.block_w - p.before_w;
                if (w < 0 || w >= p.out_dims[2]) continue;
                memcpy(y + mq_offset4(p.out_dims, b, h, w, 0), x + mq_offset4(p.in_dims, ib, ih, iw, 0),
                       (size_t)p.in_dims[3]);
            }
        }
    }
    return MQ_OK;
}
