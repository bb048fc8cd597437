/* dispatch.c: picks the kernel path once from CPUID (x86-64) or the architecture (arm64), honours
 * NECO_CPU, and forwards each nk_* call through the active table. See nk_kernels.h. */
#include "nk_kernels.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#define NK_DECLARE(sfx)                                                                                          \
    void nk_exp_##sfx(float *, const float *, long);                                                            \
    void nk_gelu_##sfx(float *, const float *, long);                                                           \
    void nk_gelu_backward_##sfx(float *, const float *, const float *, long);                                   \
    void nk_gelu_grad_rows_##sfx(float *, const float *, long, long, float *);                                  \
    void nk_softmax_rows_##sfx(float *, long, long, float);                                                     \
    void nk_softmax_backward_rows_##sfx(float *, const float *, const float *, long, long, float, int);          \
    void nk_layernorm_rows_##sfx(float *, float *, float *, const float *, const float *, const float *, long,   \
                                 long, float);                                                                  \
    void nk_layernorm_backward_rows_##sfx(float *, const float *, const float *, const float *, const float *,  \
                                          const float *, long, long);                                           \
    void nk_swiglu_rows_##sfx(float *, const float *, long, long);                                              \
    void nk_swiglu_backward_rows_##sfx(float *, const float *, const float *, long, long);                      \
    double nk_fma_probe_##sfx(long);                                                                             \
    long nk_gemm_rows_per_tile_##sfx(void);                                                                     \
    void nk_gemm_packed_##sfx(float *, long, const float *, long, const float *, const float *, long, long, long, \
                              int, const float *, long, const float *, float *);                            \
    void nk_attention_head_##sfx(float *, long, const float *, const float *, const float *, long, long, long,  \
                                 float, float *, long, float *);                                                 \
    void nk_gemm_tn_##sfx(float *, long, const float *, long, const float *, long, long, long, long, int, float *, \
                          float *);                                                                            \
    void nk_attention_head_backward_##sfx(float *, float *, float *, long, const float *, long, const float *,  \
                                          const float *, const float *, long, const float *, long, long, float,  \
                                          float *);                                                            \
    void nk_attention_head_backward_recompute_##sfx(float *, float *, float *, long, const float *, long,        \
                                                    const float *, const float *, const float *, long, float *,  \
                                                    long, long, long, float, float *);

#define NK_TABLE(sfx)                                                                                            \
    {nk_exp_##sfx, nk_gelu_##sfx, nk_gelu_backward_##sfx, nk_gelu_grad_rows_##sfx, nk_softmax_rows_##sfx,      \
     nk_softmax_backward_rows_##sfx, nk_layernorm_rows_##sfx,    \
     nk_layernorm_backward_rows_##sfx, nk_swiglu_rows_##sfx, nk_swiglu_backward_rows_##sfx, nk_fma_probe_##sfx,    \
     nk_gemm_rows_per_tile_##sfx, nk_gemm_packed_##sfx, nk_attention_head_##sfx, nk_gemm_tn_##sfx,   \
     nk_attention_head_backward_##sfx, nk_attention_head_backward_recompute_##sfx}

typedef struct {
    void (*exp)(float *, const float *, long);
    void (*gelu)(float *, const float *, long);
    void (*gelu_backward)(float *, const float *, const float *, long);
    void (*gelu_grad_rows)(float *, const float *, long, long, float *);
    void (*softmax_rows)(float *, long, long, float);
    void (*softmax_backward_rows)(float *, const float *, const float *, long, long, float, int);
    void (*layernorm_rows)(float *, float *, float *, const float *, const float *, const float *, long, long, float);
    void (*layernorm_backward_rows)(float *, const float *, const float *, const float *, const float *,
                                    const float *, long, long);
    void (*swiglu_rows)(float *, const float *, long, long);
    void (*swiglu_backward_rows)(float *, const float *, const float *, long, long);
    double (*fma_probe)(long);
    long (*gemm_rows_per_tile)(void);
    void (*gemm_packed)(float *, long, const float *, long, const float *, const float *, long, long, long, int,
                        const float *, long, const float *, float *);
    void (*attention_head)(float *, long, const float *, const float *, const float *, long, long, long, float,
                           float *, long, float *);
    void (*gemm_tn)(float *, long, const float *, long, const float *, long, long, long, long, int, float *, float *);
    void (*attention_head_backward)(float *, float *, float *, long, const float *, long, const float *, const float *,
                                    const float *, long, const float *, long, long, float, float *);
    void (*attention_head_backward_recompute)(float *, float *, float *, long, const float *, long, const float *,
                                              const float *, const float *, long, float *, long, long, long, float,
                                              float *);
} nk_table;

NK_DECLARE(portable)
#if defined(__x86_64__)
NK_DECLARE(avx2)
NK_DECLARE(avx512)
static const nk_table tables[NK_PATH_COUNT] = {NK_TABLE(portable), NK_TABLE(avx2), NK_TABLE(avx512)};
#else
static const nk_table tables[NK_PATH_COUNT] = {NK_TABLE(portable), NK_TABLE(portable), NK_TABLE(portable)};
#endif

static int supported[NK_PATH_COUNT];
static int best_path;
static const nk_table *active = &tables[0];
static int active_path;
static char note[160];
static pthread_once_t once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__)
static unsigned long long xgetbv0(void) {
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}
#endif

static void detect(void) {
    supported[NK_PATH_PORTABLE] = 1;
#if defined(__x86_64__)
    unsigned int a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        const int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
        if (osxsave && avx && fma) {
            const unsigned long long xcr0 = xgetbv0();
            const int os_ymm = (xcr0 & 0x6) == 0x6;     /* SSE and AVX state */
            const int os_zmm = (xcr0 & 0xE6) == 0xE6;   /* plus opmask and both ZMM halves */
            if (__get_cpuid_max(0, 0) >= 7) {
                __cpuid_count(7, 0, a, b, c, d);
                const int avx2 = (b >> 5) & 1;
                const int avx512 = ((b >> 16) & 1) && ((b >> 17) & 1) && ((b >> 30) & 1) && ((b >> 31) & 1);
                supported[NK_PATH_AVX2] = os_ymm && avx2;
                supported[NK_PATH_AVX512] = os_ymm && os_zmm && avx2 && avx512;
            }
        }
    }
#endif
    best_path = NK_PATH_PORTABLE;
    for (int p = 0; p < NK_PATH_COUNT; p++)
        if (supported[p]) best_path = p;
}

static void init(void) {
    detect();
    int path = best_path;
    const char *want = getenv("NECO_CPU");
    if (want && *want) {
        int asked = -1;
        for (int p = 0; p < NK_PATH_COUNT; p++)
            if (strcmp(want, nk_cpu_path_name(p)) == 0) asked = p;
        if (strcmp(want, "portable") == 0 || strcmp(want, "neon") == 0) asked = NK_PATH_PORTABLE;
        if (asked < 0) {
            snprintf(note, sizeof note, "neco: NECO_CPU=%.40s is not one of portable, avx2, avx512; using %s",
                     want, nk_cpu_path_name(best_path));
        } else {
            path = asked;
            while (!supported[path]) path--;
            if (path != asked)
                snprintf(note, sizeof note, "neco: NECO_CPU=%s is not supported by this CPU; using %s",
                         nk_cpu_path_name(asked), nk_cpu_path_name(path));
        }
        if (note[0]) fprintf(stderr, "%s\n", note);
    }
    active_path = path;
    active = &tables[path];
}

static inline const nk_table *T(void) {
    pthread_once(&once, init);
    return active;
}

int nk_cpu_path(void) { T(); return active_path; }
int nk_cpu_best(void) { T(); return best_path; }
int nk_cpu_supported(int path) { T(); return path >= 0 && path < NK_PATH_COUNT && supported[path]; }
const char *nk_cpu_note(void) { T(); return note; }

int nk_cpu_set_path(int path) {
    if (!nk_cpu_supported(path)) return -1;
    active_path = path;
    active = &tables[path];
    return 0;
}

const char *nk_cpu_path_name(int path) {
    switch (path) {
#if defined(__aarch64__)
    case NK_PATH_PORTABLE: return "neon";
#else
    case NK_PATH_PORTABLE: return "portable";
#endif
    case NK_PATH_AVX2: return "avx2";
    case NK_PATH_AVX512: return "avx512";
    default: return "?";
    }
}

void nk_exp(float *y, const float *x, long n) { T()->exp(y, x, n); }
void nk_gelu(float *y, const float *x, long n) { T()->gelu(y, x, n); }
void nk_gelu_backward(float *dx, const float *dy, const float *x, long n) { T()->gelu_backward(dx, dy, x, n); }
void nk_gelu_grad_rows(float *g, const float *x, long rows, long cols, float *colsum) {
    T()->gelu_grad_rows(g, x, rows, cols, colsum);
}
void nk_softmax_rows(float *x, long rows, long cols, float scale) { T()->softmax_rows(x, rows, cols, scale); }
void nk_softmax_backward_rows(float *dx, const float *dy, const float *y, long rows, long cols, float scale,
                              int accumulate) {
    T()->softmax_backward_rows(dx, dy, y, rows, cols, scale, accumulate);
}
void nk_layernorm_rows(float *out, float *mean, float *rstd, const float *x, const float *w, const float *b,
                       long rows, long dim, float eps) {
    T()->layernorm_rows(out, mean, rstd, x, w, b, rows, dim, eps);
}
void nk_layernorm_backward_rows(float *dx, const float *dy, const float *x, const float *w, const float *mean,
                                const float *rstd, long rows, long dim) {
    T()->layernorm_backward_rows(dx, dy, x, w, mean, rstd, rows, dim);
}
void nk_swiglu_rows(float *hidden, const float *gates, long rows, long h) { T()->swiglu_rows(hidden, gates, rows, h); }
void nk_swiglu_backward_rows(float *dgates, const float *dhidden, const float *gates, long rows, long h) {
    T()->swiglu_backward_rows(dgates, dhidden, gates, rows, h);
}
long nk_gemm_rows_per_tile(void) { return T()->gemm_rows_per_tile(); }
void nk_gemm_packed_active(float *out, long ldc, const float *a, long lda, const float *wp, const float *bias, long m,
                           long n, long k, int epilogue, const float *residual, long ldr, const float *gamma,
                           float *scratch) {
    T()->gemm_packed(out, ldc, a, lda, wp, bias, m, n, k, epilogue, residual, ldr, gamma, scratch);
}
void nk_gemm_tn_active(float *out, long ldc, const float *a, long lda, const float *b, long ldb, long m, long n,
                       long k, int accumulate, float *scratch_a, float *scratch_b) {
    T()->gemm_tn(out, ldc, a, lda, b, ldb, m, n, k, accumulate, scratch_a, scratch_b);
}
void nk_attention_head(float *out, long ldo, const float *q, const float *k, const float *v, long ld, long t, long e,
                       float scale, float *probs, long ldp, float *scratch) {
    T()->attention_head(out, ldo, q, k, v, ld, t, e, scale, probs, ldp, scratch);
}
void nk_attention_head_backward(float *dq, float *dk, float *dv, long ldd, const float *dout, long ldo,
                                const float *q, const float *k, const float *v, long ldx, const float *probs, long t,
                                long e, float scale, float *scratch) {
    T()->attention_head_backward(dq, dk, dv, ldd, dout, ldo, q, k, v, ldx, probs, t, e, scale, scratch);
}
void nk_attention_head_backward_recompute(float *dq, float *dk, float *dv, long ldd, const float *dout, long ldo,
                                          const float *q, const float *k, const float *v, long ldx, float *heads,
                                          long ldh, long t, long e, float scale, float *scratch) {
    T()->attention_head_backward_recompute(dq, dk, dv, ldd, dout, ldo, q, k, v, ldx, heads, ldh, t, e, scale, scratch);
}
double nk_fma_probe(int path, long iterations) {
    if (!nk_cpu_supported(path)) return 0;
    return tables[path].fma_probe(iterations);
}
