import NecoCore

/// Token assembly of a DINOv2 ViT: patch embedding, position embedding (resampled to the patch
/// grid), CLS token and registers (NECO-SPEC §2.2 steps 1–4). Reference: DINOv2
/// `prepare_tokens_with_masks` and `interpolate_pos_encoding`.
///
/// Letters: B batch, C channels, H×W image, P patch, h×w patch grid, N = h·w, K = C·P·P,
/// R registers, T = 1 + R + N, D embed dim, G position grid side.
///
///     x[b, 0]        = cls + pos[0]
///     x[b, 1 … R]    = registers                       (no position)
///     x[b, 1+R+j]    = im2col(image_b)[j] · Wᵀ + bias + resample(pos[1…])[j]
///
/// Saved for backward: nothing (the images are the caller's; im2col is recomputed).
/// Backward (all parameter gradients accumulate `+=`):
///     dCls += Σ_b dX[b, 0];  dPos[0] += Σ_b dX[b, 0];  dReg += Σ_b dX[b, 1 … R]
///     dPos[1 …] += resampleᵀ(Σ_b dX[b, 1+R …])
///     dW += Σ_b dX[b, 1+R …]ᵀ · im2col(image_b);  dBias += Σ_b Σ_j dX[b, 1+R+j]
///     dImage_b += col2im(dX[b, 1+R …] · W)         (only when requested)
public enum Embeddings {
    /// Scratch floats `forward` needs.
    public static func forwardScratchCount(config c: ViTConfig, gridHeight gh: Int, gridWidth gw: Int) -> Int {
        let n = gh * gw, k = c.inChannels * c.patchSize * c.patchSize
        return n * k + n * c.embedDim + gh * c.posGrid * c.embedDim
    }

    /// Scratch floats `backward` needs.
    public static func backwardScratchCount(config c: ViTConfig, batch: Int, gridHeight gh: Int, gridWidth gw: Int,
                                            wantImageGradient: Bool) -> Int {
        let n = gh * gw, k = c.inChannels * c.patchSize * c.patchSize, d = c.embedDim
        return batch * n * k + batch * n * d + n * d + gh * c.posGrid * d + (wantImageGradient ? n * k : 0)
    }

    /// x (B, T, D) ← tokens of images (B, C, H, W): steps 1–2 of the forward pass (the one
    /// embedding path of libneco). `observer` gets "patch_embed", the (B, N, D) patch embeddings
    /// before positions are added.
    public static func forward(x: UnsafeMutablePointer<Float>, images: UnsafePointer<Float>, params p: FloatSlab,
                               layout L: ViTLayout, batch: Int, height: Int, width: Int,
                               scratch: UnsafeMutablePointer<Float>, observer: ViTModel.StageObserver? = nil) {
        let c = L.config
        let d = c.embedDim, r = c.registers, ps = c.patchSize
        let gh = height / ps, gw = width / ps, n = gh * gw, t = 1 + r + n
        let k = c.inChannels * ps * ps
        let cols = scratch, pos = cols + n * k
        for b in 0..<batch {
            Profile.measure(.patchEmbed) {
                PatchEmbed.im2col(cols: cols, image: images + b * c.inChannels * height * width,
                                  channels: c.inChannels, height: height, width: width, patch: ps)
                Linear.forward(out: x + (b * t + 1 + r) * d, input: cols, weight: p[L.patchW], bias: p[L.patchB],
                               rows: n, inDim: k, outDim: d)
            }
        }
        if let observer {
            var patches = [Float](repeating: 0, count: batch * n * d)
            for b in 0..<batch { for i in 0..<(n * d) { patches[b * n * d + i] = x[(b * t + 1 + r) * d + i] } }
            patches.withUnsafeBufferPointer { observer("patch_embed", $0) }
        }
        Profile.measure(.copies) { addPositions(x: x, params: p, layout: L, batch: batch, gridHeight: gh, gridWidth: gw,
                                                scratch: pos) }
    }

    /// CLS + pos[0], registers, and the resampled position table added to the patch rows of x
    /// (B, T, D) (only CLS and registers for RoPE models, which have no table). `scratch`: (N, D)
    /// resampled table, then the resampling's own scratch.
    static func addPositions(x: UnsafeMutablePointer<Float>, params p: FloatSlab, layout L: ViTLayout, batch: Int,
                             gridHeight gh: Int, gridWidth gw: Int, scratch pos: UnsafeMutablePointer<Float>) {
        let c = L.config
        let d = c.embedDim, r = c.registers, n = gh * gw, t = 1 + r + n
        let resampleScratch = pos + n * d
        if L.posEmbed < 0 { prefixTokens(x: x, params: p, layout: L, batch: batch, tokens: t); return }
        PosEmbed.resample(out: pos, table: p[L.posEmbed] + d, scratch: resampleScratch, grid: c.posGrid,
                          height: gh, width: gw, dim: d, rule: c.posEmbedRule)
        let cls = p[L.clsToken], pos0 = p[L.posEmbed]
        for b in 0..<batch {
            let row = x + b * t * d
            for i in 0..<d { row[i] = cls[i] + pos0[i] }
            if r > 0 { (row + d).update(from: p[L.registerTokens], count: r * d) }
            let patches = row + (1 + r) * d
            for i in 0..<(n * d) { patches[i] += pos[i] }
        }
    }

    /// Backward of `forward`, given dX (B, T, D). `grads` is addressed with the same `layout`
    /// offsets as the parameters. `dImages` (B, C, H, W) += the input gradient when non-nil.
    public static func backward(grads g: UnsafeMutablePointer<Float>, dImages: UnsafeMutablePointer<Float>?,
                                dX: UnsafePointer<Float>, images: UnsafePointer<Float>, params p: FloatSlab,
                                layout L: ViTLayout, batch: Int, height: Int, width: Int,
                                scratch: UnsafeMutablePointer<Float>) {
        let c = L.config
        let d = c.embedDim, r = c.registers, ps = c.patchSize
        let gh = height / ps, gw = width / ps, n = gh * gw, t = 1 + r + n
        let k = c.inChannels * ps * ps
        let cols = scratch                          // (B·N, K) im2col of every image (recomputed)
        let dTok = cols + batch * n * k              // (B·N, D) patch-token gradients, gathered
        let dPos = dTok + batch * n * d              // (N, D) gradient of the resampled table
        let resampleScratch = dPos + n * d           // (h·G·D)
        let dCols = resampleScratch + gh * c.posGrid * d  // (N, K), only with dImages

        // x[b, 0] = cls + pos[0];  x[b, 1…R] = registers
        if L.posEmbed < 0 {
            prefixTokensBackward(grads: g, dX: dX, layout: L, batch: batch, tokens: t)
            for b in 0..<batch { (dTok + b * n * d).update(from: dX + (b * t + 1 + r) * d, count: n * d) }
        } else {
        let dCls = g + L.clsToken, dPos0 = g + L.posEmbed
        for b in 0..<batch {
            let row = dX + b * t * d
            for i in 0..<d { dCls[i] += row[i]; dPos0[i] += row[i] }
            if r > 0 {
                let dReg = g + L.registerTokens
                for i in 0..<(r * d) { dReg[i] += row[d + i] }
            }
        }
        // patches += resample(pos[1…]):  dPos (N, D) = Σ_b dX[b, 1+R…] (written once), then the transpose
        for b in 0..<batch {
            let src = dX + (b * t + 1 + r) * d
            (dTok + b * n * d).update(from: src, count: n * d)
            if b == 0 { dPos.update(from: src, count: n * d) } else { for i in 0..<(n * d) { dPos[i] += src[i] } }
        }
        PosEmbed.resampleBackward(dTable: g + L.posEmbed + d, dOut: dPos, scratch: resampleScratch, grid: c.posGrid,
                                  height: gh, width: gw, dim: d, rule: c.posEmbedRule)
        }
        // tokens = im2col · Wᵀ + bias
        for b in 0..<batch {
            PatchEmbed.im2col(cols: cols + b * n * k, image: images + b * c.inChannels * height * width,
                              channels: c.inChannels, height: height, width: width, patch: ps)
        }
        // dW (D, K) += dTokᵀ (D, B·N) · cols (B·N, K)
        Gemm.gemm(out: g + L.patchW, a: dTok, b: cols, m: d, n: k, k: batch * n, transA: true, beta: 1)
        BranchResidual.columnSum(into: g + L.patchB, dTok, rows: batch * n, cols: d)
        if let dImages {
            for b in 0..<batch {
                // dCols (N, K) = dTok_b (N, D) · W (D, K)   [written once], then scattered back
                Gemm.gemm(out: dCols, a: dTok + b * n * d, b: p[L.patchW], m: n, n: k, k: d)
                PatchEmbed.col2imAdd(dImage: dImages + b * c.inChannels * height * width, dCols: dCols,
                                     channels: c.inChannels, height: height, width: width, patch: ps)
            }
        }
    }
}
