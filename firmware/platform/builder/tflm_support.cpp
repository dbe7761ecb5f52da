/*
 * What TensorFlow Lite Micro needs from the C and C++ libraries on mcuquant's bare-metal emulated
 * boards, which have no system calls and no heap. builder/main.py compiles this file only when it
 * builds TFLM (custom_tflm_dir).
 *
 * - abort() and newlib's __assert_func(): TFLM's kernels abort when an internal check fails
 *   (TFLITE_ABORT), its FlatBuffers headers assert(). newlib's versions go through fprintf(stderr)
 *   and _kill / _getpid / _exit; these execute an undefined instruction instead, so the HAL's
 *   fault handler reports the fault and ends the emulator.
 * - operator new / delete: TFLM's common.cpp references them (TfLiteOpaqueDelegateCreate, which
 *   TFLM never calls). libstdc++'s versions would drag in malloc, exceptions and stdio; these
 *   trap instead, and linking them proves that nothing else asks for the heap.
 */
#include <stddef.h>
#include <stdlib.h>

#include <new>

extern "C" void abort(void)
{
    __builtin_trap();
}

extern "C" void __assert_func(const char *, int, const char *, const char *)
{
    __builtin_trap();
}

void *operator new(size_t) { __builtin_trap(); }
void *operator new[](size_t) { __builtin_trap(); }
void operator delete(void *) noexcept { __builtin_trap(); }
void operator delete[](void *) noexcept { __builtin_trap(); }
void operator delete(void *, size_t) noexcept { __builtin_trap(); }
void operator delete[](void *, size_t) noexcept { __builtin_trap(); }
