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
/// computed per pair by `Attention.headBackward` (the C kernel `nk_attention_head_backward`).
/// Gradient convention: `dQKV` accumulates (`+=`); `headsOut` is written exactly once.
/// - Complexity: one extra q·kᵀ and softmax per (b, head) over a stored-P backward, and P·v when
///   `headsOut` is asked for.
public enum AttentionRecompute {
    /// Scratch floats per worker: one (T, T) matrix for P, one `Attention.headBackward` scratch and
    /// one `Attention.head` scratch.
    public static func scratchCount(tokens: Int, headDim: Int) -> Int {
        Threads.count * perWorker(tokens: tokens, headDim: headDim)
    }

    @usableFromInline
    static func perWorker(tokens t: Int, headDim: Int) -> Int {
        t * t + Attention.headBackwardScratchCount(tokens: t, headDim: headDim)
            + Attention.headScratchCount(tokens: t, headDim: headDim)
    }

    @inlinable
    public static func backward(dQKV: UnsafeMutablePointer<Float>, headsOut: UnsafeMutablePointer<Float>?,
                                dOut: UnsafePointer<Float>, qkv: UnsafePointer<Float>,
                                scratch: UnsafeMutablePointer<Float>,
                                batch: Int, tokens: Int, heads: Int, headDim: Int, scale: Float) {
        let t = tokens
        let per = perWorker(tokens: t, headDim: headDim)
        Threads.parallelDynamic(batch * heads) { slot, s, e in
            let p = scratch + slot * per                     // (T, T) probabilities
            let backwardScratch = p + t * t                  // the backward kernel's own
            let headScratch = backwardScratch + Attention.headBackwardScratchCount(tokens: t, headDim: headDim)
            for pair in s..<e {
                // Recompute with the forward's kernel: P (T, T) = softmax(q · kᵀ · scale) and, when
                // asked, out_h (T, E) = P · v, the bits the forward wrote.
                Attention.head(out: headsOut, probs: p, qkv: qkv, pair: pair, tokens: t, heads: heads, headDim: headDim,
                               scale: scale, scratch: headScratch)
                Attention.headBackward(dQKV: dQKV, dOut: dOut, qkv: qkv, probs: p, pair: pair, tokens: t, heads: heads,
                                       headDim: headDim, scale: scale, scratch: backwardScratch)
            }
        }
    }
}
