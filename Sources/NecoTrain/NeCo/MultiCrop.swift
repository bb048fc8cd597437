import NecoCore
#if canImport(Glibc)
import Glibc
#endif

// Multi-crop geometry and overlap boxes, NECO-SPEC §3.2 and §3.4, pitfalls P8 and P26
// (vpariza/NeCo `src/neco_transforms.py`: `NeCoTransforms.__call__`, `calculate_bboxes`;
// torchvision `RandomResizedCrop.get_params`).

/// A crop in original-image pixels: columns left ..< left + width, rows top ..< top + height.
public struct CropBox: Sendable, Equatable {
    public var left: Int
    public var top: Int
    public var width: Int
    public var height: Int
    public init(left: Int, top: Int, width: Int, height: Int) {
        self.left = left
        self.top = top
        self.width = width
        self.height = height
    }
    public var right: Int { left + width }
    public var bottom: Int { top + height }

    /// Area of the intersection with `other` (0 when disjoint).
    public func intersectionArea(_ other: CropBox) -> Int {
        let w = max(0, min(right, other.right) - max(left, other.left))
        let h = max(0, min(bottom, other.bottom) - max(top, other.top))
        return w * h
    }
}

/// Crop sizes, counts and scale ranges (NeCo's `size_crops`, `nmb_samples`, `min/max_scale_crops`,
/// `min_intersection_crops`). Defaults: the CPU setting 224/98 of the issue; the paper uses 518/98.
public struct MultiCropConfig: Sendable, Equatable {
    public var globalSize: Int = 224
    public var localSize: Int = 98
    public var globalCrops: Int = 2
    public var localCrops: Int = 4
    public var globalScale: (Double, Double) = (0.25, 1.0)
    public var localScale: (Double, Double) = (0.05, 0.25)
    /// Aspect-ratio range of RandomResizedCrop.
    public var ratio: (Double, Double) = (3.0 / 4.0, 4.0 / 3.0)
    /// Minimum overlap as a fraction of the image area (strict ">", ×2 between global crops).
    public var minIntersection: Double = 0.01
    /// Give up (throw) after this many rejected draws for one crop; NeCo loops forever (P26).
    public var maxAttempts: Int = 100_000

    public init() {}

    public var crops: Int { globalCrops + localCrops }

    public static func == (a: MultiCropConfig, b: MultiCropConfig) -> Bool {
        a.globalSize == b.globalSize && a.localSize == b.localSize && a.globalCrops == b.globalCrops
            && a.localCrops == b.localCrops && a.globalScale == b.globalScale && a.localScale == b.localScale
            && a.ratio == b.ratio && a.minIntersection == b.minIntersection && a.maxAttempts == b.maxAttempts
    }

    /// - Throws: `.invalidArgument` for sizes that are not positive multiples of `patchSize`,
    ///   fewer than 1 global crop (2 with no local crops), bad scale / ratio ranges.
    public func validate(patchSize: Int) throws {
        func check(_ ok: Bool, _ m: String) throws { if !ok { throw NecoError.invalidArgument("multi-crop: \(m)") } }
        try check(patchSize >= 1, "patch size must be ≥ 1")
        try check(globalSize >= patchSize && globalSize % patchSize == 0,
                  "global crop size \(globalSize) must be a positive multiple of the patch size \(patchSize)")
        try check(localCrops == 0 || (localSize >= patchSize && localSize % patchSize == 0),
                  "local crop size \(localSize) must be a positive multiple of the patch size \(patchSize)")
        try check(globalCrops >= 1 && localCrops >= 0 && crops >= 2 && crops <= 64, "need 1+ global crops and 2...64 crops")
        try check(globalScale.0 > 0 && globalScale.0 <= globalScale.1 && globalScale.1 <= 1, "global scale range")
        try check(localScale.0 > 0 && localScale.0 <= localScale.1 && localScale.1 <= 1, "local scale range")
        try check(ratio.0 > 0 && ratio.0 <= ratio.1, "aspect-ratio range")
        try check(minIntersection >= 0 && minIntersection < 1, "minimum intersection must be in [0, 1)")
        try check(maxAttempts >= 1, "maxAttempts must be ≥ 1")
    }

    /// Output size of crop c.
    public func size(ofCrop c: Int) -> Int { c < globalCrops ? globalSize : localSize }
}

/// Random crop geometry and the overlap boxes of a crop set.
public enum MultiCrop {
    /// torchvision `RandomResizedCrop.get_params` (PIL size (W, H)):
    /// ```
    /// repeat 10 times:
    ///     target = W·H·U(scale); aspect = exp(U(ln r0, ln r1))
    ///     w = round(√(target·aspect)); h = round(√(target/aspect))      (half to even)
    ///     if 0 < w ≤ W and 0 < h ≤ H: top = U{0..H−h}, left = U{0..W−w}; return
    /// fallback: the central crop clamped to the ratio range
    /// ```
    public static func randomResizedCrop(width W: Int, height H: Int, scale: (Double, Double), ratio: (Double, Double),
                                         rng: inout NecoRNG) -> CropBox {
        let area = Double(W * H)
        let lr0 = log(ratio.0), lr1 = log(ratio.1)
        for _ in 0..<10 {
            let target = area * (scale.0 + (scale.1 - scale.0) * rng.uniformDouble())
            let aspect = exp(lr0 + (lr1 - lr0) * rng.uniformDouble())
            let w = Int((target * aspect).squareRoot().rounded(.toNearestOrEven))
            let h = Int((target / aspect).squareRoot().rounded(.toNearestOrEven))
            if w > 0 && w <= W && h > 0 && h <= H {
                let top = rng.bounded(H - h + 1)
                let left = rng.bounded(W - w + 1)
                return CropBox(left: left, top: top, width: w, height: h)
            }
        }
        let inRatio = Double(W) / Double(H)
        var w = W, h = H
        if inRatio < ratio.0 {
            h = Int((Double(w) / ratio.0).rounded(.toNearestOrEven))
        } else if inRatio > ratio.1 {
            w = Int((Double(h) * ratio.1).rounded(.toNearestOrEven))
        }
        return CropBox(left: (W - w) / 2, top: (H - h) / 2, width: w, height: h)
    }

    /// The crop boxes of one image with NeCo's overlap rejection rule:
    /// crop 0 free; crop 1 must overlap crop 0 by more than 2·⌊m·W·H⌋ pixels; every later crop must
    /// overlap each global crop by more than ⌊m·W·H⌋ (m = `minIntersection`; strict ">"; global
    /// crops other than 0 also use the doubled threshold). Rejected crops are redrawn.
    /// - Throws: `.invalidArgument` for an empty image; `.internal` when `maxAttempts` draws of one
    ///   crop all fail (NeCo would loop forever).
    public static func sample(width W: Int, height H: Int, config: MultiCropConfig, rng: inout NecoRNG) throws -> [CropBox] {
        guard W >= 1, H >= 1 else { throw NecoError.invalidArgument("multi-crop: image size \(W)×\(H) is empty") }
        var boxes: [CropBox] = []
        let threshold = Int(Double(W * H) * config.minIntersection)
        for i in 0..<config.crops {
            let isGlobal = i < config.globalCrops
            let scale = isGlobal ? config.globalScale : config.localScale
            var b = randomResizedCrop(width: W, height: H, scale: scale, ratio: config.ratio, rng: &rng)
            if i > 0 {
                let m = isGlobal ? 2 * threshold : threshold
                let previous = boxes.prefix(min(i, config.globalCrops))
                var attempts = 1
                while !previous.allSatisfy({ b.intersectionArea($0) > m }) {
                    guard attempts < config.maxAttempts else {
                        throw NecoError(.internal, "multi-crop: no crop \(i) overlapping the global crops after \(attempts) draws on a \(W)×\(H) image")
                    }
                    b = randomResizedCrop(width: W, height: H, scale: scale, ratio: config.ratio, rng: &rng)
                    attempts += 1
                }
            }
            boxes.append(b)
        }
        return boxes
    }

    /// Overlap boxes of a crop set (`calculate_bboxes`), float32 arithmetic in NeCo's order:
    /// ```
    /// I(g, c) = [max(x1_g, x1_c), max(y1_g, y1_c), min(x2_g, x2_c), min(y2_g, y2_c)]
    /// anchor[g][c]  = S_g·((I − (x1_g, y1_g)) / (w_g, h_g))      in g's output frame
    /// partner[c][g] = S_c·((I − (x1_c, y1_c)) / (w_c, h_c))      in c's output frame
    /// ```
    /// x is scaled by the crop's width and y by its height (anisotropic, P8).
    /// - Returns: anchor (nG, nC, 4) and partner (nC, nG, 4), (x1, y1, x2, y2).
    /// - Throws: `.internal` if an intersection is empty (the sampler rules that out).
    public static func overlapBoxes(_ crops: [CropBox], config: MultiCropConfig) throws -> (anchor: [Float], partner: [Float]) {
        let nG = config.globalCrops, nC = crops.count
        precondition(nC == config.crops, "overlapBoxes: \(nC) crops for a config of \(config.crops)")
        var anchor = [Float](repeating: 0, count: nG * nC * 4)
        var partner = [Float](repeating: 0, count: nC * nG * 4)
        func scaled(_ v: Int, _ origin: Int, _ extent: Int, _ size: Int) -> Float {
            Float(size) * ((Float(v) - Float(origin)) / Float(extent))
        }
        for g in 0..<nG {
            let a = crops[g]
            for c in 0..<nC {
                let b = crops[c]
                let x1 = max(a.left, b.left), y1 = max(a.top, b.top)
                let x2 = min(a.right, b.right), y2 = min(a.bottom, b.bottom)
                guard x2 > x1, y2 > y1 else {
                    throw NecoError(.internal, "multi-crop: crops \(g) and \(c) do not intersect")
                }
                let sg = config.size(ofCrop: g), sc = config.size(ofCrop: c)
                let o = (g * nC + c) * 4
                anchor[o] = scaled(x1, a.left, a.width, sg)
                anchor[o + 1] = scaled(y1, a.top, a.height, sg)
                anchor[o + 2] = scaled(x2, a.left, a.width, sg)
                anchor[o + 3] = scaled(y2, a.top, a.height, sg)
                let p = (c * nG + g) * 4
                partner[p] = scaled(x1, b.left, b.width, sc)
                partner[p + 1] = scaled(y1, b.top, b.height, sc)
                partner[p + 2] = scaled(x2, b.left, b.width, sc)
                partner[p + 3] = scaled(y2, b.top, b.height, sc)
            }
        }
        return (anchor, partner)
    }
}
