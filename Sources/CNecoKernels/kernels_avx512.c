/* The AVX-512 path (x86-64): 16 lanes; every function in this file is compiled for that target; the
 * dispatcher calls it only when CPUID and XGETBV say the CPU and OS support it. */
#if defined(__x86_64__)
#include <immintrin.h> /* vscalefps in exp */
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma"))), apply_to = function)
#define NK_W 16
#define NK_SUFFIX avx512
#include "kernels_body.h"
#pragma clang attribute pop
#endif
