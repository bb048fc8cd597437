import NecoCore

/// Backward of multi-head self-attention that recomputes the probabilities instead of storing
/// them. Reference: `torch.nn.functional.scaled_dot_product_attention` (explicit math path).
///
/// Letters: B batch, T tokens, H heads, E head dim, D = H·E. Layout as `Attention` (NecoCore):
/// qkv (B, T, 3D) with feature k ↦ (which = k / D, head = (k mod D) / E, channel = k mod E).
///
/// Forward (`Attention.forward`, unchanged): P = softmax(q·kᵀ · scale) (T, T) per (b, head);
/// out[:, head] = P · v.
///
/// Storing P for training costs B·H·T² floats per block (26 MB per block for 16 views of ViT-S at
/// 224), more than everything else the block keeps. Backward therefore recomputes P per (b, head)
/// with the forward's own kernel (`Attention.head`, asked for P this time), which in the same call
/// rebuilds the head outputs P·v bit for bit as the forward wrote them: the projection's weight
/// gradient needs those, so they are not stored either.
///
/// Given dOut = dL/d(heads) (B, T, D):
///     dV += Pᵀ · dO;  dP = dO · vᵀ;  dS = P ⊙ (dP − rowsum(dP ⊙ P)) · scale
///     dQ += dS · k;   dK += dSᵀ · q
/// Gradient convention: `dQKV` accumulates (`+=`); `headsOut` is written exactly once.
/// - Complexity: one extra q·kᵀ and softmax per (b, head) over a stored-P backward, and P·v when
///   `headsOut` is asked for.
public enum AttentionRecompute {
    /// Scratch floats per worker: two (T, T) matrices and one `Attention.head` scratch.
    public static func scratchCount(tokens: Int, headDim: Int) -> Int {
        Threads.count * (2 * tokens * tokens + Attention.headScratchCount(tokens: tokens, headDim: headDim))
    }

    @inlinable
    public static func backward(dQKV: UnsafeMutablePointer<Float>, headsOut: UnsafeMutablePointer<Float>?,
                                dOut: UnsafePointer<Float>, qkv: UnsafePointer<Float>,
                                scratch: UnsafeMutablePointer<Float>,
                                batch: Int, tokens: Int, heads: Int, headDim: Int, scale: Float) {
        let d = heads * headDim
        let t = tokens
        let pairs = batch * heads
        let per = 2 * t * t + Attention.headScratchCount(tokens: t, headDim: headDim)
        Threads.parallelDynamic(pairs) { slot, s, e in
            let p = scratch + slot * per             // (T, T) probabilities
            let ds = p + t * t                       // (T, T) score gradient
            let kernelScratch = ds + t * t           // the attention kernel's own
            for pair in s..<e {
                let b = pair / heads, h = pair % heads
                let base = qkv + b * t * 3 * d
                let dbase = dQKV + b * t * 3 * d
                let q = base + h * headDim, k = base + d + h * headDim, v = base + 2 * d + h * headDim
                let dq = dbase + h * headDim, dk = dbase + d + h * headDim, dv = dbase + 2 * d + h * headDim
                let dO = dOut + b * t * d + h * headDim
                // Recompute with the forward's kernel: P (T, T) = softmax(q · kᵀ · scale) and, when
                // asked, out_h (T, E) = P · v, the bits the forward wrote.
                Attention.head(out: headsOut, probs: p, qkv: qkv, pair: pair, tokens: t, heads: heads, headDim: headDim,
                               scale: scale, scratch: kernelScratch)
                // dV (T, E) += Pᵀ (T, T) · dO (T, E)
                Gemm.gemm(out: dv, a: p, b: dO, m: t, n: headDim, k: t, transA: true, beta: 1,
                          ldb: d, ldc: 3 * d, parallel: false)
                // dP (T, T) = dO (T, E) · vᵀ;  dS = softmax backward (written once into ds)
                Gemm.gemm(out: ds, a: dO, b: v, m: t, n: t, k: headDim, transB: true, lda: d, ldb: 3 * d,
                          parallel: false)
                softmaxBackwardInPlace(ds, probs: p, rows: t, cols: t, scale: scale)
                // dQ (T, E) += dS (T, T) · k (T, E);  dK (T, E) += dSᵀ · q
                Gemm.gemm(out: dq, a: ds, b: k, m: t, n: headDim, k: t, beta: 1, ldb: 3 * d, ldc: 3 * d,
                          parallel: false)
                Gemm.gemm(out: dk, a: ds, b: q, m: t, n: headDim, k: t, transA: true, beta: 1,
                          ldb: 3 * d, ldc: 3 * d, parallel: false)
            }
        }
    }

    /// In place, for one (T, T) block: g[r, j] ← scale · P[r, j] · (g[r, j] − Σ_k g[r, k] · P[r, k]).
    /// The formula of `Softmax.backward(accumulate: false)` with `dInput == dOut`.
    @inlinable
    public static func softmaxBackwardInPlace(_ g: UnsafeMutablePointer<Float>, probs: UnsafePointer<Float>,
                                              rows: Int, cols: Int, scale: Float) {
        Softmax.backward(dInput: g, dOut: g, probs: probs, rows: rows, cols: cols, scale: scale, accumulate: false)
    }
}
