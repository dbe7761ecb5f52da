/*
 * mq_semihost_run: the builtin runtime on an emulated Cortex-M core (QEMU mps2-*), fed through
 * ARM semihosting instead of the serial protocol -- one image per core runs any model.
 *
 * Files, relative to QEMU's working directory (semihosting target=native):
 *   mq_model.tflite   the model (read into RAM, 16-byte aligned)
 *   mq_prepared.bin   optional: the operators' prepared data (mq_init_prepared), as the export
 *                     puts it in flash; absent: mq_init computes it into the arena
 *   mq_inputs.bin     the raw bytes of all graph inputs of one sample, back to back, then the next
 *   mq_outputs.bin    written: the raw bytes of all graph outputs of each sample, the same way
 *   mq_report.txt     written: what happened, one fact a line (mcuquant.builtin.emulated reads it)
 *       arena_required N / activation_bytes N / prepared_bytes N
 *       input I type T bytes B dims D0 D1 ...   and   output I type T bytes B dims ...
 *       samples K
 *       error STAGE STATUS op INDEX NAME: DETAIL   (STAGE init, invoke, io or memory)
 *       status STATUS                              (last line; MQ_OK when every sample ran)
 *
 * Exit status (QEMU's, through SYS_EXIT_EXTENDED): 0 every sample ran; 1 mq_init or mq_invoke
 * failed (the report says where); 2 a file could not be read or written; 3 a fault (start-up
 * code); 4 the model does not fit the memory pool, or the runtime wrote outside its arena.
 *
 * The arena is sized exactly (mq_init's arena_required) and sits at the end of a static pool
 * between two guard zones checked after mq_init and after every mq_invoke: a write past either
 * end of the arena is an error, as on a board whose arena is followed by other data. The arena is
 * filled with a non-zero pattern first, so a read of memory the runtime never wrote differs from
 * the host build (whose arena is zeroed) instead of passing by luck.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mps2.h"
#include "mq_internal.h"

#define SYS_OPEN 0x01u
#define SYS_CLOSE 0x02u
#define SYS_WRITE 0x05u
#define SYS_READ 0x06u
#define SYS_FLEN 0x0Cu
#define OPEN_RB 1u /* fopen modes as semihosting numbers them: 1 "rb", 5 "wb" */
#define OPEN_WB 5u

#define EXIT_OK 0
#define EXIT_MODEL 1
#define EXIT_IO 2
#define EXIT_MEMORY 4

#ifndef MQ_RUN_POOL_BYTES /* mcuquant.builtin.emulated sets it from the emulated RAM */
#define MQ_RUN_POOL_BYTES (3u * 1024u * 1024u + 512u * 1024u)
#endif
#define GUARD_BYTES 256u
#define GUARD_BYTE 0xC7u
#define ARENA_FILL 0x5Au

static uint8_t pool[MQ_RUN_POOL_BYTES] __attribute__((aligned(16)));
static size_t pool_used;
static mq_interpreter it;

/* ---- semihosting files ---- */

static int sh_open(const char *name, uint32_t mode)
{
    const uint32_t block[3] = {(uint32_t)(uintptr_t)name, mode, (uint32_t)strlen(name)};
    return (int)mq_mps2_semihost(SYS_OPEN, block);
}

static void sh_close(int fd)
{
    const uint32_t block[1] = {(uint32_t)fd};
    (void)mq_mps2_semihost(SYS_CLOSE, block);
}

static int sh_write(int fd, const void *data, size_t len)
{
    const uint32_t block[3] = {(uint32_t)fd, (uint32_t)(uintptr_t)data, (uint32_t)len};
    return len == 0 || mq_mps2_semihost(SYS_WRITE, block) == 0u; /* returns the bytes NOT written */
}

/* ---- the report ---- */

static char report[4096];
static size_t report_len;

static void put(const char *s)
{
    while (*s != '\0' && report_len < sizeof report - 1) report[report_len++] = *s++;
}

static void put_u(uint32_t v)
{
    char digits[11];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v != 0u);
    while (n > 0 && report_len < sizeof report - 1) report[report_len++] = digits[--n];
}

static void put_i(int32_t v)
{
    if (v < 0) {
        put("-");
        put_u((uint32_t)(-(v + 1)) + 1u);
    } else {
        put_u((uint32_t)v);
    }
}

static void put_fact(const char *name, uint32_t v)
{
    put(name);
    put(" ");
    put_u(v);
    put("\n");
}

/* Writes the report and ends the emulator with `code`; `status` ends the report. */
static void finish(int code, const char *status)
{
    int fd;
    put("status ");
    put(status);
    put("\n");
    fd = sh_open("mq_report.txt", OPEN_WB);
    if (fd < 0) mq_mps2_exit(EXIT_IO);
    if (!sh_write(fd, report, report_len)) code = EXIT_IO;
    sh_close(fd);
    mq_mps2_exit(code);
}

static void fail(int code, const char *stage, mq_status s, const char *detail)
{
    const int32_t op = code == EXIT_MODEL ? it.error_op : -1;
    put("error ");
    put(stage);
    put(" ");
    put(mq_status_name(s));
    put(" op ");
    put_i(op);
    put(" ");
    put(op >= 0 ? mq_op_name(mq_op_code_at(&it, op)) : "-");
    put(": ");
    put(detail);
    put("\n");
    finish(code, code == EXIT_MODEL ? mq_status_name(s) : stage);
}

/* ---- memory ---- */

static uint8_t *take(size_t bytes)
{
    const size_t start = (pool_used + 15u) & ~(size_t)15u;
    if (start > sizeof pool || bytes > sizeof pool - start) fail(EXIT_MEMORY, "memory", MQ_OK, "the pool is full");
    pool_used = start + bytes;
    return pool + start;
}

/* Reads a whole file into the pool; returns NULL (and *len 0) when it does not exist. */
static uint8_t *load(const char *name, size_t *len)
{
    const int fd = sh_open(name, OPEN_RB);
    uint32_t block[3];
    int32_t flen;
    uint8_t *buf;
    *len = 0;
    if (fd < 0) return NULL;
    block[0] = (uint32_t)fd;
    flen = (int32_t)mq_mps2_semihost(SYS_FLEN, block);
    if (flen < 0) fail(EXIT_IO, "io", MQ_OK, name);
    buf = take((size_t)flen > 0 ? (size_t)flen : 1u);
    block[1] = (uint32_t)(uintptr_t)buf;
    block[2] = (uint32_t)flen;
    if (flen > 0 && mq_mps2_semihost(SYS_READ, block) != 0u) fail(EXIT_IO, "io", MQ_OK, name);
    sh_close(fd);
    *len = (size_t)flen;
    return buf;
}

/* The largest arena arena_at can place. */
static size_t arena_room(void)
{
    const size_t end = sizeof pool - GUARD_BYTES;
    return end < pool_used + GUARD_BYTES + 16u ? 0u : (end - (pool_used + GUARD_BYTES)) & ~(size_t)15u;
}

static uint8_t *arena_at(size_t bytes)
{
    /* The arena ends GUARD_BYTES before the pool does; a guard zone lies on each side. */
    const size_t end = sizeof pool - GUARD_BYTES;
    size_t start;
    if (bytes > end || ((end - bytes) & ~(size_t)15u) < pool_used + GUARD_BYTES)
        fail(EXIT_MEMORY, "memory", MQ_ERR_ARENA_TOO_SMALL, "the arena does not fit the pool");
    start = (end - bytes) & ~(size_t)15u;
    memset(pool + pool_used, GUARD_BYTE, start - pool_used);
    memset(pool + start, ARENA_FILL, bytes);
    memset(pool + start + bytes, GUARD_BYTE, sizeof pool - (start + bytes));
    return pool + start;
}

static int guards_intact(const uint8_t *arena, size_t bytes)
{
    const uint8_t *p;
    for (p = pool + pool_used; p < arena; p++)
        if (*p != GUARD_BYTE) return 0;
    for (p = arena + bytes; p < pool + sizeof pool; p++)
        if (*p != GUARD_BYTE) return 0;
    return 1;
}

static void put_tensor(const char *kind, uint32_t i, const mq_tensor *t)
{
    uint32_t d;
    put(kind);
    put(" ");
    put_u(i);
    put(" type ");
    put_u(t->type);
    put(" bytes ");
    put_u(t->bytes);
    put(" dims");
    for (d = 0; d < t->ndims; d++) {
        put(" ");
        put_i(t->dims[d]);
    }
    put("\n");
}

int main(void)
{
    size_t model_len, prepared_len, inputs_len, sample_in = 0, samples, k;
    uint8_t *model, *prepared, *inputs, *arena = NULL;
    const uint8_t *src;
    mq_status s;
    uint32_t i, round;
    int fd;

    model = load("mq_model.tflite", &model_len);
    if (model == NULL) fail(EXIT_IO, "io", MQ_OK, "mq_model.tflite cannot be opened");
    prepared = load("mq_prepared.bin", &prepared_len);
    inputs = load("mq_inputs.bin", &inputs_len);
    if (inputs == NULL) fail(EXIT_IO, "io", MQ_OK, "mq_inputs.bin cannot be opened");

    /* Size the arena as the host does: without memory mq_init bounds it, then it is exact. A bound
     * beyond the pool is tried with all the room there is, which gives the exact figure too. */
    s = mq_init_ex(&it, model, model_len, prepared, prepared_len, NULL, 0, 0u);
    for (round = 0; round < 3u && (s == MQ_ERR_ARENA_TOO_SMALL || (s == MQ_OK && it.arena_len != it.arena_required));
         round++) {
        const size_t need = round == 0u && it.arena_required > arena_room() ? arena_room() : it.arena_required;
        arena = arena_at(need);
        s = mq_init_ex(&it, model, model_len, prepared, prepared_len, arena, need, 0u);
    }
    if (s != MQ_OK) fail(EXIT_MODEL, "init", s, it.error_detail != NULL ? it.error_detail : "");
    if (!guards_intact(arena, it.arena_len)) fail(EXIT_MEMORY, "memory", MQ_OK, "mq_init wrote outside its arena");
    put_fact("arena_required", (uint32_t)it.arena_required);
    put_fact("activation_bytes", (uint32_t)it.activation_bytes);
    put_fact("prepared_bytes", (uint32_t)it.prepared_bytes);
    for (i = 0; i < mq_input_count(&it); i++) {
        put_tensor("input", i, mq_input(&it, i));
        sample_in += mq_input(&it, i)->bytes;
    }
    for (i = 0; i < mq_output_count(&it); i++) {
        put_tensor("output", i, mq_output(&it, i));
    }
    if (sample_in == 0 ? inputs_len != 0 : inputs_len % sample_in != 0)
        fail(EXIT_IO, "io", MQ_OK, "mq_inputs.bin is not a whole number of samples");
    samples = sample_in ? inputs_len / sample_in : 0;
    put_fact("samples", (uint32_t)samples);

    fd = sh_open("mq_outputs.bin", OPEN_WB);
    if (fd < 0) fail(EXIT_IO, "io", MQ_OK, "mq_outputs.bin cannot be created");
    src = inputs;
    for (k = 0; k < samples; k++) {
        for (i = 0; i < mq_input_count(&it); i++) {
            mq_tensor *t = mq_input(&it, i);
            memcpy(t->data, src, t->bytes);
            src += t->bytes;
        }
        s = mq_invoke(&it);
        if (s != MQ_OK) {
            sh_close(fd);
            put_fact("failed_sample", (uint32_t)k);
            fail(EXIT_MODEL, "invoke", s, it.error_detail != NULL ? it.error_detail : "");
        }
        if (!guards_intact(arena, it.arena_len)) {
            sh_close(fd);
            put_fact("failed_sample", (uint32_t)k);
            fail(EXIT_MEMORY, "memory", MQ_OK, "mq_invoke wrote outside its arena");
        }
        for (i = 0; i < mq_output_count(&it); i++) {
            const mq_tensor *t = mq_output(&it, i);
            if (!sh_write(fd, t->data, t->bytes)) {
                sh_close(fd);
                fail(EXIT_IO, "io", MQ_OK, "mq_outputs.bin cannot be written");
            }
        }
    }
    sh_close(fd);
    finish(EXIT_OK, "MQ_OK");
    return EXIT_OK;
}
