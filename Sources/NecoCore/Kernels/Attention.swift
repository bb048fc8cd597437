/// Multi-head self-attention core on a fused QKV buffer (DINOv2 / timm layout).
///
/// Letters: B batch, T tokens, H heads, E head dim, D = H·E.
/// qkv (B, T, 3D): feature k of a token is (which = k / D ∈ {q, k, v}, head = (k mod D) / E,
/// channel = k mod E). For each (b, head):
///     P = softmax(q·kᵀ · scale) (T, T);  out[:, head·E ..< head·E+E] = P · v
/// out (B, T, D) holds the heads concatenated in head order (before the output projection).
///
/// The (b, head) pairs run in parallel over `Threads.count` workers, each with single-threaded
/// GEMMs (many small GEMMs scale better this way than one split GEMM at a time).
public enum Attention {
    /// Scratch floats needed when `probs` is nil: one (T, T) score matrix per worker.
    public static func scratchCount(tokens: Int) -> Int { Threads.count * tokens * tokens }

    /// - Parameters:
    ///   - probs: if non-nil, (B, H, T, T) receives the attention probabilities (kept for backward);
    ///     otherwise `scratch` (≥ `scratchCount(tokens:)` floats) holds per-worker score matrices.
    @inlinable
    public static func forward(out: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>?,
                               scratch: UnsafeMutablePointer<Float>?, qkv: UnsafePointer<Float>,
                               batch: Int, tokens: Int, heads: Int, headDim: Int, scale: Float) {
        let d = heads * headDim
        let t = tokens
        let pairs = batch * heads
        let profiling = Profile.enabled
        let start = profiling ? monotonicSeconds() : 0
        Threads.parallelChunks(pairs) { slot, s, e in
            for pair in s..<e {
                let b = pair / heads, h = pair % heads
                let base = qkv + b * t * 3 * d
                let q = base + h * headDim
                let k = base + d + h * headDim
                let v = base + 2 * d + h * headDim
                let p: UnsafeMutablePointer<Float> = probs.map { $0 + pair * t * t } ?? (scratch! + slot * t * t)
                let t0 = profiling ? monotonicSeconds() : 0
                // scores (T, T) = q (T, E) · kᵀ
                Gemm.gemm(out: p, a: q, b: k, m: t, n: t, k: headDim, transB: true, lda: 3 * d, ldb: 3 * d, parallel: false)
                let t1 = profiling ? monotonicSeconds() : 0
                Softmax.forwardInPlace(p, rows: t, cols: t, scale: scale)
                let t2 = profiling ? monotonicSeconds() : 0
                // out_h (T, E) = P (T, T) · v (T, E)
                Gemm.gemm(out: out + b * t * d + h * headDim, a: p, b: v, m: t, n: headDim, k: t,
                          ldb: 3 * d, ldc: d, parallel: false)
                if profiling {
                    let t3 = monotonicSeconds()
                    Profile.addAttentionPhase(slot: slot, phase: 0, t1 - t0)
                    Profile.addAttentionPhase(slot: slot, phase: 1, t2 - t1)
                    Profile.addAttentionPhase(slot: slot, phase: 2, t3 - t2)
                }
            }
        }
        if profiling { Profile.addAttention(monotonicSeconds() - start) }
    }

    /// Backward given dOut (B, T, D) and the saved probabilities (B, H, T, T).
    /// dQKV (B, T, 3D) += gradients for q, k and v. `scratch` holds one (T, T) matrix per worker.
    ///   dV += Pᵀ · dO;  dP = dO · vᵀ;  dS = P ⊙ (dP − rowsum(dP ⊙ P)) · scale
    ///   dQ += dS · k;   dK += dSᵀ · q
    @inlinable
    public static func backward(dQKV: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                                qkv: UnsafePointer<Float>, probs: UnsafePointer<Float>,
                                scratch: UnsafeMutablePointer<Float>,
                                batch: Int, tokens: Int, heads: Int, headDim: Int, scale: Float) {
        let d = heads * headDim
        let t = tokens
        let pairs = batch * heads
        do {
            Threads.parallelChunks(pairs) { slot, s, e in
                let ds = scratch + slot * t * t
                for pair in s..<e {
                    let b = pair / heads, h = pair % heads
                    let base = qkv + b * t * 3 * d
                    let dbase = dQKV + b * t * 3 * d
                    let q = base + h * headDim, k = base + d + h * headDim, v = base + 2 * d + h * headDim
                    let dq = dbase + h * headDim, dk = dbase + d + h * headDim, dv = dbase + 2 * d + h * headDim
                    let p = probs + pair * t * t
                    let dO = dOut + b * t * d + h * headDim
                    // dV (T, E) += Pᵀ (T, T) · dO (T, E)
                    Gemm.gemm(out: dv, a: p, b: dO, m: t, n: headDim, k: t, transA: true, beta: 1,
                              ldb: d, ldc: 3 * d, parallel: false)
                    // dP (T, T) = dO (T, E) · vᵀ
                    Gemm.gemm(out: ds, a: dO, b: v, m: t, n: t, k: headDim, transB: true, lda: d, ldb: 3 * d, parallel: false)
                    Softmax.backward(dInput: ds, dOut: ds, probs: p, rows: t, cols: t, scale: scale,
                                     accumulate: false)
                    // dQ (T, E) += dS (T, T) · k (T, E);  dK (T, E) += dSᵀ · q
                    Gemm.gemm(out: dq, a: ds, b: k, m: t, n: headDim, k: t, beta: 1, ldb: 3 * d, ldc: 3 * d, parallel: false)
                    Gemm.gemm(out: dk, a: ds, b: q, m: t, n: headDim, k: t, transA: true, beta: 1,
                              ldb: 3 * d, ldc: 3 * d, parallel: false)
                }
            }
        }
    }
}
