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
 *   3. out_block (16, e) = sᵀᵀ · v: sᵀ is already the micro-kernel's row sliver of the 16 queries
 *      and v's rows are read in place as 16-channel panels, so nothing is packed; each row is
 *      scaled by 1 / its sum when stored.
 * Memory per call: the packed keys and one (t, 16) block of scores: O(t · e), never O(t²).
 * Training's backward asks for the probabilities too (step 4: sᵀ · 1/sum, written out as (t, t)
 * rows); the heads are then the same bits as in a forward that wrote none.
 */

#if NK_W == 16
#define NK_ATT_PR 16 /* query rows per P·v tile: 16 accumulators (of 32 registers) */
#elif NK_W == 8
#define NK_ATT_PR 4  /* 4 × 2 accumulators (of 16 registers) */
#else
#define NK_ATT_PR 2  /* 2 × 4 accumulators (of 16 registers) */
#endif
_Static_assert(NK_GEMM_NR % NK_ATT_PR == 0, "a query block is whole P·v tiles");

/* o (rows, cols) = inv[r] · Σ_j pt[j·16 + r] v[j, :] for rows ≤ NK_ATT_PR query rows and cols ≤ 16
 * channels, j < t: pt is sᵀ offset to the tile's first query, v offset to its first channel.
 * `full` (a constant at each call) is cols == 16; otherwise (a head narrower than 16 channels, or
 * its last partial panel) the lanes past cols read as 0. */
static inline __attribute__((always_inline)) void NK(att_pv_tile)(float *o, long ldo, const float *pt, const float *v,
                                                                  long ldx, long t, long cols, long rows,
                                                                  const float *inv, const int full) {
    vf acc[NK_ATT_PR][NK_GEMM_NV];
    for (int r = 0; r < NK_ATT_PR; r++)
        for (int u = 0; u < NK_GEMM_NV; u++) acc[r][u] = splat(0);
    for (long j = 0; j < t; j++) {
        vf b[NK_GEMM_NV];
        for (int u = 0; u < NK_GEMM_NV; u++) {
            const long n = full ? NK_W : cols - u * NK_W;
            b[u] = n >= NK_W ? ld(v + j * ldx + u * NK_W) : n > 0 ? ld_part(v + j * ldx + u * NK_W, n, 0) : splat(0);
        }
        for (int r = 0; r < NK_ATT_PR; r++) {
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

void NK(nk_attention_head)(float *out, long ldo, const float *q, const float *k, const float *v, long ldx, long t,
                           long e, float scale, float *probs, long ldp, float *scratch) {
    if (t <= 0 || e <= 0) return;
    const long kr = (t + NK_GEMM_MR - 1) / NK_GEMM_MR * NK_GEMM_MR; /* keys in whole slivers */
    float *ks = scratch;                 /* (kr / MR) key slivers, (e, MR) each (+ NK_W − MR floats of overrun) */
    float *sT = ks + kr * e;             /* (kr, 16) scores of a query block, transposed */
    float *qp = sT + kr * NK_GEMM_NR;    /* (e, 16) the block's queries, transposed */
    float *inv = qp + e * NK_GEMM_NR;    /* (16) 1 / each query's sum */
    const float zero[NK_GEMM_NR] = {0};
    NK(gemm_pack_a)(ks, k, ldx, t, 0, e);
    for (long i0 = 0; i0 < t; i0 += NK_GEMM_NR) {
        const long n = t - i0 < NK_GEMM_NR ? t - i0 : NK_GEMM_NR;
        for (long c0 = 0; c0 < NK_GEMM_NR; c0 += NK_W)
            NK(pack_transposed)(qp + c0, NK_GEMM_NR, q + (i0 + c0) * ldx, ldx, n - c0 < 0 ? 0 : n - c0, e, NK_W);
        /* 1. sᵀ[j, c] = k[j, :] · q[i0 + c, :] (padding keys and queries give 0, never read below). */
        for (long j0 = 0; j0 < t; j0 += NK_GEMM_MR)
            NK(gemm_tile)(e, ks + j0 * e, 1, NK_GEMM_MR, qp, sT + j0 * NK_GEMM_NR, NK_GEMM_NR, zero, NK_GEMM_NONE, 0, 0, 0);
        /* 2. Per query lane: e^(scale·s − scale·max) over the t keys, and 1 / their sum. */
        for (int u = 0; u < NK_GEMM_NV; u++) {
            float *col = sT + u * NK_W;
            vf mx = splat(-__builtin_inff());
            for (long j = 0; j < t; j++) mx = vmax(mx, ld(col + j * NK_GEMM_NR));
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
            for (long c0 = 0; c0 < e; c0 += NK_GEMM_NR) {
                float *o = out + (i0 + r0) * ldo + c0;
                if (e - c0 >= NK_GEMM_NR) NK(att_pv_tile)(o, ldo, sT + r0, v + c0, ldx, t, NK_GEMM_NR, rows, inv + r0, 1);
                else NK(att_pv_tile)(o, ldo, sT + r0, v + c0, ldx, t, e - c0, rows, inv + r0, 0);
            }
        }
        /* 4. probs[i0 + c, j] = sᵀ[j, c] · inv[c], transposed back a W-key block at a time. */
        if (probs) {
            for (long j = 0; j < t; j++)
                for (int u = 0; u < NK_GEMM_NV; u++)
                    st(sT + j * NK_GEMM_NR + u * NK_W, ld(sT + j * NK_GEMM_NR + u * NK_W) * ld(inv + u * NK_W));
            for (long j0 = 0; j0 < t; j0 += NK_W) {
                const long w = t - j0 < NK_W ? t - j0 : NK_W;
                NK(pack_transposed)(probs + i0 * ldp + j0, ldp, sT + j0 * NK_GEMM_NR, NK_GEMM_NR, w, n, w);
            }
        }
    }
}

#undef NK_ATT_PR
