/*
 * DEPTHWISE_CONV_2D, int8 activations, int8 weights (per-channel or per-tensor), optional int32
 * bias, any depth multiplier. Input [N,H,W,C], filter [1,KH,KW,C*M], bias [C*M], output
 * [N,OH,OW,C*M]; output channel c*M + m reads input channel c.
 *
 * Arithmetic as TFLM's reference DepthwiseConvPerChannel (wrapping int32 accumulator, per-channel
 * requantization, output zero point, activation clamp). Multipliers and the bias with the input
 * zero point folded in are computed once, by prepare() at mq_init (mq_channel_params).
 */
#include "../mq_fixedpoint.h"
#include "mq_dot.h"
#include "mq_op_util.h"

typedef struct dw_params {
    int32_t pad_h, pad_w;
    int32_t act_min, act_max;
} dw_params;

/* Validates the operator (check) or only derives its parameters (eval, after check passed). */
static mq_status dw_prepare(const mq_op_ctx *ctx, dw_params *p, int validate)
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
    if (validate && (s = mq_check_channel_multipliers(&w, out->dims[3])) != MQ_OK) return s;
    return mq_activation_range_int8(o->activation, out, &p->act_min, &p->act_max);
}

mq_status mq_check_depthwise_conv_2d(const mq_op_ctx *ctx)
{
    dw_params p;
    return dw_prepare(ctx, &p, 1);
}

mq_status mq_prepare_depthwise_conv_2d(const mq_op_ctx *ctx, uint8_t *out, uint32_t *bytes)
{
    const mq_tensor *filter = ctx->inputs[1];
    const mq_weighted_operands w = {ctx->inputs[0], filter, ctx->ninputs == 3 ? ctx->inputs[2] : NULL,
                                    ctx->outputs[0]};
    const int32_t out_c = filter->dims[3];
    /* Channel c's weights: filter[0][ky][kx][c], one per tap, out_c apart. */
    return mq_prepare_channel_params(&w, out_c, (uint32_t)filter->dims[1] * (uint32_t)filter->dims[2], 1u,
                                     (uint32_t)out_c, out, bytes);
}

mq_status mq_eval_depthwise_conv_2d(const mq_op_ctx *ctx)
{
    const mq_op_options *o = ctx->options;
    const mq_tensor *in = ctx->inputs[0], *filter = ctx->inputs[1];
    const mq_tensor *bias = ctx->ninputs == 3 ? ctx->inputs[2] : NULL;
    const mq_tensor *out = ctx->outputs[0];
    const int8_t *x = (const int8_t *)in->data;
    const int8_t *w = (const int8_t *)filter->data;
    int8_t *y = (int8_t *)out->data;
    const int32_t in_offset = -in->zero_point;
    const int32_t in_h = in->dims[1], in_w = in->dims[2], in_c = in->dims[3];
    const int32_t k_h = filter->dims[1], k_w = filter->dims[2];
    const int32_t out_c = out->dims[3];
    const int32_t dm = o->depth_multiplier;
    const mq_channel_params cp = mq_channel_params_of(ctx->prepared, out_c);
    dw_params p;
    int32_t b, oy, ox, oc;
    mq_status s = dw_prepare(ctx, &p, 0);
    if (s != MQ_OK) return s;

    for (b = 0; b < in->dims[0]; ++b) {
        for (oy = 0; oy < out->dims[1]; ++oy) {
            const int32_t y0 = oy * o->stride_h - p.pad_h;
            const int rows_inside = y0 >= 0 && y0 + o->dilation_h * (k_h - 1) < in_h;
            for (ox = 0; ox < out->dims[2]; ++ox) {
                const int32_t x0 = ox * o->stride_w - p.pad_w;
                /* Every tap inside the input: the zero point is folded into the bias (prepare). */
                const int inside = rows_inside && x0 >= 0 && x0 + o->dilation_w * (k_w - 1) < in_w;
                int8_t *yp = y + mq_offset4(out->dims, b, oy, ox, 0);
                oc = 0;
                if (dm == 1) { /* four channels side by side per tap (mq_mac_4ch), over the valid taps */
                    const int32_t ky0 = y0 < 0 ? (-y0 + o->dilation_h - 1) / o->dilation_h : 0;
                    const int32_t kx0 = x0 < 0 ? (-x0 + o->dilation_w - 1) / o->dilation_w : 0;
                    int32_t ky1 = k_h, kx1 = k_w;
                    while (ky1 > ky0 && y0 + o->dilation_h * (ky1 - 1) >= in_h) --ky1;
                    while (kx1 > kx0 && x0 + o->dilation_w * (kx1 - 1) >= in_w) --kx1;
                    for (; oc + 4 <= out_c; oc += 4) {
                        uint32_t acc[4], sums[4] = {0u, 0u, 0u, 0u};
                        int32_t ky, kx, i;
                        for (i = 0; i < 4; ++i)
                            acc[i] = inside ? (uint32_t)cp.folded_bias[oc + i]
                                            : (bias != NULL ? (uint32_t)mq_load_i32(bias->data, (uint32_t)(oc + i)) : 0u);
                        for (ky = ky0; ky < ky1; ++ky) {
                            const int8_t *xp = x + mq_offset4(in->dims, b, y0 + o->dilation_h * ky, 0, oc);
                            const int8_t *wp = w + ((uint32_t)ky * (uint32_t)k_w) * (uint32_t)out_c + (uint32_t)oc;
                            for (kx = kx0; kx < kx1; ++kx) {
                                const int8_t *wk = wp + (uint32_t)kx * (uint32_t)out_c;
                                mq_mac_4ch(wk, xp + (uint32_t)(x0 + o->dilation_w * kx) * (uint32_t)in_c, acc);
                                if (!inside)
                                    for (i = 0; i < 4; ++i) sums[i] += (uint32_t)(int32_t)wk[i];
                            }
                        }
                        /* A window that leaves the input skips those taps: sum(w * (x + offset)) over the rest. */
                        if (!inside)
                            for (i = 0; i < 4; ++i) acc[i] += (uint32_t)in_offset * sums[i];
                        for (i = 0; i < 4; ++i)
                            yp[oc + i] = mq_channel_output(acc[i], &cp, oc + i, out->zero_point, p.act_min, p.act_max);
                    }
                }
                for (; oc < out_c; ++oc) {
                    const int32_t ic = oc / dm;
                    uint32_t acc; /* int32 arithmetic modulo 2^32, as TFLM's */
                    int32_t ky, kx;
                    if (inside) {
                        acc = (uint32_t)cp.folded_bias[oc];
                        for (ky = 0; ky < k_h; ++ky) {
                            const int8_t *xp = x + mq_offset4(in->dims, b, y0 + o->dilation_h * ky, x0, ic);
                            const int8_t *wp = w + ((uint32_t)ky * (uint32_t)k_w) * (uint32_t)out_c + (uint32_t)oc;
                            for (kx = 0; kx < k_w; ++kx)
                                acc += (uint32_t)((int32_t)wp[(uint32_t)kx * (uint32_t)out_c] *
                                                  (int32_t)xp[(uint32_t)(o->dilation_w * kx) * (uint32_t)in_c]);
                        }
                    } else {
                        acc = bias != NULL ? (uint32_t)mq_load_i32(bias->data, (uint32_t)oc) : 0u;
                        for (ky = 0; ky < k_h; ++ky) {
                            const int32_t iy = y0 + o->dilation_h * ky;
                            if (iy < 0 || iy >= in_h) continue;
                            for (kx = 0; kx < k_w; ++kx) {
                                const int32_t ix = x0 + o->dilation_w * kx;
                                int32_t xv, wv;
                                if (ix < 0 || ix >= in_w) continue;
                                xv = x[mq_offset4(in->dims, b, iy, ix, ic)];
                                wv = w[mq_offset4(filter->dims, 0, ky, kx, oc)];
                                acc += (uint32_t)(wv * (xv + in_offset));
                            }
                        }
                    }
                    yp[oc] = mq_channel_output(acc, &cp, oc, out->zero_point, p.act_min, p.act_max);
                }
            }
        }
    }
    return MQ_OK;
}
