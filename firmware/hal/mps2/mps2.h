/*
 * QEMU's Arm MPS2 / MPS3 FPGA machines (mps2-an385, -an386, -an500, -an505, mps3-an547):
 * the peripherals the mcuquant HAL uses, and semihosting.
 *
 * Addresses and clocks differ per machine; they come from the board profile (boards/<name>.toml,
 * [qemu] table) through the generated header mq_board.h, so this file holds no machine table.
 * On the TrustZone machines (an505, an547) the firmware runs in the Secure state, so the
 * profile gives the Secure aliases (0x5xxxxxxx) of the peripherals.
 *
 * Peripherals (register offsets from the CMSDK / MPS2 FPGA documentation, checked in QEMU 7.2):
 *   CMSDK APB UART   DATA 0x00, STATE 0x04 (bit 0 TX full, bit 1 RX full),
 *                    CTRL 0x08 (bit 0 TX enable, bit 1 RX enable), BAUDDIV 0x10 (>= 16)
 *   MPS2 FPGAIO      CLK100HZ 0x14 (counts at 100 Hz), COUNTER 0x18 (counts once per
 *                    PRESCALE + 1 periods of the FPGAIO clock), PRESCALE 0x1C
 */
#ifndef MQ_MPS2_H
#define MQ_MPS2_H

#include <stdint.h>

#include "mq_board.h"

#if !defined(MQ_MPS2_UART_BASE) || !defined(MQ_MPS2_UART_CLOCK_HZ) || \
    !defined(MQ_MPS2_FPGAIO_BASE) || !defined(MQ_MPS2_FPGAIO_CLOCK_HZ) || !defined(MQ_SERIAL_BAUD)
#error "mq_board.h must define the MPS2 machine facts: generate the project with mcuquant (boards/*.toml)"
#endif

#define MQ_MPS2_REG(addr) (*(volatile uint32_t *)(uintptr_t)(addr))

#define MQ_MPS2_UART_DATA MQ_MPS2_REG(MQ_MPS2_UART_BASE + 0x00u)
#define MQ_MPS2_UART_STATE MQ_MPS2_REG(MQ_MPS2_UART_BASE + 0x04u)
#define MQ_MPS2_UART_CTRL MQ_MPS2_REG(MQ_MPS2_UART_BASE + 0x08u)
#define MQ_MPS2_UART_BAUDDIV MQ_MPS2_REG(MQ_MPS2_UART_BASE + 0x10u)
#define MQ_MPS2_UART_STATE_TX_FULL 0x1u
#define MQ_MPS2_UART_STATE_RX_FULL 0x2u
#define MQ_MPS2_UART_CTRL_TX_EN 0x1u
#define MQ_MPS2_UART_CTRL_RX_EN 0x2u

#define MQ_MPS2_FPGAIO_CLK100HZ MQ_MPS2_REG(MQ_MPS2_FPGAIO_BASE + 0x14u)
#define MQ_MPS2_FPGAIO_COUNTER MQ_MPS2_REG(MQ_MPS2_FPGAIO_BASE + 0x18u)
#define MQ_MPS2_FPGAIO_PRESCALE MQ_MPS2_REG(MQ_MPS2_FPGAIO_BASE + 0x1Cu)

/*
 * Nanoseconds per FPGAIO clock period (40 at 25 MHz, 50 at 20 MHz). Under `qemu -icount
 * shift=0` one guest instruction advances virtual time by exactly 1 ns. The profile loader only
 * accepts clocks whose period is a whole number of nanoseconds, at least 16.
 */
#define MQ_MPS2_NS_PER_TICK (1000000000u / (MQ_MPS2_FPGAIO_CLOCK_HZ))

#ifdef __cplusplus
extern "C" {
#endif

/* End the emulator with this exit status (semihosting SYS_EXIT_EXTENDED). Never returns. */
void mq_mps2_exit(int status);

/* Write a NUL-terminated message to the emulator's semihosting console (QEMU's stderr): for
 * faults and diagnostics that must not mix with the protocol on the UART. */
void mq_mps2_debug_write(const char *text);

/* One ARM semihosting call (BKPT 0xAB): operation `op` (SYS_OPEN 0x01, SYS_WRITE 0x05, ...)
 * with its argument block; returns what the debugger / QEMU puts in r0. */
uint32_t mq_mps2_semihost(uint32_t op, const void *arg);

#ifdef __cplusplus
}
#endif
#endif /* MQ_MPS2_H */
