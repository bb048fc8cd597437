import NecoCore
#if canImport(Glibc)
import Glibc
#endif

/// Everything that defines the NeCo objective of a run (NECO-SPEC §3–§4; defaults: the released
/// ViT-S/14 configs except the crop size, 224 on CPU instead of 518).
public struct NeCoObjectiveConfig: Sendable, Equatable {
    public var crops = MultiCropConfig()
    public var photometric = PhotometricConfig()
    /// 14 for ViT-*/14.
    public var patchSize = 14
    /// ROI Align output side (NeCo: 7, so Q = K = 49).
    public var roiSize = 7
    public var network: SortingNetworkKind = .bitonic
    public var relaxation: Relaxation = .cauchy
    public var studentSteepness = 100.0
    /// nil = the student's (NeCo's `teacher_steepness: None`).
    public var teacherSteepness: Double? = nil
    public var artLambda = 0.25
    /// NeCo's released DINOv2 configs use the queue; templates and DINO-v1 configs use the batch.
    public var references: NeCoReferenceMode = .queue(length: 8192)
    /// One `filled` counter for both queues (the official code, P11); false = one per queue.
    public var sharedQueueCounter = true
    /// 0 = no clamp inside ln (the reference, P3).
    public var logFloor = 0.0

    public init() {}

    /// The "auto" floor inside ln P: 1e-30 for the relaxations whose comparator probabilities
    /// underflow to 0 at NeCo's steepness 100 (logistic, logistic_phi, gaussian: ln 0 = −inf,
    /// NECO-SPEC P3), 0 (the reference, no floor) for the others. `neco train --log-floor auto`
    /// and neco_train_params.log_floor = -1 use it.
    public static func autoLogFloor(for relaxation: Relaxation) -> Double {
        [.logistic, .logisticPhi, .gaussian].contains(relaxation) ? 1e-30 : 0
    }

    /// - Throws: `.invalidArgument` naming the first bad value.
    public func validate() throws {
        try crops.validate(patchSize: patchSize)
        try photometric.validate()
        guard roiSize >= 2, roiSize <= 32 else {
            throw NecoError.invalidArgument("NeCo: ROI size \(roiSize) gives a sorting network that is too small (needs 2...32)")
        }
        for s in [studentSteepness, teacherSteepness ?? studentSteepness] where !(s.isFinite && s > 0) {
            throw NecoError.invalidArgument("NeCo: steepness must be finite and > 0 (got \(s))")
        }
        guard logFloor >= 0, logFloor < 1 else { throw NecoError.invalidArgument("NeCo: log floor must be in [0, 1)") }
        if case .queue(let n) = references, n < roiSize * roiSize {
            throw NecoError.invalidArgument("NeCo: queue length \(n) is shorter than one image's \(roiSize * roiSize) references")
        }
    }
}

/// What one evaluation of the objective did.
public struct NeCoLossReport: Sendable {
    public var loss: Double = 0
    /// Weighted ℓ(g, v) in pair order (g-major, v ascending); they sum to `loss`.
    public var pairLosses: [Double] = []
    /// Seconds in the queue update and the pair loop (forward and backward together).
    public var queueSeconds = 0.0
    public var pairSeconds = 0.0
}

/// The NeCo objective for `Trainer`: turns the teacher's and the student's projected patch
/// embeddings of the crops into the loss and dL/d(student embeddings) (NECO-SPEC §4.7).
///
/// Wiring (one training step, `batch` from `NeCoDataLoader`):
/// ```
/// let report = try objective.step(trainer: trainer, batch: batch)
/// // = trainer.step([globals (nG·B images, teacher: true), locals (nL·B images, teacher: false)],
/// //                loss: objective.lossFunction(boxes: batch.boxes))
/// ```
/// The loss callback expects `ctx.student[0]` / `ctx.teacher[0]` = the global crops
/// (nG·B, G, G, E), crop-major, and `ctx.student[1]` = the local crops (nL·B, g, g, E); it
/// writes (accumulates) the gradients into `ctx.studentGradient[0]` and `[1]`.
///
/// State: the reference sampler (its RNG, and in queue mode the two queues). Save
/// `references.rng.words` with a checkpoint; NeCo never saves the queues (they refill within
/// 8192 / (20·B) steps), `NeCoRun` does.
public final class NeCoObjective: @unchecked Sendable {
    public let config: NeCoObjectiveConfig
    public let pairLoss: NeCoPairLoss
    public let references: NeCoReferenceSampler
    /// The last evaluation's numbers.
    public private(set) var lastReport = NeCoLossReport()

    /// - Parameters:
    ///   - dim: E, the width of the embeddings the loss sees (the head's output, 256).
    ///   - rng: the reference sampler's random stream (e.g. `NecoRNG(seed: seed, stream: 2)`;
    ///     the trainer uses streams 0 and 1).
    public init(config: NeCoObjectiveConfig, dim: Int, rng: NecoRNG) throws {
        try config.validate()
        self.config = config
        let n = config.roiSize * config.roiSize
        let student = try SoftSort(kind: config.network, size: n, relaxation: config.relaxation,
                                   steepness: config.studentSteepness, artLambda: config.artLambda)
        let teacher = try SoftSort(kind: config.network, size: n, relaxation: config.relaxation,
                                   steepness: config.teacherSteepness ?? config.studentSteepness, artLambda: config.artLambda)
        pairLoss = try NeCoPairLoss(teacherSort: teacher, studentSort: student, patchSize: config.patchSize,
                                    roiSize: config.roiSize, logFloor: config.logFloor)
        references = try NeCoReferenceSampler(mode: config.references, dim: dim, anchors: config.crops.globalCrops, rng: rng,
                                              sharedCounter: config.sharedQueueCounter)
    }

    /// Checks a (global) batch size against the reference mode (batch mode needs B ≥ 2; queue
    /// mode B·49 ≤ L).
    public func validate(batch: Int) throws {
        guard batch >= 1 else { throw NecoError.invalidArgument("NeCo: batch must be ≥ 1") }
        try references.validate(batch: batch, references: pairLoss.referenceCount)
    }

    /// The loss callback for `Trainer.step` for a batch with these overlap boxes.
    public func lossFunction(boxes: NeCoBoxes) -> LossFunction {
        { [self] ctx in try Float(compute(ctx, boxes: boxes).loss) }
    }

    /// One evaluation from the trainer's embeddings; see the type's documentation for the layout.
    /// - Throws: `.shape` when the inputs do not match the config and boxes.
    @discardableResult
    public func compute(_ ctx: LossContext, boxes: NeCoBoxes) throws -> NeCoLossReport {
        let c = config.crops, b = boxes.batch
        let nG = c.globalCrops, nL = c.localCrops
        guard boxes.globalCrops == nG, boxes.crops == c.crops else {
            throw NecoError.shape("NeCo: boxes for \(boxes.globalCrops)/\(boxes.crops) crops, config has \(nG)/\(c.crops)")
        }
        guard ctx.student.count == (nL > 0 ? 2 : 1), ctx.studentGradient.count == ctx.student.count,
              let teacher = ctx.teacher.first ?? nil else {
            throw NecoError.shape("NeCo: expected [globals (teacher + student)\(nL > 0 ? ", locals (student)" : "")] inputs")
        }
        let sg = ctx.student[0]
        let gGrid = c.globalSize / config.patchSize, lGrid = c.localSize / config.patchSize
        guard sg.batch == nG * b, sg.gridHeight == gGrid, sg.gridWidth == gGrid, teacher.batch == nG * b,
              teacher.gridHeight == gGrid, teacher.gridWidth == gGrid, teacher.dim == sg.dim, sg.dim == references.dim else {
            throw NecoError.shape("NeCo: global embeddings must be (\(nG)·\(b), \(gGrid), \(gGrid), \(references.dim))")
        }
        var local: NeCoMaps<Float>? = nil
        var dLocal: NeCoMapGradients<Float>? = nil
        if nL > 0 {
            let sl = ctx.student[1]
            guard sl.batch == nL * b, sl.gridHeight == lGrid, sl.gridWidth == lGrid, sl.dim == sg.dim else {
                throw NecoError.shape("NeCo: local embeddings must be (\(nL)·\(b), \(lGrid), \(lGrid), \(sg.dim))")
            }
            local = NeCoMaps(base: sl.base, crops: nL, grid: lGrid)
            dLocal = NeCoMapGradients(base: ctx.studentGradient[1].base)
        }
        return try compute(teacherGlobal: NeCoMaps(base: teacher.base, crops: nG, grid: gGrid),
                           studentGlobal: NeCoMaps(base: sg.base, crops: nG, grid: gGrid), studentLocal: local,
                           dStudentGlobal: NeCoMapGradients(base: ctx.studentGradient[0].base), dStudentLocal: dLocal,
                           boxes: boxes)
    }

    /// One evaluation on raw maps (channel-last, crop-major; see `NeCoPairLoss`). Pushes the
    /// teacher patches into the queues first (queue mode), then runs the pair loop.
    @discardableResult
    public func compute(teacherGlobal: NeCoMaps<Float>, studentGlobal: NeCoMaps<Float>, studentLocal: NeCoMaps<Float>?,
                        dStudentGlobal: NeCoMapGradients<Float>?, dStudentLocal: NeCoMapGradients<Float>?,
                        boxes: NeCoBoxes) throws -> NeCoLossReport {
        let b = boxes.batch
        try validate(batch: b * references.communicator.size)
        var report = NeCoLossReport()
        var clock = monotonicSeconds()
        try references.push(teacherGlobal: teacherGlobal.base, batch: b, grid: teacherGlobal.grid)
        report.queueSeconds = monotonicSeconds() - clock
        clock = monotonicSeconds()
        let q = pairLoss.queryCount, k = pairLoss.referenceCount
        let sampler = references
        var pairs: [Double] = []
        var referenceError: Error? = nil
        report.loss = pairLoss(dStudentGlobal: dStudentGlobal, dStudentLocal: dStudentLocal, teacherGlobal: teacherGlobal,
                               studentGlobal: studentGlobal, studentLocal: studentLocal, dim: references.dim, boxes: boxes,
                               references: { g, _, tq, out in
                                   guard referenceError == nil else { return }
                                   do {
                                       try sampler.sample(anchor: g, teacherQueries: tq, queries: q, out: out, batch: b, references: k)
                                   } catch {
                                       referenceError = error
                                       out.update(repeating: 0, count: b * k * sampler.dim)
                                   }
                               },
                               pairLosses: { _, _, l in pairs.append(l) })
        if let referenceError { throw referenceError }
        report.pairSeconds = monotonicSeconds() - clock
        report.pairLosses = pairs
        guard report.loss.isFinite else {
            var hint = ""
            if config.logFloor == 0, [.logistic, .logisticPhi, .gaussian].contains(config.relaxation) {
                hint = " (the \(config.relaxation.rawValue) relaxation underflows to P = 0 at steepness \(config.studentSteepness), "
                    + "so ln P = −∞; set a tiny log floor such as 1e-30, lower the steepness, or use the Cauchy relaxation)"
            }
            throw NecoError(.diverged, "NeCo: the loss is not finite (\(report.loss)); pair losses \(pairs)\(hint)")
        }
        lastReport = report
        return report
    }

    /// One training step of `trainer` on `batch`: globals (teacher and student) and locals
    /// (student) as the trainer's two inputs, this objective as the loss.
    public func step(trainer: Trainer, batch: NeCoBatch) throws -> StepReport {
        let c = config.crops
        return try batch.globals.withUnsafeBufferPointer { g in
            try batch.locals.withUnsafeBufferPointer { l in
                var inputs = [TrainingInput(images: g.baseAddress!, batch: c.globalCrops * batch.batch, height: c.globalSize,
                                            width: c.globalSize, teacher: true, groups: c.globalCrops)]
                if c.localCrops > 0 {
                    inputs.append(TrainingInput(images: l.baseAddress!, batch: c.localCrops * batch.batch, height: c.localSize,
                                                width: c.localSize, teacher: false, groups: c.localCrops))
                }
                return try trainer.step(inputs, loss: lossFunction(boxes: batch.boxes))
            }
        }
    }
}


/// The NeCo-specific state a checkpoint must carry besides the trainer's: the reference
/// sampler's random state and the loader's position. (`NeCoRun` also saves the reference queues as
/// tensors; NeCo itself does not, so its queues refill within L / (2·10·B) steps after a resume.)
public struct NeCoRunState: Sendable, Equatable {
    public var referenceRNG: [UInt64]
    public var epoch: Int
    public var position: Int
    public var skipped: Int

    public init(objective: NeCoObjective, loader: NeCoDataLoader) {
        referenceRNG = objective.references.rng.words
        epoch = loader.epoch
        position = loader.position
        skipped = loader.skipped
    }

    /// String metadata (for a safetensors `__metadata__` map), keys prefixed "neco.".
    public var metadata: [String: String] {
        ["neco.reference_rng": referenceRNG.map { String($0, radix: 16) }.joined(separator: ","),
         "neco.loader_epoch": String(epoch), "neco.loader_position": String(position), "neco.loader_skipped": String(skipped)]
    }

    /// The largest epoch a checkpoint may record: a step reads at most two epochs, and a run has
    /// at most `TrainerConfig.maxTotalSteps` steps. (It keeps the loader's random-stream
    /// arithmetic far from overflow.)
    public static let maxEpoch = 2 * TrainerConfig.maxTotalSteps

    /// Reads and checks the state against the run it belongs to: `imageCount` images, so the
    /// position is at most `imageCount`, the epoch at most `maxEpoch`, the skipped-image count at
    /// most (epoch + 1) · `imageCount`, and the RNG state valid.
    /// - Throws: `.format` when a key is missing, malformed or out of range.
    public init(metadata m: [String: String], imageCount: Int) throws {
        func int(_ key: String, _ range: ClosedRange<Int>) throws -> Int {
            guard let text = m[key] else { throw NecoError.format("NeCo run state: no \(key) metadata") }
            guard let v = Int(text), range.contains(v) else {
                throw NecoError.format("NeCo run state: \(key) '\(Checkpoint.clip(text))' is not in \(range.lowerBound)...\(range.upperBound)")
            }
            return v
        }
        let e = try int("neco.loader_epoch", 0...Self.maxEpoch)
        let p = try int("neco.loader_position", 0...max(imageCount, 0))
        let (visits, overflow) = (e + 1).multipliedReportingOverflow(by: max(imageCount, 0))
        let s = try int("neco.loader_skipped", 0...(overflow ? Int.max : visits))
        guard let rng = m["neco.reference_rng"] else { throw NecoError.format("NeCo run state: no neco.reference_rng metadata") }
        let parts = rng.split(separator: ",", omittingEmptySubsequences: false)
        let words = parts.compactMap { UInt64($0, radix: 16) }
        guard words.count == parts.count, (try? NecoRNG(state: words)) != nil else {
            throw NecoError.format("NeCo run state: neco.reference_rng '\(Checkpoint.clip(rng))' is not 4 hex words, not all zero")
        }
        referenceRNG = words
        epoch = e
        position = p
        skipped = s
    }

    /// Puts the state back into a freshly built objective and loader.
    public func restore(objective: NeCoObjective, loader: NeCoDataLoader) throws {
        guard loader.images.count >= position else {
            throw NecoError.format("NeCo run state: loader position \(position) beyond \(loader.images.count) images")
        }
        objective.references.rng = try NecoRNG(state: referenceRNG)
        loader.seek(epoch: epoch, position: position, skipped: skipped)
    }
}
