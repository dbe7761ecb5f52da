/* The dot products of mq_dot.h: ACLE DSP intrinsics where the core has them, plain C elsewhere. */
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

void mq_dot_1x1(const int8_t *w, const int8_t *x, uint32_t n, uint32_t *acc)
{
    int32_t a = mq_wrap_i32(*acc);
    uint32_t k = 0;
    for (; k + 4u <= n; k += 4u) {
        const uint32_t xv = load4(x + k), wv = load4(w + k);
        a = __smlad(odd16(wv), odd16(xv), __smlad(even16(wv), even16(xv), a));
    }
    *acc = tail(w, x, k, n, (uint32_t)a);
}

void mq_sum_2(const int8_t *w0, const int8_t *w1, uint32_t n, uint32_t sums[2])
{
    const int16x2_t ones = 0x00010001; /* SMLAD with (1, 1): the sum of both int16 halves */
    int32_t s0 = mq_wrap_i32(sums[0]), s1 = mq_wrap_i32(sums[1]);
    uint32_t k = 0;
    for (; k + 4u <= n; k += 4u) {
        const uint32_t a = load4(w0 + k), b = load4(w1 + k);
        s0 = __smlad(odd16(a), ones, __smlad(even16(a), ones, s0));
        s1 = __smlad(odd16(b), ones, __smlad(even16(b), ones, s1));
    }
    sums[0] = (uint32_t)s0;
    sums[1] = (uint32_t)s1;
    for (; k < n; ++k) {
        sums[0] += (uint32_t)(int32_t)w0[k];
        sums[1] += (uint32_t)(int32_t)w1[k];
    }
}

void mq_mac_4ch(const int8_t *w, const int8_t *x, uint32_t acc[4])
{
    const uint32_t wv = load4(w), xv = load4(x);
    const int16x2_t we = even16(wv), wo = odd16(wv), xe = even16(xv), xo = odd16(xv);
    /* SMLABB / SMLATT: the bottom / top int16 halves multiplied, one product each. */
    acc[0] = (uint32_t)__smlabb(we, xe, mq_wrap_i32(acc[0]));
    acc[2] = (uint32_t)__smlatt(we, xe, mq_wrap_i32(acc[2]));
    acc[1] = (uint32_t)__smlabb(wo, xo, mq_wrap_i32(acc[1]));
    acc[3] = (uint32_t)__smlatt(wo, xo, mq_wrap_i32(acc[3]));
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

void mq_dot_1x1(const int8_t *w, const int8_t *x, uint32_t n, uint32_t *acc)
{
    uint32_t a = *acc, k;
    for (k = 0; k < n; ++k) a += (uint32_t)((int32_t)w[k] * (int32_t)x[k]);
    *acc = a;
}

void mq_sum_2(const int8_t *w0, const int8_t *w1, uint32_t n, uint32_t sums[2])
{
    uint32_t s0 = sums[0], s1 = sums[1], k;
    for (k = 0; k < n; ++k) {
        s0 += (uint32_t)(int32_t)w0[k];
        s1 += (uint32_t)(int32_t)w1[k];
    }
    sums[0] = s0;
    sums[1] = s1;
}

void mq_mac_4ch(const int8_t *w, const int8_t *x, uint32_t acc[4])
{
    int c;
    for (c = 0; c < 4; ++c) acc[c] += (uint32_t)((int32_t)w[c] * (int32_t)x[c]);
}

#endif
