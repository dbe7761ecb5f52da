/* mcuquant serial protocol: CRC-32, COBS and frames (PROTOCOL.md). */
#include "mq_protocol.h"

#include <string.h>

const char *mq_proto_error_name(mq_proto_error e)
{
    switch (e) {
    case MQ_PROTO_OK: return "OK";
    case MQ_PROTO_BAD_CRC: return "BAD_CRC";
    case MQ_PROTO_BAD_FRAME: return "BAD_FRAME";
    case MQ_PROTO_TOO_LARGE: return "TOO_LARGE";
    case MQ_PROTO_BAD_VERSION: return "BAD_VERSION";
    case MQ_PROTO_UNKNOWN_TYPE: return "UNKNOWN_TYPE";
    case MQ_PROTO_BAD_SEQUENCE: return "BAD_SEQUENCE";
    case MQ_PROTO_BAD_REQUEST: return "BAD_REQUEST";
    case MQ_PROTO_NOT_READY: return "NOT_READY";
    }
    return "UNKNOWN";
}

/* ------------------------------------------------------------------------------------------ */
/* CRC-32 (reflected 0xEDB88320), four bits per step: a 64-byte table instead of 1 KB. */

static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1db71064u, 0x3b6e20c8u, 0x26d930acu, 0x76dc4190u, 0x6b6b51f4u,
    0x4db26158u, 0x5005713cu, 0xedb88320u, 0xf00f9344u, 0xd6d6a3e8u, 0xcb61b38cu,
    0x9b64c2b0u, 0x86d3d2d4u, 0xa00ae278u, 0xbdbdf21cu,
};

uint32_t mq_crc32(uint32_t crc, const uint8_t *data, size_t len)
{
    size_t i;
    crc = ~crc;
    for (i = 0; i < len; ++i) {
        crc ^= data[i];
        crc = (crc >> 4) ^ crc_nibble[crc & 0x0fu];
        crc = (crc >> 4) ^ crc_nibble[crc & 0x0fu];
    }
    return ~crc;
}

/* ------------------------------------------------------------------------------------------ */
/* COBS */

/* An encoder fed in pieces (header, body, CRC) so a frame is never assembled twice. */
typedef struct cobs_stream {
    uint8_t *out;
    size_t cap, o, code_pos;
    uint8_t code; /* 1 + bytes in the current block */
    int open;     /* the current block still waits for its code byte */
    int ok;
} cobs_stream;

static void cobs_begin(cobs_stream *s, uint8_t *out, size_t cap)
{
    s->out = out;
    s->cap = cap;
    s->o = 1;
    s->code_pos = 0;
    s->code = 1;
    s->open = 1;
    s->ok = cap > 0;
}

static void cobs_feed(cobs_stream *s, const uint8_t *in, size_t len)
{
    size_t i;
    for (i = 0; i < len && s->ok; ++i) {
        if (!s->open) { /* the last block filled up at 254 bytes and input goes on: open another */
            if (s->o >= s->cap) { s->ok = 0; return; }
            s->code_pos = s->o++;
            s->code = 1;
            s->open = 1;
        }
        if (in[i] == 0) {
            s->out[s->code_pos] = s->code;
            if (s->o >= s->cap) { s->ok = 0; return; }
            s->code_pos = s->o++;
            s->code = 1;
            continue;
        }
        if (s->o >= s->cap) { s->ok = 0; return; }
        s->out[s->o++] = in[i];
        if (++s->code == 0xFF) { /* a full block at the very end gets no extra code byte */
            s->out[s->code_pos] = s->code;
            s->open = 0;
        }
    }
}

/* Returns the encoded length, 0 when it did not fit. */
static size_t cobs_end(cobs_stream *s)
{
    if (!s->ok) return 0;
    if (s->open) s->out[s->code_pos] = s->code;
    return s->o;
}

size_t mq_cobs_encode(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
    cobs_stream s;
    cobs_begin(&s, out, cap);
    cobs_feed(&s, in, len);
    return cobs_end(&s);
}

mq_proto_error mq_cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
    size_t i = 0, o = 0;
    /* o < i holds after each code byte is read, so copying forward is safe in place. */
    while (i < len) {
        size_t n, k;
        uint8_t code = in[i++];
        if (code == 0) return MQ_PROTO_BAD_FRAME;
        n = (size_t)code - 1u;
        if (n > len - i || n > cap - o) return MQ_PROTO_BAD_FRAME;
        for (k = 0; k < n; ++k) {
            if (in[i + k] == 0) return MQ_PROTO_BAD_FRAME;
            out[o + k] = in[i + k];
        }
        i += n;
        o += n;
        if (code != 0xFF && i < len) {
            if (o >= cap) return MQ_PROTO_BAD_FRAME;
            out[o++] = 0;
        }
    }
    *out_len = o;
    return MQ_PROTO_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Frames */

uint16_t mq_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (uint16_t)(p[1] << 8));
}

uint32_t mq_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

mq_proto_error mq_frame_parse(const uint8_t *buf, size_t len, mq_frame *frame)
{
    size_t body_len;
    if (len < MQ_PROTO_OVERHEAD) return MQ_PROTO_BAD_FRAME;
    body_len = len - MQ_PROTO_OVERHEAD;
    if (mq_crc32(0, buf, len - MQ_PROTO_CRC_BYTES) != mq_get_u32(buf + len - MQ_PROTO_CRC_BYTES))
        return MQ_PROTO_BAD_CRC;
    if (mq_get_u16(buf + 4) != body_len) return MQ_PROTO_BAD_FRAME;
    frame->version = buf[0];
    frame->type = buf[1];
    frame->seq = mq_get_u16(buf + 2);
    frame->body_len = (uint16_t)body_len;
    frame->body = buf + MQ_PROTO_HEADER_BYTES;
    frame->crc = mq_get_u32(buf + len - MQ_PROTO_CRC_BYTES);
    return MQ_PROTO_OK;
}

size_t mq_frame_encode(uint8_t type, uint16_t seq, const uint8_t *body, size_t body_len,
                       uint8_t *out, size_t cap)
{
    uint8_t header[MQ_PROTO_HEADER_BYTES];
    uint8_t crc_bytes[MQ_PROTO_CRC_BYTES];
    uint32_t crc;
    cobs_stream s;
    size_t n;

    if (body_len > MQ_PROTO_MAX_BODY || cap < 3) return 0;
    header[0] = (uint8_t)MQ_PROTO_VERSION;
    header[1] = type;
    header[2] = (uint8_t)(seq & 0xffu);
    header[3] = (uint8_t)(seq >> 8);
    header[4] = (uint8_t)(body_len & 0xffu);
    header[5] = (uint8_t)(body_len >> 8);
    crc = mq_crc32(0, header, sizeof header);
    crc = mq_crc32(crc, body, body_len);
    crc_bytes[0] = (uint8_t)(crc & 0xffu);
    crc_bytes[1] = (uint8_t)((crc >> 8) & 0xffu);
    crc_bytes[2] = (uint8_t)((crc >> 16) & 0xffu);
    crc_bytes[3] = (uint8_t)(crc >> 24);

    out[0] = 0; /* leading delimiter: closes off any garbage in the receiver's buffer */
    cobs_begin(&s, out + 1, cap - 2); /* keep room for the trailing delimiter */
    cobs_feed(&s, header, sizeof header);
    cobs_feed(&s, body, body_len);
    cobs_feed(&s, crc_bytes, sizeof crc_bytes);
    n = cobs_end(&s);
    if (n == 0) return 0;
    out[1 + n] = 0;
    return n + 2;
}

/* ------------------------------------------------------------------------------------------ */
/* Receiver */

void mq_rx_reset(mq_rx *rx)
{
    rx->len = 0;
    rx->overflow = 0;
    rx->last_ms = 0;
}

mq_rx_event mq_rx_push(mq_rx *rx, uint8_t byte, uint32_t now_ms, mq_frame *frame, mq_proto_error *error)
{
    size_t decoded_len = 0;
    mq_proto_error e;

    if ((rx->len > 0 || rx->overflow) && (uint32_t)(now_ms - rx->last_ms) > MQ_PROTO_RX_TIMEOUT_MS) {
        rx->len = 0; /* a stalled partial frame: the sender gave up on it */
        rx->overflow = 0;
    }
    rx->last_ms = now_ms;

    if (byte != 0) {
        if (rx->len < sizeof rx->buf) rx->buf[rx->len++] = byte;
        else rx->overflow = 1;
        return MQ_RX_NONE;
    }

    /* Delimiter: whatever was collected is one frame. */
    if (rx->overflow) {
        rx->len = 0;
        rx->overflow = 0;
        *error = MQ_PROTO_TOO_LARGE;
        return MQ_RX_ERROR;
    }
    if (rx->len == 0) return MQ_RX_NONE;
    e = mq_cobs_decode(rx->buf, rx->len, rx->buf, sizeof rx->buf, &decoded_len);
    rx->len = 0;
    if (e == MQ_PROTO_OK && decoded_len > MQ_PROTO_MAX_FRAME) e = MQ_PROTO_TOO_LARGE;
    if (e == MQ_PROTO_OK) e = mq_frame_parse(rx->buf, decoded_len, frame);
    if (e != MQ_PROTO_OK) {
        *error = e;
        return MQ_RX_ERROR;
    }
    return MQ_RX_FRAME;
}

/* ------------------------------------------------------------------------------------------ */
/* Body writer */

void mq_writer_init(mq_writer *w, uint8_t *buf, size_t cap)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->ok = 1;
}

void mq_put_bytes(mq_writer *w, const uint8_t *data, size_t len)
{
    if (!w->ok || len > w->cap - w->len) {
        w->ok = 0;
        return;
    }
    if (len) memcpy(w->buf + w->len, data, len);
    w->len += len;
}

void mq_put_u8(mq_writer *w, uint32_t v)
{
    uint8_t b = (uint8_t)(v & 0xffu);
    mq_put_bytes(w, &b, 1);
}

void mq_put_u16(mq_writer *w, uint32_t v)
{
    uint8_t b[2];
    b[0] = (uint8_t)(v & 0xffu);
    b[1] = (uint8_t)((v >> 8) & 0xffu);
    mq_put_bytes(w, b, 2);
}

void mq_put_u32(mq_writer *w, uint32_t v)
{
    uint8_t b[4];
    b[0] = (uint8_t)(v & 0xffu);
    b[1] = (uint8_t)((v >> 8) & 0xffu);
    b[2] = (uint8_t)((v >> 16) & 0xffu);
    b[3] = (uint8_t)(v >> 24);
    mq_put_bytes(w, b, 4);
}

void mq_put_f32(mq_writer *w, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits); /* IEEE-754 single on every supported target */
    mq_put_u32(w, bits);
}

void mq_put_str(mq_writer *w, const char *s, size_t max_len)
{
    size_t n = 0;
    if (max_len > 255) max_len = 255;
    if (s == NULL) s = "";
    while (n < max_len && s[n] != '\0') ++n;
    mq_put_u8(w, (uint32_t)n);
    mq_put_bytes(w, (const uint8_t *)s, n);
}
