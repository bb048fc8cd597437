import NecoCore

/// Overclustering / clustering evaluation (NECO-SPEC §6.3).
///
/// Letters: I images, h×w patch grid, D feature dim, d PCA dim, K clusters, C classes, S mask side.
///
/// 1. the patch features of all I images, (I·h·w, D), are standardised per dimension and
///    projected to d = 50 principal components;
/// 2. k-means with K clusters (`KMeans`, faiss semantics, `iterations`, `redo`) for each seed;
/// 3. each image's (h, w) cluster map is resized (nearest, PyTorch rule) to S×S (S = 100), the
///    ground truth likewise; ignore pixels are dropped;
/// 4. K = C: Hungarian matching; K > C: many-to-one by precision; mIoU over the C classes;
/// 5. the reported value is the mean over the seeds.
public enum Overcluster {
    /// The overclustering counts of the protocol (NECO-SPEC §6.3, paper Table 1(a): K ∈ {GT, 300,
    /// 500} on VOC and COCO-Things; NeCo's README reports K = 500).
    public static let overclusterCounts = [300, 500]

    /// The protocol's cluster counts for C classes: K = C (Hungarian matching), then
    /// `overclusterCounts` (many-to-one).
    public static func defaultClusterCounts(classes: Int) -> [Int] { [classes] + overclusterCounts }

    public struct Options: Sendable {
        public var pcaDim = 50
        public var iterations = 100
        public var redo = 5
        public var seeds: [UInt64] = [0, 1, 2, 3, 4]
        public var maskSize = 100
        public init() {}
    }

    /// The clustering of the reduced features, reused across several K.
    public struct Prepared: Sendable {
        /// (I·h·w, d) standardised, PCA-reduced features.
        public let reduced: [Float]
        public let dim: Int
        public let images: Int
        public let gridHeight: Int
        public let gridWidth: Int
        /// Fraction of the variance kept by the d components.
        public let explainedVariance: Double
    }

    public struct Result: Sendable {
        public var clusters: Int
        public var matching: Matching
        /// One score per seed.
        public var perSeed: [SegmentationScore]
        /// Mean over seeds of the per-class IoU.
        public var perClassMean: [Double]
        public var mIoU: Double { perSeed.isEmpty ? 0 : perSeed.map(\.mIoU).reduce(0, +) / Double(perSeed.count) }
        public var mIoUStd: Double {
            let m = mIoU
            let n = Double(max(perSeed.count, 1))
            return (perSeed.map { ($0.mIoU - m) * ($0.mIoU - m) }.reduce(0, +) / n).squareRoot()
        }
    }

    /// Step 1: standardise and reduce (I, h, w, D) features.
    ///
    /// - Throws: `.shape` when the feature count does not match; `.invalidArgument` for a bad d.
    public static func prepare(features: [Float], images: Int, gridHeight gh: Int, gridWidth gw: Int, dim: Int,
                               pcaDim: Int = 50) throws -> Prepared {
        let n = images * gh * gw
        guard images >= 1, gh >= 1, gw >= 1, dim >= 1 else {
            throw NecoError.invalidArgument("clustering needs at least one image with a non-empty grid")
        }
        guard features.count == n * dim else {
            throw NecoError.shape("\(features.count) feature values for \(images) images × \(gh)×\(gw) patches × \(dim)")
        }
        var x = features
        x.withUnsafeMutableBufferPointer { FeatureReduction.standardize($0.baseAddress!, rows: n, dim: dim) }
        let d = min(pcaDim, dim)
        let (proj, explained) = try x.withUnsafeBufferPointer {
            try PrincipalComponents.project($0.baseAddress!, rows: n, dim: dim, outDim: d)
        }
        return Prepared(reduced: proj, dim: d, images: images, gridHeight: gh, gridWidth: gw,
                        explainedVariance: explained.reduce(0, +))
    }

    /// Steps 2–5 for one K. `labels[i]` is image i's ground truth at any size (resized here).
    ///
    /// - Throws: `.shape` when the label count differs from the image count; `.invalidArgument`
    ///   when K exceeds the number of patches; `.format` for a class ≥ C.
    public static func evaluate(_ prepared: Prepared, labels: [LabelMap], classes: Int, clusters k: Int,
                                options: Options = Options()) throws -> Result {
        guard labels.count == prepared.images else {
            throw NecoError.shape("\(labels.count) label maps for \(prepared.images) images")
        }
        guard !options.seeds.isEmpty else { throw NecoError.invalidArgument("no k-means seeds given") }
        let s = options.maskSize, gh = prepared.gridHeight, gw = prepared.gridWidth
        let gts = labels.map { $0.resizedNearest(width: s, height: s, rule: .torch).labels }
        for (i, g) in gts.enumerated() {
            for v in g where v != LabelMap.ignore && Int(v) >= classes {
                throw NecoError.format("label map of image \(i) has class \(v); there are \(classes) classes")
            }
        }
        let matching: Matching = k == classes ? .hungarian : (k > classes ? .manyToOne : .hungarian)
        var perSeed: [SegmentationScore] = []
        for seed in options.seeds {
            let km = try KMeans.fit(prepared.reduced, dim: prepared.dim, clusters: k, iterations: options.iterations,
                                    redo: options.redo, seed: seed)
            var cm = try ConfusionMatrix(gtClasses: classes, predClasses: k)
            for i in 0..<prepared.images {
                let map = Array(km.assignment[(i * gh * gw)..<((i + 1) * gh * gw)])
                let up = NearestRule.resize(map, height: gh, width: gw, outHeight: s, outWidth: s, rule: .torch)
                try cm.add(gt: gts[i], pred: up)
            }
            perSeed.append(matching.score(cm))
        }
        var mean = [Double](repeating: 0, count: classes)
        for sc in perSeed { for c in 0..<classes { mean[c] += sc.perClass[c] / Double(perSeed.count) } }
        return Result(clusters: k, matching: matching, perSeed: perSeed, perClassMean: mean)
    }
}
