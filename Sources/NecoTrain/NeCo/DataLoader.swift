import NecoCore
import NecoImage
#if canImport(Glibc)
import Glibc
#endif

// The NeCo data path, NECO-SPEC §3: an image folder → multi-crop → photometric augmentation →
// normalised crop tensors plus overlap boxes, batched crop-major (§3.5).

/// The JPEG and PNG files under a folder, found recursively, sorted by path (so a seed fixes the
/// order on every machine). Hidden files and folders (names starting with ".") are skipped;
/// symbolic links are followed one level (to a file), not into folders.
public struct ImageFolder: Sendable {
    public let root: String
    public let files: [String]

    /// Recognised extensions (case-insensitive).
    public static let extensions: Set<String> = ["jpg", "jpeg", "png"]

    /// - Throws: `.io` when `root` cannot be opened; `.invalidArgument` when it holds no image.
    public init(root: String) throws {
        self.root = root
        var found: [String] = []
        try Self.scan(root, into: &found, depth: 0)
        guard !found.isEmpty else {
            throw NecoError(.data, "image folder \(root) holds no .jpg/.jpeg/.png file")
        }
        files = found.sorted()
    }

    static func scan(_ dir: String, into out: inout [String], depth: Int) throws {
        guard depth < 64 else { return }
        guard let d = Path.withCString(dir, { opendir($0) }) else {
            throw NecoError.io("cannot open folder \(dir): \(String(cString: strerror(errno)))")
        }
        defer { closedir(d) }
        var subdirs: [String] = []
        while let entry = readdir(d) {
            let name = FileIO.entryName(entry)
            if name.hasPrefix(".") { continue }
            let path = dir.hasSuffix("/") ? dir + name : dir + "/" + name
            var st = stat()
            if Path.withCString(path, { lstat($0, &st) }) != 0 { continue }
            let kind = st.st_mode & S_IFMT
            if kind == S_IFDIR {
                subdirs.append(path)
            } else if kind == S_IFREG || (kind == S_IFLNK && Path.withCString(path, { stat($0, &st) }) == 0 && st.st_mode & S_IFMT == S_IFREG) {
                if let dot = name.lastIndex(of: "."),
                   extensions.contains(String(name[name.index(after: dot)...]).lowercased()) {
                    out.append(path)
                }
            }
        }
        for s in subdirs { try scan(s, into: &out, depth: depth + 1) }
    }
}

/// Where training images come from: a folder scanned once, or decoded images held in memory
/// (the C ABI's caller-supplied RGB buffers).
public enum TrainingImages: Sendable {
    case folder(ImageFolder)
    /// Images and a display name for each (used in warnings and `NeCoBatch.paths`).
    case memory([RGBImage], names: [String])

    /// In-memory images named "image 0", "image 1", ….
    public static func memory(_ images: [RGBImage]) -> TrainingImages {
        .memory(images, names: images.indices.map { "image \($0)" })
    }

    public var count: Int {
        switch self {
        case .folder(let f): return f.files.count
        case .memory(let images, _): return images.count
        }
    }

    /// The file path or the in-memory name of image `i`.
    public func name(_ i: Int) -> String {
        switch self {
        case .folder(let f): return f.files[i]
        case .memory(_, let names): return names[i]
        }
    }

    /// A one-line description: the folder, or "N images in memory".
    public var description: String {
        switch self {
        case .folder(let f): return f.root
        case .memory(let images, _): return "\(images.count) images in memory"
        }
    }

    /// Image `i`, decoded (folder) or as given (memory).
    /// - Throws: `.io` / `.format` for a file that cannot be read or decoded.
    public func load(_ i: Int) throws -> RGBImage {
        switch self {
        case .folder(let f): return try ImageDecoder.load(path: f.files[i])
        case .memory(let images, _): return images[i]
        }
    }
}

/// One batch of NeCo inputs.
public struct NeCoBatch: Sendable {
    /// B, images in the batch.
    public var batch: Int
    /// (nG·B, 3, S_g, S_g) normalised pixels, crop-major: [crop0 b0…b(B−1), crop1 b0…].
    public var globals: [Float]
    /// (nL·B, 3, S_l, S_l), crop-major: [crop2 b0…, crop3 …, …].
    public var locals: [Float]
    /// Overlap boxes in pixels, (B, nG, nC, 4) and (B, nC, nG, 4).
    public var boxes: NeCoBoxes
    /// Source files, per image.
    public var paths: [String]
    /// The crops of each image in original pixels, (B) × nC.
    public var crops: [[CropBox]]

    /// A batch from crops made elsewhere (e.g. a caller's own pipeline, or recorded crops).
    public init(batch: Int, globals: [Float], locals: [Float], boxes: NeCoBoxes, paths: [String], crops: [[CropBox]]) {
        self.batch = batch
        self.globals = globals
        self.locals = locals
        self.boxes = boxes
        self.paths = paths
        self.crops = crops
    }
}

/// Image folder → shuffled batches of NeCo crops, reproducible from a seed and resumable.
///
/// * Each epoch visits the files in a fresh random order: `NecoRNG(seed, stream: 1000 + epoch)
///   .permutation(N)`, so the order depends only on (seed, epoch).
/// * Batches take the next B readable images of that order; the last partial batch of an epoch is
///   dropped (`drop_last`). `stepsPerEpoch = ⌊N / B⌋` when every file decodes.
/// * Every image's crops and augmentation use `NecoRNG(seed, stream: 2⁴⁰ + epoch·2²⁰ + position)`
///   (its position in the epoch's order), so the pixels do not depend on thread timing.
/// * Unreadable or undecodable files are skipped with a warning (`warn`) and counted
///   (`skipped`); an epoch with fewer than B readable images left ends early.
/// * Decoding, cropping, augmentation and normalisation of the B images run in parallel over
///   `Threads.count` workers.
///
/// State for checkpoints: `epoch`, `position` (and `skipped`); `seek(epoch:position:)` restores it.
public final class NeCoDataLoader: @unchecked Sendable {
    public let images: TrainingImages
    public let batchSize: Int
    public let crops: MultiCropConfig
    public let photometric: PhotometricConfig
    public let seed: UInt64
    public private(set) var epoch = 0
    /// Index into the current epoch's order of the next file to read.
    public private(set) var position = 0
    public private(set) var skipped = 0
    /// Called with a one-line message for every skipped file (default: stderr).
    public var warn: @Sendable (String) -> Void = { message in
        // write(2) rather than the C `stderr` global, which is not concurrency-safe in Swift 6.
        var bytes = Array("warning: \(message)\n".utf8)
        _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
    }
    /// The ranks of a data-parallel run (docs/DISTRIBUTED.md): `batchSize` is then the global
    /// batch, and `next()` returns this rank's B / N images of it (rank r: images r·B/N…), decoding
    /// only those. Files that cannot be read are skipped as in one process: the ranks exchange
    /// which of the positions they tried decoded, so all of them skip the same files and the
    /// global batch is the one a single process would read. Default: the single process.
    public var communicator: Communicator = SingleProcess.shared
    private var order: [Int] = []
    private var orderEpoch = -1

    /// - Throws: `.invalidArgument` for a batch < 1 or larger than the folder, or a bad config.
    public convenience init(folder: ImageFolder, batchSize: Int, crops: MultiCropConfig, photometric: PhotometricConfig,
                            seed: UInt64, patchSize: Int) throws {
        try self.init(images: .folder(folder), batchSize: batchSize, crops: crops, photometric: photometric, seed: seed,
                      patchSize: patchSize)
    }

    /// - Throws: `.data` for no images or fewer than a batch; `.invalidArgument` for a batch < 1 or
    ///   a bad config.
    public init(images: TrainingImages, batchSize: Int, crops: MultiCropConfig, photometric: PhotometricConfig, seed: UInt64,
                patchSize: Int) throws {
        try crops.validate(patchSize: patchSize)
        try photometric.validate()
        guard images.count >= 1 else { throw NecoError(.data, "no training images") }
        guard batchSize >= 1 else { throw NecoError.invalidArgument("batch size must be ≥ 1") }
        guard batchSize <= images.count else {
            throw NecoError(.data, "batch size \(batchSize) exceeds the \(images.count) images in \(images.description)")
        }
        self.images = images
        self.batchSize = batchSize
        self.crops = crops
        self.photometric = photometric
        self.seed = seed
    }

    /// ⌊N / B⌋.
    public var stepsPerEpoch: Int { images.count / batchSize }

    /// Restores a saved position.
    public func seek(epoch: Int, position: Int, skipped: Int = 0) {
        precondition(epoch >= 0 && position >= 0, "seek: negative epoch or position")
        self.epoch = epoch
        self.position = position
        self.skipped = skipped
    }

    func currentOrder() -> [Int] {
        if orderEpoch != epoch {
            var rng = NecoRNG(seed: seed, stream: 1000 + UInt64(epoch))
            order = rng.permutation(images.count)
            orderEpoch = epoch
        }
        return order
    }

    /// One image's crops: decoded, cut, resized (PIL bilinear), augmented, normalised.
    struct Sample {
        var crops: [CropBox]
        var pixels: [[Float]]   // per crop (3, S, S)
        var anchor: [Float], partner: [Float]
    }

    func makeSample(index: Int, epoch: Int, position: Int) throws -> Sample {
        let img = try images.load(index)
        var rng = NecoRNG(seed: seed, stream: (1 << 40) + (UInt64(epoch) << 20) + UInt64(position))
        let boxes = try MultiCrop.sample(width: img.width, height: img.height, config: crops, rng: &rng)
        var pixels: [[Float]] = []
        for (c, box) in boxes.enumerated() {
            let s = crops.size(ofCrop: c)
            let cut = ImageResize.crop(img, x: box.left, y: box.top, width: box.width, height: box.height)
            let resized = ImageResize.resizeBilinearAntialias(cut, width: s, height: s)
            let (aug, _) = Photometric.augment(resized, config: photometric, rng: &rng)
            var t = [Float](repeating: 0, count: 3 * s * s)
            t.withUnsafeMutableBufferPointer { Preprocess.normalize(aug, into: $0.baseAddress!) }
            pixels.append(t)
        }
        let (anchor, partner) = try MultiCrop.overlapBoxes(boxes, config: crops)
        return Sample(crops: boxes, pixels: pixels, anchor: anchor, partner: partner)
    }

    /// The next batch, or nil at the end of the epoch (then `epoch` has advanced and `position`
    /// is 0; call again for the first batch of the next epoch).
    ///
    /// With N ranks (`communicator`): the global batch's positions are split into contiguous
    /// chunks, one per rank; the ranks share which of them decoded; rank r returns global images
    /// r·B/N..<(r+1)·B/N of the readable ones (decoding again any that another rank read, which
    /// happens only after a skip). One process is the case N = 1.
    public func next() throws -> NeCoBatch? {
        let comm = communicator, ranks = comm.size, rank = comm.rank
        let order = currentOrder()
        let n = order.count, b = batchSize
        guard b % ranks == 0 else {
            throw NecoError.invalidArgument("a global batch of \(b) images cannot be split over \(ranks) ranks")
        }
        let share = b / ranks
        var good: [Int] = []
        var mine: [Int: Sample] = [:]
        while good.count < b {
            let need = b - good.count
            guard position + need <= n else {
                epoch += 1
                position = 0
                return nil
            }
            let lo = position + need * rank / ranks, hi = position + need * (rank + 1) / ranks
            let results = decode(Array(lo..<hi), order: order)
            var flags = [UInt8](repeating: 0, count: need)
            for (i, r) in results.enumerated() {
                switch r {
                case .success(let sample):
                    flags[lo - position + i] = 1
                    mine[lo + i] = sample
                case .failure(let error):
                    warn("skipping \(images.name(order[lo + i]))\(ranks > 1 ? " (rank \(rank))" : ""): \(error)")
                }
            }
            let all = try comm.gather(bytes: flags)
            for i in 0..<need {
                if all.contains(where: { $0[i] != 0 }) { good.append(position + i) } else { skipped += 1 }
            }
            position += need
        }
        var samples: [(String, Sample)] = []
        for p in good[(rank * share)..<((rank + 1) * share)] {
            let sample = try mine[p] ?? makeSample(index: order[p], epoch: epoch, position: p)
            samples.append((images.name(order[p]), sample))
        }
        return try assemble(samples)
    }

    /// Decodes and crops the images at these positions of the epoch's order, in parallel.
    func decode(_ positions: [Int], order: [Int]) -> [Result<Sample, Error>] {
        var results = [Result<Sample, Error>?](repeating: nil, count: positions.count)
        let ep = epoch
        results.withUnsafeMutableBufferPointer { rp in
            let out = rp.baseAddress!
            Threads.parallelFor(positions.count) { s, e in
                for i in s..<e {
                    let p = positions[i]
                    out[i] = Result { try self.makeSample(index: order[p], epoch: ep, position: p) }
                }
            }
        }
        return results.map { $0! }
    }

    func assemble(_ samples: [(String, Sample)]) throws -> NeCoBatch {
        let b = samples.count, nG = crops.globalCrops, nL = crops.localCrops, nC = crops.crops
        let sg = 3 * crops.globalSize * crops.globalSize, sl = 3 * crops.localSize * crops.localSize
        var globals = try Memory.zeros(nG * b * sg, of: Float.self, "the batch's global crops")
        var locals = try Memory.zeros(nL * b * sl, of: Float.self, "the batch's local crops")
        var anchor: [Float] = [], partner: [Float] = []
        anchor.reserveCapacity(b * nG * nC * 4)
        partner.reserveCapacity(b * nG * nC * 4)
        for (i, (_, s)) in samples.enumerated() {
            for c in 0..<nC {
                if c < nG {
                    globals.replaceSubrange(((c * b + i) * sg)..<((c * b + i + 1) * sg), with: s.pixels[c])
                } else {
                    let l = c - nG
                    locals.replaceSubrange(((l * b + i) * sl)..<((l * b + i + 1) * sl), with: s.pixels[c])
                }
            }
            anchor += s.anchor
            partner += s.partner
        }
        return NeCoBatch(batch: b, globals: globals, locals: locals,
                         boxes: NeCoBoxes(batch: b, globalCrops: nG, crops: nC, anchor: anchor, partner: partner),
                         paths: samples.map { $0.0 }, crops: samples.map { $0.1.crops })
    }
}
