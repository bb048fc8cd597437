import NecoCore
import NecoImage

/// A dense class map: one UInt8 class per pixel, 255 = ignore ("void", VOC's boundary value).
///
/// Stored as (H, W) row-major; the value at row y, column x is `labels[y * width + x]`.
public struct LabelMap: Sendable, Equatable {
    public static let ignore: UInt8 = 255

    public let width: Int
    public let height: Int
    /// (H, W) class per pixel.
    public var labels: [UInt8]

    /// - Throws: `.shape` when `labels.count != width * height` or a side is below 1.
    public init(width: Int, height: Int, labels: [UInt8]) throws {
        guard width >= 1, height >= 1 else { throw NecoError.shape("label map size \(width)×\(height) is empty") }
        guard labels.count == width * height else {
            throw NecoError.shape("label map \(width)×\(height) needs \(width * height) values, got \(labels.count)")
        }
        self.width = width
        self.height = height
        self.labels = labels
    }

    /// A label map stored as a grayscale PNG (class index = gray level), as decoded by
    /// `ImageDecoder` (gray expanded to R = G = B).
    ///
    /// - Throws: `.format` when the picture is not gray (for example a VOC palette PNG, which the
    ///   decoder expands to colours: convert it to class indices first).
    public init(grayImage img: RGBImage, name: String = "label map") throws {
        var out = [UInt8](repeating: 0, count: img.width * img.height)
        try img.pixels.withUnsafeBufferPointer { px in
            for i in 0..<out.count {
                let r = px[i * 3], g = px[i * 3 + 1], b = px[i * 3 + 2]
                guard r == g, g == b else {
                    throw NecoError.format("\(name): not a grayscale class-index PNG (pixel \(i % img.width),\(i / img.width) is RGB \(r),\(g),\(b))")
                }
                out[i] = r
            }
        }
        try self.init(width: img.width, height: img.height, labels: out)
    }

    /// Loads a grayscale class-index PNG.
    public static func load(path: String) throws -> LabelMap {
        try LabelMap(grayImage: ImageDecoder.load(path: path), name: path)
    }

    /// Checks that every value is a class below `classes` or the ignore label.
    public func validate(classes: Int, name: String = "label map") throws {
        for (i, v) in labels.enumerated() where v != LabelMap.ignore && Int(v) >= classes {
            throw NecoError.format("\(name): pixel \(i % width),\(i / width) has class \(v); the benchmark has \(classes) classes (0...\(classes - 1), 255 = ignore)")
        }
    }

    /// Nearest-neighbour resize.
    /// - `.pil`: Pillow `Image.resize(..., NEAREST)` / torchvision `Resize(interpolation=NEAREST)`
    ///   on a PIL mask: `src = floor((dst + 0.5) · in / out)`.
    /// - `.torch`: `torch.nn.functional.interpolate(mode="nearest")`: `src = floor(dst · in / out)`.
    public func resizedNearest(width ow: Int, height oh: Int, rule: NearestRule = .pil) -> LabelMap {
        if ow == width && oh == height { return self }
        let xs = NearestRule.indices(rule, inSize: width, outSize: ow)
        let ys = NearestRule.indices(rule, inSize: height, outSize: oh)
        var out = [UInt8](repeating: 0, count: ow * oh)
        for y in 0..<oh {
            let row = ys[y] * width
            for x in 0..<ow { out[y * ow + x] = labels[row + xs[x]] }
        }
        // Sizes are positive and the count matches, so this cannot fail.
        return (try? LabelMap(width: ow, height: oh, labels: out)) ?? self
    }

    /// Soft patch labels of the Hummingbird memory (§6.1): the map is cut into a grid of
    /// `patch × patch` cells and each cell gets the fraction of its pixels in each class. The
    /// ignore label counts as class 0 (hbird maps 255 → 0 in the memory; P22).
    ///
    /// - Returns: (h·w, C) with h = H / patch, w = W / patch, rows summing to 1.
    /// - Throws: `.shape` when a side is not a multiple of `patch`; `.format` for a class ≥ C.
    public func patchFractions(patch: Int, classes: Int) throws -> [Float] {
        guard patch >= 1, width % patch == 0, height % patch == 0 else {
            throw NecoError.shape("label map \(width)×\(height) is not a whole number of \(patch)-pixel patches")
        }
        let gh = height / patch, gw = width / patch
        var out = [Float](repeating: 0, count: gh * gw * classes)
        let inv = 1 / Float(patch * patch)
        for y in 0..<height {
            for x in 0..<width {
                var c = Int(labels[y * width + x])
                if c == Int(LabelMap.ignore) { c = 0 }
                guard c < classes else {
                    throw NecoError.format("label map pixel \(x),\(y) has class \(c) ≥ \(classes)")
                }
                out[((y / patch) * gw + x / patch) * classes + c] += inv
            }
        }
        return out
    }

    /// The majority class of each `patch × patch` cell (ignore pixels skipped; a cell of only
    /// ignore pixels gets 255; ties go to the lower class).
    public func patchMajority(patch: Int, classes: Int) throws -> [UInt8] {
        guard patch >= 1, width % patch == 0, height % patch == 0 else {
            throw NecoError.shape("label map \(width)×\(height) is not a whole number of \(patch)-pixel patches")
        }
        let gh = height / patch, gw = width / patch
        var hist = [Int](repeating: 0, count: gh * gw * classes)
        for y in 0..<height {
            for x in 0..<width {
                let c = Int(labels[y * width + x])
                if c == Int(LabelMap.ignore) { continue }
                guard c < classes else { throw NecoError.format("label map pixel \(x),\(y) has class \(c) ≥ \(classes)") }
                hist[((y / patch) * gw + x / patch) * classes + c] += 1
            }
        }
        return (0..<(gh * gw)).map { cell in
            var best = -1, bestN = 0
            for c in 0..<classes where hist[cell * classes + c] > bestN { best = c; bestN = hist[cell * classes + c] }
            return best < 0 ? LabelMap.ignore : UInt8(best)
        }
    }
}

/// Source-index rule of nearest-neighbour resampling.
public enum NearestRule: Sendable {
    /// Pillow NEAREST: `floor((dst + 0.5) · in / out)`.
    case pil
    /// PyTorch `interpolate(mode="nearest")`: `floor(dst · in / out)`.
    case torch

    static func indices(_ rule: NearestRule, inSize: Int, outSize: Int) -> [Int] {
        let scale = Double(inSize) / Double(outSize)
        return (0..<outSize).map { o in
            let s = rule == .pil ? (Double(o) + 0.5) * scale : Double(o) * scale
            return min(max(Int(s.rounded(.down)), 0), inSize - 1)
        }
    }

    /// Nearest resize of an (h, w) map of Int32 labels to (oh, ow).
    public static func resize(_ src: [Int32], height h: Int, width w: Int, outHeight oh: Int, outWidth ow: Int,
                              rule: NearestRule) -> [Int32] {
        precondition(src.count == h * w, "NearestRule.resize: \(src.count) values for \(h)×\(w)")
        let xs = indices(rule, inSize: w, outSize: ow), ys = indices(rule, inSize: h, outSize: oh)
        var out = [Int32](repeating: 0, count: oh * ow)
        for y in 0..<oh { for x in 0..<ow { out[y * ow + x] = src[ys[y] * w + xs[x]] } }
        return out
    }
}

/// Bilinear resampling with half-pixel centres (`align_corners=False`, no antialias), as
/// `torch.nn.functional.interpolate(mode="bilinear")`, for (h, w, C) score maps, plus its
/// transpose (the backward of the upsampling, used by the linear probe).
///
/// Per axis, output o reads inputs i0 = ⌊u⌋ and i1 = min(i0 + 1, n − 1) with
/// `u = max((o + 0.5) · n / m − 0.5, 0)` and weights (1 − (u − i0), u − i0).
public struct BilinearPlan: Sendable {
    public let inHeight: Int, inWidth: Int, outHeight: Int, outWidth: Int
    let y0: [Int], y1: [Int], wy: [Float]
    let x0: [Int], x1: [Int], wx: [Float]

    public init(inHeight: Int, inWidth: Int, outHeight: Int, outWidth: Int) {
        precondition(inHeight >= 1 && inWidth >= 1 && outHeight >= 1 && outWidth >= 1, "BilinearPlan: empty size")
        self.inHeight = inHeight; self.inWidth = inWidth; self.outHeight = outHeight; self.outWidth = outWidth
        func axis(_ n: Int, _ m: Int) -> ([Int], [Int], [Float]) {
            let scale = Float(n) / Float(m)
            var a = [Int](), b = [Int](), w = [Float]()
            for o in 0..<m {
                let u = max((Float(o) + 0.5) * scale - 0.5, 0)
                let i0 = min(Int(u), n - 1)
                a.append(i0); b.append(min(i0 + 1, n - 1)); w.append(u - Float(i0))
            }
            return (a, b, w)
        }
        (y0, y1, wy) = axis(inHeight, outHeight)
        (x0, x1, wx) = axis(inWidth, outWidth)
    }

    /// out (oh, ow, C) = upsample(src (h, w, C)).
    public func forward(out: UnsafeMutablePointer<Float>, src: UnsafePointer<Float>, channels c: Int) {
        for oy in 0..<outHeight {
            let ra = y0[oy] * inWidth, rb = y1[oy] * inWidth, ly = wy[oy]
            for ox in 0..<outWidth {
                let lx = wx[ox]
                let w00 = (1 - ly) * (1 - lx), w01 = (1 - ly) * lx, w10 = ly * (1 - lx), w11 = ly * lx
                let a = src + (ra + x0[ox]) * c, b = src + (ra + x1[ox]) * c
                let d = src + (rb + x0[ox]) * c, e = src + (rb + x1[ox]) * c
                let o = out + (oy * outWidth + ox) * c
                for j in 0..<c { o[j] = w00 * a[j] + w01 * b[j] + w10 * d[j] + w11 * e[j] }
            }
        }
    }

    /// grad (h, w, C) += upsampleᵀ(gradOut (oh, ow, C)): the backward of `forward`, accumulating.
    public func backward(grad: UnsafeMutablePointer<Float>, gradOut: UnsafePointer<Float>, channels c: Int) {
        for oy in 0..<outHeight {
            let ra = y0[oy] * inWidth, rb = y1[oy] * inWidth, ly = wy[oy]
            for ox in 0..<outWidth {
                let lx = wx[ox]
                let w00 = (1 - ly) * (1 - lx), w01 = (1 - ly) * lx, w10 = ly * (1 - lx), w11 = ly * lx
                let a = grad + (ra + x0[ox]) * c, b = grad + (ra + x1[ox]) * c
                let d = grad + (rb + x0[ox]) * c, e = grad + (rb + x1[ox]) * c
                let g = gradOut + (oy * outWidth + ox) * c
                for j in 0..<c {
                    let v = g[j]
                    a[j] += w00 * v; b[j] += w01 * v; d[j] += w10 * v; e[j] += w11 * v
                }
            }
        }
    }

    /// Upsamples (h, w, C) scores and takes the per-pixel arg-max (the first maximum on ties, as
    /// `torch.argmax`), without keeping the upsampled map: (oh, ow) labels.
    public func argmax(_ scores: [Float], channels c: Int) -> [Int32] {
        precondition(scores.count == inHeight * inWidth * c, "BilinearPlan.argmax: \(scores.count) scores for \(inHeight)×\(inWidth)×\(c)")
        var out = [Int32](repeating: 0, count: outHeight * outWidth)
        var pix = [Float](repeating: 0, count: c)
        scores.withUnsafeBufferPointer { sp in
            let src = sp.baseAddress!
            for oy in 0..<outHeight {
                let ra = y0[oy] * inWidth, rb = y1[oy] * inWidth, ly = wy[oy]
                for ox in 0..<outWidth {
                    let lx = wx[ox]
                    let w00 = (1 - ly) * (1 - lx), w01 = (1 - ly) * lx, w10 = ly * (1 - lx), w11 = ly * lx
                    let a = src + (ra + x0[ox]) * c, b = src + (ra + x1[ox]) * c
                    let d = src + (rb + x0[ox]) * c, e = src + (rb + x1[ox]) * c
                    var best = 0
                    for j in 0..<c {
                        pix[j] = w00 * a[j] + w01 * b[j] + w10 * d[j] + w11 * e[j]
                        if pix[j] > pix[best] { best = j }
                    }
                    out[oy * outWidth + ox] = Int32(best)
                }
            }
        }
        return out
    }
}
