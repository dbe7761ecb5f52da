/*
 * The matrix product under CONV_2D: two windows of the input ("columns", im2col) widened once to
 * int16, multiplied by two filters at a time.
 *
 * Column buffer: two slots (windows) of K int16 values, in groups of four k: group g holds slot 0's
 * values of k = 4g, 4g+2, 4g+1, 4g+3, then slot 1's in the same order (16 bytes a group). That is
 * the order in which SXTB16 splits a word of four int8 weights (bytes 0 and 2, then with ROR #8
 * bytes 1 and 3), so on cores with the DSP extension one SMLAD multiplies a split weight word by a
 * column word with no further shuffling, and every loaded word is used twice.
 *
 * Accumulators are int32 wrapping modulo 2^32 (kept as uint32 in C), exactly as TFLM's reference
 * kernels accumulate whatever the order of the additions; SMLAD's addition wraps as well (it only
 * sets the Q flag), so the DSP path and the plain C path (Cortex-M0+, M3, the host) give the same bits.
 */
#ifndef MQ_GEMM_H
#define MQ_GEMM_H

#include <stdint.h>
#include <string.h>

#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#endif

/* With Helium (MVE, Cortex-M55) a group holds eight k of each slot in order instead: slot 0's
 * k = 8g..8g+7, then slot 1's (32 bytes a group), which VLDRH reads as one vector each. */
#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
#define MQ_GEMM_MVE 1
#define MQ_COLS_GROUP 8u
#else
#define MQ_COLS_GROUP 4u
#endif

/* Bytes of a column buffer for windows of k values: the same on every core (groups of eight, the
 * larger), so that the arena the host plans for a board holds on its core. */
#define MQ_COLS_BYTES(k) ((((uint32_t)(k) + 7u) / 8u) * 32u)

/* Writes n values of src, sign-extended, at positions k.. of `slot`. */
void mq_cols_put(int16_t *cols, uint32_t slot, uint32_t k, const int8_t *src, uint32_t n);

/* Writes n copies of `value` at positions k.. of `slot` (taps outside the input). */
void mq_cols_fill(int16_t *cols, uint32_t slot, uint32_t k, uint32_t n, int16_t value);

/* acc[2*i + j] += sum_k w_i[k] * slot_j[k] for k < n, where w_1 = w_0 + row_stride. */
void mq_gemm_2x2(const int8_t *w0, uint32_t row_stride, const int16_t *cols, uint32_t n, uint32_t acc[4]);

/* Depthwise: acc[c] += sum_t w[t * stride + c] * taps[t][offset + c] for c < 4 over ntaps (>= 1) taps. */
void mq_taps_mac4(const int8_t *const *taps, uint32_t ntaps, const int8_t *w, uint32_t stride, uint32_t offset,
                  uint32_t acc[4]);

/* Four int8 at p (any alignment) as a word. */
static inline uint32_t mq_load4(const int8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v); /* an unaligned LDR on the cores that have one */
    return v;
}

/* Depthwise taps, four channels side by side: acc[c] += w[c] * x[c] for the bytes c of two words.
 * With the DSP extension: SXTB16 splits each word into bytes 0, 2 and (ROR #8) 1, 3 as int16 pairs,
 * SMLABB/SMLATT multiply the bottom/top halves. */
static inline __attribute__((always_inline)) void mq_mac4(uint32_t wv, uint32_t xv, uint32_t acc[4])
{
#if defined(__ARM_FEATURE_DSP)
    uint32_t wo, xo;
    const int16x2_t we = __sxtb16((int8x4_t)wv), xe = __sxtb16((int8x4_t)xv);
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(wo) : "r"(wv));
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(xo) : "r"(xv));
    acc[0] = (uint32_t)__smlabb(we, xe, (int32_t)acc[0]);
    acc[2] = (uint32_t)__smlatt(we, xe, (int32_t)acc[2]);
    acc[1] = (uint32_t)__smlabb((int16x2_t)wo, (int16x2_t)xo, (int32_t)acc[1]);
    acc[3] = (uint32_t)__smlatt((int16x2_t)wo, (int16x2_t)xo, (int32_t)acc[3]);
#else
    int c;
    for (c = 0; c < 4; ++c)
        acc[c] += (uint32_t)((int32_t)(int8_t)(wv >> (8 * c)) * (int32_t)(int8_t)(xv >> (8 * c)));
#endif
}

#endif /* MQ_GEMM_H */
