/*
 * mq_hal.h for physical boards through the Arduino core (platformio.ini: framework = arduino).
 *
 * The serial link is the Arduino object the board profile names (MQ_SERIAL_PORT in the generated
 * mq_board.h: Serial = USB CDC on most boards, Serial1 = a hardware UART). The latency counter is
 * DWT CYCCNT on cores that have one (profile counter = "dwt": Cortex-M3/M4/M7), else micros().
 *
 * The Arduino core owns main() and calls setup() and loop(); the generated platformio.ini builds
 * the project's sources with -Dmain=mq_app_main, so the firmware's main loop runs from setup().
 * Not built or run in mcuquant's offline CI (PlatformIO's registry is unreachable there).
 */
#include <Arduino.h>

#include "mq_board.h"
#include "mq_hal.h"

#ifndef MQ_SERIAL_PORT
#error "mq_board.h must define MQ_SERIAL_PORT (generate the project with mcuquant)"
#endif

#if defined(MQ_COUNTER_DWT)
/* Armv7-M debug registers: DEMCR.TRCENA enables the DWT, DWT_CTRL.CYCCNTENA starts CYCCNT;
 * the Cortex-M7 also needs the DWT's lock access register unlocked. */
#define MQ_DEMCR (*(volatile uint32_t *)0xE000EDFCu)
#define MQ_DWT_CTRL (*(volatile uint32_t *)0xE0001000u)
#define MQ_DWT_CYCCNT (*(volatile uint32_t *)0xE0001004u)
#define MQ_DWT_LAR (*(volatile uint32_t *)0xE0001FB0u)
#endif

extern "C" int mq_app_main(void);

extern "C" void mq_hal_init(void)
{
    MQ_SERIAL_PORT.begin(MQ_SERIAL_BAUD);
#if defined(MQ_COUNTER_DWT)
    MQ_DEMCR |= 1u << 24;
    MQ_DWT_LAR = 0xC5ACCE55u;
    MQ_DWT_CYCCNT = 0u;
    MQ_DWT_CTRL |= 1u;
#endif
}

extern "C" int mq_hal_read_byte(uint8_t *byte)
{
    int c = MQ_SERIAL_PORT.read();
    if (c < 0) {
        return 0;
    }
    *byte = (uint8_t)c;
    return 1;
}

extern "C" void mq_hal_write(const uint8_t *data, size_t len)
{
    size_t done = 0;
    while (done < len) {
        done += MQ_SERIAL_PORT.write(data + done, len - done);
    }
}

extern "C" uint32_t mq_hal_counter(void)
{
#if defined(MQ_COUNTER_DWT)
    return MQ_DWT_CYCCNT;
#elif defined(MQ_COUNTER_MICROS)
    return (uint32_t)micros();
#else
    return 0u;
#endif
}

extern "C" const char *mq_hal_counter_unit(void)
{
#if defined(MQ_COUNTER_DWT)
    return "cycles";
#elif defined(MQ_COUNTER_MICROS)
    return "microseconds";
#else
    return "";
#endif
}

extern "C" uint32_t mq_hal_rx_buffer(void)
{
#if MQ_SERIAL_FLOW_CONTROLLED
    return 0xFFFFFFFFu; /* USB CDC: the host's driver waits while the board's buffer is full */
#elif defined(SERIAL_RX_BUFFER_SIZE)
    return SERIAL_RX_BUFFER_SIZE - 1u; /* a ring buffer holds one byte less than its size */
#else
    return 63u; /* the Arduino cores' smallest UART ring buffer (64 bytes) */
#endif
}

extern "C" uint32_t mq_hal_millis(void)
{
    return (uint32_t)millis();
}

void setup(void)
{
    (void)mq_app_main(); /* serves the host forever */
}

void loop(void)
{
}
