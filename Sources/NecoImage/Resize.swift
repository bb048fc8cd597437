// Pillow-compatible resampling: the same numbers as `Image.resize((w, h), Image.BILINEAR)`
// (Pillow's src/libImaging/Resample.c, 8-bit path), re-implemented here.
//
// Dimension letters: H, W input height/width; h, w output height/width; R rows of the
// intermediate image; K the maximum filter taps (ksize).

/// Resizing and cropping of ``RGBImage``.
public enum ImageResize {
    /// Resizes with Pillow's antialiased bilinear filter, bit-exact with
    /// `Image.resize((width, height), Image.BILINEAR)` of Pillow 13 (checked on 150+ random sizes).
    ///
    /// Concretely, per axis (input size `n`, output size `m`):
    /// ```
    /// scale   = n / m;  fs = max(scale, 1);  support = 1 · fs
    /// center  = (i + 0.5) · scale
    /// taps    = [int(center - support + 0.5) clamped ≥ 0,  int(center + support + 0.5) clamped ≤ n)
    /// w_j     = max(0, 1 - |(j - center + 0.5) / fs|),  normalised to sum 1
    /// k_j     = int(0.5 + w_j · 2^22)                     (PRECISION_BITS = 22)
    /// out_i   = clip8((2^21 + Σ_j k_j · in_j) >> 22)
    /// ```
    /// The two passes go through an 8-bit intermediate, so their order matters (by up to 1 level).
    /// Pillow 13 (PR #9549) runs the vertical pass first when the height shrinks by more than twice
    /// as many pixels as the width, `H - height > 2 · (W - width)` with `height < H`; otherwise the
    /// horizontal pass runs first, only over the input rows that the vertical pass reads
    /// (intermediate `(R, w, 3)`). Pillow ≤ 12 always ran horizontal first, so in the
    /// vertical-first cases it differs from this function (and from Pillow 13) by at most 1.
    /// An axis whose size does not change is not resampled; equal sizes return the input.
    ///
    /// - Parameters: `img` is `(H, W, 3)`; the result is `(height, width, 3)`.
    /// - Precondition: `width >= 1 && height >= 1` (validated by ``Preprocess`` before it calls).
    public static func resizeBilinearAntialias(_ img: RGBImage, width: Int, height: Int) -> RGBImage {
        precondition(width >= 1 && height >= 1, "resize: target \(width)x\(height) must be at least 1x1")
        let needHorizontal = width != img.width
        let needVertical = height != img.height
        if !needHorizontal && !needVertical { return img }

        if needHorizontal && height < img.height && img.height - height > 2 * (img.width - width) {
            // Vertical first: (H, W, 3) -> (h, W, 3) -> (h, w, 3).
            let vertical = _BilinearCoefficients(inSize: img.height, outSize: height)
            let horizontal = _BilinearCoefficients(inSize: img.width, outSize: width)
            let shorter = verticalPass(img.pixels, width: img.width, coefficients: vertical)
            let out = horizontalPass(shorter, inWidth: img.width, rows: 0..<height, coefficients: horizontal)
            return RGBImage(width: width, height: height, pixels: out)
        }
        var vertical = _BilinearCoefficients(inSize: img.height, outSize: height)
        var source = img.pixels          // (R, w or W, 3): rows the vertical pass reads
        var sourceWidth = img.width
        if needHorizontal {
            let horizontal = _BilinearCoefficients(inSize: img.width, outSize: width)
            let firstRow = vertical.first[0]
            let endRow = vertical.first[height - 1] + vertical.count[height - 1]
            for i in 0..<height { vertical.first[i] -= firstRow }
            source = horizontalPass(img.pixels, inWidth: img.width, rows: firstRow..<endRow,
                                    coefficients: horizontal)
            sourceWidth = width
        }
        if needVertical {
            source = verticalPass(source, width: sourceWidth, coefficients: vertical)
        }
        return RGBImage(width: width, height: height, pixels: source)
    }

    /// Cuts the centred `width × height` window, with torchvision's `CenterCrop` rounding:
    /// `top = int(round((H - height) / 2.0))`, `left = int(round((W - width) / 2.0))` where
    /// `round` is Python's (half to even).
    ///
    /// - Precondition: `1 <= width <= img.width` and `1 <= height <= img.height`.
    public static func centerCrop(_ img: RGBImage, width: Int, height: Int) -> RGBImage {
        precondition(width >= 1 && height >= 1 && width <= img.width && height <= img.height,
                     "centerCrop: \(width)x\(height) does not fit in \(img.width)x\(img.height)")
        let top = Int((Double(img.height - height) / 2.0).rounded(.toNearestOrEven))
        let left = Int((Double(img.width - width) / 2.0).rounded(.toNearestOrEven))
        return crop(img, x: left, y: top, width: width, height: height)
    }

    /// Copies the window with top-left corner `(x, y)` and size `width × height`.
    ///
    /// - Precondition: the window lies inside the image and is at least 1×1.
    public static func crop(_ img: RGBImage, x: Int, y: Int, width: Int, height: Int) -> RGBImage {
        precondition(width >= 1 && height >= 1 && x >= 0 && y >= 0
                     && x + width <= img.width && y + height <= img.height,
                     "crop: window (\(x), \(y), \(width)x\(height)) outside \(img.width)x\(img.height)")
        var out = [UInt8](repeating: 0, count: width * height * 3)
        img.pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for row in 0..<height {
                    let from = ((y + row) * img.width + x) * 3
                    let to = row * width * 3
                    for i in 0..<(width * 3) { dst[to + i] = src[from + i] }
                }
            }
        }
        return RGBImage(width: width, height: height, pixels: out)
    }

    // MARK: - Passes

    /// Resamples rows `rows` of `pixels` (`(H, W, 3)`, `W = inWidth`) along x.
    /// Returns `(R, w, 3)` with `R = rows.count`, `w = coefficients.outSize`.
    static func horizontalPass(_ pixels: [UInt8], inWidth: Int, rows: Range<Int>,
                               coefficients c: _BilinearCoefficients) -> [UInt8] {
        let outWidth = c.outSize, ksize = c.ksize
        var out = [UInt8](repeating: 0, count: rows.count * outWidth * 3)
        pixels.withUnsafeBufferPointer { srcBuffer in
        out.withUnsafeMutableBufferPointer { dstBuffer in
        c.first.withUnsafeBufferPointer { first in          // (w)
        c.count.withUnsafeBufferPointer { count in          // (w)
        c.weights.withUnsafeBufferPointer { kBuffer in      // (w, K)
            let src = srcBuffer.baseAddress!, dst = dstBuffer.baseAddress!, k = kBuffer.baseAddress!
            for (r, y) in rows.enumerated() {
                let srcRow = src + y * inWidth * 3
                let dstRow = dst + r * outWidth * 3
                for xx in 0..<outWidth {
                    var s0 = _resampleHalf, s1 = _resampleHalf, s2 = _resampleHalf
                    var p = srcRow + first[xx] * 3
                    let kx = k + xx * ksize
                    for t in 0..<count[xx] {
                        let w = Int(kx[t])
                        s0 += Int(p[0]) * w
                        s1 += Int(p[1]) * w
                        s2 += Int(p[2]) * w
                        p += 3
                    }
                    dstRow[xx * 3] = _clip8(s0)
                    dstRow[xx * 3 + 1] = _clip8(s1)
                    dstRow[xx * 3 + 2] = _clip8(s2)
                }
            }
        }
        }
        }
        }
        }
        return out
    }

    /// Resamples `pixels` (`(R, W, 3)`, `W = width`) along y. Returns `(h, W, 3)`.
    static func verticalPass(_ pixels: [UInt8], width: Int,
                             coefficients c: _BilinearCoefficients) -> [UInt8] {
        let outHeight = c.outSize, ksize = c.ksize, rowLength = width * 3
        var out = [UInt8](repeating: 0, count: outHeight * rowLength)
        var accumulator = [Int32](repeating: 0, count: rowLength)   // (W·3) one output row
        pixels.withUnsafeBufferPointer { srcBuffer in
        out.withUnsafeMutableBufferPointer { dstBuffer in
        accumulator.withUnsafeMutableBufferPointer { accBuffer in
        c.weights.withUnsafeBufferPointer { kBuffer in              // (h, K)
            let src = srcBuffer.baseAddress!, dst = dstBuffer.baseAddress!
            let acc = accBuffer.baseAddress!, k = kBuffer.baseAddress!
            for yy in 0..<outHeight {
                for i in 0..<rowLength { acc[i] = Int32(_resampleHalf) }
                let first = c.first[yy]
                for j in 0..<c.count[yy] {
                    // Sums stay below 2^31: weights sum to ~2^22 and pixels are at most 255.
                    let ky = k[yy * ksize + j]
                    let row = src + (first + j) * rowLength
                    for i in 0..<rowLength { acc[i] &+= Int32(row[i]) &* ky }
                }
                let to = dst + yy * rowLength
                for i in 0..<rowLength { to[i] = _clip8(Int(acc[i])) }
            }
        }
        }
        }
        }
        return out
    }
}

/// Fixed-point precision of Pillow's 8-bit resampler: 32 - 8 - 2 = 22 bits.
let _resamplePrecisionBits = 22
/// Rounding term added before the final shift: 2^21.
let _resampleHalf = 1 << (22 - 1)

/// `clip(v >> 22, 0, 255)`; equals Pillow's lookup-table `clip8`.
@inline(__always)
func _clip8(_ v: Int) -> UInt8 {
    let s = v >> _resamplePrecisionBits
    return s < 0 ? 0 : (s > 255 ? 255 : UInt8(truncatingIfNeeded: s))
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the bilinear (triangle) filter,
/// box `(0, inSize)`. Double arithmetic follows Resample.c operation for operation, so the
/// rounded integer weights are identical.
struct _BilinearCoefficients {
    let outSize: Int
    /// Maximum number of taps per output sample: `ceil(support) * 2 + 1`.
    let ksize: Int
    /// (outSize) first input index read by each output sample.
    var first: [Int]
    /// (outSize) number of input samples read.
    var count: [Int]
    /// (outSize, ksize) fixed-point weights, 2^22 = 1.0; unused taps are 0.
    var weights: [Int32]

    init(inSize: Int, outSize: Int) {
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1.0)
        let support = 1.0 * filterScale             // bilinear support 1.0
        let ksize = Int(support.rounded(.up)) * 2 + 1
        let invScale = 1.0 / filterScale
        self.outSize = outSize
        self.ksize = ksize
        first = [Int](repeating: 0, count: outSize)
        count = [Int](repeating: 0, count: outSize)
        weights = [Int32](repeating: 0, count: outSize * ksize)
        var w = [Double](repeating: 0, count: ksize)
        for xx in 0..<outSize {
            let center = 0.0 + (Double(xx) + 0.5) * scale
            var lo = Int(center - support + 0.5)      // C (int) cast: truncation toward zero
            if lo < 0 { lo = 0 }
            var hi = Int(center + support + 0.5)
            if hi > inSize { hi = inSize }
            let n = hi - lo
            var total = 0.0
            for x in 0..<n {
                let v = Self.triangle((Double(x + lo) - center + 0.5) * invScale)
                w[x] = v
                total += v
            }
            for x in 0..<n {
                let v = total != 0.0 ? w[x] / total : w[x]
                let fixed = v < 0 ? (-0.5 + v * Double(1 << _resamplePrecisionBits))
                                  : (0.5 + v * Double(1 << _resamplePrecisionBits))
                weights[xx * ksize + x] = Int32(fixed)
            }
            first[xx] = lo
            count[xx] = n
        }
    }

    /// Pillow's `bilinear_filter`: `1 - |x|` on (-1, 1), else 0.
    @inline(__always)
    static func triangle(_ x: Double) -> Double {
        let a = x < 0.0 ? -x : x
        return a < 1.0 ? 1.0 - a : 0.0
    }
}
