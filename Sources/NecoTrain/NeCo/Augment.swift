import NecoCore
import NecoImage
#if canImport(Glibc)
import Glibc
#endif

// Photometric augmentation of one crop, NECO-SPEC §3.3: torchvision's ColorJitter /
// RandomGrayscale on PIL images and PIL's GaussianBlur, re-implemented on 8-bit RGB with
// Pillow's integer and float arithmetic (src/libImaging/Blend.c, Convert.c, BoxBlur.c,
// PIL/ImageEnhance.py, torchvision/transforms/_functional_pil.py).

/// Probabilities and ranges of the photometric augmentation (NeCo with jitter_strength =
/// blur_strength = 1).
public struct PhotometricConfig: Sendable, Equatable {
    /// Probability of applying ColorJitter.
    public var jitterProbability = 0.8
    /// Brightness, contrast and saturation factors are drawn from U[1 − x, 1 + x].
    public var brightness = 0.8
    public var contrast = 0.8
    public var saturation = 0.8
    /// Hue shift drawn from U[−x, x] (fraction of the hue circle; at most 0.5).
    public var hue = 0.2
    public var grayscaleProbability = 0.2
    public var blurProbability = 0.5
    /// PIL Gaussian-blur radius (its standard deviation) drawn from U[lo, hi].
    public var blurRadius: (Double, Double) = (0.1, 2.0)

    public init(jitterStrength: Double = 1, blurStrength: Double = 1) {
        brightness = 0.8 * jitterStrength
        contrast = 0.8 * jitterStrength
        saturation = 0.8 * jitterStrength
        hue = 0.2 * jitterStrength
        blurRadius = (0.1 * blurStrength, 2.0 * blurStrength)
    }

    /// No photometric change at all (for tests and ablations).
    public static var none: PhotometricConfig {
        var c = PhotometricConfig()
        c.jitterProbability = 0
        c.grayscaleProbability = 0
        c.blurProbability = 0
        return c
    }

    public static func == (a: PhotometricConfig, b: PhotometricConfig) -> Bool {
        a.jitterProbability == b.jitterProbability && a.brightness == b.brightness && a.contrast == b.contrast
            && a.saturation == b.saturation && a.hue == b.hue && a.grayscaleProbability == b.grayscaleProbability
            && a.blurProbability == b.blurProbability && a.blurRadius == b.blurRadius
    }

    public func validate() throws {
        func check(_ ok: Bool, _ m: String) throws { if !ok { throw NecoError.invalidArgument("augmentation: \(m)") } }
        for p in [jitterProbability, grayscaleProbability, blurProbability] { try check(p >= 0 && p <= 1, "probability \(p)") }
        try check(brightness >= 0 && contrast >= 0 && saturation >= 0, "jitter strengths must be ≥ 0")
        try check(hue >= 0 && hue <= 0.5, "hue must be in [0, 0.5]")
        try check(blurRadius.0 >= 0 && blurRadius.0 <= blurRadius.1, "blur radius range")
    }
}

/// The photometric operations, each bit-exact with its PIL / torchvision counterpart on RGB.
public enum Photometric {
    // MARK: The random pipeline

    /// What `augment` drew, for logging and tests.
    public struct Draw: Sendable, Equatable {
        /// Jitter order (0 brightness, 1 contrast, 2 saturation, 3 hue) and factors, when applied.
        public var jitter: (order: [Int], brightness: Double, contrast: Double, saturation: Double, hue: Double)?
        public var grayscale = false
        public var blurRadius: Double?

        public static func == (a: Draw, b: Draw) -> Bool {
            a.grayscale == b.grayscale && a.blurRadius == b.blurRadius && a.jitter?.order == b.jitter?.order
                && a.jitter?.brightness == b.jitter?.brightness && a.jitter?.contrast == b.jitter?.contrast
                && a.jitter?.saturation == b.jitter?.saturation && a.jitter?.hue == b.jitter?.hue
        }
    }

    /// ColorJitter with probability p (the four ops in a fresh random order, factors from
    /// U[1 − x, 1 + x] and the hue shift from U[−h, h], drawn as float32 like torchvision), then
    /// grayscale with its probability, then Gaussian blur with radius U[lo, hi] with its probability.
    public static func augment(_ img: RGBImage, config c: PhotometricConfig, rng: inout NecoRNG) -> (RGBImage, Draw) {
        var out = img
        var draw = Draw()
        if rng.uniformDouble() < c.jitterProbability {
            let order = rng.permutation(4)
            func factor(_ x: Double) -> Double {
                Double(Float(max(0, 1 - x) + (1 + x - max(0, 1 - x)) * rng.uniformDouble()))
            }
            let b = factor(c.brightness), ct = factor(c.contrast), s = factor(c.saturation)
            let h = Double(Float(-c.hue + 2 * c.hue * rng.uniformDouble()))
            for op in order {
                switch op {
                case 0: out = PillowColor.adjustBrightness(out, factor: b)
                case 1: out = PillowColor.adjustContrast(out, factor: ct)
                case 2: out = PillowColor.adjustSaturation(out, factor: s)
                default: out = PillowColor.adjustHue(out, factor: h)
                }
            }
            draw.jitter = (order, b, ct, s, h)
        }
        if rng.uniformDouble() < c.grayscaleProbability {
            out = PillowColor.grayscale(out)
            draw.grayscale = true
        }
        if rng.uniformDouble() < c.blurProbability {
            let r = c.blurRadius.0 + (c.blurRadius.1 - c.blurRadius.0) * rng.uniformDouble()
            out = PillowColor.gaussianBlur(out, radius: r)
            draw.blurRadius = r
        }
        return (out, draw)
    }
}
