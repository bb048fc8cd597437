import ArgumentParser
import Neco
import NecoCore
import NecoImage
import NecoModel
import NecoTrain

#if canImport(Glibc)
import Glibc
#endif

/// The entry point: arguments keep their bytes (`Path`), so file names that are not UTF-8 work;
/// `CommandLine.arguments` would replace those bytes with U+FFFD.
@main
enum NecoMain {
    static func main() {
        let argv = CommandLine.unsafeArgv
        NecoCLI.main((1..<Int(CommandLine.argc)).compactMap { argv[$0].map { Path.string(cString: $0) } })
    }
}

/// Sends this process's standard output to /dev/null (the MPI ranks other than 0).
func silenceStandardOutput() {
    let fd = open("/dev/null", O_WRONLY)
    guard fd >= 0 else { return }
    dup2(fd, 1)
    close(fd)
}

struct NecoCLI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "neco",
        abstract: "NeCo dense features for DINO / DINOv2 Vision Transformers.",
        subcommands: [Info.self, Extract.self, PCACommand.self, Demo.self, Bench.self, Export.self, Train.self, TrainBench.self, Eval.self, Interpolate.self, Plot.self, IndexBench.self, Segment.self, Neighbors.self])
}

/// Model selection shared by every subcommand.
struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "Safetensors checkpoint (Meta, timm or Hugging Face keys). Default: the embedded DINOv2 ViT-S/14.")
    var model: String?
    @Option(name: .long, help: "Expected architecture preset (vits14, vitb14, vitl14, vitg14, vits16, vitb16, dinov3_vits16, dinov3_vits16plus, dinov3_vitb16, dinov3_vitl16, dinov3_vith16plus); checked against the weights.")
    var config: String?
    @Option(name: .long, help: "Register tokens to build (0 drops register weights).")
    var registers: Int?
    @Option(name: .long, help: "Position-embedding resampling rule: neco, bicubic or antialias (default: the checkpoint's own).")
    var posRule: String?
    @Option(name: .long, help: "Attention heads (default: embed dim / 64).")
    var heads: Int?
    @Option(name: .long, help: "Threads for GEMMs and kernels (default: all cores).")
    var threads: Int?
    @Option(name: .long, help: ArgumentHelp("Largest picture decoded, in pixels (default 89478485, Pillow's MAX_IMAGE_PIXELS; at most 268435456).",
                                            discussion: "A larger JPEG or PNG is refused from its header (a decompression bomb costs nothing); training skips it."))
    var maxImagePixels: Int?
    @Flag(name: .long, help: "Decode JPEG/PNG files that end early (missing rows grey or black, as Pillow's LOAD_TRUNCATED_IMAGES) instead of refusing them.")
    var loadTruncatedImages = false

    /// Process-wide settings: worker threads and the image decoder's limits.
    func applyProcessSettings() throws {
        if let t = threads {
            guard t >= 1 && t <= 256 else { throw NecoError.invalidArgument("--threads must be in 1...256") }
            Threads.setCount(t)
        }
        var o = ImageDecoder.defaultOptions
        if let m = maxImagePixels {
            guard m >= 1 && m <= ImageDecoder.Options.maxPixelsLimit else {
                throw NecoError.invalidArgument("--max-image-pixels must be in 1...\(ImageDecoder.Options.maxPixelsLimit)")
            }
            o.maxPixels = m
        }
        o.allowTruncated = loadTruncatedImages
        ImageDecoder.defaultOptions = o
    }

    func load() throws -> ViTModel {
        try applyProcessSettings()
        var o = LoadOptions(heads: heads, registers: registers)
        if let r = posRule {
            guard let rule = PosEmbedRule(rawValue: r) else {
                throw NecoError.invalidArgument("unknown --pos-rule '\(r)' (use neco, bicubic or antialias)")
            }
            o.posEmbedRule = rule
        }
        if let c = config {
            guard let pc = ViTConfig.preset(c, registers: registers ?? 0) else {
                throw NecoError.invalidArgument("unknown --config '\(c)' (use \(ViTConfig.presetNames.joined(separator: ", ")))")
            }
            o.expect = pc
        }
        if let m = model { return try WeightLoader.load(path: ModelOptions.resolve(m), options: o) }
        return try DefaultModel.load(options: o)
    }

    /// `--model` as a file: a directory stands for the checkpoint of the run it holds.
    static func resolve(_ path: String) throws -> String { try NeCoRun.modelFile(path) }
}

/// The memory options of `train` and `train-bench`, shared: `--recompute-ffn`,
/// `--recompute-ffn-blocks N` (`Trainer.recomputedFeedForwardBlocks`) and `--memory-limit MiB`
/// (`Trainer.memoryLimit`).
struct TrainingMemoryOptions: ParsableArguments {
    @Flag(help: "Recompute each trained block's feed-forward pre-activation in backward instead of storing it: about a third less activation memory for one more fc1 GEMM per block; the same numbers. Allowed with --resume.")
    var recomputeFfn = false
    @Option(help: "Recompute it in the lowest N trained blocks only (a memory/speed trade between none and --recompute-ffn); the same numbers. Allowed with --resume.")
    var recomputeFfnBlocks: Int?
    @Option(help: ArgumentHelp("Keep the training state (weights, optimizer state, activations) within this many MiB, recomputing the feed-forward pre-activation in as few blocks as that needs; the same numbers. Allowed with --resume.",
                               discussion: "The process needs somewhat more: code, OpenBLAS's buffers, the images."))
    var memoryLimit: Int?

    /// Refuses contradictory or out-of-range values (before anything is loaded or created).
    func check() throws {
        if let n = recomputeFfnBlocks {
            guard !recomputeFfn else { throw NecoError.invalidArgument("give --recompute-ffn or --recompute-ffn-blocks, not both") }
            guard n >= 0 else { throw NecoError.invalidArgument("--recompute-ffn-blocks \(n) must not be negative") }
        }
        if let m = memoryLimit {
            guard m >= 1, m <= 1 << 30 else { throw NecoError.invalidArgument("--memory-limit \(m) MiB is out of range 1...\(1 << 30)") }
        }
    }

    /// Sets the trainer's recompute count and memory limit (the values passed `check()` when the
    /// command started).
    func apply(to trainer: Trainer) {
        if let n = recomputeFfnBlocks { trainer.recomputedFeedForwardBlocks = n } else { trainer.recomputeFeedForward = recomputeFfn }
        trainer.memoryLimit = memoryLimit.map { $0 << 20 }
    }
}

/// Parses "S" or "HxW".
func parseSize(_ s: String) throws -> (Int, Int) {
    let parts = s.lowercased().split(separator: "x")
    if parts.count == 1, let v = Int(parts[0]), v > 0 { return (v, v) }
    if parts.count == 2, let h = Int(parts[0]), let w = Int(parts[1]), h > 0, w > 0 { return (h, w) }
    throw NecoError.invalidArgument("bad size '\(s)': use S or HxW, e.g. 224 or 182x266")
}

func resizeMode(size: String, crop: Bool, patch: Int) throws -> ResizeMode {
    let (h, w) = try parseSize(size)
    guard h % patch == 0, w % patch == 0 else {
        throw NecoError.invalidArgument("size \(h)x\(w) is not a multiple of the patch size \(patch)")
    }
    if crop {
        guard h == w else { throw NecoError.invalidArgument("--crop needs a square size") }
        return .shortSideCrop(size: h)
    }
    return .stretch(height: h, width: w)
}

func peakRSSMiB() -> Double {
    var u = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &u)
    return Double(u.ru_maxrss) / 1024
}

/// User + system CPU seconds of this process (all threads).
func processCPUSeconds() -> Double {
    var u = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &u)
    return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6
}

/// `s` left-aligned in a column `width` characters wide, with at least one space after it.
func column(_ s: String, _ width: Int) -> String { s + String(repeating: " ", count: max(1, width - s.count)) }

func fmt(_ v: Double, _ digits: Int = 2) -> String {
    var p: Double = 1
    for _ in 0..<digits { p *= 10 }
    let r = (v * p).rounded() / p
    var s = "\(r)"
    if let dot = s.firstIndex(of: ".") {
        let decimals = s.distance(from: dot, to: s.endIndex) - 1
        if decimals < digits { s += String(repeating: "0", count: digits - decimals) }
    } else if digits > 0 { s += "." + String(repeating: "0", count: digits) }
    return s
}

/// "avx512 (available: portable, avx2, avx512)": the kernel path in use (NECO_CPU forces one).
func cpuPathDescription() -> String {
    "\(CPUFeatures.path.name) (available: \(CPUFeatures.available.map(\.name).joined(separator: ", ")); NECO_CPU forces one)"
}

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a checkpoint's architecture, parameter count and key scheme.")
    @OptionGroup var modelOptions: ModelOptions

    func run() throws {
        let m = try modelOptions.load()
        let c = m.config
        print("model        \(m.source)")
        print("scheme       \(m.scheme.rawValue)")
        print("config       \(c.name)")
        print("patch        \(c.patchSize)")
        print("embed dim    \(c.embedDim)")
        print("depth        \(c.depth)")
        print("heads        \(c.heads) × \(c.headDim)")
        print("feed-forward \(c.ffn.rawValue), width \(c.mlpHidden)")
        print("LayerScale   \(c.layerScale ? "yes" : "no")")
        print("registers    \(c.registers)")
        print("family       \(c.family.rawValue)")
        if let rope = c.rope {
            print("positions    RoPE (axial, base \(rope.base), \(rope.bf16Periods ? "bfloat16" : "float32") periods), qkv bias \(c.qkvBias.rawValue)")
        } else {
            print("pos grid     \(c.posGrid)×\(c.posGrid) (native input \(c.nativeImageSize) px), rule \(c.posEmbedRule.rawValue)")
        }
        print("parameters   \(m.parameterCount)")
        print("cpu path     \(cpuPathDescription())")
    }
}

struct Extract: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Extract dense patch features to NumPy .npy files.",
        discussion: "Each image gives an (h, w, D) float32 array. With --stack (or one image and an --out ending in .npy) the output is one (N, h, w, D) array; otherwise --out is a folder with one <name>.npy per image (written atomically; --resume skips the ones already there). A folder argument is walked recursively for JPEG/PNG files. Under MPI (mpirun -np N neco extract …) the images are shared out over the ranks and rank 0 prints.")
    @OptionGroup var modelOptions: ModelOptions
    @Argument(help: "Image files or folders.") var inputs: [String]
    @Option(help: "Input size S or HxW, a multiple of the patch size.") var size: String = "224"
    @Flag(help: "Resize the shorter side and center-crop instead of stretching.") var crop = false
    @Flag(help: "L2-normalise each patch feature.") var l2 = false
    @Flag(help: "Write one stacked (N, h, w, D) array.") var stack = false
    @Flag(help: "Continue an interrupted extraction: keep the .npy files already in --out (each is complete).") var resume = false
    @Option(help: "Images per forward pass.") var batch: Int = 8
    @Option(help: "Output .npy file or folder.") var out: String

    func run() throws {
        let comm = try MPICommunicator.fromEnvironment()
        if !comm.isRoot { silenceStandardOutput() }
        let (model, job) = try comm.agree("starting the extraction") {
            let model = try modelOptions.load()
            let job = try FolderExtraction(inputs: inputs)
            return ((model, job), fingerprint: job.files.joined(separator: "\u{0}"))
        }
        let mode = try resizeMode(size: size, crop: crop, patch: model.config.patchSize)
        guard batch >= 1 && batch <= 256 else { throw NecoError.invalidArgument("--batch must be in 1...256") }
        let extractor = FeatureExtractor(model: model)
        let options = ExtractOptions(resize: mode, l2Normalize: l2)
        let files = job.files
        let t0 = monotonicSeconds()
        if !(stack || (files.count == 1 && out.hasSuffix(".npy"))) {
            let ranks = comm.size > 1 ? " over \(comm.size) ranks" : ""
            let summary = try job.run(extractor: extractor, options: options, folder: out, batch: batch, skipExisting: resume,
                                      communicator: comm) { done, total in
                guard comm.isRoot, total > 1 else { return }
                let rate = Double(done) / max(monotonicSeconds() - t0, 1e-9)
                writeStderr("\r[\(done)/\(total)]\(comm.size > 1 ? " rank 0 of \(comm.size)" : "") \(fmt(rate, 1)) img/s"
                            + (done == total ? "\n" : ""))
            }
            guard comm.isRoot else { return }
            let kept = summary.existing > 0 ? " (kept \(summary.existing) already there)" : ""
            print("wrote \(summary.written) files to \(out)/\(ranks)\(kept)" + (summary.shape.isEmpty ? "" : ", each \(summary.shape)"))
            return
        }
        guard comm.size == 1 else {
            throw NecoError.invalidArgument("a stacked .npy output cannot be shared over \(comm.size) ranks; give --out a folder")
        }
        var stacked: [Float] = []
        var shape: [Int] = []
        var start = 0
        while start < files.count {
            let chunk = Array(files[start..<min(files.count, start + batch)])
            let images = try chunk.map { try ImageDecoder.load(path: $0) }
            let f = try extractor.extract(images: images, options: options)
            shape = [f.gridHeight, f.gridWidth, f.dim]
            for i in chunk.indices { stacked += f.patches(of: i) }
            start += chunk.count
            let rate = Double(start) / max(monotonicSeconds() - t0, 1e-9)
            if files.count > 1 {
                writeStderr("\r[\(start)/\(files.count)] \(fmt(rate, 1)) img/s" + (start == files.count ? "\n" : ""))
            }
        }
        let fullShape = (stack || files.count > 1) ? [files.count] + shape : shape
        try Npy.write(out, shape: fullShape, data: stacked)
        print("wrote \(out) \(fullShape)")
    }
}

struct PCACommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pca",
        abstract: "Picture of the first 3 principal components of the patch features, next to the image.")
    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Input image (JPEG or PNG).") var image: String
    @Option(help: "Input size S or HxW (multiple of the patch size).") var size: String = "448"
    @Option(help: "Output PNG.") var out: String

    func run() throws {
        let model = try modelOptions.load()
        let mode = try resizeMode(size: size, crop: false, patch: model.config.patchSize)
        let img = try ImageDecoder.load(path: image)
        let f = try FeatureExtractor(model: model).extract(images: [img], options: ExtractOptions(resize: mode))
        let shown = try Preprocess.apply(img, mode: mode)
        let pic = try PCA.picture(image: shown, features: f.patches(of: 0), gridHeight: f.gridHeight, gridWidth: f.gridWidth, dim: f.dim)
        try PNGWriter.write(pic, to: out)
        print("wrote \(out) (\(pic.width)×\(pic.height), grid \(f.gridHeight)×\(f.gridWidth))")
    }
}

/// Writes to standard error without touching the C `stderr` global (not concurrency-safe in Swift 6).
func writeStderr(_ s: String) {
    var bytes = Array(s.utf8)
    _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
}
