/// Multi-head self-attention core on a fused QKV buffer (DINOv2 / timm layout).
///
/// Letters: B batch, T tokens, H heads, E head dim, D = H·E.
/// qkv (B, T, 3D): feature k of a token is (which = k / D ∈ {q, k, v}, head = (k mod D) / E,
/// channel = k mod E). For each (b, head):
///     P = softmax(q·kᵀ · scale) (T, T);  out[:, head·E ..< head·E+E] = P · v
/// out (B, T, D) holds the heads concatenated in head order (before the output projection).
///
/// The (b, head) pairs run in parallel over `Threads.count` workers, each with single-threaded
/// GEMMs (many small GEMMs scale better this way than one split GEMM at a time). Without saved
/// probabilities, a worker takes the query rows in blocks (`queryBlock`), so its scratch is
/// (block, T) rather than (T, T) once T² passes `scoreBudget`: large inputs need no T² memory;
/// its score rows are padded to whole vectors (`scoreStride`).
public enum Attention {
    /// Score-matrix floats per worker beyond which the scratch path works on blocks of query rows
    /// (4 MiB: up to T = 1024, e.g. ViT-S/14 at 448 px, stays one block). Chosen by `neco bench
    /// --size 700|1400 --batches 1` (T = 2501 and 10001) against 1 and 16 MiB: 1 MiB repacks k and
    /// v too often (2.2× slower at 1400), 16 MiB is 5 % slower at 700 and 5 % faster at 1400.
    public static let scoreBudget = 1 << 20

    /// Row stride of the scratch path's score rows: T rounded up to 16 floats, so that every row
    /// starts on a 64-byte line and its last partial vector is a whole one (`Softmax`'s padded form).
    public static func scoreStride(tokens t: Int) -> Int { (max(t, 1) + 15) / 16 * 16 }

    /// Query rows per block of the scratch path: all T while a (T, scoreStride) matrix fits
    /// `scoreBudget`, else as many as fit (at least 64). Softmax is per row, so a block needs no
    /// other block.
    public static func queryBlock(tokens t: Int) -> Int {
        let stride = scoreStride(tokens: t)
        return t * stride <= scoreBudget ? max(t, 1) : min(t, max(64, scoreBudget / stride))
    }

    /// Scratch floats needed when `probs` is nil: one (queryBlock, scoreStride) score block per
    /// worker (at 1400 × 1400 px, T = 10001: 104 rows, 4 MiB per worker instead of 400 MB).
    public static func scratchCount(tokens: Int) -> Int {
        Threads.count * queryBlock(tokens: tokens) * scoreStride(tokens: tokens)
    }

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
        // Saved probabilities: the whole (T, T) matrix; scratch: blocks of `block` query rows, each
        // row `ldp` floats long (T padded to whole vectors).
        let block = probs == nil ? queryBlock(tokens: t) : t
        let ldp = probs == nil ? scoreStride(tokens: t) : t
        let profiling = Profile.enabled
        let start = profiling ? monotonicSeconds() : 0
        Threads.parallelChunks(pairs) { slot, s, e in
            for pair in s..<e {
                let b = pair / heads, h = pair % heads
                let base = qkv + b * t * 3 * d
                let q = base + h * headDim
                let k = base + d + h * headDim
                let v = base + 2 * d + h * headDim
                for r0 in stride(from: 0, to: t, by: block) {
                    let rows = min(block, t - r0)
                    let p: UnsafeMutablePointer<Float> = probs.map { $0 + pair * t * t } ?? (scratch! + slot * block * ldp)
                    let t0 = profiling ? monotonicSeconds() : 0
                    // scores (rows, T) = q[r0 ..< r0 + rows] (rows, E) · kᵀ
                    Gemm.gemm(out: p, a: q + r0 * 3 * d, b: k, m: rows, n: t, k: headDim, transB: true, lda: 3 * d, ldb: 3 * d,
                              ldc: ldp, parallel: false)
                    let t1 = profiling ? monotonicSeconds() : 0
                    if probs == nil { Softmax.forwardInPlace(p, rows: rows, cols: t, stride: ldp, scale: scale) }
                    else { Softmax.forwardInPlace(p, rows: rows, cols: t, scale: scale) }
                    let t2 = profiling ? monotonicSeconds() : 0
                    // out_h[r0 ..< r0 + rows] (rows, E) = P (rows, T) · v (T, E)
                    Gemm.gemm(out: out + (b * t + r0) * d + h * headDim, a: p, b: v, m: rows, n: headDim, k: t,
                              lda: ldp, ldb: 3 * d, ldc: d, parallel: false)
                    if profiling {
                        let t3 = monotonicSeconds()
                        Profile.addAttentionPhase(slot: slot, phase: 0, t1 - t0)
                        Profile.addAttentionPhase(slot: slot, phase: 1, t2 - t1)
                        Profile.addAttentionPhase(slot: slot, phase: 2, t3 - t2)
                    }
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
