import NecoCore
import NecoModel

#if canImport(Glibc)
import Glibc
#endif

/// One batch of views at one resolution, for one training step.
public struct TrainingInput {
    /// (B, C, H, W) normalised pixels; must stay valid during `Trainer.step`.
    public var images: UnsafePointer<Float>
    public var batch: Int
    public var height: Int
    public var width: Int
    /// Whether the teacher embeds these views too (NeCo: the global crops).
    public var teacher: Bool
    /// The views come in this many equal groups of images, group-major (NeCo: one group per crop,
    /// `batch` = crops × images). Under data parallelism the ranks' images interleave within
    /// each group, which is what per-sample random draws (stochastic depth) follow.
    public var groups: Int

    public init(images: UnsafePointer<Float>, batch: Int, height: Int, width: Int, teacher: Bool, groups: Int = 1) {
        self.images = images
        self.batch = batch
        self.height = height
        self.width = width
        self.teacher = teacher
        self.groups = groups
    }
}

/// Patch embeddings of one input, (B, h, w, E) row-major: B·h·w rows of width E (E = the head's
/// output width, or D without a head). CLS and register tokens are not included.
public struct EmbeddingView: @unchecked Sendable {
    public let base: UnsafePointer<Float>
    public let batch: Int, gridHeight: Int, gridWidth: Int, dim: Int
    public var count: Int { batch * gridHeight * gridWidth * dim }
    public var buffer: UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: base, count: count) }
}

/// Where the loss writes dL/d(student embeddings), same shape as the `EmbeddingView`. Zeroed
/// before the loss runs; the loss accumulates (`+=`) into it.
public struct EmbeddingGradient: @unchecked Sendable {
    public let base: UnsafeMutablePointer<Float>
    public let batch: Int, gridHeight: Int, gridWidth: Int, dim: Int
    public var count: Int { batch * gridHeight * gridWidth * dim }
    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: base, count: count) }
}

/// What a loss function sees: student and teacher embeddings per input (in input order) and the
/// gradient buffers to fill.
public struct LossContext {
    public let student: [EmbeddingView]
    /// nil for inputs the teacher does not see (or without a teacher).
    public let teacher: [EmbeddingView?]
    public let studentGradient: [EmbeddingGradient]
    /// The optimisation step being computed (0-based).
    public let step: Int
}

/// A training objective: returns the loss and adds dL/d(student embeddings) into
/// `studentGradient`. The NeCo objective plugs in here.
public typealias LossFunction = (LossContext) throws -> Float

/// Wall-clock seconds per phase of one step.
public struct PhaseTimes: Sendable {
    public var teacherForward = 0.0
    public var studentForward = 0.0
    public var loss = 0.0
    public var backward = 0.0
    /// Gradient norm and clipping, EMA and AdamW.
    public var optimizer = 0.0
    /// Averaging the loss and the gradients over the ranks (0 in a single process).
    public var allreduce = 0.0
    public var total: Double { teacherForward + studentForward + loss + backward + optimizer + allreduce }
}

/// What one `Trainer.step` did.
public struct StepReport: Sendable {
    /// The step index that was computed (0-based); `Trainer.step` is one more afterwards.
    public var step: Int
    public var loss: Float
    public var lrBackbone: Double
    public var lrHead: Double
    public var weightDecay: Double
    public var momentum: Double
    /// ‖g‖₂ over the decaying (≥ 2-D, non-bias) trainable parameters, before clipping.
    public var gradNorm: Double
    /// Whether clipping scaled the gradients.
    public var clipped: Bool
    public var times: PhaseTimes
}

/// The NeCo training loop core: a student ViT (+ projection head), an EMA teacher (+ its own,
/// separately initialised head), AdamW with NeCo's four parameter groups, cosine schedules,
/// stochastic depth and gradient clipping (NECO-SPEC §2.5–2.6, §5).
///
/// One `step`:
/// 1. teacher forward (the inference computation, in the student's activation memory) on the
///    inputs marked `teacher`, then its head;
/// 2. stochastic-depth draws, student training forward and head on every input;
/// 3. the loss callback (student and teacher embeddings → loss, dL/d student embeddings);
/// 4. backward into the flat gradient slab (head, then backbone down to the first trainable block);
/// 5. optional gradient clipping; EMA teacher update from the pre-update student; AdamW.
///
/// Determinism: all randomness comes from `NecoRNG` streams of `config.seed`; every reduction
/// has a fixed order for a given `Threads.count`. Same seed, inputs and thread count give
/// bit-identical losses and weights, also across a checkpoint save and resume (`Checkpoint`).
///
/// Thread safety: use a trainer from one thread at a time. It trains `student`'s parameters in
/// place.
public final class Trainer: @unchecked Sendable {
    public let config: TrainerConfig
    public let student: ViTModel
    public let teacher: ViTModel?
    public let studentHead: ProjectionHead?
    public let teacherHead: ProjectionHead?
    public let trainableParts: ViTTrainableParts
    /// Per-block stochastic-depth rates of the student.
    public let dropPathRates: [Float]
    public let schedules: TrainingSchedules
    /// Flat gradients: the backbone (`student.params.layout` offsets) then the head
    /// (`studentHead.layout` offsets + `backboneCount`).
    public let gradients: FloatSlab
    public let optimizer: AdamW
    public var backboneCount: Int { student.params.count }
    /// The next optimisation step to compute (= steps done).
    public internal(set) var step: Int = 0
    /// Per-step random stream (stream 1 of the seed): stochastic depth.
    public internal(set) var rng: NecoRNG
    /// Trainable parameter runs, in slab order.
    public let segments: [ParamSegment]
    /// The ranks this trainer runs with (data parallelism, docs/DISTRIBUTED.md): each rank steps
    /// on its shard of every global batch; the loss and the gradients are averaged over the ranks
    /// before clipping, so every rank applies the same EMA and AdamW update and the replicas stay
    /// identical. Default: the single process. Set it before the first step, on every rank.
    public var communicator: Communicator = SingleProcess.shared
    /// How many trained blocks (the lowest ones) store no feed-forward pre-activation: backward
    /// recomputes it there, one more fc1 GEMM per such block, and the activations shrink by
    /// B·T·F floats per block (4·B·T·D for the MLP, a third of a ViT-S block's), less one such
    /// buffer of scratch. The gradients are bit-identical for any count. 0 (the default) stores
    /// them all; a count over the trained blocks recomputes them all. Set it before a step: the
    /// next step rebuilds the cached buffers when the count they were made with differs.
    public var recomputedFeedForwardBlocks = 0
    /// An upper bound in bytes on the training state (`stateByteCount` plus the activation
    /// buffers of a step's inputs), or nil (the default) for none. Under a limit, a step
    /// recomputes the feed-forward pre-activation in as few blocks as fit, and never fewer than
    /// `recomputedFeedForwardBlocks` (`recomputedFeedForwardBlocksInUse` tells which); buffers of
    /// input shapes the step does not use are dropped. When even every trained block recomputing
    /// does not fit, the step throws `.outOfMemory` before allocating anything. The process needs
    /// more than this: code, OpenBLAS's buffers, the data.
    public var memoryLimit: Int? = nil
    /// The feed-forward recompute count of the cached buffers (what `memoryLimit` chose, or
    /// `recomputedFeedForwardBlocks`); `buffers(for:)` drops the cache when a step needs another.
    public private(set) var recomputedFeedForwardBlocksInUse = 0
    /// Recompute the feed-forward pre-activation in every trained block (`recomputedFeedForwardBlocks`).
    public var recomputeFeedForward: Bool {
        get { recomputedFeedForwardBlocks >= student.config.depth - trainableParts.firstBlock }
        set { recomputedFeedForwardBlocks = newValue ? student.config.depth : 0 }
    }
    /// Gradients are summed over the ranks in buckets of at most this many floats (16 MiB), in
    /// slab order.
    public static let allreduceBucket = 1 << 22

    /// Buffers per input shape; a step with k inputs of one shape uses the first k.
    private var cache: [BufferKey: [ViewBuffers]] = [:]

    /// Builds a trainer around `student` (trained in place). The teacher starts as a copy of the
    /// student backbone; the two heads are initialised separately from stream 0 of the seed
    /// (student head first), as NeCo does.
    public init(student: ViTModel, config: TrainerConfig) throws {
        try config.validate()
        self.config = config
        // Packed weights are a snapshot; the trainer changes the student's weights in place.
        student.unpackWeights()
        self.student = student
        let c = student.config
        trainableParts = try config.trainable.parts(depth: c.depth)
        dropPathRates = StochasticDepth.rates(rate: config.dropPathRate, depth: c.depth)
        schedules = TrainingSchedules(config: config)
        var initRNG = NecoRNG(seed: config.seed, stream: 0)
        rng = NecoRNG(seed: config.seed, stream: 1)
        if let hc = config.headConfig(inDim: c.embedDim) {
            let sh = try ProjectionHead(config: hc)
            sh.initialize(rng: &initRNG)
            studentHead = sh
            if config.useTeacher {
                let th = try ProjectionHead(config: hc)
                th.initialize(rng: &initRNG)
                teacherHead = th
            } else {
                teacherHead = nil
            }
        } else {
            studentHead = nil
            teacherHead = nil
        }
        if config.useTeacher {
            teacher = try student.copy(source: "teacher of \(student.source)")
        } else {
            teacher = nil
        }
        let nb = student.params.count
        let nh = studentHead?.count ?? 0
        gradients = try FloatSlab(count: nb + nh)
        optimizer = try AdamW(count: nb + nh, beta1: config.beta1, beta2: config.beta2, eps: config.eps)

        // Trainable segments, merged when adjacent and of the same group.
        var segs: [ParamSegment] = []
        func add(_ ptr: UnsafeMutablePointer<Float>, _ off: Int, _ count: Int, _ group: ParamGroup) {
            if let last = segs.last, last.group == group, last.offset + last.count == off, last.params + last.count == ptr {
                segs[segs.count - 1] = ParamSegment(params: last.params, offset: last.offset, count: last.count + count, group: group)
            } else {
                segs.append(ParamSegment(params: ptr, offset: off, count: count, group: group))
            }
        }
        let parts = trainableParts
        for spec in student.params.layout.specs {
            var trains = parts.embeddingsAndNorm
            if spec.name.hasPrefix("blocks.") {
                let idx = Int(spec.name.split(separator: ".")[1]) ?? 0
                trains = idx >= parts.firstBlock
            }
            if trains {
                add(student.params[spec.offset], spec.offset, spec.count, spec.decays ? .backboneDecay : .backboneNoDecay)
            }
        }
        if let sh = studentHead {
            for spec in sh.layout.specs {
                add(sh.slab[spec.offset], nb + spec.offset, spec.count, spec.decays ? .headDecay : .headNoDecay)
            }
        }
        segments = segs
    }

    /// Number of trainable parameters.
    public var trainableCount: Int { segments.reduce(0) { $0 + $1.count } }

    /// Bytes held by the trainer's own slabs (gradients, moments, teacher, heads, cached activations).
    public var byteCount: Int {
        var n = gradients.count + optimizer.m.count + optimizer.v.count
        n += teacher?.params.count ?? 0
        n += (studentHead?.count ?? 0) + (teacherHead?.count ?? 0)
        var bytes = n * 4
        for list in cache.values { for b in list { bytes += b.byteCount } }
        return bytes
    }

    /// Bytes of the training state that does not depend on the inputs: the student's weights and
    /// the trainer's slabs (gradients, moments, teacher, heads) — `byteCount` without activations.
    public var stateByteCount: Int {
        let n = student.parameterCount + gradients.count + optimizer.m.count + optimizer.v.count
            + (teacher?.params.count ?? 0) + (studentHead?.count ?? 0) + (teacherHead?.count ?? 0)
        return n * MemoryLayout<Float>.stride
    }

    /// Bytes of the activation buffers a step on `inputs` uses with the feed-forward
    /// pre-activation recomputed in `recomputedBlocks` trained blocks, computed without allocating.
    public func activationByteCount(for inputs: [TrainingInput], recomputedBlocks: Int) throws -> Int {
        var total = 0
        for inp in inputs {
            let k = key(inp)
            total += try ViewBuffers.byteCount(model: student, key: k, firstSavedBlock: trainableParts.firstBlock,
                                               head: studentHead?.config, teacherHead: teacherHead, withTeacher: k.teacher,
                                               recomputeFeedForwardBlocks: recomputedBlocks)
        }
        return total
    }

    /// The recompute count for a step on `inputs`: `recomputedFeedForwardBlocks`, or under
    /// `memoryLimit` the smallest count from there that fits.
    func recomputeCount(for inputs: [TrainingInput]) throws -> Int {
        guard let limit = memoryLimit else { return recomputedFeedForwardBlocks }
        let state = stateByteCount
        let saved = student.config.depth - trainableParts.firstBlock
        let first = min(max(recomputedFeedForwardBlocks, 0), saved)
        var need = 0
        for n in first...saved {
            need = try state + activationByteCount(for: inputs, recomputedBlocks: n)
            if need <= limit { return n }
        }
        throw NecoError(.outOfMemory, "training needs \(Memory.describe(need)) (weights, optimizer state and this step's "
                        + "activations, with every trained block recomputing its feed-forward pre-activation); "
                        + "the memory limit is \(Memory.describe(limit))")
    }

    /// The activations the last step kept for the `occurrence`-th input of this shape
    /// (stochastic-depth scales, final tokens), or nil before such a step.
    public func activations(for input: TrainingInput, occurrence: Int = 0) -> ViTActivations? {
        let list = cache[key(input)] ?? []
        return occurrence >= 0 && occurrence < list.count ? list[occurrence].acts : nil
    }

    /// Drops cached activation buffers (they are rebuilt on the next step).
    public func releaseBuffers() { cache.removeAll() }

    // MARK: - One step

    public func step(_ inputs: [TrainingInput], loss: LossFunction) throws -> StepReport {
        guard !inputs.isEmpty else { throw NecoError.invalidArgument("a training step needs at least one input") }
        for inp in inputs {
            try student.validateInput(height: inp.height, width: inp.width)
            guard inp.groups >= 1, inp.batch % inp.groups == 0 else {
                throw NecoError.invalidArgument("a training input of \(inp.batch) views cannot form \(inp.groups) equal groups")
            }
        }
        let comm = communicator
        let t = step
        let sv = schedules.values(at: t)
        var times = PhaseTimes()
        let bufs = try buffers(for: inputs)
        // Room for OpenBLAS's own buffers before the first GEMM (it would retry a failed mmap forever).
        try Memory.reserve(Memory.blasHeadroom, of: UInt8.self, "a training step (BLAS work buffers)")
        let c = student.config
        let d = c.embedDim

        // 1. Teacher.
        var clock = monotonicSeconds()
        var teacherViews: [EmbeddingView?] = Array(repeating: nil, count: inputs.count)
        if let teacher {
            for (i, inp) in inputs.enumerated() where inp.teacher {
                let b = bufs[i]
                // The teacher borrows the student's activation memory (dead until the student's
                // forward below) and stores nothing: the same output as `teacher.forward`.
                b.acts.resetBranchScales()
                b.acts.ropeTransform = RoPECoordinateTransform()
                try teacher.forwardTraining(b.acts, images: inp.images, saveActivations: false)
                let tokens = UnsafePointer(b.acts.output.baseAddress!)
                if let th = teacherHead {
                    gatherPatches(b, from: tokens, to: b.teacherPatches!.base)
                    th.forward(out: b.teacherEmbedding!.base, input: b.teacherPatches!.base, rows: b.patchRows,
                               scratch: b.teacherScratch!.base)
                } else {
                    gatherPatches(b, from: tokens, to: b.teacherEmbedding!.base)
                }
                teacherViews[i] = b.view(UnsafePointer(b.teacherEmbedding!.base))
            }
        }
        var now = monotonicSeconds()
        times.teacherForward = now - clock
        clock = now

        // 2. Student. Draws come from a copy of the stream, committed only when the step succeeds,
        // so a step that throws leaves the trainer exactly as it was.
        var stepRNG = rng
        var studentViews: [EmbeddingView] = []
        var gradViews: [EmbeddingGradient] = []
        for (i, inp) in inputs.enumerated() {
            let b = bufs[i]
            if config.dropPathRate > 0 {
                StochasticDepth.sample(into: b.acts, rates: dropPathRates, rng: &stepRNG, rank: comm.rank, ranks: comm.size,
                                       groups: inp.groups)
            } else {
                b.acts.resetBranchScales()
            }
            if c.rope != nil && config.ropeAugment.isActive {
                b.acts.ropeTransform = config.ropeAugment.sample { stepRNG.uniformFloat() }
            }
            try student.forwardTraining(b.acts, images: inp.images)
            if let sh = studentHead, let ha = b.head {
                gatherPatches(b, from: b.acts.output.baseAddress!, to: ha.slab[ha.input])
                sh.forwardTraining(ha, rows: b.patchRows)
                studentViews.append(b.view(UnsafePointer(ha.slab[ha.out])))
                let g = ha.slab[ha.dOut]
                g.update(repeating: 0, count: b.patchRows * sh.config.outDim)
                gradViews.append(b.gradient(g))
            } else {
                gatherPatches(b, from: b.acts.output.baseAddress!, to: b.studentEmbedding!.base)
                studentViews.append(b.view(UnsafePointer(b.studentEmbedding!.base)))
                b.studentGradient!.zero()
                gradViews.append(b.gradient(b.studentGradient!.base))
            }
        }
        now = monotonicSeconds()
        times.studentForward = now - clock
        clock = now

        // 3. Loss (the mean over the ranks: every rank's loss is a mean over its equal shard).
        var value = try loss(LossContext(student: studentViews, teacher: teacherViews, studentGradient: gradViews, step: t))
        if comm.size > 1 {
            let c0 = monotonicSeconds()
            var total = Double(value)
            try comm.sum(&total, count: 1)
            value = Float(total / Double(comm.size))
            times.allreduce += monotonicSeconds() - c0
        }
        guard value.isFinite else {
            throw NecoError(.diverged, "the loss is not finite (\(value)) at step \(t); weights left unchanged")
        }
        now = monotonicSeconds()
        times.loss = now - clock
        clock = now

        // 4. Backward into the flat gradient slab.
        gradients.zero()
        let backboneTrains = trainableParts.firstBlock < c.depth || trainableParts.embeddingsAndNorm
        for (i, inp) in inputs.enumerated() {
            let b = bufs[i]
            let dPatch: UnsafePointer<Float>
            if let sh = studentHead, let ha = b.head {
                sh.backward(ha, rows: b.patchRows, grads: gradients.base + backboneCount, dInput: b.dPatches!.base)
                dPatch = UnsafePointer(b.dPatches!.base)
            } else {
                dPatch = UnsafePointer(b.studentGradient!.base)
            }
            if backboneTrains {
                scatterPatches(b, from: dPatch, to: b.acts.outputGradient.baseAddress!, dim: d)
                try student.backward(b.acts, grads: gradients.base, images: inp.images, trainable: trainableParts)
            }
        }
        now = monotonicSeconds()
        times.backward = now - clock
        clock = now
        if comm.size > 1 {
            try averageGradients(over: comm)
            now = monotonicSeconds()
            times.allreduce += now - clock
            clock = now
        }

        // 5. Clip, EMA (pre-update student), AdamW.
        let (norm, allFinite) = gradientNorm()
        guard allFinite else {
            throw NecoError(.diverged, "a gradient is not finite at step \(t) (loss \(value)); weights left unchanged")
        }
        var clipped = false
        if let maxNorm = config.gradClip {
            let coef = maxNorm / (norm + 1e-6)
            if coef < 1 {
                clipped = true
                let f = Float(coef)
                for seg in segments where seg.group.decays {
                    let g = gradients.base + seg.offset
                    Threads.parallelFor(seg.count, minChunk: 1 << 15) { s, e in for k in s..<e { g[k] *= f } }
                }
            }
        }
        if let teacher {
            EMA.update(teacher: teacher.params.slab.base, student: student.params.slab.base, count: backboneCount,
                       momentum: sv.momentum)
            if let th = teacherHead, let sh = studentHead {
                EMA.update(teacher: th.slab.base, student: sh.slab.base, count: sh.count, momentum: sv.momentum)
            }
        }
        optimizer.update(segments: segments, grads: gradients.base,
                         lr: [sv.lrBackbone, sv.lrBackbone, sv.lrHead, sv.lrHead],
                         weightDecay: [sv.weightDecay, 0, sv.weightDecay, 0])
        now = monotonicSeconds()
        times.optimizer = now - clock
        step += 1
        rng = stepRNG
        return StepReport(step: t, loss: value, lrBackbone: sv.lrBackbone, lrHead: sv.lrHead, weightDecay: sv.weightDecay,
                          momentum: sv.momentum, gradNorm: norm, clipped: clipped, times: times)
    }

    /// g ← (1/N) Σ over the ranks of g, over the trainable segments (the others are 0 on every
    /// rank), in buckets of `allreduceBucket` floats.
    func averageGradients(over comm: Communicator) throws {
        let scale = 1 / Float(comm.size)
        for seg in segments {
            var at = 0
            while at < seg.count {
                let n = min(Self.allreduceBucket, seg.count - at)
                let g = gradients.base + seg.offset + at
                try comm.sum(g, count: n)
                Threads.parallelFor(n, minChunk: 1 << 15) { s, e in for k in s..<e { g[k] *= scale } }
                at += n
            }
        }
    }

    /// ‖g‖₂ over the decaying trainable segments (the set NeCo clips), and whether every trainable
    /// gradient is finite. Squares are summed in Double over fixed 64 Ki-element chunks (in
    /// parallel), then the chunk sums in order, so the result does not depend on the thread count.
    func gradientNorm() -> (norm: Double, allFinite: Bool) {
        var decaying = 0.0, all = 0.0
        let chunk = 1 << 16
        for seg in segments {
            let g = gradients.base + seg.offset
            let parts = (seg.count + chunk - 1) / chunk
            var partial = [Double](repeating: 0, count: parts)
            partial.withUnsafeMutableBufferPointer { pp in
                let out = pp.baseAddress!
                Threads.parallelFor(parts) { s, e in
                    for p in s..<e {
                        var acc = 0.0
                        for k in (p * chunk)..<min(seg.count, (p + 1) * chunk) { acc += Double(g[k]) * Double(g[k]) }
                        out[p] = acc
                    }
                }
            }
            var sum = 0.0
            for v in partial { sum += v }
            all += sum
            if seg.group.decays { decaying += sum }
        }
        return (decaying.squareRoot(), all.isFinite)
    }

    // MARK: - Buffers

    struct BufferKey: Hashable {
        let batch: Int, height: Int, width: Int, teacher: Bool
    }

    /// Per-input-shape buffers, allocated once and reused.
    final class ViewBuffers {
        let acts: ViTActivations
        let head: HeadActivations?
        let patchRows: Int, gridHeight: Int, gridWidth: Int, batch: Int, tokens: Int, registers: Int
        let embedDim: Int, outDim: Int
        let studentEmbedding: FloatSlab?    // (B·N, D) without a head
        let studentGradient: FloatSlab?     // (B·N, D) without a head
        let dPatches: FloatSlab?            // (B·N, D) head → backbone
        let teacherPatches: FloatSlab?      // (B·N, D), with a head
        let teacherEmbedding: FloatSlab?    // (B·N, E)
        let teacherScratch: FloatSlab?

        init(model: ViTModel, key: BufferKey, firstSavedBlock: Int, head: HeadConfig?, teacherHead: ProjectionHead?,
             withTeacher: Bool, recomputeFeedForwardBlocks: Int) throws {
            let c = model.config
            acts = try ViTActivations(config: c, batch: key.batch, height: key.height, width: key.width,
                                      firstSavedBlock: firstSavedBlock, recomputeFeedForwardBlocks: recomputeFeedForwardBlocks)
            batch = key.batch
            gridHeight = acts.gridHeight
            gridWidth = acts.gridWidth
            tokens = acts.tokens
            registers = c.registers
            patchRows = key.batch * gridHeight * gridWidth
            embedDim = c.embedDim
            outDim = head?.outDim ?? c.embedDim
            let rows = patchRows
            self.head = try head.map { try HeadActivations(config: $0, rows: rows) }
            let n = Self.slabCounts(model: model, patchRows: rows, head: head, teacherHead: teacherHead, withTeacher: withTeacher)
            func slab(_ count: Int) throws -> FloatSlab? { count > 0 ? try FloatSlab(count: count) : nil }
            studentEmbedding = try slab(n.studentEmbedding)
            studentGradient = try slab(n.studentGradient)
            dPatches = try slab(n.dPatches)
            teacherEmbedding = try slab(n.teacherEmbedding)
            teacherPatches = try slab(n.teacherPatches)
            teacherScratch = try slab(n.teacherScratch)
        }

        /// Floats of the slabs besides the activations (0: not allocated).
        static func slabCounts(model: ViTModel, patchRows: Int, head: HeadConfig?, teacherHead: ProjectionHead?, withTeacher: Bool)
            -> (studentEmbedding: Int, studentGradient: Int, dPatches: Int, teacherEmbedding: Int, teacherPatches: Int,
                teacherScratch: Int) {
            let d = model.config.embedDim, outDim = head?.outDim ?? d
            let student = head == nil ? patchRows * d : 0
            return (student, student, head == nil ? 0 : patchRows * d, withTeacher ? patchRows * outDim : 0,
                    withTeacher && teacherHead != nil ? patchRows * d : 0,
                    withTeacher ? teacherHead?.inferenceScratchCount(rows: patchRows) ?? 0 : 0)
        }

        /// Bytes `init` would allocate, without allocating (the activations at the current thread count).
        static func byteCount(model: ViTModel, key: BufferKey, firstSavedBlock: Int, head: HeadConfig?,
                              teacherHead: ProjectionHead?, withTeacher: Bool, recomputeFeedForwardBlocks: Int) throws -> Int {
            let c = model.config
            let acts = try ViTActivations.byteCount(config: c, batch: key.batch, height: key.height, width: key.width,
                                                    firstSavedBlock: firstSavedBlock,
                                                    recomputeFeedForwardBlocks: recomputeFeedForwardBlocks)
            let patchRows = key.batch * (key.height / c.patchSize) * (key.width / c.patchSize)
            let n = slabCounts(model: model, patchRows: patchRows, head: head, teacherHead: teacherHead, withTeacher: withTeacher)
            let floats = n.studentEmbedding + n.studentGradient + n.dPatches + n.teacherEmbedding + n.teacherPatches + n.teacherScratch
            return acts + (head.map { HeadActivations.byteCount(config: $0, rows: patchRows) } ?? 0) + floats * MemoryLayout<Float>.stride
        }

        func view(_ p: UnsafePointer<Float>) -> EmbeddingView {
            EmbeddingView(base: p, batch: batch, gridHeight: gridHeight, gridWidth: gridWidth, dim: outDim)
        }

        func gradient(_ p: UnsafeMutablePointer<Float>) -> EmbeddingGradient {
            EmbeddingGradient(base: p, batch: batch, gridHeight: gridHeight, gridWidth: gridWidth, dim: outDim)
        }

        var byteCount: Int {
            var n = acts.slab.count + (head?.slab.count ?? 0)
            for s in [studentEmbedding, studentGradient, dPatches, teacherPatches, teacherEmbedding, teacherScratch] {
                n += s?.count ?? 0
            }
            return n * 4
        }
    }

    func key(_ inp: TrainingInput) -> BufferKey {
        BufferKey(batch: inp.batch, height: inp.height, width: inp.width, teacher: inp.teacher && teacher != nil)
    }

    /// One buffer set per input: inputs of the same shape get distinct sets (their activations
    /// must all survive until backward).
    func buffers(for inputs: [TrainingInput]) throws -> [ViewBuffers] {
        let recompute = try recomputeCount(for: inputs)
        if recompute != recomputedFeedForwardBlocksInUse {
            cache.removeAll()
            recomputedFeedForwardBlocksInUse = recompute
        }
        if memoryLimit != nil {
            // Only this step's shapes are counted against the limit: drop the others.
            let keys = Set(inputs.map(key))
            for k in Array(cache.keys) where !keys.contains(k) { cache[k] = nil }
        }
        var used: [BufferKey: Int] = [:]
        var out: [ViewBuffers] = []
        for inp in inputs {
            let k = key(inp)
            let n = used[k, default: 0]
            used[k] = n + 1
            var list = cache[k] ?? []
            if n < list.count, list[n].acts.workers < Threads.count { list.removeSubrange(n...) }
            if n == list.count {
                list.append(try ViewBuffers(model: student, key: k, firstSavedBlock: trainableParts.firstBlock,
                                            head: studentHead?.config, teacherHead: teacherHead, withTeacher: k.teacher,
                                            recomputeFeedForwardBlocks: recompute))
            }
            cache[k] = list
            out.append(list[n])
        }
        if memoryLimit != nil {
            // Sets left from steps with more inputs of a shape are not counted either.
            for (k, n) in used { if let list = cache[k], list.count > n { cache[k] = Array(list[..<n]) } }
        }
        return out
    }

    /// dst (B·N, D) ← the patch rows of tokens (B, T, D).
    func gatherPatches(_ b: ViewBuffers, from tokens: UnsafePointer<Float>, to dst: UnsafeMutablePointer<Float>) {
        let n = b.gridHeight * b.gridWidth, d = b.embedDim
        for i in 0..<b.batch {
            (dst + i * n * d).update(from: tokens + (i * b.tokens + 1 + b.registers) * d, count: n * d)
        }
    }

    /// dTokens (B, T, D) ← patch gradients (B·N, D) in the patch rows, 0 in the CLS/register rows.
    func scatterPatches(_ b: ViewBuffers, from src: UnsafePointer<Float>, to dTokens: UnsafeMutablePointer<Float>, dim d: Int) {
        let n = b.gridHeight * b.gridWidth, prefix = 1 + b.registers
        for i in 0..<b.batch {
            (dTokens + i * b.tokens * d).update(repeating: 0, count: prefix * d)
            (dTokens + (i * b.tokens + prefix) * d).update(from: src + i * n * d, count: n * d)
        }
    }
}
