/* The device end of the serial protocol: sequence rules, reply cache, message handlers. */
#include "mq_server.h"

#include <string.h>

#include "mq_backend.h"

/* "text" + decimal number, for short error messages without printf. */
static const char *text_with_number(char *buf, size_t cap, const char *text, uint32_t number)
{
    char digits[10];
    size_t n = 0, len = 0;
    do {
        digits[n++] = (char)('0' + number % 10u);
        number /= 10u;
    } while (number != 0 && n < sizeof digits);
    while (text[len] != '\0' && len + 1 < cap) {
        buf[len] = text[len];
        ++len;
    }
    while (n > 0 && len + 1 < cap) buf[len++] = digits[--n];
    buf[len] = '\0';
    return buf;
}

static size_t encode_error(uint8_t *out, size_t cap, uint16_t seq, mq_proto_error code, const char *text)
{
    uint8_t body[64];
    mq_writer w;
    mq_writer_init(&w, body, sizeof body);
    mq_put_u8(&w, (uint32_t)code);
    if (text != NULL) {
        size_t n = strlen(text);
        if (n > sizeof body - 1) n = sizeof body - 1;
        mq_put_bytes(&w, (const uint8_t *)text, n);
    }
    return mq_frame_encode(MQ_MSG_ERROR, seq, body, w.len, out, cap);
}

/* Replies that are not cached (frame-level and sequence errors) go out of their own buffer. */
static size_t uncached_error(mq_server *s, uint16_t seq, mq_proto_error code, const char *text,
                             const uint8_t **out)
{
    *out = s->error_reply;
    return encode_error(s->error_reply, sizeof s->error_reply, seq, code, text);
}

/* ------------------------------------------------------------------------------------------ */
/* The input and output byte spaces: every tensor's bytes back to back, in index order. */

static uint32_t space_total(int inputs)
{
    uint32_t i, n = inputs ? mq_backend_input_count() : mq_backend_output_count();
    uint32_t total = 0;
    for (i = 0; i < n; ++i) {
        mq_tensor_spec spec;
        int ok = inputs ? mq_backend_input_spec(i, &spec) : mq_backend_output_spec(i, &spec);
        if (!ok || spec.bytes > UINT32_MAX - total) return 0;
        total += spec.bytes;
    }
    return total;
}

/* Copy len bytes at offset of the input space from src, or of the output space into dst.
 * The caller has checked offset + len <= the space's total. */
static void space_copy(int inputs, uint32_t offset, const uint8_t *src, uint8_t *dst, uint32_t len)
{
    uint32_t i, n = inputs ? mq_backend_input_count() : mq_backend_output_count();
    uint32_t base = 0;
    for (i = 0; i < n && len > 0; ++i) {
        mq_tensor_spec spec;
        uint32_t start, chunk;
        if (!(inputs ? mq_backend_input_spec(i, &spec) : mq_backend_output_spec(i, &spec))) return;
        if (offset >= base + spec.bytes) {
            base += spec.bytes;
            continue;
        }
        start = offset - base;
        chunk = spec.bytes - start;
        if (chunk > len) chunk = len;
        if (inputs) {
            uint8_t *data = mq_backend_input_data(i);
            if (data == NULL) return;
            memcpy(data + start, src, chunk);
            src += chunk;
        } else {
            const uint8_t *data = mq_backend_output_data(i);
            if (data == NULL) return;
            memcpy(dst, data + start, chunk);
            dst += chunk;
        }
        offset += chunk;
        len -= chunk;
        base += spec.bytes;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Handlers: each fills s->body through w and returns the reply type, or sets *error. */

static void put_spec(mq_writer *w, const mq_tensor_spec *spec)
{
    uint32_t d, ndims = spec->ndims < MQ_BACKEND_MAX_DIMS ? spec->ndims : MQ_BACKEND_MAX_DIMS;
    mq_put_u8(w, spec->dtype);
    mq_put_u8(w, ndims);
    for (d = 0; d < ndims; ++d) mq_put_u32(w, (uint32_t)spec->dims[d]);
    mq_put_f32(w, spec->scale);
    mq_put_u32(w, (uint32_t)spec->zero_point);
    mq_put_u32(w, spec->bytes);
}

static void hello_fixed_part(mq_server *s, mq_writer *w, uint32_t status, uint32_t n_in, uint32_t n_out)
{
    mq_put_u16(w, MQ_PROTO_MAX_FRAME);
    mq_put_u8(w, status);
    mq_put_u8(w, n_in);
    mq_put_u8(w, n_out);
    mq_put_u8(w, 0);
    mq_put_bytes(w, mq_backend_model_sha256(), 32);
    mq_put_u32(w, mq_backend_arena_used());
    mq_put_u32(w, mq_backend_arena_size());
    mq_put_u16(w, s->busy_supported ? MQ_PROTO_BUSY_MS : 0u);
    mq_put_u8(w, MQ_PROTO_WINDOW);
    mq_put_u8(w, 0);
    mq_put_u32(w, s->rx_buffer);
    mq_put_str(w, mq_backend_name(), 32);
    mq_put_str(w, s->counter_unit, 32);
    mq_put_str(w, s->firmware_version, 32);
}

static void put_error_text(mq_writer *w, const char *text)
{
    /* As much of the text as the frame still holds (1 byte for its length). */
    size_t room = w->cap > w->len + 1 ? w->cap - w->len - 1 : 0;
    mq_put_str(w, text, room);
}

static uint8_t handle_hello(mq_server *s, mq_writer *w)
{
    uint32_t i, n_in = 0, n_out = 0;
    int status = s->backend_status;
    if (status == 0) {
        n_in = mq_backend_input_count();
        n_out = mq_backend_output_count();
    }
    hello_fixed_part(s, w, status > 253 || status < 0 ? 254u : (uint32_t)status,
                     n_in > 255 ? 0 : n_in, n_out > 255 ? 0 : n_out);
    put_error_text(w, status == 0 ? "" : mq_backend_error());
    if (status == 0) {
        for (i = 0; i < n_in + n_out; ++i) {
            mq_tensor_spec spec;
            int ok = i < n_in ? mq_backend_input_spec(i, &spec) : mq_backend_output_spec(i - n_in, &spec);
            if (!ok) memset(&spec, 0, sizeof spec);
            put_spec(w, &spec);
        }
        if (!w->ok || n_in > 255 || n_out > 255) { /* rather an explained refusal than a cut list */
            mq_writer_init(w, w->buf, w->cap);
            hello_fixed_part(s, w, MQ_SERVER_STATUS_SPECS_TOO_LARGE, 0, 0);
            put_error_text(w, "the tensor specs do not fit in one frame: rebuild the firmware "
                              "with a larger MQ_PROTO_MAX_FRAME");
        }
    }
    s->input_next = 0;
    return MQ_MSG_HELLO | MQ_MSG_REPLY;
}

static uint8_t handle_input(mq_server *s, const mq_frame *f, mq_writer *w, mq_proto_error *error,
                            const char **text)
{
    uint32_t offset, len;
    if (f->body_len < 4) {
        *error = MQ_PROTO_BAD_REQUEST;
        *text = "INPUT body shorter than its offset";
        return 0;
    }
    offset = mq_get_u32(f->body);
    len = (uint32_t)f->body_len - 4u;
    if (offset != 0 && offset != s->input_next) {
        *error = MQ_PROTO_BAD_REQUEST;
        *text = "INPUT out of order: offset must be 0 or where the last chunk ended";
        return 0;
    }
    if (offset > s->input_total || len > s->input_total - offset) {
        *error = MQ_PROTO_BAD_REQUEST;
        *text = "INPUT past the end of the inputs";
        return 0;
    }
    space_copy(1, offset, f->body + 4, NULL, len);
    s->input_next = offset + len;
    mq_put_u32(w, offset);
    mq_put_u32(w, len);
    return MQ_MSG_INPUT | MQ_MSG_REPLY;
}

/* The backend's progress hook, after every operator: a BUSY frame at most every MQ_PROTO_BUSY_MS
 * while it computes. Its whole cost lies between two counter reads made on every call, sending or
 * not, and is taken out of the inference's counter delta: latency stays the model's own, and
 * repeatable, whenever a keep-alive happens to go out. */
static void send_busy(void *ctx)
{
    mq_server *s = (mq_server *)ctx;
    uint32_t t0 = s->counter();
    uint32_t now = s->millis();
    ++s->busy_ops;
    if (now - s->busy_last_ms >= MQ_PROTO_BUSY_MS) {
        uint8_t body[8];
        mq_writer w;
        size_t n;
        s->busy_last_ms = now;
        mq_writer_init(&w, body, sizeof body);
        mq_put_u32(&w, now - s->busy_start_ms);
        mq_put_u32(&w, s->busy_ops);
        n = mq_frame_encode(MQ_MSG_BUSY, s->busy_seq, body, w.len, s->busy_frame, sizeof s->busy_frame);
        if (n > 0) s->write(s->busy_frame, n);
    }
    s->busy_counts += s->counter() - t0;
}

/* INVOKE, and RUN after its chunk is stored: run the inference and build the RESULT body. */
static uint8_t run_inference(mq_server *s, const mq_frame *f, mq_writer *w, mq_proto_error *error,
                             const char **text)
{
    uint32_t before, after, inline_bytes;
    int status;
    if (s->input_next != s->input_total) {
        *error = MQ_PROTO_BAD_REQUEST;
        *text = "inference before the whole input was sent (send it before every INVOKE or RUN)";
        return 0;
    }
    s->input_next = 0; /* the backend may reuse input memory: the next sample is sent anew */
    s->busy_seq = f->seq;
    s->busy_ops = 0;
    s->busy_counts = 0;
    if (s->busy_supported) s->busy_start_ms = s->busy_last_ms = s->millis();
    before = s->counter();
    status = mq_backend_invoke();
    after = s->counter() - s->busy_counts; /* without the keep-alive hook's own cost */
    mq_put_u8(w, status < 0 || status > 255 ? 255u : (uint32_t)status);
    mq_put_u8(w, 0);
    mq_put_u16(w, 0);
    ++s->inferences;
    mq_put_u32(w, after - before); /* modulo 2^32, as the counter wraps */
    mq_put_u32(w, s->inferences);
    mq_put_u32(w, s->output_total);
    if (status == 0) {
        inline_bytes = s->output_total;
        if (inline_bytes > w->cap - w->len) inline_bytes = (uint32_t)(w->cap - w->len);
        space_copy(0, 0, NULL, w->buf + w->len, inline_bytes);
        w->len += inline_bytes;
    } else {
        put_error_text(w, mq_backend_error());
    }
    return (uint8_t)(f->type | MQ_MSG_REPLY);
}

static uint8_t handle_invoke(mq_server *s, const mq_frame *f, mq_writer *w, mq_proto_error *error,
                             const char **text)
{
    if (f->body_len != 0) {
        *error = MQ_PROTO_BAD_REQUEST;
        *text = "INVOKE takes no body";
        return 0;
    }
    return run_inference(s, f, w, error, text);
}

static uint8_t handle_run(mq_server *s, const mq_frame *f, mq_writer *w, mq_proto_error *error,
                          const char **text)
{
    if (handle_input(s, f, w, error, text) == 0) return 0;
    mq_writer_init(w, w->buf, w->cap); /* the INPUT_ACK body is replaced by the RESULT */
    return run_inference(s, f, w, error, text);
}

static uint8_t handle_read_output(mq_server *s, const mq_frame *f, mq_writer *w, mq_proto_error *error,
                                  const char **text)
{
    uint32_t offset, len;
    if (f->body_len != 6) {
        *error = MQ_PROTO_BAD_REQUEST;
        *text = "READ_OUTPUT body must be offset u32 + length u16";
        return 0;
    }
    offset = mq_get_u32(f->body);
    len = mq_get_u16(f->body + 4);
    if (offset > s->output_total || len > s->output_total - offset || len > w->cap - 4u) {
        *error = MQ_PROTO_BAD_REQUEST;
        *text = "READ_OUTPUT past the end of the outputs or of a frame";
        return 0;
    }
    mq_put_u32(w, offset);
    space_copy(0, offset, NULL, w->buf + w->len, len);
    w->len += len;
    return MQ_MSG_READ_OUTPUT | MQ_MSG_REPLY;
}

/* Execute one in-sequence request and cache its reply (HELLO empties the cache first). */
static const mq_cached_reply *execute(mq_server *s, const mq_frame *f)
{
    mq_cached_reply *slot;
    mq_writer w;
    mq_proto_error error = MQ_PROTO_OK;
    const char *text = "";
    uint8_t reply_type = 0;

    mq_writer_init(&w, s->body, sizeof s->body);
    if (f->type == MQ_MSG_HELLO) {
        reply_type = handle_hello(s, &w);
    } else if (f->type != MQ_MSG_INPUT && f->type != MQ_MSG_INVOKE && f->type != MQ_MSG_READ_OUTPUT &&
               f->type != MQ_MSG_RUN) {
        error = MQ_PROTO_UNKNOWN_TYPE;
        text = "unknown message type";
    } else if (s->backend_status != 0) {
        error = MQ_PROTO_NOT_READY;
        text = mq_backend_error();
    } else if (f->type == MQ_MSG_INPUT) {
        reply_type = handle_input(s, f, &w, &error, &text);
    } else if (f->type == MQ_MSG_INVOKE) {
        reply_type = handle_invoke(s, f, &w, &error, &text);
    } else if (f->type == MQ_MSG_RUN) {
        reply_type = handle_run(s, f, &w, &error, &text);
    } else {
        reply_type = handle_read_output(s, f, &w, &error, &text);
    }

    if (f->type == MQ_MSG_HELLO) memset(s->cache, 0, sizeof s->cache); /* a new session */
    slot = &s->cache[s->cache_next];
    s->cache_next = (s->cache_next + 1u) % MQ_PROTO_WINDOW;
    if (error == MQ_PROTO_OK && w.ok) {
        slot->len = mq_frame_encode(reply_type, f->seq, s->body, w.len, slot->wire, sizeof slot->wire);
    } else {
        if (error == MQ_PROTO_OK) { /* cannot happen: every handler bounds its body */
            error = MQ_PROTO_BAD_REQUEST;
            text = "reply does not fit in a frame";
        }
        slot->len = encode_error(slot->wire, sizeof slot->wire, f->seq, error, text);
    }
    slot->seq = f->seq;
    slot->crc = f->crc;
    s->last_seq = f->seq;
    return slot;
}

/* The cached reply to request seq, or NULL. */
static const mq_cached_reply *cached(const mq_server *s, uint16_t seq)
{
    uint32_t i;
    for (i = 0; i < MQ_PROTO_WINDOW; ++i)
        if (s->cache[i].len > 0 && s->cache[i].seq == seq) return &s->cache[i];
    return NULL;
}

void mq_server_init(mq_server *s, mq_counter_fn counter, const char *counter_unit,
                    const char *firmware_version, mq_counter_fn millis, mq_write_fn write,
                    uint32_t rx_buffer)
{
    memset(s, 0, sizeof *s);
    mq_rx_reset(&s->rx);
    s->counter = counter;
    s->counter_unit = counter_unit != NULL ? counter_unit : "";
    s->firmware_version = firmware_version != NULL ? firmware_version : "";
    s->millis = millis;
    s->write = write;
    s->rx_buffer = rx_buffer;
    s->backend_status = mq_backend_init();
    if (s->backend_status == 0) {
        s->input_total = space_total(1);
        s->output_total = space_total(0);
        if (millis != NULL && write != NULL) s->busy_supported = mq_backend_set_progress(send_busy, s);
    }
}

size_t mq_server_feed(mq_server *s, uint8_t byte, uint32_t now_ms, const uint8_t **out)
{
    mq_frame f;
    mq_proto_error error = MQ_PROTO_OK;
    char text[40];

    switch (mq_rx_push(&s->rx, byte, now_ms, &f, &error)) {
    case MQ_RX_NONE:
        return 0;
    case MQ_RX_ERROR:
        return uncached_error(s, 0, error, "", out);
    case MQ_RX_FRAME:
        break;
    }
    if (f.version != MQ_PROTO_VERSION)
        return uncached_error(s, f.seq, MQ_PROTO_BAD_VERSION,
                              text_with_number(text, sizeof text, "device protocol version ", MQ_PROTO_VERSION), out);
    if (f.type != MQ_MSG_HELLO) {
        const mq_cached_reply *reply;
        if (!s->session) return uncached_error(s, f.seq, MQ_PROTO_BAD_SEQUENCE, "send HELLO first", out);
        if (f.seq != (uint16_t)(s->last_seq + 1u)) {
            reply = cached(s, f.seq); /* the cache holds the last MQ_PROTO_WINDOW executed, no others */
            if (reply == NULL)
                return uncached_error(s, f.seq, MQ_PROTO_BAD_SEQUENCE,
                                      text_with_number(text, sizeof text, "expected seq ", (uint16_t)(s->last_seq + 1u)),
                                      out);
            if (f.crc != reply->crc)
                return uncached_error(s, f.seq, MQ_PROTO_BAD_SEQUENCE, "repeated seq with other content", out);
            *out = reply->wire; /* a host re-send: the cached reply, nothing executed again */
            return reply->len;
        }
    }
    {
        const mq_cached_reply *reply = execute(s, &f);
        if (f.type == MQ_MSG_HELLO) s->session = 1;
        *out = reply->wire;
        return reply->len;
    }
}
