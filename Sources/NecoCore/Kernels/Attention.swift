import CNecoKernels

/// Multi-head self-attention core on a fused QKV buffer (DINOv2 / timm layout).
///
/// Letters: B batch, T tokens, H heads, E head dim, D = H·E.
/// qkv (B, T, 3D): feature k of a token is (which = k / D ∈ {q, k, v}, head = (k mod D) / E,
/// channel = k mod E). For each (b, head):
///     P = softmax(q·kᵀ · scale) (T, T);  out[:, head·E ..< head·E+E] = P · v
/// out (B, T, D) holds the heads concatenated in head order (before the output projection).
///
/// The (b, head) pairs run in parallel over `Threads.count` workers, each pair whole in one call of
/// the C kernel `nk_attention_head` (CNecoKernels, attention_body.h): scores for 16 queries at a
/// time on the packed GEMM's micro-kernel, their softmax down the columns of a transposed (T, 16)
/// block, and P·v reading v in place. No (T, T) matrix exists unless the caller asks for P, and
/// the scratch is O(T·E) per worker. A pair's result does not depend on the thread count.
public enum Attention {
    /// Scratch floats of one `head` call: O(T·E).
    public static func headScratchCount(tokens: Int, headDim: Int) -> Int {
        let n = nk_attention_scratch_floats(tokens, headDim)
        // < 0: beyond any image the model accepts; a count no allocation can meet (and that
        // callers can still multiply by a thread count and add to without overflow).
        return n < 0 ? 1 << 48 : n
    }

    /// Scratch floats `forward` needs: one `head` scratch per worker.
    public static func scratchCount(tokens: Int, headDim: Int) -> Int {
        Threads.count * headScratchCount(tokens: tokens, headDim: headDim)
    }

    /// One (b, head) pair on the calling thread. `out` (B, T, D) receives the pair's head columns
    /// of its batch row (nil: none); `probs`, when non-nil, the pair's P (T, T) at that address.
    /// - Parameter scratch: `headScratchCount(tokens:headDim:)` floats.
    @inlinable
    public static func head(out: UnsafeMutablePointer<Float>?, probs: UnsafeMutablePointer<Float>?,
                            qkv: UnsafePointer<Float>, pair: Int, tokens t: Int, heads: Int, headDim: Int,
                            scale: Float, scratch: UnsafeMutablePointer<Float>) {
        let d = heads * headDim
        let b = pair / heads, h = pair % heads
        let q = qkv + b * t * 3 * d + h * headDim
        nk_attention_head(out.map { $0 + b * t * d + h * headDim }, d, q, q + d, q + 2 * d, 3 * d, t, headDim, scale,
                          probs, t, scratch)
    }

    /// - Parameters:
    ///   - probs: if non-nil, (B, H, T, T) receives the attention probabilities (for a backward);
    ///     `out` is the same bits either way.
    ///   - scratch: `scratchCount(tokens:headDim:)` floats.
    @inlinable
    public static func forward(out: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>? = nil,
                               scratch: UnsafeMutablePointer<Float>, qkv: UnsafePointer<Float>,
                               batch: Int, tokens: Int, heads: Int, headDim: Int, scale: Float) {
        let t = tokens
        let per = headScratchCount(tokens: t, headDim: headDim)
        let start = Profile.enabled ? monotonicSeconds() : 0
        Threads.parallelDynamic(batch * heads) { slot, s, e in
            for pair in s..<e {
                head(out: out, probs: probs.map { $0 + pair * t * t }, qkv: qkv, pair: pair, tokens: t, heads: heads,
                     headDim: headDim, scale: scale, scratch: scratch + slot * per)
            }
        }
        if Profile.enabled { Profile.add(.attention, monotonicSeconds() - start) }
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
            Threads.parallelDynamic(pairs) { slot, s, e in
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
