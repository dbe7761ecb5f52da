/*
 * Board hardware abstraction used by the firmware main loop (firmware/app/).
 *
 * One implementation per board family:
 *   hal_mps2.c     QEMU mps2/mps3 machines: CMSDK UART0, CMSDK TIMER0 / SysTick, semihosting exit
 *   hal_arduino.cpp  physical boards through the Arduino core: Serial (USB CDC) or Serial1 (UART)
 *   hal_host.c     the firmware built for the host: the UART is a TCP socket (tests without QEMU)
 */
#ifndef MQ_HAL_H
#define MQ_HAL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bring up the clock, the serial link and the counter. Called once, first thing in main. */
void mq_hal_init(void);

/* Non-blocking: store one received byte in *byte and return 1, or return 0 when none is waiting. */
int mq_hal_read_byte(uint8_t *byte);

/* Blocking: send len bytes. */
void mq_hal_write(const uint8_t *data, size_t len);

/* A free-running counter for latency, read before and after each inference (wraps modulo 2^32).
 * mq_hal_counter_unit() names what one count is: "instructions" (QEMU -icount), "cycles"
 * (DWT CYCCNT on real cores), "microseconds" (boards with neither), or "" when there is no counter
 * (mq_hal_counter then returns 0). */
uint32_t mq_hal_counter(void);
const char *mq_hal_counter_unit(void);

/* Bytes the link holds for the firmware while it is busy and does not read (during an inference):
 * the receive buffer of a plain UART, or 0xFFFFFFFF (MQ_PROTO_RX_UNLIMITED) for a link that holds
 * the sender back instead of dropping bytes (USB CDC, QEMU's UART, a socket). The host never has
 * more than this in flight beyond the request being executed. */
uint32_t mq_hal_rx_buffer(void);

/* Milliseconds since start, for protocol timeouts (may be coarse). */
uint32_t mq_hal_millis(void);

#ifdef __cplusplus
}
#endif
#endif /* MQ_HAL_H */
