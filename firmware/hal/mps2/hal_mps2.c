/*
 * mq_hal.h for QEMU's MPS2 / MPS3 machines: CMSDK UART0 for the serial link, the FPGAIO
 * counter for latency and its 100 Hz clock for timeouts, semihosting to end the emulator.
 *
 * Why the FPGAIO counter: it is 32 bits wide, counts at a clock whose period is a whole number
 * of nanoseconds on every machine (25 MHz on an385/an386/an500, 20 MHz on an505/an547) and sits
 * at a profile-given address on all five machines. The DWT cycle counter is not emulated (reads
 * 0), SysTick is only 24 bits wide, and the an547 has no 32-bit CMSDK timer at a usable clock.
 * Under -icount shift=0, mq_hal_counter() returns exact instruction counts (see there).
 */
#include "mq_hal.h"
#include "mps2.h"

/* SysTick (Armv7-M / Armv8-M system control space). */
#define MQ_SYST_CSR MQ_MPS2_REG(0xE000E010u)
#define MQ_SYST_RVR MQ_MPS2_REG(0xE000E014u)
#define MQ_SYST_CVR MQ_MPS2_REG(0xE000E018u)
#define MQ_SYST_CSR_ENABLE 0x1u
#define MQ_SYST_CSR_CLKSOURCE_CORE 0x4u

#define MQ_MPS2_BAUDDIV ((MQ_MPS2_UART_CLOCK_HZ) / (MQ_SERIAL_BAUD))
#if MQ_MPS2_BAUDDIV < 16
#error "MQ_SERIAL_BAUD is too high for the UART clock: the CMSDK UART needs BAUDDIV >= 16"
#endif

void mq_hal_init(void)
{
    MQ_MPS2_UART_CTRL = 0u;
    MQ_MPS2_UART_BAUDDIV = MQ_MPS2_BAUDDIV;
    MQ_MPS2_UART_CTRL = MQ_MPS2_UART_CTRL_TX_EN | MQ_MPS2_UART_CTRL_RX_EN;
    MQ_MPS2_FPGAIO_PRESCALE = 0u; /* COUNTER advances once per FPGAIO clock period */
    /* SysTick wraps every 25000 core clocks (about 1e6 instructions under -icount) without an
     * interrupt. It only gives QEMU a timer deadline: under -icount the virtual CPU otherwise
     * runs for up to ~2e9 instructions before QEMU looks at the socket again, and every byte
     * from the host could wait a second. */
    MQ_SYST_RVR = 24999u;
    MQ_SYST_CVR = 0u;
    MQ_SYST_CSR = MQ_SYST_CSR_ENABLE | MQ_SYST_CSR_CLKSOURCE_CORE;
}

int mq_hal_read_byte(uint8_t *byte)
{
    if ((MQ_MPS2_UART_STATE & MQ_MPS2_UART_STATE_RX_FULL) == 0u) {
        return 0;
    }
    *byte = (uint8_t)(MQ_MPS2_UART_DATA & 0xFFu);
    return 1;
}

void mq_hal_write(const uint8_t *data, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++) {
        /* QEMU holds TX full while the host side of the serial port applies back-pressure. */
        while ((MQ_MPS2_UART_STATE & MQ_MPS2_UART_STATE_TX_FULL) != 0u) {
        }
        MQ_MPS2_UART_DATA = data[i];
    }
}

/*
 * Exact instruction counts under -icount shift=0 (one instruction = 1 ns of virtual time).
 *
 * COUNTER only moves every P = MQ_MPS2_NS_PER_TICK ns. A plain reading would put up to P
 * instructions of jitter into every difference, because how far the firmware is from the next
 * edge depends on how long it polled the UART before. So each call locates an edge to the
 * instruction and returns the virtual time T (modulo 2^32) of its own first load:
 *   1. spin until COUNTER changes, counting the rounds n of the 4-instruction loop; the load
 *      that saw the new value c1 ran at t = E + d, where E is the edge c1 * P and 0 <= d < 4;
 *   2. after P - 8 instructions of padding, five back-to-back loads straddle the next edge
 *      E + P: exactly d + 1 of the last four see c1 + 1, which gives d;
 *   3. T = t - (4 n - 2), so T = c1 * P + d - 4 n up to a constant.
 * Then the call pads itself to a fixed length: (MQ_MPS2_SPIN_MAX + 1 - n) more 4-instruction
 * rounds, so spinning plus padding always takes 4 (MQ_MPS2_SPIN_MAX + 1) instructions, and the
 * C after the assembly is branch-free. A difference of two readings is therefore exactly the
 * instructions executed between the two calls plus the constant length of one call (2 P + 25
 * with GCC 12 -O2: 105 instructions at 25 MHz, 123 at 20 MHz). Without -icount (virtual time
 * then follows the host clock) the result is merely a time stamp with ~P ns resolution.
 */
#define MQ_MPS2_SPIN_MAX (MQ_MPS2_NS_PER_TICK / 4u + 2u) /* more rounds than one period needs */

uint32_t mq_hal_counter(void)
{
    const volatile uint32_t *counter = &MQ_MPS2_FPGAIO_COUNTER;
    uint32_t c0, c1, n, pad_rounds, f1, f2, f3, f4, d;
    __asm__ volatile(
        "ldr %[c0], [%[reg]]\n\t"
        "movs %[n], #0\n"
        "1:\n\t"
        "ldr %[c1], [%[reg]]\n\t"
        "adds %[n], %[n], #1\n\t"
        "cmp %[c1], %[c0]\n\t"
        "beq 1b\n\t"
        ".rept %c[pad]\n\t"
        "nop\n\t"
        ".endr\n\t"
        "ldr %[c0], [%[reg]]\n\t" /* the window's first load, always before the edge */
        "ldr %[f1], [%[reg]]\n\t"
        "ldr %[f2], [%[reg]]\n\t"
        "ldr %[f3], [%[reg]]\n\t"
        "ldr %[f4], [%[reg]]\n\t"
        "rsb %[m], %[n], %[rounds]\n"
        "2:\n\t"
        "subs %[m], %[m], #1\n\t"
        "nop\n\t"
        "nop\n\t"
        "bgt 2b\n\t"
        : [c0] "=&r"(c0), [c1] "=&r"(c1), [n] "=&r"(n), [m] "=&r"(pad_rounds), [f1] "=&r"(f1),
          [f2] "=&r"(f2), [f3] "=&r"(f3), [f4] "=&r"(f4)
        : [reg] "r"(counter), [pad] "i"(MQ_MPS2_NS_PER_TICK - 8u),
          [rounds] "i"(MQ_MPS2_SPIN_MAX + 1u)
        : "cc", "memory");
    (void)c0;
    (void)pad_rounds;
    /* Each fk is c1 or c1 + 1 under -icount. Without -icount (virtual time follows the host
     * clock) none of this is exact and d is merely small. */
    d = (f1 - c1) + (f2 - c1) + (f3 - c1) + (f4 - c1) - 1u;
    /* Unsigned arithmetic wraps modulo 2^32 and so does the time: c1 * P stays right modulo
     * 2^32 after COUNTER itself wraps. */
    return c1 * MQ_MPS2_NS_PER_TICK + d - 4u * n;
}

const char *mq_hal_counter_unit(void)
{
    /* Instructions only when QEMU runs with -icount shift=0 (mcuquant.device.qemu always does);
     * without -icount the same number is virtual nanoseconds at a varying pace. */
    return "instructions";
}

/* QEMU's character device hands the UART a byte only when its receive register is free and
 * otherwise leaves the bytes in the host socket: nothing is dropped while the firmware computes. */
uint32_t mq_hal_rx_buffer(void) { return 0xFFFFFFFFu; }

uint32_t mq_hal_millis(void)
{
    /* 10 ms steps; times 10 keeps differences exact modulo 2^32 like mq_hal_counter. */
    return MQ_MPS2_FPGAIO_CLK100HZ * 10u;
}

/* ARM semihosting: operation in r0, argument in r1, BKPT 0xAB; the result comes back in r0. */
uint32_t mq_mps2_semihost(uint32_t op, const void *arg)
{
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

#define SEMIHOST_SYS_WRITE0 0x04u
#define SEMIHOST_SYS_EXIT_EXTENDED 0x20u
#define SEMIHOST_ADP_STOPPED_APPLICATION_EXIT 0x20026u

void mq_mps2_exit(int status)
{
    /* SYS_EXIT_EXTENDED passes the status through to QEMU's exit code (plain SYS_EXIT on
     * AArch32 only distinguishes success from failure). */
    const uint32_t block[2] = {SEMIHOST_ADP_STOPPED_APPLICATION_EXIT, (uint32_t)status};
    (void)mq_mps2_semihost(SEMIHOST_SYS_EXIT_EXTENDED, block);
    for (;;) {
        /* not reached when semihosting is enabled; otherwise stay here */
    }
}

void mq_mps2_debug_write(const char *text)
{
    (void)mq_mps2_semihost(SEMIHOST_SYS_WRITE0, text);
}
