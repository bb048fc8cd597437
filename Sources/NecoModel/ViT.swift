import NecoCore

/// A DINO / DINOv2 Vision Transformer with its weights (NECO-SPEC §2.2).
///
/// Letters: B batch, C channels, H×W image, P patch, h = H/P, w = W/P, N = h·w patches,
/// R registers, T = 1 + R + N tokens, D embed dim, F feed-forward width.
///
/// Token order: [CLS, r1 … rR, patch tokens row-major]. Registers are inserted after the position
/// embedding is added and never receive one. The model is immutable after loading; `forward` may
/// run concurrently from several threads (each call allocates its own workspace).
public final class ViTModel: @unchecked Sendable {
    public let params: ViTParameters
    public var config: ViTConfig { params.config }
    /// Where the weights came from (file path or "formula"/"random"), for reports.
    public var source: String
    /// Which key naming scheme the weights were stored in.
    public var scheme: WeightScheme

    public init(params: ViTParameters, source: String = "memory", scheme: WeightScheme = .meta) {
        self.params = params
        self.source = source
        self.scheme = scheme
    }

    /// An independent copy of the weights (same architecture and scheme), e.g. to train without
    /// touching a shared model.
    /// - Throws: `.outOfMemory` when the parameter slab cannot be allocated.
    public func copy(source: String? = nil) throws -> ViTModel {
        let p = try ViTParameters(config: config)
        p.slab.copy(from: params.slab)
        return ViTModel(params: p, source: source ?? self.source, scheme: scheme)
    }

    /// Checks an input size; throws `.shape` with a clear message.
    public func validateInput(height: Int, width: Int) throws {
        let p = config.patchSize
        guard height >= p, width >= p else {
            throw NecoError.shape("input \(height)×\(width) is smaller than one \(p)×\(p) patch")
        }
        guard height % p == 0, width % p == 0 else {
            throw NecoError.shape("input \(height)×\(width) is not a multiple of the patch size \(p)")
        }
        guard height <= 16384, width <= 16384, (height / p) * (width / p) <= 65536 else {
            throw NecoError.shape("input \(height)×\(width) is too large")
        }
    }

    public func tokenCount(height: Int, width: Int) -> Int {
        1 + config.registers + (height / config.patchSize) * (width / config.patchSize)
    }

    /// Optional per-stage callback used by tests: ("patch_embed", (B, N, D)), ("tokens", (B, T, D)),
    /// ("block0" …, (B, T, D)), then ("norm", (B, T, D)).
    public typealias StageObserver = (String, UnsafeBufferPointer<Float>) -> Void

    /// Runs the backbone on normalised images.
    /// - Parameters:
    ///   - out: (B, T, D) final-LayerNorm tokens.
    ///   - images: (B, C, H, W) ImageNet-normalised pixels.
    public func forward(out: UnsafeMutablePointer<Float>, images: UnsafePointer<Float>,
                        batch: Int, height: Int, width: Int, observer: StageObserver? = nil) throws {
        try validateInput(height: height, width: width)
        guard batch >= 1, batch <= 4096 else { throw NecoError.shape("batch size \(batch) out of range 1...4096") }
        let c = config, L = params.layout, p = params.slab
        let d = c.embedDim, r = c.registers, ps = c.patchSize
        let gh = height / ps, gw = width / ps, n = gh * gw
        let t = 1 + r + n, rows = batch * t
        let ffnWidth = c.ffn == .swiglu ? 2 * c.mlpHidden : c.mlpHidden
        let k = c.inChannels * ps * ps

        // Workspace (one allocation per call). The FFN pre-activation (B, T, F) reuses the qkv and
        // heads buffers, adjacent and dead by then, when F ≤ 4D (every GELU model).
        let ffnInPlace = ffnWidth <= 4 * d
        let sizes = [rows * d,                       // x: residual stream (B, T, D)
                     rows * d,                       // y: normed / branch output (B, T, D)
                     rows * 3 * d,                   // qkv (B, T, 3D)
                     rows * d,                       // attention heads (B, T, D)
                     ffnInPlace ? 0 : rows * ffnWidth,  // ffn pre-activation (B, T, F)
                     c.ffn == .swiglu ? rows * c.mlpHidden : 0,  // SwiGLU hidden (B, T, H)
                     n * k,                          // im2col (N, C·P·P)
                     n * d,                          // resampled position table (N, D)
                     max(gh * c.posGrid * d, Attention.scratchCount(tokens: t))]
        let total = try Memory.bytes(sizes.reduce(0, +), of: Float.self, "forward workspace")
        // The workspace and OpenBLAS's own buffers must both fit before any GEMM starts.
        try Memory.reserve(bytes: [total, Memory.blasHeadroom], "a \(batch)×\(height)×\(width) forward (\(Memory.describe(total)) of work buffers)")
        let ws = try FloatSlab(count: sizes.reduce(0, +))
        var cursor = 0
        func take(_ i: Int) -> UnsafeMutablePointer<Float> {
            let ptr = ws.base + cursor
            cursor += sizes[i]
            return ptr
        }
        let x = take(0), y = take(1), qkv = take(2), heads = take(3), ffnOwn = take(4), hidden = take(5)
        let cols = take(6), pos = take(7), scratch = take(8)
        let ffn = ffnInPlace ? qkv : ffnOwn

        // 1. Patch embedding: tokens 1+R ..< T of each image (N, D) = im2col · Wᵀ + b.
        for b in 0..<batch {
            Profile.measure(.patchEmbed) {
                PatchEmbed.im2col(cols: cols, image: images + b * c.inChannels * height * width,
                                  channels: c.inChannels, height: height, width: width, patch: ps)
                Linear.forward(out: x + (b * t + 1 + r) * d, input: cols, weight: p[L.patchW], bias: p[L.patchB],
                               rows: n, inDim: k, outDim: d)
            }
        }
        if let observer {
            var tmp = [Float](repeating: 0, count: batch * n * d)
            for b in 0..<batch { for i in 0..<(n * d) { tmp[b * n * d + i] = x[(b * t + 1 + r) * d + i] } }
            tmp.withUnsafeBufferPointer { observer("patch_embed", $0) }
        }

        // 2. CLS + pos[0]; patches + resampled pos[1...]; registers (no position).
        //    RoPE models (DINOv3) have no table: CLS and registers only.
        Profile.measure(.copies) {
            if L.posEmbed < 0 {
                Embeddings.prefixTokens(x: x, params: p, layout: L, batch: batch, tokens: t)
            } else {
                PosEmbed.resample(out: pos, table: p[L.posEmbed] + d, scratch: scratch, grid: c.posGrid,
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
        }
        let rope = c.rope == nil ? nil : ropeTables(gridHeight: gh, gridWidth: gw)
        observer?("tokens", UnsafeBufferPointer(start: x, count: rows * d))

        // 3. Blocks: x += ls1 ⊙ proj(attn(LN1(x)));  x += ls2 ⊙ FFN(LN2(x)).
        let scale = 1 / Float(c.headDim).squareRoot()
        for (i, blk) in L.blocks.enumerated() {
            let ls1: UnsafePointer<Float>? = blk.ls1 >= 0 ? UnsafePointer(p[blk.ls1]) : nil
            let ls2: UnsafePointer<Float>? = blk.ls2 >= 0 ? UnsafePointer(p[blk.ls2]) : nil
            Profile.measure(.layerNorm) {
                LayerNorm.forward(out: y, mean: nil, rstd: nil, input: x, weight: p[blk.norm1W], bias: p[blk.norm1B],
                                  rows: rows, dim: d, eps: c.layerNormEps)
            }
            Profile.measure(.gemmQKV) {
                Linear.forward(out: qkv, input: y, weight: p[blk.qkvW], bias: p[blk.qkvB], rows: rows, inDim: d,
                               outDim: 3 * d)
            }
            if let rope { Profile.measure(.attnScores) { rope.apply(qkv: qkv, batch: batch, tokens: t, prefix: 1 + r, heads: c.heads) } }
            Attention.forward(out: heads, probs: nil, scratch: scratch, qkv: qkv, batch: batch, tokens: t,
                              heads: c.heads, headDim: c.headDim, scale: scale)
            Profile.measure(.gemmProj) {
                Linear.forward(out: y, input: heads, weight: p[blk.projW], bias: p[blk.projB], rows: rows, inDim: d,
                               outDim: d)
            }
            Profile.measure(.residual) { Residual.addScaled(residual: x, branch: y, gamma: ls1, rows: rows, dim: d) }

            Profile.measure(.layerNorm) {
                LayerNorm.forward(out: y, mean: nil, rstd: nil, input: x, weight: p[blk.norm2W], bias: p[blk.norm2B],
                                  rows: rows, dim: d, eps: c.layerNormEps)
            }
            if c.ffn == .swiglu {
                Profile.measure(.gemmFC1) {
                    Linear.forward(out: ffn, input: y, weight: p[blk.fc1W], bias: p[blk.fc1B], rows: rows, inDim: d,
                                   outDim: ffnWidth)
                }
                Profile.measure(.activation) { SwiGLU.forward(hidden: hidden, gates: ffn, rows: rows, width: c.mlpHidden) }
            } else {
                Profile.measure(.gemmFC1) {
                    Linear.forward(out: ffn, input: y, weight: p[blk.fc1W], bias: p[blk.fc1B], rows: rows, inDim: d,
                                   outDim: ffnWidth)
                }
                Profile.measure(.activation) { GELU.forwardInPlace(ffn, count: rows * ffnWidth) }
            }
            Profile.measure(.gemmFC2) {
                Linear.forward(out: y, input: c.ffn == .swiglu ? hidden : ffn, weight: p[blk.fc2W], bias: p[blk.fc2B],
                               rows: rows, inDim: c.mlpHidden, outDim: d)
            }
            Profile.measure(.residual) { Residual.addScaled(residual: x, branch: y, gamma: ls2, rows: rows, dim: d) }
            observer?("block\(i)", UnsafeBufferPointer(start: x, count: rows * d))
        }

        // 4. Final LayerNorm on every token.
        Profile.measure(.layerNorm) {
            LayerNorm.forward(out: out, mean: nil, rstd: nil, input: x, weight: p[L.normW], bias: p[L.normB],
                              rows: rows, dim: d, eps: c.layerNormEps)
        }
        observer?("norm", UnsafeBufferPointer(start: out, count: rows * d))
    }

    /// Multiply-adds ×2 of one forward at H×W (linear layers, patch embedding and attention).
    public func flops(height: Int, width: Int) -> Double {
        let c = config
        let n = Double((height / c.patchSize) * (width / c.patchSize))
        let t = n + 1 + Double(c.registers), d = Double(c.embedDim)
        let ffn = c.ffn == .swiglu ? 3 * Double(c.mlpHidden) : 2 * Double(c.mlpHidden)
        let perBlock = t * d * 3 * d + t * d * d + t * d * ffn + 2 * t * t * d
        let patch = n * d * Double(c.inChannels * c.patchSize * c.patchSize)
        return 2 * (patch + Double(c.depth) * perBlock)
    }
}
