/*
 * Benchmark firmware: the raw transport, with no protocol (tests/benchmarks/bench_link.py).
 *
 * Reads bytes through the board's HAL exactly as the protocol firmware's main loop does, and
 * counts them. A 0x00 byte ends a burst: the firmware answers with the burst's byte count
 * (u32, little-endian). A 0x01 byte asks for as many bytes back (0x55 each) as the last burst
 * had: the device-to-host direction.
 */
#include <stdint.h>

#include "mq_hal.h"

int main(void)
{
    static uint8_t block[256];
    uint32_t count = 0, last = 0, i;
    for (i = 0; i < sizeof block; ++i) block[i] = 0x55u;
    mq_hal_init();
    for (;;) {
        uint8_t byte;
        if (!mq_hal_read_byte(&byte)) continue;
        if (byte > 1u) {
            ++count;
        } else if (byte == 0u) {
            uint8_t reply[4];
            reply[0] = (uint8_t)count;
            reply[1] = (uint8_t)(count >> 8);
            reply[2] = (uint8_t)(count >> 16);
            reply[3] = (uint8_t)(count >> 24);
            mq_hal_write(reply, sizeof reply);
            last = count;
            count = 0;
        } else {
            uint32_t left = last;
            while (left > 0) {
                uint32_t n = left < sizeof block ? left : (uint32_t)sizeof block;
                mq_hal_write(block, n);
                left -= n;
            }
        }
    }
}
