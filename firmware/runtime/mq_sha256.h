/*
 * SHA-256 (FIPS 180-4) of two byte ranges one after the other, for the runtime's own use: binding
 * the operators' prepared data to the model it was made for (mq_init_prepared).
 */
#ifndef MQ_SHA256_H
#define MQ_SHA256_H

#include <stddef.h>
#include <stdint.h>

/* digest = SHA-256(a[0..a_len) || b[0..b_len)); b may be NULL when b_len is 0. */
void mq_sha256_pair(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len, uint8_t digest[32]);

#endif /* MQ_SHA256_H */
