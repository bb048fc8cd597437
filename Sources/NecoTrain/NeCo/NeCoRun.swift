import NecoCore
import NecoImage
import NecoModel
#if canImport(Glibc)
import Glibc
#endif

// A NeCo post-pretraining run: the trainer, the objective and the data loader wired together,
// with a run folder for checkpoints, the exported models and a per-step log. `neco train` and
// the C training API are thin layers over `NeCoRun`.
//
// Run folder (all files written atomically except the append-only log):
//   run.json                 what was asked for: run config, model source, data, image count
//   checkpoint.safetensors   the latest checkpoint (`Checkpoint` + `neco.*` run metadata)
//   student.safetensors      the trained student backbone, a plain model file (at the end)
//   teacher.safetensors      the EMA teacher backbone (at the end)
//   log.csv | log.jsonl      one row per step; on resume, rows after the checkpoint are dropped

// MARK: - Configuration

/// How `NeCoRun` logs its steps to the run folder.
public enum TrainingLogFormat: String, Sendable, CaseIterable {
    case csv, jsonl, none
}

/// Everything that defines a NeCo run besides the initial weights and the images.
public struct NeCoRunConfig: Sendable, Equatable {
    /// Optimiser, schedules (`totalSteps` = T), head, EMA, stochastic depth, seed.
    public var trainer: TrainerConfig
    /// Crops, augmentation, ROI size, sorting network, references. Its `patchSize` is set from the
    /// model when the run is built.
    public var objective = NeCoObjectiveConfig()
    /// Images per step (B).
    public var batchSize = 8
    /// Save a checkpoint every this many steps; 0 = only when the run stops or ends.
    public var checkpointEvery = 50
    public var log: TrainingLogFormat = .csv
    /// Evaluate the student every this many steps (and before the first and after the last step)
    /// with the run's `evaluator`; 0 = never. The run keeps the best student as `best.safetensors`.
    public var evalEvery = 0

    public init(totalSteps: Int) { trainer = TrainerConfig(totalSteps: totalSteps) }

    /// Steps of a run when none are given (`neco train`, neco_train_default_params).
    public static let defaultTotalSteps = 100

    /// Steps of `epochs` passes over `images` images at `batchSize` a step: epochs × ⌊images / B⌋
    /// (the loader drops the last partial batch of every epoch).
    /// - Throws: `.invalidArgument` for epochs or a batch < 1; `.data` when not even one step fits.
    public static func totalSteps(epochs: Int, images: Int, batchSize: Int) throws -> Int {
        guard epochs >= 1 else { throw NecoError.invalidArgument("epochs = \(epochs) must be ≥ 1") }
        guard batchSize >= 1 else { throw NecoError.invalidArgument("batch size \(batchSize) must be ≥ 1") }
        let (t, o) = epochs.multipliedReportingOverflow(by: images / batchSize)
        guard !o else { throw NecoError.invalidArgument("\(epochs) epochs × \(images / batchSize) steps overflow") }
        guard t >= 1 else { throw NecoError(.data, "the run would have no step (\(images) images, batch \(batchSize))") }
        return t
    }

    /// - Throws: `.invalidArgument` naming the first bad value.
    public func validate() throws {
        try trainer.validate()
        try objective.validate()
        guard batchSize >= 1, batchSize <= 4096 else { throw NecoError.invalidArgument("batch size must be in 1...4096") }
        guard checkpointEvery >= 0 else { throw NecoError.invalidArgument("checkpoint interval must be ≥ 0") }
        guard evalEvery >= 0 else { throw NecoError.invalidArgument("evaluation interval must be ≥ 0") }
        guard trainer.useTeacher else { throw NecoError.invalidArgument("NeCo needs the EMA teacher (useTeacher)") }
    }

    public var json: JSONValue {
        .object([("trainer", trainer.json), ("objective", objective.json), ("batch_size", .number(Double(batchSize))),
                 ("checkpoint_every", .number(Double(checkpointEvery))), ("log", .string(log.rawValue)),
                 ("eval_every", .number(Double(evalEvery)))])
    }

    public init(json j: JSONValue) throws {
        guard let t = j["trainer"], let o = j["objective"], let b = j["batch_size"]?.intValue,
              let e = j["checkpoint_every"]?.intValue, let l = j["log"]?.stringValue.flatMap(TrainingLogFormat.init) else {
            throw NecoError.format("run config: missing trainer / objective / batch_size / checkpoint_every / log")
        }
        trainer = try TrainerConfig(json: t)
        objective = try NeCoObjectiveConfig(json: o)
        batchSize = b
        checkpointEvery = e
        log = l
        evalEvery = j["eval_every"]?.intValue ?? 0   // absent in runs saved before evaluations existed
        try validate()
    }
}

extension NeCoObjectiveConfig {
    public var json: JSONValue {
        func pair(_ p: (Double, Double)) -> JSONValue { .array([.number(p.0), .number(p.1)]) }
        let refs: JSONValue
        switch references {
        case .batch: refs = .string("batch")
        case .queue(let n): refs = .number(Double(n))
        }
        return .object([
            ("global_size", .number(Double(crops.globalSize))), ("local_size", .number(Double(crops.localSize))),
            ("global_crops", .number(Double(crops.globalCrops))), ("local_crops", .number(Double(crops.localCrops))),
            ("global_scale", pair(crops.globalScale)), ("local_scale", pair(crops.localScale)), ("ratio", pair(crops.ratio)),
            ("min_intersection", .number(crops.minIntersection)), ("max_attempts", .number(Double(crops.maxAttempts))),
            ("jitter_probability", .number(photometric.jitterProbability)),
            ("brightness", .number(photometric.brightness)), ("contrast", .number(photometric.contrast)),
            ("saturation", .number(photometric.saturation)), ("hue", .number(photometric.hue)),
            ("grayscale_probability", .number(photometric.grayscaleProbability)),
            ("blur_probability", .number(photometric.blurProbability)), ("blur_radius", pair(photometric.blurRadius)),
            ("patch_size", .number(Double(patchSize))), ("roi_size", .number(Double(roiSize))),
            ("sort_net", .string(network.rawValue)), ("relaxation", .string(relaxation.rawValue)),
            ("student_steepness", .number(studentSteepness)),
            ("teacher_steepness", teacherSteepness.map { .number($0) } ?? .null),
            ("art_lambda", .number(artLambda)), ("references", refs),
            ("shared_queue_counter", .bool(sharedQueueCounter)), ("log_floor", .number(logFloor)),
        ])
    }

    public init(json j: JSONValue) throws {
        func num(_ k: String) throws -> Double {
            guard let v = j[k]?.doubleValue else { throw NecoError.format("NeCo config: missing number '\(k)'") }
            return v
        }
        func int(_ k: String) throws -> Int {
            guard let v = j[k]?.intValue else { throw NecoError.format("NeCo config: missing integer '\(k)'") }
            return v
        }
        func pair(_ k: String) throws -> (Double, Double) {
            guard let a = j[k]?.arrayValue, a.count == 2, let x = a[0].doubleValue, let y = a[1].doubleValue else {
                throw NecoError.format("NeCo config: '\(k)' must be [lo, hi]")
            }
            return (x, y)
        }
        self.init()
        crops.globalSize = try int("global_size")
        crops.localSize = try int("local_size")
        crops.globalCrops = try int("global_crops")
        crops.localCrops = try int("local_crops")
        crops.globalScale = try pair("global_scale")
        crops.localScale = try pair("local_scale")
        crops.ratio = try pair("ratio")
        crops.minIntersection = try num("min_intersection")
        crops.maxAttempts = try int("max_attempts")
        photometric.jitterProbability = try num("jitter_probability")
        photometric.brightness = try num("brightness")
        photometric.contrast = try num("contrast")
        photometric.saturation = try num("saturation")
        photometric.hue = try num("hue")
        photometric.grayscaleProbability = try num("grayscale_probability")
        photometric.blurProbability = try num("blur_probability")
        photometric.blurRadius = try pair("blur_radius")
        patchSize = try int("patch_size")
        roiSize = try int("roi_size")
        guard let n = j["sort_net"]?.stringValue.flatMap(SortingNetworkKind.init),
              let r = j["relaxation"]?.stringValue.flatMap(Relaxation.init) else {
            throw NecoError.format("NeCo config: unknown sort_net / relaxation")
        }
        network = n
        relaxation = r
        studentSteepness = try num("student_steepness")
        teacherSteepness = j["teacher_steepness"].flatMap { $0.isNull ? nil : $0.doubleValue }
        artLambda = try num("art_lambda")
        if j["references"]?.stringValue == "batch" {
            references = .batch
        } else if let q = j["references"]?.intValue {
            references = .queue(length: q)
        } else {
            throw NecoError.format("NeCo config: 'references' must be \"batch\" or a queue length")
        }
        guard let shared = j["shared_queue_counter"]?.boolValue else {
            throw NecoError.format("NeCo config: missing bool 'shared_queue_counter'")
        }
        sharedQueueCounter = shared
        logFloor = try num("log_floor")
        try validate()
    }
}

// MARK: - Step report

/// What one `NeCoRun.step` did, with the figures a progress display needs.
public struct NeCoStepInfo: Sendable {
    /// Steps done after this one (1...totalSteps).
    public var step: Int
    public var totalSteps: Int
    /// The data loader's epoch after this step's batch (0-based).
    public var epoch: Int
    public var loss: Float
    public var lrBackbone: Double
    public var lrHead: Double
    public var weightDecay: Double
    public var momentum: Double
    public var gradNorm: Double
    /// Trainer phases; `times.loss` is the whole NeCo objective (queue, ROI Align, similarities,
    /// sorting networks, cross-entropy, forward and backward).
    public var times: PhaseTimes
    /// Decoding, cropping and augmenting the batch.
    public var dataSeconds: Double
    /// Parts of `times.loss`: the reference-queue update, and the pair loop.
    public var queueSeconds: Double
    public var pairSeconds: Double
    public var stepSeconds: Double { dataSeconds + times.total }
    /// Images (not views) per second of this step, data included.
    public var imagesPerSecond: Double
    /// Wall time since this process started the run (or resumed it), and the projected rest.
    public var elapsedSeconds: Double
    public var etaSeconds: Double
    /// Unreadable images skipped so far.
    public var skippedImages: Int
}

/// One evaluation of a student: the metric that chooses the best student, and further numbers
/// recorded next to it (e.g. RankMe, a label-free sign of collapse) that choose nothing.
public struct NeCoEvaluation: Sendable {
    public var value: Double
    /// (name, value) pairs, each an `eval.csv` row of its own at the same step.
    public var monitors: [(name: String, value: Double)]

    public init(value: Double, monitors: [(name: String, value: Double)] = []) {
        self.value = value
        self.monitors = monitors
    }
}

/// Measures a student during a run (e.g. in-context mIoU on a benchmark's validation split);
/// higher is better. Called between steps, on the thread that runs the run.
public struct NeCoEvaluator: @unchecked Sendable {
    /// The metric's name in `eval.csv` and `curves.png` (e.g. "incontext_miou").
    public var name: String
    public var measure: (ViTModel) throws -> NeCoEvaluation

    public init(name: String, measure: @escaping (ViTModel) throws -> NeCoEvaluation) {
        self.name = name
        self.measure = measure
    }

    /// An evaluator of one number.
    public init(name: String, evaluate: @escaping (ViTModel) throws -> Double) {
        self.init(name: name) { NeCoEvaluation(value: try evaluate($0)) }
    }
}

/// How `NeCoRun.run` ended.
public enum NeCoRunOutcome: Sendable, Equatable {
    /// All `totalSteps` steps are done (models exported when there is a run folder).
    case finished
    /// The callback asked to stop; a checkpoint at the current step was saved (with a run folder).
    case stopped
    /// The requested number of steps is done, the run is not finished.
    case paused
}

// MARK: - The run

/// A NeCo post-pretraining run. Build it with `init(model:images:config:directory:)` for a new
/// run or `resume(directory:images:)` to continue one; then call `run(steps:progress:)` (or `step()`).
///
/// Determinism: the same initial weights, images, config and thread count give bit-identical
/// losses and weights, also across a stop and resume: the checkpoint holds the trainer's state,
/// the data loader's position, the reference sampler's random stream and its queues (which the
/// official code does not save).
///
/// Failure: a step whose loss or gradients are not finite throws and changes no weight; the last
/// checkpoint in the run folder is left as it was. Continue from it with `resume`.
///
/// Thread safety: use a run from one thread at a time.
public final class NeCoRun: @unchecked Sendable {
    public static let configFile = "run.json"
    public static let checkpointFile = "checkpoint.safetensors"
    public static let studentFile = "student.safetensors"
    public static let teacherFile = "teacher.safetensors"
    /// The student with the best evaluation so far (runs with an evaluator).
    public static let bestFile = "best.safetensors"
    /// (step, metric, value) of every evaluation.
    public static let evalFile = "eval.csv"
    /// Loss and evaluations against step, redrawn at every checkpoint.
    public static let curvesFile = "curves.png"

    /// One row of `eval.csv`: `step,metric,value`.
    public struct EvaluationRow: Sendable {
        public let step: Int
        public let metric: String
        public let value: Double
        /// The row as written.
        public let line: String
    }

    /// The well-formed rows of an `eval.csv` text in file order (the header and malformed lines are
    /// skipped). The first row's metric is the one that chose the best student; rows of other
    /// metrics are `NeCoEvaluation.monitors`.
    public static func evaluationRows(_ text: String) -> [EvaluationRow] {
        text.split(separator: "\n").dropFirst().compactMap { line in
            let f = line.split(separator: ",")
            guard f.count == 3, let step = Int(f[0]), let v = Double(f[2]) else { return nil }
            return EvaluationRow(step: step, metric: String(f[1]), value: v, line: String(line))
        }
    }

    /// A model path as the CLI's `--model` and neco_model_load take it: a run folder stands for
    /// its checkpoint (whose student loads as the model); any other path is returned as is.
    /// - Throws: `.io` for a folder without a checkpoint.
    public static func modelFile(_ path: String) throws -> String {
        guard FileIO.isDirectory(path) else { return path }
        let file = (path.hasSuffix("/") ? path : path + "/") + checkpointFile
        guard FileIO.exists(file) else {
            throw NecoError.io("\(path) is a directory without a \(checkpointFile) (give a .safetensors file or a run directory)")
        }
        return file
    }
    /// The reference queues in a checkpoint, (nG, L, E).
    public static let queueTensor = "neco.reference_queue"

    public let config: NeCoRunConfig
    public let trainer: Trainer
    public let objective: NeCoObjective
    public let loader: NeCoDataLoader
    /// The run folder, or nil for a run that writes nothing by itself (the C ABI's in-memory runs).
    public let directory: String?
    /// (step, loss) of every step this process ran, for a loss-curve summary.
    public private(set) var losses: [(step: Int, loss: Float)] = []
    /// Evaluates the student every `config.evalEvery` steps (nil: no evaluations).
    public var evaluator: NeCoEvaluator?
    /// (step, value) of every evaluation of this run (read back from `eval.csv` on resume).
    public private(set) var evaluations: [(step: Int, value: Double)] = []
    /// The best evaluation so far, whose student is `best.safetensors`.
    public var bestEvaluation: (step: Int, value: Double)? {
        evaluations.max { $0.value < $1.value || ($0.value == $1.value && $0.step > $1.step) }
    }
    /// (step, loss) of every step in the run folder's log and of this process (for `curves.png`).
    public private(set) var lossCurve: [(step: Int, loss: Double)] = []
    /// The step of the checkpoint most recently saved or restored (nil: none yet).
    public private(set) var checkpointStep: Int?
    /// Where warnings go (skipped images, a log that cannot be written); default: standard error.
    public var warn: @Sendable (String) -> Void {
        get { loader.warn }
        set { loader.warn = newValue }
    }

    /// The ranks this run trains with (`distribute(over:)`); the single process by default.
    public private(set) var communicator: Communicator = SingleProcess.shared

    private var logFD: Int32 = -1
    /// The step of the checkpoint file in the run folder, when this object wrote or read it.
    private var folderCheckpointStep: Int?
    private var startClock = 0.0
    private var stepsThisSession = 0
    private let modelSource: String

    /// Steps done (= the trainer's step).
    public var stepsDone: Int { trainer.step }
    public var totalSteps: Int { config.trainer.totalSteps }
    public var isFinished: Bool { trainer.step >= totalSteps }

    /// A new run that trains `model` in place.
    /// - Parameters:
    ///   - directory: the run folder (created if missing). It must not hold a checkpoint already.
    /// - Throws: `.invalidArgument` for a bad config (crop sizes not multiples of the patch size,
    ///   steepness ≤ 0, a sorting network that is too small, a batch too small for the reference
    ///   mode, a batch larger than the image count) or a run folder that is in use; `.io` when the
    ///   folder cannot be created.
    public init(model: ViTModel, images: TrainingImages, config: NeCoRunConfig, directory: String?) throws {
        var c = config
        c.objective.patchSize = model.config.patchSize
        try c.validate()
        self.config = c
        self.directory = directory
        modelSource = model.source
        if let dir = directory {
            try FileIO.makeDirectories(dir)
            Self.removeStaleTemporaries(dir)
            guard !FileIO.exists(dir + "/" + Self.checkpointFile) else {
                throw NecoError.invalidArgument("\(dir) already holds a run (\(Self.checkpointFile)); resume it or choose another folder")
            }
        }
        // The objective and loader refuse what they must before the trainer allocates its heads,
        // moments and teacher (the trainer checks its own settings before allocating).
        (objective, loader) = try Self.makeObjectiveAndLoader(config: c, model: model.config, images: images)
        trainer = try Trainer(student: model, config: c.trainer)
        if let dir = directory {
            try FileIO.writeAtomically(dir + "/" + Self.configFile, bytes: Array(runJSON(images: images).serialized().utf8))
            try openLog(keepingUpTo: 0)
        }
    }

    /// Continues the run saved in `directory` from its checkpoint. `images` defaults to the folder
    /// recorded in the checkpoint; it must hold the same number of images.
    /// - Throws: `.io` / `.format` for a missing or corrupt checkpoint; `.invalidArgument` when
    ///   the images differ from the recorded ones.
    public static func resume(directory: String, images: TrainingImages? = nil) throws -> NeCoRun {
        let path = directory + "/" + checkpointFile
        removeStaleTemporaries(directory)
        guard FileIO.exists(path) else {
            throw NecoError.io("\(directory): no \(checkpointFile) to resume from (a run saves one every checkpoint interval and when stopped)")
        }
        return try NeCoRun(checkpoint: path, images: images, directory: directory)
    }

    // MARK: Data parallelism

    /// A new run as one rank of `communicator`'s job (docs/DISTRIBUTED.md); with the single
    /// process, the same as `init(model:images:config:directory:)`. Every rank calls it with the
    /// same arguments; rank 0 alone gets the run folder (checkpoints, log, pictures, models). The
    /// model, the images and the configuration come from `make`, run inside, so that a failure on any rank (a missing folder, a
    /// corrupt file) stops every rank with the same error instead of leaving the others waiting.
    /// - Throws: `.distributed` naming the rank that failed, or the setting that differs between
    ///   ranks; otherwise the single-process errors.
    public static func start(directory: String?, communicator comm: Communicator,
                             _ make: () throws -> (model: ViTModel, images: TrainingImages, config: NeCoRunConfig)) throws -> NeCoRun {
        let run: NeCoRun = try comm.agree("starting the run") {
            let (model, images, config) = try make()
            return (try NeCoRun(model: model, images: images, config: config, directory: comm.isRoot ? directory : nil), "")
        }
        try run.distribute(over: comm)
        return run
    }

    /// `resume(directory:images:)` as one rank of `communicator`'s job: every rank reads the
    /// checkpoint (the run folder must be visible to all of them), rank 0 alone writes. A run saved
    /// with N ranks resumes with M when M divides its global batch.
    public static func resume(directory: String, images: (() throws -> TrainingImages)? = nil,
                              communicator comm: Communicator) throws -> NeCoRun {
        let run: NeCoRun = try comm.agree("resuming the run") {
            let source = try images?()
            if comm.isRoot { return (try resume(directory: directory, images: source), "") }
            let path = directory + "/" + checkpointFile
            guard FileIO.exists(path) else { throw NecoError.io("\(directory): no \(checkpointFile) to resume from") }
            return (try NeCoRun(checkpoint: path, images: source, directory: nil), "")
        }
        try run.distribute(over: comm)
        return run
    }

    /// Makes this run one rank of a data-parallel job: the data loader hands this rank B / N of
    /// every global batch of B, the references follow the global batch, the loss and gradients
    /// are averaged over the ranks, and only rank 0 evaluates. Call it on every rank before the
    /// first step (`start` and `resume(directory:images:communicator:)` do); the ranks check
    /// that they hold the same run (configuration, step, data position, weights, image list).
    /// - Throws: `.invalidArgument` when N does not divide the batch; `.distributed` when the
    ///   ranks hold different runs.
    public func distribute(over comm: Communicator) throws {
        guard config.batchSize % comm.size == 0 else {
            throw NecoError.invalidArgument("the global batch of \(config.batchSize) images cannot be split over \(comm.size) "
                                            + "ranks: use a number of ranks that divides it")
        }
        try comm.agree("the run (configuration, step, data, weights)") { ((), fingerprint: fingerprint) }
        communicator = comm
        trainer.communicator = comm
        objective.references.communicator = comm
        loader.communicator = comm
        if !comm.isRoot { evaluator = nil }
    }

    /// What must be equal on every rank of a run: the configuration, the step, the data
    /// position, the image list and a checksum of the weights (student, teacher, heads) and the
    /// queues.
    public var fingerprint: String {
        var h = Checksum()
        func add(_ p: UnsafePointer<Float>, _ n: Int) { if n > 0 { h.add(UnsafeRawPointer(p), words: n) } }
        add(trainer.student.params.slab.base, trainer.student.params.count)
        if let t = trainer.teacher { add(t.params.slab.base, t.params.count) }
        for head in [trainer.studentHead, trainer.teacherHead].compactMap({ $0 }) { add(head.slab.base, head.count) }
        objective.references.queue.withUnsafeBufferPointer { if let b = $0.baseAddress { add(b, $0.count) } }
        return "config \(config.json.serialized()); step \(trainer.step); data epoch \(loader.epoch) position \(loader.position) "
            + "of \(loader.images.count) images (list \(imageListChecksum)); weights \(String(h.value, radix: 16))"
    }

    /// Checksum of the image names, in order (the list does not change during a run, so it is
    /// hashed once, not at every replica check).
    private lazy var imageListChecksum: String = {
        var names = Checksum()
        var list = Array((0..<loader.images.count).map { loader.images.name($0) }.joined(separator: "\u{0}").utf8)
        while list.count % 4 != 0 { list.append(0) }
        list.withUnsafeBytes { if let b = $0.baseAddress { names.add(b, words: $0.count / 4) } }
        return String(names.value, radix: 16)
    }()

    /// A run continued from a checkpoint file, writing to `directory` (nil: nowhere).
    public init(checkpoint path: String, images: TrainingImages?, directory: String?) throws {
        let (c, meta) = try Self.runMetadata(path)
        let source: TrainingImages
        if let images {
            source = images
        } else {
            guard let root = meta["neco.data"], meta["neco.data_kind"] == "folder" else {
                throw NecoError.invalidArgument("\(path): the run trained on in-memory images; pass the images to resume")
            }
            source = .folder(try ImageFolder(root: root))
        }
        try Self.checkImageCount(meta, source)
        config = c
        self.directory = directory
        modelSource = meta["neco.model_source"] ?? path
        trainer = try Checkpoint.load(path: path)
        (objective, loader) = try Self.makeObjectiveAndLoader(config: c, model: trainer.student.config, images: source)
        try applyRunState(try readRunState(meta, path: path), path: path)
        if let dir = directory {
            try FileIO.makeDirectories(dir)
            try openLog(keepingUpTo: trainer.step)
        }
    }

    /// Loads a checkpoint of this run (same config, same number of images) into this object:
    /// weights, optimiser, schedules, random streams, data position and reference queues. The
    /// run folder's log, if any, keeps the rows up to the checkpoint's step.
    /// - Throws: `.invalidArgument` naming the settings that differ; `.format` for a corrupt file.
    public func restore(checkpoint path: String) throws {
        let (c, meta) = try Self.runMetadata(path)
        if c != config {
            let mine = config.json, theirs = c.json
            var diffs: [String] = []
            for section in ["trainer", "objective"] {
                for (k, v) in theirs[section]?.objectValue ?? [] where mine[section]?[k] != v {
                    diffs.append("\(k) \(v.serialized()) (this run: \(mine[section]?[k]?.serialized() ?? "none"))")
                }
            }
            for k in ["batch_size", "checkpoint_every", "log"] where mine[k] != theirs[k] {
                diffs.append("\(k) \(theirs[k]?.serialized() ?? "none") (this run: \(mine[k]?.serialized() ?? "none"))")
            }
            throw NecoError.invalidArgument("\(path): the checkpoint is of another run configuration: \(diffs.joined(separator: "; "))")
        }
        try Self.checkImageCount(meta, loader.images)
        let state = try readRunState(meta, path: path)
        try Checkpoint.restore(trainer, from: path)
        try applyRunState(state, path: path)
        losses = []
        stepsThisSession = 0
        if directory != nil {
            if logFD >= 0 { close(logFD) }
            logFD = -1
            try openLog(keepingUpTo: trainer.step)
        }
    }

    /// Deletes the `*.tmp-<pid>` files that a killed process left while writing the run folder's
    /// files (checkpoint, models, log, run.json); a live writer's files are kept.
    @discardableResult
    public static func removeStaleTemporaries(_ directory: String) -> [String] {
        var removed: [String] = []
        for name in [checkpointFile, studentFile, teacherFile, configFile, "log.csv", "log.jsonl"] {
            removed += FileIO.removeStaleTemporaries(of: directory + "/" + name)
        }
        return removed
    }

    static func runMetadata(_ path: String) throws -> (NeCoRunConfig, [String: String]) {
        let meta = try Checkpoint.metadata(path: path)
        guard let runText = meta["neco.run"] else {
            throw NecoError.format("\(path): a training checkpoint without NeCo run metadata (neco.run)")
        }
        do {
            return (try NeCoRunConfig(json: try JSONValue.parse(runText)), meta)
        } catch let e as NecoError {
            throw NecoError.format("\(path): bad neco.run metadata: \(e.message)")
        }
    }

    static func checkImageCount(_ meta: [String: String], _ source: TrainingImages) throws {
        guard let recorded = meta["neco.image_count"].flatMap({ Int($0) }) else {
            throw NecoError.format("checkpoint metadata lacks neco.image_count")
        }
        guard source.count == recorded else {
            throw NecoError.invalidArgument("the run trained on \(recorded) images, \(source.description) now has \(source.count): "
                                            + "the epoch order would change, so the run cannot continue exactly")
        }
    }

    /// The data position, reference stream and queues of a checkpoint, read and checked without
    /// changing anything (so that a bad file leaves the run as it was).
    func readRunState(_ meta: [String: String], path: String) throws -> (NeCoRunState, queue: [Float]?, filled: [Int]) {
        let state = try NeCoRunState(metadata: meta, imageCount: loader.images.count)
        let refs = objective.references
        guard refs.queueLength > 0 else { return (state, nil, []) }
        let filled = (meta["neco.queue_filled"] ?? "").split(separator: ",").compactMap { Int($0) }
        guard filled.count == refs.anchors, filled.allSatisfy({ $0 >= 0 && $0 <= refs.queueLength }) else {
            throw NecoError.format("\(path): bad neco.queue_filled metadata")
        }
        var queue = [Float](repeating: 0, count: refs.queue.count)
        try queue.withUnsafeMutableBufferPointer {
            try Checkpoint.readExtraTensor(path: path, name: Self.queueTensor, into: $0)
        }
        return (state, queue, filled)
    }

    /// Puts a state from `readRunState` into the objective and loader (the trainer's own state is
    /// restored by `Checkpoint`).
    func applyRunState(_ s: (NeCoRunState, queue: [Float]?, filled: [Int]), path: String) throws {
        try s.0.restore(objective: objective, loader: loader)
        if let q = s.queue { try objective.references.restoreQueues(q, filled: s.filled) }
        checkpointStep = trainer.step
        if let dir = directory, path == dir + "/" + Self.checkpointFile { folderCheckpointStep = trainer.step }
    }

    deinit {
        if logFD >= 0 { close(logFD) }
    }

    static func makeObjectiveAndLoader(config c: NeCoRunConfig, model: ViTConfig,
                                       images: TrainingImages) throws -> (NeCoObjective, NeCoDataLoader) {
        let dim = c.trainer.headConfig(inDim: model.embedDim)?.outDim ?? model.embedDim
        let objective = try NeCoObjective(config: c.objective, dim: dim, rng: NecoRNG(seed: c.trainer.seed, stream: 2))
        try objective.validate(batch: c.batchSize)
        let loader = try NeCoDataLoader(images: images, batchSize: c.batchSize, crops: c.objective.crops,
                                        photometric: c.objective.photometric, seed: c.trainer.seed,
                                        patchSize: c.objective.patchSize)
        return (objective, loader)
    }

    // MARK: Steps

    /// One training step on the next batch.
    /// - Throws: `.data` when fewer than B images of the source can be read; `.diverged` for a
    ///   non-finite loss or gradient (the weights unchanged).
    @discardableResult
    public func step() throws -> NeCoStepInfo {
        guard !isFinished else { throw NecoError.invalidArgument("the run is finished (\(totalSteps) steps)") }
        if stepsThisSession == 0 { startClock = monotonicSeconds() }
        let t0 = monotonicSeconds()
        guard let batch = try loader.next() ?? loader.next() else {
            throw NecoError(.data, "fewer than \(config.batchSize) readable images in \(loader.images.description) "
                                            + "(\(loader.skipped) skipped so far)")
        }
        let dataSeconds = monotonicSeconds() - t0
        let report: StepReport
        do {
            report = try objective.step(trainer: trainer, batch: batch)
        } catch let e as NecoError {
            let kept = checkpointStep.map { "the last checkpoint (step \($0)) is intact" } ?? "no checkpoint was written yet"
            throw NecoError(e.kind, "step \(trainer.step + 1): \(e.message); \(kept)")
        }
        stepsThisSession += 1
        losses.append((trainer.step, report.loss))
        lossCurve.append((trainer.step, Double(report.loss)))
        let elapsed = monotonicSeconds() - startClock
        let left = totalSteps - trainer.step
        let perStep = elapsed / Double(stepsThisSession)
        let nr = objective.lastReport
        let info = NeCoStepInfo(step: trainer.step, totalSteps: totalSteps, epoch: loader.epoch, loss: report.loss,
                                lrBackbone: report.lrBackbone, lrHead: report.lrHead, weightDecay: report.weightDecay,
                                momentum: report.momentum, gradNorm: report.gradNorm, times: report.times,
                                dataSeconds: dataSeconds, queueSeconds: nr.queueSeconds, pairSeconds: nr.pairSeconds,
                                imagesPerSecond: Double(batch.batch * communicator.size) / max(dataSeconds + report.times.total, 1e-9),
                                elapsedSeconds: elapsed, etaSeconds: perStep * Double(left), skippedImages: loader.skipped)
        writeLog(info)
        return info
    }

    /// Runs until the run is finished, `steps` more steps are done, or `progress` returns false.
    /// With a run folder: saves a checkpoint every `checkpointEvery` steps and when stopping or
    /// pausing, and at the end writes the last checkpoint plus `student.safetensors` and
    /// `teacher.safetensors`.
    /// - Throws: step errors (see `step()`); the run folder keeps its last good checkpoint.
    public func run(steps: Int? = nil, progress: (NeCoStepInfo) -> Bool = { _ in true }) throws -> NeCoRunOutcome {
        let outcome = try runSteps(steps: steps, progress: progress)
        // Under MPI: when `run` returns on any rank, rank 0's files (checkpoint, models) are written.
        if communicator.size > 1 { try communicator.barrier(timeout: communicator.timeout) }
        return outcome
    }

    func runSteps(steps: Int?, progress: (NeCoStepInfo) -> Bool) throws -> NeCoRunOutcome {
        if let s = steps, s < 0 { throw NecoError.invalidArgument("steps must be ≥ 0") }
        let end = steps.map { min(totalSteps, trainer.step + $0) } ?? totalSteps
        let comm = communicator
        if config.evalEvery > 0, trainer.step == 0, evaluations.isEmpty { try evaluateOnRoot() }
        while trainer.step < end {
            let info = try step()
            // Under MPI every rank must take the same branch: rank 0's answer decides.
            var keepGoing = progress(info)
            if comm.size > 1 {
                var flag: UInt8 = keepGoing ? 1 : 0
                try comm.broadcast(&flag, bytes: 1, root: 0)
                keepGoing = flag != 0
            }
            if config.evalEvery > 0, trainer.step % config.evalEvery == 0 || isFinished { try evaluateOnRoot() }
            if isFinished { break }
            if config.checkpointEvery > 0, trainer.step % config.checkpointEvery == 0 {
                try checkReplicas()
                if directory != nil { try saveCheckpoint() }
            }
            if !keepGoing {
                if directory != nil { try saveCheckpoint() }
                return .stopped
            }
        }
        guard isFinished else {
            if directory != nil { try saveCheckpoint() }
            return .paused
        }
        try checkReplicas()
        if let dir = directory {
            try saveCheckpoint()
            try Checkpoint.exportModel(trainer, to: dir + "/" + Self.studentFile)
            try Checkpoint.exportModel(trainer, to: dir + "/" + Self.teacherFile, teacher: true)
            drawCurves()
        }
        return .finished
    }

    /// `evaluate()` on rank 0 while the other ranks wait without a time limit (an evaluation may
    /// take longer than a step's collective timeout).
    func evaluateOnRoot() throws {
        try evaluate()
        if communicator.size > 1 { try communicator.barrier(timeout: nil) }
    }

    /// Under MPI: stops every rank when the replicas' weights differ (they must stay identical;
    /// a difference means a rank computed something else, and the run's numbers would be wrong).
    func checkReplicas() throws {
        guard communicator.size > 1 else { return }
        try communicator.agree("the weights after step \(trainer.step)") { ((), fingerprint: fingerprint) }
    }

    /// Evaluates the current student with `evaluator` (nothing without one), records the value in
    /// `evaluations` and `eval.csv`, and exports the student to `best.safetensors` when it is the
    /// best so far (ties keep the earlier step).
    /// - Returns: the value, or nil without an evaluator.
    @discardableResult
    public func evaluate() throws -> Double? {
        guard let evaluator else { return nil }
        let result = try evaluator.measure(trainer.student)
        let value = result.value
        guard value.isFinite else {
            throw NecoError.invalidArgument("evaluation '\(evaluator.name)' at step \(trainer.step) is not finite (\(value))")
        }
        for m in result.monitors where m.name == evaluator.name || m.name.isEmpty || m.name.contains(",") || m.name.contains("\n") {
            throw NecoError.invalidArgument("evaluation monitor name '\(m.name)' is empty, repeats '\(evaluator.name)' or holds a comma or newline")
        }
        let improved = bestEvaluation.map { value > $0.value } ?? true
        evaluations.removeAll { $0.step == trainer.step }
        evaluations.append((trainer.step, value))
        if let dir = directory {
            let path = dir + "/" + Self.evalFile
            var text = FileIO.exists(path) ? String(decoding: try FileIO.readAll(path), as: UTF8.self) : "step,metric,value\n"
            text += "\(trainer.step),\(evaluator.name),\(value)\n"
            for m in result.monitors { text += "\(trainer.step),\(m.name),\(m.value)\n" }
            try FileIO.writeAtomically(path, bytes: Array(text.utf8))
            if improved { try Checkpoint.exportModel(trainer, to: dir + "/" + Self.bestFile) }
        }
        return value
    }

    /// Redraws `curves.png` in the run folder: the loss of every logged step and, when the run
    /// evaluates, the metric on a second axis. A picture that cannot be written is a warning.
    public func drawCurves() {
        guard let dir = directory, !lossCurve.isEmpty else { return }
        var series = [LinePlot.Series(name: "loss", color: (31, 119, 180), points: lossCurve.map { (Double($0.step), $0.loss) })]
        if !evaluations.isEmpty {
            let name = evaluator?.name ?? "eval"
            series.append(LinePlot.Series(name: name, color: (214, 39, 40),
                                          points: evaluations.sorted { $0.step < $1.step }.map { (Double($0.step), $0.value) },
                                          axis: .right, markers: true))
        }
        let plot = LinePlot(title: "NeCo run: loss" + (evaluations.isEmpty ? "" : " and " + (evaluator?.name ?? "eval")),
                            xLabel: "step", series: series)
        do {
            try PNGWriter.write(plot.render(), to: dir + "/" + Self.curvesFile)
        } catch {
            warn("cannot write \(Self.curvesFile): \(error)")
        }
    }

    // MARK: Checkpoints

    /// The `neco.*` metadata a checkpoint of this run carries.
    public var checkpointMetadata: [String: String] {
        var m = NeCoRunState(objective: objective, loader: loader).metadata
        m["neco.run"] = config.json.serialized()
        m["neco.image_count"] = String(loader.images.count)
        m["neco.model_source"] = modelSource
        m["neco.queue_filled"] = objective.references.filled.map { String($0) }.joined(separator: ",")
        m["neco.ranks"] = String(communicator.size)
        switch loader.images {
        case .folder(let f):
            m["neco.data_kind"] = "folder"
            m["neco.data"] = f.root
        case .memory:
            m["neco.data_kind"] = "memory"
        }
        return m
    }

    /// Saves the complete state to `path` (default: the run folder's checkpoint), atomically.
    /// Skips the write when the run folder's checkpoint is already at the current step.
    public func saveCheckpoint(to path: String? = nil) throws {
        guard let target = path ?? directory.map({ $0 + "/" + Self.checkpointFile }) else {
            throw NecoError.invalidArgument("this run has no folder; give a checkpoint path")
        }
        let own = path == nil
        if own, folderCheckpointStep == trainer.step, FileIO.exists(target) { return }
        if logFD >= 0 { _ = fsync(logFD) }
        let refs = objective.references
        var queue = refs.queue
        try queue.withUnsafeMutableBufferPointer { q in
            var extras: [Checkpoint.ExtraTensor] = []
            if refs.queueLength > 0 {
                extras.append(Checkpoint.ExtraTensor(name: Self.queueTensor, shape: [refs.anchors, refs.queueLength, refs.dim],
                                                     base: q.baseAddress!))
            }
            try Checkpoint.save(trainer, to: target, extraMetadata: checkpointMetadata, extraTensors: extras)
        }
        checkpointStep = trainer.step
        if own {
            folderCheckpointStep = trainer.step
            drawCurves()
        }
    }

    /// A short text summary of the loss curve of the steps this process ran: the mean loss over
    /// up to 10 equal windows, first to last.
    public var lossCurveSummary: String {
        guard !losses.isEmpty else { return "no steps" }
        let n = losses.count, windows = min(10, n)
        var parts: [String] = []
        for w in 0..<windows {
            let a = w * n / windows, b = (w + 1) * n / windows
            let mean = losses[a..<b].reduce(0.0) { $0 + Double($1.loss) } / Double(b - a)
            parts.append("steps \(losses[a].step)-\(losses[b - 1].step): \(Self.format(mean, 4))")
        }
        return parts.joined(separator: "\n")
    }

    // MARK: Files

    func runJSON(images: TrainingImages) -> JSONValue {
        var data: [(String, JSONValue)] = [("count", .number(Double(images.count)))]
        if case .folder(let f) = images { data.append(("folder", .string(f.root))) }
        let m = trainer.student.config
        return .object([("format", .string("neco-run")), ("version", .string("1")), ("config", config.json),
                        ("model", .object([("source", .string(modelSource)), ("architecture", m.trainingJSON)])),
                        ("data", .object(data))])
    }

    static let csvHeader = "step,epoch,loss,lr_backbone,lr_head,weight_decay,momentum,grad_norm,images_per_s,data_s,"
        + "teacher_forward_s,student_forward_s,neco_loss_s,backward_s,optimizer_s,allreduce_s,step_s"

    /// Opens (creates) the log, keeping only the rows of steps 1...n (rows are numbered by steps
    /// done, so resuming from a checkpoint at step n drops the rows of the lost steps).
    func openLog(keepingUpTo n: Int) throws {
        guard let dir = directory, config.log != .none else { return }
        let path = dir + "/log." + config.log.rawValue
        var kept: [String] = config.log == .csv ? [Self.csvHeader] : []
        lossCurve = []
        if n > 0, FileIO.exists(path) {
            let text = String(decoding: try FileIO.readAll(path), as: UTF8.self)
            for line in text.split(separator: "\n") {
                guard let step = Self.logStep(String(line)) else { continue }
                if step <= n {
                    kept.append(String(line))
                    if let loss = Self.logLoss(String(line)) { lossCurve.append((step, loss)) }
                }
            }
        }
        // Evaluations up to the checkpoint (the file is rewritten without the later rows).
        evaluations = []
        let evalPath = dir + "/" + Self.evalFile
        if FileIO.exists(evalPath) {
            var rows = ["step,metric,value"]
            let text = String(decoding: try FileIO.readAll(evalPath), as: UTF8.self)
            // The first row's metric is the one that chooses the best student; the rows of
            // monitors (NeCoEvaluation.monitors) stay in the file but choose nothing.
            var main: String? = nil
            for r in Self.evaluationRows(text) where r.step <= n {
                if main == nil { main = r.metric }
                if r.metric == main { evaluations.append((r.step, r.value)) }
                rows.append(r.line)
            }
            try FileIO.writeAtomically(evalPath, bytes: Array((rows.joined(separator: "\n") + "\n").utf8))
        }
        let body = kept.isEmpty ? "" : kept.joined(separator: "\n") + "\n"
        try FileIO.writeAtomically(path, bytes: Array(body.utf8))
        logFD = FileIO.open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
        if logFD < 0 { throw NecoError.io("\(path): cannot open the log: \(FileIO.errnoString())") }
    }

    /// The loss of a log row (csv: the third field; jsonl: "loss"), nil when malformed.
    static func logLoss(_ line: String) -> Double? {
        if line.hasPrefix("{") {
            let parts = line.split(separator: ",").map { $0.drop { $0 == "{" } }
            guard let field = parts.first(where: { $0.hasPrefix("\"loss\":") }) else { return nil }
            return Double(field.dropFirst(7).prefix { $0 != "}" })
        }
        let f = line.split(separator: ",", omittingEmptySubsequences: false)
        return f.count > 2 ? Double(f[2]) : nil
    }

    /// The step number of a log row, nil for the header or a malformed line.
    static func logStep(_ line: String) -> Int? {
        if line.hasPrefix("{\"step\":") {
            return Int(line.dropFirst(8).prefix { $0.isNumber })
        }
        return Int(line.prefix { $0 != "," })
    }

    func writeLog(_ i: NeCoStepInfo) {
        guard logFD >= 0 else { return }
        let t = i.times
        let values: [(String, String)] = [
            ("step", String(i.step)), ("epoch", String(i.epoch)), ("loss", "\(i.loss)"),
            ("lr_backbone", "\(i.lrBackbone)"), ("lr_head", "\(i.lrHead)"), ("weight_decay", "\(i.weightDecay)"),
            ("momentum", "\(i.momentum)"), ("grad_norm", "\(i.gradNorm)"), ("images_per_s", Self.format(i.imagesPerSecond, 4)),
            ("data_s", Self.format(i.dataSeconds, 4)), ("teacher_forward_s", Self.format(t.teacherForward, 4)),
            ("student_forward_s", Self.format(t.studentForward, 4)), ("neco_loss_s", Self.format(t.loss, 4)),
            ("backward_s", Self.format(t.backward, 4)), ("optimizer_s", Self.format(t.optimizer, 4)),
            ("allreduce_s", Self.format(t.allreduce, 4)), ("step_s", Self.format(i.stepSeconds, 4)),
        ]
        let line: String
        if config.log == .csv {
            line = values.map { $0.1 }.joined(separator: ",") + "\n"
        } else {
            line = "{" + values.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}\n"
        }
        var bytes = Array(line.utf8)
        let n = bytes.withUnsafeMutableBytes { write(logFD, $0.baseAddress, $0.count) }
        if n != bytes.count {
            warn("cannot append to the training log: \(FileIO.errnoString()); logging stops")
            close(logFD)
            logFD = -1
        }
    }

    /// Fixed-point text with `digits` decimals (no Foundation).
    static func format(_ v: Double, _ digits: Int) -> String { FixedPoint.text(v, digits: digits) }
}
