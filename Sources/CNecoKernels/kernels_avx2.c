/* The AVX2 + FMA path (x86-64): every function in this file is compiled for that target; the
 * dispatcher calls it only when CPUID and XGETBV say the CPU and OS support it. */
#if defined(__x86_64__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#define NK_W 8
#define NK_SUFFIX avx2
#include "kernels_body.h"
#pragma clang attribute pop
#endif
