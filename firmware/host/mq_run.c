/*
 * mq_run: host driver of the builtin runtime (host only: it uses the heap and stdio).
 *
 *   mq_run MODEL.tflite INPUTS.bin OUTPUTS.bin
 *       Runs every sample of INPUTS.bin (the raw bytes of all graph inputs of one sample, back to
 *       back, then the next sample) and writes the raw bytes of all graph outputs the same way.
 *       Prints "arena_required N" (the exact arena the model needs with this build's struct sizes);
 *       on an error prints one line "error STATUS op INDEX NAME: DETAIL" and exits 1.
 *
 *   mq_run --fuzz < STREAM
 *       STREAM is a sequence of models, each a uint32 little-endian length and that many bytes.
 *       Each model is copied into a heap buffer of exactly its length (so AddressSanitizer sees any
 *       read past its end), initialized with a 1 MiB arena and, when that succeeds, invoked once
 *       with a byte pattern as input. Prints one status name per model, in order: mq_init's status
 *       when it failed, else mq_invoke's. Exits 0 at the end of a well-formed stream, 2 on a
 *       truncated stream or an I/O error.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mq_internal.h"

#define FUZZ_ARENA_BYTES (1u << 20)

/* An arena allocation: `data` is 16-byte aligned; when malloc already aligns, the block is exact
 * (so AddressSanitizer catches accesses past its end). */
typedef struct arena_block {
    void *block;
    uint8_t *data;
} arena_block;

static int arena_alloc(arena_block *a, size_t bytes)
{
    a->block = malloc(bytes > 0 ? bytes : 1);
    if (a->block != NULL && (uintptr_t)a->block % MQ_ARENA_ALIGN == 0) {
        a->data = (uint8_t *)a->block;
        return 1;
    }
    free(a->block);
    a->block = malloc(bytes + MQ_ARENA_ALIGN);
    if (a->block == NULL) return 0;
    const uintptr_t p = (uintptr_t)a->block;
    a->data = (uint8_t *)a->block + ((MQ_ARENA_ALIGN - p % MQ_ARENA_ALIGN) % MQ_ARENA_ALIGN);
    return 1;
}

static void print_error(const mq_interpreter *it, mq_status s)
{
    const int32_t op = it->error_op;
    const char *name = "-";
    if (op >= 0) name = mq_op_name(mq_op_code_at(it, op));
    printf("error %s op %ld %s: %s\n", mq_status_name(s), (long)op, name,
           it->error_detail != NULL ? it->error_detail : "");
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t cap = 0, n = 0;
    if (f == NULL) return NULL;
    for (;;) {
        if (n == cap) {
            cap = cap ? 2 * cap : 65536;
            uint8_t *grown = (uint8_t *)realloc(buf, cap);
            if (grown == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = grown;
        }
        const size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    const int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static int run_model(const char *model_path, const char *inputs_path, const char *outputs_path)
{
    size_t model_len = 0, inputs_len = 0;
    uint8_t *model = NULL, *inputs = NULL;
    arena_block arena = {NULL, NULL};
    FILE *out = NULL;
    mq_interpreter it;
    int rc = 1;

    model = read_file(model_path, &model_len);
    if (model == NULL) {
        fprintf(stderr, "mq_run: cannot read %s\n", model_path);
        goto done;
    }
    inputs = read_file(inputs_path, &inputs_len);
    if (inputs == NULL) {
        fprintf(stderr, "mq_run: cannot read %s\n", inputs_path);
        goto done;
    }

    /* Size the arena: without memory mq_init bounds it, with the metadata in place it is exact. */
    mq_status s = mq_init(&it, model, model_len, NULL, 0);
    for (int round = 0; round < 3 && (s == MQ_ERR_ARENA_TOO_SMALL || (s == MQ_OK && it.arena_len != it.arena_required));
         ++round) {
        const size_t need = it.arena_required;
        free(arena.block);
        if (!arena_alloc(&arena, need)) {
            fprintf(stderr, "mq_run: cannot allocate %lu bytes of arena\n", (unsigned long)need);
            goto done;
        }
        s = mq_init(&it, model, model_len, arena.data, need);
    }
    if (s != MQ_OK) {
        print_error(&it, s);
        goto done;
    }
    printf("arena_required %lu\n", (unsigned long)it.arena_required);

    size_t sample_in = 0;
    for (uint32_t i = 0; i < mq_input_count(&it); ++i) sample_in += mq_input(&it, i)->bytes;
    if (sample_in == 0 ? inputs_len != 0 : inputs_len % sample_in != 0) {
        fprintf(stderr, "mq_run: %s holds %lu bytes, not a multiple of the %lu input bytes of a sample\n",
                inputs_path, (unsigned long)inputs_len, (unsigned long)sample_in);
        goto done;
    }
    out = fopen(outputs_path, "wb");
    if (out == NULL) {
        fprintf(stderr, "mq_run: cannot write %s\n", outputs_path);
        goto done;
    }
    const size_t samples = sample_in ? inputs_len / sample_in : 0;
    const uint8_t *src = inputs;
    for (size_t k = 0; k < samples; ++k) {
        for (uint32_t i = 0; i < mq_input_count(&it); ++i) {
            mq_tensor *t = mq_input(&it, i);
            memcpy(t->data, src, t->bytes);
            src += t->bytes;
        }
        s = mq_invoke(&it);
        if (s != MQ_OK) {
            print_error(&it, s);
            goto done;
        }
        for (uint32_t i = 0; i < mq_output_count(&it); ++i) {
            const mq_tensor *t = mq_output(&it, i);
            if (fwrite(t->data, 1, t->bytes, out) != t->bytes) {
                fprintf(stderr, "mq_run: cannot write %s\n", outputs_path);
                goto done;
            }
        }
    }
    rc = 0;
done:
    if (out != NULL && fclose(out) != 0) rc = 1;
    free(arena.block);
    free(inputs);
    free(model);
    if (fflush(stdout) != 0) rc = 1;
    return rc;
}

static int fuzz(void)
{
    arena_block arena;
    int rc = 0;
    if (!arena_alloc(&arena, FUZZ_ARENA_BYTES)) return 2;
    for (uint32_t n = 0;; ++n) {
        uint8_t header[4];
        const size_t got = fread(header, 1, 4, stdin);
        if (got == 0 && feof(stdin)) break;
        if (got != 4) {
            fprintf(stderr, "mq_run --fuzz: truncated length prefix\n");
            rc = 2;
            break;
        }
        const uint32_t len = mq_fb_load_u32(header);
        uint8_t *model = (uint8_t *)malloc(len > 0 ? len : 1);
        if (model == NULL || fread(model, 1, len, stdin) != len) {
            fprintf(stderr, "mq_run --fuzz: model %lu: %s\n", (unsigned long)n,
                    model == NULL ? "cannot allocate" : "truncated");
            free(model);
            rc = 2;
            break;
        }
        mq_interpreter it;
        mq_status s = mq_init(&it, model, len, arena.data, FUZZ_ARENA_BYTES);
        if (s == MQ_OK) {
            for (uint32_t i = 0; i < mq_input_count(&it); ++i) {
                mq_tensor *t = mq_input(&it, i);
                uint8_t *d = (uint8_t *)t->data;
                for (uint32_t b = 0; b < t->bytes; ++b) d[b] = (uint8_t)(b * 37u + n * 11u + i);
            }
            s = mq_invoke(&it);
        }
        puts(mq_status_name(s));
        free(model);
    }
    free(arena.block);
    if (fflush(stdout) != 0) rc = 2;
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--fuzz") == 0) return fuzz();
    if (argc == 4) return run_model(argv[1], argv[2], argv[3]);
    fprintf(stderr, "usage: mq_run MODEL.tflite INPUTS.bin OUTPUTS.bin\n       mq_run --fuzz < STREAM\n");
    return 2;
}
