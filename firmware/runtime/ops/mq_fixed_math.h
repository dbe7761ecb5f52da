/*
 * Private helpers of the nonlinear operators (softmax, logistic, tanh, hard_swish, relu, relu6,
 * quantize, dequantize): Q-format fixed-point arithmetic, exp / logistic / tanh in fixed point,
 * and the input/output checks these single-input operators share.
 *
 * The fixed-point functions reproduce the published semantics of the fixed-point header of Google's gemm-lowp library,
 * which TensorFlow Lite Micro's int8 softmax, logistic and tanh kernels are built on. They are
 * written here from that specification, with the integer-bit count of a Q format passed as an
 * argument instead of a template parameter:
 *
 *   a value "Qn" is an int32 raw r meaning r / 2^(31 - n) (n integer bits, 31 - n fraction bits);
 *   a Qa * Qb product is Q(a+b) and costs one mq_srdhm; additions do not saturate (they wrap,
 *   as the reference's int32 additions do in practice); rescaling to fewer integer bits is a
 *   saturating left shift, to more integer bits a rounding right shift.
 *
 * The polynomial constants are the usual ones: round(2^31 * exp(-1/8)), round(2^31 / 3), the
 * Q0 values of exp(-2^k) for k = -2..4, and 48/17, -32/17 in Q2.
 */
#ifndef MQ_FIXED_MATH_H
#define MQ_FIXED_MATH_H

#include <math.h>
#include <stdint.h>

#include "../mq_fixedpoint.h"
#include "../mq_ops.h"

/* ---- int32 Q-format primitives ---------------------------------------------------------- */

/* Two's-complement wrapping addition and subtraction (no signed-overflow UB). */
static inline int32_t mq_wrap_add(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }
static inline int32_t mq_wrap_sub(int32_t a, int32_t b) { return (int32_t)((uint32_t)a - (uint32_t)b); }

/* x * 2^exponent for 0 < exponent < 31, saturating to the int32 range. */
static inline int32_t mq_sat_shift_left(int32_t x, int exponent)
{
    const int32_t limit = (int32_t)(((uint32_t)1 << (31 - exponent)) - 1u);
    if (x > limit) return INT32_MAX;
    if (x < -limit) return INT32_MIN;
    return mq_shift_left_wrapping(x, exponent);
}

/* Converts a Q(from_bits) raw value to Q(to_bits). */
static inline int32_t mq_q_rescale(int32_t x, int from_bits, int to_bits)
{
    const int exponent = from_bits - to_bits;
    if (exponent > 0) return mq_sat_shift_left(x, exponent);
    return mq_rounding_divide_by_pot(x, -exponent);
}

/* (a + b) / 2 rounded to nearest, ties away from zero. */
static inline int32_t mq_rounding_half_sum(int32_t a, int32_t b)
{
    const int64_t sum = (int64_t)a + (int64_t)b;
    return (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
}

/* ---- exp, reciprocal, logistic, tanh ------------------------------------------------------ */

/* exp(a) for a Q0 value a in [-1/4, 0): Taylor expansion around -1/8 to fourth order. */
static inline int32_t mq_exp_quarter_interval_q0(int32_t a)
{
    const int32_t exp_minus_one_eighth = 1895147668;
    const int32_t one_third = 715827883;
    const int32_t x = mq_wrap_add(a, (int32_t)1 << 28); /* a + 1/8 */
    const int32_t x2 = mq_srdhm(x, x);
    const int32_t x3 = mq_srdhm(x2, x);
    const int32_t x4_over_4 = mq_rounding_divide_by_pot(mq_srdhm(x2, x2), 2);
    /* x^4/24 + x^3/6 + x^2/2 = ((x^4/4 + x^3) / 3 + x^2) / 2 */
    const int32_t tail = mq_rounding_divide_by_pot(
        mq_wrap_add(mq_srdhm(mq_wrap_add(x4_over_4, x3), one_third), x2), 1);
    return mq_wrap_add(exp_minus_one_eighth, mq_srdhm(exp_minus_one_eighth, mq_wrap_add(x, tail)));
}

/*
 * exp(a) as Q0 for a value a <= 0 in Q(int_bits), 1 <= int_bits <= 5 (softmax uses 5, logistic
 * 4, tanh 5): the remainder modulo 1/4 goes through the polynomial, and each set bit of the
 * multiple of 1/4 multiplies by exp(-2^k). (More integer bits would also need the clamp to 0
 * below -32, which these callers cannot reach.)
 */
static inline int32_t mq_exp_on_negative_values(int32_t a, int int_bits)
{
    static const int32_t exp_of_minus_pow2[7] = { /* exp(-2^k), k = -2 .. 4, Q0 */
        1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242
    };
    const int frac_bits = 31 - int_bits;
    const int32_t one_quarter = (int32_t)1 << (frac_bits - 2);
    const int32_t mod_quarter_minus_quarter = mq_wrap_sub(a & (one_quarter - 1), one_quarter);
    int32_t result = mq_exp_quarter_interval_q0(mq_q_rescale(mod_quarter_minus_quarter, int_bits, 0));
    const int32_t remainder = mq_wrap_sub(mod_quarter_minus_quarter, a);
    int k;
    for (k = -2; k <= 4; ++k) {
        if (int_bits > k && ((uint32_t)remainder >> (frac_bits + k)) & 1u) {
            result = mq_srdhm(result, exp_of_minus_pow2[k + 2]);
        }
    }
    return a == 0 ? INT32_MAX : result;
}

/*
 * Newton-Raphson for 1 / (1 + a) with a in [0, 1) (Q0), working on d = (1 + a) / 2 in [1/2, 1):
 * start from 48/17 - 32/17 * d, three iterations x += x * (1 - d * x). Returns x in Q2, ~ 1/d.
 */
static inline int32_t mq_newton_reciprocal_of_half_q2(int32_t half_denominator)
{
    const int32_t one_q2 = (int32_t)1 << 29;
    int32_t x = mq_wrap_add(1515870810, mq_srdhm(half_denominator, -1010580540));
    int i;
    for (i = 0; i < 3; ++i) {
        const int32_t one_minus_dx = mq_wrap_sub(one_q2, mq_srdhm(half_denominator, x));
        x = mq_wrap_add(x, mq_q_rescale(mq_srdhm(x, one_minus_dx), 4, 2));
    }
    return x;
}

/* 1 / (1 + a) for a Q0 value a in [0, 1), as Q0. */
static inline int32_t mq_one_over_one_plus_x_q0(int32_t a)
{
    const int32_t x = mq_newton_reciprocal_of_half_q2(mq_rounding_half_sum(a, INT32_MAX));
    return mq_q_rescale(x, 1, 0); /* 1/(1+a) = (1/d) / 2: the same raw read as Q1 */
}

/* (1 - a) / (1 + a) for a Q0 value a in [0, 1], as Q0 (= 1/d - 1). */
static inline int32_t mq_one_minus_x_over_one_plus_x_q0(int32_t a)
{
    const int32_t x = mq_newton_reciprocal_of_half_q2(mq_rounding_half_sum(a, INT32_MAX));
    return mq_q_rescale(mq_wrap_sub(x, (int32_t)1 << 29), 2, 0);
}

/* logistic(a) as Q0 for a in Q(int_bits). */
static inline int32_t mq_logistic_q0(int32_t a, int int_bits)
{
    if (a == 0) return (int32_t)1 << 30;
    {
        const int32_t minus_abs = a > 0 ? mq_wrap_sub(0, a) : a;
        const int32_t positive = mq_one_over_one_plus_x_q0(mq_exp_on_negative_values(minus_abs, int_bits));
        return a > 0 ? positive : mq_wrap_sub(INT32_MAX, positive);
    }
}

/* tanh(a) as Q0 for a in Q(int_bits), int_bits < 30: tanh(|a|) = (1 - e^-2|a|) / (1 + e^-2|a|). */
static inline int32_t mq_tanh_q0(int32_t a, int int_bits)
{
    if (a == 0) return 0;
    {
        const int32_t minus_abs = a < 0 ? a : mq_wrap_sub(0, a);
        /* the raw of -|a| read with one more integer bit is -2|a| */
        const int32_t t = mq_one_minus_x_over_one_plus_x_q0(mq_exp_on_negative_values(minus_abs, int_bits + 1));
        return a < 0 ? mq_wrap_sub(0, t) : t;
    }
}

/*
 * LOGISTIC and TANH read their int8 input as Q4: x - zero_point is multiplied by in_scale * 2^27,
 * whose significand and exponent TFLM takes straight from frexp (not through QuantizeMultiplier:
 * a float scale's 24-bit significand never rounds up to 2^31). |x - zero_point| >= radius would
 * overflow Q4; the kernels saturate those inputs directly.
 */
typedef struct mq_q4_input {
    int32_t zero_point, radius, multiplier;
    int shift;
} mq_q4_input;

static inline mq_status mq_q4_input_of(const mq_tensor *in, mq_q4_input *p)
{
    int exponent = 0;
    const double significand = frexp((double)in->scale * 134217728.0 /* 2^27 */, &exponent);
    /* Outside [0, 62] TFLM's radius computation shifts by a negative or too large amount
     * (undefined behaviour): input scales below 2^-28 or above 2^35 are rejected. */
    if (exponent < 0 || exponent > 62) return MQ_ERR_QUANTIZATION;
    p->zero_point = in->zero_point;
    p->multiplier = (int32_t)mq_round(significand * 2147483648.0);
    p->shift = exponent;
    /* floor((2^4 - 1) * 2^(31 - 4) / 2^shift), exact in integers */
    p->radius = (int32_t)(((int64_t)15 << 27) >> exponent);
    return MQ_OK;
}

/* Applies `one` to each of n int8 values (LOGISTIC, TANH): through a 256-entry table when that is
 * cheaper than computing every value. */
static inline void mq_q4_map(const int8_t *x, int8_t *y, uint32_t n, int8_t (*one)(int32_t, const mq_q4_input *),
                             const mq_q4_input *p)
{
    uint32_t i;
    if (n > 256) {
        int8_t table[256];
        int32_t v;
        for (v = -128; v <= 127; ++v) table[(uint8_t)v] = one(v, p);
        for (i = 0; i < n; ++i) y[i] = table[(uint8_t)x[i]];
    } else {
        for (i = 0; i < n; ++i) y[i] = one(x[i], p);
    }
}

/* ---- int16 primitives (HARD_SWISH) ------------------------------------------------------- */

/* Two's-complement narrowing to int16 (the reference's implicit int -> int16_t conversions). */
static inline int16_t mq_wrap_i16(int32_t x)
{
    int32_t low = (int32_t)((uint32_t)x & 0xFFFFu);
    if (low >= 32768) low -= 65536;
    return (int16_t)low;
}

static inline int16_t mq_sat_i16(int64_t x)
{
    return (int16_t)(x > INT16_MAX ? INT16_MAX : x < INT16_MIN ? INT16_MIN : x);
}

/* round-half-away(a * b / 2^15), saturating the one overflow case a == b == -32768. */
static inline int16_t mq_srdhm_i16(int16_t a, int16_t b)
{
    if (a == INT16_MIN && b == INT16_MIN) return INT16_MAX;
    {
        const int32_t ab = (int32_t)a * (int32_t)b;
        return (int16_t)((ab + (ab >= 0 ? (1 << 14) : 1 - (1 << 14))) / (1 << 15));
    }
}

/* a * b / 2^15 truncated toward zero, saturating a == b == -32768. */
static inline int16_t mq_sdhm_i16(int16_t a, int16_t b)
{
    if (a == INT16_MIN && b == INT16_MIN) return INT16_MAX;
    return (int16_t)(((int32_t)a * (int32_t)b) / (1 << 15));
}

/*
 * x / 2^exponent rounded to nearest (ties away from zero) on int16 values, 0 <= exponent <= 31,
 * with the reference's int16 behaviour for exponent >= 16: its rounding mask is built as int16
 * and becomes -1, so the result is then 1 for x >= 0 and -1 for x < 0.
 */
static inline int16_t mq_rounding_divide_by_pot_i16(int16_t x, int exponent)
{
    const int16_t mask = mq_wrap_i16((int32_t)(((uint32_t)1 << exponent) - 1u));
    const int32_t remainder = (int16_t)(x & mask);
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    const int32_t shifted = exponent >= 16 ? (x < 0 ? -1 : 0) : (x >> exponent);
    return mq_wrap_i16(shifted + (remainder > threshold ? 1 : 0));
}

/* x * 2^amount, 0 <= amount <= 30, saturating to int16. */
static inline int16_t mq_sat_shift_left_i16(int16_t x, int amount)
{
    return mq_sat_i16((int64_t)x * ((int64_t)1 << amount));
}

/* ---- checks shared by these single-input, single-output operators --------------------------- */

/* Exactly one input and one output, both present. */
static inline mq_status mq_nl_check_io(const mq_op_ctx *ctx)
{
    if (ctx->ninputs != 1 || ctx->noutputs != 1 || ctx->inputs[0] == 0 || ctx->outputs[0] == 0)
        return MQ_ERR_MALFORMED;
    return MQ_OK;
}

/* Same rank and dimensions, and each tensor's byte count matches its element count. */
static inline mq_status mq_nl_check_same_shape(const mq_tensor *in, uint32_t in_elem_bytes,
                                               const mq_tensor *out, uint32_t out_elem_bytes)
{
    uint32_t i, n;
    if (in->ndims != out->ndims || in->ndims > MQ_MAX_DIMS) return MQ_ERR_SHAPE;
    for (i = 0; i < in->ndims; ++i) {
        if (in->dims[i] != out->dims[i] || in->dims[i] < 0) return MQ_ERR_SHAPE;
    }
    n = mq_tensor_elements(in);
    if (n != mq_tensor_elements(out) || n > UINT32_MAX / 4u) return MQ_ERR_SHAPE;
    if (in->bytes != n * in_elem_bytes || out->bytes != n * out_elem_bytes) return MQ_ERR_MALFORMED;
    return MQ_OK;
}

/* Per-tensor int8 quantization: one finite scale > 0 and a zero point within int8. */
static inline mq_status mq_nl_check_int8_quantization(const mq_tensor *t)
{
    if (t->nscales != 1) return MQ_ERR_QUANTIZATION;
    if (!(t->scale > 0.0f) || !isfinite(t->scale)) return MQ_ERR_QUANTIZATION;
    if (t->zero_point < -128 || t->zero_point > 127) return MQ_ERR_QUANTIZATION;
    return MQ_OK;
}

/* int8 -> int8, same shape, both per-tensor quantized: RELU, RELU6, LOGISTIC, TANH, HARD_SWISH. */
static inline mq_status mq_nl_check_int8_unary(const mq_op_ctx *ctx)
{
    const mq_tensor *in, *out;
    mq_status s = mq_nl_check_io(ctx);
    if (s != MQ_OK) return s;
    in = ctx->inputs[0];
    out = ctx->outputs[0];
    if (in->type != MQ_INT8 || out->type != MQ_INT8) return MQ_ERR_UNSUPPORTED_TYPE;
    s = mq_nl_check_same_shape(in, 1, out, 1);
    if (s != MQ_OK) return s;
    s = mq_nl_check_int8_quantization(in);
    if (s != MQ_OK) return s;
    return mq_nl_check_int8_quantization(out);
}

#endif /* MQ_FIXED_MATH_H */
