/*
 * Fixed-point helpers shared by the operator modules: the double-rounding requantization that
 * TensorFlow Lite Micro's reference kernels use by default (TFLITE_SINGLE_ROUNDING unset),
 * re-derived from the published semantics of gemm-lowp's fixed-point header:
 *
 *   SaturatingRoundingDoublingHighMul(a, b) = round-half-away(a * b / 2^31), saturating the one
 *     overflow case a == b == INT32_MIN;
 *   RoundingDivideByPOT(x, e)               = x / 2^e rounded to nearest, ties away from zero;
 *   MultiplyByQuantizedMultiplier(x, m, s)  = RDivPOT(SRDHM(x * 2^max(s,0), m), max(-s,0)).
 *
 * The left shift wraps like the reference build's int32 multiplication does on two's-complement
 * targets, but without signed-overflow undefined behaviour.
 */
#ifndef MQ_FIXEDPOINT_H
#define MQ_FIXEDPOINT_H

#include <math.h>
#include <stdint.h>

/* round-half-away(a * b / 2^31) with gemm-lowp's nudge toward zero for negative products:
 * trunc((ab + (ab >= 0 ? 2^30 : 1 - 2^30)) / 2^31), which for either sign equals
 * floor((ab + 2^30) / 2^31), one add and an arithmetic shift (ab < 0: trunc(y / 2^31) of a negative
 * y is ceil(y / 2^31) = floor((y + 2^31 - 1) / 2^31) = floor((ab + 2^30) / 2^31)). a == b ==
 * INT32_MIN is the one product that would not fit: it saturates. */
static inline int32_t mq_srdhm_unsaturated(int32_t a, int32_t b)
{
    return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31);
}

static inline int32_t mq_srdhm(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    return mq_srdhm_unsaturated(a, b);
}

/* x / 2^exponent rounded to nearest, ties away from zero (exponent 0..31; 0 is exact). Arithmetic
 * right shift of a negative value: implementation-defined in C99, arithmetic on every compiler this
 * runtime targets (gcc, clang, arm-none-eabi-gcc). */
static inline int32_t mq_rounding_divide_by_pot(int32_t x, int exponent)
{
    if (exponent <= 0) return x;
    const int32_t mask = (int32_t)(((uint32_t)1 << exponent) - 1u);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (int32_t)((uint32_t)x >> 31);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

static inline int32_t mq_shift_left_wrapping(int32_t x, int left_shift)
{
    return (int32_t)((uint32_t)x << left_shift);
}

static inline int32_t mq_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int shift)
{
    const int left_shift = shift > 0 ? shift : 0;
    const int right_shift = shift > 0 ? 0 : -shift;
    return mq_rounding_divide_by_pot(mq_srdhm(mq_shift_left_wrapping(x, left_shift), multiplier),
                                     right_shift);
}

/* The same for a multiplier made by mq_quantize_multiplier (0 <= multiplier < 2^31, so the product
 * never saturates) and |shift| <= 31: what the kernels' inner loops use. */
static inline int32_t mq_requantize(int32_t x, int32_t multiplier, int shift)
{
    const int left_shift = shift > 0 ? shift : 0;
    const int right_shift = shift > 0 ? 0 : -shift;
    return mq_rounding_divide_by_pot(mq_srdhm_unsaturated(mq_shift_left_wrapping(x, left_shift), multiplier),
                                     right_shift);
}

/* round() as TfLiteRound / std::round: halves away from zero. */
static inline double mq_round(double x) { return round(x); }

/*
 * QuantizeMultiplier: real multiplier -> (Q31 significand, power-of-two shift), as TFLite does:
 * frexp, round the significand to 31 bits, renormalize 2^31, flush shifts below -31 to zero.
 */
static inline void mq_quantize_multiplier(double real, int32_t *multiplier, int *shift)
{
    if (real == 0.0) {
        *multiplier = 0;
        *shift = 0;
        return;
    }
    int exponent = 0;
    const double q = frexp(real, &exponent);
    int64_t q_fixed = (int64_t)mq_round(q * (double)((int64_t)1 << 31));
    if (q_fixed == ((int64_t)1 << 31)) {
        q_fixed /= 2;
        ++exponent;
    }
    if (exponent < -31) {
        exponent = 0;
        q_fixed = 0;
    }
    *multiplier = (int32_t)q_fixed;
    *shift = exponent;
}

#endif /* MQ_FIXEDPOINT_H */
