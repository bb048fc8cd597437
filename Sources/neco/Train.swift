import ArgumentParser
import NecoCore
import NecoModel
import NecoEval
import NecoTrain

#if canImport(Glibc)
import Glibc
#endif

/// Set by SIGINT; the training loop stops after the current step and saves a checkpoint.
nonisolated(unsafe) private var interruptRequested: sig_atomic_t = 0

/// `neco train`: NeCo post-pretraining of a ViT on a folder of images, with checkpoints, resume,
/// a progress line and a per-step log.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "NeCo post-pretraining on a folder of JPEG/PNG images (new run or --resume).",
        discussion: """
            A new run: neco train --data DIR --out RUN_DIR [--model M] [options]. Continue a stopped run: \
            neco train --resume RUN_DIR (every setting comes from its checkpoint). Ctrl-C stops after the current \
            step and saves a checkpoint (a second Ctrl-C quits at once; the last checkpoint stays). RUN_DIR gets \
            run.json, checkpoint.safetensors (every --checkpoint-every steps and on stop), log.csv or log.jsonl, \
            and at the end student.safetensors and teacher.safetensors, which --model accepts everywhere.
            """)

    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Folder of training images (searched recursively).") var data: String?
    @Option(help: "Run folder for checkpoints, logs and the trained models.") var out: String?
    @Option(help: "Continue the run in this folder from its checkpoint.") var resume: String?

    @Option(help: "Optimisation steps (default: 100 unless --epochs is given).") var steps: Int?
    @Option(help: "Epochs over the folder (steps = epochs × ⌊images / batch⌋).") var epochs: Int?
    @Option(help: "Images per step.") var batch: Int = 8
    @Option(help: "Global crop size (multiple of the patch size; the paper uses 518).") var globalSize: Int = 224
    @Option(help: "Local crop size (multiple of the patch size; default 98 for /14 patches, 96 for /16).") var localSize: Int?
    @Option(help: "Global crops per image.") var globalCrops: Int = 2
    @Option(help: "Local crops per image.") var localCrops: Int = 4
    @Option(help: "Reference patches: queue (teacher queue, DINOv2 configs) or batch.") var references: String = "queue"
    @Option(help: "Queue length in queue mode.") var queueLength: Int = 8192
    @Option(help: "Queue fill counter: shared (one counter for both queues, as the official code: while the queues fill, about half the references drawn are still-zero rows) or per-queue (each queue counts its own rows; a deviation, see docs/EXPERIMENTS.md).")
    var queueCounter: String = "shared"
    @Option(help: "Sorting network: bitonic or odd_even.") var sortNet: String = "bitonic"
    @Option(help: "Relaxation: cauchy, logistic, logistic_phi, gaussian, reciprocal, optimal.") var relaxation: String = "cauchy"
    @Option(help: "Sorting steepness of the student.") var steepness: Double = 100
    @Option(help: "Sorting steepness of the teacher (default: the student's).") var teacherSteepness: Double?
    @Option(help: "ROI Align output side (Q = K = side²).") var roiSize: Int = 7
    @Option(help: "Floor inside ln P: 'auto' = 0 (the reference) for cauchy/reciprocal/optimal, 1e-30 for the relaxations that underflow at high steepness (logistic, logistic_phi, gaussian).")
    var logFloor: String = "auto"
    @Option(help: "Backbone learning rate.") var lrBackbone: Double = 1e-5
    @Option(help: "Projection-head learning rate.") var lrHead: Double = 1e-4
    @Option(help: "Linear warm-up steps (NeCo: 0).") var warmupSteps: Int = 0
    @Option(help: "First steps in which only the projection head learns (backbone lr 0; NeCo: 0).") var headOnlySteps: Int = 0
    @Option(help: "Student stochastic-depth rate.") var dropPath: Float = 0.1
    @Option(help: "Train only the last N blocks (0 = everything).") var trainLast: Int = 0
    @Option(help: "Freeze the first N blocks (0 = none).") var freezeFirst: Int = 0
    @Option(help: "Gradient-norm clipping (default: none, as NeCo).") var gradClip: Double?
    @Option(help: "Random seed (crops, order, heads, stochastic depth, references).") var seed: UInt64 = 0
    @Option(help: "Save a checkpoint every N steps (0 = only on stop and at the end).") var checkpointEvery: Int = 50
    @Option(help: "Per-step log in RUN_DIR: csv, jsonl or none.") var log: String = "csv"
    @Flag(help: "No progress line; one log line per step instead.") var quiet = false
    @OptionGroup var memory: TrainingMemoryOptions
    @Option(help: ArgumentHelp("Pause after this many steps, saving a checkpoint (e.g. before a job's time limit); continue with --resume.",
                               discussion: "Allowed with --resume too."))
    var pauseAfter: Int?
    @Option(help: "DINOv3: RoPE coordinate rescale factor R ≥ 1 in training (Meta pre-trains with 2; default off).") var ropeRescale: Float?
    @Option(help: "DINOv3: RoPE coordinate jitter factor J ≥ 1 in training (default off).") var ropeJitter: Float?
    @Option(help: "DINOv3: RoPE coordinate shift s ≥ 0 in training (default off).") var ropeShift: Float?
    @Option(help: "Evaluate the student every N steps (and before the first and after the last step); keeps the best as best.safetensors. 0 = never.")
    var evalEvery: Int = 0
    @Option(help: "Evaluation protocol during training: incontext (Hummingbird mIoU on the benchmark's validation split).")
    var evalBench: String = "incontext"
    @Option(help: "Benchmark folder for --eval-every (default $NECO_CACHE/bench/synth).") var evalData: String?
    @Option(help: "Input side of the evaluation (a multiple of the patch size).") var evalSize: Int = 224
    @Option(help: "Passes of Hummingbird's memory augmentation in the evaluation (0 = un-augmented memory).")
    var evalAugmentEpochs: Int = 0

    func run() throws {
        try memory.check()
        signal(SIGINT) { _ in
            if interruptRequested != 0 { _exit(130) }
            interruptRequested = 1
        }
        // Under MPI every rank trains; rank 0 alone prints (errors still come from every rank).
        let comm = try MPICommunicator.fromEnvironment()
        if !comm.isRoot { silenceStandardOutput() }
        let run: NeCoRun
        if let dir = resume {
            try modelOptions.applyProcessSettings()
            guard out == nil || out == dir else { throw NecoError.invalidArgument("--resume continues in its own folder; drop --out") }
            let fresh = try Train.parse([])
            var changed: [String] = []
            if steps != nil || epochs != nil { changed.append("--steps/--epochs") }
            if modelOptions.model != nil || modelOptions.config != nil || modelOptions.registers != nil
                || modelOptions.posRule != nil || modelOptions.heads != nil { changed.append("model options") }
            if batch != fresh.batch || globalSize != fresh.globalSize || localSize != fresh.localSize
                || globalCrops != fresh.globalCrops || localCrops != fresh.localCrops { changed.append("batch/crop options") }
            if references != fresh.references || queueLength != fresh.queueLength || queueCounter != fresh.queueCounter || sortNet != fresh.sortNet
                || relaxation != fresh.relaxation || steepness != fresh.steepness || teacherSteepness != nil
                || roiSize != fresh.roiSize || logFloor != fresh.logFloor { changed.append("NeCo loss options") }
            if lrBackbone != fresh.lrBackbone || lrHead != fresh.lrHead || warmupSteps != fresh.warmupSteps || headOnlySteps != fresh.headOnlySteps
                || dropPath != fresh.dropPath || ropeRescale != nil || ropeJitter != nil || ropeShift != nil
                || trainLast != 0 || freezeFirst != 0 || gradClip != nil || seed != fresh.seed
                || checkpointEvery != fresh.checkpointEvery || log != fresh.log || evalEvery != fresh.evalEvery {
                changed.append("optimisation options")
            }
            guard changed.isEmpty else {
                throw NecoError.invalidArgument("--resume takes every setting from the checkpoint; drop \(changed.joined(separator: ", ")) "
                                                + "(only --data, --threads, --max-image-pixels, --load-truncated-images, --quiet, --pause-after, --recompute-ffn(-blocks), --memory-limit and the --eval-bench/--eval-data/--eval-size/"
                                                + "--eval-augment-epochs options may be given)")
            }
            let folder = data.map { d in { () throws -> TrainingImages in .folder(try ImageFolder(root: d)) } }
            run = try NeCoRun.resume(directory: dir, images: folder, communicator: comm)
            print("resuming \(dir) at step \(run.stepsDone)/\(run.totalSteps) (epoch \(run.loader.epoch)), "
                  + "data \(run.loader.images.description)")
        } else {
            guard let data else { throw NecoError.invalidArgument("--data DIR is required for a new run (or use --resume RUN_DIR)") }
            guard let out else { throw NecoError.invalidArgument("--out RUN_DIR is required for a new run") }
            run = try NeCoRun.start(directory: out, communicator: comm) {
                let folder = try ImageFolder(root: data)
                let model = try modelOptions.load()
                return (model, .folder(folder), try makeConfig(images: folder.files.count, model: model.config))
            }
            let c = run.config, model = run.trainer.student
            print("NeCo run \(out): \(model.config.name) from \(model.source)")
            print("  data \(data): \(run.loader.images.count) images, batch \(c.batchSize)"
                  + (comm.size > 1 ? " (\(c.batchSize / comm.size) on each of \(comm.size) MPI ranks)" : "") + ", "
                  + "\(run.loader.stepsPerEpoch) steps per epoch, \(c.trainer.totalSteps) steps")
            print("  crops \(c.objective.crops.globalCrops)×\(c.objective.crops.globalSize) + "
                  + "\(c.objective.crops.localCrops)×\(c.objective.crops.localSize), references \(references), "
                  + "\(c.objective.network.rawValue)/\(c.objective.relaxation.rawValue) steepness \(c.objective.studentSteepness)"
                  + (c.objective.logFloor > 0 ? " (ln floor \(c.objective.logFloor))" : "") + ", "
                  + "lr \(c.trainer.lrBackbone)/\(c.trainer.lrHead), \(Threads.count) threads, "
                  + "trainable \(run.trainer.trainableCount) parameters")
        }
        memory.apply(to: run.trainer)
        if run.isFinished {
            print("the run is already finished (\(run.totalSteps) steps)")
            return
        }
        if run.config.evalEvery > 0 && comm.isRoot {
            run.evaluator = try makeEvaluator()
            print("  evaluating \(run.evaluator?.name ?? "") every \(run.config.evalEvery) steps on \(evalData ?? Benchmark.defaultDirectory + "/synth")")
        }
        var lastDraw = 0.0
        let tty = isatty(2) != 0 && !quiet
        let outcome: NeCoRunOutcome
        do {
            if let p = pauseAfter, p < 1 { throw NecoError.invalidArgument("--pause-after must be ≥ 1") }
            outcome = try run.run(steps: pauseAfter) { info in
                let t = info.times
                if tty {
                    let clock = monotonicSeconds()
                    if clock - lastDraw > 0.2 || info.step == info.totalSteps {
                        lastDraw = clock
                        writeStderr("\r\u{1B}[K" + progressLine(info))
                    }
                } else {
                    print("step \(info.step)/\(info.totalSteps) loss \(fmt(Double(info.loss), 4)) lr \(sci(info.lrBackbone)) "
                          + "momentum \(fmt(info.momentum, 6)) \(fmt(info.imagesPerSecond, 2)) img/s | data \(fmt(info.dataSeconds, 2)) "
                          + "teacher \(fmt(t.teacherForward, 2)) student \(fmt(t.studentForward, 2)) neco \(fmt(t.loss, 2)) "
                          + "backward \(fmt(t.backward, 2)) optim \(fmt(t.optimizer, 2)) s | ETA \(duration(info.etaSeconds))")
                }
                if interruptRequested != 0 && info.step < info.totalSteps {
                    if tty { writeStderr("\n") }
                    print("interrupted: saving a checkpoint at step \(info.step)")
                    return false
                }
                return true
            }
        } catch {
            if tty { writeStderr("\n") }
            throw error
        }
        if tty { writeStderr("\n") }
        let dir = run.directory ?? "."
        print("loss curve (mean per window):")
        for line in run.lossCurveSummary.split(separator: "\n") { print("  " + line) }
        if run.loader.skipped > 0 { print("skipped \(run.loader.skipped) unreadable images") }
        switch outcome {
        case .finished:
            print("finished \(run.totalSteps) steps; wrote \(dir)/\(NeCoRun.studentFile) (use it with --model), "
                  + "\(dir)/\(NeCoRun.teacherFile), \(dir)/\(NeCoRun.checkpointFile), \(dir)/\(NeCoRun.curvesFile)")
            if let best = run.bestEvaluation {
                print("best \(run.evaluator?.name ?? "evaluation"): \(fmt(best.value, 2)) at step \(best.step) "
                      + "(\(dir)/\(NeCoRun.bestFile)); evaluations in \(dir)/\(NeCoRun.evalFile)")
            }
        case .paused:
            print("paused at step \(run.stepsDone)/\(run.totalSteps) (--pause-after); continue with: neco train --resume \(dir)")
        case .stopped:
            print("stopped at step \(run.stepsDone)/\(run.totalSteps); continue with: neco train --resume \(dir)")
            throw ExitCode(130)
        }
    }

    /// In-context mIoU (%) of a student on the evaluation benchmark's validation split, which
    /// chooses the best student, and the RankMe of those images' features, recorded next to it.
    func makeEvaluator() throws -> NeCoEvaluator {
        guard evalBench == "incontext" else { throw NecoError.invalidArgument("--eval-bench supports incontext") }
        let bench = try Benchmark(path: evalData ?? Benchmark.defaultDirectory + "/synth")
        var p = InContextProtocol()
        p.augmentation = MemoryAugmentation(epochs: evalAugmentEpochs)
        try p.augmentation.validate()
        let size = evalSize
        return NeCoEvaluator(name: "incontext_miou") { model in
            let cache = try FeatureCache(model: model, bench: bench, size: size, batch: 8)
            let r = try p.evaluate(cache, train: bench.train, val: bench.val, classes: bench.classes.count)
            let value = 100 * r.score.mIoU
            // RankMe of the same validation images: a fall warns of collapsing features (no labels).
            let rank = try RankMe.ofSplit(cache, bench.val)
            print("  eval: in-context mIoU \(fmt(value, 2)) (memory \(r.memoryPatches) patches), RankMe \(fmt(rank.value, 1))")
            return NeCoEvaluation(value: value, monitors: [("rankme", rank.value)])
        }
    }

    func makeConfig(images: Int, model: ViTConfig) throws -> NeCoRunConfig {
        guard batch >= 1 else { throw NecoError.invalidArgument("--batch must be ≥ 1") }
        let total: Int
        switch (steps, epochs) {
        case (.some, .some): throw NecoError.invalidArgument("give --steps or --epochs, not both")
        case (.some(let s), nil): total = s
        case (nil, .some(let e)):
            guard e >= 1 else { throw NecoError.invalidArgument("--epochs must be ≥ 1") }
            total = try NeCoRunConfig.totalSteps(epochs: e, images: images, batchSize: batch)
        case (nil, nil): total = NeCoRunConfig.defaultTotalSteps
        }
        guard total >= 1 else { throw NecoError.invalidArgument("--steps must be ≥ 1") }
        var c = NeCoRunConfig(totalSteps: total)
        c.batchSize = batch
        c.checkpointEvery = checkpointEvery
        guard evalEvery >= 0 else { throw NecoError.invalidArgument("--eval-every must be ≥ 0") }
        c.evalEvery = evalEvery
        guard let lf = TrainingLogFormat(rawValue: log) else { throw NecoError.invalidArgument("--log must be csv, jsonl or none") }
        c.log = lf
        var t = c.trainer
        t.seed = seed
        t.lrBackbone = lrBackbone
        t.lrHead = lrHead
        t.warmupSteps = warmupSteps
        t.headOnlySteps = headOnlySteps
        t.dropPathRate = dropPath
        t.gradClip = gradClip
        t.ropeAugment = RoPEAugment(shift: ropeShift, jitter: ropeJitter, rescale: ropeRescale)
        if t.ropeAugment.isActive && model.rope == nil {
            throw NecoError.invalidArgument("--rope-rescale/--rope-jitter/--rope-shift need a RoPE (DINOv3) model; \(model.name) has a position table")
        }
        guard trainLast == 0 || freezeFirst == 0 else { throw NecoError.invalidArgument("give --train-last or --freeze-first, not both") }
        guard trainLast >= 0, freezeFirst >= 0 else { throw NecoError.invalidArgument("--train-last / --freeze-first must be ≥ 0") }
        t.trainable = trainLast > 0 ? .last(trainLast) : (freezeFirst > 0 ? .freezeFirst(freezeFirst) : .all)
        c.trainer = t
        var o = c.objective
        o.crops.globalSize = globalSize
        // 98 = 7 patches of 14 (NeCo's setting); 96 = 6 patches of 16 for DINOv3's /16 models.
        o.crops.localSize = localSize ?? (model.patchSize == 14 ? 98 : 6 * model.patchSize)
        o.crops.globalCrops = globalCrops
        o.crops.localCrops = localCrops
        o.roiSize = roiSize
        switch references {
        case "queue": o.references = .queue(length: queueLength)
        case "batch": o.references = .batch
        default: throw NecoError.invalidArgument("--references must be queue or batch")
        }
        switch queueCounter {
        case "shared": o.sharedQueueCounter = true
        case "per-queue": o.sharedQueueCounter = false
        default: throw NecoError.invalidArgument("--queue-counter must be shared or per-queue")
        }
        guard let net = SortingNetworkKind(rawValue: sortNet) else {
            throw NecoError.invalidArgument("unknown --sort-net '\(sortNet)' (bitonic, odd_even)")
        }
        guard let rel = Relaxation(rawValue: relaxation) else {
            throw NecoError.invalidArgument("unknown --relaxation '\(relaxation)' (\(Relaxation.allCases.map { $0.rawValue }.joined(separator: ", ")))")
        }
        o.network = net
        o.relaxation = rel
        o.studentSteepness = steepness
        o.teacherSteepness = teacherSteepness
        if logFloor == "auto" {
            o.logFloor = NeCoObjectiveConfig.autoLogFloor(for: rel)
        } else {
            guard let f = Double(logFloor) else { throw NecoError.invalidArgument("--log-floor must be 'auto' or a number") }
            o.logFloor = f
        }
        c.objective = o
        return c
    }
}

/// "[=====>    ] 12/100 loss 4.1234 lr 9.8e-06 m 0.99951 3.21 img/s | teacher … | ETA 4m12s"
private func progressLine(_ i: NeCoStepInfo) -> String {
    let width = 20
    let done = i.totalSteps > 0 ? i.step * width / i.totalSteps : width
    let bar = String(repeating: "=", count: done) + (done < width ? ">" + String(repeating: " ", count: width - done - 1) : "")
    let t = i.times
    let parts = [("data", i.dataSeconds), ("teacher", t.teacherForward), ("student", t.studentForward), ("neco", t.loss),
                 ("backward", t.backward), ("optim", t.optimizer)]
    return "[\(bar)] \(i.step)/\(i.totalSteps) loss \(fmt(Double(i.loss), 4)) lr \(sci(i.lrBackbone)) m \(fmt(i.momentum, 5)) "
        + "\(fmt(i.imagesPerSecond, 2)) img/s | " + parts.map { "\($0.0) \(fmt($0.1, 1))" }.joined(separator: " ")
        + " s | ETA \(duration(i.etaSeconds))"
}

/// "2h03m", "4m12s", "17s".
func duration(_ s: Double) -> String {
    guard s.isFinite, s >= 0 else { return "?" }
    let t = Int(s.rounded())
    if t >= 3600 { return "\(t / 3600)h\(t % 3600 / 60 < 10 ? "0" : "")\(t % 3600 / 60)m" }
    if t >= 60 { return "\(t / 60)m\(t % 60 < 10 ? "0" : "")\(t % 60)s" }
    return "\(t)s"
}

/// "9.8e-06"-style text with 2 significant digits.
func sci(_ v: Double) -> String {
    guard v != 0, v.isFinite else { return "\(v)" }
    var e = 0
    var m = abs(v)
    while m >= 10 { m /= 10; e += 1 }
    while m < 1 { m *= 10; e -= 1 }
    return (v < 0 ? "-" : "") + fmt(m, 1) + "e" + (e < 0 ? "-" : "+") + (abs(e) < 10 ? "0" : "") + String(abs(e))
}
