/* The column buffer and matrix product of mq_gemm.h: Helium or DSP instructions where the core has
 * them. */
#include "mq_gemm.h"

#if defined(MQ_GEMM_MVE)
#include <arm_mve.h>

/* Where value k of a slot lives: its group, the slot's half, k's place in the group. */
static inline uint32_t position(uint32_t slot, uint32_t k)
{
    return (k >> 3) * 16u + slot * 8u + (k & 7u);
}

/* Eight int8 widened to int16 (VLDRB.S16, VSTRH). */
static inline void put_group(int16_t *at, const int8_t *src)
{
    vst1q_s16(at, vldrbq_s16(src));
}

/* acc[0..3] += the products over `groups` (>= 1) whole groups: per group two widening loads of eight
 * weights, two loads of eight columns and four VMLADAVA.S16 (sums of eight products into a 32-bit
 * register, wrapping like the reference's int32 arithmetic), 32 multiplies. */
static void gemm_groups(const int8_t *w0, uint32_t row_stride, const int16_t *cols, uint32_t groups, uint32_t *acc)
{
    const int8_t *w1 = w0 + row_stride;
    int32_t a00 = (int32_t)acc[0], a01 = (int32_t)acc[1], a10 = (int32_t)acc[2], a11 = (int32_t)acc[3];
    for (; groups > 0; --groups, w0 += 8, w1 += 8, cols += 16) {
        const int16x8_t u = vldrbq_s16(w0), v = vldrbq_s16(w1);
        const int16x8_t x0 = vld1q_s16(cols), x1 = vld1q_s16(cols + 8);
        a00 = vmladavaq_s16(a00, u, x0);
        a01 = vmladavaq_s16(a01, u, x1);
        a10 = vmladavaq_s16(a10, v, x0);
        a11 = vmladavaq_s16(a11, v, x1);
    }
    acc[0] = (uint32_t)a00;
    acc[1] = (uint32_t)a01;
    acc[2] = (uint32_t)a10;
    acc[3] = (uint32_t)a11;
}

#else

/* Where value k of a slot lives: its group, the slot's half, the SXTB16 order within the group. */
static inline uint32_t position(uint32_t slot, uint32_t k)
{
    return (k >> 2) * 8u + slot * 4u + ((k & 1u) << 1) + ((k & 2u) >> 1);
}

#endif

#if defined(__ARM_FEATURE_DSP)

static inline uint32_t odd16(uint32_t v) /* bytes 1 and 3 sign-extended: SXTB16 with ROR #8 */
{
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}

#if !defined(MQ_GEMM_MVE)
/* Four int8 as two words of int16 pairs: bytes 0 and 2, bytes 1 and 3 (the group order). */
static inline void put_group(int16_t *at, const int8_t *src)
{
    uint32_t v, halves[2];
    memcpy(&v, src, sizeof v); /* an unaligned LDR */
    halves[0] = (uint32_t)__sxtb16((int8x4_t)v);
    halves[1] = odd16(v);
    memcpy(at, halves, sizeof halves);
}

/*
 * acc[0..3] += the products over `groups` (>= 1) whole groups; the loop as written in assembly
 * because GCC spills the 14 live registers it needs (4 accumulators, 4 column words, 2 weight
 * words, 4 pointers and bounds), which doubles its instruction count. AAPCS: r0 = w0, r1 =
 * row_stride, r2 = cols, r3 = groups, acc on the stack. Per group: 17 instructions, 16 multiplies.
 */
__attribute__((naked, noinline)) static void gemm_groups(const int8_t *w0 __attribute__((unused)),
                                                         uint32_t row_stride __attribute__((unused)),
                                                         const int16_t *cols __attribute__((unused)),
                                                         uint32_t groups __attribute__((unused)),
                                                         uint32_t *acc __attribute__((unused)))
{
    __asm__ volatile(
        "push   {r4-r11, lr}\n\t"
        "ldr    lr, [sp, #36]\n\t"       /* acc */
        "ldm    lr, {r4-r7}\n\t"         /* r4 = acc00, r5 = acc01, r6 = acc10, r7 = acc11 */
        "add    r3, r2, r3, lsl #4\n"    /* r3 = the end of the groups */
        "1:\n\t"
        "ldr    r12, [r0, r1]\n\t"       /* four weights of row 1 */
        "ldm    r2!, {r8-r11}\n\t"       /* slot 0 (k0,k2) (k1,k3), slot 1 likewise */
        "sxtb16 lr, r12\n\t"
        "sxtb16 r12, r12, ror #8\n\t"
        "smlad  r6, lr, r8, r6\n\t"
        "smlad  r6, r12, r9, r6\n\t"
        "smlad  r7, lr, r10, r7\n\t"
        "smlad  r7, r12, r11, r7\n\t"
        "ldr    r12, [r0], #4\n\t"       /* four weights of row 0 */
        "sxtb16 lr, r12\n\t"
        "sxtb16 r12, r12, ror #8\n\t"
        "smlad  r4, lr, r8, r4\n\t"
        "smlad  r4, r12, r9, r4\n\t"
        "smlad  r5, lr, r10, r5\n\t"
        "smlad  r5, r12, r11, r5\n\t"
        "cmp    r2, r3\n\t"
        "bne    1b\n\t"
        "ldr    lr, [sp, #36]\n\t"
        "stm    lr, {r4-r7}\n\t"
        "pop    {r4-r11, pc}\n");
}
#endif /* !MQ_GEMM_MVE */

#if defined(MQ_GEMM_MVE)
/* Four channels as four int32 lanes: per tap two widening loads (VLDRB.S32), VMUL and VADD, lanes
 * wrapping modulo 2^32 like the reference's int32 arithmetic. */
void mq_taps_mac4(const int8_t *const *taps, uint32_t ntaps, const int8_t *w, uint32_t stride, uint32_t offset,
                  uint32_t acc[4])
{
    int32x4_t a = vld1q_s32((const int32_t *)(const void *)acc);
    for (; ntaps > 0; --ntaps, ++taps, w += stride) a = vaddq_s32(a, vmulq_s32(vldrbq_s32(w), vldrbq_s32(*taps + offset)));
    vst1q_s32((int32_t *)(void *)acc, a);
}
#else
/* mq_taps_mac4 in assembly for the same reason: r0 = taps, r1 = ntaps, r2 = w, r3 = stride, offset
 * and acc on the stack. Per tap: 14 instructions, 4 multiplies. */
__attribute__((naked, noinline)) void mq_taps_mac4(const int8_t *const *taps __attribute__((unused)),
                                                   uint32_t ntaps __attribute__((unused)),
                                                   const int8_t *w __attribute__((unused)),
                                                   uint32_t stride __attribute__((unused)),
                                                   uint32_t offset __attribute__((unused)),
                                                   uint32_t acc[4] __attribute__((unused)))
{
    __asm__ volatile(
        "push   {r4-r11, lr}\n\t"
        "ldr    r12, [sp, #36]\n\t"      /* offset */
        "ldr    lr, [sp, #40]\n\t"       /* acc */
        "ldm    lr, {r4-r7}\n\t"
        "add    r1, r0, r1, lsl #2\n"     /* the end of the tap list */
        "1:\n\t"
        "ldr    r8, [r0], #4\n\t"        /* this tap's input pixel */
        "ldr    r8, [r8, r12]\n\t"       /* its four channels */
        "ldr    r9, [r2]\n\t"            /* the tap's four weights */
        "add    r2, r2, r3\n\t"
        "sxtb16 r10, r9\n\t"
        "sxtb16 r11, r8\n\t"
        "smlabb r4, r10, r11, r4\n\t"
        "smlatt r6, r10, r11, r6\n\t"
        "sxtb16 r9, r9, ror #8\n\t"
        "sxtb16 r8, r8, ror #8\n\t"
        "smlabb r5, r9, r8, r5\n\t"
        "smlatt r7, r9, r8, r7\n\t"
        "cmp    r0, r1\n\t"
        "bne    1b\n\t"
        "ldr    lr, [sp, #40]\n\t"
        "stm    lr, {r4-r7}\n\t"
        "pop    {r4-r11, pc}\n");
}
#endif /* MQ_GEMM_MVE */

#else /* plain C */

void mq_taps_mac4(const int8_t *const *taps, uint32_t ntaps, const int8_t *w, uint32_t stride, uint32_t offset,
                  uint32_t acc[4])
{
    for (; ntaps > 0; --ntaps, ++taps, w += stride) mq_mac4(mq_load4(w), mq_load4(*taps + offset), acc);
}

static inline void put_group(int16_t *at, const int8_t *src)
{
    at[0] = src[0];
    at[1] = src[2];
    at[2] = src[1];
    at[3] = src[3];
}

static void gemm_groups(const int8_t *w0, uint32_t row_stride, const int16_t *cols, uint32_t groups, uint32_t *acc)
{
    const int8_t *w1 = w0 + row_stride;
    uint32_t a00 = acc[0], a01 = acc[1], a10 = acc[2], a11 = acc[3];
    for (; groups > 0; --groups, w0 += 4, w1 += 4, cols += 8) {
        static const uint8_t at[4] = {0, 2, 1, 3}; /* k -> position in the group */
        for (uint32_t j = 0; j < 4u; ++j) {
            const int32_t x0 = cols[at[j]], x1 = cols[4u + at[j]], u = w0[j], v = w1[j];
            a00 += (uint32_t)(u * x0);
            a01 += (uint32_t)(u * x1);
            a10 += (uint32_t)(v * x0);
            a11 += (uint32_t)(v * x1);
        }
    }
    acc[0] = a00;
    acc[1] = a01;
    acc[2] = a10;
    acc[3] = a11;
}

#endif

void mq_cols_put(int16_t *cols, uint32_t slot, uint32_t k, const int8_t *src, uint32_t n)
{
    const uint32_t g = MQ_COLS_GROUP;
    for (; n > 0 && (k & (g - 1u)) != 0; --n, ++k, ++src) cols[position(slot, k)] = *src;
    for (; n >= g; n -= g, k += g, src += g) put_group(cols + position(slot, k), src);
    for (; n > 0; --n, ++k, ++src) cols[position(slot, k)] = *src;
}

void mq_cols_fill(int16_t *cols, uint32_t slot, uint32_t k, uint32_t n, int16_t value)
{
    const uint32_t g = MQ_COLS_GROUP; /* a group's values of one slot are contiguous in both layouts */
    int16_t run[MQ_COLS_GROUP];
    uint32_t i;
    for (i = 0; i < g; ++i) run[i] = value;
    for (; n > 0 && (k & (g - 1u)) != 0; --n, ++k) cols[position(slot, k)] = value;
    for (; n >= g; n -= g, k += g) memcpy(cols + position(slot, k), run, sizeof run);
    for (; n > 0; --n, ++k) cols[position(slot, k)] = value;
}

void mq_gemm_2x2(const int8_t *w0, uint32_t row_stride, const int16_t *cols, uint32_t n, uint32_t acc[4])
{
    const int8_t *w1 = w0 + row_stride;
    const uint32_t groups = n / MQ_COLS_GROUP;
    uint32_t k;
    if (groups > 0) gemm_groups(w0, row_stride, cols, groups, acc);
    for (k = groups * MQ_COLS_GROUP; k < n; ++k) { /* the last, partial group */
        const int32_t x0 = cols[position(0, k)], x1 = cols[position(1, k)];
        acc[0] += (uint32_t)(w0[k] * x0);
        acc[1] += (uint32_t)(w0[k] * x1);
        acc[2] += (uint32_t)(w1[k] * x0);
        acc[3] += (uint32_t)(w1[k] * x1);
    }
}
