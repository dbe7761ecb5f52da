/*
 * HARD_SWISH, int8 -> int8: y = x * relu6(x + 3) / 6, in TensorFlow Lite Micro's reference
 * integer arithmetic, which works on int16 fixed-point values:
 *
 *   hires   = (x - in_zp) * 2^7                          the input on scale in_scale / 128
 *   on_out  = srdhm16(hires, out_mult)                    ~ x on the output scale, before its shift
 *   reluish = hires rescaled by reluish_mult * 2^reluish_exp so that x = 3 maps to 2^15
 *             (saturating in int16), then mapped from [-1, 1] to [0, 1]: (r + 2^15) / 2
 *   y       = rdivpot16(sdhm16(reluish, on_out), -out_exp) + out_zp, clamped to int8
 *
 * The hires scale in_scale / 128 is a float; the two multipliers are the double ratios
 * hires / out_scale and hires / (3 / 2^15) through QuantizeMultiplier, then rounded to 16 bits.
 * (The tflite-micro build that serves as the oracle divides in double; older TFLM sources divide
 * in float, which rounds differently in rare ties.) TFLM requires out_exp <= 0 (an output
 * multiplier below 1); so does check(). The multipliers are computed once, by prepare() at
 * mq_init: eval() reads them from ctx->prepared.
 */
#include "mq_fixed_math.h"

typedef struct hard_swish_params {
    int32_t in_zp, out_zp;
    int16_t out_mult, reluish_mult;
    int out_exp, reluish_exp;
} hard_swish_params;

/* A Q31 multiplier (0 or in [2^30, 2^31)) rounded to Q15, saturating at INT16_MAX. */
static int16_t q15_of_q31(int32_t m)
{
    if (m >= INT32_MAX - 32768) return INT16_MAX;
    return (int16_t)((m + 32768) >> 16);
}

static mq_status hard_swish_params_of(const mq_tensor *in, const mq_tensor *out, hard_swish_params *p)
{
    const double hires_scale = (double)((1.0f / 128.0f) * in->scale); /* product in float */
    const double out_ratio = hires_scale / (double)out->scale;
    const double reluish_ratio = hires_scale / (3.0 / 32768.0);
    int32_t m; /* scales are finite and > 0 (checked), so both ratios are finite */
    mq_quantize_multiplier(out_ratio, &m, &p->out_exp);
    p->out_mult = q15_of_q31(m);
    if (p->out_exp > 0) return MQ_ERR_QUANTIZATION;
    mq_quantize_multiplier(reluish_ratio, &m, &p->reluish_exp);
    p->reluish_mult = q15_of_q31(m);
    /* A saturating shift by reluish_exp - 1 <= 30 bits is defined in TFLM; more needs an input
     * scale above ~2^24. */
    if (p->reluish_exp > 31) return MQ_ERR_QUANTIZATION;
    p->in_zp = in->zero_point;
    p->out_zp = out->zero_point;
    return MQ_OK;
}

static int8_t hard_swish_one(int32_t x, const hard_swish_params *p)
{
    const int16_t hires = (int16_t)((x - p->in_zp) * 128); /* |x - zp| <= 255 */
    const int16_t on_out = mq_srdhm_i16(hires, p->out_mult);
    int16_t reluish = hires;
    int16_t y;
    /* Left shifts: all but the last bit before the multiplication, the last one after it, so
     * that only the final shift can saturate. */
    if (p->reluish_exp > 0) reluish = mq_sat_shift_left_i16(reluish, p->reluish_exp - 1);
    reluish = mq_srdhm_i16(reluish, p->reluish_mult);
    if (p->reluish_exp > 0) reluish = mq_sat_shift_left_i16(reluish, 1);
    if (p->reluish_exp < 0) reluish = mq_rounding_divide_by_pot_i16(reluish, -p->reluish_exp);
    reluish = (int16_t)(((int32_t)reluish + 32768) >> 1);
    y = mq_rounding_divide_by_pot_i16(mq_sdhm_i16(reluish, on_out), -p->out_exp);
    y = mq_wrap_i16((int32_t)y + p->out_zp);
    return (int8_t)(y < -128 ? -128 : y > 127 ? 127 : y);
}

mq_status mq_check_hard_swish(const mq_op_ctx *ctx)
{
    hard_swish_params p;
    const mq_status s = mq_nl_check_int8_unary(ctx);
    if (s != MQ_OK) return s;
    return hard_swish_params_of(ctx->inputs[0], ctx->outputs[0], &p);
}

mq_status mq_prepare_hard_swish(const mq_op_ctx *ctx, uint8_t *out, uint32_t *bytes)
{
    *bytes = (uint32_t)sizeof(hard_swish_params);
    if (out == NULL) return MQ_OK;
    return hard_swish_params_of(ctx->inputs[0], ctx->outputs[0], (hard_swish_params *)(void *)out);
}

mq_status mq_eval_hard_swish(const mq_op_ctx *ctx)
{
    const int8_t *x = (const int8_t *)ctx->inputs[0]->data;
    int8_t *y = (int8_t *)ctx->outputs[0]->data;
    const uint32_t n = mq_tensor_elements(ctx->inputs[0]);
    const hard_swish_params p = *(const hard_swish_params *)(const void *)ctx->prepared;
    uint32_t i;
    for (i = 0; i < n; ++i) y[i] = hard_swish_one(x[i], &p);
    return MQ_OK;
}
