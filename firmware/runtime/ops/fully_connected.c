/*
 * FULLY_CONNECTED, int8 activations, int8 weights [units, depth] (per-channel or per-tensor),
 * optional int32 bias [units]. The input of any rank is read as [batches, depth] rows, batches
 * being the output's element count over its last dimension (units), as TFLM does; keep_num_dims
 * only changes the output's shape, which the model states.
 *
 * Arithmetic as TFLM's reference FullyConnected / FullyConnectedPerChannel. Per-tensor and
 * per-channel multipliers are both (double)input_scale * (double)filter_scale / (double)output_scale:
 * that is what the tflm-host oracle (tflite-micro 0.dev20261023) computes, measured on scales where
 * a float product would round differently (tests/test_builtin_ops_linear.py). TFLM's source of
 * August 2026 still multiplies the per-tensor scales in float; a TFLM built from it can differ
 * from tflm-host (and from this runtime) by one LSB on rare outputs.
 */
#include <math.h>

#include "../mq_fixedpoint.h"
#include "mq_dot.h"
#include "mq_op_util.h"


typedef struct fc_params {
    int32_t units, depth, batches;
    int32_t act_min, act_max;
} fc_params;

/* Validates the operator and derives its parameters (at mq_init, with the options at hand). */
static mq_status fc_prepare(const mq_op_ctx *ctx, fc_params *p)
{
    const mq_op_options *o = ctx->options;
    const mq_tensor *in, *filter, *bias, *out;
    mq_weighted_operands w;
    uint32_t out_elements;
    mq_status s;

    if ((s = mq_weighted_operands_of(ctx, 2, &w)) != MQ_OK) return s;
    in = w.in;
    filter = w.filter;
    bias = w.bias;
    out = w.out;
    if (o->weights_format != 0) return MQ_ERR_UNSUPPORTED_OPTION; /* shuffled weights */
    if (out->ndims < 1) return MQ_ERR_SHAPE;

    p->units = filter->dims[0];
    p->depth = filter->dims[1];
    if (out->dims[out->ndims - 1] != p->units) return MQ_ERR_SHAPE;
    out_elements = mq_tensor_elements(out);
    p->batches = (int32_t)(out_elements / (uint32_t)p->units);
    /* Rows of the input: exactly batches x depth elements. */
    if ((uint64_t)mq_tensor_elements(in) != (uint64_t)(uint32_t)p->batches * (uint32_t)p->depth)
        return MQ_ERR_SHAPE;
    if ((s = mq_check_bias(bias, p->units)) != MQ_OK) return s;

    if ((s = mq_check_int8_weights(filter, 0)) != MQ_OK) return s;
    return mq_activation_range_int8(o->activation, out, &p->act_min, &p->act_max);
}

static mq_status check_scales(const mq_weighted_operands *w, int32_t units)
{
    if (w->filter->nscales == 1 && w->bias != NULL) {
        /* TFLM's per-tensor path insists that the bias scale is input_scale * filter_scale
         * (within 2% of an output step). */
        const double product = (double)w->in->scale * (double)w->filter->scale;
        if (!(fabs(product - (double)w->bias->scale) / (double)w->out->scale <= 0.02)) return MQ_ERR_QUANTIZATION;
    }
    /* Per-tensor weights: one multiplier for all units. */
    return mq_check_channel_multipliers(w, w->filter->nscales == 1 ? 1 : units);
}

mq_status mq_check_fully_connected(const mq_op_ctx *ctx)
{
    fc_params p;
    const mq_status s = fc_prepare(ctx, &p);
    if (s != MQ_OK) return s;
    {
        const mq_weighted_operands w = mq_weighted_operands_at(ctx);
        return check_scales(&w, p.units);
    }
}

/* fc_params, then the units' (mq_channel_params). */
mq_status mq_prepare_fully_connected(const mq_op_ctx *ctx, uint8_t *out, uint32_t *bytes)
{
    const mq_tensor *filter = ctx->inputs[1];
    const mq_weighted_operands w = mq_weighted_operands_at(ctx);
    mq_status s = out != NULL ? fc_prepare(ctx, (fc_params *)(void *)out) : MQ_OK;
    if (s == MQ_OK)
        s = mq_prepare_channel_params(&w, filter->dims[0], (uint32_t)filter->dims[1], (uint32_t)filter->dims[1], 1u,
                                      out != NULL ? out + sizeof(fc_params) : NULL, bytes);
    *bytes += (uint32_t)sizeof(fc_params);
    return s;
}

mq_status mq_eval_fully_connected(const mq_op_ctx *ctx)
{
    const mq_tensor *in = ctx->inputs[0], *filter = ctx->inputs[1];
    const mq_tensor *out = ctx->outputs[0];
    const int8_t *x = (const int8_t *)in->data;
    const int8_t *w = (const int8_t *)filter->data;
    int8_t *y = (int8_t *)out->data;
    const fc_params p = *(const fc_params *)(const void *)ctx->prepared;
    const mq_channel_params cp = mq_channel_params_of(ctx->prepared + sizeof(fc_params), p.units);
    int32_t b, oc;

    /* Pairs of units (and of batch rows) through mq_dot: every loaded word used twice. */
    for (b = 0; b < p.batches; b += 2) {
        const int two_rows = b + 1 < p.batches;
        const int8_t *row = x + (uint32_t)b * (uint32_t)p.depth;
        int8_t *yrow = y + (uint32_t)b * (uint32_t)p.units;
        for (oc = 0; oc < p.units; oc += 2) {
            const int two = oc + 1 < p.units;
            const int8_t *wa = w + (uint32_t)oc * (uint32_t)p.depth, *wb = two ? wa + p.depth : wa;
            /* int32 arithmetic modulo 2^32, as TFLM's; the zero point is folded into the bias (prepare) */
            uint32_t acc[4];
            int32_t i;
            acc[0] = acc[1] = (uint32_t)cp.folded_bias[oc];
            acc[2] = acc[3] = two ? (uint32_t)cp.folded_bias[oc + 1] : 0u;
            if (two_rows) {
                mq_dot_2x2(wa, wb, row, row + p.depth, (uint32_t)p.depth, acc);
            } else {
                uint32_t one[2];
                one[0] = acc[0];
                one[1] = acc[2];
                mq_dot_2x1(wa, wb, row, (uint32_t)p.depth, one);
                acc[0] = one[0];
                acc[2] = one[1];
            }
            for (i = 0; i < 4; ++i) {
                const int32_t unit = oc + i / 2, r = i % 2;
                if (unit >= p.units || (r == 1 && !two_rows)) continue;
                yrow[(uint32_t)r * (uint32_t)p.units + (uint32_t)unit] =
                    mq_channel_output(acc[i], &cp, unit, out->zero_point, p.act_min, p.act_max);
            }
        }
    }
    return MQ_OK;
}
