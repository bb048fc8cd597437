/* gemm_probe.c: would a GEMM micro-kernel of libneco's own beat OpenBLAS on ViT-S/14's shapes?
 *
 * Measures, on the calling machine, y (M, N) = x (M, K) · Wᵀ (W: (N, K), PyTorch Linear layout):
 *   openblas    cblas_sgemm, one call per thread on an equal column share (libneco's Gemm split);
 *   own/call    an AVX-512 14×32 register-blocked kernel (28 zmm accumulators, K blocked by 192),
 *               activations packed once and shared, each thread packing its weight panels per call;
 *   own/packed  the same kernel on weights packed once beforehand (what "weights packed at load
 *               time" would buy, at the price of a second copy of every weight: +84 MB for ViT-S).
 * Each figure is the best of REPEATS runs, in GFLOP/s of the true M × N × K (the own kernel also
 * computes the padding rows up to a multiple of 14, so it is charged slightly more work). Results
 * are checked against OpenBLAS. Build and run: scripts/gemm_probe.sh [THREADS] [REPEATS].
 * Not part of the library: it is the measurement behind the README's "Compute engine" section.
 */
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <cblas.h>

enum { MR = 14, NR = 32, KC = 192, MAXT = 16 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* One (kc, NR) panel of W rows j0 ..< j0+NR, columns k0 ..< k0+kc: buf[k][j] (zero past N). */
static void pack_w(float *buf, const float *w, int n, int k, int j0, int k0, int kc) {
    for (int j = 0; j < NR; j++) {
        const float *row = w + (size_t)(j0 + j) * k + k0;
        for (int kk = 0; kk < kc; kk++) buf[kk * NR + j] = j0 + j < n ? row[kk] : 0;
    }
}

/* Row panels i0 ..< i1 of x (MR rows each, zero past M): q[i][k][r]. */
static void pack_x(float *q, const float *x, int m, int k, int i0, int i1) {
    for (int i = i0; i < i1; i++)
        for (int r = 0; r < MR; r++) {
            const int row = i * MR + r;
            float *dst = q + (size_t)i * k * MR + r;
            for (int kk = 0; kk < k; kk++) dst[kk * MR] = row < m ? x[(size_t)row * k + kk] : 0;
        }
}

/* c (MR, NR) (+)= a (kc, MR)ᵀ · b (kc, NR). */
__attribute__((target("avx512f"))) static void kernel(int kc, const float *a, const float *b, float *c, int ldc,
                                                      int first) {
    __m512 c0[MR], c1[MR];
    for (int r = 0; r < MR; r++) {
        c0[r] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(c + r * ldc);
        c1[r] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(c + r * ldc + 16);
    }
    for (int kk = 0; kk < kc; kk++) {
        const __m512 b0 = _mm512_loadu_ps(b + kk * NR), b1 = _mm512_loadu_ps(b + kk * NR + 16);
#pragma unroll
        for (int r = 0; r < MR; r++) {
            const __m512 av = _mm512_set1_ps(a[kk * MR + r]);
            c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
            c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
        }
    }
    for (int r = 0; r < MR; r++) {
        _mm512_storeu_ps(c + r * ldc, c0[r]);
        _mm512_storeu_ps(c + r * ldc + 16, c1[r]);
    }
}

typedef struct {
    int m, n, k, t, threads;
    const float *x, *w, *packed; /* packed: weights packed once, or NULL to pack per call */
    float *y, *q;                /* y: (Mpad, Npad); q: packed activations */
    pthread_barrier_t *barrier;
} own_job;

static void *own_worker(void *arg) {
    own_job *j = arg;
    const int mp = (j->m + MR - 1) / MR, np = (j->n + NR - 1) / NR, ldc = np * NR;
    pack_x(j->q, j->x, j->m, j->k, mp * j->t / j->threads, mp * (j->t + 1) / j->threads);
    pthread_barrier_wait(j->barrier);
    float buf[KC * NR] __attribute__((aligned(64)));
    const int p0 = np * j->t / j->threads, p1 = np * (j->t + 1) / j->threads;
    for (int k0 = 0; k0 < j->k; k0 += KC) {
        const int kc = j->k - k0 < KC ? j->k - k0 : KC;
        for (int p = p0; p < p1; p++) {
            const float *b = buf;
            if (j->packed) b = j->packed + ((size_t)p * j->k + k0) * NR;
            else pack_w(buf, j->w, j->n, j->k, p * NR, k0, kc);
            for (int i = 0; i < mp; i++)
                kernel(kc, j->q + (size_t)i * j->k * MR + (size_t)k0 * MR, b, j->y + (size_t)i * MR * ldc + p * NR, ldc,
                       k0 == 0);
        }
    }
    return NULL;
}

typedef struct {
    int m, n, k, j0, j1;
    const float *x, *w;
    float *y;
} blas_job;

static void *blas_worker(void *arg) {
    blas_job *b = arg;
    if (b->j1 > b->j0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b->m, b->j1 - b->j0, b->k, 1, b->x, b->k,
                    b->w + (size_t)b->j0 * b->k, b->k, 0, b->y + b->j0, b->n);
    return NULL;
}

static double run_blas(int threads, int m, int n, int k, const float *x, const float *w, float *y) {
    pthread_t th[MAXT];
    blas_job jobs[MAXT];
    const int share = ((n + threads - 1) / threads + 15) / 16 * 16;
    const double t = now();
    for (int i = 0; i < threads; i++) {
        const int j0 = i * share < n ? i * share : n, j1 = (i + 1) * share < n ? (i + 1) * share : n;
        jobs[i] = (blas_job){m, n, k, j0, j1, x, w, y};
        pthread_create(&th[i], NULL, blas_worker, &jobs[i]);
    }
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    return now() - t;
}

static double run_own(int threads, int m, int n, int k, const float *x, const float *w, const float *packed,
                      float *y, float *q) {
    pthread_t th[MAXT];
    own_job jobs[MAXT];
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)threads);
    const double t = now();
    for (int i = 0; i < threads; i++) {
        jobs[i] = (own_job){m, n, k, i, threads, x, w, packed, y, q, &barrier};
        pthread_create(&th[i], NULL, own_worker, &jobs[i]);
    }
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    const double dt = now() - t;
    pthread_barrier_destroy(&barrier);
    return dt;
}

int main(int argc, char **argv) {
    const int threads = argc > 1 ? atoi(argv[1]) : 2, repeats = argc > 2 ? atoi(argv[2]) : 9;
    if (threads < 1 || threads > MAXT || repeats < 1) {
        fprintf(stderr, "usage: gemm_probe [THREADS 1..%d] [REPEATS]\n", MAXT);
        return 2;
    }
    if (!__builtin_cpu_supports("avx512f")) {
        printf("this CPU has no AVX-512: the probe's kernel cannot run here\n");
        return 0;
    }
    /* ViT-S/14 + 4 registers at 224: 261 tokens per image; batch 1 and 8. */
    static const struct { const char *name; int m, n, k; } shapes[] = {
        {"qkv   b1", 261, 1152, 384},  {"proj  b1", 261, 384, 384},  {"fc1   b1", 261, 1536, 384},
        {"fc2   b1", 261, 384, 1536},  {"qkv   b8", 2088, 1152, 384}, {"fc1   b8", 2088, 1536, 384},
        {"fc2   b8", 2088, 384, 1536},
    };
    printf("threads %d, best of %d; GFLOP/s (own / OpenBLAS in brackets)\n", threads, repeats);
    printf("%-9s %6s %6s %6s  %9s  %16s  %16s  %s\n", "shape", "M", "N", "K", "OpenBLAS", "own, pack/call", "own, prepacked",
           "max |diff|");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int m = shapes[s].m, n = shapes[s].n, k = shapes[s].k;
        const int mpad = (m + MR - 1) / MR * MR, npad = (n + NR - 1) / NR * NR;
        float *x = malloc(sizeof(float) * (size_t)m * k), *w = malloc(sizeof(float) * (size_t)n * k);
        float *y = malloc(sizeof(float) * (size_t)m * n), *y2 = malloc(sizeof(float) * (size_t)mpad * npad);
        float *q = malloc(sizeof(float) * (size_t)mpad * k), *packed = malloc(sizeof(float) * (size_t)npad * k);
        if (!x || !w || !y || !y2 || !q || !packed) return 1;
        unsigned seed = 1;
        for (size_t i = 0; i < (size_t)m * k; i++) x[i] = (float)((double)rand_r(&seed) / RAND_MAX - 0.5);
        for (size_t i = 0; i < (size_t)n * k; i++) w[i] = (float)((double)rand_r(&seed) / RAND_MAX - 0.5);
        for (int p = 0; p < npad / NR; p++)
            for (int k0 = 0; k0 < k; k0 += KC) pack_w(packed + ((size_t)p * k + k0) * NR, w, n, k, p * NR, k0, k - k0 < KC ? k - k0 : KC);
        double best[3] = {1e9, 1e9, 1e9};
        for (int r = 0; r < repeats; r++) { /* interleaved */
            double t = run_blas(threads, m, n, k, x, w, y);
            if (t < best[0]) best[0] = t;
            t = run_own(threads, m, n, k, x, w, NULL, y2, q);
            if (t < best[1]) best[1] = t;
            t = run_own(threads, m, n, k, x, w, packed, y2, q);
            if (t < best[2]) best[2] = t;
        }
        double diff = 0;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) diff = fmax(diff, fabs((double)y[(size_t)i * n + j] - y2[(size_t)i * npad + j]));
        const double flop = 2.0 * m * n * k;
        printf("%-9s %6d %6d %6d  %9.1f  %8.1f (%.2f×)  %8.1f (%.2f×)  %.1e\n", shapes[s].name, m, n, k, flop / best[0] / 1e9,
               flop / best[1] / 1e9, best[0] / best[1], flop / best[2] / 1e9, best[0] / best[2], diff);
        free(x), free(w), free(y), free(y2), free(q), free(packed);
    }
    return 0;
}
