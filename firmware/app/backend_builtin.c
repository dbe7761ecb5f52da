/*
 * Backend "builtin": the exported model run by mcuquant's C runtime (firmware/runtime/).
 *
 * Arena size: MCUQUANT_BUILTIN_ARENA_BYTES when the build defines it (the exact figure the runtime
 * reports as arena_required for this model on this target: tensor metadata plus activations),
 * otherwise the export's MCUQUANT_ARENA_BYTES from model_config.h. The operators' prepared data
 * (multipliers, folded biases) comes from the export's flash array (MCUQUANT_MODEL_PREPARED). When
 * the arena is too small the firmware still runs and HELLO says how many bytes the model needs.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "model_config.h"
#include "model_data.h"
#include "mq_backend.h"
#include "mq_runtime.h"

#ifndef MCUQUANT_BUILTIN_ARENA_BYTES
#define MCUQUANT_BUILTIN_ARENA_BYTES MCUQUANT_ARENA_BYTES
#endif
/* At least one aligned slot, so the array is never empty. */
#define ARENA_BYTES (MCUQUANT_BUILTIN_ARENA_BYTES < 16u ? 16u : MCUQUANT_BUILTIN_ARENA_BYTES)

#if defined(__GNUC__)
#define ARENA_ALIGN16 __attribute__((aligned(16)))
#define ARENA_ALIGN16_PREFIX
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define ARENA_ALIGN16
#define ARENA_ALIGN16_PREFIX _Alignas(16)
#else
#error "mcuquant: no known way to align the arena to 16 bytes with this compiler"
#endif

/* The tensor spec must hold every rank the runtime accepts. */
typedef char mq_backend_dims_fit[(MQ_BACKEND_MAX_DIMS >= MQ_MAX_DIMS) ? 1 : -1];

/* The device's one model: its arena, interpreter and last error, defined once for the image. */
static ARENA_ALIGN16_PREFIX uint8_t mq_backend_arena[ARENA_BYTES] ARENA_ALIGN16;
static mq_interpreter mq_backend_interpreter;
static char mq_backend_error_text[200];
static const uint8_t mq_backend_sha256_bytes[32] = MCUQUANT_MODEL_SHA256_BYTES;

/* Append text / a decimal number to error_text (cut at its size). */
static void error_append(const char *text)
{
    size_t len = strlen(mq_backend_error_text);
    while (*text != '\0' && len + 1 < sizeof mq_backend_error_text) mq_backend_error_text[len++] = *text++;
    mq_backend_error_text[len] = '\0';
}

static void error_append_number(uint32_t number)
{
    char digits[11];
    size_t n = sizeof digits - 1;
    digits[n] = '\0';
    do {
        digits[--n] = (char)('0' + number % 10u);
        number /= 10u;
    } while (number != 0 && n > 0);
    error_append(digits + n);
}

static uint32_t clamp_u32(size_t n)
{
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

#ifdef MQ_PROFILE_OPS
/*
 * Benchmark builds of the emulated boards only (-DMQ_PROFILE_OPS, tests/benchmarks/bench_device.py
 * --profile): the counter delta of every operator of the last inference, written after it to the
 * emulator's semihosting console (QEMU's stderr) as "MQ_PROFILE <op index> <count>" lines. The
 * hook's own cost lies outside the deltas, but it is inside the inference's total.
 */
#include "mps2.h"
#include "mq_hal.h"

#define MQ_PROFILE_MAX_OPS 256u
static uint32_t profile_counts[MQ_PROFILE_MAX_OPS];
static uint32_t profile_op, profile_last;
static void (*profile_next)(void *ctx);
static void *profile_next_ctx;

static void profile_hook(void *ctx)
{
    const uint32_t now = mq_hal_counter();
    (void)ctx;
    if (profile_op < MQ_PROFILE_MAX_OPS) profile_counts[profile_op] = now - profile_last;
    ++profile_op;
    if (profile_next != NULL) profile_next(profile_next_ctx);
    profile_last = mq_hal_counter();
}

static void profile_report(void)
{
    uint32_t i;
    for (i = 0; i < profile_op && i < MQ_PROFILE_MAX_OPS; ++i) {
        mq_backend_error_text[0] = '\0';
        error_append("MQ_PROFILE ");
        error_append_number(i);
        error_append(" ");
        error_append_number(profile_counts[i]);
        error_append("\n");
        mq_mps2_debug_write(mq_backend_error_text);
    }
    mq_backend_error_text[0] = '\0';
}
#endif

int mq_backend_init(void)
{
    mq_status s;
    mq_backend_error_text[0] = '\0';
#ifdef MCUQUANT_MODEL_PREPARED /* the operators' prepared data in flash, made by the export */
    s = mq_init_prepared(&mq_backend_interpreter, MCUQUANT_MODEL_DATA, MCUQUANT_MODEL_DATA_LEN, MCUQUANT_MODEL_PREPARED,
                         MCUQUANT_MODEL_PREPARED_LEN, mq_backend_arena, sizeof mq_backend_arena);
#else
    s = mq_init(&mq_backend_interpreter, MCUQUANT_MODEL_DATA, MCUQUANT_MODEL_DATA_LEN, mq_backend_arena, sizeof mq_backend_arena);
#endif
    if (s == MQ_OK) return 0;
    error_append(mq_status_name(s));
    if (s == MQ_ERR_ARENA_TOO_SMALL) {
        error_append(": the model needs ");
        error_append_number(clamp_u32(mq_backend_interpreter.arena_required));
        error_append(" arena bytes, the firmware has ");
        error_append_number(clamp_u32(sizeof mq_backend_arena));
        error_append(" (set MCUQUANT_BUILTIN_ARENA_BYTES)");
        return (int)s;
    }
    if (mq_backend_interpreter.error_op >= 0) {
        error_append(" at operator ");
        error_append_number((uint32_t)mq_backend_interpreter.error_op);
    }
    if (mq_backend_interpreter.error_detail != NULL && mq_backend_interpreter.error_detail[0] != '\0') {
        error_append(": ");
        error_append(mq_backend_interpreter.error_detail);
    }
    return (int)s;
}

const char *mq_backend_error(void) { return mq_backend_error_text; }
const char *mq_backend_name(void) { return "builtin"; }
uint32_t mq_backend_arena_used(void) { return clamp_u32(mq_backend_interpreter.arena_required); }
uint32_t mq_backend_arena_size(void) { return clamp_u32(sizeof mq_backend_arena); }
const uint8_t *mq_backend_model_sha256(void) { return mq_backend_sha256_bytes; }
uint32_t mq_backend_input_count(void) { return mq_backend_interpreter.ready ? mq_input_count(&mq_backend_interpreter) : 0; }
uint32_t mq_backend_output_count(void) { return mq_backend_interpreter.ready ? mq_output_count(&mq_backend_interpreter) : 0; }

static int fill_spec(const mq_tensor *t, mq_tensor_spec *spec)
{
    uint32_t d;
    if (t == NULL || t->ndims > MQ_BACKEND_MAX_DIMS) return 0;
    memset(spec, 0, sizeof *spec);
    spec->dtype = t->type;
    spec->ndims = t->ndims;
    for (d = 0; d < t->ndims; ++d) spec->dims[d] = t->dims[d];
    spec->scale = t->scale;
    spec->zero_point = t->zero_point;
    spec->bytes = t->bytes;
    return 1;
}

int mq_backend_input_spec(uint32_t i, mq_tensor_spec *spec)
{
    return mq_backend_interpreter.ready ? fill_spec(mq_input(&mq_backend_interpreter, i), spec) : 0;
}

int mq_backend_output_spec(uint32_t i, mq_tensor_spec *spec)
{
    return mq_backend_interpreter.ready ? fill_spec(mq_output(&mq_backend_interpreter, i), spec) : 0;
}

uint8_t *mq_backend_input_data(uint32_t i)
{
    mq_tensor *t = mq_backend_interpreter.ready ? mq_input(&mq_backend_interpreter, i) : NULL;
    return t != NULL ? (uint8_t *)t->data : NULL;
}

const uint8_t *mq_backend_output_data(uint32_t i)
{
    mq_tensor *t = mq_backend_interpreter.ready ? mq_output(&mq_backend_interpreter, i) : NULL;
    return t != NULL ? (const uint8_t *)t->data : NULL;
}

int mq_backend_invoke(void)
{
    mq_status s;
#ifdef MQ_PROFILE_OPS
    profile_op = 0;
    if (mq_backend_interpreter.progress == NULL) mq_set_progress(&mq_backend_interpreter, profile_hook, NULL);
    profile_last = mq_hal_counter();
#endif
    s = mq_invoke(&mq_backend_interpreter);
#ifdef MQ_PROFILE_OPS
    profile_report();
#endif
    if (s == MQ_OK) return 0;
    mq_backend_error_text[0] = '\0';
    error_append(mq_status_name(s));
    if (mq_backend_interpreter.error_op >= 0) {
        error_append(" at operator ");
        error_append_number((uint32_t)mq_backend_interpreter.error_op);
    }
    return (int)s;
}

int mq_backend_set_progress(void (*fn)(void *ctx), void *ctx)
{
#ifdef MQ_PROFILE_OPS
    profile_next = fn;
    profile_next_ctx = ctx;
    mq_set_progress(&mq_backend_interpreter, profile_hook, NULL);
#else
    mq_set_progress(&mq_backend_interpreter, fn, ctx);
#endif
    return 1;
}
