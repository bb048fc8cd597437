/* attention_body.h: one (batch, head) of softmax attention with no (T, T) score matrix, included by
 * kernels_body.h after gemm_body.h (so compiled once per path, on that path's micro-kernel).
 *
 *     out[i, :] = Σ_j P[i, j] v[j, :],   P[i, :] = softmax(scale · q[i, :] · kᵀ),   i, j < t,
 *
 * q, k, v (t, e) row-major with row stride ldx (the fused qkv layout), out (t, e) row stride ldo.
 *
 * The queries go in blocks of 16 (one GEMM panel width). For a block:
 *   1. scores, transposed: sᵀ (keys, 16) = k (keys, e) · q_blockᵀ, by the GEMM micro-kernel
 *      (gemm_tile), the keys packed once per head as its row slivers (gemm_pack_a) and the
 *      block's queries as its 16-wide panel (e, 16), both transposed in registers
 *      (pack_transposed); every score is one FMA chain in e order;
 *   2. softmax down each column of sᵀ: a query's 16 lanes sit side by side, so the maximum, the
 *      exponentials and the sum are whole-vector work for any t (no row tails). The division by
 *      the sum is left to step 3;
 *   3. out_block (16, e) = sᵀᵀ · v: sᵀ is already the micro-kernel's row sliver of the 16 queries;
 *      v is copied once per head into 16-channel panels ((t, 16) each, contiguous, zero past e),
 *      which every query block then streams; each row is scaled by 1 / its sum when stored.
 *      (Read in place, v's rows are ld floats apart: where that is a multiple of 4 KiB, as in
 *      ViT-L's fused qkv rows of 3 · 1024 floats, every row's line falls into the same L1 set and
 *      a panel could not stay cached: AVX2 ran a T = 261 head in 274–290 µs, packed in 201. At
 *      T = 10001, each query block walked 10001 rows a page apart: attention at 1400 px ran at 132
 *      GFLOP/s in place, 197 packed.)
 * Memory per call: the packed keys and values and one (t, 16) block of scores: O(t · e), never
 * O(t²).
 * Training's backward asks for the probabilities too (step 4: sᵀ · 1/sum, written out as (t, t)
 * rows); the heads are then the same bits as in a forward that wrote none. nk_attention_head_backward
 * (below) takes those probabilities and runs the head's four backward products and its softmax
 * backward on the same micro-kernel.
 */

#if NK_W == 16
#define NK_ATT_PR 16 /* query rows per P·v tile: 16 accumulators (of 32 registers) */
#elif NK_W == 8
#define NK_ATT_PR 6  /* 6 × 2 accumulators (of 16 registers; a block's last 4 queries: 4 × 2) */
#else
#define NK_ATT_PR 2  /* 2 × 4 accumulators (of 16 registers) */
#endif
/* Rows of a query block's last P·v tile when NK_ATT_PR does not divide the block's 16. */
#define NK_ATT_LAST (NK_GEMM_NR % NK_ATT_PR ? NK_GEMM_NR % NK_ATT_PR : NK_ATT_PR)

/* o (rows, cols) = inv[r] · Σ_j pt[j·16 + r] vp[j, :] for rows ≤ R query rows and cols ≤ 16
 * channels, j < t, with R (≤ NK_ATT_PR, a constant at each call) rows of accumulators: pt is sᵀ
 * offset to the tile's first query, vp a packed 16-channel panel of v ((t, 16), zero past the
 * head's channels); only the first cols channels are stored. Each output is the same FMA chain
 * whatever R. */
static inline __attribute__((always_inline)) void NK(att_pv_tile)(const int R, float *o, long ldo, const float *pt,
                                                                  const float *vp, long t, long cols, long rows,
                                                                  const float *inv) {
    vf acc[NK_ATT_PR][NK_GEMM_NV];
    for (int r = 0; r < R; r++)
        for (int u = 0; u < NK_GEMM_NV; u++) acc[r][u] = splat(0);
    for (long j = 0; j < t; j++) {
        vf b[NK_GEMM_NV];
        for (int u = 0; u < NK_GEMM_NV; u++) b[u] = ld(vp + j * NK_GEMM_NR + u * NK_W);
        for (int r = 0; r < R; r++) {
            const vf a = splat(pt[j * NK_GEMM_NR + r]);
            for (int u = 0; u < NK_GEMM_NV; u++) acc[r][u] = a * b[u] + acc[r][u];
        }
    }
    for (long r = 0; r < rows; r++)
        for (int u = 0; u < NK_GEMM_NV; u++) {
            const long n = cols - u * NK_W;
            if (n > 0) stn(o + r * ldo + u * NK_W, acc[r][u] * splat(inv[r]), n >= NK_W ? NK_W : n);
        }
}

/* The forward's scratch (nk_attention_scratch_floats): the keys as row slivers, the values as
 * 16-channel panels, and one query block's scores, queries and 1 / sums. */
typedef struct {
    float *ks; /* (kr / MR) key slivers, (e, MR) each (+ NK_W − MR floats of overrun) */
    float *vp; /* (e16 / 16) value panels, (t, 16) each, zero past e */
    float *sT; /* (kr, 16) scores of a query block, transposed */
    float *qp; /* (e, 16) the block's queries, transposed */
    float *inv; /* (16) 1 / each query's sum */
} NK(att_work);

/* Lays the forward's scratch out and packs the head's keys and values into it. */
static NK(att_work) NK(att_prepare)(const float *k, const float *v, long ldx, long t, long e, float *scratch) {
    const long kr = (t + NK_GEMM_MR - 1) / NK_GEMM_MR * NK_GEMM_MR; /* keys in whole slivers */
    const long e16 = (e + NK_GEMM_NR - 1) / NK_GEMM_NR * NK_GEMM_NR;
    NK(att_work) w;
    w.ks = scratch;
    w.vp = w.ks + kr * e;
    w.sT = w.vp + t * e16;
    w.qp = w.sT + kr * NK_GEMM_NR;
    w.inv = w.qp + e * NK_GEMM_NR;
    NK(gemm_pack_a)(w.ks, k, ldx, t, 0, e);
    NK(gemm_pack_b_kmajor)(w.vp, v, ldx, e, t); /* v (t, e) as the weight gradient packs its b */
    return w;
}

/* Steps 1–4 for the n ≤ 16 queries from i0: out rows i0 .. i0 + n (when out is not NULL) and, when
 * probs is not NULL, their probabilities at probs (row r of the block at probs + r · ldp). */
static void NK(att_query_block)(float *out, long ldo, const float *q, long ldx, long i0, long n, long t, long e,
                                float scale, float *probs, long ldp, const NK(att_work) *w) {
    const float zero[NK_GEMM_NR] = {0};
    float *sT = w->sT, *qp = w->qp, *inv = w->inv;
    const float *ks = w->ks, *vp = w->vp;
    for (long c0 = 0; c0 < NK_GEMM_NR; c0 += NK_W)
        NK(pack_transposed)(qp + c0, NK_GEMM_NR, q + (i0 + c0) * ldx, ldx, n - c0 < 0 ? 0 : n - c0, e, NK_W);
    /* 1. sᵀ[j, c] = k[j, :] · q[i0 + c, :] (padding keys and queries give 0, never read below). */
    for (long j0 = 0; j0 < t; j0 += NK_GEMM_MR)
        NK(gemm_tile)(e, ks + j0 * e, 1, NK_GEMM_MR, qp, sT + j0 * NK_GEMM_NR, NK_GEMM_NR, zero, NK_GEMM_NONE, 0, 0, 0);
    /* 2. Per query lane: e^(scale·s − scale·max) over the t keys, and 1 / their sum. */
    for (int u = 0; u < NK_GEMM_NV; u++) {
        float *col = sT + u * NK_W;
        vf mx = splat(-__builtin_inff());
        for (long j = 0; j < t; j++) mx = vmax_run(mx, ld(col + j * NK_GEMM_NR));
        const vf shift = mx * scale;
        vf sum = splat(0);
        for (long j = 0; j < t; j++) {
            const vf x = vexp(ld(col + j * NK_GEMM_NR) * scale - shift);
            st(col + j * NK_GEMM_NR, x);
            sum += x;
        }
        st(inv + u * NK_W, 1.0f / sum);
    }
    /* 3. out[i0 + r, :] = inv[r] · Σ_j sᵀ[j, r] v[j, :], in tiles of NK_ATT_PR queries × 16 channels. */
    for (long r0 = 0; out && r0 < n; r0 += NK_ATT_PR) {
        const long rows = n - r0 < NK_ATT_PR ? n - r0 : NK_ATT_PR;
        const int whole = NK_GEMM_NR - r0 >= NK_ATT_PR; /* else the block's last NK_ATT_LAST queries */
        for (long c0 = 0; c0 < e; c0 += NK_GEMM_NR) {
            float *o = out + (i0 + r0) * ldo + c0;
            const float *pt = sT + r0, *panel = vp + c0 * t;
            const long cols = e - c0 < NK_GEMM_NR ? e - c0 : NK_GEMM_NR;
            if (whole) NK(att_pv_tile)(NK_ATT_PR, o, ldo, pt, panel, t, cols, rows, inv + r0);
            else NK(att_pv_tile)(NK_ATT_LAST, o, ldo, pt, panel, t, cols, rows, inv + r0);
        }
    }
    /* 4. probs[c, j] = sᵀ[j, c] · inv[c], transposed back a W-key block at a time. */
    if (probs) {
        for (long j = 0; j < t; j++)
            for (int u = 0; u < NK_GEMM_NV; u++)
                st(sT + j * NK_GEMM_NR + u * NK_W, ld(sT + j * NK_GEMM_NR + u * NK_W) * ld(inv + u * NK_W));
        for (long j0 = 0; j0 < t; j0 += NK_W) {
            const long wd = t - j0 < NK_W ? t - j0 : NK_W;
            NK(pack_transposed)(probs + j0, ldp, sT + j0 * NK_GEMM_NR, NK_GEMM_NR, wd, n, wd);
        }
    }
}

void NK(nk_attention_head)(float *out, long ldo, const float *q, const float *k, const float *v, long ldx, long t,
                           long e, float scale, float *probs, long ldp, float *scratch) {
    if (t <= 0 || e <= 0) return;
    const NK(att_work) w = NK(att_prepare)(k, v, ldx, t, e, scratch);
    for (long i0 = 0; i0 < t; i0 += NK_GEMM_NR) {
        const long n = t - i0 < NK_GEMM_NR ? t - i0 : NK_GEMM_NR;
        NK(att_query_block)(out, ldo, q, ldx, i0, n, t, e, scale, probs ? probs + i0 * ldp : 0, ldp, &w);
    }
}

/* c (m, n) = (accumulate ? c : 0) + a · b on the micro-kernel, for the backward's products: a's
 * element (r, p) at a[r·lda + p] (rows read in place), or with `a_transposed` at a[p·lda + r] (a is
 * the transpose of a stored (kdim, m) matrix: each p gives a tile MR contiguous floats); b packed as
 * 16-wide panels (kdim, 16), panel j0 / 16 at bp + j0 · kdim (zero columns past n). Each element is
 * one FMA chain in p order from 0 over the whole K (no K blocks), added to c once at the end (the
 * residual epilogue reading c in place; a chain continuing from c would round each of the kdim
 * terms at c's magnitude). A row tile runs every panel while its part of a stays in cache.
 * A transposed a is read in place (one cache line per p), except by tiles narrower than 8 rows over
 * a long K: those pack their columns into one (kdim, MR) sliver (`sliver`: kdim · MR + NK_W floats)
 * first, as their kdim lines, a quarter used, no longer stay in L1 across the panels (single
 * thread, best of 60: AVX2 at T = 1029 89 against 77 GFLOP/s packed; in place as fast or faster up
 * to T = 581 on AVX2 and at every T on AVX-512). */
static void NK(att_product)(float *c, long ldc, const float *a, long lda, const int a_transposed, float *sliver,
                            const float *bp, long m, long n, long kdim, int accumulate) {
    const float zero[NK_GEMM_NR] = {0};
    const int epi = accumulate ? NK_GEMM_RESIDUAL : NK_GEMM_NONE;
    const int pack = a_transposed && NK_GEMM_MR < 8 && kdim > 2 * NK_GEMM_KC;
    for (long i = 0; i < m; i += NK_GEMM_MR) {
        const long h = m - i < NK_GEMM_MR ? m - i : NK_GEMM_MR;
        if (pack) NK(gemm_pack_a_kmajor)(sliver, 0, a + i, lda, m - i, h, kdim);
        for (long j0 = 0; j0 < n; j0 += NK_GEMM_NR) {
            const long nw = n - j0 < NK_GEMM_NR ? n - j0 : NK_GEMM_NR;
            float *o = c + i * ldc + j0;
            const float *res = accumulate ? o : 0;
            /* Separate calls, so that each inlined tile sees its layout's constant stride. */
            if (pack)
                NK(gemm_tile_any)(h, nw, kdim, sliver, 1, NK_GEMM_MR, bp + j0 * kdim, o, ldc, zero, epi, res, ldc, 0);
            else if (a_transposed)
                NK(gemm_tile_any)(h, nw, kdim, a + i, 1, lda, bp + j0 * kdim, o, ldc, zero, epi, res, ldc, 0);
            else
                NK(gemm_tile_any)(h, nw, kdim, a + i * lda, lda, 1, bp + j0 * kdim, o, ldc, zero, epi, res, ldc, 0);
        }
    }
}

/* The backward's whole-head operands: k as panels (t, 16) into kp, vᵀ as panels (e, 16) of 16 keys
 * into vt. */
static void NK(att_pack_backward)(float *kp, float *vt, const float *k, const float *v, long ldx, long t, long e) {
    const long t16 = (t + NK_GEMM_NR - 1) / NK_GEMM_NR * NK_GEMM_NR;
    NK(gemm_pack_b_kmajor)(kp, k, ldx, e, t);
    for (long j0 = 0; j0 < t16; j0 += NK_GEMM_NR)
        for (long c0 = 0; c0 < NK_GEMM_NR; c0 += NK_W) {
            const long rows = t - j0 - c0 < 0 ? 0 : t - j0 - c0;
            NK(pack_transposed)(vt + j0 * e + c0, NK_GEMM_NR, v + (j0 + c0) * ldx, ldx, rows, e, NK_W);
        }
}

/* The backward of m query rows (all t of them, or a strip) given their probabilities p (m, t),
 * row stride t: dq, dout, q and p point at the rows' first; dk and dv are the whole head's.
 *     dv += pᵀ · dO;  dP = dO · vᵀ;  dS = scale · p ⊙ (dP − rowsum(dP ⊙ p));  dq += dS · k;  dk += dSᵀ · q
 * ds: (m, t) for dP, then dS in place; dop, qp: (m, e16) for the rows' dO and q packed as panels;
 * kp, vt from att_pack_backward; sliver: one row tile of pᵀ or dSᵀ, (m, MR) (+ NK_W floats). */
static void NK(att_backward_rows)(float *dq, float *dk, float *dv, long ldd, const float *dout, long ldo,
                                  const float *q, long ldx, const float *p, float *ds, float *dop, float *qp,
                                  const float *kp, const float *vt, float *sliver, long m, long t, long e,
                                  float scale) {
    NK(gemm_pack_b_kmajor)(dop, dout, ldo, e, m);
    NK(gemm_pack_b_kmajor)(qp, q, ldx, e, m);
    /* dV (t, e) += pᵀ · dO */
    NK(att_product)(dv, ldd, p, t, 1, sliver, dop, t, e, m, 1);
    /* dP (m, t) = dO · vᵀ;  dS = scale · p ⊙ (dP − rowsum(dP ⊙ p)) */
    NK(att_product)(ds, t, dout, ldo, 0, sliver, vt, m, t, e, 0);
    NK(nk_softmax_backward_rows)(ds, ds, p, m, t, scale, 0);
    /* dQ (m, e) += dS · k;  dK (t, e) += dSᵀ · q */
    NK(att_product)(dq, ldd, ds, t, 0, sliver, kp, m, e, t, 1);
    NK(att_product)(dk, ldd, ds, t, 1, sliver, qp, t, e, m, 1);
}

void NK(nk_attention_head_backward)(float *dq, float *dk, float *dv, long ldd, const float *dout, long ldo,
                                    const float *q, const float *k, const float *v, long ldx, const float *probs,
                                    long t, long e, float scale, float *scratch) {
    if (t <= 0 || e <= 0) return;
    const long e16 = (e + NK_GEMM_NR - 1) / NK_GEMM_NR * NK_GEMM_NR;
    const long t16 = (t + NK_GEMM_NR - 1) / NK_GEMM_NR * NK_GEMM_NR;
    float *ds = scratch;          /* (t, t) dP, then dS in place */
    float *dop = ds + t * t;      /* dO (t, e) as panels (t, 16) */
    float *kp = dop + t * e16;    /* k (t, e) as panels (t, 16) */
    float *qp = kp + t * e16;     /* q (t, e) as panels (t, 16) */
    float *vt = qp + t * e16;     /* vᵀ (e, t) as panels (e, 16) of 16 keys */
    float *sliver = vt + t16 * e; /* one row tile of Pᵀ or dSᵀ, (t, MR) (+ NK_W floats of overrun) */
    NK(att_pack_backward)(kp, vt, k, v, ldx, t, e);
    NK(att_backward_rows)(dq, dk, dv, ldd, dout, ldo, q, ldx, probs, ds, dop, qp, kp, vt, sliver, t, t, e, scale);
}

/* The backward with the probabilities recomputed, a strip of NK_ATTENTION_STRIP queries at a time
 * (nk_kernels.h): per strip the forward's query blocks rebuild its rows of P (and of the head's
 * output, when `heads` is not NULL, the forward's bits), then att_backward_rows runs the strip:
 *     dv += P_sᵀ · dO_s;   dP_s = dO_s · vᵀ;   dS_s = scale · P_s ⊙ (dP_s − rowsum(dP_s ⊙ P_s));
 *     dq_s += dS_s · k;    dk += dS_sᵀ · q_s.
 * The strip's P and dS rows (2 · strip · t floats) stay in L2 where whole (t, t) matrices, two
 * per worker, would not. dq's rows and every P and dS element are the bits of the whole-matrix
 * kernel above; dv and dk add one sum per strip (each one FMA chain over the strip's queries). */
void NK(nk_attention_head_backward_recompute)(float *dq, float *dk, float *dv, long ldd, const float *dout, long ldo,
                                              const float *q, const float *k, const float *v, long ldx, float *heads,
                                              long ldh, long t, long e, float scale, float *scratch) {
    if (t <= 0 || e <= 0) return;
    const long e16 = (e + NK_GEMM_NR - 1) / NK_GEMM_NR * NK_GEMM_NR;
    const long t16 = (t + NK_GEMM_NR - 1) / NK_GEMM_NR * NK_GEMM_NR;
    const long strip = NK_ATTENTION_STRIP;
    const NK(att_work) w = NK(att_prepare)(k, v, ldx, t, e, scratch);
    float *kp = scratch + nk_attention_scratch_floats(t, e); /* k (t, e) as panels (t, 16) */
    float *vt = kp + t * e16;        /* vᵀ (e, t) as panels (e, 16) of 16 keys */
    float *ps = vt + t16 * e;        /* (strip, t) the strip's P */
    float *ds = ps + strip * t;      /* (strip, t) its dP, then dS in place */
    float *dop = ds + strip * t;     /* the strip's dO (strip, e) as panels (strip, 16) */
    float *qp = dop + strip * e16;   /* the strip's q (strip, e) as panels (strip, 16) */
    float *sliver = qp + strip * e16; /* att_product's (never used here: K ≤ strip) */
    NK(att_pack_backward)(kp, vt, k, v, ldx, t, e);
    for (long s0 = 0; s0 < t; s0 += strip) {
        const long m = t - s0 < strip ? t - s0 : strip;
        for (long i0 = s0; i0 < s0 + m; i0 += NK_GEMM_NR) {
            const long n = s0 + m - i0 < NK_GEMM_NR ? s0 + m - i0 : NK_GEMM_NR;
            NK(att_query_block)(heads, ldh, q, ldx, i0, n, t, e, scale, ps + (i0 - s0) * t, t, &w);
        }
        NK(att_backward_rows)(dq + s0 * ldd, dk, dv, ldd, dout + s0 * ldo, ldo, q + s0 * ldx, ldx, ps, ds, dop, qp, kp,
                              vt, sliver, m, t, e, scale);
    }
}

#undef NK_ATT_PR
#undef NK_ATT_LAST
