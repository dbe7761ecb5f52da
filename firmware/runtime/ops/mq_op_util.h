/*
 * Helpers shared by the operator modules: tensor checks, fused-activation ranges, SAME/VALID
 * windows, per-channel requantization multipliers, 4-D offsets, wrapping int32 arithmetic and
 * unaligned loads from model buffers.
 *
 * The formulas follow TensorFlow Lite Micro's kernels (re-derived, see mq_op_util.c), so that a
 * kernel built on them is bit-exact with TFLM's reference kernels.
 */
#ifndef MQ_OP_UTIL_H
#define MQ_OP_UTIL_H

#include <stdint.h>
#include <string.h>

#include "../mq_fixedpoint.h"
#include "../mq_ops.h"

#define MQ_INT8_MIN (-128)
#define MQ_INT8_MAX 127

/* Largest left shift a requantization may use: the left shift of a 32-bit value must stay < 32. */
#define MQ_MAX_LEFT_SHIFT 31

/* 1 when s can be divided by and multiplied with: > 0 and finite (NaN fails). */
int mq_scale_ok(float s);

/* An int8 activation: type int8, per-tensor quantization, valid scale, zero point in int8 range. */
mq_status mq_check_int8_activation(const mq_tensor *t);

/* Every dimension >= 1 (zero-sized tensors are not supported), element count <= INT32_MAX. */
mq_status mq_check_dims_positive(const mq_tensor *t);

/* ndims == rank and every dimension >= 1. */
mq_status mq_check_rank_positive(const mq_tensor *t, uint8_t rank);

/*
 * int8 weights as TFLM's convolution-like kernels take them: type int8, one scale or one scale per
 * channel of dimension `channel_dim` (and the tensor's quantized_dimension names a dimension of that
 * size, as TFLM checks), every scale > 0 and finite, every zero point 0 (TFLM ignores weight zero
 * points in its int8 kernels, so a non-zero one would be computed wrongly: rejected).
 */
mq_status mq_check_int8_weights(const mq_tensor *w, uint8_t channel_dim);

/* Optional int32 bias with exactly `channels` elements (NULL is fine). */
mq_status mq_check_bias(const mq_tensor *bias, int32_t channels);

/* Scale of channel `ch` of weights checked by mq_check_int8_weights (the only scale if per-tensor). */
float mq_weight_scale(const mq_tensor *w, int32_t ch);

/*
 * Requantization multiplier of one output channel of CONV_2D / DEPTHWISE_CONV_2D / per-channel
 * FULLY_CONNECTED: (double)input_scale * (double)filter_scale / (double)output_scale, quantized.
 * MQ_ERR_QUANTIZATION when the shift would exceed MQ_MAX_LEFT_SHIFT.
 */
mq_status mq_channel_multiplier(float input_scale, float filter_scale, float output_scale,
                                int32_t *multiplier, int *shift);

/* QuantizeMultiplier of `real`, rejecting left shifts above MQ_MAX_LEFT_SHIFT. */
mq_status mq_checked_multiplier(double real, int32_t *multiplier, int *shift);

/*
 * Output range of an int8 output with a fused activation (NONE, RELU, RELU_N1_TO_1, RELU6), as
 * TFLM's CalculateActivationRangeQuantized. TANH, SIGN_BIT and unknown codes: MQ_ERR_UNSUPPORTED_OPTION.
 */
mq_status mq_activation_range_int8(int32_t activation, const mq_tensor *output,
                                   int32_t *act_min, int32_t *act_max);

/*
 * One spatial axis of a convolution or pooling window, as TFLM computes it: the output size for
 * SAME / VALID padding and the padding before the first element. Fails (MQ_ERR_UNSUPPORTED_OPTION)
 * on an unknown padding, stride or dilation outside [1, 32767] (TFLM truncates them to int16) or
 * filter < 1; (MQ_ERR_SHAPE) when the output would be empty; (MQ_ERR_LIMIT) when the padding
 * exceeds 32767 (int16 in TFLM too) or a window coordinate could leave the int32 range.
 */
mq_status mq_window(int32_t padding, int32_t in_size, int32_t filter_size, int32_t stride,
                    int32_t dilation, int32_t *out_size, int32_t *pad_before);

/*
 * Both spatial axes of a 4-D NHWC operator with a filter_h x filter_w window (options' padding,
 * strides and dilations; pooling passes dilation 1): mq_window on each, and the output's height
 * and width must be the computed ones (MQ_ERR_SHAPE).
 */
mq_status mq_window_2d(const mq_op_options *o, const mq_tensor *in, const mq_tensor *out, int32_t filter_h,
                       int32_t filter_w, int32_t dilation_h, int32_t dilation_w, int32_t *pad_h, int32_t *pad_w);

/*
 * The operands of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED: input, filter, optional bias and
 * one output, with options (MQ_ERR_MALFORMED otherwise); int8 activations, and an int8 filter of
 * rank `filter_rank` with positive dimensions.
 */
typedef struct mq_weighted_operands {
    const mq_tensor *in, *filter, *bias, *out; /* bias may be NULL */
} mq_weighted_operands;

mq_status mq_weighted_operands_of(const mq_op_ctx *ctx, uint8_t filter_rank, mq_weighted_operands *w);

/* The same view without the checks, for an operator mq_weighted_operands_of has accepted. */
static inline mq_weighted_operands mq_weighted_operands_at(const mq_op_ctx *ctx)
{
    mq_weighted_operands w;
    w.in = ctx->inputs[0];
    w.filter = ctx->inputs[1];
    w.bias = ctx->ninputs == 3 ? ctx->inputs[2] : NULL;
    w.out = ctx->outputs[0];
    return w;
}


/*
 * What CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED compute once per output channel (their
 * prepare()), laid out as int32 multiplier[n], int32 folded_bias[n], int8 shift[n]:
 * folded_bias = bias + input_offset * (sum of the channel's weights), modulo 2^32, so a window whose
 * taps all lie inside the input accumulates sum(w * x) on top of it, one addition per tap fewer
 * than sum(w * (x + input_offset)) and equal modulo 2^32 (TFLM's int32 arithmetic wraps alike).
 */
typedef struct mq_channel_params {
    const int32_t *multiplier;
    const int32_t *folded_bias;
    const int8_t *shift;
} mq_channel_params;

/* prepare() for those operators: channel ch's weights are `count` values at filter + ch * ch_stride,
 * elem_stride apart. Sets *bytes; fills out when it is not NULL. */
mq_status mq_prepare_channel_params(const mq_weighted_operands *w, int32_t channels, uint32_t count,
                                    uint32_t ch_stride, uint32_t elem_stride, uint8_t *out, uint32_t *bytes);

/* The view of what mq_prepare_channel_params filled. */
static inline mq_channel_params mq_channel_params_of(const uint8_t *prepared, int32_t channels)
{
    mq_channel_params p;
    p.multiplier = (const int32_t *)(const void *)prepared;
    p.folded_bias = p.multiplier + channels;
    p.shift = (const int8_t *)(const void *)(p.folded_bias + channels);
    return p;
}

/* Every one of `channels` output channels has a requantization multiplier TFLM can represent. */
mq_status mq_check_channel_multipliers(const mq_weighted_operands *w, int32_t channels);

/*
 * Elementwise binary operators with broadcasting (ADD, MUL): numpy rules over up to MQ_MAX_DIMS
 * dimensions, shapes aligned at the last dimension. The output must have the broadcast shape.
 * Dimensions are merged where possible so that the innermost rows are long.
 */
typedef struct mq_broadcast {
    int32_t rank;                  /* >= 1 after merging */
    int32_t dims[MQ_MAX_DIMS];     /* output dimensions, outermost first */
    uint32_t stride1[MQ_MAX_DIMS]; /* element strides of input 1 per output dimension (0: broadcast) */
    uint32_t stride2[MQ_MAX_DIMS];
} mq_broadcast;

mq_status mq_broadcast_prepare(const mq_tensor *in1, const mq_tensor *in2, const mq_tensor *out,
                               mq_broadcast *bc);

/* ADD and MUL: two int8 inputs and one int8 output with options (MQ_ERR_MALFORMED otherwise), and
 * their broadcast (mq_broadcast_prepare). */
mq_status mq_binary_int8_operands(const mq_op_ctx *ctx, const mq_tensor **a, const mq_tensor **b,
                                  const mq_tensor **out, mq_broadcast *bc);

/* Computes one innermost row: out[i] = f(in1[i * step1], in2[i * step2]) for i < n. */
typedef void (*mq_broadcast_row_fn)(const int8_t *in1, uint32_t step1, const int8_t *in2,
                                    uint32_t step2, int8_t *out, int32_t n, const void *params);

/* Runs `row` over every innermost row of the broadcast (no recursion, no scratch memory). */
void mq_broadcast_run(const mq_broadcast *bc, const int8_t *in1, const int8_t *in2, int8_t *out,
                      mq_broadcast_row_fn row, const void *params);

/* Flat offset of [b][y][x][c] in a 4-D NHWC tensor; the caller keeps every index in range. */
static inline uint32_t mq_offset4(const int32_t *dims, int32_t b, int32_t y, int32_t x, int32_t c)
{
    return (((uint32_t)b * (uint32_t)dims[1] + (uint32_t)y) * (uint32_t)dims[2] + (uint32_t)x) *
               (uint32_t)dims[3] + (uint32_t)c;
}

/* Two's-complement reinterpretation of a uint32 (no implementation-defined conversion). */
/* The reduction axes of MEAN and REDUCE_MAX: `axis` must be a constant int32 tensor (negative
 * axes count from the end; a rank-0 input ignores them, as TFLM's ResolveAxis does); reduced[d] is
 * set to 1 for every reduced dimension of `in`, *count to the number of elements each output
 * element reduces. The output must hold exactly the kept elements (TFLM writes them densely). */
mq_status mq_reduction_axes(const mq_tensor *in, const mq_tensor *axis, const mq_tensor *out,
                            uint8_t reduced[MQ_MAX_DIMS], int32_t *count);

/* One step of an odometer over the dimensions d with selected[d] == want (the reduced ones, or the
 * kept ones) of a tensor with `dims` and row-major `stride`: the last such index that can grow
 * grows and `*off` moves with it; indices that wrap go back to 0. Returns 0 once all wrapped. */
static inline int mq_odometer_step(int32_t rank, const int32_t *dims, const uint32_t *stride,
                                   const uint8_t *selected, uint8_t want, int32_t *idx, uint32_t *off)
{
    int32_t d;
    for (d = rank - 1; d >= 0; --d) {
        if (selected[d] != want) continue;
        if (++idx[d] < dims[d]) {
            *off += stride[d];
            return 1;
        }
        idx[d] = 0;
        *off -= stride[d] * (uint32_t)(dims[d] - 1);
    }
    return 0;
}

static inline int32_t mq_wrap_i32(uint32_t u)
{
    return u <= (uint32_t)INT32_MAX ? (int32_t)u : (int32_t)(u - 2147483648u) - INT32_MAX - 1;
}

/* a + b wrapping modulo 2^32, as TFLM's int32 arithmetic behaves on overflow, without UB. */
static inline int32_t mq_add_wrap(int32_t a, int32_t b)
{
    return mq_wrap_i32((uint32_t)a + (uint32_t)b);
}

static inline int32_t mq_clamp(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* Element i of an int32 vector that may be unaligned (model buffers). */
static inline int32_t mq_load_i32(const void *base, uint32_t i)
{
    int32_t v;
    memcpy(&v, (const uint8_t *)base + (size_t)i * 4u, sizeof v);
    return v;
}

/*
 * One output channel's requantization with what depends only on the channel hoisted out of the
 * loops: int8 output = clamp(MultiplyByQuantizedMultiplier(acc, m, shift) + zero point, lo, hi).
 *
 * For shift < 0 (an effective scale below 1/2: nearly every channel) both roundings of the
 * reference, SRDHM's v = floor((acc * m + 2^30) / 2^31) and RoundingDivideByPOT's
 * round-half-away(v / 2^r) = floor((v + 2^(r-1) - [v < 0]) / 2^r), fold into one exact 64-bit
 * expression, since floor((floor(P / A) + c) / B) = floor((P + c * A) / (A * B)) for integers:
 *   floor((acc * m + 2^30 + 2^(30+r) - [v < 0] * 2^31) / 2^(31+r)),
 * the high word of a multiply-accumulate shifted right by r - 1. The multipliers that prepare()
 * makes are 0 or in [2^30, 2^31), so v < 0 exactly when acc < 0 (acc = -1 with m = 2^30 gives
 * v = 0, and the expression is 0 either way). Checked against the two-step form on 4e8 random
 * cases and by every bit-exactness campaign.
 */
typedef struct mq_requant {
    int32_t multiplier, shift;
    int64_t k; /* shift < 0: 2^30 + 2^(30 - shift) */
    int32_t zero_point, lo, hi;
} mq_requant;

/* The constant 2^30 + 2^(30 + r) of the fused form for r = -shift >= 1, built as its two words. */
static inline __attribute__((always_inline)) int64_t mq_requant_constant(int32_t shift)
{
    const uint32_t lo = 0x40000000u | (shift == -1 ? 0x80000000u : 0u);
    const uint32_t hi = shift <= -2 ? 1u << (-shift - 2) : 0u;
    return (int64_t)(((uint64_t)hi << 32) | lo);
}

/* MultiplyByQuantizedMultiplier(a, multiplier, shift) for a multiplier made by QuantizeMultiplier
 * (0 or in [2^30, 2^31)) and k = mq_requant_constant(shift): the fused form above for shift < 0. */
static inline __attribute__((always_inline)) int32_t mq_requant_fused(int32_t a, int32_t multiplier, int32_t shift,
                                                                      int64_t k)
{
    if (shift < 0) {
        const int64_t t = (int64_t)a * multiplier + (k - (int64_t)((uint64_t)((uint32_t)a >> 31) << 31));
        return (int32_t)(t >> 32) >> (-shift - 1);
    }
    return mq_requantize(a, multiplier, (int)shift);
}

static inline __attribute__((always_inline)) mq_requant mq_requant_of(const mq_channel_params *cp, int32_t ch,
                                                                      int32_t out_zp, int32_t lo, int32_t hi)
{
    mq_requant r;
    r.multiplier = cp->multiplier[ch];
    r.shift = cp->shift[ch];
    r.k = mq_requant_constant(r.shift);
    r.zero_point = out_zp;
    r.lo = lo;
    r.hi = hi;
    return r;
}

static inline __attribute__((always_inline)) int8_t mq_requant_out(const mq_requant *r, uint32_t acc)
{
    const int32_t v = mq_requant_fused(mq_wrap_i32(acc), r->multiplier, r->shift, r->k);
    return (int8_t)mq_clamp(mq_add_wrap(v, r->zero_point), r->lo, r->hi);
}

/* Channel ch's int8 output of a wrapping int32 accumulator (mq_requant for a single output). */
static inline __attribute__((always_inline)) int8_t mq_channel_output(uint32_t acc, const mq_channel_params *cp,
                                                                      int32_t ch, int32_t out_zp, int32_t lo, int32_t hi)
{
    const mq_requant r = mq_requant_of(cp, ch, out_zp, lo, hi);
    return mq_requant_out(&r, acc);
}

#endif /* MQ_OP_UTIL_H */
