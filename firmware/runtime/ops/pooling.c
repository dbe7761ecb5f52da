/*
 * AVERAGE_POOL_2D and MAX_POOL_2D, int8 [N,H,W,C] -> [N,OH,OW,C], SAME / VALID padding, strides,
 * fused activation. As TFLM's reference integer pooling: the window is clipped to the input (padding
 * never counts), the average rounds half away from zero by integer division, and input and output
 * must share their quantization (no requantization happens). The paddings and the activation
 * range are derived once, by prepare() at mq_init (the quantization check compares in double):
 * eval() reads them, and the window's options, from ctx->prepared.
 *
 * Each output pixel walks its clipped window tap by tap, all channels of a tap at once: MAX_POOL
 * keeps the running maximum in the output pixel itself (four channels per SSUB8 + SEL with the DSP
 * extension), AVERAGE_POOL sums blocks of channels in int32.
 */
#include <math.h>
#include <string.h>

#include "mq_op_util.h"

#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#endif

typedef struct pool_params {
    int32_t stride_h, stride_w, filter_h, filter_w;
    int32_t pad_h, pad_w;
    int32_t act_min, act_max;
} pool_params;

static mq_status pool_prepare(const mq_op_ctx *ctx, pool_params *p)
{
    const mq_op_options *o = ctx->options;
    const mq_tensor *in, *out;
    mq_status s;

    if (ctx->ninputs != 1 || ctx->noutputs != 1) return MQ_ERR_MALFORMED;
    in = ctx->inputs[0];
    out = ctx->outputs[0];
    if (in == NULL || out == NULL || o == NULL) return MQ_ERR_MALFORMED;
    if ((s = mq_check_int8_activation(in)) != MQ_OK) return s;
    if ((s = mq_check_int8_activation(out)) != MQ_OK) return s;
    if (in->ndims != 4 || out->ndims != 4) return MQ_ERR_SHAPE;
    if (in->dims[0] != out->dims[0] || in->dims[3] != out->dims[3]) return MQ_ERR_SHAPE;

    if ((s = mq_window_2d(o, in, out, o->filter_h, o->filter_w, 1, 1, &p->pad_h, &p->pad_w)) != MQ_OK) return s;
    /* The int32 sum of an averaging window stays exact: at most 2^23 values of magnitude <= 128. */
    {
        const int64_t win_h = o->filter_h < in->dims[1] ? o->filter_h : in->dims[1];
        const int64_t win_w = o->filter_w < in->dims[2] ? o->filter_w : in->dims[2];
        if (win_h * win_w > ((int64_t)1 << 23)) return MQ_ERR_LIMIT;
    }

    /* TFLM: |input_scale - output_scale| (a float difference) <= 1e-6 and equal zero points. */
    if (!((double)fabsf(in->scale - out->scale) <= 1.0e-6)) return MQ_ERR_QUANTIZATION;
    if (in->zero_point != out->zero_point) return MQ_ERR_QUANTIZATION;
    p->stride_h = o->stride_h;
    p->stride_w = o->stride_w;
    p->filter_h = o->filter_h;
    p->filter_w = o->filter_w;
    return mq_activation_range_int8(o->activation, out, &p->act_min, &p->act_max);
}

mq_status mq_check_average_pool_2d(const mq_op_ctx *ctx)
{
    pool_params p;
    return pool_prepare(ctx, &p);
}

mq_status mq_check_max_pool_2d(const mq_op_ctx *ctx)
{
    pool_params p;
    return pool_prepare(ctx, &p);
}

static mq_status prepare(const mq_op_ctx *ctx, uint8_t *out, uint32_t *bytes)
{
    *bytes = (uint32_t)sizeof(pool_params);
    return out == NULL ? MQ_OK : pool_prepare(ctx, (pool_params *)(void *)out);
}

mq_status mq_prepare_average_pool_2d(const mq_op_ctx *ctx, uint8_t *out, uint32_t *bytes)
{
    return prepare(ctx, out, bytes);
}

mq_status mq_prepare_max_pool_2d(const mq_op_ctx *ctx, uint8_t *out, uint32_t *bytes)
{
    return prepare(ctx, out, bytes);
}

/* acc[c] = max(acc[c], x[c]) for c < n. */
static void max_into(int8_t *acc, const int8_t *x, int32_t n)
{
    int32_t c = 0;
#if defined(__ARM_FEATURE_DSP)
    for (; c + 4 <= n; c += 4) { /* SSUB8 sets a GE flag per byte where x >= acc, SEL takes those */
        uint32_t a, v;
        memcpy(&a, acc + c, 4);
        memcpy(&v, x + c, 4);
        (void)__ssub8(v, a);
        a = __sel(v, a);
        memcpy(acc + c, &a, 4);
    }
#endif
    for (; c < n; ++c)
        if (x[c] > acc[c]) acc[c] = x[c];
}

/* Channels per block of AVERAGE_POOL's int32 sums (on the stack). */
#define POOL_SUM_BLOCK 32

static void max_pixel(const int8_t *win, uint32_t row, int32_t nky, int32_t nkx, int32_t depth,
                      const pool_params *p, int8_t *yp)
{
    int32_t ky, kx, c;
    memset(yp, MQ_INT8_MIN, (size_t)depth); /* the maximum of an empty window, as the reference's start */
    for (ky = 0; ky < nky; ++ky)
        for (kx = 0; kx < nkx; ++kx) max_into(yp, win + (uint32_t)ky * row + (uint32_t)kx * (uint32_t)depth, depth);
    if (p->act_min > MQ_INT8_MIN || p->act_max < 127)
        for (c = 0; c < depth; ++c) yp[c] = (int8_t)mq_clamp(yp[c], p->act_min, p->act_max);
}

static void average_pixel(const int8_t *win, uint32_t row, int32_t nky, int32_t nkx, int32_t depth,
                          const pool_params *p, int8_t *yp)
{
    const int32_t count = nky * nkx; /* >= 1: check() proved the window is never empty */
    int32_t sum[POOL_SUM_BLOCK];
    int32_t c0, c, ky, kx;
    for (c0 = 0; c0 < depth; c0 += POOL_SUM_BLOCK) {
        const int32_t n = depth - c0 < POOL_SUM_BLOCK ? depth - c0 : POOL_SUM_BLOCK;
        for (c = 0; c < n; ++c) sum[c] = 0;
        for (ky = 0; ky < nky; ++ky) {
            const int8_t *xr = win + (uint32_t)ky * row + (uint32_t)c0;
            for (kx = 0; kx < nkx; ++kx, xr += depth)
                for (c = 0; c < n; ++c) sum[c] += xr[c];
        }
        for (c = 0; c < n; ++c) { /* rounds half away from zero, by integer division (as TFLM) */
            const int32_t v = sum[c] > 0 ? (sum[c] + count / 2) / count : (sum[c] - count / 2) / count;
            yp[c0 + c] = (int8_t)mq_clamp(v, p->act_min, p->act_max);
        }
    }
}

/* One pass over the output; `average` selects the reduction. */
static mq_status pool_eval(const mq_op_ctx *ctx, int average)
{
    const mq_tensor *in = ctx->inputs[0], *out = ctx->outputs[0];
    const int8_t *x = (const int8_t *)in->data;
    int8_t *y = (int8_t *)out->data;
    const int32_t in_h = in->dims[1], in_w = in->dims[2], depth = in->dims[3];
    const uint32_t row = (uint32_t)in_w * (uint32_t)depth;
    const pool_params p = *(const pool_params *)(const void *)ctx->prepared;
    int32_t b, oy, ox;

    for (b = 0; b < in->dims[0]; ++b) {
        for (oy = 0; oy < out->dims[1]; ++oy) {
            const int32_t y0 = oy * p.stride_h - p.pad_h;
            const int32_t ky_start = y0 < 0 ? -y0 : 0;
            const int32_t ky_end = p.filter_h < in_h - y0 ? p.filter_h : in_h - y0;
            for (ox = 0; ox < out->dims[2]; ++ox) {
                const int32_t x0 = ox * p.stride_w - p.pad_w;
                const int32_t kx_start = x0 < 0 ? -x0 : 0;
                const int32_t kx_end = p.filter_w < in_w - x0 ? p.filter_w : in_w - x0;
                const int32_t nky = ky_end > ky_start ? ky_end - ky_start : 0;
                const int32_t nkx = kx_end > kx_start ? kx_end - kx_start : 0;
                int8_t *yp = y + mq_offset4(out->dims, b, oy, ox, 0);
                if (nky == 0 || nkx == 0) {
                    if (average) return MQ_ERR_SHAPE; /* check() proved it never happens; stay safe */
                    max_pixel(x, row, 0, 0, depth, &p, yp);
                    continue;
                }
                {
                    const int8_t *win = x + mq_offset4(in->dims, b, y0 + ky_start, x0 + kx_start, 0);
                    if (average) average_pixel(win, row, nky, nkx, depth, &p, yp);
                    else max_pixel(win, row, nky, nkx, depth, &p, yp);
                }
            }
        }
    }
    return MQ_OK;
}

mq_status mq_eval_average_pool_2d(const mq_op_ctx *ctx)
{
    return pool_eval(ctx, 1);
}

mq_status mq_eval_max_pool_2d(const mq_op_ctx *ctx)
{
    return pool_eval(ctx, 0);
}
