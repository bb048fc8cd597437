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

    /// Scratch floats of one `headBackward` call: O(T² + T·E).
    public static func headBackwardScratchCount(tokens: Int, headDim: Int) -> Int {
        let n = nk_attention_backward_scratch_floats(tokens, headDim)
        return n < 0 ? 1 << 48 : n   // as in headScratchCount
    }

    /// Scratch floats `backward` needs: one `headBackward` scratch per worker.
    public static func backwardScratchCount(tokens: Int, headDim: Int) -> Int {
        Threads.count * headBackwardScratchCount(tokens: tokens, headDim: headDim)
    }

    /// Backward of one (b, head) pair on the calling thread, given its probabilities P (T, T)
    /// (contiguous, as `head` writes them):
    ///     dV += Pᵀ · dO;  dP = dO · vᵀ;  dS = P ⊙ (dP − rowsum(dP ⊙ P)) · scale
    ///     dQ += dS · k;   dK += dSᵀ · q
    /// on the C kernel `nk_attention_head_backward` (the packed GEMM's micro-kernel; each gradient
    /// element one FMA chain from 0, added to its previous value once). dQKV (B, T, 3D) and dOut
    /// (B, T, D) are the whole tensors; the pair's columns are picked here.
    /// - Parameter scratch: `headBackwardScratchCount(tokens:headDim:)` floats.
    @inlinable
    public static func headBackward(dQKV: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                                    qkv: UnsafePointer<Float>, probs: UnsafePointer<Float>, pair: Int, tokens t: Int,
                                    heads: Int, headDim: Int, scale: Float, scratch: UnsafeMutablePointer<Float>) {
        let d = heads * headDim
        let b = pair / heads, h = pair % heads
        let q = qkv + b * t * 3 * d + h * headDim, dq = dQKV + b * t * 3 * d + h * headDim
        nk_attention_head_backward(dq, dq + d, dq + 2 * d, 3 * d, dOut + b * t * d + h * headDim, d, q, q + d, q + 2 * d,
                                   3 * d, probs, t, headDim, scale, scratch)
    }

    /// Scratch floats of one `headBackwardRecomputing` call: O(T·E + 64·T), no (T, T) matrix.
    public static func headRecomputingBackwardScratchCount(tokens: Int, headDim: Int) -> Int {
        let n = nk_attention_recompute_backward_scratch_floats(tokens, headDim)
        return n < 0 ? 1 << 48 : n   // as in headScratchCount
    }

    /// Backward of one (b, head) pair on the calling thread without its probabilities: the C
    /// kernel `nk_attention_head_backward_recompute` rebuilds P with the forward's own code a
    /// strip of 64 queries at a time and runs `headBackward`'s products and softmax backward on
    /// each strip, so no (T, T) matrix exists. `headsOut` (B, T, D), when non-nil, receives the
    /// pair's head columns, the bits `head` writes. dQ, P and dS are the bits of `head` followed
    /// by `headBackward`; dK and dV add one sum per strip instead of one in all.
    /// - Parameter scratch: `headRecomputingBackwardScratchCount(tokens:headDim:)` floats.
    @inlinable
    public static func headBackwardRecomputing(dQKV: UnsafeMutablePointer<Float>, headsOut: UnsafeMutablePointer<Float>?,
                                               dOut: UnsafePointer<Float>, qkv: UnsafePointer<Float>, pair: Int,
                                               tokens t: Int, heads: Int, headDim: Int, scale: Float,
                                               scratch: UnsafeMutablePointer<Float>) {
        let d = heads * headDim
        let b = pair / heads, h = pair % heads
        let q = qkv + b * t * 3 * d + h * headDim, dq = dQKV + b * t * 3 * d + h * headDim
        nk_attention_head_backward_recompute(dq, dq + d, dq + 2 * d, 3 * d, dOut + b * t * d + h * headDim, d, q, q + d,
                                             q + 2 * d, 3 * d, headsOut.map { $0 + b * t * d + h * headDim }, d, t,
                                             headDim, scale, scratch)
    }

    /// Backward given dOut (B, T, D) and the saved probabilities (B, H, T, T): dQKV (B, T, 3D) +=
    /// the gradients for q, k and v (`headBackward` per pair, the pairs in parallel).
    /// - Parameter scratch: `backwardScratchCount(tokens:headDim:)` floats.
    @inlinable
    public static func backward(dQKV: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                                qkv: UnsafePointer<Float>, probs: UnsafePointer<Float>,
                                scratch: UnsafeMutablePointer<Float>,
                                batch: Int, tokens: Int, heads: Int, headDim: Int, scale: Float) {
        let t = tokens
        let per = headBackwardScratchCount(tokens: t, headDim: headDim)
        Threads.parallelDynamic(batch * heads) { slot, s, e in
            for pair in s..<e {
                headBackward(dQKV: dQKV, dOut: dOut, qkv: qkv, probs: probs + pair * t * t, pair: pair, tokens: t,
                             heads: heads, headDim: headDim, scale: scale, scratch: scratch + slot * per)
            }
        }
    }
}
