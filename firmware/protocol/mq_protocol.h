/*
 * mcuquant serial protocol, device side: CRC-32, COBS, frames (see PROTOCOL.md beside this file).
 *
 * Pure functions over caller-owned buffers: no HAL calls, no globals, no heap, so the same code is
 * unit-tested on the host. Every write is checked against the destination's capacity.
 */
#ifndef MQ_PROTOCOL_H
#define MQ_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MQ_PROTO_VERSION 3u

/* Largest decoded frame (header + body + CRC) the device accepts and sends. */
#ifndef MQ_PROTO_MAX_FRAME
#define MQ_PROTO_MAX_FRAME 512u
#endif
#if MQ_PROTO_MAX_FRAME < 256 || MQ_PROTO_MAX_FRAME > 65535
#error "MQ_PROTO_MAX_FRAME must be 256..65535 (HELLO_REPLY must fit; max_frame is announced as u16)"
#endif

/* Requests the host may have in flight: the device keeps the replies of the last this many
 * executed requests, so any of them that the host re-sends gets its cached reply. Each costs one
 * MQ_PROTO_MAX_WIRE buffer of RAM; 1 is version 2's one request at a time. */
#ifndef MQ_PROTO_WINDOW
#define MQ_PROTO_WINDOW 4u
#endif
#if MQ_PROTO_WINDOW < 1 || MQ_PROTO_WINDOW > 32
#error "MQ_PROTO_WINDOW must be 1..32"
#endif

/* HELLO_REPLY rx_buffer for a link that holds the sender back while the firmware does not read
 * (USB CDC, QEMU's UART, the host firmware's socket): no limit on bytes in flight. */
#define MQ_PROTO_RX_UNLIMITED 0xFFFFFFFFu

/* A partial frame that stalls this long is discarded (milliseconds). */
#ifndef MQ_PROTO_RX_TIMEOUT_MS
#define MQ_PROTO_RX_TIMEOUT_MS 500u
#endif

/* While an inference runs, a BUSY frame goes out at most this often (device milliseconds). */
#ifndef MQ_PROTO_BUSY_MS
#define MQ_PROTO_BUSY_MS 50u
#endif

#define MQ_PROTO_HEADER_BYTES 6u
#define MQ_PROTO_CRC_BYTES 4u
#define MQ_PROTO_OVERHEAD (MQ_PROTO_HEADER_BYTES + MQ_PROTO_CRC_BYTES)
#define MQ_PROTO_MAX_BODY (MQ_PROTO_MAX_FRAME - MQ_PROTO_OVERHEAD)
/* COBS adds at most one byte per 254 plus one. */
#define MQ_COBS_MAX_ENCODED(n) ((n) + (n) / 254u + 1u)
/* Bytes between two delimiters for the largest frame; the wire adds two 0x00. */
#define MQ_PROTO_MAX_ENCODED MQ_COBS_MAX_ENCODED(MQ_PROTO_MAX_FRAME)
#define MQ_PROTO_MAX_WIRE (MQ_PROTO_MAX_ENCODED + 2u)

/* Message types: requests, replies (request | 0x80), errors. */
enum {
    MQ_MSG_HELLO = 0x01,
    MQ_MSG_INPUT = 0x02,
    MQ_MSG_INVOKE = 0x03,
    MQ_MSG_READ_OUTPUT = 0x04,
    MQ_MSG_RUN = 0x05,    /* the input's last chunk, then the inference: one round trip per sample */
    MQ_MSG_ERROR = 0x7F,
    MQ_MSG_REPLY = 0x80,
    MQ_MSG_BUSY = 0xFE    /* device -> host while an inference runs (keep-alive), not a reply */
};

/* ERROR codes; 1..3 are frame-level (the header could not be trusted). */
typedef enum mq_proto_error {
    MQ_PROTO_OK = 0,
    MQ_PROTO_BAD_CRC = 1,
    MQ_PROTO_BAD_FRAME = 2,
    MQ_PROTO_TOO_LARGE = 3,
    MQ_PROTO_BAD_VERSION = 4,
    MQ_PROTO_UNKNOWN_TYPE = 5,
    MQ_PROTO_BAD_SEQUENCE = 6,
    MQ_PROTO_BAD_REQUEST = 7,
    MQ_PROTO_NOT_READY = 8
} mq_proto_error;

const char *mq_proto_error_name(mq_proto_error e);

/* CRC-32 as zlib.crc32: start with crc = 0, feed chunks by passing the previous result. */
uint32_t mq_crc32(uint32_t crc, const uint8_t *data, size_t len);

/* COBS-encode len bytes into out (capacity cap); returns the encoded length, 0 if it does not fit. */
size_t mq_cobs_encode(const uint8_t *in, size_t len, uint8_t *out, size_t cap);

/* COBS-decode len bytes (no delimiter) into out (capacity cap); out may equal in (in place).
 * Returns MQ_PROTO_OK and *out_len, or MQ_PROTO_BAD_FRAME (bad code byte, truncated block, a
 * 0x00 inside, or output past cap). */
mq_proto_error mq_cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t cap, size_t *out_len);

/* A decoded, CRC-checked frame; body points into the buffer it was parsed from. */
typedef struct mq_frame {
    uint8_t version;
    uint8_t type;
    uint16_t seq;
    uint16_t body_len;
    const uint8_t *body;
    uint32_t crc;
} mq_frame;

/* Check a decoded frame: size, CRC, length field (in that order). The version is reported, not
 * checked: the caller answers a foreign version with BAD_VERSION using the frame's seq. */
mq_proto_error mq_frame_parse(const uint8_t *buf, size_t len, mq_frame *frame);

/* Build the wire bytes of one frame (0x00, COBS(header, body, CRC), 0x00) into out.
 * Returns the number of bytes, 0 when body_len > MQ_PROTO_MAX_BODY or out is too small. */
size_t mq_frame_encode(uint8_t type, uint16_t seq, const uint8_t *body, size_t body_len,
                       uint8_t *out, size_t cap);

/* Byte-at-a-time receiver over a caller-owned buffer. */
typedef struct mq_rx {
    uint8_t buf[MQ_PROTO_MAX_ENCODED];
    size_t len;
    uint8_t overflow;   /* more bytes than buf holds since the last delimiter */
    uint32_t last_ms;   /* time of the last byte, for the stall timeout */
} mq_rx;

typedef enum mq_rx_event {
    MQ_RX_NONE = 0,  /* byte stored (or an empty frame ignored); keep feeding */
    MQ_RX_FRAME = 1, /* *frame holds a valid frame (its body lives in rx->buf until the next push) */
    MQ_RX_ERROR = 2  /* a frame was dropped; *error holds the frame-level code */
} mq_rx_event;

void mq_rx_reset(mq_rx *rx);
/* now_ms: a millisecond clock (wrapping); a partial frame older than MQ_PROTO_RX_TIMEOUT_MS when
 * the next byte arrives is discarded first. */
mq_rx_event mq_rx_push(mq_rx *rx, uint8_t byte, uint32_t now_ms, mq_frame *frame, mq_proto_error *error);

/* Little-endian body writer with a sticky overflow flag: write freely, check ok once. */
typedef struct mq_writer {
    uint8_t *buf;
    size_t cap;
    size_t len;
    int ok;
} mq_writer;

void mq_writer_init(mq_writer *w, uint8_t *buf, size_t cap);
void mq_put_u8(mq_writer *w, uint32_t v);
void mq_put_u16(mq_writer *w, uint32_t v);
void mq_put_u32(mq_writer *w, uint32_t v);
void mq_put_f32(mq_writer *w, float v);
void mq_put_bytes(mq_writer *w, const uint8_t *data, size_t len);
/* u8 length + bytes of a NUL-terminated string, cut to max_len (<= 255) bytes. */
void mq_put_str(mq_writer *w, const char *s, size_t max_len);

uint16_t mq_get_u16(const uint8_t *p);
uint32_t mq_get_u32(const uint8_t *p);

#ifdef __cplusplus
}
#endif
#endif /* MQ_PROTOCOL_H */
