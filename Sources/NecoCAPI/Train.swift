import CNecoSupport
import NecoCore
import NecoImage
import NecoModel
import NecoTrain

#if canImport(Glibc)
import Glibc
#endif

// Training entry points of neco.h ("Training" section): NeCo post-pretraining through
// NecoTrain.NeCoRun. Validation and handle plumbing only; no numerics here.

/// What a `neco_trainer *` points at.
final class TrainerHandle: Handle {
    override class var cName: String { "neco_trainer" }
    let run: NeCoRun
    /// The input size of the model the trainer was built from (for the models it hands out).
    let imageHeight: Int
    let imageWidth: Int

    init(run: NeCoRun, imageHeight: Int, imageWidth: Int) {
        self.run = run
        self.imageHeight = imageHeight
        self.imageWidth = imageWidth
    }
}

enum TrainLimits {
    static let maxSteps: Int64 = 1 << 40
    static let maxImages: Int32 = 1_000_000
    static let maxCropSide: Int32 = 4096
    static let maxQueue: Int32 = 1 << 24
}

@_cdecl("neco_train_default_params")
public func neco_train_default_params() -> neco_train_params {
    neco_train_params(struct_size: MemoryLayout<neco_train_params>.size, total_steps: Int64(NeCoRunConfig.defaultTotalSteps), batch_size: 8, global_size: 224, local_size: 98, n_global_crops: 2, n_local_crops: 4,
                      roi_size: 7, references: Int32(NECO_REFERENCES_QUEUE.rawValue), queue_length: 8192,
                      sort_net: Int32(NECO_SORT_BITONIC.rawValue), relaxation: Int32(NECO_RELAX_CAUCHY.rawValue),
                      steepness: 100, teacher_steepness: 0, log_floor: 0, lr_backbone: 1e-5, lr_head: 1e-4, warmup_steps: 0,
                      drop_path: 0.1, train_last_blocks: 0, freeze_first_blocks: 0, grad_clip: 0, seed: 0, run_dir: nil,
                      checkpoint_every: 50, head_hidden_dim: 2048, head_out_dim: 256, epochs: 0, head_only_steps: 0,
                      memory_limit_mib: 0, recompute_ffn_blocks: 0)
}

/// The run configuration for C params, every field range-checked (NeCoRunConfig.validate checks
/// the combinations: patch-size multiples, reference mode against the batch, …).
func runConfig(_ p: neco_train_params) throws -> (NeCoRunConfig, String?) {
    func check(_ ok: Bool, _ message: @autoclosure () -> String) throws {
        if !ok { throw NecoError.invalidArgument("params.\(message())") }
    }
    try check(p.total_steps >= 1 && p.total_steps <= TrainLimits.maxSteps, "total_steps = \(p.total_steps) out of range 1...2^40")
    try check(p.batch_size >= 1 && p.batch_size <= 4096, "batch_size = \(p.batch_size) out of range 1...4096")
    try check(p.global_size >= 1 && p.global_size <= TrainLimits.maxCropSide, "global_size = \(p.global_size) out of range 1...4096")
    try check(p.local_size >= 1 && p.local_size <= TrainLimits.maxCropSide, "local_size = \(p.local_size) out of range 1...4096")
    try check(p.n_global_crops >= 1 && p.n_global_crops <= 64, "n_global_crops = \(p.n_global_crops) out of range 1...64")
    try check(p.n_local_crops >= 0 && p.n_local_crops <= 63, "n_local_crops = \(p.n_local_crops) out of range 0...63")
    try check(p.roi_size >= 2 && p.roi_size <= 32, "roi_size = \(p.roi_size) out of range 2...32 (the sorting network would be too small or too large)")
    try check(p.queue_length >= 1 && p.queue_length <= TrainLimits.maxQueue, "queue_length = \(p.queue_length) out of range 1...2^24")
    try check(p.steepness.isFinite && p.steepness > 0, "steepness = \(p.steepness) must be finite and > 0")
    try check(p.teacher_steepness.isFinite && p.teacher_steepness >= 0, "teacher_steepness = \(p.teacher_steepness) must be finite and ≥ 0 (0 = the student's)")
    try check(p.log_floor == -1 || (p.log_floor.isFinite && p.log_floor >= 0 && p.log_floor < 1),
              "log_floor = \(p.log_floor) must be in [0, 1), or -1 (auto)")
    try check(p.epochs >= 0 && p.epochs <= 1 << 20, "epochs = \(p.epochs) out of range 0...2^20 (0 = use total_steps)")
    try check(p.lr_backbone.isFinite && p.lr_backbone >= 0 && p.lr_head.isFinite && p.lr_head >= 0, "lr_backbone / lr_head must be finite and ≥ 0")
    // With epochs > 0 total_steps is ignored: the run's length is known once the images are, and
    // the trainer configuration checks warm-up and head-only steps against it then.
    try check(p.warmup_steps >= 0 && (p.epochs > 0 || p.warmup_steps < p.total_steps),
              "warmup_steps = \(p.warmup_steps) must be in 0...total_steps-1")
    try check(p.head_only_steps >= 0 && (p.epochs > 0 || p.head_only_steps < p.total_steps),
              "head_only_steps = \(p.head_only_steps) must be in 0...total_steps-1")
    try check(p.drop_path.isFinite && p.drop_path >= 0 && p.drop_path < 1, "drop_path = \(p.drop_path) must be in [0, 1)")
    try check(p.train_last_blocks >= 0 && p.freeze_first_blocks >= 0, "train_last_blocks / freeze_first_blocks must be ≥ 0")
    try check(p.train_last_blocks == 0 || p.freeze_first_blocks == 0, "train_last_blocks and freeze_first_blocks are both set")
    try check(p.grad_clip.isFinite && p.grad_clip >= 0, "grad_clip = \(p.grad_clip) must be finite and ≥ 0 (0 = none)")
    try check(p.checkpoint_every >= 0, "checkpoint_every = \(p.checkpoint_every) must be ≥ 0")
    try check(p.head_hidden_dim >= 1 && p.head_hidden_dim <= 65536 && p.head_out_dim >= 1 && p.head_out_dim <= 65536,
              "head_hidden_dim / head_out_dim = \(p.head_hidden_dim) / \(p.head_out_dim) out of range 1...65536")
    try check(p.memory_limit_mib >= 0 && p.memory_limit_mib <= 1 << 30, "memory_limit_mib = \(p.memory_limit_mib) out of range 0...2^30 (0 = no limit)")
    try check(p.recompute_ffn_blocks >= 0 && p.recompute_ffn_blocks <= 4096, "recompute_ffn_blocks = \(p.recompute_ffn_blocks) out of range 0...4096")

    // With epochs, the longest run stands in until the images give the real length (makeTrainer).
    var c = NeCoRunConfig(totalSteps: p.epochs > 0 ? Int(TrainLimits.maxSteps) : Int(p.total_steps))
    c.batchSize = Int(p.batch_size)
    c.checkpointEvery = Int(p.checkpoint_every)
    c.log = .csv
    var t = c.trainer
    t.seed = p.seed
    t.lrBackbone = p.lr_backbone
    t.lrHead = p.lr_head
    t.warmupSteps = Int(p.warmup_steps)
    t.headOnlySteps = Int(p.head_only_steps)
    t.dropPathRate = Float(p.drop_path)
    t.gradClip = p.grad_clip > 0 ? p.grad_clip : nil
    t.headHiddenDim = Int(p.head_hidden_dim)
    t.headOutDim = Int(p.head_out_dim)
    t.trainable = p.train_last_blocks > 0 ? .last(Int(p.train_last_blocks))
        : (p.freeze_first_blocks > 0 ? .freezeFirst(Int(p.freeze_first_blocks)) : .all)
    c.trainer = t
    var o = c.objective
    o.crops.globalSize = Int(p.global_size)
    o.crops.localSize = Int(p.local_size)
    o.crops.globalCrops = Int(p.n_global_crops)
    o.crops.localCrops = Int(p.n_local_crops)
    o.roiSize = Int(p.roi_size)
    switch p.references {
    case Int32(NECO_REFERENCES_QUEUE.rawValue): o.references = .queue(length: Int(p.queue_length))
    case Int32(NECO_REFERENCES_BATCH.rawValue): o.references = .batch
    default: throw NecoError.invalidArgument("params.references = \(p.references) is not a neco_train_references (0...1)")
    }
    switch p.sort_net {
    case Int32(NECO_SORT_BITONIC.rawValue): o.network = .bitonic
    case Int32(NECO_SORT_ODD_EVEN.rawValue): o.network = .oddEven
    default: throw NecoError.invalidArgument("params.sort_net = \(p.sort_net) is not a neco_sort_net (0...1)")
    }
    let relaxations: [Relaxation] = [.cauchy, .logistic, .logisticPhi, .gaussian, .reciprocal, .optimal]
    guard p.relaxation >= 0, Int(p.relaxation) < relaxations.count else {
        throw NecoError.invalidArgument("params.relaxation = \(p.relaxation) is not a neco_relaxation (0...5)")
    }
    o.relaxation = relaxations[Int(p.relaxation)]
    o.studentSteepness = p.steepness
    o.teacherSteepness = p.teacher_steepness > 0 ? p.teacher_steepness : nil
    o.logFloor = p.log_floor == -1 ? NeCoObjectiveConfig.autoLogFloor(for: o.relaxation) : p.log_floor
    c.objective = o
    let dir = try p.run_dir.map { try cString($0, "params.run_dir") }
    return (c, dir)
}

/// A trainer over `images` for a copy of the model behind `model`.
private func makeTrainer(_ model: OpaquePointer?, _ images: () throws -> TrainingImages,
                         _ params: UnsafePointer<neco_train_params>?, _ out: UnsafeMutablePointer<OpaquePointer?>) throws {
    let m = try unbox(model, "model", as: ModelHandle.self)
    let p = try readParams(params, Int32(NECO_SUPPORT_TRAIN_PARAMS), neco_train_default_params(), "neco_train_params")
    var (config, dir) = try runConfig(p)
    config.objective.patchSize = m.model.config.patchSize
    try config.validate()  // bad params are refused before a folder is scanned or pixels are copied
    // Under an MPI launcher the run is one rank of a data-parallel job (NECO_MPI=0 turns that off);
    // rank 0 alone writes run_dir.
    let comm = try MPICommunicator.fromEnvironment()
    let run = try NeCoRun.start(directory: dir, communicator: comm) {
        let source = try images()
        if p.epochs > 0 {  // the run's length follows from the images (NeCoRunConfig's rule, as `neco train --epochs`)
            config.trainer.totalSteps = try NeCoRunConfig.totalSteps(epochs: Int(p.epochs), images: source.count,
                                                                     batchSize: config.batchSize)
            try config.validate()
        }
        // The trainer trains its own copy: the caller's model handle stays immutable.
        return (try m.model.copy(), source, config)
    }
    run.warn = { message in log(NECO_LOG_WARN, message) }
    run.trainer.recomputedFeedForwardBlocks = Int(p.recompute_ffn_blocks)
    run.trainer.memoryLimit = p.memory_limit_mib > 0 ? Int(p.memory_limit_mib) << 20 : nil
    out.pointee = box(TrainerHandle(run: run, imageHeight: m.imageHeight, imageWidth: m.imageWidth))
}

@_cdecl("neco_trainer_init_folder")
public func neco_trainer_init_folder(_ model: OpaquePointer?, _ folder: UnsafePointer<CChar>?,
                                     _ params: UnsafePointer<neco_train_params>?,
                                     _ outTrainer: UnsafeMutablePointer<OpaquePointer?>?) -> neco_status {
    guarded("neco_trainer_init_folder") {
        let out = try clearOut(outTrainer, "out_trainer")
        let root = try cString(folder, "folder")
        try makeTrainer(model, { .folder(try ImageFolder(root: root)) }, params, out)
    }
}

@_cdecl("neco_trainer_init_images")
public func neco_trainer_init_images(_ model: OpaquePointer?, _ images: UnsafePointer<UnsafePointer<UInt8>?>?,
                                     _ heights: UnsafePointer<Int32>?, _ widths: UnsafePointer<Int32>?, _ nImages: Int32,
                                     _ params: UnsafePointer<neco_train_params>?,
                                     _ outTrainer: UnsafeMutablePointer<OpaquePointer?>?) -> neco_status {
    guarded("neco_trainer_init_images") {
        let out = try clearOut(outTrainer, "out_trainer")
        guard let images, let heights, let widths else { throw NecoError.invalidArgument("images, heights or widths is NULL") }
        guard nImages >= 1, nImages <= TrainLimits.maxImages else {
            throw NecoError.invalidArgument("n_images = \(nImages) out of range 1...\(TrainLimits.maxImages)")
        }
        try makeTrainer(model, {
            var list: [RGBImage] = []
            list.reserveCapacity(Int(nImages))
            var total = 0
            for i in 0..<Int(nImages) {
                guard let px = images[i] else { throw NecoError.invalidArgument("images[\(i)] is NULL") }
                let h = heights[i], w = widths[i]
                guard h >= 1, w >= 1, h <= 65535, w <= 65535 else {
                    throw NecoError.invalidArgument("image \(i) is \(h)×\(w); sides must be in 1...65535")
                }
                let n = try checkedProduct([Int(h), Int(w), 3], limit: 3 << 28, "image \(i)")
                total += n
                guard total <= 1 << 34 else { throw NecoError(.outOfMemory, "the images hold more than 16 GiB of pixels") }
                try Memory.reserve(n, of: UInt8.self, "copying image \(i) (\(h)×\(w))")
                list.append(RGBImage(width: Int(w), height: Int(h), pixels: Array(UnsafeBufferPointer(start: px, count: n))))
            }
            return .memory(list)
        }, params, out)
    }
}

@_cdecl("neco_trainer_free")
public func neco_trainer_free(_ trainer: OpaquePointer?) {
    release(trainer, "neco_trainer_free", as: TrainerHandle.self)
}

/// The C view of a step report.
private func progress(_ i: NeCoStepInfo) -> neco_train_progress {
    let t = i.times
    return neco_train_progress(step: Int64(i.step), total_steps: Int64(i.totalSteps), epoch: Int64(i.epoch), loss: i.loss,
                               lr_backbone: i.lrBackbone, lr_head: i.lrHead, weight_decay: i.weightDecay, momentum: i.momentum,
                               grad_norm: i.gradNorm, images_per_second: i.imagesPerSecond, step_seconds: i.stepSeconds,
                               data_seconds: i.dataSeconds, teacher_seconds: t.teacherForward, student_seconds: t.studentForward,
                               loss_seconds: t.loss, backward_seconds: t.backward, optimizer_seconds: t.optimizer,
                               eta_seconds: i.etaSeconds, skipped_images: Int64(i.skippedImages))
}

@_cdecl("neco_trainer_step")
public func neco_trainer_step(_ trainer: OpaquePointer?, _ outProgress: UnsafeMutablePointer<neco_train_progress>?) -> neco_status {
    guarded("neco_trainer_step") {
        let h = try unbox(trainer, "trainer", as: TrainerHandle.self)
        let info = try h.run.step()
        outProgress?.pointee = progress(info)
    }
}

@_cdecl("neco_trainer_run")
public func neco_trainer_run(_ trainer: OpaquePointer?, _ nSteps: Int64,
                             _ callback: (@convention(c) (UnsafePointer<neco_train_progress>?, UnsafeMutableRawPointer?) -> Bool)?,
                             _ userData: UnsafeMutableRawPointer?) -> neco_status {
    guarded("neco_trainer_run") {
        let h = try unbox(trainer, "trainer", as: TrainerHandle.self)
        guard nSteps >= 0, nSteps <= TrainLimits.maxSteps else {
            throw NecoError.invalidArgument("n_steps = \(nSteps) out of range 0...2^40 (0 = up to total_steps)")
        }
        guard !h.run.isFinished else {
            throw NecoError.invalidArgument("the run is finished (\(h.run.totalSteps) steps)")
        }
        let outcome = try h.run.run(steps: nSteps == 0 ? nil : Int(nSteps)) { info in
            guard let callback else { return true }
            var p = progress(info)
            return callback(&p, userData)  // true = continue, as NeCoRun.run's progress closure
        }
        if outcome == .stopped {
            let saved = h.run.directory.map { " (checkpoint saved in \($0))" } ?? ""
            throw NecoError(.aborted, "stopped by the callback (it returned false) after step \(h.run.stepsDone)\(saved)")
        }
    }
}

@_cdecl("neco_trainer_step_count")
public func neco_trainer_step_count(_ trainer: OpaquePointer?) -> Int64 {
    do {
        return Int64(try unbox(trainer, "trainer", as: TrainerHandle.self).run.stepsDone)
    } catch let e as NecoError {
        note("neco_trainer_step_count", e.message)
    } catch {
        note("neco_trainer_step_count", "\(error)")
    }
    return 0
}

@_cdecl("neco_trainer_save_checkpoint")
public func neco_trainer_save_checkpoint(_ trainer: OpaquePointer?, _ path: UnsafePointer<CChar>?) -> neco_status {
    guarded("neco_trainer_save_checkpoint") {
        let h = try unbox(trainer, "trainer", as: TrainerHandle.self)
        let file = try cString(path, "path")
        guard !FileIO.isDirectory(file) else { throw NecoError.invalidArgument("path \(file) is a folder") }
        try h.run.saveCheckpoint(to: file)
    }
}

@_cdecl("neco_trainer_load_checkpoint")
public func neco_trainer_load_checkpoint(_ trainer: OpaquePointer?, _ path: UnsafePointer<CChar>?) -> neco_status {
    guarded("neco_trainer_load_checkpoint") {
        let h = try unbox(trainer, "trainer", as: TrainerHandle.self)
        let file = try cString(path, "path")
        // NeCoRun.restore reads and checks everything (format, shapes, configuration, checksum,
        // run state) before it changes anything, so a failure leaves the trainer as it was.
        try h.run.restore(checkpoint: file)
    }
}

@_cdecl("neco_trainer_get_model")
public func neco_trainer_get_model(_ trainer: OpaquePointer?, _ teacher: Bool,
                                   _ outModel: UnsafeMutablePointer<OpaquePointer?>?) -> neco_status {
    guarded("neco_trainer_get_model") {
        let out = try clearOut(outModel, "out_model")
        let h = try unbox(trainer, "trainer", as: TrainerHandle.self)
        guard let source = teacher ? h.run.trainer.teacher : h.run.trainer.student else {
            throw NecoError.invalidArgument("this trainer has no teacher")
        }
        let copy = try source.copy(source: "\(teacher ? "teacher" : "student") at step \(h.run.stepsDone)")
        copy.prepareForInference()
        guard let name = strdup(source.config.name) else { throw NecoError(.outOfMemory, "cannot copy the model name") }
        out.pointee = box(ModelHandle(model: copy, imageHeight: h.imageHeight, imageWidth: h.imageWidth, name: name))
    }
}
