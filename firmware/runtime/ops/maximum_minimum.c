/*
 * MAXIMUM and MINIMUM, int8 with broadcasting (up to MQ_MAX_DIMS dimensions).
 *
 * As TFLM's kernels: the raw int8 values are compared and the larger (smaller) one is written
 * unchanged. No requantization happens, whatever the tensors' scales and zero points (the
 * converter gives all three the same quantization).
 */
#include "mq_op_util.h"

static void maximum_row(const int8_t *in1, uint32_t step1, const int8_t *in2, uint32_t step2,
                        int8_t *out, int32_t n, const void *params)
{
    int32_t i;
    (void)params;
    for (i = 0; i < n; ++i) {
        const int8_t a = in1[(uint32_t)i * step1], b = in2[(uint32_t)i * step2];
        out[i] = a > b ? a : b;
    }
}

static void minimum_row(const int8_t *in1, uint32_t step1, const int8_t *in2, uint32_t step2,
                        int8_t *out, int32_t n, const void *params)
{
    int32_t i;
    (void)params;
    for (i = 0; i < n; ++i) {
        const int8_t a = in1[(uint32_t)i * step1], b = in2[(uint32_t)i * step2];
        out[i] = a < b ? a : b;
    }
}

static mq_status check(const mq_op_ctx *ctx)
{
    const mq_tensor *a, *b, *out;
    mq_broadcast bc;
    return mq_binary_int8_operands(ctx, &a, &b, &out, &bc);
}

static mq_status run(const mq_op_ctx *ctx, mq_broadcast_row_fn row)
{
    mq_broadcast bc;
    (void)mq_broadcast_prepare(ctx->inputs[0], ctx->inputs[1], ctx->outputs[0], &bc); /* checked at mq_init */
    mq_broadcast_run(&bc, (const int8_t *)ctx->inputs[0]->data, (const int8_t *)ctx->inputs[1]->data,
                     (int8_t *)ctx->outputs[0]->data, row, NULL);
    return MQ_OK;
}

mq_status mq_check_maximum(const mq_op_ctx *ctx) { return check(ctx); }
mq_status mq_eval_maximum(const mq_op_ctx *ctx) { return run(ctx, maximum_row); }
mq_status mq_check_minimum(const mq_op_ctx *ctx) { return check(ctx); }
mq_status mq_eval_minimum(const mq_op_ctx *ctx) { return run(ctx, minimum_row); }
