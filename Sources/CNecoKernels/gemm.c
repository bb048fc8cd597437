/* gemm.c: the path-independent half of the packed-weight GEMM (see gemm_body.h and nk_kernels.h):
 * packing the weights, one scratch buffer per thread for the packed activation block, and the
 * scratch size of the attention kernel built on it (attention_body.h). */
#include "nk_kernels.h"

#include <pthread.h>
#include <stdlib.h>

long nk_gemm_packed_floats(long n, long k) {
    if (n < 0 || k < 0) return -1;
    const long panels = (n + NK_GEMM_NR - 1) / NK_GEMM_NR;
    if (k > 0 && panels > (1L << 40) / NK_GEMM_NR / k) return -1;
    return panels * NK_GEMM_NR * k;
}

void nk_gemm_pack_weights(float *dst, const float *w, long n, long k) {
    nk_gemm_pack_panels(dst, w, n, k, 0, (n + NK_GEMM_NR - 1) / NK_GEMM_NR, 0);
}

void nk_gemm_pack_panels(float *dst, const float *w, long n, long k, long first, long end, int transposed) {
    for (long j0 = first * NK_GEMM_NR; j0 < end * NK_GEMM_NR && j0 < n; j0 += NK_GEMM_NR) {
        float *panel = dst + j0 * k;
        const long nw = n - j0 < NK_GEMM_NR ? n - j0 : NK_GEMM_NR;
        if (transposed) {
            /* Row p of the panel is w[p, j0 ..< j0 + nw]: one contiguous run of w. */
            for (long p = 0; p < k; p++) {
                const float *src = w + p * n + j0;
                long r = 0;
                for (; r < nw; r++) panel[p * NK_GEMM_NR + r] = src[r];
                for (; r < NK_GEMM_NR; r++) panel[p * NK_GEMM_NR + r] = 0;
            }
        } else {
            for (long p = 0; p < k; p++) {
                long r = 0;
                for (; r < nw; r++) panel[p * NK_GEMM_NR + r] = w[(j0 + r) * k + p];
                for (; r < NK_GEMM_NR; r++) panel[p * NK_GEMM_NR + r] = 0;
            }
        }
    }
}

void nk_gemm_unpack_weights(float *w, const float *src, long n, long k) {
    for (long j0 = 0; j0 < n; j0 += NK_GEMM_NR) {
        const float *panel = src + j0 * k;
        const long nw = n - j0 < NK_GEMM_NR ? n - j0 : NK_GEMM_NR;
        for (long p = 0; p < k; p++)
            for (long r = 0; r < nw; r++) w[(j0 + r) * k + p] = panel[p * NK_GEMM_NR + r];
    }
}

long nk_attention_scratch_floats(long t, long e) {
    if (t < 0 || e < 0 || t > (1L << 30) || e > (1L << 20)) return -1;
    /* Keys rounded up to whole slivers of the widest path's tile, values in whole 16-channel
     * panels (attention_body.h's layout). */
    const long kr = t + NK_GEMM_MR_MAX - 1;
    const long e16 = (e + NK_GEMM_NR - 1) / NK_GEMM_NR * NK_GEMM_NR;
    return kr * e + t * e16 + kr * NK_GEMM_NR + e * NK_GEMM_NR + NK_GEMM_NR;
}

long nk_attention_backward_scratch_floats(long t, long e) {
    if (t < 0 || e < 0 || t > (1L << 20) || e > (1L << 20)) return -1;
    const long e16 = (e + NK_GEMM_NR - 1) / NK_GEMM_NR * NK_GEMM_NR;
    const long t16 = (t + NK_GEMM_NR - 1) / NK_GEMM_NR * NK_GEMM_NR;
    return t * t + 3 * t * e16 + t16 * e + t * NK_GEMM_MR_MAX + NK_GEMM_NR;
}

long nk_attention_recompute_backward_scratch_floats(long t, long e) {
    const long forward = nk_attention_scratch_floats(t, e);
    if (forward < 0 || t > (1L << 24)) return -1;
    const long e16 = (e + NK_GEMM_NR - 1) / NK_GEMM_NR * NK_GEMM_NR;
    const long t16 = (t + NK_GEMM_NR - 1) / NK_GEMM_NR * NK_GEMM_NR;
    /* the forward's, k's panels, vᵀ's panels, a strip's P and dS, its dO and q panels, a sliver */
    return forward + t * e16 + t16 * e + 2 * NK_ATTENTION_STRIP * t + 2 * NK_ATTENTION_STRIP * e16 +
           NK_ATTENTION_STRIP * NK_GEMM_MR_MAX + NK_GEMM_NR;
}

/* Per thread: the packed row block of a (NK_GEMM_SCRATCH_A), then nk_gemm_tn's packed block of b,
 * (KC, NC), which only nk_gemm_tn touches (untouched pages cost no memory). */
#define NK_GEMM_SCRATCH_TOTAL (NK_GEMM_SCRATCH_A + NK_GEMM_KC * NK_GEMM_NC)

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static __thread float *scratch;

static void scratch_key_init(void) { pthread_key_create(&scratch_key, free); }

/* This thread's scratch, allocated on first use and freed when the thread exits; NULL when out of memory. */
static float *thread_scratch(void) {
    if (scratch) return scratch;
    pthread_once(&scratch_once, scratch_key_init);
    void *p = NULL;
    if (posix_memalign(&p, 64, NK_GEMM_SCRATCH_TOTAL * sizeof(float)) != 0) return NULL;
    scratch = p;
    pthread_setspecific(scratch_key, p);
    return scratch;
}

void nk_gemm_linear(float *out, long ldc, const float *a, long lda, const float *wp, const float *bias, long m, long n,
                    long k, int epilogue, const float *residual, long ldr, const float *gamma) {
    nk_gemm_packed_active(out, ldc, a, lda, wp, bias, m, n, k, epilogue, residual, ldr, gamma, thread_scratch());
}

int nk_gemm_tn(float *out, long ldc, const float *a, long lda, const float *b, long ldb, long m, long n, long k,
               int accumulate) {
    float *s = thread_scratch();
    if (!s) return -1;
    nk_gemm_tn_active(out, ldc, a, lda, b, ldb, m, n, k, accumulate, s, s + NK_GEMM_SCRATCH_A);
    return 0;
}
