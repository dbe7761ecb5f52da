/*
 * Inference backend interface of the firmware: what the serial server (mq_server.c) needs from
 * whatever runs the model. One implementation is linked per firmware image:
 *   backend_builtin.c   mcuquant's own C runtime (firmware/runtime/)
 *   backend_tflm.cpp    TensorFlow Lite Micro (later; C++ behind this C interface)
 *
 * A backend owns the model it was built with (the exported model_data.c / model_config.h) and
 * its arena; there is exactly one per image, so its state lives in its own source file.
 */
#ifndef MQ_BACKEND_H
#define MQ_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MQ_BACKEND_MAX_DIMS 6

/* One input or output tensor as the host must see it. */
typedef struct mq_tensor_spec {
    uint8_t dtype;  /* TFLite TensorType: 9 int8, 0 float32, 2 int32, ... */
    uint8_t ndims;  /* <= MQ_BACKEND_MAX_DIMS */
    int32_t dims[MQ_BACKEND_MAX_DIMS];
    float scale;    /* 0 when not quantized */
    int32_t zero_point;
    uint32_t bytes;
} mq_tensor_spec;

/* Load the model and plan memory. Returns 0 when ready, else a backend-specific nonzero code;
 * mq_backend_error() then says what failed. Called once, before anything else below. */
int mq_backend_init(void);

/* Text of the last init or invoke failure ("" when none); static storage. */
const char *mq_backend_error(void);

const char *mq_backend_name(void);       /* "builtin", "tflm" */
uint32_t mq_backend_arena_used(void);    /* bytes of the arena the model needs (0: unknown) */
uint32_t mq_backend_arena_size(void);    /* bytes of arena the firmware has */

/* The model's SHA-256 (32 bytes), as exported with it. */
const uint8_t *mq_backend_model_sha256(void);

/* After a successful init: tensor counts, specs and data. Indices out of range return 0/NULL. */
uint32_t mq_backend_input_count(void);
uint32_t mq_backend_output_count(void);
int mq_backend_input_spec(uint32_t i, mq_tensor_spec *spec);   /* 1 on success */
int mq_backend_output_spec(uint32_t i, mq_tensor_spec *spec);  /* 1 on success */
uint8_t *mq_backend_input_data(uint32_t i);        /* spec.bytes writable bytes */
const uint8_t *mq_backend_output_data(uint32_t i); /* spec.bytes bytes, valid after invoke */

/* Run one inference on the current inputs. Returns 0 or a backend-specific nonzero code. */
int mq_backend_invoke(void);

/* Ask the backend to call fn(ctx) between operators during mq_backend_invoke (the server sends
 * keep-alives from it). Returns 1 when the backend will, 0 when it cannot (no keep-alives). */
int mq_backend_set_progress(void (*fn)(void *ctx), void *ctx);

#ifdef __cplusplus
}
#endif
#endif /* MQ_BACKEND_H */
