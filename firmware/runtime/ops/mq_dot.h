/*
 * Dot products of int8 rows, the inner loops of FULLY_CONNECTED and UNIDIRECTIONAL_SEQUENCE_LSTM.
 * Accumulators are int32 wrapping modulo 2^32 (kept as uint32 in C), exactly as TFLM's reference
 * kernels accumulate, whatever the order of the additions.
 *
 * With the Arm DSP extension (__ARM_FEATURE_DSP: Cortex-M4, M7, M33, M55) mq_dot.c uses the ACLE
 * intrinsics of arm_acle.h: a word of four int8 is split by SXTB16 into its even and its odd bytes
 * as two pairs of int16, and SMLAD multiplies two pairs and adds both products to an accumulator,
 * so a weight word and an activation word split alike give w0*x0 + w2*x2 + w1*x1 + w3*x3 in two
 * instructions; blocks of two rows by two rows reuse every split word twice. Elsewhere (Cortex-M0+,
 * M3, the host) the same blocks in plain C. SMLAD's addition wraps modulo 2^32 as well (it only
 * sets the Q flag), so both paths give the same bits.
 */
#ifndef MQ_DOT_H
#define MQ_DOT_H

#include <stdint.h>

/* acc[2*i + j] += sum_k w_i[k] * x_j[k] for k < n: two weight rows by two activation rows. */
void mq_dot_2x2(const int8_t *w0, const int8_t *w1, const int8_t *x0, const int8_t *x1, uint32_t n, uint32_t acc[4]);

/* acc[i] += sum_k w_i[k] * x[k]: two weight rows by one activation row. */
void mq_dot_2x1(const int8_t *w0, const int8_t *w1, const int8_t *x, uint32_t n, uint32_t acc[2]);

/*
 * Four int8 rows of n values as int16 for mq_dot_packed4: for every group of four columns
 * k..k+3, each row's (w[k], w[k+2], w[k+1], w[k+3]), rows one after the other; columns past n are
 * 0. 4 * 4 * ceil(n / 4) int16 in all.
 */
void mq_pack_rows4(const int8_t *const w[4], uint32_t n, int16_t *out);

/* acc[r] += sum_k row_r[k] * v[k] over 4 * words values of v (rows from mq_pack_rows4); returns the
 * end of the rows, where the next packed block starts. */
const int16_t *mq_dot_packed4(const int16_t *rows, const int8_t *v, uint32_t words, uint32_t acc[4]);

#endif /* MQ_DOT_H */
