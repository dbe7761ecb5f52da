/*
 * LEAKY_RELU, int8 -> int8, y = x for x >= 0 and alpha * x below, as TFLM's reference kernel:
 *   v = x - in_zp
 *   y = clamp(out_zp + MultiplyByQuantizedMultiplier(v, identity), -128, 127)   for v >= 0
 *   y = clamp(out_zp +/- MultiplyByQuantizedMultiplier(v, |alpha multiplier|))  for v < 0
 * with identity = QuantizeMultiplier(in_scale / out_scale) and alpha multiplier =
 * QuantizeMultiplier(in_scale * alpha / out_scale), both in double: so does the tflite-micro build
 * that serves as the oracle (measured; TFLM sources of 2023-2026 compute them in float, which
 * changes results at some quantizations). A negative alpha gives a negative multiplier whose
 * magnitude is applied and the sign restored afterwards. Both multipliers are computed once, by
 * prepare() at mq_init: eval() reads them from ctx->prepared.
 */
#include <math.h>

#include "mq_fixed_math.h"
#include "mq_op_util.h"

typedef struct leaky_params {
    int32_t identity_multiplier, alpha_multiplier; /* alpha_multiplier >= 0 */
    int identity_shift, alpha_shift;
    int alpha_negative;
    int32_t in_zp, out_zp;
} leaky_params;

static mq_status leaky_prepare(const mq_op_ctx *ctx, leaky_params *p)
{
    const mq_tensor *in, *out;
    const float alpha = ctx->options != NULL ? ctx->options->alpha : 0.0f;
    double real_alpha;
    mq_status s = mq_nl_check_int8_unary(ctx);
    if (s != MQ_OK) return s;
    in = ctx->inputs[0];
    out = ctx->outputs[0];
    if (!isfinite(alpha)) return MQ_ERR_UNSUPPORTED_OPTION;

    real_alpha = (double)in->scale * (double)alpha / (double)out->scale;
    if (!isfinite(real_alpha)) return MQ_ERR_QUANTIZATION;
    mq_quantize_multiplier(real_alpha, &p->alpha_multiplier, &p->alpha_shift);
    /* A significand of exactly -1 has no positive int32 counterpart. */
    if (p->alpha_multiplier == INT32_MIN || p->alpha_shift > MQ_MAX_LEFT_SHIFT) return MQ_ERR_QUANTIZATION;
    p->alpha_negative = p->alpha_multiplier < 0;
    if (p->alpha_negative) p->alpha_multiplier = -p->alpha_multiplier;

    s = mq_checked_multiplier((double)in->scale / (double)out->scale, &p->identity_multiplier, &p->identity_shift);
    if (s != MQ_OK) return s;
    p->in_zp = in->zero_point;
    p->out_zp = out->zero_point;
    return MQ_OK;
}

mq_status mq_check_leaky_relu(const mq_op_ctx *ctx)
{
    leaky_params p;
    return leaky_prepare(ctx, &p);
}

mq_status mq_prepare_leaky_relu(const mq_op_ctx *ctx, uint8_t *out, uint32_t *bytes)
{
    *bytes = (uint32_t)sizeof(leaky_params);
    return out == NULL ? MQ_OK : leaky_prepare(ctx, (leaky_params *)(void *)out);
}

mq_status mq_eval_leaky_relu(const mq_op_ctx *ctx)
{
    const int8_t *x = (const int8_t *)ctx->inputs[0]->data;
    int8_t *y = (int8_t *)ctx->outputs[0]->data;
    const uint32_t n = mq_tensor_elements(ctx->inputs[0]);
    const leaky_params p = *(const leaky_params *)(const void *)ctx->prepared;
    uint32_t i;
    for (i = 0; i < n; ++i) {
        const int32_t v = (int32_t)x[i] - p.in_zp;
        int32_t r;
        if (v >= 0) {
            r = mq_multiply_by_quantized_multiplier(v, p.identity_multiplier, p.identity_shift);
        } else {
            r = mq_multiply_by_quantized_multiplier(v, p.alpha_multiplier, p.alpha_shift);
            if (p.alpha_negative) r = mq_wrap_sub(0, r);
        }
        y[i] = (int8_t)mq_clamp(mq_wrap_add(p.out_zp, r), MQ_INT8_MIN, MQ_INT8_MAX);
    }
    return MQ_OK;
}
