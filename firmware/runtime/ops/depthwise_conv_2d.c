/*
 * DEPTHWISE_CONV_2D, int8 activations, int8 weights (per-channel or per-tensor), optional int32
 * bias, any depth multiplier. Input [N,H,W,C], filter [1,KH,KW,C*M], bias [C*M], output
 * [N,OH,OW,C*M]; output channel c*M + m reads input channel c.
 *
 * Arithmetic as TFLM's reference DepthwiseConvPerChannel (wrapping int32 accumulator, per-channel
 * requantization, output zero point, activation clamp). Multipliers and the bias with the input
 * zero point folded in are computed once, by prepare() at mq_init (mq_channel_params), after the
 * window's parameters (dw_params: eval() reads no option).
 *
 * Each output pixel first lists where its taps read: a tap outside the input reads a row of the
 * input zero point (scratch memory), which adds w * (zp - zp) = 0 through the folded bias, as TFLM
 * skips it. The channels then run four side by side (mq_mac4) over the listed taps. Filters with
 * more than MQ_DW_MAX_TAPS taps take a direct loop.
 */
#include "../mq_fixedpoint.h"
#include "mq_gemm.h"
#include "mq_op_util.h"

#define MQ_DW_MAX_TAPS 49 /* 7x7: the tap list lives on the stack */

typedef struct dw_params {
    int32_t stride_h, stride_w, dilation_h, dilation_w, depth_multiplier;
    int32_t pad_h, pad_w;
    int32_t act_min, act_max;
} dw_params;

/* Validates the operator and derives its parameters (at mq_init, with the options at hand). */
static mq_status dw_prepare(const mq_op_ctx *ctx, dw_params *p)
{
    const mq_op_options *o = ctx->options;
    const mq_tensor *in, *filter, *out;
    mq_weighted_operands w;
    mq_status s;

    if ((s = mq_weighted_operands_of(ctx, 4, &w)) != MQ_OK) return s;
    in = w.in;
    filter = w.filter;
    out = w.out;
    if (in->ndims != 4 || out->ndims != 4) return MQ_ERR_SHAPE;

    /* TFLM keeps the depth multiplier in an int16 field. */
    if (o->depth_multiplier < 1 || o->depth_multiplier > INT16_MAX) return MQ_ERR_UNSUPPORTED_OPTION;
    if (in->dims[0] != out->dims[0] || filter->dims[0] != 1 || filter->dims[3] != out->dims[3])
        return MQ_ERR_SHAPE;
    if ((int64_t)in->dims[3] * o->depth_multiplier != (int64_t)out->dims[3]) return MQ_ERR_SHAPE;
    if ((s = mq_check_bias(w.bias, out->dims[3])) != MQ_OK) return s;
    if ((s = mq_window_2d(o, in, out, filter->dims[1], filter->dims[2], o->dilation_h, o->dilation_w,
                          &p->pad_h, &p->pad_w)) != MQ_OK) return s;

    if ((s = mq_check_int8_weights(filter, 3)) != MQ_OK) return s;
    /* TFLM's depthwise kernel also wants as many zero points as scales. */
    if (filter->nzero_points != filter->nscales) return MQ_ERR_QUANTIZATION;
    p->stride_h = o->stride_h;
    p->stride_w = o->stride_w;
    p->dilation_h = o->dilation_h;
    p->dilation_w = o->dilation_w;
    p->depth_multiplier = o->depth_multiplier;
    return mq_activation_range_int8(o->activation, out, &p->act_min, &p->act_max);
}

mq_status mq_check_depthwise_conv_2d(const mq_op_ctx *ctx)
{
    dw_params p;
    const mq_status s = dw_prepare(ctx, &p);
    if (s != MQ_OK) return s;
    {
        const mq_weighted_operands w = mq_weighted_operands_at(ctx);
        return mq_check_channel_multipliers(&w, ctx->outputs[0]->dims[3]);
    }
}

/* dw_params, then the channels' (mq_channel_params). */
mq_status mq_prepare_depthwise_conv_2d(const mq_op_ctx *ctx, uint8_t *out, uint32_t *bytes)
{
    const mq_tensor *filter = ctx->inputs[1];
    const mq_weighted_operands w = mq_weighted_operands_at(ctx);
    const int32_t out_c = filter->dims[3];
    mq_status s = out != NULL ? dw_prepare(ctx, (dw_params *)(void *)out) : MQ_OK;
    /* Channel c's weights: filter[0][ky][kx][c], one per tap, out_c apart. */
    if (s == MQ_OK)
        s = mq_prepare_channel_params(&w, out_c, (uint32_t)filter->dims[1] * (uint32_t)filter->dims[2], 1u,
                                      (uint32_t)out_c, out != NULL ? out + sizeof(dw_params) : NULL, bytes);
    *bytes += (uint32_t)sizeof(dw_params);
    return s;
}

/* Writing the output over the input, as CONV_2D does (conv_2d.c): with stride 1 down the rows and
 * one output channel per input channel, output row oy reads input rows from oy - pad_top on, so rows
 * go through a ring of pad_top + 1 rows (scratch) and over the input once their last reader is done. */
static int over_rows(const mq_op_ctx *ctx, const dw_params *p)
{
    const mq_tensor *in = ctx->inputs[0], *filter = ctx->inputs[1], *out = ctx->outputs[0];
    const int64_t in_row = (int64_t)in->dims[2] * in->dims[3], out_row = (int64_t)out->dims[2] * out->dims[3];
    return in->dims[0] == 1 && p->stride_h == 1 && p->depth_multiplier == 1 &&
           (int64_t)filter->dims[1] * filter->dims[2] <= MQ_DW_MAX_TAPS && out_row <= in_row && p->pad_h >= 0 &&
           2 * ((int64_t)p->pad_h + 1) <= out->dims[1];
}

int32_t mq_in_place_depthwise_conv_2d(const mq_op_ctx *ctx)
{
    dw_params p;
    if (dw_prepare(ctx, &p) != MQ_OK) return -1;
    return over_rows(ctx, &p) ? 0 : -1;
}

mq_status mq_scratch_depthwise_conv_2d(const mq_op_ctx *ctx, uint32_t *bytes)
{
    const mq_tensor *in = ctx->inputs[0], *filter = ctx->inputs[1], *out = ctx->outputs[0];
    const int64_t taps = (int64_t)filter->dims[1] * filter->dims[2];
    dw_params p;
    mq_status s = dw_prepare(ctx, &p);
    if (s != MQ_OK) return s;
    *bytes = taps <= MQ_DW_MAX_TAPS ? ((uint32_t)in->dims[3] + 15u) & ~15u : 0u; /* the zero-point row */
    if (ctx->in_place && over_rows(ctx, &p)) /* and the ring of output rows */
        *bytes += (uint32_t)(p.pad_h + 1) * (uint32_t)out->dims[2] * (uint32_t)out->dims[3];
    return MQ_OK;
}

/* Filters with more taps: every tap's bounds checked in the loop. */
static void eval_direct(const mq_op_ctx *ctx, const dw_params *p, const mq_channel_params *cp)
{
    const mq_tensor *in = ctx->inputs[0], *filter = ctx->inputs[1], *out = ctx->outputs[0];
    const int8_t *x = (const int8_t *)in->data;
    const int8_t *w = (const int8_t *)filter->data;
    int8_t *y = (int8_t *)out->data;
    const int32_t in_h = in->dims[1], in_w = in->dims[2];
    const int32_t k_h = filter->dims[1], k_w = filter->dims[2];
    const int32_t out_c = out->dims[3], dm = p->depth_multiplier;
    int32_t b, oy, ox, oc, ky, kx;
    for (b = 0; b < in->dims[0]; ++b) {
        for (oy = 0; oy < out->dims[1]; ++oy) {
            for (ox = 0; ox < out->dims[2]; ++ox) {
                const int32_t y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
                int8_t *yp = y + mq_offset4(out->dims, b, oy, ox, 0);
                for (oc = 0; oc < out_c; ++oc) {
                    uint32_t acc = (uint32_t)cp->folded_bias[oc]; /* int32 modulo 2^32, as TFLM's */
                    for (ky = 0; ky < k_h; ++ky) {
                        const int32_t iy = y0 + p->dilation_h * ky;
                        for (kx = 0; kx < k_w; ++kx) {
                            const int32_t ix = x0 + p->dilation_w * kx;
                            const int32_t wv = w[mq_offset4(filter->dims, 0, ky, kx, oc)];
                            const int32_t xv = iy < 0 || iy >= in_h || ix < 0 || ix >= in_w
                                                   ? in->zero_point
                                                   : x[mq_offset4(in->dims, b, iy, ix, oc / dm)];
                            acc += (uint32_t)(wv * xv);
                        }
                    }
                    yp[oc] = mq_channel_output(acc, cp, oc, out->zero_point, p->act_min, p->act_max);
                }
            }
        }
    }
}

/* Output pixel (b, oy, ox), every channel, into yp. */
static void dw_pixel(const mq_op_ctx *ctx, const dw_params *p, const mq_channel_params *cp, const int8_t *zp_row,
                     int32_t b, int32_t oy, int32_t ox, int8_t *yp)
{
    const mq_tensor *in = ctx->inputs[0], *filter = ctx->inputs[1], *out = ctx->outputs[0];
    const int8_t *x = (const int8_t *)in->data;
    const int8_t *w = (const int8_t *)filter->data;
    const int32_t in_h = in->dims[1], in_w = in->dims[2];
    const int32_t k_h = filter->dims[1], k_w = filter->dims[2];
    const int32_t out_c = out->dims[3], dm = p->depth_multiplier;
    const uint32_t ntaps = (uint32_t)k_h * (uint32_t)k_w;
    const int32_t y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
    const int8_t *taps[MQ_DW_MAX_TAPS];
    uint32_t t = 0, k;
    int32_t ky, kx, oc = 0;
    for (ky = 0; ky < k_h; ++ky) {
        const int32_t iy = y0 + p->dilation_h * ky;
        for (kx = 0; kx < k_w; ++kx, ++t) {
            const int32_t ix = x0 + p->dilation_w * kx;
            taps[t] = iy < 0 || iy >= in_h || ix < 0 || ix >= in_w ? zp_row : x + mq_offset4(in->dims, b, iy, ix, 0);
        }
    }
    if (dm == 1) { /* four channels side by side */
        for (; oc + 4 <= out_c; oc += 4) {
            uint32_t acc[4];
            acc[0] = (uint32_t)cp->folded_bias[oc];
            acc[1] = (uint32_t)cp->folded_bias[oc + 1];
            acc[2] = (uint32_t)cp->folded_bias[oc + 2];
            acc[3] = (uint32_t)cp->folded_bias[oc + 3];
            if (ntaps > 0) mq_taps_mac4(taps, ntaps, w + oc, (uint32_t)out_c, (uint32_t)oc, acc);
            /* Written out, so that acc[] stays in registers. */
            yp[oc] = mq_channel_output(acc[0], cp, oc, out->zero_point, p->act_min, p->act_max);
            yp[oc + 1] = mq_channel_output(acc[1], cp, oc + 1, out->zero_point, p->act_min, p->act_max);
            yp[oc + 2] = mq_channel_output(acc[2], cp, oc + 2, out->zero_point, p->act_min, p->act_max);
            yp[oc + 3] = mq_channel_output(acc[3], cp, oc + 3, out->zero_point, p->act_min, p->act_max);
        }
    }
    for (; oc < out_c; ++oc) { /* the remaining channels, and depth multipliers above 1 */
        const int32_t ic = oc / dm;
        const int8_t *wp = w + oc;
        uint32_t acc = (uint32_t)cp->folded_bias[oc]; /* int32 modulo 2^32, as TFLM's */
        for (k = 0; k < ntaps; ++k, wp += out_c) acc += (uint32_t)((int32_t)*wp * (int32_t)taps[k][ic]);
        yp[oc] = mq_channel_output(acc, cp, oc, out->zero_point, p->act_min, p->act_max);
    }
}

mq_status mq_eval_depthwise_conv_2d(const mq_op_ctx *ctx)
{
    const mq_tensor *in = ctx->inputs[0], *out = ctx->outputs[0];
    int8_t *y = (int8_t *)out->data;
    int8_t *zp_row = (int8_t *)ctx->scratch;
    const int32_t in_c = in->dims[3], out_h = out->dims[1], out_w = out->dims[2], out_c = out->dims[3];
    const uint32_t out_row = (uint32_t)out_w * (uint32_t)out_c;
    const dw_params p = *(const dw_params *)(const void *)ctx->prepared;
    const mq_channel_params cp = mq_channel_params_of(ctx->prepared + sizeof(dw_params), out_c);
    int32_t b, oy, ox, c;
    if (zp_row == NULL) {
        eval_direct(ctx, &p, &cp);
        return MQ_OK;
    }
    for (c = 0; c < in_c; ++c) zp_row[c] = (int8_t)in->zero_point;

    if (ctx->in_place && over_rows(ctx, &p)) { /* over the input, row by row through the ring */
        int8_t *ring = zp_row + (((uint32_t)in_c + 15u) & ~15u);
        const int32_t nring = p.pad_h + 1;
        for (oy = 0; oy < out_h; ++oy) {
            int8_t *row = ring + (uint32_t)(oy % nring) * out_row;
            for (ox = 0; ox < out_w; ++ox) dw_pixel(ctx, &p, &cp, zp_row, 0, oy, ox, row + (uint32_t)ox * (uint32_t)out_c);
            if (oy >= p.pad_h) /* input row oy - pad_top has had its last reader */
                memcpy(y + (uint32_t)(oy - p.pad_h) * out_row, ring + (uint32_t)((oy - p.pad_h) % nring) * out_row, out_row);
        }
        for (oy = out_h - p.pad_h; oy < out_h; ++oy)
            memcpy(y + (uint32_t)oy * out_row, ring + (uint32_t)(oy % nring) * out_row, out_row);
        return MQ_OK;
    }
    for (b = 0; b < in->dims[0]; ++b)
        for (oy = 0; oy < out_h; ++oy)
            for (ox = 0; ox < out_w; ++ox) dw_pixel(ctx, &p, &cp, zp_row, b, oy, ox, y + mq_offset4(out->dims, b, oy, ox, 0));
    return MQ_OK;
}
