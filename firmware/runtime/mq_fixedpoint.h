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

static inline int32_t mq_srdhm(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    /* C division truncates toward zero, as gemm-lowp's does. */
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

static inline int32_t mq_rounding_divide_by_pot(int32_t x, int exponent)
{
    if (exponent <= 0) return x;
    const int32_t mask = (int32_t)(((uint32_t)1 << exponent) - 1u);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    /* Arithmetic right shift of a negative value: implementation-defined in C99, arithmetic on
     * every compiler this runtime targets (gcc, clang, arm-none-eabi-gcc). */
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
