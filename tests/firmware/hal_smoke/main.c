/*
 * A minimal firmware that exercises a board HAL (firmware/hal/mq_hal.h) without the protocol:
 * tests/test_platform_qemu.py builds it with the generated PlatformIO project and runs it in QEMU.
 *
 *   1. prints "hal-smoke <counter unit>\n" and "work <counter delta of a fixed loop>\n";
 *   2. with a model linked in (MQ_SMOKE_MODEL), prints "model <bytes> <byte sum>\n" and keeps a
 *      tensor arena of MCUQUANT_ARENA_BYTES in .bss, as the real firmware does;
 *   3. echoes each received line upper-cased, followed by another "work" line, until the line
 *      "exit <n>", then returns n
 *      (the start-up code ends QEMU with that status); "fault" reads unmapped memory;
 *   4. returns 2 when no byte arrives for 10 s (mq_hal_millis).
 */
#include <stdint.h>

#include "mq_hal.h"

#ifdef MQ_SMOKE_MODEL
#include "model_config.h"
#include "model_data.h"
static uint8_t arena[MCUQUANT_ARENA_BYTES] __attribute__((aligned(16)));
#endif

static void put_text(const char *s)
{
    const char *end = s;
    while (*end != '\0') {
        end++;
    }
    mq_hal_write((const uint8_t *)s, (size_t)(end - s));
}

static void put_u32(uint32_t v)
{
    char buf[11];
    int i = 10;
    buf[i] = '\0';
    do {
        buf[--i] = (char)('0' + (int)(v % 10u));
        v /= 10u;
    } while (v != 0u && i > 0);
    put_text(&buf[i]);
}

/* A fixed amount of work whose instruction count must not change between runs. */
static uint32_t work(void)
{
    volatile uint32_t acc = 1u;
    uint32_t i;
    for (i = 0; i < 20000u; i++) {
        acc = acc * 1664525u + 1013904223u;
    }
    return acc;
}

/* Prints "work <counter delta of work()>". */
static void put_work(void)
{
    uint32_t t0, t1;
    t0 = mq_hal_counter();
    (void)work();
    t1 = mq_hal_counter();
    put_text("work ");
    put_u32(t1 - t0);
    put_text("\n");
}

static int parse_exit(const char *line, int *status)
{
    const char *p = line;
    int n = 0;
    if (p[0] != 'e' || p[1] != 'x' || p[2] != 'i' || p[3] != 't' || p[4] != ' ') {
        return 0;
    }
    for (p += 5; *p >= '0' && *p <= '9' && n < 1000; p++) {
        n = n * 10 + (*p - '0');
    }
    *status = n;
    return 1;
}

int main(void)
{
    char line[64];
    size_t len = 0;
    uint32_t last_rx;
    uint8_t byte;
    int status;

    mq_hal_init();
    put_text("hal-smoke ");
    put_text(mq_hal_counter_unit());
    put_text("\n");

    put_work();

#ifdef MQ_SMOKE_MODEL
    {
        uint32_t sum = 0u, i;
        for (i = 0; i < MCUQUANT_MODEL_DATA_LEN; i++) {
            sum += MCUQUANT_MODEL_DATA[i];
        }
        arena[0] = (uint8_t)sum;
        arena[sizeof arena - 1u] = (uint8_t)(sum >> 8);
        put_text("model ");
        put_u32(MCUQUANT_MODEL_DATA_LEN);
        put_text(" ");
        put_u32(sum + arena[0] + arena[sizeof arena - 1u]);
        put_text("\n");
    }
#endif

    last_rx = mq_hal_millis();
    for (;;) {
        if (!mq_hal_read_byte(&byte)) {
            if (mq_hal_millis() - last_rx > 10000u) {
                put_text("timeout\n");
                return 2;
            }
            continue;
        }
        last_rx = mq_hal_millis();
        if (byte != '\n') {
            if (len < sizeof line - 1u) {
                line[len++] = (char)byte;
            }
            continue;
        }
        line[len] = '\0';
        {
            char upper[sizeof line];
            size_t i;
            for (i = 0; i <= len; i++) {
                char c = line[i];
                upper[i] = (char)(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
            }
            put_text(upper);
            put_text("\n");
        }
        put_work();
        len = 0;
        if (parse_exit(line, &status)) {
            return status;
        }
        if (line[0] == 'f' && line[1] == 'a' && line[2] == 'u' && line[3] == 'l' && line[4] == 't') {
            return (int)*(volatile uint32_t *)(uintptr_t)0xF0000000u;
        }
    }
}
