/* kernel_bench.c: single-thread timings of CNecoKernels' attention and Linear kernels on every
 * kernel path this CPU has, the Linear products next to OpenBLAS (single-threaded), built and run
 * by `scripts/check-kernels.sh --bench`. Contenders take turns within each repetition and each
 * keeps its best time, so a slow spell of the machine hits all of them alike. Figures, not
 * pass/fail.
 *
 *     kernel_bench [attention|gemm] [repetitions]
 *
 * attention: one (image, head) pair, T = 261 tokens, E = 64 channels, q, k, v in fused rows of
 *   3 · D floats for D = 384 (ViT-S) and D = 1024 (ViT-L, rows 4 KiB apart): the forward without
 *   and with the probabilities (training's recompute), and the backward from them (the four
 *   products and the softmax backward). GFLOP/s count 4·T²·E per forward and 8·T²·E per backward.
 * gemm: out = a · Wᵀ + bias on weights packed beforehand (ViT-S's batch-1 products, with fc1's GELU
 *   epilogue and fc2's residual, a NeCo head's 2048-wide layers at 1024 rows, narrow products
 *   whose rows are 4 KiB apart, and the patch embedding's 588 → 384 at one and sixteen images'
 *   patches), against cblas_sgemm on the same operands.
 */
#include "nk_kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* OpenBLAS's CBLAS entry point and thread switch (libopenblas), declared here so that no
 * distribution-specific include path is needed. */
void cblas_sgemm(int order, int transa, int transb, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc);
void openblas_set_num_threads(int threads);
enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static float *filled(long n, unsigned seed) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!p) { fprintf(stderr, "kernel_bench: out of memory\n"); exit(2); }
    for (long i = 0; i < n; i++) p[i] = (float)((i * 2654435761u + seed) % 2001) / 1000.0f - 1.0f;
    return p;
}

static int paths[NK_PATH_COUNT], npaths;

static void bench_attention(int reps) {
    const long t = 261, e = 64, dims[] = {384, 1024};
    printf("attention, one (image, head) pair, T = %ld, E = %ld, best of %d (single thread)\n", t, e, reps);
    printf("%-8s %-6s %14s %14s %14s\n", "path", "D", "forward", "+ probs", "backward");
    for (int di = 0; di < 2; di++) {
        const long d = dims[di], ld = 3 * d;
        float *qkv = filled(t * ld, 1), *dout = filled(t * e, 2), *grad = filled(t * ld, 3);
        float *out = filled(t * e, 0), *probs = filled(t * t, 0);
        const long ns = nk_attention_scratch_floats(t, e), nb = nk_attention_backward_scratch_floats(t, e);
        float *scratch = filled(ns > nb ? ns : nb, 0);
        double best[NK_PATH_COUNT][3];
        for (int p = 0; p < npaths; p++) best[p][0] = best[p][1] = best[p][2] = 1e30;
        for (int r = 0; r < reps; r++)
            for (int p = 0; p < npaths; p++) {
                nk_cpu_set_path(paths[p]);
                /* Gradients accumulate into grad: reset it now and then so that it stays finite. */
                if (r % 64 == 0) memset(grad, 0, (size_t)(t * ld) * sizeof(float));
                double t0 = now();
                nk_attention_head(out, e, qkv, qkv + d, qkv + 2 * d, ld, t, e, 0.125f, NULL, 0, scratch);
                double t1 = now();
                nk_attention_head(out, e, qkv, qkv + d, qkv + 2 * d, ld, t, e, 0.125f, probs, t, scratch);
                double t2 = now();
                nk_attention_head_backward(grad, grad + d, grad + 2 * d, ld, dout, e, qkv, qkv + d, qkv + 2 * d, ld, probs,
                                           t, e, 0.125f, scratch);
                double t3 = now();
                if (t1 - t0 < best[p][0]) best[p][0] = t1 - t0;
                if (t2 - t1 < best[p][1]) best[p][1] = t2 - t1;
                if (t3 - t2 < best[p][2]) best[p][2] = t3 - t2;
            }
        const double f = 4.0 * t * t * e / 1e9;
        for (int p = 0; p < npaths; p++)
            printf("%-8s %-6ld %6.1f us %4.0f  %6.1f us %4.0f  %6.1f us %4.0f   (us, GFLOP/s)\n",
                   nk_cpu_path_name(paths[p]), d, best[p][0] * 1e6, f / best[p][0], best[p][1] * 1e6, f / best[p][1],
                   best[p][2] * 1e6, 2 * f / best[p][2]);
        free(qkv); free(dout); free(grad); free(out); free(probs); free(scratch);
    }
}

static void bench_gemm(int reps) {
    static const struct { const char *name; long m, n, k; int epi; } shapes[] = {
        {"ViT-S fc1 + GELU, batch 1", 261, 1536, 384, NK_GEMM_GELU},
        {"ViT-S fc2 + residual", 261, 384, 1536, NK_GEMM_RESIDUAL},
        {"ViT-S qkv", 261, 1152, 384, NK_GEMM_NONE},
        {"ViT-S proj", 261, 384, 384, NK_GEMM_NONE},
        {"NeCo head 384 -> 2048", 1024, 2048, 384, NK_GEMM_NONE},
        {"NeCo head 2048 -> 2048", 1024, 2048, 2048, NK_GEMM_NONE},
        {"NeCo head 2048 -> 256", 1024, 256, 2048, NK_GEMM_NONE},
        {"narrow, rows 4 KiB apart", 1024, 384, 1024, NK_GEMM_NONE},
        {"patch embedding, 1 image", 256, 384, 588, NK_GEMM_NONE},
        {"patch embedding, 16 images", 4096, 384, 588, NK_GEMM_NONE},
    };
    const int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    openblas_set_num_threads(1);
    printf("\nLinear products out = a · Wᵀ + bias, weights packed beforehand, best of %d (single thread)\n", reps);
    printf("%-26s %-16s", "product", "m x n x k");
    for (int p = 0; p < npaths; p++) printf(" %8s", nk_cpu_path_name(paths[p]));
    printf(" %8s   (GFLOP/s)\n", "OpenBLAS");
    for (int s = 0; s < nshapes; s++) {
        const long m = shapes[s].m, n = shapes[s].n, k = shapes[s].k;
        float *a = filled(m * k, 4), *w = filled(n * k, 5), *bias = filled(n, 6), *res = filled(m * n, 7);
        float *out = filled(m * n, 0), *wp = filled(nk_gemm_packed_floats(n, k), 0);
        nk_gemm_pack_weights(wp, w, n, k);
        double best[NK_PATH_COUNT + 1];
        for (int p = 0; p <= npaths; p++) best[p] = 1e30;
        for (int r = 0; r < reps; r++)
            for (int p = 0; p <= npaths; p++) {
                double t0 = now();
                if (p < npaths) {
                    nk_cpu_set_path(paths[p]);
                    nk_gemm_linear(out, n, a, k, wp, bias, m, n, k, shapes[s].epi,
                                   shapes[s].epi == NK_GEMM_RESIDUAL ? res : NULL, n, NULL);
                } else {
                    cblas_sgemm(ROW_MAJOR, NO_TRANS, TRANS, (int)m, (int)n, (int)k, 1, a, (int)k, w, (int)k, 0, out, (int)n);
                }
                double dt = now() - t0;
                if (dt < best[p]) best[p] = dt;
            }
        char dims[32];
        snprintf(dims, sizeof dims, "%ldx%ldx%ld", m, n, k);
        printf("%-26s %-16s", shapes[s].name, dims);
        for (int p = 0; p <= npaths; p++) printf(" %8.1f", 2.0 * m * n * k / best[p] / 1e9);
        printf("\n");
        free(a); free(w); free(bias); free(res); free(out); free(wp);
    }
    printf("(OpenBLAS computes the product alone: no bias, GELU or residual)\n");
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "all";
    const int reps = argc > 2 ? atoi(argv[2]) : 0;
    if (strcmp(what, "all") != 0 && strcmp(what, "attention") != 0 && strcmp(what, "gemm") != 0) {
        fprintf(stderr, "usage: kernel_bench [all|attention|gemm] [repetitions]\n");
        return 2;
    }
    for (int p = 0; p < NK_PATH_COUNT; p++)
        if (nk_cpu_supported(p)) paths[npaths++] = p;
    const int initial = nk_cpu_path();
    if (strcmp(what, "gemm") != 0) bench_attention(reps > 0 ? reps : 1000);
    if (strcmp(what, "attention") != 0) bench_gemm(reps > 0 ? reps : 20);
    nk_cpu_set_path(initial);
    return 0;
}
