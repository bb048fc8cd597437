import NecoCore
import NecoImage
#if canImport(Glibc)
import Glibc
#endif

/// Hummingbird's memory augmentation for in-context segmentation (NECO-SPEC §6.1, as
/// open-hummingbird-eval builds its memory): the memory is made of `epochs` passes over the
/// training images, each image through
///
/// 1. colour jitter: brightness, contrast and saturation factors from U[1 − j, 1 + j] and a hue
///    shift from U[−h, h], each applied with probability p, in that fixed order (torchvision's
///    functional ops on PIL images, `PillowColor`);
/// 2. a random resized crop with torchvision's `RandomResizedCrop.get_params` (scale (0.5, 2.0),
///    ratio (3/4, 4/3), 10 tries, else the central crop of the clamped ratio), the same for the
///    image and its label map. The caller resizes the crop to S×S (bilinear for the image,
///    nearest for the labels), as for an un-augmented image.
///
/// The protocol's code passes its hue *probability* (0.5) as the hue range, so h = 0.5 by
/// default (`hue` changes it; NECO-SPEC §6.1 states 0.1). `epochs = 0` is the un-augmented
/// memory (each training image once, resized whole).
public struct MemoryAugmentation: Sendable, Equatable {
    /// Passes over the training set (open-hummingbird-eval: 1 by default, 2 in its DINOv2 runs).
    public var epochs: Int
    /// j: brightness, contrast and saturation factors from U[1 − j, 1 + j].
    public var jitter = 0.1
    /// h: hue shift from U[−h, h] (at most 0.5).
    public var hue = 0.5
    /// p: probability of each of the four colour operations.
    public var probability = 0.5
    public var scale = (0.5, 2.0)
    public var ratio = (3.0 / 4.0, 4.0 / 3.0)

    public init(epochs: Int) { self.epochs = epochs }

    /// No augmentation: the memory holds each training image once.
    public static let none = MemoryAugmentation(epochs: 0)

    public static func == (a: MemoryAugmentation, b: MemoryAugmentation) -> Bool {
        a.epochs == b.epochs && a.jitter == b.jitter && a.hue == b.hue && a.probability == b.probability
            && a.scale == b.scale && a.ratio == b.ratio
    }

    /// - Throws: `.invalidArgument` naming the first bad value.
    public func validate() throws {
        func check(_ ok: Bool, _ m: String) throws { if !ok { throw NecoError.invalidArgument("memory augmentation: \(m)") } }
        try check(epochs >= 0 && epochs <= 100, "epochs \(epochs) must be in 0...100")
        try check(jitter >= 0 && jitter < 1, "jitter \(jitter) must be in [0, 1)")
        try check(hue >= 0 && hue <= 0.5, "hue \(hue) must be in [0, 0.5]")
        try check(probability >= 0 && probability <= 1, "probability must be in [0, 1]")
        try check(scale.0 > 0 && scale.0 <= scale.1, "scale range")
        try check(ratio.0 > 0 && ratio.0 <= ratio.1, "ratio range")
    }

    /// The random stream of image `index` in pass `epoch` (independent of the order of calls).
    public static func rng(seed: UInt64, epoch: Int, index: Int) -> NecoRNG {
        NecoRNG(seed: seed, stream: UInt64(truncatingIfNeeded: epoch) << 32 | UInt64(truncatingIfNeeded: index))
    }

    /// torchvision `RandomResizedCrop.get_params` for a W×H image: (x, y, w, h).
    public func cropRectangle(width: Int, height: Int, rng: inout NecoRNG) -> (x: Int, y: Int, w: Int, h: Int) {
        let area = Double(width * height)
        let logR = (log(ratio.0), log(ratio.1))
        for _ in 0..<10 {
            let target = area * (scale.0 + (scale.1 - scale.0) * rng.uniformDouble())
            let aspect = exp(logR.0 + (logR.1 - logR.0) * rng.uniformDouble())
            let w = Int((target * aspect).squareRoot().rounded(.toNearestOrEven))
            let h = Int((target / aspect).squareRoot().rounded(.toNearestOrEven))
            if w > 0, h > 0, w <= width, h <= height {
                let y = rng.bounded(height - h + 1)
                let x = rng.bounded(width - w + 1)
                return (x, y, w, h)
            }
        }
        // Fallback: the central crop with the ratio clamped to the range.
        let inRatio = Double(width) / Double(height)
        var w = width, h = height
        if inRatio < ratio.0 {
            h = min(height, Int((Double(w) / ratio.0).rounded(.toNearestOrEven)))
        } else if inRatio > ratio.1 {
            w = min(width, Int((Double(h) * ratio.1).rounded(.toNearestOrEven)))
        }
        return ((width - w) / 2, (height - h) / 2, max(w, 1), max(h, 1))
    }

    /// One augmented view of a training image and its label map (same size): the jittered crop and
    /// the label map's crop, both at the crop's size.
    public func apply(image: RGBImage, labels: LabelMap, rng: inout NecoRNG) throws -> (image: RGBImage, labels: LabelMap) {
        guard image.width == labels.width, image.height == labels.height else {
            throw NecoError.shape("memory augmentation: image \(image.width)x\(image.height), labels \(labels.width)x\(labels.height)")
        }
        var img = image
        // Colour jitter (fixed order, each with probability p).
        func factor() -> Double { 1 - jitter + 2 * jitter * rng.uniformDouble() }
        if rng.uniformDouble() < probability { img = PillowColor.adjustBrightness(img, factor: factor()) }
        if rng.uniformDouble() < probability { img = PillowColor.adjustContrast(img, factor: factor()) }
        if rng.uniformDouble() < probability { img = PillowColor.adjustSaturation(img, factor: factor()) }
        if rng.uniformDouble() < probability { img = PillowColor.adjustHue(img, factor: -hue + 2 * hue * rng.uniformDouble()) }
        // Random resized crop, the same rectangle for both.
        let r = cropRectangle(width: image.width, height: image.height, rng: &rng)
        let cropped = ImageResize.crop(img, x: r.x, y: r.y, width: r.w, height: r.h)
        var lab = [UInt8](repeating: 0, count: r.w * r.h)
        for y in 0..<r.h {
            for x in 0..<r.w { lab[y * r.w + x] = labels.labels[(r.y + y) * labels.width + r.x + x] }
        }
        return (cropped, try LabelMap(width: r.w, height: r.h, labels: lab))
    }
}
