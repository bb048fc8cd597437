/* kernel_check.c: every kernel of CNecoKernels on every kernel path this machine runs, against
 * textbook references in double, with neither Swift nor OpenBLAS.
 *
 * scripts/check-kernels.sh builds it twice from the library's own kernel sources: natively (on
 * x86-64 it runs the portable, AVX2 and AVX-512 paths the CPU has) and for arm64, run under
 * qemu-aarch64, so that the NEON path, which no machine here runs natively and the Swift suites
 * cannot reach, is checked by the same numbers. The tolerances are the Swift tests' (CPUPathTests,
 * PackedGemmTests, AttentionKernelTests, AttentionBackwardTests), with the same names, and their
 * comments there give the reasons; the shapes are those tests' edge shapes or of the same kind
 * (sizes of 1, primes, not multiples of a tile or a vector, ViT-S's). A failure prints the case
 * and exits 1.
 *
 *     kernel_check            every path this CPU supports
 *     kernel_check PATH       one path (portable, neon, avx2 or avx512)
 */
#include "nk_kernels.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* CPUPathTests: exp's polynomial ≤ 2e-7 relative plus one rounding; erf (A&S 7.1.26) 1.5e-7
 * absolute times |x|/2 ≤ 4; row sums of ≤ 1031 float terms of size ≤ ~10 against double. */
static const double exp_rtol = 3e-7, gelu_atol = 1e-6, row_rtol = 1e-5, row_atol = 2e-6;
/* PackedGemmTests: products of values in [-1, 1] summed over K ≤ 769 terms in float. */
static const double gemm_atol = 6e-5, gemm_rtol = 1e-5;
/* AttentionKernelTests: heads (convex combinations of v rows) and probabilities. */
static const double att_out_atol = 2e-6, att_prob_atol = 1e-6;
/* AttentionBackwardTests: dQ, dK, dV. */
static const double att_grad_atol = 1e-6;

static int failures, checks;
/* The largest error of the current path as a fraction of its bound, and the check it came from. */
static double worst_ratio;
static char worst_case[160];

/* SplitMix64 → uniform [-1, 1), as the Swift tests' TestRNG. */
static uint64_t rng_state;
static float uniform(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((double)(z >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}
static float *floats(long n, float scale) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!p) { fprintf(stderr, "out of memory\n"); exit(2); }
    for (long i = 0; i < n; i++) p[i] = uniform() * scale;
    return p;
}
static double *doubles(long n) {
    double *p = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
    if (!p) { fprintf(stderr, "out of memory\n"); exit(2); }
    return p;
}
static float *nans(long n) {
    float *p = floats(n, 0);
    for (long i = 0; i < n; i++) p[i] = NAN;
    return p;
}

/* Every |got − want| ≤ atol + rtol · |want| (NaN fails); elements `stride` apart in rows of `cols`
 * (got row stride ldg), `rows` rows. Records the worst excess and reports a failure. */
static void close_to(const char *what, const float *got, long ldg, const double *want, long ldw, long rows, long cols,
                     double rtol, double atol) {
    double worst = 0;
    long wr = -1, wc = -1;
    for (long r = 0; r < rows; r++)
        for (long c = 0; c < cols; c++) {
            const double g = got[r * ldg + c], w = want[r * ldw + c], d = fabs(g - w), bound = atol + rtol * fabs(w);
            if (d / bound > worst_ratio) {
                worst_ratio = d / bound;
                snprintf(worst_case, sizeof worst_case, "%s, |d| %.2g", what, d);
            }
            if (!(d <= bound)) {
                if (wr < 0 || d > worst || isnan(d)) { worst = d; wr = r; wc = c; }
            }
        }
    checks++;
    if (wr >= 0) {
        failures++;
        printf("FAIL %s: at (%ld, %ld) got %.9g want %.9g (|d| %.3g > %.3g + %.3g |want|)\n", what, wr, wc,
               got[wr * ldg + wc], want[wr * ldw + wc], worst, atol, rtol);
    }
}

static double gelu_ref(double x) { return 0.5 * x * (1 + erf(x / sqrt(2.0))); }
static double gelu_grad_ref(double x) { return 0.5 * (1 + erf(x / sqrt(2.0))) + x * exp(-0.5 * x * x) / sqrt(2 * M_PI); }

/* ---- elementwise and row kernels (CPUPathTests) ------------------------------------------------ */

static const long sizes[] = {1, 2, 3, 5, 7, 8, 9, 13, 15, 16, 17, 31, 33, 64, 97, 384, 1031};
enum { NSIZES = sizeof sizes / sizeof sizes[0] };

static void check_elementwise(const char *path) {
    char what[160];
    rng_state = 7;
    for (int s = 0; s < NSIZES; s++) {
        const long n = sizes[s];
        float *x = floats(n, 8), *dy = floats(n, 1), *xe = floats(n, 85), *dx0 = floats(n, 1);
        float *y = floats(n, 0), *dx = floats(n, 0);
        double *ref = doubles(n);
        nk_exp(y, xe, n);
        for (long i = 0; i < n; i++) ref[i] = (float)exp(xe[i] > -80 ? xe[i] : -80);
        snprintf(what, sizeof what, "%s exp n=%ld", path, n);
        close_to(what, y, 0, ref, 0, 1, n, exp_rtol, 0);

        nk_gelu(y, x, n);
        for (long i = 0; i < n; i++) ref[i] = gelu_ref(x[i]);
        snprintf(what, sizeof what, "%s gelu n=%ld", path, n);
        close_to(what, y, 0, ref, 0, 1, n, 0, gelu_atol);

        memcpy(dx, dx0, (size_t)n * sizeof(float));
        nk_gelu_backward(dx, dy, x, n);
        for (long i = 0; i < n; i++) ref[i] = (double)dx0[i] + (double)dy[i] * gelu_grad_ref(x[i]);
        snprintf(what, sizeof what, "%s gelu backward n=%ld", path, n);
        close_to(what, dx, 0, ref, 0, 1, n, 0, gelu_atol);
        free(x); free(dy); free(xe); free(dx0); free(y); free(dx); free(ref);
    }
}

static void check_rows(const char *path) {
    char what[160];
    rng_state = 11;
    for (int s = 0; s < NSIZES; s++) {
        const long cols = sizes[s], rows = cols % 3 + 2, n = rows * cols;
        float *x = floats(n, 4), *w = floats(cols, 1), *b = floats(cols, 1), *g = floats(n, 1), *d0 = floats(n, 1);
        float *out = floats(n, 0), *mean = floats(rows, 0), *rstd = floats(rows, 0), *sums = floats(cols, 0);
        double *ref = doubles(n), *ref2 = doubles(n), *sref = doubles(cols);

        /* gelu' in place with column sums */
        memcpy(out, g, (size_t)n * sizeof(float));
        for (long j = 0; j < cols; j++) sums[j] = 0.5f, sref[j] = 0.5;
        nk_gelu_grad_rows(out, x, rows, cols, sums);
        for (long i = 0; i < n; i++) ref[i] = (double)g[i] * gelu_grad_ref(x[i]), sref[i % cols] += ref[i];
        snprintf(what, sizeof what, "%s gelu grad rows n=%ld", path, cols);
        close_to(what, out, 0, ref, 0, 1, n, 0, gelu_atol);
        snprintf(what, sizeof what, "%s gelu colsum n=%ld", path, cols);
        close_to(what, sums, 0, sref, 0, 1, cols, 0, 4 * gelu_atol);

        /* softmax, then its backward accumulating and in place */
        const float scale = 0.37f;
        memcpy(out, x, (size_t)n * sizeof(float));
        nk_softmax_rows(out, rows, cols, scale);
        for (long r = 0; r < rows; r++) {
            double mx = -INFINITY, sum = 0;
            for (long j = 0; j < cols; j++) mx = fmax(mx, (double)scale * x[r * cols + j]);
            for (long j = 0; j < cols; j++) sum += exp((double)scale * x[r * cols + j] - mx);
            for (long j = 0; j < cols; j++) ref[r * cols + j] = exp((double)scale * x[r * cols + j] - mx) / sum;
        }
        snprintf(what, sizeof what, "%s softmax n=%ld", path, cols);
        close_to(what, out, 0, ref, 0, 1, n, row_rtol, row_atol);
        float *dx = floats(n, 0);
        memcpy(dx, d0, (size_t)n * sizeof(float));
        nk_softmax_backward_rows(dx, g, out, rows, cols, scale, 1);
        for (long r = 0; r < rows; r++) {
            double dot = 0;
            for (long j = 0; j < cols; j++) dot += (double)g[r * cols + j] * out[r * cols + j];
            for (long j = 0; j < cols; j++) {
                const long i = r * cols + j;
                ref2[i] = (double)scale * out[i] * ((double)g[i] - dot);
                ref[i] = (double)d0[i] + ref2[i];
            }
        }
        snprintf(what, sizeof what, "%s softmax backward n=%ld", path, cols);
        close_to(what, dx, 0, ref, 0, 1, n, row_rtol, row_atol);
        memcpy(dx, g, (size_t)n * sizeof(float));
        nk_softmax_backward_rows(dx, dx, out, rows, cols, scale, 0);
        snprintf(what, sizeof what, "%s softmax backward in place n=%ld", path, cols);
        close_to(what, dx, 0, ref2, 0, 1, n, row_rtol, row_atol);

        /* LayerNorm with statistics, and its backward */
        const float eps = 1e-6f;
        nk_layernorm_rows(out, mean, rstd, x, w, b, rows, cols, eps);
        for (long r = 0; r < rows; r++) {
            double mu = 0, v = 0, md = 0, mdx = 0;
            for (long j = 0; j < cols; j++) mu += x[r * cols + j];
            mu /= cols;
            for (long j = 0; j < cols; j++) v += (x[r * cols + j] - mu) * (x[r * cols + j] - mu);
            const double rs = 1 / sqrt(v / cols + eps);
            for (long j = 0; j < cols; j++) {
                const double xh = (x[r * cols + j] - mu) * rs, dxh = (double)g[r * cols + j] * w[j];
                md += dxh, mdx += dxh * xh;
            }
            md /= cols, mdx /= cols;
            for (long j = 0; j < cols; j++) {
                const double xh = (x[r * cols + j] - mu) * rs, dxh = (double)g[r * cols + j] * w[j];
                ref[r * cols + j] = xh * w[j] + b[j];
                ref2[r * cols + j] = rs * (dxh - md - xh * mdx);
            }
            checks++;
            if (!(fabs(mean[r] - mu) <= 1e-6 && fabs(rstd[r] - rs) <= 1e-5 * rs)) {
                failures++;
                printf("FAIL %s layernorm statistics n=%ld row %ld: mean %.9g (%.9g), rstd %.9g (%.9g)\n", path, cols, r,
                       mean[r], mu, rstd[r], rs);
            }
        }
        snprintf(what, sizeof what, "%s layernorm n=%ld", path, cols);
        close_to(what, out, 0, ref, 0, 1, n, row_rtol, row_atol);
        memset(dx, 0, (size_t)n * sizeof(float));
        nk_layernorm_backward_rows(dx, g, x, w, mean, rstd, rows, cols);
        snprintf(what, sizeof what, "%s layernorm backward n=%ld", path, cols);
        close_to(what, dx, 0, ref2, 0, 1, n, row_rtol, row_atol);

        /* SwiGLU gating (gates (rows, 2h), h = cols) and its backward */
        float *gates = floats(2 * n, 4), *dg0 = floats(2 * n, 1), *dg = floats(2 * n, 0);
        double *gref = doubles(2 * n);
        nk_swiglu_rows(out, gates, rows, cols);
        for (long r = 0; r < rows; r++)
            for (long j = 0; j < cols; j++) {
                const double a = gates[r * 2 * cols + j], u = gates[r * 2 * cols + cols + j], sg = 1 / (1 + exp(-a));
                const double dh = g[r * cols + j];
                ref[r * cols + j] = a * sg * u;
                gref[r * 2 * cols + j] = dg0[r * 2 * cols + j] + dh * u * sg * (1 + a * (1 - sg));
                gref[r * 2 * cols + cols + j] = dg0[r * 2 * cols + cols + j] + dh * a * sg;
            }
        snprintf(what, sizeof what, "%s swiglu n=%ld", path, cols);
        close_to(what, out, 0, ref, 0, 1, n, row_rtol, row_atol);
        memcpy(dg, dg0, (size_t)(2 * n) * sizeof(float));
        nk_swiglu_backward_rows(dg, g, gates, rows, cols);
        snprintf(what, sizeof what, "%s swiglu backward n=%ld", path, cols);
        close_to(what, dg, 0, gref, 0, 1, 2 * n, row_rtol, row_atol);

        free(x); free(w); free(b); free(g); free(d0); free(out); free(mean); free(rstd); free(sums); free(dx);
        free(ref); free(ref2); free(sref); free(gates); free(dg0); free(dg); free(gref);
    }
}

/* ---- the packed GEMM and the weight-gradient GEMM (PackedGemmTests) ---------------------------- */

/* m, n, k, and a's row stride when not k */
static const long gemm_shapes[][4] = {
    {1, 1, 1}, {1, 16, 1}, {2, 17, 3}, {3, 5, 7}, {13, 31, 2}, {14, 16, 384}, {15, 33, 385},
    {29, 47, 97}, {97, 131, 769}, {261, 48, 384}, {6, 1, 13}, {43, 15, 768}, {170, 800, 40},
    {40, 20, 97, 1024}, {30, 256, 384, 2048}, /* narrow, a's rows 4 KiB apart: a is packed */
};
enum { NGEMM = sizeof gemm_shapes / sizeof gemm_shapes[0] };

static void check_gemm(const char *path) {
    char what[160];
    rng_state = 13;
    for (int s = 0; s < NGEMM; s++) {
        const long m = gemm_shapes[s][0], n = gemm_shapes[s][1], k = gemm_shapes[s][2], ldc = n + 3;
        const long lda = gemm_shapes[s][3] ? gemm_shapes[s][3] : k;
        float *a = floats(m * lda, 1), *w = floats(n * k, 1), *bias = floats(n, 1), *res = floats(m * ldc, 1);
        float *gamma = floats(n, 1), *out = floats(m * ldc, 0);
        const long packed = nk_gemm_packed_floats(n, k);
        float *wp = floats(packed, 0);
        double *z = doubles(m * n), *ref = doubles(m * n);
        nk_gemm_pack_weights(wp, w, n, k);
        for (long i = 0; i < m; i++)
            for (long j = 0; j < n; j++) {
                double acc = 0;
                for (long p = 0; p < k; p++) acc += (double)a[i * lda + p] * w[j * k + p];
                z[i * n + j] = acc;
            }
        for (int epi = 0; epi < 5; epi++) {
            /* 0 no bias, 1 bias, 2 bias + GELU, 3 bias + residual with gamma, 4 bias + residual */
            const int e = epi == 2 ? NK_GEMM_GELU : epi >= 3 ? NK_GEMM_RESIDUAL : NK_GEMM_NONE;
            for (long i = 0; i < m * ldc; i++) out[i] = 7;
            nk_gemm_linear(out, ldc, a, lda, wp, epi ? bias : NULL, m, n, k, e, e == NK_GEMM_RESIDUAL ? res : NULL, ldc,
                           epi == 3 ? gamma : NULL);
            for (long i = 0; i < m; i++)
                for (long j = 0; j < n; j++) {
                    const double v = z[i * n + j] + (epi ? bias[j] : 0);
                    ref[i * n + j] = epi == 2 ? gelu_ref(v) : epi == 3 ? res[i * ldc + j] + (double)gamma[j] * v
                                   : epi == 4 ? res[i * ldc + j] + v : v;
                }
            snprintf(what, sizeof what, "%s gemm %ldx%ldx%ld epilogue %d", path, m, n, k, epi);
            close_to(what, out, ldc, ref, n, m, n, gemm_rtol, gemm_atol);
            checks++;
            for (long i = 0; i < m; i++)
                for (long j = n; j < ldc; j++)
                    if (out[i * ldc + j] != 7) {
                        failures++;
                        printf("FAIL %s: padding column %ld of row %ld written\n", what, j, i);
                        i = m;
                        break;
                    }
        }
        /* The weight gradient: out (m, n) (+)= aᵀ (k, m)ᵀ · b (k, n); here a = the GEMM's a read as (k, m). */
        float *bt = floats(k * n, 1);
        for (int acc = 0; acc < 2; acc++) {
            for (long i = 0; i < m * ldc; i++) out[i] = res[i];
            if (nk_gemm_tn(out, ldc, a, m, bt, n, m, n, k, acc) != 0) {
                failures++;
                printf("FAIL %s gemm_tn: scratch not allocated\n", path);
                continue;
            }
            for (long i = 0; i < m; i++)
                for (long j = 0; j < n; j++) {
                    double v = acc ? res[i * ldc + j] : 0;
                    for (long p = 0; p < k; p++) v += (double)a[p * m + i] * bt[p * n + j];
                    ref[i * n + j] = v;
                }
            snprintf(what, sizeof what, "%s gemm_tn %ldx%ldx%ld accumulate %d", path, m, n, k, acc);
            close_to(what, out, ldc, ref, n, m, n, gemm_rtol, gemm_atol);
        }
        free(a); free(w); free(bias); free(res); free(gamma); free(out); free(wp); free(z); free(ref); free(bt);
    }
}

/* ---- attention, forward and backward (AttentionKernelTests, AttentionBackwardTests) ---------- */

static const long att_shapes[][2] = {{1, 1}, {2, 1}, {5, 3}, {13, 7}, {16, 16}, {17, 64}, {31, 5}, {47, 64}, {65, 5},
                                     {129, 16}, {261, 64}};
enum { NATT = sizeof att_shapes / sizeof att_shapes[0] };

static void check_attention(const char *path) {
    char what[160];
    rng_state = 17;
    for (int s = 0; s < NATT; s++) {
        const long t = att_shapes[s][0], e = att_shapes[s][1], ld = 3 * e + 1, ldo = e + 2;
        const float scale = (float)(1 / sqrt((double)e));
        float *qkv = floats(t * ld, 1), *dout = floats(t * ldo, 1), *grad0 = floats(t * ld, 1);
        const float *q = qkv, *k = qkv + e, *v = qkv + 2 * e;
        const long ns = nk_attention_scratch_floats(t, e), nb = nk_attention_backward_scratch_floats(t, e);
        const long nr = nk_attention_recompute_backward_scratch_floats(t, e);
        const long nmax = ns > nb ? (ns > nr ? ns : nr) : (nb > nr ? nb : nr);
        float *scratch = nans(nmax), *out = nans(t * ldo), *again = nans(t * ldo), *probs = nans(t * t);
        double *p = doubles(t * t), *oref = doubles(t * e), *gref = doubles(t * ld), *dp = doubles(t);

        nk_attention_head(out, ldo, q, k, v, ld, t, e, scale, NULL, 0, scratch);
        for (long i = 0; i < ns; i++) scratch[i] = NAN;
        nk_attention_head(again, ldo, q, k, v, ld, t, e, scale, probs, t, scratch);
        for (long i = 0; i < t; i++) {
            double mx = -INFINITY, sum = 0;
            for (long j = 0; j < t; j++) {
                double sc = 0;
                for (long c = 0; c < e; c++) sc += (double)q[i * ld + c] * k[j * ld + c];
                p[i * t + j] = scale * sc;
                mx = fmax(mx, p[i * t + j]);
            }
            for (long j = 0; j < t; j++) sum += (p[i * t + j] = exp(p[i * t + j] - mx));
            for (long j = 0; j < t; j++) p[i * t + j] /= sum;
            for (long c = 0; c < e; c++) {
                double o = 0;
                for (long j = 0; j < t; j++) o += p[i * t + j] * v[j * ld + c];
                oref[i * e + c] = o;
            }
        }
        snprintf(what, sizeof what, "%s attention T=%ld E=%ld heads", path, t, e);
        close_to(what, out, ldo, oref, e, t, e, 0, att_out_atol);
        snprintf(what, sizeof what, "%s attention T=%ld E=%ld probabilities", path, t, e);
        close_to(what, probs, t, p, t, t, t, 0, att_prob_atol);
        checks++;
        for (long i = 0; i < t; i++)
            if (memcmp(out + i * ldo, again + i * ldo, (size_t)e * sizeof(float)) != 0) {
                failures++;
                printf("FAIL %s attention T=%ld E=%ld: heads differ with and without probabilities\n", path, t, e);
                break;
            }

        /* Backward from the kernel's probabilities into gradients that already hold grad0. */
        float *grad = floats(t * ld, 0);
        memcpy(grad, grad0, (size_t)(t * ld) * sizeof(float));
        for (long i = 0; i < nb; i++) scratch[i] = NAN;
        nk_attention_head_backward(grad, grad + e, grad + 2 * e, ld, dout, ldo, q, k, v, ld, probs, t, e, scale, scratch);
        for (long i = 0; i < t * ld; i++) gref[i] = grad0[i];
        for (long i = 0; i < t; i++) {
            double rowdot = 0;
            for (long j = 0; j < t; j++) {
                double d = 0;
                for (long c = 0; c < e; c++) d += (double)dout[i * ldo + c] * v[j * ld + c];
                dp[j] = d;
                rowdot += d * p[i * t + j];
            }
            for (long j = 0; j < t; j++) {
                const double ds = scale * p[i * t + j] * (dp[j] - rowdot);
                for (long c = 0; c < e; c++) {
                    gref[i * ld + c] += ds * k[j * ld + c];               /* dq */
                    gref[j * ld + e + c] += ds * q[i * ld + c];           /* dk */
                    gref[j * ld + 2 * e + c] += p[i * t + j] * dout[i * ldo + c]; /* dv */
                }
            }
        }
        snprintf(what, sizeof what, "%s attention backward T=%ld E=%ld", path, t, e);
        close_to(what, grad, ld, gref, ld, t, 3 * e, 0, att_grad_atol);
        checks++;
        for (long i = 0; i < t; i++)
            if (grad[i * ld + 3 * e] != grad0[i * ld + 3 * e]) {
                failures++;
                printf("FAIL %s: the padding column of dQKV row %ld was written\n", what, i);
                break;
            }

        /* The same backward with the probabilities rebuilt in 64-query strips, the heads with them:
         * the heads and dq the bits of the forward and of the whole-matrix backward above, every
         * gradient within the same bound of the reference, the padding column untouched. */
        float *grad2 = floats(t * ld, 0), *heads = nans(t * ldo);
        memcpy(grad2, grad0, (size_t)(t * ld) * sizeof(float));
        for (long i = 0; i < nr; i++) scratch[i] = NAN;
        nk_attention_head_backward_recompute(grad2, grad2 + e, grad2 + 2 * e, ld, dout, ldo, q, k, v, ld, heads, ldo, t, e,
                                             scale, scratch);
        snprintf(what, sizeof what, "%s attention backward in strips T=%ld E=%ld", path, t, e);
        close_to(what, grad2, ld, gref, ld, t, 3 * e, 0, att_grad_atol);
        checks++;
        for (long i = 0; i < t; i++)
            if (memcmp(heads + i * ldo, out + i * ldo, (size_t)e * sizeof(float)) != 0 ||
                memcmp(grad2 + i * ld, grad + i * ld, (size_t)e * sizeof(float)) != 0 ||
                grad2[i * ld + 3 * e] != grad0[i * ld + 3 * e]) {
                failures++;
                printf("FAIL %s: row %ld's heads or dq differ from the whole-matrix kernels', or its padding was "
                       "written\n", what, i);
                break;
            }
        free(grad2); free(heads);
        free(qkv); free(dout); free(grad0); free(scratch); free(out); free(again); free(probs); free(p); free(oref);
        free(gref); free(dp); free(grad);
    }
}

static int path_named(const char *name) {
    for (int p = 0; p < NK_PATH_COUNT; p++)
        if (strcmp(name, nk_cpu_path_name(p)) == 0) return p;
    return strcmp(name, "portable") == 0 ? NK_PATH_PORTABLE : -1;
}

int main(int argc, char **argv) {
    int first = 0, last = NK_PATH_COUNT - 1;
    if (argc > 1) {
        first = last = path_named(argv[1]);
        if (first < 0) {
            fprintf(stderr, "kernel_check: unknown path '%s' (portable, neon, avx2, avx512)\n", argv[1]);
            return 2;
        }
        if (!nk_cpu_supported(first)) {
            fprintf(stderr, "kernel_check: this CPU cannot run the %s path\n", argv[1]);
            return 2;
        }
    }
    int ran = 0;
    for (int path = first; path <= last; path++) {
        if (!nk_cpu_supported(path)) continue;
        if (nk_cpu_set_path(path) != 0 || nk_cpu_path() != path) {
            printf("FAIL could not select the %s path\n", nk_cpu_path_name(path));
            return 1;
        }
        const char *name = nk_cpu_path_name(path);
        const int before = failures, checks_before = checks;
        worst_ratio = 0;
        worst_case[0] = 0;
        check_elementwise(name);
        check_rows(name);
        check_gemm(name);
        check_attention(name);
        printf("%s path: %d checks, %d failed; largest error %.2f of its bound (%s)\n", name, checks - checks_before,
               failures - before, worst_ratio, worst_case);
        ran++;
    }
    if (!ran) {
        printf("FAIL no kernel path ran\n");
        return 1;
    }
    printf(failures ? "kernel_check: FAILED\n" : "kernel_check: all passed\n");
    return failures ? 1 : 0;
}
