import CNecoKernels
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
/// all in one C call per (b, head) (`nk_attention_head_backward`), every product on libneco's
/// packed GEMM micro-kernel (dP as a Linear of dO with v as the weight, dV and dK by the
/// weight-gradient driver, dQ as a Linear of dS with k packed from its rows).
/// Gradient convention: `dQKV` accumulates (`+=`); `headsOut` is written exactly once.
/// - Complexity: one extra q·kᵀ and softmax per (b, head) over a stored-P backward, and P·v when
///   `headsOut` is asked for.
public enum AttentionRecompute {
    /// Scratch floats of one (b, head) backward (`nk_attention_head_backward`): dS (T, T), the packed
    /// operands and the GEMM drivers' blocks.
    @usableFromInline
    static func backwardScratchCount(tokens: Int, headDim: Int) -> Int {
        let n = nk_attention_backward_scratch_floats(tokens, headDim)
        return n < 0 ? 1 << 48 : n
    }

    /// Scratch floats per worker: P (T, T), one `Attention.head` scratch and one backward scratch.
    public static func scratchCount(tokens: Int, headDim: Int) -> Int {
        Threads.count * (tokens * tokens + Attention.headScratchCount(tokens: tokens, headDim: headDim)
                         + backwardScratchCount(tokens: tokens, headDim: headDim))
    }

    @inlinable
    public static func backward(dQKV: UnsafeMutablePointer<Float>, headsOut: UnsafeMutablePointer<Float>?,
                                dOut: UnsafePointer<Float>, qkv: UnsafePointer<Float>,
                                scratch: UnsafeMutablePointer<Float>,
                                batch: Int, tokens: Int, heads: Int, headDim: Int, scale: Float) {
        let d = heads * headDim
        let t = tokens
        let pairs = batch * heads
        let headScratch = Attention.headScratchCount(tokens: t, headDim: headDim)
        let per = t * t + headScratch + backwardScratchCount(tokens: t, headDim: headDim)
        Threads.parallelChunks(pairs) { slot, s, e in
            let p = scratch + slot * per             // (T, T) probabilities
            let kernelScratch = p + t * t            // the forward kernel's own
            let backScratch = kernelScratch + headScratch
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
                // dV += Pᵀ · dO;  dS = softmax backward of dP = dO · vᵀ;  dQ += dS · k;  dK += dSᵀ · q
                nk_attention_head_backward(dq, dk, dv, 3 * d, dO, d, q, k, v, 3 * d, p, t, headDim, scale, backScratch)
            }
        }
    }
}
