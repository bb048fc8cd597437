import NecoCore

/// A DINO / DINOv2 Vision Transformer with its weights (NECO-SPEC §2.2).
///
/// Letters: B batch, C channels, H×W image, P patch, h = H/P, w = W/P, N = h·w patches,
/// R registers, T = 1 + R + N tokens, D embed dim, F feed-forward width.
///
/// Token order: [CLS, r1 … rR, patch tokens row-major]. Registers are inserted after the position
/// embedding is added and never receive one. The model is immutable after loading; `forward` may
/// run concurrently from several threads (each call takes a workspace of its own, see
/// `keptWorkspaceBytes`).
public final class ViTModel: @unchecked Sendable {
    /// The weights. Reading this property first writes back the Linear weights that `packWeights`
    /// released (see there), so what it returns is always complete.
    public var params: ViTParameters {
        restoreReleasedWeights()
        return storage
    }
    /// The weights as they are: the forward pass reads released Linear weights only through their
    /// packed copies, so it uses this and never triggers a restore.
    let storage: ViTParameters
    public var config: ViTConfig { storage.config }
    /// Number of parameters (without restoring released weights).
    public var parameterCount: Int { storage.count }
    /// Where the weights came from (file path or "formula"/"random"), for reports.
    public var source: String
    /// Which key naming scheme the weights were stored in.
    public var scheme: WeightScheme

    public init(params: ViTParameters, source: String = "memory", scheme: WeightScheme = .meta) {
        self.storage = params
        self.source = source
        self.scheme = scheme
    }

    /// The four Linear weights of one block, packed for `Gemm.linear`.
    public struct PackedBlock: Sendable {
        public let qkv: PackedWeight, proj: PackedWeight, fc1: PackedWeight, fc2: PackedWeight
        /// The four, in block order.
        public var all: [PackedWeight] { [qkv, proj, fc1, fc2] }
    }

    /// Packed copies of every block's Linear weights (`packWeights`), used by every forward pass
    /// that stores nothing for backward; empty when the weights are not packed.
    public private(set) var packedBlocks: [PackedBlock] = []

    /// Whether `packWeights` has run (and `unpackWeights` not since).
    public var weightsArePacked: Bool { !packedBlocks.isEmpty }

    /// Whether the unpacked Linear weights are released (until `params` is read).
    public var linearWeightsReleased: Bool { lock.withLock { released } }

    private let lock = Lock()
    private var released = false

    /// Packs every block's Linear weights once into the layout of libneco's own GEMM kernel
    /// (`Gemm.linear`), so that inference neither repacks them per call nor goes through OpenBLAS.
    ///
    /// With `releasing` (the default) the unpacked copies' pages are handed back to the system
    /// as each weight is packed, so packing costs no memory (keeping both would add 84 MB for
    /// ViT-S/14): the first read of `params` (export, `copy`, training, saving) writes them back
    /// from the packed copies, exactly, and they stay. The packed copies are a snapshot:
    /// after changing the weights, call it again (or `unpackWeights`). Loaders call it for the
    /// models they return unless `NECO_PACK_WEIGHTS=0`; `Trainer` unpacks the student it updates.
    /// Not thread-safe against forward passes running on this model.
    /// - Throws: `.outOfMemory` (the model then stays unpacked, its weights complete).
    public func packWeights(releasing: Bool = true) throws {
        unpackWeights()
        let c = config, L = storage.layout, p = storage.slab
        let f = c.ffn == .swiglu ? 2 * c.mlpHidden : c.mlpHidden
        var packs: [PackedBlock] = []
        packs.reserveCapacity(L.blocks.count)
        do {
            for blk in L.blocks {
                let b = PackedBlock(
                    qkv: try PackedWeight(p[blk.qkvW], outDim: 3 * c.embedDim, inDim: c.embedDim),
                    proj: try PackedWeight(p[blk.projW], outDim: c.embedDim, inDim: c.embedDim),
                    fc1: try PackedWeight(p[blk.fc1W], outDim: f, inDim: c.embedDim),
                    fc2: try PackedWeight(p[blk.fc2W], outDim: c.embedDim, inDim: c.mlpHidden))
                packs.append(b)
                if releasing {
                    for w in b.all {
                        Memory.releasePages(UnsafeMutableRawPointer(mutating: w.source),
                                            bytes: w.outDim * w.inDim * MemoryLayout<Float>.stride)
                    }
                }
            }
        } catch {
            // Out of memory part way: write back what was released; the model stays unpacked.
            if releasing { for b in packs { for w in b.all { w.restoreSource() } } }
            throw error
        }
        lock.withLock {
            packedBlocks = packs
            released = releasing
        }
    }

    /// Drops the packed copies (after writing back released weights): forward passes use OpenBLAS
    /// on `params` again.
    public func unpackWeights() {
        restoreReleasedWeights()
        lock.withLock { packedBlocks = [] }
    }

    /// Writes released Linear weights back from their packed copies (once; thread-safe).
    func restoreReleasedWeights() {
        lock.withLock {
            guard released else { return }
            for b in packedBlocks {
                for w in b.all { w.restoreSource() }
            }
            released = false
        }
    }

    /// `NECO_PACK_WEIGHTS`: "0" keeps loaded models unpacked (and on OpenBLAS).
    public static var packsLoadedWeights: Bool { Environment.value("NECO_PACK_WEIGHTS") != "0" }

    /// What every model handed out for inference gets (loaders, the C ABI's trainer models, weight
    /// interpolation): `packWeights()` unless `NECO_PACK_WEIGHTS=0`. Packing is only a speed-up:
    /// when its memory cannot be had, the model stays unpacked (complete, on OpenBLAS).
    public func prepareForInference() {
        if Self.packsLoadedWeights { try? packWeights() }
    }

    /// An independent copy of the weights (same architecture and scheme), e.g. to train without
    /// touching a shared model.
    /// - Throws: `.outOfMemory` when the parameter slab cannot be allocated.
    public func copy(source: String? = nil) throws -> ViTModel {
        let p = try ViTParameters(config: config)
        p.slab.copy(from: params.slab)
        return ViTModel(params: p, source: source ?? self.source, scheme: scheme)
    }

    /// Bytes of inference workspace (`ViTActivations` without gradients) a model keeps between
    /// `forward` calls, so that a warm forward allocates and zero-fills nothing. Batch 8 of ViT-S/14
    /// at 224 px needs 30 MiB; a workspace over the limit is freed after its call.
    public static let keptWorkspaceBytes = 64 << 20

    /// Workspaces not in use, least recently returned first (at most `keptWorkspaceBytes` in all).
    private var idleWorkspaces: [ViTActivations] = []
    private let workspaceLock = Lock()

    /// Bytes held by idle inference workspaces.
    public var workspaceByteCount: Int { workspaceLock.withLock { idleWorkspaces.reduce(0) { $0 + $1.byteCount } } }

    /// Frees the idle inference workspaces (the next forward allocates again).
    public func releaseWorkspaces() { workspaceLock.withLock { idleWorkspaces.removeAll() } }

    /// An idle workspace for this input shape and thread count, or a new one: `forward` runs
    /// `forwardTraining(saveActivations: false)` on it and hands it back with `returnWorkspace`.
    /// A reused one has its stochastic-depth scales reset to 1 and its RoPE transform to the
    /// identity; everything else is whatever the last user left (the forward writes it before
    /// reading it).
    public func takeWorkspace(batch: Int, height: Int, width: Int) throws -> ViTActivations {
        let workers = Threads.count
        let idle = workspaceLock.withLock { () -> ViTActivations? in
            guard let i = idleWorkspaces.lastIndex(where: {
                $0.batch == batch && $0.height == height && $0.width == width && $0.workers >= workers
            }) else { return nil }
            return idleWorkspaces.remove(at: i)
        }
        if let idle {
            // What a forward reads without writing: no drop path, no RoPE augmentation.
            idle.resetBranchScales()
            idle.ropeTransform = RoPECoordinateTransform()
            return idle
        }
        return try ViTActivations(config: config, batch: batch, height: height, width: width,
                                  firstSavedBlock: config.depth, gradients: false, packBuffer: !weightsArePacked)
    }

    /// Keeps `acts` for a later forward, dropping the least recently used over the limit.
    public func returnWorkspace(_ acts: ViTActivations) {
        guard acts.byteCount <= Self.keptWorkspaceBytes else { return }
        workspaceLock.withLock {
            idleWorkspaces.append(acts)
            var total = idleWorkspaces.reduce(0) { $0 + $1.byteCount }
            while total > Self.keptWorkspaceBytes { total -= idleWorkspaces.removeFirst().byteCount }
        }
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

    /// Runs the backbone on normalised images: the one forward pass (`forwardTraining`, in
    /// ViT+Training.swift) on activations that keep nothing for backward.
    /// - Parameters:
    ///   - out: (B, T, D) final-LayerNorm tokens.
    ///   - images: (B, C, H, W) ImageNet-normalised pixels.
    ///   - observer: called with intermediate results: "patch_embed" (B, N, D) before positions,
    ///     "tokens" (B, T, D) the assembled input, "block<i>" (B, T, D) after each block, "norm"
    ///     (B, T, D) the output.
    public func forward(out: UnsafeMutablePointer<Float>, images: UnsafePointer<Float>,
                        batch: Int, height: Int, width: Int, observer: StageObserver? = nil) throws {
        try validateInput(height: height, width: width)
        guard batch >= 1, batch <= 4096 else { throw NecoError.shape("batch size \(batch) out of range 1...4096") }
        let acts = try takeWorkspace(batch: batch, height: height, width: width)
        defer { returnWorkspace(acts) }
        // OpenBLAS's own buffers must fit too before any GEMM starts (it would retry a failed mmap forever).
        try Memory.reserve(Memory.blasHeadroom, of: UInt8.self, "a \(batch)×\(height)×\(width) forward (BLAS work buffers)")
        try forwardTraining(acts, images: images, saveActivations: false, observer: observer)
        out.update(from: acts.output.baseAddress!, count: acts.rows * config.embedDim)
    }

    /// Multiply-adds ×2 of one forward at H×W (linear layers, patch embedding and attention).
    public func flops(height: Int, width: Int) -> Double {
        flopsByKind(height: height, width: width).values.reduce(0, +)
    }

    /// `flops` split by the profile's kernel classes (per image): the four Linear layers of every
    /// block, attention's two products (q·kᵀ and P·v together), and the patch embedding.
    public func flopsByKind(height: Int, width: Int) -> [Profile.Kind: Double] {
        let c = config
        let n = Double((height / c.patchSize) * (width / c.patchSize))
        let t = n + 1 + Double(c.registers), d = Double(c.embedDim), depth = Double(c.depth)
        let hidden = Double(c.mlpHidden), fc1Out = c.ffn == .swiglu ? 2 * hidden : hidden
        return [.patchEmbed: 2 * n * d * Double(c.inChannels * c.patchSize * c.patchSize),
                .gemmQKV: 2 * depth * t * d * 3 * d, .gemmProj: 2 * depth * t * d * d,
                .gemmFC1: 2 * depth * t * d * fc1Out, .gemmFC2: 2 * depth * t * hidden * d,
                .attention: 4 * depth * t * t * d]
    }
}
