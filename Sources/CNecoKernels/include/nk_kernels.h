/* nk_kernels.h: libneco's elementwise and row kernels in C, chosen at run time by CPU features.
 *
 * Not public API (nothing here is exported from libneco.so; neco.map lists the public names).
 *
 * Every kernel exists once in source (kernels_body.h) and is compiled three times, each copy under
 * a `#pragma clang attribute` target of its own:
 *   portable  the compiler's baseline for the architecture (SSE2 on x86-64, NEON on arm64);
 *   avx2      AVX2 + FMA, 8 lanes          (x86-64 only);
 *   avx512    AVX-512F/DQ/BW/VL + FMA, 16 lanes (x86-64 only).
 * The first call picks the best path this CPU and operating system support (CPUID + XGETBV).
 * The environment variable NECO_CPU=portable|avx2|avx512 forces a path; a path the CPU lacks (or an
 * unknown name) falls back to the best supported path below it with a one-line warning on stderr,
 * also kept in nk_cpu_note(). So a CPU without AVX2 always runs the portable path: never SIGILL.
 *
 * Threading stays with the callers: every kernel runs on the calling thread over the rows or
 * elements it is given. Pointers may alias only where a comment says so.
 */
#ifndef NK_KERNELS_H
#define NK_KERNELS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Kernel paths (values of nk_cpu_path). */
enum { NK_PATH_PORTABLE = 0, NK_PATH_AVX2 = 1, NK_PATH_AVX512 = 2, NK_PATH_COUNT = 3 };

/* The active path. */
int nk_cpu_path(void);
/* The best path this machine supports. */
int nk_cpu_best(void);
/* 1 when `path` can run here. */
int nk_cpu_supported(int path);
/* Switches the active path (tests and benchmarks): 0 on success, -1 when `path` is not supported
 * (nothing changes then). Not thread-safe against kernels running at the same time. */
int nk_cpu_set_path(int path);
/* "portable" (or "neon" on arm64), "avx2", "avx512"; "?" for other values. */
const char *nk_cpu_path_name(int path);
/* The warning about NECO_CPU given at start-up, or "" when there was none. */
const char *nk_cpu_note(void);

/* y (n) = exp(x); y may equal x. Relative error <= 2e-7 on [-80, 88.7]; inputs are clamped to it
 * (e^-80 instead of subnormals, which cost ~100x more). */
void nk_exp(float *y, const float *x, long n);

/* Exact (erf) GELU: y = x/2 * (1 + erf(x/sqrt2)); y may equal x. */
void nk_gelu(float *y, const float *x, long n);
/* dx (n) += dy * gelu'(x). */
void nk_gelu_backward(float *dx, const float *dy, const float *x, long n);
/* g (rows, cols) <- g * gelu'(x) in place; colsum (cols) += column sums of the result in row order
 * when colsum is not NULL. */
void nk_gelu_grad_rows(float *g, const float *x, long rows, long cols, float *colsum);

/* In place per row: x[r, :] = softmax(scale * x[r, :]) (stabilised by the row maximum). */
void nk_softmax_rows(float *x, long rows, long cols, float scale);
/* dx[r, j] (+)= scale * y[r, j] * (dy[r, j] - sum_k dy[r, k] y[r, k]); `=` unless accumulate.
 * dx may equal dy. */
void nk_softmax_backward_rows(float *dx, const float *dy, const float *y, long rows, long cols, float scale,
                              int accumulate);

/* LayerNorm per row (biased variance, two passes): out = (x - mean) * rstd * w + b; mean/rstd
 * (rows) receive the statistics when not NULL. out may equal x. */
void nk_layernorm_rows(float *out, float *mean, float *rstd, const float *x, const float *w, const float *b,
                       long rows, long dim, float eps);
/* dx (rows, dim) += rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * w. */
void nk_layernorm_backward_rows(float *dx, const float *dy, const float *x, const float *w, const float *mean,
                                const float *rstd, long rows, long dim);

/* SwiGLU gating: hidden (rows, h) = silu(gates[:, :h]) * gates[:, h:]; backward accumulates into
 * dgates (rows, 2h). */
void nk_swiglu_rows(float *hidden, const float *gates, long rows, long h);
void nk_swiglu_backward_rows(float *dgates, const float *dhidden, const float *gates, long rows, long h);

/* Peak-FMA probe: runs `iterations` rounds of independent fused multiply-adds on `path`'s widest
 * registers and returns the number of floating-point operations done (2 per lane per FMA).
 * Returns 0 when the path is not supported here. */
double nk_fma_probe(int path, long iterations);

/* The packed-weight GEMM of a Linear layer (gemm_body.h):
 *     out (m, n) = a (m, k) · Wᵀ + bias,   W (n, k) row-major (PyTorch's Linear weight),
 * out and a row-major with leading dimensions ldc, lda (out must not overlap a or the weights).
 * The weights are packed once by nk_gemm_pack_weights into nk_gemm_packed_floats(n, k) floats;
 * the layout is the same for every path. Each output element is one chain of fused multiply-adds in
 * k order starting from its bias (or 0), whatever the tile it falls in: results do not depend on
 * how the rows are split among calls or threads. */
enum { NK_GEMM_NR = 16, NK_GEMM_KC = 384 };
/* Internal to gemm_body.h / gemm.c: rows per row block on every path (whole micro-tiles of 14, 6,
 * 3 and 2 rows; its (MC, KC) block of activations, 252 KiB, stays in L2 while the weight's panels
 * pass over it; the same rows for every path, so a narrow tile does not make a worker stream the
 * weights once more per extra block), and the most rows per micro-tile of any path (AVX-512's 14). */
enum { NK_GEMM_MC_ROWS = 168, NK_GEMM_MR_MAX = 14, NK_GEMM_PACK_MIN_N = 768 };
/* Epilogues, applied to each output when it is stored. NK_GEMM_RESIDUAL: out = residual + gamma ⊙ z
 * (z = a · Wᵀ + bias; residual + z when gamma is NULL), the product and the sum each rounded (no fused
 * multiply-add), residual (m, n) with row stride ldr, gamma (n); out must not overlap residual. */
enum { NK_GEMM_NONE = 0, NK_GEMM_GELU = 1, NK_GEMM_RESIDUAL = 2 };
/* Floats of packed weights for an (n, k) matrix: n rounded up to 16, times k; -1 when too large. */
long nk_gemm_packed_floats(long n, long k);
/* dst (nk_gemm_packed_floats(n, k)) = w (n, k) in panels of 16 output features, each (k, 16). */
void nk_gemm_pack_weights(float *dst, const float *w, long n, long k);
/* Panels [first, end) of that layout (callers packing in parallel give each worker a range). With
 * `transposed`, w is the weight transposed, (k, n) row-major: the layout of W = wᵀ, which a Linear's
 * input gradient dX (m, n) = dY (m, k) · w (k, n) needs (dX = dY · Wᵀ with W (n, k)). */
void nk_gemm_pack_panels(float *dst, const float *w, long n, long k, long first, long end, int transposed);
/* The inverse: w (n, k) = the weights packed in src. */
void nk_gemm_unpack_weights(float *w, const float *src, long n, long k);
/* Rows per micro-tile of the active path (14 AVX-512, 6 AVX2, 3 NEON, 2 SSE2): callers splitting rows
 * among threads use multiples of it so that no thread computes padding rows needlessly. */
long nk_gemm_rows_per_tile(void);
/* out = epilogue(a · Wᵀ + bias), on the calling thread. bias may be NULL; residual, ldr and gamma
 * are read only by NK_GEMM_RESIDUAL (else NULL, 0, NULL). Products of at least NK_GEMM_PACK_MIN_N
 * columns, and narrower ones whose rows of a are a multiple of 4 KiB apart (lda % 1024 == 0, which
 * would put every row's line into one L1 set), pack a's row blocks into the thread's scratch
 * (allocated on its first call, freed when it exits); the rest, or any when the scratch cannot be
 * allocated, read a's rows in place (the same bits either way). */
void nk_gemm_linear(float *out, long ldc, const float *a, long lda, const float *wp, const float *bias, long m, long n,
                    long k, int epilogue, const float *residual, long ldr, const float *gamma);
/* Columns per packed block of b in nk_gemm_tn: (KC, NC) floats, at most 3 MiB per thread. The
 * row-block scratch both drivers use: a row block one K block deep, its slivers up to a vector
 * apart (nk_gemm_tn's layout: MC / MR gaps of one NK_W-lane vector: 84 of 4 floats on SSE2's
 * 2-row path, 12 of 16 on AVX-512's; gemm_body.h asserts that they fit),
 * and room for the last vector store. */
enum { NK_GEMM_NC = 2048, NK_GEMM_SCRATCH_A = NK_GEMM_MC_ROWS * NK_GEMM_KC + 64 * NK_GEMM_NR };
/* The weight-gradient product (gemm_body.h), on the calling thread with its own scratch:
 *     out (m, n) = (accumulate ? out : 0) + aᵀ · b,   a (k, m), b (k, n) row-major (strides lda, ldb),
 * out row-major with stride ldc, not overlapping a or b. Each output element is one chain of fused
 * multiply-adds in k order: results do not depend on how callers split rows or columns among calls.
 * Returns 0, or -1 when the scratch cannot be allocated (nothing is written then). */
int nk_gemm_tn(float *out, long ldc, const float *a, long lda, const float *b, long ldb, long m, long n, long k,
               int accumulate);
/* The active path's drivers with caller-provided scratch (internal to gemm.c). */
void nk_gemm_packed_active(float *out, long ldc, const float *a, long lda, const float *wp, const float *bias, long m,
                           long n, long k, int epilogue, const float *residual, long ldr, const float *gamma,
                           float *scratch);
void nk_gemm_tn_active(float *out, long ldc, const float *a, long lda, const float *b, long ldb, long m, long n,
                       long k, int accumulate, float *scratch_a, float *scratch_b);

/* One (batch, head) of softmax attention with no (t, t) score matrix (attention_body.h):
 *     out[i, :] = Σ_j P[i, j] v[j, :],   P[i, :] = softmax(scale · q[i, :] · kᵀ),   i, j < t,
 * q, k, v (t, e) with row stride ld (they may be parts of one fused qkv row), out (t, e) with row
 * stride ldo, or NULL (then only probs). probs, when not NULL, receives P (t, t) with row stride ldp
 * (for a backward); out is the same with and without it. out and probs must not overlap the inputs
 * or scratch. Each score is one FMA chain in e order, and every query's softmax is the same
 * arithmetic in any block, so nothing depends on the thread. scratch:
 * nk_attention_scratch_floats(t, e) floats, any path. */
void nk_attention_head(float *out, long ldo, const float *q, const float *k, const float *v, long ld, long t, long e,
                       float scale, float *probs, long ldp, float *scratch);
/* Scratch floats nk_attention_head needs for t tokens of e channels (O(t · e)); -1 when too large. */
long nk_attention_scratch_floats(long t, long e);
/* Backward of one (batch, head) given its probabilities P (t, t) (contiguous, as nk_attention_head
 * writes them with ldp = t) and dO = dL/dout (t, e) with row stride ldo:
 *     dv += Pᵀ · dO;   dP = dO · vᵀ;   dS = scale · P ⊙ (dP − rowsum(dP ⊙ P));
 *     dq += dS · k;    dk += dSᵀ · q,
 * q, k, v (t, e) with row stride ldx, dq, dk, dv (t, e) with row stride ldd (parts of one fused
 * gradient row), all four products on the packed GEMM's micro-kernel (each element one FMA chain
 * from 0 in order, added to its previous value once), nothing depending on the thread. The gradients must not
 * overlap the inputs or the scratch: nk_attention_backward_scratch_floats(t, e) floats, any path. */
void nk_attention_head_backward(float *dq, float *dk, float *dv, long ldd, const float *dout, long ldo,
                                const float *q, const float *k, const float *v, long ldx, const float *probs, long t,
                                long e, float scale, float *scratch);
/* Scratch floats nk_attention_head_backward needs: the (t, t) score gradient and the operands packed
 * as panels, O(t² + t · e); -1 when too large. */
long nk_attention_backward_scratch_floats(long t, long e);
/* Queries per strip of nk_attention_head_backward_recompute. */
enum { NK_ATTENTION_STRIP = 64 };
/* Backward of one (batch, head) without its probabilities: nk_attention_head's forward rebuilds
 * them NK_ATTENTION_STRIP query rows at a time, each strip's rows then going through the
 * products and softmax backward of nk_attention_head_backward (same formulas, same layouts), so
 * no (t, t) matrix exists. heads, when not NULL, receives the head's output (t, e) with row
 * stride ldh, the bits nk_attention_head writes. dq and every P and dS element are the bits of
 * nk_attention_head followed by nk_attention_head_backward; dv and dk add one sum per strip to
 * their previous value instead of one in all (float rounding apart, the same). The gradients and
 * heads must not overlap the inputs or the scratch: nk_attention_recompute_backward_scratch_floats(t,
 * e) floats, any path. */
void nk_attention_head_backward_recompute(float *dq, float *dk, float *dv, long ldd, const float *dout, long ldo,
                                          const float *q, const float *k, const float *v, long ldx, float *heads,
                                          long ldh, long t, long e, float scale, float *scratch);
/* Scratch floats nk_attention_head_backward_recompute needs: the forward's, the operands packed as
 * panels and a strip's P and dS, O(t · e + NK_ATTENTION_STRIP · t); -1 when too large. */
long nk_attention_recompute_backward_scratch_floats(long t, long e);

#ifdef __cplusplus
}
#endif
#endif
