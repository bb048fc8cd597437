import NecoCore

// Model input preparation: geometry (resize / crop) and normalisation to a planar float tensor,
// matching the Python reference `T.Compose([T.Resize(...), T.CenterCrop(...), T.ToTensor(),
// T.Normalize(mean, std)])` on PIL images.
//
// Dimension letters: H, W image height/width; C = 3 channels.

/// How an image is brought to the model's input size.
public enum ResizeMode: Sendable, Equatable {
    /// Resize to exactly `height × width`, ignoring the aspect ratio.
    case stretch(height: Int, width: Int)
    /// torchvision `Resize(size)` then `CenterCrop(size)`: the shorter side becomes `size`, the
    /// longer `int(size * long / short)` (truncated), then the centred `size × size` window is kept
    /// (`top = int(round((h - size) / 2.0))`, half to even).
    case shortSideCrop(size: Int)
    /// Keep the aspect ratio: scale so that the longer side is `maxSide`, then round each side to
    /// the nearest multiple of `multiple` (halves away from zero, at least `multiple`) and resize
    /// to that size. The aspect ratio is kept up to that rounding. Typical: `multiple` = patch size.
    case fitMultiple(maxSide: Int, multiple: Int)
}

/// Turns decoded pictures into normalised model input.
public enum Preprocess {
    /// ImageNet channel means (R, G, B), as in torchvision and DINOv2.
    public static let imageNetMean: (Float, Float, Float) = (0.485, 0.456, 0.406)
    /// ImageNet channel standard deviations (R, G, B).
    public static let imageNetStd: (Float, Float, Float) = (0.229, 0.224, 0.225)

    /// The geometry of `mode` applied to a `width × height` picture: first resize to
    /// `resize`, then centre-crop to `output` (equal to `resize` except for `.shortSideCrop`).
    ///
    /// - Throws: `NecoError(.invalidArgument)` when a size in `mode` is below 1, or the picture
    ///   is empty.
    public static func geometry(width: Int, height: Int, mode: ResizeMode) throws
        -> (resize: (width: Int, height: Int), output: (width: Int, height: Int)) {
        guard width >= 1 && height >= 1 else {
            throw NecoError(.invalidArgument, "preprocess: image size \(width)x\(height) is empty")
        }
        switch mode {
        case let .stretch(h, w):
            guard h >= 1 && w >= 1 else {
                throw NecoError(.invalidArgument, "preprocess: stretch size \(w)x\(h) must be at least 1x1")
            }
            return ((w, h), (w, h))
        case let .shortSideCrop(size):
            guard size >= 1 else {
                throw NecoError(.invalidArgument, "preprocess: shortSideCrop size \(size) must be at least 1")
            }
            // torchvision _compute_resized_output_size: Python `int(size * long / short)`.
            let short = min(width, height), long = max(width, height)
            let newLong = Int(Double(size * long) / Double(short))
            let resized = width <= height ? (size, newLong) : (newLong, size)
            return (resized, (size, size))
        case let .fitMultiple(maxSide, multiple):
            guard maxSide >= 1 && multiple >= 1 else {
                throw NecoError(.invalidArgument,
                                "preprocess: fitMultiple(maxSide: \(maxSide), multiple: \(multiple)) needs both at least 1")
            }
            let long = Double(max(width, height))
            func fit(_ side: Int) -> Int {
                let scaled = Double(side) * Double(maxSide) / long
                return max(multiple, Int((scaled / Double(multiple)).rounded()) * multiple)
            }
            let size = (fit(width), fit(height))
            return (size, size)
        }
    }

    /// Applies the geometry of `mode`: Pillow bilinear (antialiased) resize, then the centre crop
    /// for `.shortSideCrop`. The result is `(H', W', 3)` with `H' × W'` from ``geometry(width:height:mode:)``.
    ///
    /// - Throws: as ``geometry(width:height:mode:)``.
    public static func apply(_ img: RGBImage, mode: ResizeMode) throws -> RGBImage {
        let g = try geometry(width: img.width, height: img.height, mode: mode)
        let resized = ImageResize.resizeBilinearAntialias(img, width: g.resize.width, height: g.resize.height)
        if g.output.width == resized.width && g.output.height == resized.height { return resized }
        return ImageResize.centerCrop(resized, width: g.output.width, height: g.output.height)
    }

    /// Writes `img` as a planar float tensor, torchvision `ToTensor()` + `Normalize(mean, std)`:
    /// ```
    /// out[c, y, x] = (Float(pixels[y, x, c]) / 255 - mean[c]) / std[c]      // Float arithmetic
    /// ```
    /// bit-identical to PyTorch's float32 CPU result.
    ///
    /// - Parameter into: room for `3 * img.height * img.width` floats, laid out `(3, H, W)`.
    /// - Precondition: every `std` component is non-zero.
    public static func normalize(_ img: RGBImage, into out: UnsafeMutablePointer<Float>,
                                 mean: (Float, Float, Float) = imageNetMean,
                                 std: (Float, Float, Float) = imageNetStd) {
        precondition(std.0 != 0 && std.1 != 0 && std.2 != 0, "normalize: std must be non-zero")
        // (3, 256) table: the same Float operations as per-pixel evaluation, done once per value.
        var table = [Float](repeating: 0, count: 3 * 256)
        let means = [mean.0, mean.1, mean.2], stds = [std.0, std.1, std.2]
        for c in 0..<3 {
            for v in 0..<256 { table[c * 256 + v] = (Float(v) / 255 - means[c]) / stds[c] }
        }
        let plane = img.width * img.height
        img.pixels.withUnsafeBufferPointer { px in
            table.withUnsafeBufferPointer { t in
                for c in 0..<3 {
                    let dst = out + c * plane
                    let lut = t.baseAddress! + c * 256
                    for i in 0..<plane { dst[i] = lut[Int(px[i * 3 + c])] }
                }
            }
        }
    }

    /// Geometry then normalisation: the model input for `img` as `(3, H', W')` floats.
    ///
    /// - Throws: as ``geometry(width:height:mode:)``.
    public static func tensor(_ img: RGBImage, mode: ResizeMode,
                              mean: (Float, Float, Float) = imageNetMean,
                              std: (Float, Float, Float) = imageNetStd) throws
        -> (data: [Float], height: Int, width: Int) {
        guard std.0 != 0 && std.1 != 0 && std.2 != 0 else {
            throw NecoError(.invalidArgument, "preprocess: std \(std) has a zero component")
        }
        let prepared = try apply(img, mode: mode)
        var data = try Memory.zeros(3 * prepared.height * prepared.width, of: Float.self,
                                    "a \(prepared.height)×\(prepared.width) model input")
        data.withUnsafeMutableBufferPointer { normalize(prepared, into: $0.baseAddress!, mean: mean, std: std) }
        return (data, prepared.height, prepared.width)
    }
}
