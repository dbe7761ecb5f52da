/* The one place that maps a TFLite builtin operator code to its operator module (in ops/). */
#include "mq_internal.h"

#define MQ_KERNEL(code, name) {code, mq_check_##name, mq_eval_##name}

static const mq_kernel kernels[] = {
    MQ_KERNEL(MQ_OP_ADD, add),
    MQ_KERNEL(MQ_OP_AVERAGE_POOL_2D, average_pool_2d),
    MQ_KERNEL(MQ_OP_CONCATENATION, concatenation),
    MQ_KERNEL(MQ_OP_CONV_2D, conv_2d),
    MQ_KERNEL(MQ_OP_DEPTHWISE_CONV_2D, depthwise_conv_2d),
    MQ_KERNEL(MQ_OP_DEQUANTIZE, dequantize),
    MQ_KERNEL(MQ_OP_FULLY_CONNECTED, fully_connected),
    MQ_KERNEL(MQ_OP_LOGISTIC, logistic),
    MQ_KERNEL(MQ_OP_MAX_POOL_2D, max_pool_2d),
    MQ_KERNEL(MQ_OP_MUL, mul),
    MQ_KERNEL(MQ_OP_RELU, relu),
    MQ_KERNEL(MQ_OP_RELU6, relu6),
    MQ_KERNEL(MQ_OP_RESHAPE, reshape),
    MQ_KERNEL(MQ_OP_SOFTMAX, softmax),
    MQ_KERNEL(MQ_OP_TANH, tanh),
    MQ_KERNEL(MQ_OP_PAD, pad),
    MQ_KERNEL(MQ_OP_MEAN, mean),
    MQ_KERNEL(MQ_OP_QUANTIZE, quantize),
    MQ_KERNEL(MQ_OP_HARD_SWISH, hard_swish),
};

const mq_kernel *mq_find_kernel(int32_t code)
{
    for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; ++i)
        if (kernels[i].code == code) return &kernels[i];
    return NULL;
}
