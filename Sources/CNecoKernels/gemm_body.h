/* gemm_body.h: the packed-weight GEMM of a Linear layer, included by kernels_body.h (so compiled once
 * per path, with that path's NK_W lanes and target).
 *
 *     out (m, n) = a (m, k) · Wᵀ + bias,   W (n, k) PyTorch's Linear layout,
 *
 * with W packed once (nk_gemm_pack_weights, path-independent) into panels of NK_GEMM_NR = 16 output
 * features: panel j holds W[16j ..< 16j+16, :] transposed, (k, 16) row-major, zero rows past n.
 *
 * Blocking (Goto/BLIS): K in blocks of NK_GEMM_KC; rows in blocks of MC = 168 (whole micro-tiles
 * on every path), whose (MC, kc) block of a stays in L2 while every weight panel passes over it;
 * for each panel the micro-kernel computes an MR × 16 tile over the K block, the 16-wide panel
 * (kc × 64 bytes, ≤ 24 KiB) staying in L1 across the row block. The tile's accumulators are
 * NK_W-lane registers: MR × (16 / NK_W) of them (AVX-512 14 × 1, AVX2 6 × 2, 4-lane 3 × 4 on
 * NEON and 2 × 4 on SSE2), with
 * one broadcast of a[i, p] per row and one load of the panel's row p per vector. For a wide
 * product (n ≥ NK_GEMM_PACK_MIN_N) the row block is first packed into MR-row slivers ((kc, MR)
 * each, one sequential stream per tile) in the calling thread's scratch; for a narrower one the
 * tiles read a's rows in place (MR streams), as the packing pass would cost more than the few
 * panels' slivers save (measured: the 384-wide products 2–6 % faster in place, the 1152- and
 * 1536-wide ones 1.5–2 % slower), except where a's rows are a multiple of 4 KiB apart (below).
 *
 * Every output element is the same chain of fused multiply-adds, in k order from the bias (or
 * zero), wherever its row and column fall (a row block's last h < MR rows run a register tile of h
 * rows; a partial panel runs the tile on zero-padded columns and stores the part that exists).
 * So the result does not depend on how callers split the
 * rows among threads. Epilogues, applied when the last K block's tile is stored:
 *   NK_GEMM_GELU      the exact GELU;
 *   NK_GEMM_RESIDUAL  out = residual + gamma ⊙ z (z the product plus bias; gamma NULL: residual + z),
 *                     the product and the sum each rounded, as BranchResidual computes them.
 */

#include "nk_kernels.h"

#if NK_W == 16
#define NK_GEMM_MR 14
#elif NK_W == 8
#define NK_GEMM_MR 6
#elif defined(__x86_64__)
/* SSE2 has 16 registers, no fused multiply-add and two-operand instructions (a product needs a
 * copy): a 3 × 4 tile's 12 accumulators left too few for the panel's 4 vectors and the
 * temporaries, and the compiler spilled an accumulator to the stack every K step (15.7 GFLOP/s on
 * fc1's shape, single thread); 2 × 4 runs at 35–43. The same chains, so the same bits. */
#define NK_GEMM_MR 2
#else
#define NK_GEMM_MR 3 /* NEON: 32 registers and fmla; not measured on an arm64 machine */
#endif
#define NK_GEMM_NV (NK_GEMM_NR / NK_W)
#define NK_GEMM_MC NK_GEMM_MC_ROWS
_Static_assert(NK_GEMM_MR <= NK_GEMM_MR_MAX, "gemm.c sizes the scratch for NK_GEMM_MR_MAX rows per tile");
_Static_assert(NK_GEMM_MC % NK_GEMM_MR == 0, "a row block is whole micro-tiles");
_Static_assert(NK_GEMM_MC * NK_GEMM_KC + NK_GEMM_MC / NK_GEMM_MR * NK_W + NK_W <= NK_GEMM_SCRATCH_A,
               "a packed row block with its gaps fits the scratch");

/* x + g ⊙ z and x + z with two roundings: never contracted into a fused multiply-add, so that the
 * fused residual equals the separate residual kernel bit for bit. */
static inline __attribute__((always_inline)) vf NK(residual_vec)(vf x, vf z, const float *g) {
#pragma clang fp contract(off)
    return g ? x + ld(g) * z : x + z;
}
static inline __attribute__((always_inline)) float NK(residual_one)(float x, float z, const float *g) {
#pragma clang fp contract(off)
    return g ? x + *g * z : x + z;
}

/* c (rows, 16) tile, rows ≤ MR a constant at each call, row stride ldc: c = (init ? init : c) +
 * Σ_p a[:rows, p] bp[p, :] over kc, a's element (r, p) at ap[r · ars + p · acs] (a packed sliver
 * (kc, MR): ars = 1, acs = MR; rows of a read in place: ars = their stride, acs = 1), then the
 * epilogue `epi` (NK_GEMM_RESIDUAL reads res (rows, 16), row stride ldr, and gamma (16) or NULL).
 * Each output is the same chain for any `rows` and either layout of a. */
static inline __attribute__((always_inline)) void NK(gemm_tile_rows)(const int rows, long kc, const float *ap,
                                                                     long ars, long acs,
                                                                     const float *bp, float *c, long ldc,
                                                                     const float *init, int epi, const float *res,
                                                                     long ldr, const float *gamma) {
    vf acc[NK_GEMM_MR][NK_GEMM_NV];
    if (init) {
        for (int v = 0; v < NK_GEMM_NV; v++) {
            vf b = ld(init + v * NK_W);
            for (int r = 0; r < rows; r++) acc[r][v] = b;
        }
    } else {
        for (int r = 0; r < rows; r++)
            for (int v = 0; v < NK_GEMM_NV; v++) acc[r][v] = ld(c + r * ldc + v * NK_W);
    }
    for (long p = 0; p < kc; p++) {
        vf b[NK_GEMM_NV];
        for (int v = 0; v < NK_GEMM_NV; v++) b[v] = ld(bp + p * NK_GEMM_NR + v * NK_W);
        for (int r = 0; r < rows; r++) {
            const vf a = splat(ap[r * ars + p * acs]);
            for (int v = 0; v < NK_GEMM_NV; v++) acc[r][v] = a * b[v] + acc[r][v];
        }
    }
    if (epi == NK_GEMM_GELU)
        for (int r = 0; r < rows; r++)
            for (int v = 0; v < NK_GEMM_NV; v++) acc[r][v] = vgelu(acc[r][v]);
    else if (epi == NK_GEMM_RESIDUAL)
        for (int r = 0; r < rows; r++)
            for (int v = 0; v < NK_GEMM_NV; v++)
                acc[r][v] = NK(residual_vec)(ld(res + r * ldr + v * NK_W), acc[r][v], gamma ? gamma + v * NK_W : 0);
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < NK_GEMM_NV; v++) st(c + r * ldc + v * NK_W, acc[r][v]);
}

/* The whole MR × 16 tile. */
static inline __attribute__((always_inline)) void NK(gemm_tile)(long kc, const float *ap, long ars, long acs,
                                                                const float *bp, float *c, long ldc,
                                                                const float *init, int epi, const float *res, long ldr,
                                                                const float *gamma) {
    NK(gemm_tile_rows)(NK_GEMM_MR, kc, ap, ars, acs, bp, c, ldc, init, epi, res, ldr, gamma);
}

/* A tile of the last h < MR rows (a row block's end): only those rows are computed and stored, with
 * a register tile of h rows (the compiler gets one copy per h). */
static void NK(gemm_tile_part)(long h, long kc, const float *ap, long ars, long acs, const float *bp, float *c,
                               long ldc, const float *init, int epi, const float *res, long ldr, const float *gamma) {
    switch (h) {
#define NK_PART(H) case H: if (H < NK_GEMM_MR) NK(gemm_tile_rows)(H < NK_GEMM_MR ? H : 1, kc, ap, ars, acs, bp, c, ldc, init, epi, res, ldr, gamma); break;
        NK_PART(1) NK_PART(2) NK_PART(3) NK_PART(4) NK_PART(5) NK_PART(6) NK_PART(7)
        NK_PART(8) NK_PART(9) NK_PART(10) NK_PART(11) NK_PART(12) NK_PART(13)
#undef NK_PART
    default: break;
    }
}
_Static_assert(NK_GEMM_MR <= 14, "gemm_tile_part has cases for up to 13 rows");

/* Any tile of h ≤ MR rows and nw ≤ 16 columns (a as in gemm_tile_rows), as both drivers store
 * them: a whole panel runs the whole register tile or one of h rows, in place; a partial panel
 * (nw < 16) runs the tile of h rows into a buffer on zero-padded columns and copies out the part
 * that exists, adding the residual there (reading only that part). init: the 16 starting values (of
 * a partial panel only the first nw are read), or NULL to start from c. */
static inline __attribute__((always_inline)) void NK(gemm_tile_any)(long h, long nw, long kc, const float *ap,
                                                                    long ars, long acs, const float *bp, float *c,
                                                                    long ldc, const float *init, int epi,
                                                                    const float *res, long ldr, const float *gamma) {
    if (nw == NK_GEMM_NR) {
        if (h == NK_GEMM_MR) NK(gemm_tile)(kc, ap, ars, acs, bp, c, ldc, init, epi, res, ldr, gamma);
        else NK(gemm_tile_part)(h, kc, ap, ars, acs, bp, c, ldc, init, epi, res, ldr, gamma);
        return;
    }
    float tile[NK_GEMM_MR * NK_GEMM_NR] __attribute__((aligned(64)));
    float edge_init[NK_GEMM_NR];
    if (init)
        for (long j = 0; j < NK_GEMM_NR; j++) edge_init[j] = j < nw ? init[j] : 0;
    else
        for (long r = 0; r < NK_GEMM_MR; r++)
            for (long j = 0; j < NK_GEMM_NR; j++) tile[r * NK_GEMM_NR + j] = r < h && j < nw ? c[r * ldc + j] : 0;
    const int tepi = epi == NK_GEMM_GELU ? epi : NK_GEMM_NONE;
    if (h == NK_GEMM_MR) NK(gemm_tile)(kc, ap, ars, acs, bp, tile, NK_GEMM_NR, init ? edge_init : 0, tepi, 0, 0, 0);
    else NK(gemm_tile_part)(h, kc, ap, ars, acs, bp, tile, NK_GEMM_NR, init ? edge_init : 0, tepi, 0, 0, 0);
    for (long r = 0; r < h; r++)
        for (long j = 0; j < nw; j++)
            c[r * ldc + j] = res ? NK(residual_one)(res[r * ldr + j], tile[r * NK_GEMM_NR + j], gamma ? gamma + j : 0)
                                 : tile[r * NK_GEMM_NR + j];
}

/* Lane interleaves of two vectors: lo = a0 b0 a1 b1 … (first halves), hi the same of the second halves. */
#if NK_W == 16
#define NK_ZIP_LO 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23
#define NK_ZIP_HI 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31
#elif NK_W == 8
#define NK_ZIP_LO 0, 8, 1, 9, 2, 10, 3, 11
#define NK_ZIP_HI 4, 12, 5, 13, 6, 14, 7, 15
#else
#define NK_ZIP_LO 0, 4, 1, 5
#define NK_ZIP_HI 2, 6, 3, 7
#endif

/* dst[p · ldd + r] = src[r · lds + p] for p < cols and r < `store` (≤ NK_W), the rows from `rows` on
 * (≤ NK_W) read as zero. With store = NK_W each p stores one whole vector, so dst needs
 * ldd · (cols − 1) + NK_W floats (with ldd < NK_W a store runs into the next p's place, which that
 * p's store then overwrites). W × W blocks are transposed in registers by log2(W) rounds of
 * interleaving row i with row i + W/2 (the perfect-shuffle transpose). */
static void NK(pack_transposed)(float *dst, long ldd, const float *src, long lds, long rows, long cols, long store) {
    for (long p0 = 0; p0 < cols; p0 += NK_W) {
        const long w = cols - p0 < NK_W ? cols - p0 : NK_W;
        vf r[NK_W];
        for (int i = 0; i < NK_W; i++) r[i] = i < rows ? ldn(src + i * lds + p0, w, 0) : splat(0);
        for (int round = 1; round < NK_W; round *= 2) {
            vf n[NK_W];
            for (int i = 0; i < NK_W / 2; i++) {
                n[2 * i] = __builtin_shufflevector(r[i], r[i + NK_W / 2], NK_ZIP_LO);
                n[2 * i + 1] = __builtin_shufflevector(r[i], r[i + NK_W / 2], NK_ZIP_HI);
            }
            for (int i = 0; i < NK_W; i++) r[i] = n[i];
        }
        for (long i = 0; i < w; i++) stn(dst + (p0 + i) * ldd, r[i], store);
    }
}

#undef NK_ZIP_LO
#undef NK_ZIP_HI

/* Packs rows [0, rows) × columns [k0, k0 + kc) of a into MR-row slivers (kc, MR), zero rows past
 * `rows`. Each sliver's last store runs NK_W − MR floats past it (the next sliver's place, or the
 * scratch's slack after the last). */
static void NK(gemm_pack_a)(float *dst, const float *a, long lda, long rows, long k0, long kc) {
    for (long i = 0; i < rows; i += NK_GEMM_MR) {
        const long h = rows - i < NK_GEMM_MR ? rows - i : NK_GEMM_MR;
        NK(pack_transposed)(dst, NK_GEMM_MR, a + i * lda + k0, lda, h, kc, NK_W);
        dst += kc * NK_GEMM_MR;
    }
}

long NK(nk_gemm_rows_per_tile)(void) { return NK_GEMM_MR; }

void NK(nk_gemm_packed)(float *out, long ldc, const float *a, long lda, const float *wp, const float *bias, long m,
                        long n, long k, int epilogue, const float *residual, long ldr, const float *gamma,
                        float *scratch) {
    const float zero[NK_GEMM_NR] = {0};
    if (m <= 0 || n <= 0) return;
    /* Narrow products read a in place, unless its rows are a multiple of 4 KiB apart: then the MR
     * rows' lines all fall into one L1 set and evict each other (n = 256, k = 1024 or 2048: 60
     * against 108 GFLOP/s at k = 512, single thread); packed, they are one stream. */
    const int pack = scratch && (n >= NK_GEMM_PACK_MIN_N || lda % 1024 == 0);
    for (long p0 = 0; p0 < k || p0 == 0; p0 += NK_GEMM_KC) {
        const long kc = k - p0 < NK_GEMM_KC ? k - p0 : NK_GEMM_KC;
        const int last = p0 + kc >= k;
        const int epi = last ? epilogue : NK_GEMM_NONE;
        for (long i0 = 0; i0 < m; i0 += NK_GEMM_MC) {
            const long mc = m - i0 < NK_GEMM_MC ? m - i0 : NK_GEMM_MC;
            if (pack) NK(gemm_pack_a)(scratch, a + i0 * lda, lda, mc, p0, kc);
            for (long j0 = 0; j0 < n; j0 += NK_GEMM_NR) {
                const float *bp = wp + j0 * k + p0 * NK_GEMM_NR;
                const long nw = n - j0 < NK_GEMM_NR ? n - j0 : NK_GEMM_NR;
                const float *init = p0 == 0 ? (bias ? bias + j0 : zero) : 0;
                for (long i = 0; i < mc; i += NK_GEMM_MR) {
                    const long h = mc - i < NK_GEMM_MR ? mc - i : NK_GEMM_MR;
                    const float *res = epi == NK_GEMM_RESIDUAL ? residual + (i0 + i) * ldr + j0 : 0;
                    const float *g = epi == NK_GEMM_RESIDUAL && gamma ? gamma + j0 : 0;
                    float *c = out + (i0 + i) * ldc + j0;
                    /* Two calls, so that each inlined tile sees its layout's column stride as a
                     * constant (MR or 1) and addresses a's elements by immediate offsets. */
                    if (pack)
                        NK(gemm_tile_any)(h, nw, kc, scratch + i * kc, 1, NK_GEMM_MR, bp, c, ldc, init, epi, res, ldr, g);
                    else
                        NK(gemm_tile_any)(h, nw, kc, a + (i0 + i) * lda + p0, lda, 1, bp, c, ldc, init, epi, res, ldr, g);
                }
            }
        }
        if (k == 0) break;
    }
}

/* The weight-gradient product, libneco's second GEMM driver on the same micro-kernel:
 *     out (m, n) = (accumulate ? out : 0) + aᵀ · b,   a (k, m) and b (k, n) row-major, strides lda, ldb,
 * as a Linear's dW (out, in) += dYᵀ · X takes it (dY (rows, out), X (rows, in); the sum runs over
 * the rows). Both operands change every call, so both are packed per block (Goto/BLIS): columns in
 * blocks of NK_GEMM_NC, K in blocks of NK_GEMM_KC, b's block into 16-wide panels ((kc, 16) each, row
 * p the contiguous run b[p0 + p, j .. j + 16)), then rows in blocks of MC, a's block into MR-row
 * slivers ((kc, MR) each, row p the contiguous run a[p0 + p, i .. i + MR), NK_W floats apart). The
 * column block spans a whole weight gradient's width (NC = 2048), so a's block is packed once per K
 * block; b's (KC, NC) block need not fit L2, as its panels stream into L1 one at a time. Each output element is
 * one FMA chain in k order, starting from its value in out (accumulate) or from 0, so the result
 * does not depend on how callers split the rows or columns. scratch_a holds a packed row block with its
 * gaps (gemm.c's per-thread scratch), scratch_b NK_GEMM_KC * NK_GEMM_NC floats. */
/* Packs columns [0, rows) of rows [0, kc) of a (k-major: a[p, i] at a[p * lda + i]) into MR-column
 * slivers (kc, MR) `stride` floats apart (stride ≥ kc · MR + NK_W − MR), a row of a at a time (its
 * run of `rows` floats read once, in order). Each store writes a whole vector: lanes past MR land in
 * the sliver's next row, which the next store overwrites, or in the gap after its last. A whole
 * vector is read where a's row has NK_W columns left (`m_left` from column 0); the last, partial
 * sliver (h < MR, the matrix's last columns) reads h lanes and zero-fills the rest. */
static void NK(gemm_pack_a_kmajor)(float *dst, long stride, const float *a, long lda, long m_left, long rows, long kc) {
    for (long p = 0; p < kc; p++) {
        const float *src = a + p * lda;
        float *d = dst + p * NK_GEMM_MR;
        for (long i = 0; i < rows; i += NK_GEMM_MR, d += stride) {
            const long h = rows - i < NK_GEMM_MR ? rows - i : NK_GEMM_MR;
            st(d, m_left - i >= NK_W ? ld(src + i) : ld_part(src + i, h, 0));
        }
    }
}

static void NK(gemm_pack_b_kmajor)(float *dst, const float *b, long ldb, long cols, long kc) {
    for (long j0 = 0; j0 < cols; j0 += NK_GEMM_NR) {
        const long nw = cols - j0 < NK_GEMM_NR ? cols - j0 : NK_GEMM_NR;
        float *panel = dst + j0 * kc;
        for (long p = 0; p < kc; p++)
            for (int u = 0; u < NK_GEMM_NV; u++) {
                const long w = nw - u * NK_W;
                st(panel + p * NK_GEMM_NR + u * NK_W,
                   w >= NK_W ? ld(b + p * ldb + j0 + u * NK_W) : w > 0 ? ld_part(b + p * ldb + j0 + u * NK_W, w, 0) : splat(0));
            }
    }
}

void NK(nk_gemm_tn)(float *out, long ldc, const float *a, long lda, const float *b, long ldb, long m, long n, long k,
                    int accumulate, float *scratch_a, float *scratch_b) {
    const float zero[NK_GEMM_NR] = {0};
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        if (!accumulate)
            for (long i = 0; i < m; i++)
                for (long j = 0; j < n; j++) out[i * ldc + j] = 0;
        return;
    }
    for (long jc = 0; jc < n; jc += NK_GEMM_NC) {
        const long nc = n - jc < NK_GEMM_NC ? n - jc : NK_GEMM_NC;
        for (long p0 = 0; p0 < k; p0 += NK_GEMM_KC) {
            const long kc = k - p0 < NK_GEMM_KC ? k - p0 : NK_GEMM_KC;
            const float *init = p0 == 0 && !accumulate ? zero : 0;
            const long sliver = kc * NK_GEMM_MR + NK_W; /* floats between packed slivers of a */
            NK(gemm_pack_b_kmajor)(scratch_b, b + p0 * ldb + jc, ldb, nc, kc);
            for (long i0 = 0; i0 < m; i0 += NK_GEMM_MC) {
                const long mc = m - i0 < NK_GEMM_MC ? m - i0 : NK_GEMM_MC;
                NK(gemm_pack_a_kmajor)(scratch_a, sliver, a + p0 * lda + i0, lda, m - i0, mc, kc);
                for (long j0 = 0; j0 < nc; j0 += NK_GEMM_NR) {
                    const float *bp = scratch_b + j0 * kc;
                    const long nw = nc - j0 < NK_GEMM_NR ? nc - j0 : NK_GEMM_NR;
                    for (long i = 0; i < mc; i += NK_GEMM_MR) {
                        const long h = mc - i < NK_GEMM_MR ? mc - i : NK_GEMM_MR;
                        float *c = out + (i0 + i) * ldc + jc + j0;
                        const float *ap = scratch_a + i / NK_GEMM_MR * sliver;
                        /* The next tile's rows of out, which it reads first (out is m × n: beyond
                         * the caches for a weight's gradient). */
                        for (long r = NK_GEMM_MR; r < 2 * NK_GEMM_MR && i + r < mc; r++)
                            __builtin_prefetch(c + r * ldc, 1, 3);
                        NK(gemm_tile_any)(h, nw, kc, ap, 1, NK_GEMM_MR, bp, c, ldc, init, NK_GEMM_NONE, 0, 0, 0);
                    }
                }
            }
        }
    }
}
