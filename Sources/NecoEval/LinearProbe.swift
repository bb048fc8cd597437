import NecoCore

#if canImport(Glibc)
import Glibc
#endif

/// Linear segmentation probe on frozen patch features (NECO-SPEC §6.2, P24), scaled for a CPU.
///
/// Letters: B images per batch, h×w patch grid, D feature dim, C classes, S training mask side.
///
/// The head is a 1×1 convolution D → C with bias. NeCo applies it after bilinearly upsampling
/// the features to S×S; the convolution commutes with the upsampling (P24), so here the logits
/// are computed per patch and then upsampled:
///
///     z (h·w, C)   = F (h·w, D) · Wᵀ + b
///     Z (S·S, C)   = bilinear(z)                       (half-pixel centres, align_corners=False)
///     L            = mean over non-ignored pixels of −log softmax(Z)[y]       (y: S×S mask, nearest)
///     ∂L/∂z        = bilinearᵀ( (softmax(Z) − onehot(y)) / #pixels )
///     ∂L/∂W        = (∂L/∂z)ᵀ · F,   ∂L/∂b = Σ_rows ∂L/∂z
///
/// Optimiser: SGD with momentum 0.9, weight decay 1e-4 (on W and b, as `torch.optim.SGD` on all
/// parameters), lr 0.01, StepLR ×0.1 at epoch 20 of 25; initialisation as PyTorch's `Conv2d`
/// default (U(±1/√D) for W and b). Differences from the paper's recipe, for CPU budgets: the
/// features are extracted once (no RandomResizedCrop / flip augmentation), the batch is
/// `batchSize` images (default 8 rather than 128, since the benchmark is small), the last
/// partial batch is kept.
///
/// Prediction: logits upsampled bilinearly to the label size (448×448 in the paper; the model
/// input size here), arg-max, mIoU without matching (`Matching.identity`).
public final class LinearProbe {
    public struct Options: Sendable {
        public var epochs = 25
        public var learningRate: Float = 0.01
        public var momentum: Float = 0.9
        public var weightDecay: Float = 1e-4
        /// Epoch at which the learning rate is multiplied by `gamma` (StepLR).
        public var stepEpoch = 20
        public var gamma: Float = 0.1
        public var batchSize = 8
        /// Side of the training masks (S).
        public var maskSize = 100
        public var seed: UInt64 = 0
        public init() {}
    }

    public let dim: Int
    public let classes: Int
    /// (C, D) weights.
    public private(set) var weight: [Float]
    /// (C) biases.
    public private(set) var bias: [Float]

    /// - Throws: `.invalidArgument` for dim or classes below 1.
    public init(dim: Int, classes: Int, seed: UInt64 = 0) throws {
        guard dim >= 1, classes >= 1, dim * classes <= 1 << 26 else {
            throw NecoError.invalidArgument("linear probe \(dim) → \(classes) out of range")
        }
        self.dim = dim
        self.classes = classes
        var rng = NecoRNG(seed: seed)
        let bound = 1 / Float(dim).squareRoot()
        weight = (0..<(dim * classes)).map { _ in rng.uniform(-bound, bound) }
        bias = (0..<classes).map { _ in rng.uniform(-bound, bound) }
    }

    /// Patch logits (rows, C) of patch features (rows, D).
    public func logits(_ features: UnsafePointer<Float>, rows: Int) -> [Float] {
        var out = [Float](repeating: 0, count: rows * classes)
        if rows == 0 { return out }
        out.withUnsafeMutableBufferPointer { op in
            weight.withUnsafeBufferPointer { wp in
                Gemm.gemm(out: op.baseAddress!, a: features, b: wp.baseAddress!, m: rows, n: classes, k: dim, transB: true)
            }
            for r in 0..<rows { for c in 0..<classes { op[r * classes + c] += bias[c] } }
        }
        return out
    }

    /// Predicted classes (outHeight, outWidth) of one image's (h·w, D) features.
    public func predict(_ features: ArraySlice<Float>, gridHeight gh: Int, gridWidth gw: Int,
                        outHeight: Int, outWidth: Int) throws -> [Int32] {
        guard features.count == gh * gw * dim else {
            throw NecoError.shape("\(features.count) feature values for a \(gh)×\(gw) grid × \(dim)")
        }
        let z = features.withUnsafeBufferPointer { logits($0.baseAddress!, rows: gh * gw) }
        return BilinearPlan(inHeight: gh, inWidth: gw, outHeight: outHeight, outWidth: outWidth).argmax(z, channels: classes)
    }

    /// Trains on I images: features (I, h, w, D) and one label map per image (any size; resized
    /// to S×S with the nearest rule). Returns the mean training loss of each epoch.
    ///
    /// - Throws: `.shape` for mismatched counts; `.format` for a class ≥ C; `.invalidArgument`
    ///   for bad options or when no pixel is labelled.
    @discardableResult
    public func train(features: [Float], images: Int, gridHeight gh: Int, gridWidth gw: Int, labels: [LabelMap],
                      options o: Options = Options(), progress: ((Int, Double) -> Void)? = nil) throws -> [Double] {
        let hw = gh * gw, d = dim, c = classes, s = o.maskSize
        guard images >= 1, labels.count == images, features.count == images * hw * d else {
            throw NecoError.shape("linear probe: \(features.count) feature values and \(labels.count) label maps for \(images) images of \(gh)×\(gw)×\(d)")
        }
        guard o.epochs >= 1, o.batchSize >= 1, s >= 1, o.learningRate > 0, o.momentum >= 0, o.weightDecay >= 0 else {
            throw NecoError.invalidArgument("linear probe: epochs, batch size and mask size must be ≥ 1, rates ≥ 0")
        }
        let masks = labels.map { $0.resizedNearest(width: s, height: s, rule: .torch).labels }
        var anyLabelled = false
        for (i, m) in masks.enumerated() {
            for v in m where v != LabelMap.ignore {
                guard Int(v) < c else { throw NecoError.format("label map \(i) has class \(v); the probe has \(c) classes") }
                anyLabelled = true
            }
        }
        guard anyLabelled else { throw NecoError.invalidArgument("linear probe: every training pixel is ignored") }

        let plan = BilinearPlan(inHeight: gh, inWidth: gw, outHeight: s, outWidth: s)
        var rng = NecoRNG(seed: o.seed &+ 1)
        var velocityW = [Float](repeating: 0, count: c * d), velocityB = [Float](repeating: 0, count: c)
        var firstStep = true
        let maxB = min(o.batchSize, images)
        var z = [Float](repeating: 0, count: maxB * hw * c)        // (B·h·w, C) logits, then their gradient
        var up = [Float](repeating: 0, count: s * s * c)            // (S·S, C) one image's upsampled logits / grad
        var gradW = [Float](repeating: 0, count: c * d)
        var batchFeatures = [Float](repeating: 0, count: maxB * hw * d)
        var losses: [Double] = []
        for epoch in 0..<o.epochs {
            let lr = epoch >= o.stepEpoch ? o.learningRate * o.gamma : o.learningRate
            let order = rng.permutation(images)
            var epochLoss = 0.0, epochPixels = 0
            var b0 = 0
            while b0 < images {
                let nb = min(maxB, images - b0)
                let rows = nb * hw
                // Gather the batch's features (B·h·w, D).
                for i in 0..<nb {
                    let src = order[b0 + i] * hw * d
                    for j in 0..<(hw * d) { batchFeatures[i * hw * d + j] = features[src + j] }
                }
                // Forward: z = F · Wᵀ + b.
                batchFeatures.withUnsafeBufferPointer { fp in
                    weight.withUnsafeBufferPointer { wp in
                        z.withUnsafeMutableBufferPointer { zp in
                            Gemm.gemm(out: zp.baseAddress!, a: fp.baseAddress!, b: wp.baseAddress!, m: rows, n: c, k: d, transB: true)
                            for r in 0..<rows { for j in 0..<c { zp[r * c + j] += bias[j] } }
                        }
                    }
                }
                // Per image: upsample, softmax cross-entropy, gradient back through the upsampling.
                var batchLoss = 0.0, batchPixels = 0
                z.withUnsafeMutableBufferPointer { zp in
                    up.withUnsafeMutableBufferPointer { upp in
                        let upb = upp.baseAddress!
                        for i in 0..<nb {
                            let zi = zp.baseAddress! + i * hw * c
                            plan.forward(out: upb, src: zi, channels: c)
                            let mask = masks[order[b0 + i]]
                            for p in 0..<(s * s) {
                                let row = upb + p * c
                                let y = Int(mask[p])
                                if y == Int(LabelMap.ignore) {
                                    for j in 0..<c { row[j] = 0 }
                                    continue
                                }
                                var mx = row[0]
                                for j in 1..<max(c, 1) { mx = max(mx, row[j]) }
                                var sum: Float = 0
                                for j in 0..<c { row[j] = expf(row[j] - mx); sum += row[j] }
                                batchLoss -= Double(logf(row[y] / sum))
                                for j in 0..<c { row[j] /= sum }
                                row[y] -= 1
                                batchPixels += 1
                            }
                            // z_i now receives its gradient (unscaled).
                            for j in 0..<(hw * c) { zi[j] = 0 }
                            plan.backward(grad: zi, gradOut: upb, channels: c)
                        }
                    }
                }
                if batchPixels == 0 { b0 += nb; continue }
                let scale = 1 / Float(batchPixels)
                // ∂L/∂W = ∂zᵀ · F, ∂L/∂b = Σ ∂z (scaled by 1/#pixels).
                batchFeatures.withUnsafeBufferPointer { fp in
                    z.withUnsafeBufferPointer { zp in
                        gradW.withUnsafeMutableBufferPointer { gp in
                            Gemm.gemm(out: gp.baseAddress!, a: zp.baseAddress!, b: fp.baseAddress!, m: c, n: d, k: rows,
                                      transA: true, alpha: scale)
                        }
                    }
                }
                var gradB = [Float](repeating: 0, count: c)
                for r in 0..<rows { for j in 0..<c { gradB[j] += z[r * c + j] } }
                // SGD with momentum and weight decay (torch.optim.SGD, dampening 0, no Nesterov).
                for i in 0..<(c * d) {
                    let g = gradW[i] + o.weightDecay * weight[i]
                    velocityW[i] = firstStep ? g : o.momentum * velocityW[i] + g
                    weight[i] -= lr * velocityW[i]
                }
                for j in 0..<c {
                    let g = gradB[j] * scale + o.weightDecay * bias[j]
                    velocityB[j] = firstStep ? g : o.momentum * velocityB[j] + g
                    bias[j] -= lr * velocityB[j]
                }
                firstStep = false
                epochLoss += batchLoss
                epochPixels += batchPixels
                b0 += nb
            }
            let mean = epochPixels > 0 ? epochLoss / Double(epochPixels) : 0
            losses.append(mean)
            progress?(epoch, mean)
        }
        return losses
    }
}
