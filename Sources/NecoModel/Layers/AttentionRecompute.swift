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
/// with the forward's own code, which in the same pass rebuilds the head outputs P·v bit for bit as
/// the forward wrote them: the projection's weight gradient needs those, so they are not stored
/// either. The C kernel (`Attention.headBackwardRecomputing`, `nk_attention_head_backward_recompute`)
/// does this 64 queries at a time, so a worker holds a (64, T) strip of P and of dS, never a (T, T)
/// matrix.
///
/// Given dOut = dL/d(heads) (B, T, D), per strip s of queries:
///     dV += P_sᵀ · dO_s;  dP_s = dO_s · vᵀ;  dS_s = P_s ⊙ (dP_s − rowsum(dP_s ⊙ P_s)) · scale
///     dQ_s += dS_s · k;   dK += dS_sᵀ · q_s
/// Gradient convention: `dQKV` accumulates (`+=`); `headsOut` is written exactly once.
/// - Complexity: one extra q·kᵀ and softmax per (b, head) over a stored-P backward, and P·v when
///   `headsOut` is asked for; memory O(T·E + 64·T) per worker.
public enum AttentionRecompute {
    /// Scratch floats: one `Attention.headBackwardRecomputing` scratch per worker.
    public static func scratchCount(tokens: Int, headDim: Int) -> Int {
        Threads.count * perWorker(tokens: tokens, headDim: headDim)
    }

    @usableFromInline
    static func perWorker(tokens t: Int, headDim: Int) -> Int {
        Attention.headRecomputingBackwardScratchCount(tokens: t, headDim: headDim)
    }

    @inlinable
    public static func backward(dQKV: UnsafeMutablePointer<Float>, headsOut: UnsafeMutablePointer<Float>?,
                                dOut: UnsafePointer<Float>, qkv: UnsafePointer<Float>,
                                scratch: UnsafeMutablePointer<Float>,
                                batch: Int, tokens: Int, heads: Int, headDim: Int, scale: Float) {
        let t = tokens
        let per = perWorker(tokens: t, headDim: headDim)
        Threads.parallelDynamic(batch * heads) { slot, s, e in
            for pair in s..<e {
                Attention.headBackwardRecomputing(dQKV: dQKV, headsOut: headsOut, dOut: dOut, qkv: qkv, pair: pair,
                                                  tokens: t, heads: heads, headDim: headDim, scale: scale,
                                                  scratch: scratch + slot * per)
            }
        }
    }
}
