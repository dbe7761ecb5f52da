/* Helpers shared by the operator modules; see mq_op_util.h. */
#include "mq_op_util.h"

#include <float.h>
#include <math.h>

#include "../mq_fixedpoint.h"

int mq_scale_ok(float s)
{
    return s > 0.0f && s <= FLT_MAX;
}

mq_status mq_check_dims_positive(const mq_tensor *t)
{
    uint64_t elements = 1;
    uint8_t i;
    if (t->ndims > MQ_MAX_DIMS) return MQ_ERR_SHAPE;
    for (i = 0; i < t->ndims; ++i) {
        if (t->dims[i] < 1) return MQ_ERR_SHAPE;
        elements *= (uint64_t)t->dims[i];
        /* Kernels index with int32: keep every element count (hence offset) below 2^31. */
        if (elements > (uint64_t)INT32_MAX) return MQ_ERR_LIMIT;
    }
    return MQ_OK;
}

mq_status mq_check_rank_positive(const mq_tensor *t, uint8_t rank)
{
    if (t->ndims != rank) return MQ_ERR_SHAPE;
    return mq_check_dims_positive(t);
}

mq_status mq_check_int8_activation(const mq_tensor *t)
{
    if (t->type != MQ_INT8) return MQ_ERR_UNSUPPORTED_TYPE;
    /* Activations are quantized per tensor; TFLM reads only the first scale and zero point. */
    if (t->nscales != 1 || !mq_scale_ok(t->scale)) return MQ_ERR_QUANTIZATION;
    if (t->zero_point < MQ_INT8_MIN || t->zero_point > MQ_INT8_MAX) return MQ_ERR_QUANTIZATION;
    return mq_check_dims_positive(t);
}

mq_status mq_check_int8_weights(const mq_tensor *w, uint8_t channel_dim)
{
    uint32_t i;
    if (w->type != MQ_INT8) return MQ_ERR_UNSUPPORTED_TYPE;
    if (channel_dim >= w->ndims) return MQ_ERR_SHAPE;
    if (w->nscales == 0) return MQ_ERR_QUANTIZATION;
    if (w->nscales > 1) {
        const int32_t qdim = w->quantized_dimension;
        if ((int64_t)w->nscales != (int64_t)w->dims[channel_dim]) return MQ_ERR_QUANTIZATION;
        if (qdim < 0 || qdim >= (int32_t)w->ndims) return MQ_ERR_QUANTIZATION;
        if ((int64_t)w->dims[qdim] != (int64_t)w->nscales) return MQ_ERR_QUANTIZATION;
    }
    for (i = 0; i < w->nscales; ++i) {
        if (!mq_scale_ok(mq_tensor_scale_at(w, i))) return MQ_ERR_QUANTIZATION;
    }
    for (i = 0; i < w->nzero_points; ++i) {
        if (mq_tensor_zero_point_at(w, i) != 0) return MQ_ERR_QUANTIZATION;
    }
    return MQ_OK;
}

mq_status mq_check_bias(const mq_tensor *bias, int32_t channels)
{
    if (bias == NULL) return MQ_OK;
    if (bias->type != MQ_INT32) return MQ_ERR_UNSUPPORTED_TYPE;
    if (mq_check_dims_positive(bias) != MQ_OK) return MQ_ERR_SHAPE;
    if ((int64_t)mq_tensor_elements(bias) != (int64_t)channels) return MQ_ERR_SHAPE;
    return MQ_OK;
}

float mq_weight_scale(const mq_tensor *w, int32_t ch)
{
    return w->nscales > 1 ? mq_tensor_scale_at(w, (uint32_t)ch) : w->scale;
}

mq_status mq_checked_multiplier(double real, int32_t *multiplier, int *shift)
{
    mq_quantize_multiplier(real, multiplier, shift);
    return *shift > MQ_MAX_LEFT_SHIFT ? MQ_ERR_QUANTIZATION : MQ_OK;
}

mq_status mq_channel_multiplier(float input_scale, float filter_scale, float output_scale,
                                int32_t *multiplier, int *shift)
{
    /* All three in double, product first (TFLM's PopulateConvolutionQuantizationParams). */
    const double real = (double)input_scale * (double)filter_scale / (double)output_scale;
    return mq_checked_multiplier(real, multiplier, shift);
}

/* zero_point + round(value / scale) in float, as TFLM quantizes an activation bound. */
static mq_status quantize_bound(float value, const mq_tensor *output, int32_t *q)
{
    const float scaled = roundf(value / output->scale);
    /* TFLM rejects results outside [INT32_MIN, 2^31]; 2^31 itself would overflow its cast. */
    if (!(scaled >= -2147483648.0f && scaled < 2147483648.0f)) return MQ_ERR_QUANTIZATION;
    {
        const int64_t v = (int64_t)output->zero_point + (int64_t)(int32_t)scaled;
        /* Only compared with the int8 limits afterwards: saturating keeps the comparison exact. */
        *q = v > INT32_MAX ? INT32_MAX : (v < INT32_MIN ? INT32_MIN : (int32_t)v);
    }
    return MQ_OK;
}

mq_status mq_activation_range_int8(int32_t activation, const mq_tensor *output,
                                   int32_t *act_min, int32_t *act_max)
{
    int32_t q = 0;
    mq_status s = MQ_OK;
    *act_min = MQ_INT8_MIN;
    *act_max = MQ_INT8_MAX;
    switch (activation) {
    case MQ_ACT_NONE:
        return MQ_OK;
    case MQ_ACT_RELU:
        s = quantize_bound(0.0f, output, &q);
        if (s == MQ_OK && q > *act_min) *act_min = q;
        return s;
    case MQ_ACT_RELU6:
        s = quantize_bound(0.0f, output, &q);
        if (s != MQ_OK) return s;
        if (q > *act_min) *act_min = q;
        s = quantize_bound(6.0f, output, &q);
        if (s == MQ_OK && q < *act_max) *act_max = q;
        return s;
    case MQ_ACT_RELU_N1_TO_1:
        s = quantize_bound(-1.0f, output, &q);
        if (s != MQ_OK) return s;
        if (q > *act_min) *act_min = q;
        s = quantize_bound(1.0f, output, &q);
        if (s == MQ_OK && q < *act_max) *act_max = q;
        return s;
    default:
        /* TANH, SIGN_BIT (TFLM would silently not apply them) and unknown codes. */
        return MQ_ERR_UNSUPPORTED_OPTION;
    }
}

mq_status mq_window(int32_t padding, int32_t in_size, int32_t filter_size, int32_t stride,
                    int32_t dilation, int32_t *out_size, int32_t *pad_before)
{
    int64_t effective, out, total_pad;
    if (padding != MQ_PADDING_SAME && padding != MQ_PADDING_VALID) return MQ_ERR_UNSUPPORTED_OPTION;
    if (stride < 1 || dilation < 1 || filter_size < 1) return MQ_ERR_UNSUPPORTED_OPTION;
    /* TFLM's kernels keep strides, dilations and paddings in int16 fields (ConvParams,
     * DepthwiseParams, PaddingValues): larger values would be truncated there. */
    if (stride > INT16_MAX || dilation > INT16_MAX) return MQ_ERR_UNSUPPORTED_OPTION;
    if (in_size < 1) return MQ_ERR_SHAPE;
    effective = ((int64_t)filter_size - 1) * dilation + 1;
    if (padding == MQ_PADDING_SAME) {
        out = ((int64_t)in_size + stride - 1) / stride;
    } else {
        /* C division truncates toward zero like TFLM's; a negative or zero result is empty. */
        out = ((int64_t)in_size + stride - effective) / stride;
    }
    if (out < 1) return MQ_ERR_SHAPE;
    total_pad = (out - 1) * stride + effective - in_size;
    if (total_pad < 0) total_pad = 0;
    /* Kernels compute out * stride - pad + dilation * k and in_size - origin in int32: keep every
     * such value (bounded by the sum below) inside the int32 range. */
    if ((out - 1) * stride + effective + in_size + total_pad > INT32_MAX) return MQ_ERR_LIMIT;
    if (total_pad / 2 > INT16_MAX) return MQ_ERR_LIMIT;
    *out_size = (int32_t)out;
    *pad_before = (int32_t)(total_pad / 2);
    return MQ_OK;
}

mq_status mq_broadcast_prepare(const mq_tensor *in1, const mq_tensor *in2, const mq_tensor *out,
                               mq_broadcast *bc)
{
    const int32_t rank = in1->ndims > in2->ndims ? in1->ndims : in2->ndims;
    uint32_t acc1 = 1, acc2 = 1;
    int32_t i, n = 0;
    int prev = -1;
    mq_status s;

    if ((s = mq_check_dims_positive(in1)) != MQ_OK) return s;
    if ((s = mq_check_dims_positive(in2)) != MQ_OK) return s;
    if ((s = mq_check_dims_positive(out)) != MQ_OK) return s;
    if ((int32_t)out->ndims != rank) return MQ_ERR_SHAPE;

    /* Walk from the innermost dimension outwards, building merged dimensions in reverse. */
    for (i = 1; i <= rank; ++i) {
        const int32_t d1 = i <= (int32_t)in1->ndims ? in1->dims[in1->ndims - i] : 1;
        const int32_t d2 = i <= (int32_t)in2->ndims ? in2->dims[in2->ndims - i] : 1;
        const int32_t d = out->dims[rank - i];
        int kind;
        if ((d1 != d && d1 != 1) || (d2 != d && d2 != 1) || d != (d1 > d2 ? d1 : d2)) return MQ_ERR_SHAPE;
        if (d == 1) continue; /* contributes nothing to any offset */
        kind = (d1 == d ? 1 : 0) | (d2 == d ? 2 : 0);
        if (kind == prev) {
            /* Same broadcast pattern as the dimension inside it: extend that one. */
            bc->dims[n - 1] *= d;
        } else {
            bc->dims[n] = d;
            bc->stride1[n] = (kind & 1) ? acc1 : 0;
            bc->stride2[n] = (kind & 2) ? acc2 : 0;
            ++n;
            prev = kind;
        }
        if (kind & 1) acc1 *= (uint32_t)d;
        if (kind & 2) acc2 *= (uint32_t)d;
    }
    if (n == 0) {
        /* Every dimension is 1 (or rank 0): a single element. */
        bc->dims[0] = 1;
        bc->stride1[0] = 1;
        bc->stride2[0] = 1;
        n = 1;
    }
    /* Reverse into outermost-first order. */
    for (i = 0; i < n / 2; ++i) {
        const int32_t j = n - 1 - i;
        const int32_t d = bc->dims[i];
        const uint32_t s1 = bc->stride1[i], s2 = bc->stride2[i];
        bc->dims[i] = bc->dims[j];
        bc->stride1[i] = bc->stride1[j];
        bc->stride2[i] = bc->stride2[j];
        bc->dims[j] = d;
        bc->stride1[j] = s1;
        bc->stride2[j] = s2;
    }
    bc->rank = n;
    return MQ_OK;
}

void mq_broadcast_run(const mq_broadcast *bc, const int8_t *in1, const int8_t *in2, int8_t *out,
                      mq_broadcast_row_fn row, const void *params)
{
    const int32_t inner = bc->rank - 1;
    const uint32_t step1 = bc->stride1[inner] ? 1u : 0u, step2 = bc->stride2[inner] ? 1u : 0u;
    int32_t idx[MQ_MAX_DIMS] = {0};
    uint32_t off1 = 0, off2 = 0, off_out = 0;
    int32_t k;

    for (;;) {
        row(in1 + off1, step1, in2 + off2, step2, out + off_out, bc->dims[inner], params);
        off_out += (uint32_t)bc->dims[inner];
        /* Odometer over the outer dimensions. */
        for (k = inner - 1; k >= 0; --k) {
            if (++idx[k] < bc->dims[k]) {
                off1 += bc->stride1[k];
                off2 += bc->stride2[k];
                break;
            }
            idx[k] = 0;
            off1 -= bc->stride1[k] * (uint32_t)(bc->dims[k] - 1);
            off2 -= bc->stride2[k] * (uint32_t)(bc->dims[k] - 1);
        }
        if (k < 0) return;
    }
}

mq_status mq_window_2d(const mq_op_options *o, const mq_tensor *in, const mq_tensor *out, int32_t filter_h,
                       int32_t filter_w, int32_t dilation_h, int32_t dilation_w, int32_t *pad_h, int32_t *pad_w)
{
    int32_t out_h = 0, out_w = 0;
    mq_status s;
    if ((s = mq_window(o->padding, in->dims[1], filter_h, o->stride_h, dilation_h, &out_h, pad_h)) != MQ_OK) return s;
    if ((s = mq_window(o->padding, in->dims[2], filter_w, o->stride_w, dilation_w, &out_w, pad_w)) != MQ_OK) return s;
    return out->dims[1] == out_h && out->dims[2] == out_w ? MQ_OK : MQ_ERR_SHAPE;
}

mq_status mq_weighted_operands_of(const mq_op_ctx *ctx, uint8_t filter_rank, mq_weighted_operands *w)
{
    mq_status s;
    if (ctx->ninputs < 2 || ctx->ninputs > 3 || ctx->noutputs != 1) return MQ_ERR_MALFORMED;
    *w = mq_weighted_operands_at(ctx);
    if (w->in == NULL || w->filter == NULL || w->out == NULL) return MQ_ERR_MALFORMED;
    if ((s = mq_check_int8_activation(w->in)) != MQ_OK) return s;
    if ((s = mq_check_int8_activation(w->out)) != MQ_OK) return s;
    if (w->filter->type != MQ_INT8) return MQ_ERR_UNSUPPORTED_TYPE;
    return mq_check_rank_positive(w->filter, filter_rank);
}

mq_status mq_check_channel_multipliers(const mq_weighted_operands *w, int32_t channels)
{
    int32_t ch, m;
    int shift;
    mq_status s;
    for (ch = 0; ch < channels; ++ch) {
        s = mq_channel_multiplier(w->in->scale, mq_weight_scale(w->filter, ch), w->out->scale, &m, &shift);
        if (s != MQ_OK) return s;
    }
    return MQ_OK;
}

mq_status mq_binary_int8_operands(const mq_op_ctx *ctx, const mq_tensor **a, const mq_tensor **b,
                                  const mq_tensor **out, mq_broadcast *bc)
{
    mq_status s;
    if (ctx->ninputs != 2 || ctx->noutputs != 1) return MQ_ERR_MALFORMED;
    *a = ctx->inputs[0];
    *b = ctx->inputs[1];
    *out = ctx->outputs[0];
    if (*a == NULL || *b == NULL || *out == NULL) return MQ_ERR_MALFORMED;
    if ((s = mq_check_int8_activation(*a)) != MQ_OK) return s;
    if ((s = mq_check_int8_activation(*b)) != MQ_OK) return s;
    if ((s = mq_check_int8_activation(*out)) != MQ_OK) return s;
    return mq_broadcast_prepare(*a, *b, *out, bc);
}

mq_status mq_prepare_channel_params(const mq_weighted_operands *w, int32_t channels, uint32_t count,
                                    uint32_t ch_stride, uint32_t elem_stride, uint8_t *out, uint32_t *bytes)
{
    const int8_t *weights = (const int8_t *)w->filter->data;
    const uint32_t input_offset = (uint32_t)(-w->in->zero_point);
    int32_t *multiplier, *folded;
    int8_t *shift;
    int32_t ch;
    *bytes = (uint32_t)channels * 9u; /* checked by the operator: channels <= the filter's size */
    if (out == NULL) return MQ_OK;
    multiplier = (int32_t *)(void *)out;
    folded = multiplier + channels;
    shift = (int8_t *)(void *)(folded + channels);
    for (ch = 0; ch < channels; ++ch) {
        const int8_t *wc = weights + (uint32_t)ch * ch_stride;
        uint32_t sum = 0, k;
        int s = 0;
        if (w->filter->nscales == 1 && ch > 0) { /* per-tensor: computed once */
            multiplier[ch] = multiplier[0];
            shift[ch] = shift[0];
        } else {
            mq_status st = mq_channel_multiplier(w->in->scale, mq_weight_scale(w->filter, ch), w->out->scale,
                                                 &multiplier[ch], &s);
            if (st != MQ_OK) return st;
            shift[ch] = (int8_t)s; /* |shift| <= 31 (mq_checked_multiplier) */
        }
        for (k = 0; k < count; ++k) sum += (uint32_t)(int32_t)wc[k * elem_stride];
        folded[ch] = mq_wrap_i32((w->bias != NULL ? (uint32_t)mq_load_i32(w->bias->data, (uint32_t)ch) : 0u) +
                                 input_offset * sum);
    }
    return MQ_OK;
}

mq_status mq_reduction_axes(const mq_tensor *in, const mq_tensor *axis, const mq_tensor *out,
                            uint8_t reduced[MQ_MAX_DIMS], int32_t *count)
{
    uint32_t i, kept = 1;
    int32_t d;
    if (axis->type != MQ_INT32) return MQ_ERR_UNSUPPORTED_TYPE;
    /* The axes are read at check time: they must be model constants. */
    if (!axis->is_constant || axis->data == NULL) return MQ_ERR_UNSUPPORTED_OPTION;
    for (d = 0; d < MQ_MAX_DIMS; ++d) reduced[d] = 0;
    for (i = 0; in->ndims > 0 && i < mq_tensor_elements(axis); ++i) {
        int32_t a = mq_load_i32(axis->data, i);
        if (a < -(int32_t)in->ndims || a >= (int32_t)in->ndims) return MQ_ERR_SHAPE;
        if (a < 0) a += in->ndims;
        reduced[a] = 1;
    }
    *count = 1;
    for (d = 0; d < (int32_t)in->ndims; ++d) {
        if (reduced[d]) {
            *count *= in->dims[d]; /* <= element count <= INT32_MAX */
        } else {
            kept *= (uint32_t)in->dims[d];
        }
    }
    return mq_tensor_elements(out) == kept ? MQ_OK : MQ_ERR_SHAPE;
}
