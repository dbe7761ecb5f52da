/*
 * RELU and RELU6, int8 -> int8, as TensorFlow Lite Micro's reference kernels compute them.
 *
 * RELU requantizes from the input to the output scale and clamps at the output's zero point:
 *   multiplier = QuantizeMultiplier(double(in_scale) / double(out_scale))
 *   y = clamp(out_zp + MultiplyByQuantizedMultiplier(x - in_zp), max(-128, out_zp), 127)
 * (The division is in double in the tflite-micro build that serves as the oracle; older TFLM
 * sources divide in float, which rounds differently in rare ties.)
 *
 * RELU6 only clamps the input values to [in_zp, q(6)], q(6) = clamp(round(6 / in_scale) + in_zp)
 * in the input's quantization, and ignores the output tensor's scale and zero point. TFLM does
 * exactly that, although the converter gives a standalone RELU6 an output quantization of its
 * own (calibrated on [0, 6]): TFLM's result then differs from the float model and from LiteRT.
 * This runtime reproduces it, to stay byte-identical with TFLM.
 *
 * The multiplier (RELU) and q(6) (RELU6) are computed once, by prepare() at mq_init, in double:
 * eval() reads them from ctx->prepared.
 */
#include <math.h>

#include "mq_fixed_math.h"

typedef struct relu_params {
    int32_t multiplier;
    int shift;
    int32_t in_zp, out_zp, act_min;
} relu_params;

static mq_status relu_params_of(const mq_tensor *in, const mq_tensor *out, relu_params *p)
{
    mq_quantize_multiplier((double)in->scale / (double)out->scale, &p->multiplier, &p->shift);
    /* TFLM's shift of the input by up to 30 bits is defined; beyond, a scale ratio >= 2^30 is
     * not a real model. */
    if (p->shift > 30) return MQ_ERR_QUANTIZATION;
    p->in_zp = in->zero_point;
    p->out_zp = out->zero_point;
    p->act_min = out->zero_point > -128 ? out->zero_point : -128; /* round(0 / scale) == 0 */
    return MQ_OK;
}

mq_status mq_check_relu(const mq_op_ctx *ctx)
{
    relu_params p;
    const mq_status s = mq_nl_check_int8_unary(ctx);
    if (s != MQ_OK) return s;
    return relu_params_of(ctx->inputs[0], ctx->outputs[0], &p);
}

mq_status mq_prepare_relu(const mq_op_ctx *ctx, uint8_t *out, uint32_t *bytes)
{
    *bytes = (uint32_t)sizeof(relu_params);
    return out == NULL ? MQ_OK : relu_params_of(ctx->inputs[0], ctx->outputs[0], (relu_params *)(void *)out);
}

mq_status mq_eval_relu(const mq_op_ctx *ctx)
{
    const int8_t *x = (const int8_t *)ctx->inputs[0]->data;
    int8_t *y = (int8_t *)ctx->outputs[0]->data;
    const uint32_t n = mq_tensor_elements(ctx->inputs[0]);
    const relu_params p = *(const relu_params *)(const void *)ctx->prepared;
    uint32_t i;
    for (i = 0; i < n; ++i) {
        int32_t v = mq_wrap_add(p.out_zp, mq_multiply_by_quantized_multiplier(
                                              (int32_t)x[i] - p.in_zp, p.multiplier, p.shift));
        if (v < p.act_min) v = p.act_min;
        if (v > 127) v = 127;
        y[i] = (int8_t)v;
    }
    return MQ_OK;
}

/* q(6) in the input's quantization, clamped to int8. */
static mq_status relu6_upper(const mq_tensor *in, int32_t *upper)
{
    const double six = (double)roundf(6.0f / in->scale) + (double)in->zero_point;
    /* Beyond int32 the reference's conversion is undefined (scales below ~3e-9). */
    if (!(six < 2147483647.0)) return MQ_ERR_QUANTIZATION;
    *upper = six > 127.0 ? 127 : (int32_t)six;
    return MQ_OK;
}

mq_status mq_check_relu6(const mq_op_ctx *ctx)
{
    int32_t upper;
    const mq_status s = mq_nl_check_int8_unary(ctx);
    if (s != MQ_OK) return s;
    return relu6_upper(ctx->inputs[0], &upper);
}

mq_status mq_prepare_relu6(const mq_op_ctx *ctx, uint8_t *out, uint32_t *bytes)
{
    *bytes = (uint32_t)sizeof(int32_t);
    return out == NULL ? MQ_OK : relu6_upper(ctx->inputs[0], (int32_t *)(void *)out);
}

mq_status mq_eval_relu6(const mq_op_ctx *ctx)
{
    const int8_t *x = (const int8_t *)ctx->inputs[0]->data;
    int8_t *y = (int8_t *)ctx->outputs[0]->data;
    const uint32_t n = mq_tensor_elements(ctx->inputs[0]);
    const int32_t lower = ctx->inputs[0]->zero_point;
    const int32_t upper = *(const int32_t *)(const void *)ctx->prepared;
    uint32_t i;
    for (i = 0; i < n; ++i) {
        const int32_t v = x[i];
        y[i] = (int8_t)(v > upper ? upper : v < lower ? lower : v);
    }
    return MQ_OK;
}
