/*
 * CONV_2D, int8 activations, int8 weights (per-channel or per-tensor), optional int32 bias.
 * Inputs: [N,H,W,C_in], filter [C_out,KH,KW,C_in/groups], bias [C_out]; output [N,OH,OW,C_out].
 * Grouped convolutions (C_in a multiple of the filter depth) are computed as TFLM does.
 *
 * Arithmetic as TFLM's reference ConvPerChannel: acc = sum(w * (x - zp_in)) + bias in wrapping
 * int32, requantized per output channel, plus the output zero point, clamped to the activation
 * range. The per-channel multipliers and the bias with the input zero point folded in are computed
 * once, by prepare() at mq_init (mq_channel_params).
 */
#include "../mq_fixedpoint.h"
#include "mq_dot.h"
#include "mq_op_util.h"

typedef struct conv_params {
    int32_t pad_h, pad_w;
    int32_t act_min, act_max;
} conv_params;

/* Validates the operator (check) or only derives its parameters (eval, after check passed). */
static mq_status conv_prepare(const mq_op_ctx *ctx, conv_params *p, int validate)
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
    if (validate && (s = mq_check_channel_multipliers(&w, out->dims[3])) != MQ_OK) return s;
    return mq_activation_range_int8(o->activation, out, &p->act_min, &p->act_max);
}

mq_status mq_check_conv_2d(const mq_op_ctx *ctx)
{
    conv_params p;
    return conv_prepare(ctx, &p, 1);
}

mq_status mq_prepare_conv_2d(const mq_op_ctx *ctx, uint8_t *out, uint32_t *bytes)
{
    const mq_tensor *filter = ctx->inputs[1];
    const mq_weighted_operands w = {ctx->inputs[0], filter, ctx->ninputs == 3 ? ctx->inputs[2] : NULL,
                                    ctx->outputs[0]};
    const uint32_t per_filter = (uint32_t)filter->dims[1] * (uint32_t)filter->dims[2] * (uint32_t)filter->dims[3];
    return mq_prepare_channel_params(&w, filter->dims[0], per_filter, per_filter, 1u, out, bytes);
}

/* Where a window's taps lie: `nseg` runs of `seg` contiguous int8, the k-th at x + seg_offset(k). Rows
 * of the window are contiguous when the taps of a row are (dilation 1, every input channel used). */
typedef struct conv_window {
    uint32_t nseg, seg, row_stride, tap_stride;
    int32_t k_w;
    int whole_rows;
} conv_window;

static uint32_t seg_offset(const conv_window *win, uint32_t k)
{
    if (win->whole_rows) return k * win->row_stride;
    return (k / (uint32_t)win->k_w) * win->row_stride + (k % (uint32_t)win->k_w) * win->tap_stride;
}

mq_status mq_eval_conv_2d(const mq_op_ctx *ctx)
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
    const int32_t k_h = filter->dims[1], k_w = filter->dims[2], k_c = filter->dims[3];
    const int32_t out_w = out->dims[2], out_c = out->dims[3];
    const int32_t per_group = out_c / (in_c / k_c);
    const int grouped = k_c != in_c;
    const uint32_t per_filter = (uint32_t)k_h * (uint32_t)k_w * (uint32_t)k_c;
    const mq_channel_params cp = mq_channel_params_of(ctx->prepared, out_c);
    conv_window win;
    conv_params p;
    int32_t b, oy, ox, oc;
    mq_status s = conv_prepare(ctx, &p, 0);
    if (s != MQ_OK) return s;

    win.whole_rows = o->dilation_w == 1 && !grouped;
    win.k_w = k_w;
    win.row_stride = (uint32_t)o->dilation_h * (uint32_t)in_w * (uint32_t)in_c;
    win.tap_stride = (uint32_t)o->dilation_w * (uint32_t)in_c;
    win.nseg = win.whole_rows ? (uint32_t)k_h : (uint32_t)k_h * (uint32_t)k_w;
    win.seg = win.whole_rows ? (uint32_t)k_w * (uint32_t)k_c : (uint32_t)k_c;

    for (b = 0; b < in->dims[0]; ++b) {
        for (oy = 0; oy < out->dims[1]; ++oy) {
            const int32_t y0 = oy * o->stride_h - p.pad_h;
            const int rows_inside = y0 >= 0 && y0 + o->dilation_h * (k_h - 1) < in_h;
            for (ox = 0; ox < out_w;) {
                const int32_t x0 = ox * o->stride_w - p.pad_w;
                /* Every tap inside the input: the zero point is folded into the bias (prepare). */
                const int inside = rows_inside && x0 >= 0 && x0 + o->dilation_w * (k_w - 1) < in_w;
                const int pair = inside && !grouped && ox + 1 < out_w &&
                                 x0 + o->stride_w + o->dilation_w * (k_w - 1) < in_w;
                int8_t *yp = y + mq_offset4(out->dims, b, oy, ox, 0);
                if (pair) { /* two pixels by two channels: every loaded word used twice */
                    const int8_t *xa = x + mq_offset4(in->dims, b, y0, x0, 0);
                    const int8_t *xb = xa + (uint32_t)o->stride_w * (uint32_t)in_c;
                    for (oc = 0; oc < out_c; oc += 2) {
                        const int two = oc + 1 < out_c;
                        const int8_t *wa = w + (uint32_t)oc * per_filter, *wb = two ? wa + per_filter : wa;
                        uint32_t acc[4], k;
                        acc[0] = acc[1] = (uint32_t)cp.folded_bias[oc];
                        acc[2] = acc[3] = two ? (uint32_t)cp.folded_bias[oc + 1] : 0u;
                        for (k = 0; k < win.nseg; ++k) {
                            const uint32_t off = seg_offset(&win, k);
                            mq_dot_2x2(wa + k * win.seg, wb + k * win.seg, xa + off, xb + off, win.seg, acc);
                        }
                        yp[oc] = mq_channel_output(acc[0], &cp, oc, out->zero_point, p.act_min, p.act_max);
                        yp[out_c + oc] = mq_channel_output(acc[1], &cp, oc, out->zero_point, p.act_min, p.act_max);
                        if (two) {
                            yp[oc + 1] = mq_channel_output(acc[2], &cp, oc + 1, out->zero_point, p.act_min, p.act_max);
                            yp[out_c + oc + 1] = mq_channel_output(acc[3], &cp, oc + 1, out->zero_point, p.act_min, p.act_max);
                        }
                    }
                    ox += 2;
                    continue;
                }
                if (!grouped) { /* one pixel by two channels; a border window as its rows' valid runs */
                    const int32_t ky0 = y0 < 0 ? (-y0 + o->dilation_h - 1) / o->dilation_h : 0;
                    const int32_t kx0 = x0 < 0 ? (-x0 + o->dilation_w - 1) / o->dilation_w : 0;
                    int32_t ky1 = k_h, kx1 = k_w;
                    while (ky1 > ky0 && y0 + o->dilation_h * (ky1 - 1) >= in_h) --ky1;
                    while (kx1 > kx0 && x0 + o->dilation_w * (kx1 - 1) >= in_w) --kx1;
                    for (oc = 0; oc < out_c; oc += 2) {
                        const int two = oc + 1 < out_c;
                        const int8_t *wa = w + (uint32_t)oc * per_filter, *wb = two ? wa + per_filter : wa;
                        uint32_t acc[2];
                        int32_t ky, kx;
                        if (inside) {
                            const int8_t *xp = x + mq_offset4(in->dims, b, y0, x0, 0);
                            uint32_t k;
                            acc[0] = (uint32_t)cp.folded_bias[oc];
                            acc[1] = two ? (uint32_t)cp.folded_bias[oc + 1] : 0u;
                            for (k = 0; k < win.nseg; ++k)
                                mq_dot_2x1(wa + k * win.seg, wb + k * win.seg, xp + seg_offset(&win, k), win.seg, acc);
                        } else { /* taps outside the input are skipped: sum(w * (x + offset)) over the rest */
                            uint32_t sums[2] = {0u, 0u};
                            acc[0] = bias != NULL ? (uint32_t)mq_load_i32(bias->data, (uint32_t)oc) : 0u;
                            acc[1] = bias != NULL && two ? (uint32_t)mq_load_i32(bias->data, (uint32_t)oc + 1u) : 0u;
                            for (ky = ky0; ky < ky1; ++ky) {
                                const int32_t iy = y0 + o->dilation_h * ky;
                                if (win.whole_rows) { /* kx0..kx1 of this row: one contiguous run */
                                    const uint32_t wo = ((uint32_t)ky * (uint32_t)k_w + (uint32_t)kx0) * (uint32_t)k_c;
                                    const uint32_t n = (uint32_t)(kx1 - kx0) * (uint32_t)k_c;
                                    const int8_t *xp = x + mq_offset4(in->dims, b, iy, x0 + kx0, 0);
                                    if (kx1 <= kx0) continue;
                                    mq_dot_2x1(wa + wo, wb + wo, xp, n, acc);
                                    mq_sum_2(wa + wo, wb + wo, n, sums);
                                    continue;
                                }
                                for (kx = kx0; kx < kx1; ++kx) {
                                    const uint32_t wo = ((uint32_t)ky * (uint32_t)k_w + (uint32_t)kx) * (uint32_t)k_c;
                                    const int8_t *xp = x + mq_offset4(in->dims, b, iy, x0 + o->dilation_w * kx, 0);
                                    mq_dot_2x1(wa + wo, wb + wo, xp, (uint32_t)k_c, acc);
                                    mq_sum_2(wa + wo, wb + wo, (uint32_t)k_c, sums);
                                }
                            }
                            acc[0] += (uint32_t)in_offset * sums[0];
                            acc[1] += (uint32_t)in_offset * sums[1];
                        }
                        yp[oc] = mq_channel_output(acc[0], &cp, oc, out->zero_point, p.act_min, p.act_max);
                        if (two) yp[oc + 1] = mq_channel_output(acc[1], &cp, oc + 1, out->zero_point, p.act_min, p.act_max);
                    }
                    ox += 1;
                    continue;
                }
                for (oc = 0; oc < out_c; ++oc) {
                    const int32_t ic0 = (oc / per_group) * k_c;
                    const int8_t *wp = w + (uint32_t)oc * per_filter;
                    uint32_t acc; /* int32 arithmetic modulo 2^32, as TFLM's */
                    int32_t ky, kx, ic;
                    if (inside) {
                        const int8_t *xp = x + mq_offset4(in->dims, b, y0, x0, ic0);
                        uint32_t k;
                        acc = (uint32_t)cp.folded_bias[oc];
                        for (k = 0; k < win.nseg; ++k) mq_dot_1x1(wp + k * win.seg, xp + seg_offset(&win, k), win.seg, &acc);
                    } else {
                        acc = bias != NULL ? (uint32_t)mq_load_i32(bias->data, (uint32_t)oc) : 0u;
                        for (ky = 0; ky < k_h; ++ky) {
                            const int32_t iy = y0 + o->dilation_h * ky;
                            for (kx = 0; kx < k_w; ++kx, wp += k_c) {
                                const int32_t ix = x0 + o->dilation_w * kx;
                                const int8_t *xp;
                                if (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w) continue;
                                xp = x + mq_offset4(in->dims, b, iy, ix, ic0);
                                for (ic = 0; ic < k_c; ++ic)
                                    acc += (uint32_t)((int32_t)wp[ic] * ((int32_t)xp[ic] + in_offset));
                            }
                        }
                    }
                    yp[oc] = mq_channel_output(acc, &cp, oc, out->zero_point, p.act_min, p.act_max);
                }
                ox += 1;
            }
        }
    }
    return MQ_OK;
}
