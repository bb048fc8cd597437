import NecoCore

/// The end of a pre-norm residual branch of a DINOv2 block: the branch's last Linear (`attn.proj`
/// or `mlp.fc2`), LayerScale, the per-sample stochastic-depth scale, and the residual add.
/// Reference: DINOv2 `Block.forward` (`x + drop_path(ls(proj(…)))`) and
/// `drop_add_residual_stochastic_depth` (NECO-SPEC §2.6).
///
/// Letters: B batch, T tokens, D embed dim, K the Linear's input width (D for attn.proj, F for
/// mlp.fc2), rows = B·T.
///
///     z   = h · Wᵀ + b              (B, T, D)   branch output before LayerScale (`Linear.forward`)
///     out = x + s_b · (γ ⊙ z)       (B, T, D)   s_b = per-sample scale: 1 (no drop path),
///                                               0 (dropped), 1/(1−p) (kept) or B/k (subset path)
///
/// Saved for backward: nothing. The branch output z is *not* stored: its only use in backward is
/// dγ = Σ_rows dZ ⊙ z, and since z = h·Wᵀ + b that sum equals rowdot(W, dZᵀ·h) + b ⊙ Σ_rows dZ,
/// where dZᵀ·h is the GEMM that dW needs anyway. This saves two (B, T, D) tensors per block.
///
/// Backward is split in three, because the MLP branch overwrites its recomputed h with dH, and
/// the attention branch only recomputes h (its heads) after it needs dH:
///     `backwardScale`:  dZ = s_b · dOut;  dZγ = γ ⊙ dZ
///     `backwardInput`:  dH = dZγ · W
///     `backwardParams`: G = dZᵀ · h (D, K);  c = Σ_rows dZ (D)
///                       dW += γ ⊙_rows G;  db += γ ⊙ c;  dγ += rowdot(W, G) + b ⊙ c
/// The residual path itself (dX += dOut) costs nothing: the caller's dX buffer *is* dOut.
/// Gradient convention: parameter gradients accumulate (`+=`); `dH` is written exactly once (and
/// may alias `h`).
public enum BranchResidual {
    /// out (B, T, D) = x (B, T, D) + s_b · (γ ⊙ z); `out` may alias `x`. `sampleScale` (B) or nil
    /// for all ones; `gamma` (D) or nil without LayerScale. With s_b = 1 this is bit-identical to
    /// `Residual.addScaled` (the inference path).
    @inlinable
    public static func forward(out: UnsafeMutablePointer<Float>, residual x: UnsafePointer<Float>,
                               branch z: UnsafePointer<Float>, gamma: UnsafePointer<Float>?,
                               sampleScale: UnsafePointer<Float>?, batch: Int, tokens: Int, dim: Int) {
        let rows = batch * tokens
        Threads.parallelFor(rows, minChunk: max(1, 16384 / max(dim, 1))) { s, e in
            for r in s..<e {
                let o = out + r * dim, xr = x + r * dim, zr = z + r * dim
                let scale = sampleScale?[r / tokens] ?? 1
                if scale == 1 {
                    if let gamma { for i in 0..<dim { o[i] = xr[i] + gamma[i] * zr[i] } }
                    else { for i in 0..<dim { o[i] = xr[i] + zr[i] } }
                } else {
                    if let gamma { for i in 0..<dim { o[i] = xr[i] + gamma[i] * zr[i] * scale } }
                    else { for i in 0..<dim { o[i] = xr[i] + zr[i] * scale } }
                }
            }
        }
    }

    /// dZ (B, T, D) = s_b · dOut and dZγ (B, T, D) = γ ⊙ dZ (equal to dZ without LayerScale),
    /// both written exactly once.
    @inlinable
    public static func backwardScale(dZ: UnsafeMutablePointer<Float>, dZGamma: UnsafeMutablePointer<Float>,
                                     dOut: UnsafePointer<Float>, gamma: UnsafePointer<Float>?,
                                     sampleScale: UnsafePointer<Float>?, batch: Int, tokens: Int, dim: Int) {
        let rows = batch * tokens
        Threads.parallelFor(rows, minChunk: max(1, 16384 / max(dim, 1))) { s, e in
            for r in s..<e {
                let g = dOut + r * dim, dz = dZ + r * dim, dzg = dZGamma + r * dim
                let scale = sampleScale?[r / tokens] ?? 1
                for i in 0..<dim { dz[i] = g[i] * scale }
                if let gamma { for i in 0..<dim { dzg[i] = dz[i] * gamma[i] } }
                else { for i in 0..<dim { dzg[i] = dz[i] } }
            }
        }
    }

    /// dH (rows, K) = dZγ (rows, D) · W (D, K), written exactly once (so `dH` may be the buffer
    /// that held h, once `backwardParams` has used it), on the packed kernel
    /// (`Linear.inputGradient`; `pack` holds `Gemm.packedCount(outDim: K, inDim: D)` floats).
    @inlinable
    public static func backwardInput(dInput dH: UnsafeMutablePointer<Float>, dZGamma: UnsafePointer<Float>,
                                     weight: UnsafePointer<Float>, rows: Int, dim: Int, inDim: Int,
                                     pack: UnsafeMutablePointer<Float>) {
        Linear.inputGradient(dH, dOut: dZGamma, weight: weight, rows: rows, inDim: inDim, outDim: dim, pack: pack)
    }

    /// Parameter gradients from dZ (kept from `backwardScale`) and the branch input h (B, T, K).
    /// `gScratch` holds D·K floats. Row reductions use fixed blocks (`RowBlocks`), so the result does
    /// not depend on the thread count.
    @inlinable
    public static func backwardParams(dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>,
                                      dGamma: UnsafeMutablePointer<Float>?, dZ: UnsafePointer<Float>,
                                      input h: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                      bias: UnsafePointer<Float>, gamma: UnsafePointer<Float>?,
                                      gScratch: UnsafeMutablePointer<Float>, batch: Int, tokens: Int,
                                      dim: Int, inDim: Int) {
        let rows = batch * tokens
        guard let gamma else {
            // Without LayerScale: plain Linear backward on dZ.
            Gemm.weightGradient(out: dWeight, a: dZ, b: h, m: dim, n: inDim, k: rows, accumulate: true)
            columnSum(into: dBias, dZ, rows: rows, cols: dim)
            return
        }
        // G (D, K) = dZᵀ (D, rows) · h (rows, K)   [written once]
        Gemm.weightGradient(out: gScratch, a: dZ, b: h, m: dim, n: inDim, k: rows, accumulate: false)
        Threads.parallelFor(dim, minChunk: 16) { s, e in
            for j in s..<e {
                let gr = gScratch + j * inDim, wr = weight + j * inDim, dw = dWeight + j * inDim
                let gj = gamma[j]
                var dot: Float = 0
                for i in 0..<inDim {
                    dw[i] += gj * gr[i]
                    dot += wr[i] * gr[i]
                }
                // Σ_rows dZ ⊙ z without z: rowdot(W, G) + b ⊙ Σ_rows dZ (the bias part is added below).
                dGamma?[j] += dot
            }
        }
        // c (D) = Σ_rows dZ, in gScratch (G is no longer needed).
        let c = gScratch
        c.update(repeating: 0, count: dim)
        columnSum(into: c, dZ, rows: rows, cols: dim)
        for j in 0..<dim {
            dBias[j] += gamma[j] * c[j]
            dGamma?[j] += bias[j] * c[j]
        }
    }

    /// out (cols) += Σ_rows x (rows, cols), in fixed row blocks (`RowBlocks`): the result does not
    /// depend on the thread count.
    @inlinable
    public static func columnSum(into out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
                                 rows: Int, cols: Int) {
        RowBlocks.forEach(rows: rows, cols: cols, into: out) { r0, r1, partial in
            let p = partial!
            for r in r0..<r1 {
                let xr = x + r * cols
                for j in 0..<cols { p[j] += xr[j] }
            }
        }
    }
}
