import NecoCore
import NecoImage
import NecoModel

#if canImport(Glibc)
import Glibc
#endif

/// Dense features of a batch of images (NECO-SPEC §7).
///
/// Letters: B images, h×w patch grid, D embed dim, R registers.
public struct DenseFeatures: Sendable {
    public let batch: Int
    public let gridHeight: Int
    public let gridWidth: Int
    public let dim: Int
    public let registers: Int
    /// Model input size in pixels.
    public let inputHeight: Int
    public let inputWidth: Int
    /// (B, h, w, D) final-LayerNorm patch tokens (L2-normalised per patch if asked).
    public var patches: [Float]
    /// (B, D) CLS token after the final norm.
    public var cls: [Float]
    /// (B, R, D) register tokens after the final norm.
    public var registerTokens: [Float]
    /// (B, H, W, D) patch features upsampled to the input's pixel grid (bilinear, half-pixel
    /// centres), when `ExtractOptions.upsampleToPixels` is set; empty otherwise.
    public var pixels: [Float] = []

    public var patchesPerImage: Int { gridHeight * gridWidth }

    /// Patch features of image `b`, (h·w, D).
    public func patches(of b: Int) -> ArraySlice<Float> {
        let n = patchesPerImage * dim
        return patches[(b * n)..<((b + 1) * n)]
    }
}

/// Options for `FeatureExtractor.extract`.
public struct ExtractOptions: Sendable {
    /// How decoded pictures become model input (ignored for tensor input).
    public var resize: ResizeMode = .stretch(height: 224, width: 224)
    /// L2-normalise every patch feature (`x / max(‖x‖, 1e-12)`).
    public var l2Normalize = false
    /// Also fill `DenseFeatures.pixels` with features upsampled to the model input's pixel grid
    /// (B·H·W·D floats: 77 MB per 224×224 image for D = 384).
    public var upsampleToPixels = false
    public init(resize: ResizeMode = .stretch(height: 224, width: 224), l2Normalize: Bool = false,
                upsampleToPixels: Bool = false) {
        self.resize = resize
        self.l2Normalize = l2Normalize
        self.upsampleToPixels = upsampleToPixels
    }
}

/// Loads a model once and turns images into dense features. Shareable across threads.
public final class FeatureExtractor: Sendable {
    public let model: ViTModel

    public init(model: ViTModel) { self.model = model }

    /// The largest magnitude of a normalised input value, 1e6: far beyond any pixel (0…255
    /// unnormalised, about ±3 normalised), far below where the forward overflows (about 1e19).
    public static let maxInputMagnitude: Float = 1e6

    /// Loads a safetensors checkpoint (any of the three naming schemes).
    public convenience init(path: String, options: LoadOptions = LoadOptions()) throws {
        self.init(model: try WeightLoader.load(path: path, options: options))
    }

    /// Features from normalised images (B, 3, H, W).
    ///
    /// Input range: every value must be finite and within ±`maxInputMagnitude` (normalised pixels
    /// lie within about ±3); anything else is refused before the forward with `.invalidArgument`
    /// naming the first bad value. Beyond about 1e19 the LayerNorm variance overflows and the
    /// features would silently be garbage; as a backstop, features that are not all finite are
    /// refused after the forward too. A call never returns NaN or infinite features.
    public func extract(tensor: UnsafePointer<Float>, batch: Int, height: Int, width: Int,
                        l2Normalize: Bool = false, upsampleToPixels: Bool = false) throws -> DenseFeatures {
        try model.validateInput(height: height, width: width)
        let c = model.config
        let t = model.tokenCount(height: height, width: width)
        let d = c.embedDim, r = c.registers
        let gh = height / c.patchSize, gw = width / c.patchSize, n = gh * gw
        // The outputs, checked before the forward's own buffers are.
        try Memory.reserve(bytes: [batch * t * d * 4, batch * n * d * 4, upsampleToPixels ? batch * height * width * d * 4 : 0],
                           "features of \(batch) image(s) at \(height)×\(width)")
        let inputCount = batch * c.inChannels * height * width
        if let i = Self.firstOutOfRange(tensor, inputCount) {
            let plane = height * width
            throw NecoError.invalidArgument("input value \(tensor[i]) at image \(i / (c.inChannels * plane)), channel "
                                            + "\(i / plane % c.inChannels), pixel \(i % plane / width), \(i % width) is not finite "
                                            + "or beyond ±1000000 (normalised pixels lie within about ±3)")
        }
        let tokens = try FloatSlab(count: batch * t * d)
        try model.forward(out: tokens.base, images: tensor, batch: batch, height: height, width: width)
        if let i = Self.firstNonFinite(tokens.base, batch * t * d) {
            throw NecoError.invalidArgument("the features of image \(i / (t * d)) are not finite (\(tokens.base[i])): its input "
                                            + "values are too large for the model (normalised pixels are usually within ±3)")
        }
        var patches = try Memory.zeros(batch * n * d, of: Float.self, "patch features")
        var cls = [Float](repeating: 0, count: batch * d)
        var regs = [Float](repeating: 0, count: batch * r * d)
        for b in 0..<batch {
            let row = tokens.base + b * t * d
            for i in 0..<d { cls[b * d + i] = row[i] }
            for i in 0..<(r * d) { regs[b * r * d + i] = row[d + i] }
            let src = row + (1 + r) * d
            for i in 0..<(n * d) { patches[b * n * d + i] = src[i] }
        }
        if l2Normalize { Normalize.l2Rows(&patches, dim: d) }
        var f = DenseFeatures(batch: batch, gridHeight: gh, gridWidth: gw, dim: d, registers: r,
                              inputHeight: height, inputWidth: width, patches: patches, cls: cls, registerTokens: regs)
        if upsampleToPixels {
            guard batch * height * width * d <= 1 << 31 else {
                throw NecoError(.outOfMemory, "upsampled features would need \(batch * height * width * d * 4) bytes")
            }
            try Memory.reserve(batch * height * width * d, of: Float.self, "upsampled features")
            f.pixels.reserveCapacity(batch * height * width * d)
            for b in 0..<batch {
                f.pixels += Normalize.upsampleBilinear(f.patches(of: b), height: gh, width: gw, dim: d,
                                                       outHeight: height, outWidth: width)
            }
        }
        return f
    }

    /// The index of the first value that is NaN, infinite or beyond ±`maxInputMagnitude`, or nil.
    static func firstOutOfRange(_ x: UnsafePointer<Float>, _ count: Int) -> Int? {
        let limit = maxInputMagnitude
        var start = 0
        while start < count {
            let end = min(count, start + 4096)
            var worst: Float = 0
            for i in start..<end { worst = max(worst, abs(x[i])) }   // NaN never wins max: checked below
            var bad = !(worst <= limit)
            if !bad { var acc: Float = 0; for i in start..<end { acc += x[i] * 0 }; bad = !acc.isFinite }
            if bad {
                for i in start..<end where !(abs(x[i]) <= limit) { return i }
            }
            start = end
        }
        return nil
    }

    /// The index of the first NaN or infinity among `count` values, or nil.
    static func firstNonFinite(_ x: UnsafePointer<Float>, _ count: Int) -> Int? {
        // Block-wise and vectorisable: x·0 is 0 for a finite x and NaN for NaN or ±∞.
        var start = 0
        while start < count {
            let end = min(count, start + 4096)
            var acc: Float = 0
            for i in start..<end { acc += x[i] * 0 }
            if !acc.isFinite {
                for i in start..<end where !x[i].isFinite { return i }
            }
            start = end
        }
        return nil
    }

    /// Features of decoded pictures, preprocessed with `options.resize`. All pictures must come
    /// out at the same size (any fixed-size mode guarantees it).
    public func extract(images: [RGBImage], options: ExtractOptions = ExtractOptions()) throws -> DenseFeatures {
        guard !images.isEmpty else { throw NecoError.invalidArgument("no images given") }
        var data: [Float] = []
        var size: (Int, Int)? = nil
        for (i, img) in images.enumerated() {
            let t = try Preprocess.tensor(img, mode: options.resize)
            if let s = size, s != (t.height, t.width) {
                throw NecoError.shape("image \(i) preprocesses to \(t.height)×\(t.width), image 0 to \(s.0)×\(s.1); use a fixed-size resize mode to batch them")
            }
            size = (t.height, t.width)
            data.append(contentsOf: t.data)
        }
        let (h, w) = size!
        try model.validateInput(height: h, width: w)
        return try data.withUnsafeBufferPointer {
            try extract(tensor: $0.baseAddress!, batch: images.count, height: h, width: w, l2Normalize: options.l2Normalize,
                        upsampleToPixels: options.upsampleToPixels)
        }
    }

    /// Decodes and extracts one file.
    public func extract(path: String, options: ExtractOptions = ExtractOptions()) throws -> DenseFeatures {
        try extract(images: [ImageDecoder.load(path: path)], options: options)
    }
}

/// Row-wise L2 normalisation and bilinear upsampling of feature maps.
public enum Normalize {
    /// x[r, :] /= max(‖x[r, :]‖₂, 1e-12) for every row of width `dim`.
    public static func l2Rows(_ x: inout [Float], dim: Int) {
        x.withUnsafeMutableBufferPointer { buf in
            let rows = buf.count / dim
            for r in 0..<rows {
                let p = buf.baseAddress! + r * dim
                var s: Float = 0
                for i in 0..<dim { s += p[i] * p[i] }
                let inv = 1 / max(s.squareRoot(), 1e-12)
                for i in 0..<dim { p[i] *= inv }
            }
        }
    }

    /// Bilinear upsampling with half-pixel centres (`align_corners=False`, no antialias), as
    /// `torch.nn.functional.interpolate(mode="bilinear")`: (h, w, D) → (H, W, D).
    public static func upsampleBilinear(_ src: ArraySlice<Float>, height h: Int, width w: Int, dim d: Int,
                                        outHeight oh: Int, outWidth ow: Int) -> [Float] {
        var out = [Float](repeating: 0, count: oh * ow * d)
        let base = src.startIndex
        func coord(_ o: Int, _ inSize: Int, _ outSize: Int) -> (Int, Int, Float) {
            let scale = Float(inSize) / Float(outSize)
            let u = max((Float(o) + 0.5) * scale - 0.5, 0)
            let i0 = min(Int(u), inSize - 1)
            let i1 = min(i0 + 1, inSize - 1)
            return (i0, i1, u - Float(i0))
        }
        let xs = (0..<ow).map { coord($0, w, ow) }
        src.withUnsafeBufferPointer { sp in
            out.withUnsafeMutableBufferPointer { op in
                let s = sp.baseAddress!
                for oy in 0..<oh {
                    let (y0, y1, ly) = coord(oy, h, oh)
                    for ox in 0..<ow {
                        let (x0, x1, lx) = xs[ox]
                        let a = s + (y0 * w + x0) * d, b = s + (y0 * w + x1) * d
                        let c = s + (y1 * w + x0) * d, e = s + (y1 * w + x1) * d
                        let o = op.baseAddress! + (oy * ow + ox) * d
                        let w00 = (1 - ly) * (1 - lx), w01 = (1 - ly) * lx, w10 = ly * (1 - lx), w11 = ly * lx
                        for i in 0..<d { o[i] = w00 * a[i] + w01 * b[i] + w10 * c[i] + w11 * e[i] }
                    }
                }
            }
        }
        _ = base
        return out
    }
}

/// Where the setup step puts the embedded default model.
public enum DefaultModel {
    /// `$NECO_MODEL`, else `$NECO_CACHE/models/dinov2_vits14_imgfocus.safetensors`
    /// (`$NECO_CACHE` defaults to `~/.cache/neco`).
    public static var path: String {
        if let m = getenv("NECO_MODEL"), m.pointee != 0 { return String(cString: m) }
        return cacheDirectory + "/models/dinov2_vits14_imgfocus.safetensors"
    }
    public static var cacheDirectory: String {
        if let c = getenv("NECO_CACHE"), c.pointee != 0 { return String(cString: c) }
        let home = getenv("HOME").map { String(cString: $0) } ?? "."
        return home + "/.cache/neco"
    }
    public static var photosDirectory: String { cacheDirectory + "/photos" }

    /// Loads the default model with a clear message if the setup step has not run.
    public static func load(options: LoadOptions = LoadOptions()) throws -> ViTModel {
        let p = path
        guard FileIO.exists(p) else {
            throw NecoError.io("default model not found at \(p): run scripts/setup.sh (or set NECO_MODEL)")
        }
        return try WeightLoader.load(path: p, options: options)
    }
}

/// Caller-owned outputs of `FeatureExtractor.extract(tensor:batch:height:width:outputSize:l2Normalize:into:)`;
/// a nil buffer skips that output. Each must hold at least batch × its per-image count.
public struct FeatureBuffers {
    /// (B, outH·outW, D) patch features, rows in raster order.
    public var patches: UnsafeMutableBufferPointer<Float>?
    /// (B, D) CLS tokens.
    public var cls: UnsafeMutableBufferPointer<Float>?
    /// (B, R, D) register tokens (nothing is written when R = 0).
    public var registers: UnsafeMutableBufferPointer<Float>?

    public init(patches: UnsafeMutableBufferPointer<Float>? = nil, cls: UnsafeMutableBufferPointer<Float>? = nil,
                registers: UnsafeMutableBufferPointer<Float>? = nil) {
        self.patches = patches
        self.cls = cls
        self.registers = registers
    }
}

extension FeatureExtractor {
    /// Features of normalised images (B, 3, H, W) written into caller buffers, with the patch map
    /// at any output size: `outputSize` nil keeps one feature per patch (h × w); otherwise the
    /// (h, w, D) map of each image is upsampled bilinearly with half-pixel centres
    /// (`Normalize.upsampleBilinear`, as PyTorch's `interpolate(align_corners=False)`) to
    /// outH × outW. With `l2Normalize` every patch feature is divided by max(‖x‖₂, 1e-12) after
    /// any upsampling; CLS and registers are never normalised. The C ABI's extraction calls this.
    ///
    /// - Throws: `.shape` for an input the model cannot take or a buffer that is too small;
    ///   `.invalidArgument` for a non-positive batch or output size.
    public func extract(tensor: UnsafePointer<Float>, batch: Int, height: Int, width: Int,
                        outputSize: (height: Int, width: Int)? = nil, l2Normalize: Bool = false,
                        into out: FeatureBuffers) throws {
        guard batch >= 1 else { throw NecoError.invalidArgument("batch = \(batch) must be ≥ 1") }
        try model.validateInput(height: height, width: width)
        let c = model.config
        let gh = height / c.patchSize, gw = width / c.patchSize, d = c.embedDim, r = c.registers
        let (oh, ow) = outputSize ?? (gh, gw)
        guard oh >= 1, ow >= 1 else { throw NecoError.invalidArgument("output size \(oh)×\(ow) must be at least 1×1") }
        let upsample = outputSize != nil
        let patchesPerImage = oh * ow * d
        func need(_ b: UnsafeMutableBufferPointer<Float>?, _ perImage: Int, _ name: String) throws {
            guard let b else { return }
            let (n, o) = batch.multipliedReportingOverflow(by: perImage)
            guard !o, b.count >= n else {
                throw NecoError.shape("the \(name) buffer holds \(b.count) floats, need \(batch) × \(perImage)")
            }
        }
        try need(out.patches, patchesPerImage, "patches")
        try need(out.cls, d, "cls")
        try need(out.registers, r * d, "registers")

        let f = try extract(tensor: tensor, batch: batch, height: height, width: width, l2Normalize: l2Normalize && !upsample)
        if let cls = out.cls, let base = cls.baseAddress { f.cls.withUnsafeBufferPointer { base.update(from: $0.baseAddress!, count: $0.count) } }
        if let regs = out.registers, let base = regs.baseAddress, r > 0 {
            f.registerTokens.withUnsafeBufferPointer { base.update(from: $0.baseAddress!, count: $0.count) }
        }
        guard let patches = out.patches?.baseAddress else { return }
        if !upsample {
            f.patches.withUnsafeBufferPointer { patches.update(from: $0.baseAddress!, count: $0.count) }
            return
        }
        try Memory.reserve(patchesPerImage, of: Float.self, "upsampled features (\(oh)×\(ow)×\(d))")
        for b in 0..<batch {
            var up = Normalize.upsampleBilinear(f.patches(of: b), height: gh, width: gw, dim: d, outHeight: oh, outWidth: ow)
            if l2Normalize { Normalize.l2Rows(&up, dim: d) }
            up.withUnsafeBufferPointer { (patches + b * patchesPerImage).update(from: $0.baseAddress!, count: patchesPerImage) }
        }
    }
}
