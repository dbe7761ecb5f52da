/* The one place that maps a TFLite builtin operator code to its operator module (in ops/). */
#include "mq_internal.h"

#define MQ_KERNEL(code, name) {code, mq_check_##name, mq_eval_##name, NULL, NULL, NULL}
#define MQ_PREPARED_KERNEL(code, name) {code, mq_check_##name, mq_eval_##name, mq_prepare_##name, NULL, NULL}
/* Prepared data, scratch memory, and an output that may take an input's memory (see mq_ops.h). */
#define MQ_IN_PLACE_KERNEL(code, name) \
    {code, mq_check_##name, mq_eval_##name, mq_prepare_##name, mq_scratch_##name, mq_in_place_##name}
/* An output that may take an input's memory, without scratch (with or without prepared data). */
#define MQ_PREPARED_OVER_INPUT_KERNEL(code, name) \
    {code, mq_check_##name, mq_eval_##name, mq_prepare_##name, NULL, mq_in_place_##name}
/* Prepared data and scratch memory. */
#define MQ_PREPARED_SCRATCH_KERNEL(code, name) \
    {code, mq_check_##name, mq_eval_##name, mq_prepare_##name, mq_scratch_##name, NULL}
#define MQ_OVER_INPUT_KERNEL(code, name) {code, mq_check_##name, mq_eval_##name, NULL, NULL, mq_in_place_##name}

static const mq_kernel kernels[] = {
    MQ_PREPARED_OVER_INPUT_KERNEL(MQ_OP_ADD, add),
    MQ_PREPARED_KERNEL(MQ_OP_AVERAGE_POOL_2D, average_pool_2d),
    MQ_PREPARED_KERNEL(MQ_OP_CONCATENATION, concatenation),
    MQ_IN_PLACE_KERNEL(MQ_OP_CONV_2D, conv_2d),
    MQ_IN_PLACE_KERNEL(MQ_OP_DEPTHWISE_CONV_2D, depthwise_conv_2d),
    MQ_KERNEL(MQ_OP_DEQUANTIZE, dequantize),
    MQ_PREPARED_KERNEL(MQ_OP_FULLY_CONNECTED, fully_connected),
    MQ_PREPARED_KERNEL(MQ_OP_LOGISTIC, logistic),
    MQ_PREPARED_KERNEL(MQ_OP_MAX_POOL_2D, max_pool_2d),
    MQ_PREPARED_KERNEL(MQ_OP_MUL, mul),
    MQ_PREPARED_KERNEL(MQ_OP_RELU, relu),
    MQ_PREPARED_KERNEL(MQ_OP_RELU6, relu6),
    MQ_OVER_INPUT_KERNEL(MQ_OP_RESHAPE, reshape),
    MQ_PREPARED_KERNEL(MQ_OP_SOFTMAX, softmax),
    MQ_PREPARED_KERNEL(MQ_OP_TANH, tanh),
    MQ_KERNEL(MQ_OP_PAD, pad),
    MQ_PREPARED_KERNEL(MQ_OP_MEAN, mean),
    MQ_PREPARED_KERNEL(MQ_OP_QUANTIZE, quantize),
    MQ_PREPARED_KERNEL(MQ_OP_HARD_SWISH, hard_swish),
    MQ_KERNEL(MQ_OP_BATCH_TO_SPACE_ND, batch_to_space_nd),
    MQ_KERNEL(MQ_OP_SPACE_TO_BATCH_ND, space_to_batch_nd),
    MQ_KERNEL(MQ_OP_TRANSPOSE, transpose),
    MQ_PREPARED_OVER_INPUT_KERNEL(MQ_OP_SUB, sub),
    MQ_OVER_INPUT_KERNEL(MQ_OP_SQUEEZE, squeeze),
    MQ_PREPARED_KERNEL(MQ_OP_STRIDED_SLICE, strided_slice),
    MQ_KERNEL(MQ_OP_SPLIT, split),
    MQ_PREPARED_KERNEL(MQ_OP_PRELU, prelu),
    MQ_KERNEL(MQ_OP_MAXIMUM, maximum),
    MQ_KERNEL(MQ_OP_MINIMUM, minimum),
    MQ_OVER_INPUT_KERNEL(MQ_OP_EXPAND_DIMS, expand_dims),
    MQ_KERNEL(MQ_OP_REDUCE_MAX, reduce_max),
    MQ_PREPARED_KERNEL(MQ_OP_LEAKY_RELU, leaky_relu),
    MQ_KERNEL(MQ_OP_SPLIT_V, split_v),
    MQ_PREPARED_SCRATCH_KERNEL(MQ_OP_UNIDIRECTIONAL_SEQUENCE_LSTM, unidirectional_sequence_lstm),
};

const mq_kernel *mq_find_kernel(int32_t code)
{
    for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; ++i)
        if (kernels[i].code == code) return &kernels[i];
    return NULL;
}
