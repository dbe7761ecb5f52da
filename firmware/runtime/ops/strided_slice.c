/*
 * STRIDED_SLICE, int8, input rank <= 4 (TFLM's limit), with constant int32 begin, end and
 * strides (one value per input dimension) and the begin, end and shrink-axis masks. As TFLM:
 * the ellipsis and new-axis masks and the offset option are ignored; per axis a negative index
 * counts from the end, then begin and end are clamped to [0, size] ([-1, size - 1] for a negative
 * stride), a masked begin / end takes the whole axis, and a shrunk axis takes the single element
 * at begin and disappears from the output. The output shape must be the sliced one, as TFLM
 * checks (it computes each size as ceil((end - begin) / (float)stride); the exact count must
 * agree). Values are copied unchanged.
 *
 * Where TFLM's preparation and evaluation disagree (a shrunk axis with a negative stride or a
 * begin past the end: TFLM then writes nothing), the slice is rejected.
 *
 * The slice depends on the model only (constant begin, end and strides): prepare() turns it into
 * a walk over the input (slice_walk) once, at mq_init (TFLM's size check there is in double), and
 * eval() follows it from ctx->prepared.
 */
#include <math.h>

#include "mq_op_util.h"

#define SLICE_MAX_RANK 4

typedef struct slice_params {
    int32_t rank;
    int32_t start[SLICE_MAX_RANK], stride[SLICE_MAX_RANK], count[SLICE_MAX_RANK];
    uint32_t in_stride[SLICE_MAX_RANK];
} slice_params;

/* The prepared form: the input offset of the first element, and per axis the number of elements
 * taken and the input offset step between them (modulo 2^32: a negative stride steps back). */
typedef struct slice_walk {
    int32_t rank;
    uint32_t first;
    uint32_t step[SLICE_MAX_RANK];
    int32_t count[SLICE_MAX_RANK];
} slice_walk;

static int32_t clamp_index(int32_t v, int32_t size, int32_t stride)
{
    if (v < 0) v += size; /* v >= INT32_MIN and size > 0: no overflow */
    return stride > 0 ? mq_clamp(v, 0, size) : mq_clamp(v, -1, size - 1);
}

/* A constant int32 vector with one value per input dimension. */
static mq_status check_indices(const mq_tensor *t, uint8_t rank)
{
    if (t == NULL) return MQ_ERR_MALFORMED;
    if (t->type != MQ_INT32) return MQ_ERR_UNSUPPORTED_TYPE;
    if (!t->is_constant || t->data == NULL) return MQ_ERR_UNSUPPORTED_OPTION; /* as TFLM */
    return mq_tensor_elements(t) == rank ? MQ_OK : MQ_ERR_SHAPE;
}

static mq_status slice_prepare(const mq_op_ctx *ctx, slice_params *p)
{
    const mq_op_options *o = ctx->options;
    const mq_tensor *in, *out;
    int32_t d, out_rank = 0;
    mq_status s;

    if (ctx->ninputs != 4 || ctx->noutputs != 1 || o == NULL) return MQ_ERR_MALFORMED;
    in = ctx->inputs[0];
    out = ctx->outputs[0];
    if (in == NULL || out == NULL) return MQ_ERR_MALFORMED;
    if (in->type != MQ_INT8 || out->type != MQ_INT8) return MQ_ERR_UNSUPPORTED_TYPE;
    if (in->ndims > SLICE_MAX_RANK) return MQ_ERR_SHAPE;
    if ((s = mq_check_dims_positive(in)) != MQ_OK) return s;
    for (d = 1; d <= 3; ++d) {
        if ((s = check_indices(ctx->inputs[d], in->ndims)) != MQ_OK) return s;
    }

    p->rank = in->ndims;
    for (d = p->rank - 1; d >= 0; --d) {
        p->in_stride[d] = d == p->rank - 1 ? 1u : p->in_stride[d + 1] * (uint32_t)in->dims[d + 1];
    }
    for (d = 0; d < p->rank; ++d) {
        const int32_t size = in->dims[d];
        const int32_t stride = mq_load_i32(ctx->inputs[3]->data, (uint32_t)d);
        const uint32_t bit = 1u << d;
        int32_t start, end;
        int64_t count;
        if (stride == 0) return MQ_ERR_UNSUPPORTED_OPTION;
        start = clamp_index(mq_load_i32(ctx->inputs[1]->data, (uint32_t)d), size, stride);
        if ((uint32_t)o->begin_mask & bit) start = stride > 0 ? 0 : size - 1;
        p->start[d] = start;
        p->stride[d] = stride;
        if ((uint32_t)o->shrink_axis_mask & bit) {
            if (stride < 0 || start >= size) return MQ_ERR_UNSUPPORTED_OPTION;
            p->count[d] = 1;
            continue;
        }
        end = clamp_index(mq_load_i32(ctx->inputs[2]->data, (uint32_t)d), size, stride);
        if ((uint32_t)o->end_mask & bit) end = stride > 0 ? size : -1;
        count = stride > 0 ? ((int64_t)end - start + stride - 1) / stride
                           : ((int64_t)start - end - stride - 1) / -(int64_t)stride;
        if (count < 1) return MQ_ERR_SHAPE; /* an empty output */
        /* TFLM's own size check, in float. */
        if ((double)ceilf((float)(end - start) / (float)stride) != (double)count) return MQ_ERR_SHAPE;
        if (out_rank >= (int32_t)out->ndims || out->dims[out_rank] != count) return MQ_ERR_SHAPE;
        p->count[d] = (int32_t)count;
        ++out_rank;
    }
    return out_rank == (int32_t)out->ndims ? MQ_OK : MQ_ERR_SHAPE;
}

mq_status mq_check_strided_slice(const mq_op_ctx *ctx)
{
    slice_params p;
    return slice_prepare(ctx, &p);
}

mq_status mq_prepare_strided_slice(const mq_op_ctx *ctx, uint8_t *out, uint32_t *bytes)
{
    slice_walk *walk = (slice_walk *)(void *)out;
    slice_params p;
    int32_t d;
    mq_status s;
    *bytes = (uint32_t)sizeof(slice_walk);
    if (out == NULL) return MQ_OK;
    if ((s = slice_prepare(ctx, &p)) != MQ_OK) return s;
    memset(walk, 0, sizeof *walk);
    walk->rank = p.rank;
    for (d = 0; d < p.rank; ++d) {
        /* every start is inside its axis: the first offset is exact; the steps wrap as intended */
        walk->first += (uint32_t)p.start[d] * p.in_stride[d];
        walk->step[d] = (uint32_t)p.stride[d] * p.in_stride[d];
        walk->count[d] = p.count[d];
    }
    return MQ_OK;
}

mq_status mq_eval_strided_slice(const mq_op_ctx *ctx)
{
    const int8_t *x = (const int8_t *)ctx->inputs[0]->data;
    int8_t *y = (int8_t *)ctx->outputs[0]->data;
    const slice_walk *walk = (const slice_walk *)(const void *)ctx->prepared;
    int32_t k[SLICE_MAX_RANK] = {0};
    uint32_t dst = 0;
    int32_t d;

    /* The output in order (odometer over the slice); every index lies inside its axis. */
    for (;;) {
        uint32_t src = walk->first;
        for (d = 0; d < walk->rank; ++d) src += (uint32_t)k[d] * walk->step[d];
        y[dst++] = x[src];
        for (d = walk->rank - 1; d >= 0; --d) {
            if (++k[d] < walk->count[d]) break;
            k[d] = 0;
        }
        if (d < 0) return MQ_OK;
    }
}
