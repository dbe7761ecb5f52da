/*
 * The device end of the serial protocol (firmware/protocol/PROTOCOL.md): turns received bytes
 * into replies, running the backend (mq_backend.h) for INPUT / INVOKE / READ_OUTPUT.
 *
 * No HAL calls: the caller feeds bytes and a millisecond clock and sends what comes back; the
 * inference counter, the clock and the writer for keep-alives during an inference are passed in,
 * so the main loop is the only board-specific glue.
 */
#ifndef MQ_SERVER_H
#define MQ_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "mq_protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

/* HELLO_REPLY backend_status when the tensor specs do not fit in one frame. */
#define MQ_SERVER_STATUS_SPECS_TOO_LARGE 255u

typedef uint32_t (*mq_counter_fn)(void);
typedef void (*mq_write_fn)(const uint8_t *data, size_t len);

/* The encoded reply to one executed request, kept for the host's re-sends. */
typedef struct mq_cached_reply {
    uint8_t wire[MQ_PROTO_MAX_WIRE];
    size_t len;                       /* 0: empty */
    uint16_t seq;
    uint32_t crc;                     /* the request's CRC: a re-send is the same frame */
} mq_cached_reply;

typedef struct mq_server {
    mq_rx rx;
    mq_cached_reply cache[MQ_PROTO_WINDOW]; /* the last MQ_PROTO_WINDOW executed requests' replies */
    uint32_t cache_next;              /* the slot the next executed request's reply goes to */
    uint8_t error_reply[96];          /* frame-level and sequence errors: never cached */
    uint8_t body[MQ_PROTO_MAX_BODY];  /* a reply body being built */
    int session;                      /* a HELLO has been served */
    uint16_t last_seq;                /* the last executed request's */
    uint32_t rx_buffer;               /* bytes the link holds unread while busy (HELLO_REPLY) */
    int backend_status;               /* mq_backend_init()'s result */
    uint32_t input_total, output_total;
    uint32_t input_next;              /* bytes of the current sample received in order */
    uint32_t inferences;              /* inferences run since start (RESULT reports it) */
    mq_counter_fn counter;
    const char *counter_unit;
    const char *firmware_version;
    /* Keep-alives during an inference: BUSY frames sent from the backend's progress hook. */
    mq_counter_fn millis;             /* the millisecond clock */
    mq_write_fn write;                /* sends bytes to the host (blocking) */
    int busy_supported;               /* the backend calls the hook between operators */
    uint16_t busy_seq;                /* the request being executed */
    uint32_t busy_start_ms, busy_last_ms, busy_ops;
    uint32_t busy_counts;             /* counter ticks spent in the hook this inference */
    uint8_t busy_frame[32];           /* a BUSY frame being sent */
} mq_server;

/* Initializes the backend too (mq_backend_init), whatever its outcome: HELLO reports it.
 * millis and write let the server send BUSY keep-alives while an inference runs (either may be
 * NULL: then it sends none and HELLO_REPLY announces busy_ms 0). rx_buffer: the bytes the link
 * holds while the firmware is busy and does not read (mq_hal_rx_buffer), which bounds the bytes
 * the host sends ahead. */
void mq_server_init(mq_server *s, mq_counter_fn counter, const char *counter_unit,
                    const char *firmware_version, mq_counter_fn millis, mq_write_fn write,
                    uint32_t rx_buffer);

/* Feed one received byte; returns how many bytes to send from *out (0: nothing to send). *out
 * stays valid until the next call. */
size_t mq_server_feed(mq_server *s, uint8_t byte, uint32_t now_ms, const uint8_t **out);

#ifdef __cplusplus
}
#endif
#endif /* MQ_SERVER_H */
