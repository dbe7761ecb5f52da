/* Bounds-checked FlatBuffers reader: see mq_flatbuffer.h. */
#include "mq_flatbuffer.h"

#include <string.h>

uint16_t mq_fb_load_u16(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] | ((unsigned)p[1] << 8));
}

uint32_t mq_fb_load_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

uint64_t mq_fb_load_u64(const uint8_t *p)
{
    return (uint64_t)mq_fb_load_u32(p) | ((uint64_t)mq_fb_load_u32(p + 4) << 32);
}

/* Two's-complement reinterpretation without implementation-defined conversions. */
static int32_t as_i32(uint32_t u)
{
    int32_t v;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* Does [pos, pos + n) lie inside the model? */
static int in_bounds(const mq_fb *fb, size_t pos, size_t n)
{
    return pos <= fb->len && n <= fb->len - pos;
}

static mq_status table_at(const mq_fb *fb, size_t pos, mq_fb_table *out)
{
    if (!in_bounds(fb, pos, 4)) return MQ_ERR_TRUNCATED;
    /* The table starts with a signed offset: vtable = table - soffset. */
    const int32_t soffset = as_i32(mq_fb_load_u32(fb->buf + pos));
    size_t vtable;
    if (soffset > 0) {
        if ((uint32_t)soffset > pos) return MQ_ERR_TRUNCATED;
        vtable = pos - (uint32_t)soffset;
    } else {
        const uint32_t back = 0u - (uint32_t)soffset; /* |soffset|, also for INT32_MIN */
        if (!in_bounds(fb, pos, back)) return MQ_ERR_TRUNCATED;
        vtable = pos + back;
    }
    if (!in_bounds(fb, vtable, 4)) return MQ_ERR_TRUNCATED;
    const uint16_t vtable_len = mq_fb_load_u16(fb->buf + vtable);
    const uint16_t table_len = mq_fb_load_u16(fb->buf + vtable + 2);
    if (vtable_len < 4 || (vtable_len & 1u) != 0 || table_len < 4) return MQ_ERR_MALFORMED;
    if (!in_bounds(fb, vtable, vtable_len) || !in_bounds(fb, pos, table_len)) return MQ_ERR_TRUNCATED;
    out->pos = pos;
    out->vtable = vtable;
    out->vtable_len = vtable_len;
    out->table_len = table_len;
    return MQ_OK;
}

mq_status mq_fb_root(const mq_fb *fb, mq_fb_table *root)
{
    if (fb->buf == NULL || fb->len < 8) return MQ_ERR_TRUNCATED;
    if (memcmp(fb->buf + 4, "TFL3", 4) != 0) return MQ_ERR_MALFORMED;
    return table_at(fb, mq_fb_load_u32(fb->buf), root);
}

/* Position of field `id` (of `size` inline bytes) in table t, or 0 when absent. */
static mq_status field_pos(const mq_fb_table *t, const mq_fb *fb, unsigned id, size_t size, size_t *pos)
{
    *pos = 0;
    const size_t slot = 4u + 2u * (size_t)id;
    if (slot + 2u > t->vtable_len) return MQ_OK; /* vtable written by an older schema: absent */
    const uint16_t off = mq_fb_load_u16(fb->buf + t->vtable + slot);
    if (off == 0) return MQ_OK;
    if (off < 4u || (size_t)off + size > t->table_len) return MQ_ERR_MALFORMED;
    *pos = t->pos + off;
    return MQ_OK;
}

#define MQ_FB_SCALAR(fn, type, size, load)                                                  \
    mq_status fn(const mq_fb *fb, const mq_fb_table *t, unsigned id, type def, type *out)   \
    {                                                                                        \
        size_t pos;                                                                          \
        const mq_status s = field_pos(t, fb, id, size, &pos);                                \
        if (s != MQ_OK) return s;                                                            \
        if (pos == 0) {                                                                      \
            *out = def;                                                                      \
        } else {                                                                             \
            load;                                                                            \
        }                                                                                    \
        return MQ_OK;                                                                        \
    }

MQ_FB_SCALAR(mq_fb_u8, uint8_t, 1, *out = fb->buf[pos])
MQ_FB_SCALAR(mq_fb_i8, int8_t, 1, memcpy(out, fb->buf + pos, 1))
MQ_FB_SCALAR(mq_fb_i32, int32_t, 4, *out = as_i32(mq_fb_load_u32(fb->buf + pos)))
MQ_FB_SCALAR(mq_fb_u32, uint32_t, 4, *out = mq_fb_load_u32(fb->buf + pos))
MQ_FB_SCALAR(mq_fb_u64, uint64_t, 8, *out = mq_fb_load_u64(fb->buf + pos))
MQ_FB_SCALAR(mq_fb_f32, float, 4, { const uint32_t u = mq_fb_load_u32(fb->buf + pos); memcpy(out, &u, 4); })

/* Follow the unsigned offset stored at `pos` (already known to hold 4 bytes). */
static mq_status follow(const mq_fb *fb, size_t pos, size_t *target)
{
    const uint32_t off = mq_fb_load_u32(fb->buf + pos);
    if (!in_bounds(fb, pos, off)) return MQ_ERR_TRUNCATED;
    *target = pos + off;
    return MQ_OK;
}

mq_status mq_fb_table_field(const mq_fb *fb, const mq_fb_table *t, unsigned id, mq_fb_table *out,
                            int *present)
{
    size_t pos, target;
    mq_status s = field_pos(t, fb, id, 4, &pos);
    *present = 0;
    if (s != MQ_OK || pos == 0) return s;
    s = follow(fb, pos, &target);
    if (s != MQ_OK) return s;
    s = table_at(fb, target, out);
    if (s == MQ_OK) *present = 1;
    return s;
}

static mq_status vector_at(const mq_fb *fb, size_t pos, size_t elem_size, mq_fb_vector *out)
{
    if (!in_bounds(fb, pos, 4)) return MQ_ERR_TRUNCATED;
    const uint32_t n = mq_fb_load_u32(fb->buf + pos);
    const size_t first = pos + 4u;
    /* elem_size <= 8, so the product fits in 64 bits. */
    const uint64_t bytes = (uint64_t)n * (uint64_t)elem_size;
    if (bytes > (uint64_t)(fb->len - first)) return MQ_ERR_TRUNCATED;
    out->pos = first;
    out->len = n;
    return MQ_OK;
}

mq_status mq_fb_vector_field(const mq_fb *fb, const mq_fb_table *t, unsigned id, size_t elem_size,
                             mq_fb_vector *out)
{
    size_t pos, target;
    out->pos = 0;
    out->len = 0;
    mq_status s = field_pos(t, fb, id, 4, &pos);
    if (s != MQ_OK || pos == 0) return s;
    s = follow(fb, pos, &target);
    if (s != MQ_OK) return s;
    return vector_at(fb, target, elem_size, out);
}

mq_status mq_fb_vec_i32(const mq_fb *fb, const mq_fb_vector *v, uint32_t i, int32_t *out)
{
    if (i >= v->len) return MQ_ERR_MALFORMED;
    *out = as_i32(mq_fb_load_u32(fb->buf + v->pos + 4u * (size_t)i));
    return MQ_OK;
}

mq_status mq_fb_vec_table(const mq_fb *fb, const mq_fb_vector *v, uint32_t i, mq_fb_table *out)
{
    size_t target;
    if (i >= v->len) return MQ_ERR_MALFORMED;
    const mq_status s = follow(fb, v->pos + 4u * (size_t)i, &target);
    if (s != MQ_OK) return s;
    return table_at(fb, target, out);
}
