import NecoCore

// Training forward and backward of the ViT backbone (llm.c style: no autograd tape).
//
// Letters: B batch, C channels, H×W image, P patch, h×w patch grid, N = h·w, R registers,
// T = 1 + R + N tokens, rows = B·T, D embed dim, F feed-forward width (H for the MLP, 2H for the
// fused SwiGLU gates), K = C·P·P.
//
// `forwardTraining` is the one forward pass of the backbone (the llm.c shape): it keeps what
// backward needs in a `ViTActivations` slab, or nothing (`saveActivations: false`: an EMA
// teacher, and `ViTModel.forward`, the inference entry point, which runs it on activations
// allocated without gradient buffers). `backward` is the same list of calls reversed, block by
// block. Gradient convention: every parameter gradient accumulates (`+=`) into one flat
// gradient buffer addressed with the parameters' `ViTLayout` offsets, so several forward passes
// (global and local crops) can be backpropagated into the same buffer; the caller zeroes it.

/// Which backbone parameters receive gradients, and where backward stops.
public struct ViTTrainableParts: Sendable, Equatable {
    /// Blocks `firstBlock ..< depth` are trained; backward stops at `firstBlock`, so frozen
    /// blocks cost no backward compute (and their activations are not stored).
    public var firstBlock: Int
    /// Patch embedding, position table, CLS and register tokens, and the final LayerNorm.
    /// Requires `firstBlock == 0` (NeCo freezes them whenever any block is frozen, §2.6).
    public var embeddingsAndNorm: Bool

    public init(firstBlock: Int, embeddingsAndNorm: Bool) {
        self.firstBlock = firstBlock
        self.embeddingsAndNorm = embeddingsAndNorm
    }

    /// Everything trains (the paper's setting).
    public static let all = ViTTrainableParts(firstBlock: 0, embeddingsAndNorm: true)
}

/// Activations of one training forward pass, kept for backward, in one slab with named views.
///
/// Per saved block i (B·T rows):
///   xIn (B, T, D)       block input (residual stream)      → LN1 backward, LN1 recompute
///   mean1, rstd1 (B·T)  LN1 statistics
///   qkv (B, T, 3D)      fused q, k, v                      → attention backward (P recomputed)
///   xMid (B, T, D)      residual after the attention branch → LN2 backward, LN2 recompute
///   mean2, rstd2 (B·T)  LN2 statistics
///   ffn (B, T, F)       first feed-forward Linear output, before GELU / SwiGLU gating (not stored
///                       in the first `recomputedFeedForwardBlocks` saved blocks: backward
///                       recomputes it from xMid, one more fc1 GEMM per such block for B·T·F
///                       fewer floats)
/// Not stored and recomputed in backward: LayerNorm outputs (from x, mean, rstd), attention
/// probabilities and head outputs (`AttentionRecompute`), GELU / SwiGLU outputs (from `ffn`), and
/// the branch outputs before LayerScale (never needed, see `BranchResidual`).
/// Final: xFinal (B, T, D) input of the final norm, meanF/rstdF, out (B, T, D) final tokens,
/// dOut (B, T, D) the gradient of the loss with respect to `out`, which the caller fills.
/// Blocks below `firstSavedBlock` run without storing anything (they will not be backpropagated).
/// Allocated with `gradients: false` (inference), dOut and the backward-only scratch are left out.
public final class ViTActivations: @unchecked Sendable {
    public struct BlockViews: Sendable {
        public var xIn = -1, mean1 = -1, rstd1 = -1, qkv = -1, xMid = -1, mean2 = -1, rstd2 = -1, ffn = -1
    }

    public let config: ViTConfig
    public let batch: Int, height: Int, width: Int
    public let gridHeight: Int, gridWidth: Int
    /// T = 1 + R + N.
    public let tokens: Int
    /// B·T.
    public let rows: Int
    public let firstSavedBlock: Int
    /// Offsets into `slab`; `blocks[i]` is all −1 for i < firstSavedBlock.
    public let blocks: [BlockViews]
    public let xFinal: Int, meanF: Int, rstdF: Int, out: Int, dOut: Int
    /// (depth, 2, B) per-sample stochastic-depth scales of the attention (0) and MLP (1) branches.
    public let branchScale: Int
    let dX: Int
    /// Whether dOut and backward's scratch exist (`backward` needs them).
    public let hasGradients: Bool
    /// Whether the scratch holds a buffer for one block weight packed per product (`Gemm.pack`):
    /// what a forward of an unpacked model and every backward use.
    public let hasPackBuffer: Bool
    /// How many saved blocks (the lowest ones) store no feed-forward pre-activation: backward
    /// recomputes it there.
    public let recomputedFeedForwardBlocks: Int
    /// Whether any block recomputes its feed-forward pre-activation.
    public var recomputesFeedForward: Bool { recomputedFeedForwardBlocks > 0 }
    let scratch: Int
    /// (N, E/2) RoPE cos and sin tables of the last `forwardTraining` (−1 without RoPE).
    let ropeCos: Int, ropeSin: Int
    /// Coordinate transform of the next `forwardTraining`'s RoPE tables (DINOv3 training-time
    /// augmentation; identity by default, and at inference).
    public var ropeTransform = RoPECoordinateTransform()
    /// `Threads.count` when allocated: the attention scratch holds one slot per worker.
    public let workers: Int
    let scratchCount: Int
    public let slab: FloatSlab

    /// Allocates for images of (batch, C, height, width).
    /// - Throws: `.shape` for a size the model cannot take; `.outOfMemory`.
    /// - Parameter gradients: false for a forward-only use (inference): no dOut, no backward
    ///   scratch; `backward` then refuses these activations.
    /// - Parameter recomputeFeedForwardBlocks: store no `ffn` in this many saved blocks, from
    ///   `firstSavedBlock` up (see the type's documentation); more than the saved blocks means all.
    /// - Parameter packBuffer: whether activations without gradients hold a buffer for weights
    ///   packed per product (with gradients they always do); a forward that needs one and finds
    ///   none allocates it for the call. Inference on a packed model does not need it.
    public init(config c: ViTConfig, batch: Int, height: Int, width: Int, firstSavedBlock: Int = 0,
                gradients: Bool = true, recomputeFeedForwardBlocks: Int = 0, packBuffer: Bool = false) throws {
        let l = try Self.layout(config: c, batch: batch, height: height, width: width, firstSavedBlock: firstSavedBlock,
                                gradients: gradients, recomputeFeedForwardBlocks: recomputeFeedForwardBlocks,
                                packBuffer: packBuffer)
        config = c
        self.batch = batch
        self.height = height
        self.width = width
        gridHeight = l.gridHeight
        gridWidth = l.gridWidth
        tokens = l.tokens
        rows = l.rows
        self.firstSavedBlock = firstSavedBlock
        blocks = l.blocks
        xFinal = l.xFinal; meanF = l.meanF; rstdF = l.rstdF; out = l.out
        hasGradients = gradients
        hasPackBuffer = l.hasPackBuffer
        recomputedFeedForwardBlocks = l.recomputed
        dOut = l.dOut
        branchScale = l.branchScale
        dX = l.dX
        workers = Threads.count
        scratchCount = l.scratchCount
        scratch = l.scratch
        ropeCos = l.ropeCos
        ropeSin = l.ropeSin
        slab = try FloatSlab(count: l.total)
        resetBranchScales()
    }

    /// Bytes `init` with these arguments would allocate (at the current `Threads.count`), without
    /// allocating; it throws what `init` would throw for bad arguments.
    public static func byteCount(config c: ViTConfig, batch: Int, height: Int, width: Int, firstSavedBlock: Int = 0,
                                 gradients: Bool = true, recomputeFeedForwardBlocks: Int = 0, packBuffer: Bool = false) throws -> Int {
        let l = try layout(config: c, batch: batch, height: height, width: width, firstSavedBlock: firstSavedBlock,
                           gradients: gradients, recomputeFeedForwardBlocks: recomputeFeedForwardBlocks,
                           packBuffer: packBuffer)
        return l.total * MemoryLayout<Float>.stride
    }

    /// Offsets (in floats) of every view in the slab, and its size.
    struct Layout {
        var gridHeight = 0, gridWidth = 0, tokens = 0, rows = 0, recomputed = 0
        var blocks: [BlockViews] = []
        var xFinal = 0, meanF = 0, rstdF = 0, out = 0, dOut = 0, branchScale = 0, dX = 0
        var scratch = 0, scratchCount = 0, ropeCos = -1, ropeSin = -1
        /// Gradients always hold a pack buffer; inference when asked (`packBuffer`).
        var hasPackBuffer = false
        var total = 0
    }

    /// The one place that checks the arguments and lays out the slab (`init`, `byteCount`).
    static func layout(config c: ViTConfig, batch: Int, height: Int, width: Int, firstSavedBlock: Int,
                       gradients: Bool, recomputeFeedForwardBlocks: Int, packBuffer: Bool) throws -> Layout {
        try c.validate()
        let ps = c.patchSize
        guard height >= ps, width >= ps, height % ps == 0, width % ps == 0 else {
            throw NecoError.shape("input \(height)×\(width) is not a positive multiple of the patch size \(ps)")
        }
        guard batch >= 1, batch <= 4096 else { throw NecoError.shape("batch size \(batch) out of range 1...4096") }
        guard firstSavedBlock >= 0, firstSavedBlock <= c.depth else {
            throw NecoError.invalidArgument("firstSavedBlock \(firstSavedBlock) out of range 0...\(c.depth)")
        }
        guard recomputeFeedForwardBlocks >= 0 else {
            throw NecoError.invalidArgument("recomputed feed-forward blocks \(recomputeFeedForwardBlocks) must not be negative")
        }
        var l = Layout()
        l.recomputed = min(recomputeFeedForwardBlocks, c.depth - firstSavedBlock)
        l.hasPackBuffer = gradients || packBuffer
        l.gridHeight = height / ps
        l.gridWidth = width / ps
        let n = l.gridHeight * l.gridWidth
        guard n <= 65536 else { throw NecoError.shape("input \(height)×\(width) is too large") }
        l.tokens = 1 + c.registers + n
        let rows = batch * l.tokens
        l.rows = rows
        let d = c.embedDim
        let f = c.ffn == .swiglu ? 2 * c.mlpHidden : c.mlpHidden
        var total = 0
        func take(_ count: Int) -> Int { let o = total; total += count; return o }
        for i in 0..<c.depth {
            var v = BlockViews()
            if i >= firstSavedBlock {
                v.xIn = take(rows * d); v.mean1 = take(rows); v.rstd1 = take(rows)
                v.qkv = take(rows * 3 * d)
                v.xMid = take(rows * d); v.mean2 = take(rows); v.rstd2 = take(rows)
                v.ffn = i < firstSavedBlock + l.recomputed ? -1 : take(rows * f)
            }
            l.blocks.append(v)
        }
        l.xFinal = take(rows * d); l.meanF = take(rows); l.rstdF = take(rows)
        l.out = take(rows * d)
        l.dOut = take(gradients ? rows * d : 0)
        l.branchScale = take(c.depth * 2 * batch)
        l.dX = take(gradients ? rows * d : 0)
        l.scratchCount = scratchCount(config: c, batch: batch, gridHeight: l.gridHeight, gridWidth: l.gridWidth,
                                      gradients: gradients, recomputeFeedForward: l.recomputed > 0,
                                      packBuffer: l.hasPackBuffer)
        l.scratch = take(l.scratchCount)
        if c.rope != nil {
            l.ropeCos = take(n * c.headDim / 2)
            l.ropeSin = take(n * c.headDim / 2)
        }
        l.total = total
        return l
    }

    /// Sets every stochastic-depth scale to 1 (no drop path).
    public func resetBranchScales() {
        slab[branchScale].update(repeating: 1, count: config.depth * 2 * batch)
    }

    /// Per-sample scales (B) of block `block`'s attention (`branch` 0) or MLP (`branch` 1) branch.
    public func branchScales(block: Int, branch: Int) -> UnsafeMutableBufferPointer<Float> {
        precondition(block >= 0 && block < config.depth && (branch == 0 || branch == 1), "branch scale index out of range")
        return UnsafeMutableBufferPointer(start: slab[branchScale + (block * 2 + branch) * batch], count: batch)
    }

    /// Final-norm tokens (B, T, D) of the last `forwardTraining`.
    public var output: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: slab[out], count: rows * config.embedDim) }
    /// dL/d`output` (B, T, D), read by `backward`; the caller fills it (zero it first).
    /// Empty for activations allocated without gradients.
    public var outputGradient: UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: slab[dOut], count: hasGradients ? rows * config.embedDim : 0)
    }

    func check(config c: ViTConfig) throws {
        guard config == c else { throw NecoError.shape("activations were allocated for \(config.name), not \(c.name)") }
        guard Threads.count <= workers else {
            throw NecoError.invalidArgument("activations were allocated for \(workers) threads; Threads.count is now \(Threads.count)")
        }
    }

    /// Bytes held.
    public var byteCount: Int { slab.count * MemoryLayout<Float>.stride }

    /// Scratch shared by the forward's temporaries and backward's recomputations (`BlockScratch`):
    /// four (B·T, D) buffers (three without gradients), one (B·T, max(F, 4D)) buffer, a
    /// (D, max(D, H)) weight-gradient buffer (with gradients), the SwiGLU hidden (B·T, H), and per
    /// worker the attention kernel's O(T·E) scratch, with gradients also two (T, T) matrices
    /// (`AttentionRecompute`), and (with gradients, or when asked) a buffer for one block weight
    /// packed for the GEMM kernel (`packCount`); the embedding layer reuses the same region.
    /// With any block recomputing, one more (B·T, F) buffer for the recomputed pre-activation.
    static func scratchCount(config c: ViTConfig, batch: Int, gridHeight gh: Int, gridWidth gw: Int, gradients: Bool,
                             recomputeFeedForward: Bool, packBuffer: Bool) -> Int {
        let d = c.embedDim, t = 1 + c.registers + gh * gw, rows = batch * t
        let f = c.ffn == .swiglu ? 2 * c.mlpHidden : c.mlpHidden
        let h = c.ffn == .swiglu ? c.mlpHidden : 0
        let attention = gradients ? AttentionRecompute.scratchCount(tokens: t, headDim: c.headDim)
            : Attention.scratchCount(tokens: t, headDim: c.headDim)
        let blockPart = (gradients ? 4 : 3) * rows * d + rows * max(f, 4 * d) + (gradients ? d * max(d, c.mlpHidden) : 0)
            + rows * h + (recomputeFeedForward ? rows * f : 0) + (packBuffer ? packCount(config: c) : 0) + attention
        var embedPart = Embeddings.forwardScratchCount(config: c, gridHeight: gh, gridWidth: gw)
        if gradients {
            embedPart = max(embedPart, Embeddings.backwardScratchCount(config: c, batch: batch, gridHeight: gh, gridWidth: gw,
                                                                       wantImageGradient: true))
        }
        return max(blockPart, embedPart)
    }
}

extension ViTActivations {
    /// Floats of the largest block weight packed for `Gemm.linear` either way round: as the
    /// forward's W (out, in), or transposed for backward's dX = dY · W (`Gemm.pack`).
    static func packCount(config c: ViTConfig) -> Int {
        let d = c.embedDim, f = c.ffn == .swiglu ? 2 * c.mlpHidden : c.mlpHidden, h = c.mlpHidden
        let shapes = [(3 * d, d), (d, d), (f, d), (d, h)]
        return shapes.map { (o, i) in max(Gemm.packedCount(outDim: o, inDim: i) ?? 0, Gemm.packedCount(outDim: i, inDim: o) ?? 0) }
            .max() ?? 0
    }
}

/// Pointers into the scratch region of a `ViTActivations`.
struct BlockScratch {
    let y: UnsafeMutablePointer<Float>      // (rows, D)  LayerNorm output / branch output z
    let d1: UnsafeMutablePointer<Float>     // (rows, D)  heads (forward) / dLN, dHeads (backward)
    let d2: UnsafeMutablePointer<Float>     // (rows, D)  xMid of unsaved blocks / dZ
    let d3: UnsafeMutablePointer<Float>     // (rows, D)  dZ ⊙ γ (empty without gradients)
    let f: UnsafeMutablePointer<Float>      // (rows, max(F, 4D)) activation / dActivation; qkv, then the
                                            //   feed-forward pre-activation, of unsaved blocks
    let g: UnsafeMutablePointer<Float>      // (D, max(D, H)) weight-gradient product (empty without gradients)
    let hidden: UnsafeMutablePointer<Float> // (rows, H) SwiGLU hidden (empty for the MLP)
    let ffn: UnsafeMutablePointer<Float>    // (rows, F) recomputed feed-forward pre-activation (empty unless recomputed)
    let pack: UnsafeMutablePointer<Float>?  // one block weight packed for `Gemm.linear` (nil unless `hasPackBuffer`)
    let attn: UnsafeMutablePointer<Float>   // attention scratch

    init(_ a: ViTActivations) {
        let c = a.config, d = c.embedDim, rows = a.rows
        let f = c.ffn == .swiglu ? 2 * c.mlpHidden : c.mlpHidden
        var p = a.slab[a.scratch]
        func take(_ n: Int) -> UnsafeMutablePointer<Float> { let q = p; p += n; return q }
        y = take(rows * d); d1 = take(rows * d); d2 = take(rows * d); d3 = take(a.hasGradients ? rows * d : 0)
        self.f = take(rows * max(f, 4 * d))
        g = take(a.hasGradients ? d * max(d, c.mlpHidden) : 0)
        hidden = take(c.ffn == .swiglu ? rows * c.mlpHidden : 0)
        ffn = take(a.recomputesFeedForward ? rows * f : 0)
        pack = a.hasPackBuffer ? take(ViTActivations.packCount(config: c)) : nil
        attn = p
    }
}

extension ViTModel {
    /// The forward pass, keeping activations for `backward` (or not).
    ///
    /// Reads the stochastic-depth scales in `acts` (all 1 unless the caller set them; see
    /// `ViTActivations.branchScales`). Writes the final-norm tokens to `acts.output`.
    /// - Parameters:
    ///   - images: (B, C, H, W) normalised pixels, with the sizes `acts` was made for.
    ///   - saveActivations: false runs every block without storing anything (`acts` then only
    ///     lends its memory: an EMA teacher's forward between two student steps, and inference).
    ///   - observer: called with the intermediate results (see `forward`).
    public func forwardTraining(_ acts: ViTActivations, images: UnsafePointer<Float>, saveActivations: Bool = true,
                                observer: StageObserver? = nil) throws {
        let c = config
        try acts.check(config: c)
        // Saved blocks run on the unpacked weights; unsaved ones read released Linear weights only
        // through their packed copies (`storage` never restores them).
        if saveActivations && acts.firstSavedBlock < c.depth { restoreReleasedWeights() }
        let L = storage.layout, p = storage.slab
        let d = c.embedDim, rows = acts.rows, t = acts.tokens, batch = acts.batch
        let f = c.ffn == .swiglu ? 2 * c.mlpHidden : c.mlpHidden
        let a = acts.slab
        let s = BlockScratch(acts)
        let scale = 1 / Float(c.headDim).squareRoot()
        let packs = packedBlocks
        // Every Linear of the blocks runs on libneco's packed kernel: on the model's packed copies
        // in blocks that store nothing, otherwise (training, whose weights change every step, and
        // unpacked models) on each weight packed just before its product into the activations'
        // pack buffer, or a buffer allocated for this call when they have none. So a block gives
        // the same bits packed or not, saved or not.
        let first = saveActivations ? acts.firstSavedBlock : c.depth
        let callBuffer = s.pack == nil && (first < c.depth || packs.count < c.depth)
            ? try FloatSlab(count: ViTActivations.packCount(config: c)) : nil
        let packBuffer = s.pack ?? callBuffer?.base
        func packed(_ copy: PackedWeight?, _ w: Int, outDim: Int, inDim: Int) throws -> PackedPanels {
            if let copy { return copy.panels }
            // A block without a packed copy is saved or beyond `packs`, and then `packBuffer` exists (above).
            guard let packBuffer else { throw NecoError(.internal, "no buffer to pack a block's Linear weights into") }
            return Gemm.pack(p[w], outDim: outDim, inDim: inDim, into: packBuffer)
        }

        // 1–2. Tokens: into the input of the first saved block (or xFinal when none is saved).
        let x0 = first < c.depth ? a[acts.blocks[first].xIn] : a[acts.xFinal]
        Embeddings.forward(x: x0, images: images, params: p, layout: L, batch: batch, height: acts.height,
                           width: acts.width, scratch: a[acts.scratch], observer: observer)
        observer?("tokens", UnsafeBufferPointer(start: x0, count: rows * d))
        if let rope = c.rope {
            Profile.measure(.copies) {
                RoPE.tables(cos: a[acts.ropeCos], sin: a[acts.ropeSin], gridHeight: acts.gridHeight, gridWidth: acts.gridWidth,
                            headDim: c.headDim, periods: RoPE.periods(headDim: c.headDim, settings: rope),
                            transform: acts.ropeTransform)
            }
        }

        // 3. Blocks: x += s_b·ls1 ⊙ proj(attn(LN1(x)));  x += s_b·ls2 ⊙ FFN(LN2(x)).
        for (i, blk) in L.blocks.enumerated() {
            let v = acts.blocks[i]
            let saved = i >= first
            let xIn = saved ? a[v.xIn] : x0
            let xMid = saved ? a[v.xMid] : s.d2
            let xOut = i + 1 < c.depth ? (i + 1 >= first ? a[acts.blocks[i + 1].xIn] : x0) : a[acts.xFinal]
            let qkv = saved ? a[v.qkv] : s.f
            // Unsaved blocks (and saved ones that recompute it) keep no feed-forward
            // pre-activation: it reuses qkv's buffer (dead after attention) and GELU runs in place.
            let keepFFN = saved && v.ffn >= 0
            let ffn = keepFFN ? a[v.ffn] : s.f
            let sc1 = UnsafePointer(a[acts.branchScale + (i * 2) * batch])
            let sc2 = UnsafePointer(a[acts.branchScale + (i * 2 + 1) * batch])
            let ls1: UnsafePointer<Float>? = blk.ls1 >= 0 ? UnsafePointer(p[blk.ls1]) : nil
            let ls2: UnsafePointer<Float>? = blk.ls2 >= 0 ? UnsafePointer(p[blk.ls2]) : nil
            // Blocks that store nothing use the packed weights when the model has them.
            let pk: PackedBlock? = !saved && i < packs.count ? packs[i] : nil

            Profile.measure(.layerNorm) {
                LayerNorm.forward(out: s.y, mean: saved ? a[v.mean1] : nil, rstd: saved ? a[v.rstd1] : nil, input: xIn,
                                  weight: p[blk.norm1W], bias: p[blk.norm1B], rows: rows, dim: d, eps: c.layerNormEps)
            }
            try Profile.measure(.gemmQKV) {
                Gemm.linear(out: qkv, input: s.y, weight: try packed(pk?.qkv, blk.qkvW, outDim: 3 * d, inDim: d),
                            bias: p[blk.qkvB], rows: rows)
            }
            if c.rope != nil {
                // q, k rotated in place: the saved qkv is what attention saw.
                Profile.measure(.attention) {
                    RoPE.apply(qkv: qkv, cos: a[acts.ropeCos], sin: a[acts.ropeSin], batch: batch, tokens: t,
                               prefix: 1 + c.registers, heads: c.heads, headDim: c.headDim)
                }
            }
            Attention.forward(out: s.d1, scratch: s.attn, qkv: qkv, batch: batch, tokens: t, heads: c.heads,
                              headDim: c.headDim, scale: scale)
            // With every sample's branch kept at scale 1 (inference, training without drop path),
            // the residual and LayerScale are the GEMM's epilogue: proj stores
            // xIn + γ₁ ⊙ (attn·Wᵀ + b) into xMid (the same bits as `BranchResidual.forward`).
            let fusedResidual = (0..<batch).allSatisfy { sc1[$0] == 1 && sc2[$0] == 1 }
            try Profile.measure(.gemmProj) {
                let w = try packed(pk?.proj, blk.projW, outDim: d, inDim: d)
                if fusedResidual {
                    Gemm.linear(out: xMid, input: s.d1, weight: w, bias: p[blk.projB], rows: rows,
                                epilogue: .residual, residual: xIn, layerScale: ls1)
                } else { Gemm.linear(out: s.y, input: s.d1, weight: w, bias: p[blk.projB], rows: rows) }
            }
            if !fusedResidual {
                Profile.measure(.residual) {
                    BranchResidual.forward(out: xMid, residual: xIn, branch: s.y, gamma: ls1, sampleScale: sc1,
                                           batch: batch, tokens: t, dim: d)
                }
            }

            Profile.measure(.layerNorm) {
                LayerNorm.forward(out: s.y, mean: saved ? a[v.mean2] : nil, rstd: saved ? a[v.rstd2] : nil, input: xMid,
                                  weight: p[blk.norm2W], bias: p[blk.norm2B], rows: rows, dim: d, eps: c.layerNormEps)
            }
            // Keeping no pre-activation, GELU is the GEMM's epilogue: fc1 stores gelu(x·Wᵀ + b)
            // directly (the same bits as GELU after it, which backward's recomputation runs).
            let fusedGELU = !keepFFN && c.ffn != .swiglu
            try Profile.measure(.gemmFC1) {
                Gemm.linear(out: ffn, input: s.y, weight: try packed(pk?.fc1, blk.fc1W, outDim: f, inDim: d), bias: p[blk.fc1B],
                            rows: rows, epilogue: fusedGELU ? .gelu : .none)
            }
            let hidden: UnsafeMutablePointer<Float>
            if fusedGELU {
                hidden = ffn
            } else if c.ffn == .swiglu {
                Profile.measure(.activation) { SwiGLU.forward(hidden: s.hidden, gates: ffn, rows: rows, width: c.mlpHidden) }
                hidden = s.hidden
            } else {
                // Out of place: the pre-activation is kept for backward.
                Profile.measure(.activation) { GELU.forward(out: s.f, input: ffn, count: rows * f) }
                hidden = s.f
            }
            try Profile.measure(.gemmFC2) {
                let w = try packed(pk?.fc2, blk.fc2W, outDim: d, inDim: c.mlpHidden)
                if fusedResidual {
                    Gemm.linear(out: xOut, input: hidden, weight: w, bias: p[blk.fc2B], rows: rows,
                                epilogue: .residual, residual: xMid, layerScale: ls2)
                } else { Gemm.linear(out: s.y, input: hidden, weight: w, bias: p[blk.fc2B], rows: rows) }
            }
            if !fusedResidual {
                Profile.measure(.residual) {
                    BranchResidual.forward(out: xOut, residual: xMid, branch: s.y, gamma: ls2, sampleScale: sc2,
                                           batch: batch, tokens: t, dim: d)
                }
            }
            observer?("block\(i)", UnsafeBufferPointer(start: xOut, count: rows * d))
        }

        // 4. Final LayerNorm on every token.
        Profile.measure(.layerNorm) {
            LayerNorm.forward(out: a[acts.out], mean: a[acts.meanF], rstd: a[acts.rstdF], input: a[acts.xFinal],
                              weight: p[L.normW], bias: p[L.normB], rows: rows, dim: d, eps: c.layerNormEps)
        }
        observer?("norm", UnsafeBufferPointer(start: a[acts.out], count: rows * d))
    }

    /// Backward of `forwardTraining`: the same calls reversed, block by block.
    ///
    /// Reads dL/d(output) from `acts.outputGradient`. Adds parameter gradients (`+=`) to `grads`
    /// (addressed with `params.layout` offsets, `params.count` floats) for the parts `trainable`
    /// selects, and stops at `trainable.firstBlock`.
    /// - Parameters:
    ///   - images: the images of the forward pass (B, C, H, W); im2col is recomputed from them.
    ///   - dImages: if non-nil, (B, C, H, W) += dL/d(images). Needs `trainable.firstBlock == 0`.
    /// - Precondition: `acts` holds this model's last `forwardTraining` on `images`, with the same
    ///   parameters (they must not change between forward and backward).
    public func backward(_ acts: ViTActivations, grads: UnsafeMutablePointer<Float>, images: UnsafePointer<Float>,
                         dImages: UnsafeMutablePointer<Float>? = nil, trainable: ViTTrainableParts = .all) throws {
        let c = config
        try acts.check(config: c)
        guard acts.hasGradients else {
            throw NecoError.invalidArgument("these activations were allocated without gradients (gradients: false); backward needs them")
        }
        guard trainable.firstBlock >= 0, trainable.firstBlock <= c.depth else {
            throw NecoError.invalidArgument("first trainable block \(trainable.firstBlock) out of range 0...\(c.depth)")
        }
        guard !trainable.embeddingsAndNorm || trainable.firstBlock == 0 else {
            throw NecoError.invalidArgument("embeddings can only train when every block trains")
        }
        guard dImages == nil || trainable.firstBlock == 0 else {
            throw NecoError.invalidArgument("an image gradient needs backward through every block (first trainable block 0)")
        }
        guard acts.firstSavedBlock <= trainable.firstBlock else {
            throw NecoError.invalidArgument("blocks below \(acts.firstSavedBlock) were not saved; cannot train from block \(trainable.firstBlock)")
        }
        let L = params.layout, p = params.slab
        let d = c.embedDim, rows = acts.rows, t = acts.tokens, batch = acts.batch
        let f = c.ffn == .swiglu ? 2 * c.mlpHidden : c.mlpHidden
        let hw = c.mlpHidden
        let a = acts.slab
        let s = BlockScratch(acts)
        let scale = 1 / Float(c.headDim).squareRoot()
        let dX = a[acts.dX]
        // With gradients the scratch has the pack buffer: every input gradient below goes through
        // the packed kernel (`Linear.inputGradient`), each weight packed transposed just before.
        guard let pack = s.pack else { throw NecoError.invalidArgument("activations without a pack buffer") }
        let needBlocks = trainable.firstBlock < c.depth
        let needEmbeddings = trainable.embeddingsAndNorm || dImages != nil
        if !needBlocks && !trainable.embeddingsAndNorm { return }

        // 4. Final LayerNorm: dX (= dL/dxFinal, written here first) from dOut. Its weight and bias
        // gradients land in the gradient buffer only when the norm trains, in scratch otherwise.
        dX.update(repeating: 0, count: rows * d)
        let normDW = trainable.embeddingsAndNorm ? grads + L.normW : s.g
        let normDB = trainable.embeddingsAndNorm ? grads + L.normB : s.g + d
        if !trainable.embeddingsAndNorm { s.g.update(repeating: 0, count: 2 * d) }
        Profile.measure(.backwardElementwise) {
            LayerNorm.backward(dInput: dX, dWeight: normDW, dBias: normDB, dOut: a[acts.dOut], input: a[acts.xFinal],
                               weight: p[L.normW], mean: a[acts.meanF], rstd: a[acts.rstdF], rows: rows, dim: d)
        }

        // 3. Blocks, last to first. dX holds dL/d(block output) on entry and dL/d(block input) on exit.
        for i in stride(from: c.depth - 1, through: trainable.firstBlock, by: -1) {
            let blk = L.blocks[i], v = acts.blocks[i]
            let sc1 = UnsafePointer(a[acts.branchScale + (i * 2) * batch])
            let sc2 = UnsafePointer(a[acts.branchScale + (i * 2 + 1) * batch])
            let ls1: UnsafePointer<Float>? = blk.ls1 >= 0 ? UnsafePointer(p[blk.ls1]) : nil
            let ls2: UnsafePointer<Float>? = blk.ls2 >= 0 ? UnsafePointer(p[blk.ls2]) : nil
            let dLS1: UnsafeMutablePointer<Float>? = blk.ls1 >= 0 ? grads + blk.ls1 : nil
            let dLS2: UnsafeMutablePointer<Float>? = blk.ls2 >= 0 ? grads + blk.ls2 : nil
            let ffn: UnsafeMutablePointer<Float>
            if v.ffn >= 0 {
                ffn = a[v.ffn]
            } else {
                // ffn = fc1(LN2(xMid)), recomputed: the same calls as the forward, so the same bits.
                Profile.measure(.backwardRecompute) {
                    LayerNorm.forward(out: s.y, mean: nil, rstd: nil, input: a[v.xMid], weight: p[blk.norm2W],
                                      bias: p[blk.norm2B], rows: rows, dim: d, eps: c.layerNormEps)
                    let w = Gemm.pack(p[blk.fc1W], outDim: f, inDim: d, into: pack)
                    Gemm.linear(out: s.ffn, input: s.y, weight: w, bias: p[blk.fc1B], rows: rows)
                }
                ffn = s.ffn
            }

            // xOut = xMid + s_b·ls2 ⊙ fc2(act):  recompute act, then dAct (overwrites act), dZ, dZγ.
            let hidden: UnsafeMutablePointer<Float>
            if c.ffn == .swiglu {
                Profile.measure(.backwardRecompute) {
                    SwiGLU.forward(hidden: s.hidden, gates: ffn, rows: rows, width: hw)
                }
                hidden = s.hidden
            } else {
                Profile.measure(.backwardRecompute) {
                    GELU.forward(out: s.f, input: ffn, count: rows * f)
                }
                hidden = s.f
            }
            Profile.measure(.backwardElementwise) {
                BranchResidual.backwardScale(dZ: s.d2, dZGamma: s.d3, dOut: dX, gamma: ls2, sampleScale: sc2,
                                             batch: batch, tokens: t, dim: d)
            }
            Profile.measure(.backwardLinear) {
                BranchResidual.backwardParams(dWeight: grads + blk.fc2W, dBias: grads + blk.fc2B, dGamma: dLS2, dZ: s.d2,
                                              input: hidden, weight: p[blk.fc2W], bias: p[blk.fc2B], gamma: ls2,
                                              gScratch: s.g, batch: batch, tokens: t, dim: d, inDim: hw)
            }
            // dAct (rows, H) = dZγ · W_fc2   [written once, over the recomputed activation]
            Profile.measure(.backwardLinear) {
                BranchResidual.backwardInput(dInput: hidden, dZGamma: s.d3, weight: p[blk.fc2W], rows: rows, dim: d,
                                             inDim: hw, pack: pack)
            }
            // act = GELU(ffn) | SwiGLU(ffn):  dFFN (rows, F)
            let dFFN: UnsafeMutablePointer<Float>
            if c.ffn == .swiglu {
                s.f.update(repeating: 0, count: rows * f)
                Profile.measure(.backwardElementwise) {
                    SwiGLU.backward(dGates: s.f, dHidden: s.hidden, gates: ffn, rows: rows, width: hw)
                }
                dFFN = s.f
            } else {
                // dFFN = dAct ⊙ gelu'(ffn), with fc1's bias gradient (its column sums) in the same pass
                Profile.measure(.backwardElementwise) {
                    GELU.backwardInPlace(grad: s.f, input: ffn, rows: rows, cols: f, columnSum: grads + blk.fc1B)
                }
                dFFN = s.f
            }
            // ffn = fc1(LN2(xMid)):  LN2 (still in s.y where the pre-activation was recomputed above;
            // nothing since wrote s.y), then dLN (written once, into d1) and the fc1 gradients
            if v.ffn >= 0 {
                Profile.measure(.backwardRecompute) {
                    LayerNorm.forward(out: s.y, mean: nil, rstd: nil, input: a[v.xMid], weight: p[blk.norm2W],
                                      bias: p[blk.norm2B], rows: rows, dim: d, eps: c.layerNormEps)
                }
            }
            Profile.measure(.backwardLinear) {
                Linear.inputGradient(s.d1, dOut: dFFN, weight: p[blk.fc1W], rows: rows, inDim: d, outDim: f, pack: pack)
                Linear.backward(dWeight: grads + blk.fc1W, dBias: nil, dOut: dFFN, input: s.y, rows: rows, inDim: d,
                                outDim: f)
            }
            if c.ffn == .swiglu {
                Profile.measure(.backwardElementwise) { BranchResidual.columnSum(into: grads + blk.fc1B, dFFN, rows: rows, cols: f) }
            }
            // LN2: dX (= dL/dxMid after this) += LN backward
            Profile.measure(.backwardElementwise) {
                LayerNorm.backward(dInput: dX, dWeight: grads + blk.norm2W, dBias: grads + blk.norm2B, dOut: s.d1,
                                   input: a[v.xMid], weight: p[blk.norm2W], mean: a[v.mean2], rstd: a[v.rstd2],
                                   rows: rows, dim: d)
            }

            // xMid = xIn + s_b·ls1 ⊙ proj(heads):  dHeads (d1), dZ (d2), dZγ (d3)
            Profile.measure(.backwardElementwise) {
                BranchResidual.backwardScale(dZ: s.d2, dZGamma: s.d3, dOut: dX, gamma: ls1, sampleScale: sc1,
                                             batch: batch, tokens: t, dim: d)
            }
            Profile.measure(.backwardLinear) {
                BranchResidual.backwardInput(dInput: s.d1, dZGamma: s.d3, weight: p[blk.projW], rows: rows, dim: d,
                                             inDim: d, pack: pack)
            }
            // heads = attention(qkv): dQKV (f[D...4D], zeroed) += …, heads recomputed into f[0..<D]
            let headsBuf = s.f, dQKV = s.f + rows * d
            dQKV.update(repeating: 0, count: rows * 3 * d)
            Profile.measure(.backwardAttention) {
                AttentionRecompute.backward(dQKV: dQKV, headsOut: headsBuf, dOut: s.d1, qkv: a[v.qkv], scratch: s.attn,
                                            batch: batch, tokens: t, heads: c.heads, headDim: c.headDim, scale: scale)
            }
            if c.rope != nil {
                // dq, dk of the rotated q, k → of the Linear's output (the transposed rotation)
                Profile.measure(.backwardAttention) {
                    RoPE.apply(qkv: dQKV, cos: a[acts.ropeCos], sin: a[acts.ropeSin], batch: batch, tokens: t,
                               prefix: 1 + c.registers, heads: c.heads, headDim: c.headDim, inverse: true)
                }
            }
            Profile.measure(.backwardLinear) {
                BranchResidual.backwardParams(dWeight: grads + blk.projW, dBias: grads + blk.projB, dGamma: dLS1, dZ: s.d2,
                                              input: headsBuf, weight: p[blk.projW], bias: p[blk.projB], gamma: ls1,
                                              gScratch: s.g, batch: batch, tokens: t, dim: d, inDim: d)
            }
            // qkv = Linear(LN1(xIn)):  recompute LN1, dLN (written once, into the heads buffer)
            Profile.measure(.backwardRecompute) {
                LayerNorm.forward(out: s.y, mean: nil, rstd: nil, input: a[v.xIn], weight: p[blk.norm1W],
                                  bias: p[blk.norm1B], rows: rows, dim: d, eps: c.layerNormEps)
            }
            let dLN = headsBuf
            Profile.measure(.backwardLinear) {
                Linear.inputGradient(dLN, dOut: dQKV, weight: p[blk.qkvW], rows: rows, inDim: d, outDim: 3 * d, pack: pack)
                Linear.backward(dWeight: grads + blk.qkvW, dBias: nil, dOut: dQKV, input: s.y, rows: rows, inDim: d,
                                outDim: 3 * d)
            }
            // qkv bias: the query and value thirds are column sums of dQKV. The key third's exact
            // gradient is 0 (a constant added to every key shifts each softmax row by a constant,
            // which softmax ignores: Σ_j dK_j = Σ_i q_i · Σ_j dS_ij = 0), so it is left untouched;
            // its column sums would only add float32 rounding noise, which AdamW would divide by
            // its own magnitude into lr-sized steps (NECO-SPEC §4.7).
            let keyBias = grads + blk.qkvB + d
            let keyBiasBefore = Array(UnsafeBufferPointer(start: keyBias, count: d))
            Profile.measure(.backwardElementwise) {
                BranchResidual.columnSum(into: grads + blk.qkvB, dQKV, rows: rows, cols: 3 * d)
            }
            // With RoPE the keys of the patch tokens are rotated per position, so a key bias is no
            // longer a constant shift and does get a gradient: kept for a full (trainable) key bias.
            if c.rope == nil || c.qkvBias != .full { keyBias.update(from: keyBiasBefore, count: d) }
            // Parts the model fixes at zero (DINOv3's masked key bias, or no qkv bias) get none.
            RoPE.maskBias(grads + blk.qkvB, mode: c.qkvBias, dim: d)
            // LN1: dX (= dL/dxIn after this) += LN backward
            Profile.measure(.backwardElementwise) {
                LayerNorm.backward(dInput: dX, dWeight: grads + blk.norm1W, dBias: grads + blk.norm1B, dOut: dLN,
                                   input: a[v.xIn], weight: p[blk.norm1W], mean: a[v.mean1], rstd: a[v.rstd1],
                                   rows: rows, dim: d)
            }
        }

        // 1–2. Tokens.
        if needEmbeddings {
            if trainable.embeddingsAndNorm {
                Profile.measure(.backwardEmbedding) {
                    Embeddings.backward(grads: grads, dImages: dImages, dX: dX, images: images, params: p, layout: L,
                                        batch: batch, height: acts.height, width: acts.width, scratch: a[acts.scratch])
                }
            } else if let dImages {
                // Image gradient only: route the parameter gradients of the embedding to scratch.
                let dummy = try FloatSlab(count: L.total)
                Profile.measure(.backwardEmbedding) {
                    Embeddings.backward(grads: dummy.base, dImages: dImages, dX: dX, images: images, params: p, layout: L,
                                        batch: batch, height: acts.height, width: acts.width, scratch: a[acts.scratch])
                }
            }
        }
    }
}
