import NecoCore
import NecoImage

/// Pictures of the evaluations (written as PNG by `PNGWriter`): segmentation overlays and
/// nearest-patch retrieval panels. Everything works on `RGBImage` (H, W, 3).
public enum Pictures {
    /// The Pascal VOC colour map (bit-interleaved class index): 0 black, 1 maroon, 2 green, …;
    /// the ignore label 255 is shown white.
    public static func color(_ label: Int) -> (UInt8, UInt8, UInt8) {
        if label == 255 { return (255, 255, 255) }
        var r = 0, g = 0, b = 0, c = max(label, 0)
        for shift in stride(from: 7, through: 0, by: -1) {
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        }
        return (UInt8(r), UInt8(g), UInt8(b))
    }

    /// The picture tinted with class colours: each pixel of a class other than 0 (background)
    /// becomes (1 − α)·pixel + α·colour; ignore pixels are blended with white. `labels` is
    /// (H, W) at the picture's size.
    public static func overlay<L: Collection>(_ image: RGBImage, labels: L, alpha: Float = 0.6) -> RGBImage
    where L.Element: BinaryInteger {
        precondition(labels.count == image.width * image.height, "Pictures.overlay: label map size differs from the image")
        var out = image
        for (i, l) in labels.enumerated() {
            let c = Int(l)
            if c == 0 { continue }
            let (r, g, b) = color(c)
            let col = [r, g, b]
            for ch in 0..<3 {
                let v = (1 - alpha) * Float(image.pixels[i * 3 + ch]) + alpha * Float(col[ch])
                out.pixels[i * 3 + ch] = UInt8(min(max(v.rounded(), 0), 255))
            }
        }
        return out
    }

    /// Pictures side by side on a white background, `gap` pixels apart, top-aligned.
    public static func row(_ images: [RGBImage], gap: Int = 6) -> RGBImage {
        precondition(!images.isEmpty, "Pictures.row: no pictures")
        let w = images.reduce(0) { $0 + $1.width } + gap * (images.count - 1)
        let h = images.map(\.height).max()!
        var out = RGBImage(width: w, height: h, pixels: [UInt8](repeating: 255, count: w * h * 3))
        var x0 = 0
        for img in images {
            paste(img, into: &out, x: x0, y: 0)
            x0 += img.width + gap
        }
        return out
    }

    /// Pictures stacked vertically on a white background, left-aligned.
    public static func column(_ images: [RGBImage], gap: Int = 6) -> RGBImage {
        precondition(!images.isEmpty, "Pictures.column: no pictures")
        let h = images.reduce(0) { $0 + $1.height } + gap * (images.count - 1)
        let w = images.map(\.width).max()!
        var out = RGBImage(width: w, height: h, pixels: [UInt8](repeating: 255, count: w * h * 3))
        var y0 = 0
        for img in images {
            paste(img, into: &out, x: 0, y: y0)
            y0 += img.height + gap
        }
        return out
    }

    /// Copies `img` into `canvas` with its top-left corner at (x, y), clipped.
    public static func paste(_ img: RGBImage, into canvas: inout RGBImage, x: Int, y: Int) {
        for yy in 0..<img.height where y + yy >= 0 && y + yy < canvas.height {
            for xx in 0..<img.width where x + xx >= 0 && x + xx < canvas.width {
                for c in 0..<3 {
                    canvas.pixels[((y + yy) * canvas.width + x + xx) * 3 + c] = img.pixels[(yy * img.width + xx) * 3 + c]
                }
            }
        }
    }

    /// Draws the outline of a rectangle, `thickness` pixels wide, inside (x, y, w, h); clipped.
    public static func rectangle(_ img: inout RGBImage, x: Int, y: Int, width w: Int, height h: Int,
                                 color: (UInt8, UInt8, UInt8), thickness: Int = 2) {
        for yy in y..<(y + h) where yy >= 0 && yy < img.height {
            for xx in x..<(x + w) where xx >= 0 && xx < img.width {
                let edge = yy - y < thickness || y + h - 1 - yy < thickness || xx - x < thickness || x + w - 1 - xx < thickness
                if !edge { continue }
                let i = (yy * img.width + xx) * 3
                img.pixels[i] = color.0; img.pixels[i + 1] = color.1; img.pixels[i + 2] = color.2
            }
        }
    }

    /// A small colour swatch strip: one `size`×`size` square per class, in class order, so that a
    /// reader can match the colours to the class list printed by the CLI.
    public static func legend(classes: Int, size: Int = 14, gap: Int = 4) -> RGBImage {
        let n = max(classes, 1)
        var out = RGBImage(width: n * (size + gap) - gap, height: size,
                           pixels: [UInt8](repeating: 255, count: (n * (size + gap) - gap) * size * 3))
        for c in 0..<n {
            let (r, g, b) = color(c)
            for y in 0..<size {
                for x in 0..<size {
                    let i = (y * out.width + c * (size + gap) + x) * 3
                    out.pixels[i] = r; out.pixels[i + 1] = g; out.pixels[i + 2] = b
                }
            }
            rectangle(&out, x: c * (size + gap), y: 0, width: size, height: size, color: (128, 128, 128), thickness: 1)
        }
        return out
    }

    /// The segmentation panel: picture | prediction overlay | ground-truth overlay (all at the
    /// picture's size), with the class legend under it.
    public static func segmentation(image: RGBImage, prediction: [Int32], groundTruth: LabelMap, classes: Int) throws -> RGBImage {
        guard prediction.count == image.width * image.height else {
            throw NecoError.shape("prediction has \(prediction.count) pixels, the picture \(image.width)×\(image.height)")
        }
        try Benchmark.check(image: image, labels: groundTruth, name: "ground truth")
        let top = row([image, overlay(image, labels: prediction), overlay(image, labels: groundTruth.labels)])
        return column([top, legend(classes: classes)])
    }

    /// A before/after panel: picture | one overlay per prediction (e.g. model A, model B) |
    /// ground-truth overlay, all at the picture's size.
    public static func comparison(image: RGBImage, predictions: [[Int32]], groundTruth: LabelMap, classes: Int) throws -> RGBImage {
        for p in predictions where p.count != image.width * image.height {
            throw NecoError.shape("prediction has \(p.count) pixels, the picture \(image.width)×\(image.height)")
        }
        try Benchmark.check(image: image, labels: groundTruth, name: "ground truth")
        return row([image] + predictions.map { overlay(image, labels: $0) } + [overlay(image, labels: groundTruth.labels)])
    }

    /// Maps a value in [0, 1] to a dark-to-bright heat colour (black → purple → orange → yellow).
    public static func heat(_ v: Float) -> (UInt8, UInt8, UInt8) {
        let stops: [(Float, Float, Float)] = [(0, 0, 4), (87, 16, 110), (188, 55, 84), (249, 142, 9), (252, 255, 164)]
        let t = min(max(v, 0), 1) * Float(stops.count - 1)
        let i = min(Int(t), stops.count - 2), f = t - Float(i)
        let a = stops[i], b = stops[i + 1]
        return (UInt8((a.0 + (b.0 - a.0) * f).rounded()), UInt8((a.1 + (b.1 - a.1) * f).rounded()),
                UInt8((a.2 + (b.2 - a.2) * f).rounded()))
    }

    /// A picture with a per-patch similarity map blended over it: (gh, gw) values (cosine
    /// similarities; shown from `low` to `high`), each patch `patch` pixels, picture of exactly
    /// gh·patch × gw·patch pixels; the listed patches are outlined.
    public static func similarity(_ image: RGBImage, values: [Float], gridHeight gh: Int, gridWidth gw: Int, patch: Int,
                                  low: Float, high: Float, outlined: [Int] = [], alpha: Float = 0.65) throws -> RGBImage {
        guard image.width == gw * patch, image.height == gh * patch, values.count == gh * gw else {
            throw NecoError.shape("similarity picture: \(image.width)×\(image.height) picture, \(values.count) values for a \(gh)×\(gw) grid of \(patch) px")
        }
        var out = image
        let span = max(high - low, 1e-6)
        for y in 0..<image.height {
            for x in 0..<image.width {
                let v = (values[(y / patch) * gw + x / patch] - low) / span
                let (r, g, b) = heat(v)
                let col = [r, g, b]
                for c in 0..<3 {
                    let i = (y * image.width + x) * 3 + c
                    // Grey-scale picture under the heat colour, so that the map reads clearly.
                    let gray = (Float(image.pixels[(y * image.width + x) * 3]) + Float(image.pixels[(y * image.width + x) * 3 + 1])
                                + Float(image.pixels[(y * image.width + x) * 3 + 2])) / 3
                    out.pixels[i] = UInt8(min(max(((1 - alpha) * gray + alpha * Float(col[c])).rounded(), 0), 255))
                }
            }
        }
        for p in outlined where p >= 0 && p < gh * gw {
            rectangle(&out, x: (p % gw) * patch, y: (p / gw) * patch, width: patch, height: patch, color: (0, 255, 255), thickness: 2)
        }
        return out
    }
}
