/*
 * A bounds-checked FlatBuffers reader for the parts of the TFLite schema the runtime reads.
 *
 * Every position is a byte offset into the model (never a raw pointer), every read first proves
 * that the bytes lie inside the model, and multi-byte values are assembled from single bytes
 * (little-endian, as FlatBuffers stores them), so a hostile model can neither make the reader
 * leave the buffer nor cause a misaligned load. Sums of offsets and lengths are checked in the
 * form "a <= len && b <= len - a", which cannot overflow.
 *
 * Errors: a position past the end of the model -> MQ_ERR_TRUNCATED; an inconsistent structure
 * (vtable too short or odd-sized, a field that does not fit in its table) -> MQ_ERR_MALFORMED.
 */
#ifndef MQ_FLATBUFFER_H
#define MQ_FLATBUFFER_H

#include <stddef.h>
#include <stdint.h>

#include "mq_runtime.h"

typedef struct mq_fb {
    const uint8_t *buf;
    size_t len;
} mq_fb;

/* A table whose vtable has been validated. */
typedef struct mq_fb_table {
    size_t pos;          /* start of the table (its soffset to the vtable) */
    size_t vtable;       /* start of the vtable */
    uint16_t vtable_len; /* bytes of the vtable, including its two header fields */
    uint16_t table_len;  /* bytes of the table's inline data, including the soffset */
} mq_fb_table;

/* A vector whose elements have been proven to lie inside the model. */
typedef struct mq_fb_vector {
    size_t pos;   /* first element */
    uint32_t len; /* element count */
} mq_fb_vector;

/* Little-endian loads at a position the caller has already bounds-checked. */
uint16_t mq_fb_load_u16(const uint8_t *p);
uint32_t mq_fb_load_u32(const uint8_t *p);
uint64_t mq_fb_load_u64(const uint8_t *p);

/* The root table; also checks the "TFL3" file identifier. */
mq_status mq_fb_root(const mq_fb *fb, mq_fb_table *root);

/*
 * Scalar fields: `id` is the field's index in the schema (a union occupies two: type, value).
 * An absent field yields the default.
 */
mq_status mq_fb_u8(const mq_fb *fb, const mq_fb_table *t, unsigned id, uint8_t def, uint8_t *out);
mq_status mq_fb_i8(const mq_fb *fb, const mq_fb_table *t, unsigned id, int8_t def, int8_t *out);
mq_status mq_fb_i32(const mq_fb *fb, const mq_fb_table *t, unsigned id, int32_t def, int32_t *out);
mq_status mq_fb_u32(const mq_fb *fb, const mq_fb_table *t, unsigned id, uint32_t def, uint32_t *out);
mq_status mq_fb_u64(const mq_fb *fb, const mq_fb_table *t, unsigned id, uint64_t def, uint64_t *out);
mq_status mq_fb_f32(const mq_fb *fb, const mq_fb_table *t, unsigned id, float def, float *out);

/* A sub-table field; *present = 0 (and *out untouched) when the field is absent. */
mq_status mq_fb_table_field(const mq_fb *fb, const mq_fb_table *t, unsigned id, mq_fb_table *out,
                            int *present);

/*
 * A vector field of elements of `elem_size` bytes (strings: elem_size 1). An absent field is an
 * empty vector. Offsets of tables are elements of 4 bytes.
 */
mq_status mq_fb_vector_field(const mq_fb *fb, const mq_fb_table *t, unsigned id, size_t elem_size,
                             mq_fb_vector *out);

/* Elements of a vector; the index must be below v->len (checked: MQ_ERR_MALFORMED otherwise). */
mq_status mq_fb_vec_i32(const mq_fb *fb, const mq_fb_vector *v, uint32_t i, int32_t *out);
mq_status mq_fb_vec_table(const mq_fb *fb, const mq_fb_vector *v, uint32_t i, mq_fb_table *out);

#endif /* MQ_FLATBUFFER_H */
