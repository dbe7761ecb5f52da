/*
 * Start-up code for the QEMU MPS2 / MPS3 machines: vector table, reset handler, fault handler.
 *
 * Reset: enable the FPU (cores that have one), copy .data from flash, zero .bss, run C++
 * static constructors (a C++ backend may have some), call main(), and end the emulator with
 * main's return value. The memory layout comes from the linker script generated from the board
 * profile (templates/mps2.ld.j2): the stack sits at the bottom of RAM, so an overflow runs into
 * unmapped memory and faults instead of silently corrupting .data or .bss.
 *
 * Any fault or unexpected interrupt prints its exception number on the semihosting console and
 * ends the emulator with MQ_MPS2_EXIT_FAULT, so a crash is never mistaken for a hang.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mps2.h"

#define MQ_MPS2_EXIT_FAULT 3

/* Defined by the linker script. */
extern unsigned char __stack_top__[];
extern unsigned char __data_load__[];
extern unsigned char __data_start__[];
extern unsigned char __data_end__[];
extern unsigned char __bss_start__[];
extern unsigned char __bss_end__[];
extern void (*const __init_array_start__[])(void);
extern void (*const __init_array_end__[])(void);

int main(void);
void mq_mps2_reset_handler(void);
void mq_mps2_fault_handler(void);

/* Coprocessor Access Control Register: CP10 and CP11 (the FPU, and MVE on the M55). */
#define MQ_SCB_CPACR MQ_MPS2_REG(0xE000ED88u)

typedef union {
    void (*handler)(void);
    void *stack_top;
} mq_vector;

/* The 16 system exceptions; no peripheral interrupt is enabled, so none has a slot. A spurious
 * one would fetch past the table and fault, which the fault handler reports. */
__attribute__((section(".vectors"), used)) static const mq_vector mq_mps2_vectors[16] = {
    {.stack_top = __stack_top__},
    {.handler = mq_mps2_reset_handler},
    {.handler = mq_mps2_fault_handler}, /* 2 NMI */
    {.handler = mq_mps2_fault_handler}, /* 3 HardFault */
    {.handler = mq_mps2_fault_handler}, /* 4 MemManage */
    {.handler = mq_mps2_fault_handler}, /* 5 BusFault */
    {.handler = mq_mps2_fault_handler}, /* 6 UsageFault */
    {.handler = mq_mps2_fault_handler}, /* 7 SecureFault (Armv8-M) */
    {.handler = NULL},
    {.handler = NULL},
    {.handler = NULL},
    {.handler = mq_mps2_fault_handler}, /* 11 SVCall */
    {.handler = mq_mps2_fault_handler}, /* 12 DebugMonitor */
    {.handler = NULL},
    {.handler = mq_mps2_fault_handler}, /* 14 PendSV */
    {.handler = mq_mps2_fault_handler}, /* 15 SysTick */
};

static size_t span(const unsigned char *begin, const unsigned char *end)
{
    /* Compared as addresses: the linker symbols are distinct objects for the C language. */
    return (size_t)((uintptr_t)end - (uintptr_t)begin);
}

void mq_mps2_reset_handler(void)
{
    size_t i, n;
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
    MQ_SCB_CPACR |= 0xFu << 20; /* full access to CP10 and CP11 */
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    memcpy(__data_start__, __data_load__, span(__data_start__, __data_end__));
    memset(__bss_start__, 0, span(__bss_start__, __bss_end__));
    n = span((const unsigned char *)__init_array_start__, (const unsigned char *)__init_array_end__) /
        sizeof(__init_array_start__[0]);
    for (i = 0; i < n; i++) {
        __init_array_start__[i]();
    }
    mq_mps2_exit(main());
}

void mq_mps2_fault_handler(void)
{
    /* IPSR holds the number of the active exception. */
    static const char digits[] = "0123456789";
    char msg[] = "mcuquant firmware: fault, exception 000\n";
    const size_t last = sizeof msg - 3; /* index of the units digit */
    uint32_t ipsr;
    __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
    ipsr &= 0x1FFu;
    msg[last] = digits[ipsr % 10u];
    msg[last - 1] = digits[(ipsr / 10u) % 10u];
    msg[last - 2] = digits[(ipsr / 100u) % 10u];
    mq_mps2_debug_write(msg);
    mq_mps2_exit(MQ_MPS2_EXIT_FAULT);
}
