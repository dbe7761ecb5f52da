/* The dot products of mq_dot.h: Helium or ACLE DSP intrinsics where the core has them, plain C elsewhere. */
#include "mq_dot.h"

#include <string.h>

#include "mq_op_util.h"

#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>

static inline uint32_t load4(const int8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v); /* an unaligned LDR on these cores */
    return v;
}

/* Bytes 0 and 2, and bytes 1 and 3, of a word, each sign-extended to int16 (SXTB16, SXTB16 ROR #8). */
static inline int16x2_t even16(uint32_t v) { return __sxtb16((int8x4_t)v); }
static inline int16x2_t odd16(uint32_t v) { return __sxtb16((int8x4_t)((v >> 8) | (v << 24))); }

static inline uint32_t tail(const int8_t *w, const int8_t *x, uint32_t k, uint32_t n, uint32_t acc)
{
    for (; k < n; ++k) acc += (uint32_t)((int32_t)w[k] * (int32_t)x[k]);
    return acc;
}

#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
#include <arm_mve.h>

/* Helium (Cortex-M55): sixteen int8 products summed into a 32-bit register per VMLADAVA.S8 (wrapping
 * like the reference's int32 arithmetic); the last, partial vector's lanes are predicated off
 * (VCTP8: inactive lanes load as zero and touch no memory). */
void mq_dot_2x2(const int8_t *w0, const int8_t *w1, const int8_t *x0, const int8_t *x1, uint32_t n, uint32_t acc[4])
{
    int32_t a00 = mq_wrap_i32(acc[0]), a01 = mq_wrap_i32(acc[1]), a10 = mq_wrap_i32(acc[2]), a11 = mq_wrap_i32(acc[3]);
    uint32_t k;
    for (k = 0; k < n; k += 16u) {
        const mve_pred16_t p = vctp8q(n - k);
        const int8x16_t u = vldrbq_z_s8(w0 + k, p), v = vldrbq_z_s8(w1 + k, p);
        const int8x16_t x = vldrbq_z_s8(x0 + k, p), y = vldrbq_z_s8(x1 + k, p);
        a00 = vmladavaq_s8(a00, u, x);
        a01 = vmladavaq_s8(a01, u, y);
        a10 = vmladavaq_s8(a10, v, x);
        a11 = vmladavaq_s8(a11, v, y);
    }
    acc[0] = (uint32_t)a00;
    acc[1] = (uint32_t)a01;
    acc[2] = (uint32_t)a10;
    acc[3] = (uint32_t)a11;
}

void mq_dot_2x1(const int8_t *w0, const int8_t *w1, const int8_t *x, uint32_t n, uint32_t acc[2])
{
    int32_t a0 = mq_wrap_i32(acc[0]), a1 = mq_wrap_i32(acc[1]);
    uint32_t k;
    for (k = 0; k < n; k += 16u) {
        const mve_pred16_t p = vctp8q(n - k);
        const int8x16_t xv = vldrbq_z_s8(x + k, p);
        a0 = vmladavaq_s8(a0, vldrbq_z_s8(w0 + k, p), xv);
        a1 = vmladavaq_s8(a1, vldrbq_z_s8(w1 + k, p), xv);
    }
    acc[0] = (uint32_t)a0;
    acc[1] = (uint32_t)a1;
}

#else /* DSP: SXTB16 + SMLAD */

void mq_dot_2x2(const int8_t *w0, const int8_t *w1, const int8_t *x0, const int8_t *x1, uint32_t n, uint32_t acc[4])
{
    int32_t a00 = mq_wrap_i32(acc[0]), a01 = mq_wrap_i32(acc[1]), a10 = mq_wrap_i32(acc[2]), a11 = mq_wrap_i32(acc[3]);
    uint32_t k = 0;
    for (; k + 4u <= n; k += 4u) {
        const uint32_t xa = load4(x0 + k), xb = load4(x1 + k);
        const int16x2_t xae = even16(xa), xao = odd16(xa), xbe = even16(xb), xbo = odd16(xb);
        uint32_t wv = load4(w0 + k);
        int16x2_t we = even16(wv), wo = odd16(wv);
        a00 = __smlad(wo, xao, __smlad(we, xae, a00));
        a01 = __smlad(wo, xbo, __smlad(we, xbe, a01));
        wv = load4(w1 + k);
        we = even16(wv);
        wo = odd16(wv);
        a10 = __smlad(wo, xao, __smlad(we, xae, a10));
        a11 = __smlad(wo, xbo, __smlad(we, xbe, a11));
    }
    acc[0] = tail(w0, x0, k, n, (uint32_t)a00);
    acc[1] = tail(w0, x1, k, n, (uint32_t)a01);
    acc[2] = tail(w1, x0, k, n, (uint32_t)a10);
    acc[3] = tail(w1, x1, k, n, (uint32_t)a11);
}

void mq_dot_2x1(const int8_t *w0, const int8_t *w1, const int8_t *x, uint32_t n, uint32_t acc[2])
{
    int32_t a0 = mq_wrap_i32(acc[0]), a1 = mq_wrap_i32(acc[1]);
    uint32_t k = 0;
    for (; k + 4u <= n; k += 4u) {
        const uint32_t xv = load4(x + k);
        const int16x2_t xe = even16(xv), xo = odd16(xv);
        const uint32_t wa = load4(w0 + k), wb = load4(w1 + k);
        a0 = __smlad(odd16(wa), xo, __smlad(even16(wa), xe, a0));
        a1 = __smlad(odd16(wb), xo, __smlad(even16(wb), xe, a1));
    }
    acc[0] = tail(w0, x, k, n, (uint32_t)a0);
    acc[1] = tail(w1, x, k, n, (uint32_t)a1);
}
#endif /* MVE */

/*
 * acc[0..3] += four rows packed by mq_pack_rows4 times `words` (>= 1) words of v; returns the end of
 * the rows. In assembly so that the 13 live registers stay registers. AAPCS: r0 = packed rows,
 * r1 = v, r2 = words, r3 = acc. Per word of v: 15 instructions, 16 multiplies (the weights come
 * as int16 pairs in SXTB16 order: no split).
 */
__attribute__((naked, noinline)) const int16_t *mq_dot_packed4(const int16_t *rows __attribute__((unused)),
                                                               const int8_t *v __attribute__((unused)),
                                                               uint32_t words __attribute__((unused)),
                                                               uint32_t acc[4] __attribute__((unused)))
{
    __asm__ volatile(
        "push   {r3-r11, lr}\n\t"
        "ldm    r3, {r4-r7}\n\t"         /* the four accumulators */
        "add    r2, r1, r2, lsl #2\n"     /* the end of v */
        "1:\n\t"
        "ldr    r12, [r1], #4\n\t"       /* four values of v */
        "sxtb16 lr, r12\n\t"             /* v0, v2 */
        "sxtb16 r12, r12, ror #8\n\t"    /* v1, v3 */
        "ldm    r0!, {r8-r11}\n\t"       /* rows 0 and 1: (w0, w2), (w1, w3) each */
        "smlad  r4, r8, lr, r4\n\t"
        "smlad  r4, r9, r12, r4\n\t"
        "smlad  r5, r10, lr, r5\n\t"
        "smlad  r5, r11, r12, r5\n\t"
        "ldm    r0!, {r8-r11}\n\t"       /* rows 2 and 3 */
        "smlad  r6, r8, lr, r6\n\t"
        "smlad  r6, r9, r12, r6\n\t"
        "smlad  r7, r10, lr, r7\n\t"
        "smlad  r7, r11, r12, r7\n\t"
        "cmp    r1, r2\n\t"
        "bne    1b\n\t"
        "ldr    r3, [sp]\n\t"
        "stm    r3, {r4-r7}\n\t"
        "pop    {r3-r11, pc}\n");
}

#else /* plain C: the same blocks */

void mq_dot_2x2(const int8_t *w0, const int8_t *w1, const int8_t *x0, const int8_t *x1, uint32_t n, uint32_t acc[4])
{
    uint32_t a00 = acc[0], a01 = acc[1], a10 = acc[2], a11 = acc[3], k;
    for (k = 0; k < n; ++k) {
        const int32_t xa = x0[k], xb = x1[k], wa = w0[k], wb = w1[k];
        a00 += (uint32_t)(wa * xa);
        a01 += (uint32_t)(wa * xb);
        a10 += (uint32_t)(wb * xa);
        a11 += (uint32_t)(wb * xb);
    }
    acc[0] = a00;
    acc[1] = a01;
    acc[2] = a10;
    acc[3] = a11;
}

void mq_dot_2x1(const int8_t *w0, const int8_t *w1, const int8_t *x, uint32_t n, uint32_t acc[2])
{
    uint32_t a0 = acc[0], a1 = acc[1], k;
    for (k = 0; k < n; ++k) {
        const int32_t xv = x[k];
        a0 += (uint32_t)((int32_t)w0[k] * xv);
        a1 += (uint32_t)((int32_t)w1[k] * xv);
    }
    acc[0] = a0;
    acc[1] = a1;
}

const int16_t *mq_dot_packed4(const int16_t *rows, const int8_t *v, uint32_t words, uint32_t acc[4])
{
    for (; words > 0; --words, v += 4) {
        uint32_t r;
        for (r = 0; r < 4u; ++r, rows += 4) /* (w0, w2, w1, w3) against (v0, v2, v1, v3) */
            acc[r] += (uint32_t)(rows[0] * v[0] + rows[1] * v[2] + rows[2] * v[1] + rows[3] * v[3]);
    }
    return rows;
}

#endif

void mq_pack_rows4(const int8_t *const w[4], uint32_t n, int16_t *out)
{
    static const uint8_t order[4] = {0, 2, 1, 3}; /* SXTB16 order: the even, then the odd bytes */
    uint32_t k, r, j;
    for (k = 0; k < n; k += 4u)
        for (r = 0; r < 4u; ++r)
            for (j = 0; j < 4u; ++j, ++out) *out = k + order[j] < n ? w[r][k + order[j]] : 0;
}
