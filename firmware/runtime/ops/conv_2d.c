/*
 * CONV_2D, int8 activations, int8 weights (per-channel or per-tensor), optional int32 bias.
 * Inputs: [N,H,W,C_in], filter [C_out,KH,KW,C_in/groups], bias [C_out]; output [N,OH,OW,C_out].
 * Grouped convolutions (C_in a multiple of the filter depth) are computed as TFLM does.
 *
 * Arithmetic as TFLM's reference ConvPerChannel: acc = sum(w * (x - zp_in)) + bias in wrapping
 * int32, requantized per output channel, plus the output zero point, clamped to the activation
 * range. The per-channel multipliers and the bias with the input zero point folded in are computed
 * once, by prepare() at mq_init (mq_channel_params), after the window's parameters (conv_params:
 * eval() reads no option). Windows are copied into an int16 column
 * buffer from the arena plan (scratch()), two at a time, and multiplied by the filters two at a
 * time (mq_gemm.h).
 */
#include "../mq_fixedpoint.h"
#include "mq_gemm.h"
#include "mq_op_util.h"

typedef struct conv_params {
    int32_t stride_h, stride_w, dilation_h, dilation_w;
    int32_t pad_h, pad_w;
    int32_t act_min, act_max;
} conv_params;

/* Validates the operator and derives its parameters (at mq_init, with the options at hand). */
static mq_status conv_prepare(const mq_op_ctx *ctx, conv_params *p)
{
    const mq_op_options *o = ctx->options;
    const mq_tensor *in, *filter, *out;
    mq_weighted_operands w;
    int32_t groups;
    mq_status s;

    if ((s = mq_weighted_operands_of(ctx, 4, &w)) != MQ_OK) return s;
    in = w.in;
    filter = w.filter;
    out = w.out;
    if (in->ndims != 4 || out->ndims != 4) return MQ_ERR_SHAPE;

    if (in->dims[0] != out->dims[0] || filter->dims[0] != out->dims[3]) return MQ_ERR_SHAPE;
    /* Groups: every group of filter->dims[3] input channels feeds out_c / groups filters. */
    if (in->dims[3] % filter->dims[3] != 0) return MQ_ERR_SHAPE;
    groups = in->dims[3] / filter->dims[3];
    if (out->dims[3] % groups != 0) return MQ_ERR_SHAPE;
    if ((s = mq_check_bias(w.bias, out->dims[3])) != MQ_OK) return s;
    if ((s = mq_window_2d(o, in, out, filter->dims[1], filter->dims[2], o->dilation_h, o->dilation_w,
                          &p->pad_h, &p->pad_w)) != MQ_OK) return s;
    if ((s = mq_check_int8_weights(filter, 0)) != MQ_OK) return s;
    p->stride_h = o->stride_h;
    p->stride_w = o->stride_w;
    p->dilation_h = o->dilation_h;
    p->dilation_w = o->dilation_w;
    return mq_activation_range_int8(o->activation, out, &p->act_min, &p->act_max);
}

mq_status mq_check_conv_2d(const mq_op_ctx *ctx)
{
    conv_params p;
    const mq_status s = conv_prepare(ctx, &p);
    if (s != MQ_OK) return s;
    {
        const mq_weighted_operands w = mq_weighted_operands_at(ctx);
        return mq_check_channel_multipliers(&w, ctx->outputs[0]->dims[3]);
    }
}

/* conv_params, then the channels' (mq_channel_params). */
mq_status mq_prepare_conv_2d(const mq_op_ctx *ctx, uint8_t *out, uint32_t *bytes)
{
    const mq_tensor *filter = ctx->inputs[1];
    const mq_weighted_operands w = mq_weighted_operands_at(ctx);
    const uint32_t per_filter = (uint32_t)filter->dims[1] * (uint32_t)filter->dims[2] * (uint32_t)filter->dims[3];
    mq_status s = out != NULL ? conv_prepare(ctx, (conv_params *)(void *)out) : MQ_OK;
    if (s == MQ_OK)
        s = mq_prepare_channel_params(&w, filter->dims[0], per_filter, per_filter, 1u,
                                      out != NULL ? out + sizeof(conv_params) : NULL, bytes);
    *bytes += (uint32_t)sizeof(conv_params);
    return s;
}

/*
 * Writing the output over the input (when the planner lets them share memory):
 * - a pointwise convolution (1x1, stride 1) with no more output than input channels reads each
 *   pair of pixels into the columns before it writes them, over bytes already read;
 * - with stride 1 down the rows, output row oy reads input rows from oy - pad_top on, so input row
 *   oy - pad_top is no longer needed once output row oy is done: rows are computed into a ring of
 *   pad_top + 1 rows (scratch) and each is copied over the input once its last reader is done.
 */
typedef enum { OVER_NOTHING, OVER_PIXELS, OVER_ROWS } conv_overwrite;

static conv_overwrite overwrite_mode(const mq_op_ctx *ctx, const conv_params *p)
{
    const mq_tensor *in = ctx->inputs[0], *filter = ctx->inputs[1], *out = ctx->outputs[0];
    const int64_t in_row = (int64_t)in->dims[2] * in->dims[3], out_row = (int64_t)out->dims[2] * out->dims[3];
    if (filter->dims[3] != in->dims[3] || in->dims[0] != 1) return OVER_NOTHING;
    if (filter->dims[1] == 1 && filter->dims[2] == 1 && p->stride_h == 1 && p->stride_w == 1 &&
        out->dims[3] <= in->dims[3])
        return OVER_PIXELS;
    if (p->stride_h == 1 && out_row <= in_row && p->pad_h >= 0 && 2 * ((int64_t)p->pad_h + 1) <= out->dims[1])
        return OVER_ROWS;
    return OVER_NOTHING;
}

int32_t mq_in_place_conv_2d(const mq_op_ctx *ctx)
{
    conv_params p;
    if (conv_prepare(ctx, &p) != MQ_OK) return -1;
    return overwrite_mode(ctx, &p) != OVER_NOTHING ? 0 : -1;
}

mq_status mq_scratch_conv_2d(const mq_op_ctx *ctx, uint32_t *bytes)
{
    const mq_tensor *in = ctx->inputs[0], *filter = ctx->inputs[1], *out = ctx->outputs[0];
    const uint32_t per_filter = (uint32_t)filter->dims[1] * (uint32_t)filter->dims[2] * (uint32_t)filter->dims[3];
    conv_params p;
    mq_status s = conv_prepare(ctx, &p);
    if (s != MQ_OK) return s;
    /* Grouped convolutions take the direct loop; the others two windows of columns. */
    *bytes = filter->dims[3] == in->dims[3] ? MQ_COLS_BYTES(per_filter) : 0u;
    if (ctx->in_place && overwrite_mode(ctx, &p) == OVER_ROWS) /* and the ring of output rows */
        *bytes += (uint32_t)(p.pad_h + 1) * (uint32_t)out->dims[2] * (uint32_t)out->dims[3];
    return MQ_OK;
}

/* The window of output pixel (b, oy, ox) into `slot` of the columns, in the filter's order
 * (ky, kx, c). Taps outside the input hold the input zero point: with the zero point folded into
 * the bias (prepare), they add w * (zp - zp) = 0, as TFLM skips them. */
static void put_window(int16_t *cols, uint32_t slot, const mq_op_ctx *ctx, const conv_params *p, int32_t b,
                       int32_t oy, int32_t ox)
{
    const mq_tensor *in = ctx->inputs[0], *filter = ctx->inputs[1];
    const int8_t *x = (const int8_t *)in->data;
    const int32_t in_h = in->dims[1], in_w = in->dims[2], c = in->dims[3];
    const int32_t k_h = filter->dims[1], k_w = filter->dims[2];
    const int32_t y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
    const int16_t pad = (int16_t)in->zero_point;
    const uint32_t row = (uint32_t)k_w * (uint32_t)c;
    uint32_t k = 0;
    int32_t ky, kx;
    for (ky = 0; ky < k_h; ++ky, k += row) {
        const int32_t iy = y0 + p->dilation_h * ky;
        const int8_t *xr = x + mq_offset4(in->dims, b, iy < 0 ? 0 : iy, 0, 0);
        if (iy < 0 || iy >= in_h) {
            mq_cols_fill(cols, slot, k, row, pad);
        } else if (p->dilation_w == 1) { /* the row's taps inside the input are one run */
            const int32_t kx0 = x0 < 0 ? (-x0 < k_w ? -x0 : k_w) : 0;
            const int32_t kx1 = in_w - x0 < k_w ? (in_w - x0 > kx0 ? in_w - x0 : kx0) : k_w;
            mq_cols_fill(cols, slot, k, (uint32_t)kx0 * (uint32_t)c, pad);
            mq_cols_put(cols, slot, k + (uint32_t)kx0 * (uint32_t)c, xr + (x0 + kx0) * c, (uint32_t)(kx1 - kx0) * (uint32_t)c);
            mq_cols_fill(cols, slot, k + (uint32_t)kx1 * (uint32_t)c, (uint32_t)(k_w - kx1) * (uint32_t)c, pad);
        } else {
            for (kx = 0; kx < k_w; ++kx) {
                const int32_t ix = x0 + p->dilation_w * kx;
                const uint32_t at = k + (uint32_t)kx * (uint32_t)c;
                if (ix < 0 || ix >= in_w) mq_cols_fill(cols, slot, at, (uint32_t)c, pad);
                else mq_cols_put(cols, slot, at, xr + ix * c, (uint32_t)c);
            }
        }
    }
}

/* Grouped convolutions (rare): one output channel at a time, TFLM's loop order. */
static void eval_grouped(const mq_op_ctx *ctx, const conv_params *p, const mq_channel_params *cp)
{
    const mq_tensor *in = ctx->inputs[0], *filter = ctx->inputs[1], *out = ctx->outputs[0];
    const int8_t *x = (const int8_t *)in->data;
    const int8_t *w = (const int8_t *)filter->data;
    int8_t *y = (int8_t *)out->data;
    const int32_t in_h = in->dims[1], in_w = in->dims[2], in_c = in->dims[3];
    const int32_t k_h = filter->dims[1], k_w = filter->dims[2], k_c = filter->dims[3];
    const int32_t out_c = out->dims[3], per_group = out_c / (in_c / k_c);
    const uint32_t per_filter = (uint32_t)k_h * (uint32_t)k_w * (uint32_t)k_c;
    int32_t b, oy, ox, oc, ky, kx, ic;
    for (b = 0; b < in->dims[0]; ++b) {
        for (oy = 0; oy < out->dims[1]; ++oy) {
            for (ox = 0; ox < out->dims[2]; ++ox) {
                const int32_t y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
                int8_t *yp = y + mq_offset4(out->dims, b, oy, ox, 0);
                for (oc = 0; oc < out_c; ++oc) {
                    const int32_t ic0 = (oc / per_group) * k_c;
                    const int8_t *wp = w + (uint32_t)oc * per_filter;
                    uint32_t acc = (uint32_t)cp->folded_bias[oc], sum = 0; /* int32 modulo 2^32, as TFLM's */
                    for (ky = 0; ky < k_h; ++ky) {
                        const int32_t iy = y0 + p->dilation_h * ky;
                        for (kx = 0; kx < k_w; ++kx, wp += k_c) {
                            const int32_t ix = x0 + p->dilation_w * kx;
                            const int8_t *xp;
                            if (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w) { /* skipped: undo the fold */
                                for (ic = 0; ic < k_c; ++ic) sum += (uint32_t)(int32_t)wp[ic];
                                continue;
                            }
                            xp = x + mq_offset4(in->dims, b, iy, ix, ic0);
                            for (ic = 0; ic < k_c; ++ic) acc += (uint32_t)((int32_t)wp[ic] * (int32_t)xp[ic]);
                        }
                    }
                    acc += (uint32_t)in->zero_point * sum;
                    yp[oc] = mq_channel_output(acc, cp, oc, out->zero_point, p->act_min, p->act_max);
                }
            }
        }
    }
}

/* Output pixels first..first+count-1 (flat indices) into dst, two pixels by two channels per step. */
static void conv_pixels(const mq_op_ctx *ctx, const conv_params *p, const mq_channel_params *cp, int16_t *cols,
                        int32_t first, int32_t count, int8_t *dst)
{
    const mq_tensor *filter = ctx->inputs[1], *out = ctx->outputs[0];
    const int8_t *w = (const int8_t *)filter->data;
    const int32_t out_h = out->dims[1], out_w = out->dims[2], out_c = out->dims[3];
    const uint32_t per_filter = (uint32_t)filter->dims[1] * (uint32_t)filter->dims[2] * (uint32_t)filter->dims[3];
    int32_t i, oc;
    for (i = 0; i < count; i += 2) {
        const int two = i + 1 < count;
        int8_t *ya = dst + (uint32_t)i * (uint32_t)out_c, *yb = ya + out_c;
        int32_t q;
        for (q = 0; q < 2; ++q) {
            const int32_t at = first + (two ? i + q : i); /* an odd last pixel fills both slots */
            put_window(cols, (uint32_t)q, ctx, p, at / (out_h * out_w), (at / out_w) % out_h, at % out_w);
        }
        for (oc = 0; oc < out_c; oc += 2) {
            const int pair = oc + 1 < out_c;
            const mq_requant r0 = mq_requant_of(cp, oc, out->zero_point, p->act_min, p->act_max);
            uint32_t acc[4];
            acc[0] = acc[1] = (uint32_t)cp->folded_bias[oc];
            acc[2] = acc[3] = pair ? (uint32_t)cp->folded_bias[oc + 1] : 0u;
            mq_gemm_2x2(w + (uint32_t)oc * per_filter, pair ? per_filter : 0u, cols, per_filter, acc);
            ya[oc] = mq_requant_out(&r0, acc[0]);
            if (two) yb[oc] = mq_requant_out(&r0, acc[1]);
            if (pair) {
                const mq_requant r1 = mq_requant_of(cp, oc + 1, out->zero_point, p->act_min, p->act_max);
                ya[oc + 1] = mq_requant_out(&r1, acc[2]);
                if (two) yb[oc + 1] = mq_requant_out(&r1, acc[3]);
            }
        }
    }
}

mq_status mq_eval_conv_2d(const mq_op_ctx *ctx)
{
    const mq_tensor *filter = ctx->inputs[1], *out = ctx->outputs[0];
    int8_t *y = (int8_t *)out->data;
    const int32_t out_h = out->dims[1], out_w = out->dims[2], out_c = out->dims[3];
    const uint32_t per_filter = (uint32_t)filter->dims[1] * (uint32_t)filter->dims[2] * (uint32_t)filter->dims[3];
    const conv_params p = *(const conv_params *)(const void *)ctx->prepared;
    const mq_channel_params cp = mq_channel_params_of(ctx->prepared + sizeof(conv_params), out_c);
    int16_t *cols = (int16_t *)(void *)ctx->scratch;
    const uint32_t out_row = (uint32_t)out_w * (uint32_t)out_c;
    int32_t oy;
    if (cols == NULL) {
        eval_grouped(ctx, &p, &cp);
        return MQ_OK;
    }
    if (!ctx->in_place || overwrite_mode(ctx, &p) != OVER_ROWS) {
        conv_pixels(ctx, &p, &cp, cols, 0, out->dims[0] * out_h * out_w, y);
        return MQ_OK;
    }
    { /* over the input, row by row through the ring */
        int8_t *ring = (int8_t *)(void *)((uint8_t *)(void *)cols + MQ_COLS_BYTES(per_filter));
        const int32_t nring = p.pad_h + 1;
        for (oy = 0; oy < out_h; ++oy) {
            conv_pixels(ctx, &p, &cp, cols, oy * out_w, out_w, ring + (uint32_t)(oy % nring) * out_row);
            if (oy >= p.pad_h) /* input row oy - pad_top has had its last reader */
                memcpy(y + (uint32_t)(oy - p.pad_h) * out_row, ring + (uint32_t)((oy - p.pad_h) % nring) * out_row, out_row);
        }
        for (oy = out_h - p.pad_h; oy < out_h; ++oy)
            memcpy(y + (uint32_t)oy * out_row, ring + (uint32_t)(oy % nring) * out_row, out_row);
    }
    return MQ_OK;
}
