/*
 * Contract between the interpreter and the operator modules in ops/.
 *
 * Each operator is one pair of functions:
 *   mq_status mq_check_<op>(const mq_op_ctx *ctx);   called once by mq_init, before planning
 *   mq_status mq_eval_<op>(const mq_op_ctx *ctx);    called by every mq_invoke
 * and, for operators with data that depends only on the model (requantization multipliers, bias
 * with the input zero point folded in), a third:
 *   mq_status mq_prepare_<op>(const mq_op_ctx *ctx, uint8_t *out, uint32_t *bytes);
 * called by mq_init after check(): with out == NULL it sets *bytes to what it needs, then once with
 * that much memory (4-byte aligned, in the arena) it fills it. eval() finds it at ctx->prepared, so
 * no multiplier is computed (in double precision) while the model runs: no eval() may reach double
 * arithmetic, which a Cortex-M4F does in software (tests/test_builtin_prepared.py proves it). An operator whose kernel
 * needs working memory while it runs (an im2col buffer) has a fourth:
 *   mq_status mq_scratch_<op>(const mq_op_ctx *ctx, uint32_t *bytes);
 * called by mq_init after check(); the planner places that many bytes (16-byte aligned) in the
 * activation area, live during this operator only, and eval() finds them at ctx->scratch.
 * An operator that can write its output over one of its inputs has a fifth:
 *   int32_t mq_in_place_<op>(const mq_op_ctx *ctx);
 * which returns the index of that input (or -1: not for these shapes or options). When that input
 * is not needed after this operator (not a graph input or output, not a variable, last read here),
 * the planner gives the output the input's memory and sets ctx->in_place before scratch() is asked,
 * and eval() must then give the same bits as with separate memory.
 *
 * check() validates everything eval() relies on, because the model may be hostile: input and
 * output counts, types, ranks, every dimension relation the kernel uses for indexing, quantization
 * (scale > 0 and finite, per-channel counts equal to the channel dimension, zero points in range),
 * option values (strides >= 1, known padding and activation). It must never read tensor data of
 * non-constant tensors (data is NULL at that point); constant tensors (weights, bias, axis,
 * paddings) already point into the model and their `bytes` has been checked against the buffer.
 * eval() may then assume that check() returned MQ_OK and that every tensor's data holds `bytes`.
 *
 * Arithmetic follows TensorFlow Lite Micro's reference kernels exactly (re-derived, never copied):
 * the same multipliers computed the same way from the float scales, the same rounding.
 */
#ifndef MQ_OPS_H
#define MQ_OPS_H

#include "mq_runtime.h"

/* TFLite BuiltinOperator codes of the supported operators. */
enum {
    MQ_OP_ADD = 0,
    MQ_OP_AVERAGE_POOL_2D = 1,
    MQ_OP_CONCATENATION = 2,
    MQ_OP_CONV_2D = 3,
    MQ_OP_DEPTHWISE_CONV_2D = 4,
    MQ_OP_DEQUANTIZE = 6,
    MQ_OP_FULLY_CONNECTED = 9,
    MQ_OP_LOGISTIC = 14,
    MQ_OP_MAX_POOL_2D = 17,
    MQ_OP_MUL = 18,
    MQ_OP_RELU = 19,
    MQ_OP_RELU6 = 21,
    MQ_OP_RESHAPE = 22,
    MQ_OP_SOFTMAX = 25,
    MQ_OP_TANH = 28,
    MQ_OP_PAD = 34,
    MQ_OP_BATCH_TO_SPACE_ND = 37,
    MQ_OP_SPACE_TO_BATCH_ND = 38,
    MQ_OP_TRANSPOSE = 39,
    MQ_OP_MEAN = 40,
    MQ_OP_SUB = 41,
    MQ_OP_SQUEEZE = 43,
    MQ_OP_UNIDIRECTIONAL_SEQUENCE_LSTM = 44,
    MQ_OP_STRIDED_SLICE = 45,
    MQ_OP_SPLIT = 49,
    MQ_OP_PRELU = 54,
    MQ_OP_MAXIMUM = 55,
    MQ_OP_MINIMUM = 57,
    MQ_OP_EXPAND_DIMS = 70,
    MQ_OP_REDUCE_MAX = 82,
    MQ_OP_LEAKY_RELU = 98,
    MQ_OP_SPLIT_V = 102,
    MQ_OP_QUANTIZE = 114,
    MQ_OP_HARD_SWISH = 117
};

/* TFLite enums as stored in builtin options. */
enum { MQ_PADDING_SAME = 0, MQ_PADDING_VALID = 1 };
enum {
    MQ_ACT_NONE = 0, MQ_ACT_RELU = 1, MQ_ACT_RELU_N1_TO_1 = 2, MQ_ACT_RELU6 = 3,
    MQ_ACT_TANH = 4, MQ_ACT_SIGN_BIT = 5
};

/*
 * Builtin options of one operator, parsed from the flatbuffer with the schema's defaults for
 * absent fields (0 / false, except dilation factors which default to 1 and pot_scale_int16 which
 * defaults to true). Which fields are
 * meaningful depends on the operator; check() validates the ones it uses.
 */
typedef struct mq_op_options {
    int32_t padding;            /* Conv2D, DepthwiseConv2D, Pool2D */
    int32_t stride_w, stride_h; /* Conv2D, DepthwiseConv2D, Pool2D */
    int32_t dilation_w, dilation_h; /* Conv2D, DepthwiseConv2D (default 1) */
    int32_t filter_w, filter_h; /* Pool2D */
    int32_t depth_multiplier;   /* DepthwiseConv2D */
    int32_t activation;         /* fused_activation_function: Conv, DW, FC, Pool, Add, Sub, Mul, Concat */
    int32_t axis;               /* Concatenation */
    int32_t keep_dims;          /* Reducer (MEAN, REDUCE_MAX) keep_dims, FullyConnected keep_num_dims */
    int32_t begin_mask, end_mask, shrink_axis_mask; /* StridedSlice (TFLM ignores the other masks) */
    uint32_t nsqueeze_dims;     /* Squeeze: squeeze_dims, nsqueeze_dims little-endian int32 in the model */
    const uint8_t *squeeze_dims;
    int32_t weights_format;     /* FullyConnected: only DEFAULT (0) is supported */
    int32_t asymmetric_quantize_inputs; /* FullyConnected: hybrid models, unsupported */
    int32_t pot_scale_int16;    /* Add: ignored for int8 */
    float beta;                 /* Softmax */
    float cell_clip;            /* UnidirectionalSequenceLSTM (activation: the cell gate's) */
    int32_t time_major;         /* UnidirectionalSequenceLSTM */
    float alpha;                /* LeakyRelu */
} mq_op_options;

typedef struct mq_op_ctx {
    mq_tensor *const *inputs;   /* ninputs entries; an entry is NULL for an omitted optional input (-1) */
    uint32_t ninputs;
    mq_tensor *const *outputs;
    uint32_t noutputs;
    const mq_op_options *options;
    const uint8_t *prepared;    /* what the operator's prepare() filled at mq_init, NULL without one */
    uint8_t *scratch;           /* the working memory scratch() asked for, NULL without */
    int32_t in_place;           /* 1: outputs[0] shares the memory of the input in_place() named */
} mq_op_ctx;

typedef mq_status (*mq_op_fn)(const mq_op_ctx *ctx);
typedef mq_status (*mq_prepare_fn)(const mq_op_ctx *ctx, uint8_t *out, uint32_t *bytes);
typedef mq_status (*mq_scratch_fn)(const mq_op_ctx *ctx, uint32_t *bytes);
typedef int32_t (*mq_in_place_fn)(const mq_op_ctx *ctx);

#define MQ_DECLARE_PREPARE(name) mq_status mq_prepare_##name(const mq_op_ctx *ctx, uint8_t *out, uint32_t *bytes);
#define MQ_DECLARE_SCRATCH(name) mq_status mq_scratch_##name(const mq_op_ctx *ctx, uint32_t *bytes);
#define MQ_DECLARE_IN_PLACE(name) int32_t mq_in_place_##name(const mq_op_ctx *ctx);

#define MQ_DECLARE_OP(name) \
    mq_status mq_check_##name(const mq_op_ctx *ctx); \
    mq_status mq_eval_##name(const mq_op_ctx *ctx);

MQ_DECLARE_OP(add)
MQ_DECLARE_PREPARE(add)
MQ_DECLARE_IN_PLACE(add)
MQ_DECLARE_OP(average_pool_2d)
MQ_DECLARE_OP(concatenation)
MQ_DECLARE_PREPARE(concatenation)
MQ_DECLARE_OP(conv_2d)
MQ_DECLARE_SCRATCH(conv_2d)
MQ_DECLARE_IN_PLACE(conv_2d)
MQ_DECLARE_OP(depthwise_conv_2d)
MQ_DECLARE_SCRATCH(depthwise_conv_2d)
MQ_DECLARE_IN_PLACE(depthwise_conv_2d)
MQ_DECLARE_OP(dequantize)
MQ_DECLARE_OP(fully_connected)
MQ_DECLARE_OP(logistic)
MQ_DECLARE_OP(max_pool_2d)
MQ_DECLARE_OP(mul)
MQ_DECLARE_OP(relu)
MQ_DECLARE_OP(relu6)
MQ_DECLARE_OP(reshape)
MQ_DECLARE_IN_PLACE(reshape)
MQ_DECLARE_OP(softmax)
MQ_DECLARE_OP(tanh)
MQ_DECLARE_OP(pad)
MQ_DECLARE_OP(mean)
MQ_DECLARE_OP(quantize)
MQ_DECLARE_OP(hard_swish)
MQ_DECLARE_OP(unidirectional_sequence_lstm)
MQ_DECLARE_PREPARE(unidirectional_sequence_lstm)
MQ_DECLARE_SCRATCH(unidirectional_sequence_lstm)
MQ_DECLARE_OP(batch_to_space_nd)
MQ_DECLARE_OP(space_to_batch_nd)
MQ_DECLARE_OP(transpose)
MQ_DECLARE_OP(sub)
MQ_DECLARE_PREPARE(sub)
MQ_DECLARE_IN_PLACE(sub)
MQ_DECLARE_OP(squeeze)
MQ_DECLARE_IN_PLACE(squeeze)
MQ_DECLARE_OP(strided_slice)
MQ_DECLARE_OP(split)
MQ_DECLARE_OP(prelu)
MQ_DECLARE_OP(maximum)
MQ_DECLARE_OP(minimum)
MQ_DECLARE_OP(expand_dims)
MQ_DECLARE_IN_PLACE(expand_dims)
MQ_DECLARE_OP(reduce_max)
MQ_DECLARE_OP(leaky_relu)
MQ_DECLARE_OP(split_v)

MQ_DECLARE_PREPARE(conv_2d)
MQ_DECLARE_PREPARE(depthwise_conv_2d)
MQ_DECLARE_PREPARE(fully_connected)
MQ_DECLARE_PREPARE(mul)
MQ_DECLARE_PREPARE(prelu)
MQ_DECLARE_PREPARE(relu)
MQ_DECLARE_PREPARE(relu6)
MQ_DECLARE_PREPARE(leaky_relu)
MQ_DECLARE_PREPARE(hard_swish)
MQ_DECLARE_PREPARE(quantize)
MQ_DECLARE_PREPARE(softmax)
MQ_DECLARE_PREPARE(logistic)
MQ_DECLARE_PREPARE(tanh)
MQ_DECLARE_PREPARE(average_pool_2d)
MQ_DECLARE_PREPARE(max_pool_2d)
MQ_DECLARE_PREPARE(mean)
MQ_DECLARE_PREPARE(strided_slice)

#endif /* MQ_OPS_H */
