/* kernels_body.h: the one source of every kernel in nk_kernels.h, written with clang vector
 * extensions. kernels_{portable,avx2,avx512}.c include it once each, with
 *   NK_W       lanes per vector (4, 8 or 16),
 *   NK_SUFFIX  the name suffix of the path (portable, avx2, avx512),
 * and (on x86-64) a `#pragma clang attribute` that sets the target of every function. Each path is
 * thus the same arithmetic on registers of a different width. Partial vectors at the end of a row
 * go through the same vector code (padded), so an element's result does not depend on where it
 * sits. Reductions add in NK_W lanes, then the lanes in order: fixed for a path, so results are
 * reproducible run to run and for any thread count.
 */

#define NK_CAT2(a, b) a##_##b
#define NK_CAT(a, b) NK_CAT2(a, b)
#define NK(name) NK_CAT(name, NK_SUFFIX)

typedef float vf __attribute__((ext_vector_type(NK_W)));
typedef int vi __attribute__((ext_vector_type(NK_W)));

static inline __attribute__((always_inline)) vf ld(const float *p) { vf v; __builtin_memcpy(&v, p, sizeof v); return v; }
static inline __attribute__((always_inline)) void st(float *p, vf v) { __builtin_memcpy(p, &v, sizeof v); }
static inline __attribute__((always_inline)) vf splat(float x) { return (vf)(x); }
/* First n (< NK_W) elements of p, the rest `fill`. */
static inline __attribute__((always_inline)) vf ld_part(const float *p, long n, float fill) {
    vf v = splat(fill);
    for (long i = 0; i < n; i++) v[i] = p[i];
    return v;
}
static inline __attribute__((always_inline)) void st_part(float *p, vf v, long n) {
    for (long i = 0; i < n; i++) p[i] = v[i];
}
/* n (<= NK_W) elements: a full load when n == NK_W. */
static inline __attribute__((always_inline)) vf ldn(const float *p, long n, float fill) { return n == NK_W ? ld(p) : ld_part(p, n, fill); }
static inline __attribute__((always_inline)) void stn(float *p, vf v, long n) { if (n == NK_W) st(p, v); else st_part(p, v, n); }
static inline __attribute__((always_inline)) float hsum(vf v) {
    float s = 0;
    for (int i = 0; i < NK_W; i++) s += v[i];
    return s;
}
static inline __attribute__((always_inline)) float hmax(vf v) {
    float m = v[0];
    for (int i = 1; i < NK_W; i++) m = m > v[i] ? m : v[i];
    return m;
}
static inline __attribute__((always_inline)) vf vmax(vf a, vf b) { return __builtin_elementwise_max(a, b); }
static inline __attribute__((always_inline)) vf vmin(vf a, vf b) { return __builtin_elementwise_min(a, b); }
/* The running maximum m of a max pass updated with x: x where x > m, else m, so a NaN x is skipped
 * as vmax skips it and a pass started at −∞ never holds NaN: the same maximum as vmax's (of two
 * equal zeros either sign may stay with both, and every use subtracts it, where ±0 give the same
 * results). A select compiles to one vmaxps; vmax is a max, an unordered compare and a blend. */
static inline __attribute__((always_inline)) vf vmax_run(vf m, vf x) { return x > m ? x : m; }

/* exp: x = n ln2 + r, |r| <= ln2/2; degree-7 Taylor polynomial for e^r, times 2^n: on AVX-512 by
 * vscalefps, elsewhere as 2^(n-1) built in the exponent bits, then 2 (2^n itself would overflow for
 * n = 128, x > 88.38). Both scalings are exact: the AVX2 and AVX-512 paths give the same bits (the
 * portable path's polynomial is not fused). Inputs clamped to [-80, 88.7] (results stay normal and
 * finite). */
static inline __attribute__((always_inline)) vf vexp(vf x) {
    x = vmin(vmax(x, splat(-80.0f)), splat(88.7f));
    vf shifted = x * 1.44269504f + 12582912.0f; /* round to nearest: the integer lands in the low bits */
    vf n = shifted - 12582912.0f;
    vf r = x - n * 0.693145751953125f;          /* ln2 high part (exact in float) */
    r = r - n * 1.428606765330187e-6f;           /* ln2 low part */
    vf p = splat(1.0f / 5040.0f);
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
#if NK_W == 16 && defined(__x86_64__)
    (void)shifted;
    return (vf)_mm512_scalef_ps((__m512)p, (__m512)n);
#else
    vi ni = (vi)shifted - 0x4B400000;            /* n as an integer */
    vf half = (vf)((ni + 126) << 23);            /* 2^(n-1), normal for n in [-115, 128] */
    return p * half * 2.0f;
#endif
}

/* erf(z) by Abramowitz & Stegun 7.1.26 (absolute error <= 1.5e-7), odd-extended; *gauss receives
 * e^(-z^2), which it computes anyway. */
static inline __attribute__((always_inline)) vf verf(vf z, vf *gauss) {
    vi sign = (vi)z & (int)0x80000000;
    vf az = (vf)((vi)z & 0x7FFFFFFF);
    vf t = 1.0f / (1.0f + 0.3275911f * az);
    vf poly = splat(1.061405429f);
    poly = poly * t - 1.453152027f;
    poly = poly * t + 1.421413741f;
    poly = poly * t - 0.284496736f;
    poly = poly * t + 0.254829592f;
    poly = poly * t;
    vf e = vexp(-(az * az));
    *gauss = e;
    vf y = 1.0f - poly * e;
    return (vf)((vi)y | sign);
}

static inline __attribute__((always_inline)) vf vgelu(vf x) {
    vf g;
    vf erf = verf(x * 0.70710678118654752f, &g);
    return 0.5f * x * (1.0f + erf);
}

/* gelu'(x) = Phi(x) + x phi(x), with phi(x) sqrt(2 pi) = e^(-x^2/2) = e^(-z^2), z = x/sqrt2. */
static inline __attribute__((always_inline)) vf vgelu_grad(vf x) {
    vf g;
    vf erf = verf(x * 0.70710678118654752f, &g);
    return 0.5f * (1.0f + erf) + x * (0.39894228040143268f * g);
}

static inline __attribute__((always_inline)) vf vsigmoid(vf a) { return 1.0f / (1.0f + vexp(-a)); }

void NK(nk_exp)(float *y, const float *x, long n) {
    long i = 0;
    for (; i + NK_W <= n; i += NK_W) st(y + i, vexp(ld(x + i)));
    if (i < n) st_part(y + i, vexp(ld_part(x + i, n - i, 0)), n - i);
}

void NK(nk_gelu)(float *y, const float *x, long n) {
    long i = 0;
    for (; i + NK_W <= n; i += NK_W) st(y + i, vgelu(ld(x + i)));
    if (i < n) st_part(y + i, vgelu(ld_part(x + i, n - i, 0)), n - i);
}

void NK(nk_gelu_backward)(float *dx, const float *dy, const float *x, long n) {
    long i = 0;
    for (; i + NK_W <= n; i += NK_W) st(dx + i, ld(dx + i) + ld(dy + i) * vgelu_grad(ld(x + i)));
    if (i < n) {
        long m = n - i;
        st_part(dx + i, ld_part(dx + i, m, 0) + ld_part(dy + i, m, 0) * vgelu_grad(ld_part(x + i, m, 0)), m);
    }
}

void NK(nk_gelu_grad_rows)(float *g, const float *x, long rows, long cols, float *colsum) {
    for (long r = 0; r < rows; r++) {
        float *gr = g + r * cols;
        const float *xr = x + r * cols;
        long j = 0;
        for (; j + NK_W <= cols; j += NK_W) {
            vf v = ld(gr + j) * vgelu_grad(ld(xr + j));
            st(gr + j, v);
            if (colsum) st(colsum + j, ld(colsum + j) + v);
        }
        if (j < cols) {
            long m = cols - j;
            vf v = ld_part(gr + j, m, 0) * vgelu_grad(ld_part(xr + j, m, 0));
            st_part(gr + j, v, m);
            if (colsum) st_part(colsum + j, ld_part(colsum + j, m, 0) + v, m);
        }
    }
}

void NK(nk_softmax_rows)(float *x, long rows, long cols, float scale) {
    const long full = cols / NK_W * NK_W, m = cols - full;
    for (long r = 0; r < rows; r++) {
        float *row = x + r * cols;
        vf mx = splat(-__builtin_inff());
        for (long j = 0; j < full; j += NK_W) mx = vmax_run(mx, ld(row + j));
        if (m) mx = vmax_run(mx, ld_part(row + full, m, -__builtin_inff()));
        const vf shift = splat(hmax(mx) * scale);
        vf sum = splat(0);
        for (long j = 0; j < full; j += NK_W) {
            vf e = vexp(ld(row + j) * scale - shift);
            st(row + j, e);
            sum += e;
        }
        if (m) {
            vf e = vexp(ld_part(row + full, m, 0) * scale - shift);
            st_part(row + full, e, m);
            for (long i = 0; i < m; i++) sum[i] += e[i];
        }
        const vf inv = splat(1.0f / hsum(sum));
        for (long j = 0; j < full; j += NK_W) st(row + j, ld(row + j) * inv);
        for (long j = full; j < cols; j++) row[j] *= inv[0];
    }
}

void NK(nk_softmax_backward_rows)(float *dx, const float *dy, const float *y, long rows, long cols, float scale,
                                  int accumulate) {
    const long full = cols / NK_W * NK_W, m = cols - full;
    for (long r = 0; r < rows; r++) {
        const float *yr = y + r * cols, *gr = dy + r * cols;
        float *dr = dx + r * cols;
        vf acc = splat(0);
        for (long j = 0; j < full; j += NK_W) acc += ld(gr + j) * ld(yr + j);
        if (m) acc += ld_part(gr + full, m, 0) * ld_part(yr + full, m, 0);
        const vf dot = splat(hsum(acc));
        if (accumulate) {
            for (long j = 0; j < full; j += NK_W)
                st(dr + j, ld(dr + j) + scale * ld(yr + j) * (ld(gr + j) - dot));
            if (m)
                st_part(dr + full, ld_part(dr + full, m, 0) + scale * ld_part(yr + full, m, 0)
                        * (ld_part(gr + full, m, 0) - dot), m);
        } else {
            for (long j = 0; j < full; j += NK_W) st(dr + j, scale * ld(yr + j) * (ld(gr + j) - dot));
            if (m) st_part(dr + full, scale * ld_part(yr + full, m, 0) * (ld_part(gr + full, m, 0) - dot), m);
        }
    }
}

void NK(nk_layernorm_rows)(float *out, float *mean, float *rstd, const float *x, const float *w, const float *b,
                           long rows, long dim, float eps) {
    const long full = dim / NK_W * NK_W, m = dim - full;
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * dim;
        float *yr = out + r * dim;
        vf s = splat(0);
        for (long j = 0; j < full; j += NK_W) s += ld(xr + j);
        if (m) s += ld_part(xr + full, m, 0);
        const float mu = hsum(s) / (float)dim;
        const vf vmu = splat(mu);
        vf v = splat(0);
        for (long j = 0; j < full; j += NK_W) { vf d = ld(xr + j) - vmu; v += d * d; }
        if (m) {
            vf d = ld_part(xr + full, m, mu) - vmu; /* padding lanes give d = 0 */
            v += d * d;
        }
        const float rs = 1.0f / __builtin_sqrtf(hsum(v) / (float)dim + eps);
        const vf vrs = splat(rs);
        for (long j = 0; j < full; j += NK_W) st(yr + j, (ld(xr + j) - vmu) * vrs * ld(w + j) + ld(b + j));
        if (m)
            st_part(yr + full, (ld_part(xr + full, m, 0) - vmu) * vrs * ld_part(w + full, m, 0)
                    + ld_part(b + full, m, 0), m);
        if (mean) mean[r] = mu;
        if (rstd) rstd[r] = rs;
    }
}

void NK(nk_layernorm_backward_rows)(float *dx, const float *dy, const float *x, const float *w, const float *mean,
                                    const float *rstd, long rows, long dim) {
    const long full = dim / NK_W * NK_W, m = dim - full;
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * dim, *gr = dy + r * dim;
        float *dr = dx + r * dim;
        const vf mu = splat(mean[r]), rs = splat(rstd[r]);
        vf sd = splat(0), sdx = splat(0);
        for (long j = 0; j < full; j += NK_W) {
            vf xhat = (ld(xr + j) - mu) * rs, dxhat = ld(gr + j) * ld(w + j);
            sd += dxhat;
            sdx += dxhat * xhat;
        }
        if (m) {
            vf xhat = (ld_part(xr + full, m, 0) - mu) * rs, dxhat = ld_part(gr + full, m, 0) * ld_part(w + full, m, 0);
            sd += dxhat; /* padding: dxhat = 0 */
            sdx += dxhat * xhat;
        }
        const vf md = splat(hsum(sd) / (float)dim), mdx = splat(hsum(sdx) / (float)dim);
        for (long j = 0; j < full; j += NK_W) {
            vf xhat = (ld(xr + j) - mu) * rs;
            st(dr + j, ld(dr + j) + rs * (ld(gr + j) * ld(w + j) - md - xhat * mdx));
        }
        if (m) {
            vf xhat = (ld_part(xr + full, m, 0) - mu) * rs;
            st_part(dr + full, ld_part(dr + full, m, 0)
                    + rs * (ld_part(gr + full, m, 0) * ld_part(w + full, m, 0) - md - xhat * mdx), m);
        }
    }
}

void NK(nk_swiglu_rows)(float *hidden, const float *gates, long rows, long h) {
    for (long r = 0; r < rows; r++) {
        const float *a = gates + r * 2 * h, *b = a + h;
        float *o = hidden + r * h;
        long j = 0;
        for (; j + NK_W <= h; j += NK_W) { vf av = ld(a + j); st(o + j, av * vsigmoid(av) * ld(b + j)); }
        if (j < h) {
            long m = h - j;
            vf av = ld_part(a + j, m, 0);
            st_part(o + j, av * vsigmoid(av) * ld_part(b + j, m, 0), m);
        }
    }
}

void NK(nk_swiglu_backward_rows)(float *dgates, const float *dhidden, const float *gates, long rows, long h) {
    for (long r = 0; r < rows; r++) {
        const float *a = gates + r * 2 * h, *b = a + h, *dy = dhidden + r * h;
        float *da = dgates + r * 2 * h, *db = da + h;
        for (long j = 0; j < h; j += NK_W) {
            long m = h - j < NK_W ? h - j : NK_W;
            vf av = ldn(a + j, m, 0), bv = ldn(b + j, m, 0), g = ldn(dy + j, m, 0);
            vf sig = vsigmoid(av), silu = av * sig;
            stn(da + j, ldn(da + j, m, 0) + g * bv * (sig + av * sig * (1.0f - sig)), m);
            stn(db + j, ldn(db + j, m, 0) + g * silu, m);
        }
    }
}

/* Keeps a value in a register, opaque to the optimiser (the probe's chains must really run). */
#if defined(__x86_64__)
#define NK_OPAQUE(v) __asm__ volatile("" : "+v"(v))
#elif defined(__aarch64__)
#define NK_OPAQUE(v) __asm__ volatile("" : "+w"(v))
#else
#define NK_OPAQUE(v) __asm__ volatile("" : "+m"(v))
#endif

/* 12 independent accumulator chains hide the FMA latency (4 cycles) on two FMA pipes. */
double NK(nk_fma_probe)(long iterations) {
    vf a0 = splat(1.0f), a1 = a0 + 1e-7f, a2 = a0 + 2e-7f, a3 = a0 + 3e-7f, a4 = a0 + 4e-7f, a5 = a0 + 5e-7f;
    vf a6 = a0 + 6e-7f, a7 = a0 + 7e-7f, a8 = a0 + 8e-7f, a9 = a0 + 9e-7f, a10 = a0 + 1e-6f, a11 = a0 + 1.1e-6f;
    vf m = splat(0.9999999f), c = splat(1e-7f);
    NK_OPAQUE(m);
    NK_OPAQUE(c);
    for (long i = 0; i < iterations; i++) {
        a0 = a0 * m + c; a1 = a1 * m + c; a2 = a2 * m + c; a3 = a3 * m + c;
        a4 = a4 * m + c; a5 = a5 * m + c; a6 = a6 * m + c; a7 = a7 * m + c;
        a8 = a8 * m + c; a9 = a9 * m + c; a10 = a10 * m + c; a11 = a11 * m + c;
        NK_OPAQUE(a0); NK_OPAQUE(a1); NK_OPAQUE(a2); NK_OPAQUE(a3); NK_OPAQUE(a4); NK_OPAQUE(a5);
        NK_OPAQUE(a6); NK_OPAQUE(a7); NK_OPAQUE(a8); NK_OPAQUE(a9); NK_OPAQUE(a10); NK_OPAQUE(a11);
    }
    volatile float sink = hsum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    (void)sink;
    return (double)iterations * 12.0 * NK_W * 2.0;
}

#include "gemm_body.h"
#include "attention_body.h"

#undef NK_GEMM_MR
#undef NK_GEMM_NV
#undef NK_GEMM_MC
