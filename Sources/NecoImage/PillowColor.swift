import NecoCore
#if canImport(Glibc)
import Glibc
#endif

// Pillow's colour and blur operations on 8-bit RGB, re-implemented with Pillow's integer and
// float arithmetic (src/libImaging/Blend.c, Convert.c, BoxBlur.c, PIL/ImageEnhance.py,
// torchvision/transforms/_functional_pil.py). NeCo's crop augmentation (NecoTrain `Photometric`)
// and Hummingbird's memory augmentation (NecoEval `MemoryAugmentation`) both use them.

/// torchvision's functional colour operations on PIL images, and PIL's Gaussian blur.
public enum PillowColor {
    // MARK: Pillow primitives

    /// ITU-R 601 luma with Pillow's fixed point: `(19595 R + 38470 G + 7471 B + 0x8000) >> 16`.
    @inlinable
    public static func luma(_ r: UInt8, _ g: UInt8, _ b: UInt8) -> UInt8 {
        let r32 = Int(r) * 19595, g32 = Int(g) * 38470, b32 = Int(b) * 7471
        return UInt8((r32 + g32 + b32 + 0x8000) >> 16)
    }

    /// `Image.blend(degenerate, image, alpha)` for one value (Blend.c): float arithmetic,
    /// truncation inside [0, 1], clipping when extrapolating.
    @inlinable
    static func blend(_ in1: UInt8, _ in2: UInt8, _ alpha: Float) -> UInt8 {
        let v = Float(Int(in1)) + alpha * Float(Int(in2) - Int(in1))
        if alpha >= 0 && alpha <= 1 { return UInt8(v) }
        if v <= 0 { return 0 }
        if v >= 255 { return 255 }
        return UInt8(v)
    }

    /// Blend every value of `img` with the degenerate value `degenerate(i)` (index i of the pixel).
    static func blendImage(_ img: RGBImage, _ factor: Double, degenerate: (Int, Int) -> UInt8) -> RGBImage {
        let alpha = Float(factor)
        if alpha == 1 { return img }
        var out = img.pixels
        let n = img.width * img.height
        out.withUnsafeMutableBufferPointer { o in
            img.pixels.withUnsafeBufferPointer { p in
                for i in 0..<n {
                    for c in 0..<3 { o[i * 3 + c] = blend(degenerate(i, c), p[i * 3 + c], alpha) }
                }
            }
        }
        return RGBImage(width: img.width, height: img.height, pixels: out)
    }

    /// torchvision `adjust_brightness` (PIL `ImageEnhance.Brightness`): blend with black.
    public static func adjustBrightness(_ img: RGBImage, factor: Double) -> RGBImage {
        blendImage(img, factor) { _, _ in 0 }
    }

    /// torchvision `adjust_contrast` (PIL `ImageEnhance.Contrast`): blend with the mean grey level
    /// `int(mean(L) + 0.5)` of the luma image.
    public static func adjustContrast(_ img: RGBImage, factor: Double) -> RGBImage {
        let n = img.width * img.height
        var sum = 0
        img.pixels.withUnsafeBufferPointer { p in
            for i in 0..<n { sum += Int(luma(p[i * 3], p[i * 3 + 1], p[i * 3 + 2])) }
        }
        let mean = UInt8(Int(Double(sum) / Double(n) + 0.5))
        return blendImage(img, factor) { _, _ in mean }
    }

    /// torchvision `adjust_saturation` (PIL `ImageEnhance.Color`): blend with the luma image.
    public static func adjustSaturation(_ img: RGBImage, factor: Double) -> RGBImage {
        let gray = img.pixels.withUnsafeBufferPointer { p in
            (0..<(img.width * img.height)).map { luma(p[$0 * 3], p[$0 * 3 + 1], p[$0 * 3 + 2]) }
        }
        return blendImage(img, factor) { i, _ in gray[i] }
    }

    /// PIL's RGB → HSV (Convert.c `rgb2hsv_row`), H, S, V in 0...255.
    static func rgbToHSV(_ r: UInt8, _ g: UInt8, _ b: UInt8) -> (UInt8, UInt8, UInt8) {
        let maxc = max(r, g, b), minc = min(r, g, b)
        if minc == maxc { return (0, 0, maxc) }
        let cr = Float(Int(maxc) - Int(minc))
        let s = cr / Float(maxc)
        let rc = Float(Int(maxc) - Int(r)) / cr
        let gc = Float(Int(maxc) - Int(g)) / cr
        let bc = Float(Int(maxc) - Int(b)) / cr
        var h: Float
        if r == maxc {
            h = bc - gc
        } else if g == maxc {
            h = Float(2.0 + Double(rc) - Double(bc))
        } else {
            h = Float(4.0 + Double(gc) - Double(rc))
        }
        h = Float(fmod(Double(h) / 6.0 + 1.0, 1.0))
        let uh = UInt8(clamping: Int(Double(h) * 255.0))
        let us = UInt8(clamping: Int(Double(s) * 255.0))
        return (uh, us, maxc)
    }

    /// PIL's HSV → RGB (Convert.c `hsv2rgb`).
    static func hsvToRGB(_ h: UInt8, _ s: UInt8, _ v: UInt8) -> (UInt8, UInt8, UInt8) {
        if s == 0 { return (v, v, v) }
        let hh = Double(Float(h)) * 6.0 / 255.0
        let i = Int(floor(hh))
        let f = Float(hh - Double(Float(i)))
        let fs = Float(Double(Float(s)) / 255.0)
        let vd = Double(Float(v))
        let p = UInt8(clamping: Int((vd * (1.0 - Double(fs))).rounded(.toNearestOrAwayFromZero)))
        let q = UInt8(clamping: Int((vd * (1.0 - Double(fs * f))).rounded(.toNearestOrAwayFromZero)))
        let t = UInt8(clamping: Int((vd * (1.0 - Double(fs) * (1.0 - Double(f)))).rounded(.toNearestOrAwayFromZero)))
        switch i % 6 {
        case 0: return (v, t, p)
        case 1: return (q, v, p)
        case 2: return (p, v, t)
        case 3: return (p, q, v)
        case 4: return (t, p, v)
        default: return (v, p, q)
        }
    }

    /// torchvision `adjust_hue` on PIL: RGB → HSV, `H += uint8(int32(hue·255))` (wrapping),
    /// HSV → RGB. - Precondition: hue in [−0.5, 0.5].
    public static func adjustHue(_ img: RGBImage, factor hue: Double) -> RGBImage {
        precondition(hue >= -0.5 && hue <= 0.5, "adjustHue: factor \(hue) outside [-0.5, 0.5]")
        let shift = UInt8(truncatingIfNeeded: Int32(hue * 255))
        var out = img.pixels
        let n = img.width * img.height
        out.withUnsafeMutableBufferPointer { o in
            for i in 0..<n {
                let (h, s, v) = rgbToHSV(o[i * 3], o[i * 3 + 1], o[i * 3 + 2])
                let (r, g, b) = hsvToRGB(h &+ shift, s, v)
                o[i * 3] = r
                o[i * 3 + 1] = g
                o[i * 3 + 2] = b
            }
        }
        return RGBImage(width: img.width, height: img.height, pixels: out)
    }

    /// torchvision `rgb_to_grayscale(img, 3)` on PIL: the luma replicated to three channels.
    public static func grayscale(_ img: RGBImage) -> RGBImage {
        var out = img.pixels
        out.withUnsafeMutableBufferPointer { o in
            for i in 0..<(img.width * img.height) {
                let l = luma(o[i * 3], o[i * 3 + 1], o[i * 3 + 2])
                o[i * 3] = l
                o[i * 3 + 1] = l
                o[i * 3 + 2] = l
            }
        }
        return RGBImage(width: img.width, height: img.height, pixels: out)
    }

    /// The extended-box radius of Pillow's Gaussian blur (BoxBlur.c `_gaussian_blur_radius`,
    /// Gwosdek et al. 2011), float32 with C's double intermediates.
    static func boxRadius(_ radius: Float, passes: Int) -> Float {
        let sigma2 = radius * radius / Float(passes)
        let bigL = Float((12.0 * Double(sigma2) + 1.0).squareRoot())
        let l = Float(floor((Double(bigL) - 1.0) / 2.0))
        var a = (2 * l + 1) * (l * (l + 1) - 3 * sigma2)
        a /= 6 * (sigma2 - (l + 1) * (l + 1))
        return l + a
    }

    /// One box-blur pass over a line of `w` values read with stride `step`, written contiguously
    /// to `out` (BoxBlur.c `ImagingLineBoxBlur8`: 8.24 fixed point, edge pixels repeated).
    static func boxBlurLine(_ out: UnsafeMutablePointer<UInt8>, _ input: UnsafePointer<UInt8>, count w: Int, step: Int,
                            radius: Int, ww: UInt32, fw: UInt32) {
        let last = w - 1
        let edgeA = min(radius + 1, w), edgeB = max(w - radius - 1, 0)
        @inline(__always) func px(_ i: Int) -> UInt32 { UInt32(input[i * step]) }
        var acc = px(0) &* UInt32(radius + 1)
        var x = 0
        while x < edgeA - 1 {
            acc &+= px(x)
            x += 1
        }
        acc &+= px(last) &* UInt32(truncatingIfNeeded: radius - edgeA + 1)
        @inline(__always) func save(_ x: Int, _ sub: Int, _ add: Int, _ left: Int, _ right: Int) {
            acc = acc &+ px(add) &- px(sub)
            let bulk = acc &* ww &+ (px(left) &+ px(right)) &* fw
            out[x] = UInt8(truncatingIfNeeded: (bulk &+ (1 << 23)) >> 24)
        }
        if edgeA <= edgeB {
            for x in 0..<edgeA { save(x, 0, x + radius, 0, x + radius + 1) }
            for x in edgeA..<edgeB { save(x, x - radius - 1, x + radius, x - radius - 1, x + radius + 1) }
            for x in edgeB..<w { save(x, x - radius - 1, last, x - radius - 1, last) }
        } else {
            for x in 0..<edgeB { save(x, 0, x + radius, 0, x + radius + 1) }
            for x in edgeB..<edgeA { save(x, 0, last, 0, last) }
            for x in edgeA..<w { save(x, x - radius - 1, last, x - radius - 1, last) }
        }
    }

    /// PIL `ImageFilter.GaussianBlur(radius)`: three box-blur passes along x, then three along y,
    /// with the extended box radius above (BoxBlur.c `ImagingGaussianBlur`, passes = 3; the
    /// vertical passes run on the transposed image there, on columns here).
    public static func gaussianBlur(_ img: RGBImage, radius: Double) -> RGBImage {
        let r = boxRadius(Float(radius), passes: 3)
        if r == 0 { return img }
        let ir = Int(r)
        let ww = UInt32(Float(1 << 24) / (r * 2 + 1))
        let fw = (UInt32(1 << 24) &- UInt32(ir * 2 + 1) &* ww) / 2
        let w = img.width, h = img.height
        let horizontal = blurAxis(img.pixels, w: w, h: h, horizontal: true, ir: ir, ww: ww, fw: fw)
        return RGBImage(width: w, height: h, pixels: blurAxis(horizontal, w: w, h: h, horizontal: false, ir: ir, ww: ww, fw: fw))
    }

    /// Three passes of the line blur along one axis of an (H, W, 3) image.
    static func blurAxis(_ pixels: [UInt8], w: Int, h: Int, horizontal: Bool, ir: Int, ww: UInt32, fw: UInt32) -> [UInt8] {
        var a = pixels
        let count = horizontal ? w : h, lines = horizontal ? h : w
        let step = horizontal ? 3 : w * 3
        var line = [UInt8](repeating: 0, count: count)
        a.withUnsafeMutableBufferPointer { ap in
            line.withUnsafeMutableBufferPointer { lp in
                let p = ap.baseAddress!, l = lp.baseAddress!
                for _ in 0..<3 {
                    for k in 0..<lines {
                        for c in 0..<3 {
                            let start = p + (horizontal ? k * w * 3 : k * 3) + c
                            boxBlurLine(l, start, count: count, step: step, radius: ir, ww: ww, fw: fw)
                            for x in 0..<count { start[x * step] = l[x] }
                        }
                    }
                }
            }
        }
        return a
    }
}
