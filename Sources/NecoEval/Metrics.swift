import NecoCore

// Segmentation metrics of the NeCo evaluations (NECO-SPEC §6.1–§6.3, P22–P23).
//
// Letters: G ground-truth classes, K predicted labels (classes or clusters), P pixels.
//
// Everything goes through one (G, K) confusion matrix of pixel counts. A *mapping* sends each
// predicted label k to a ground-truth class (or −1: unmatched), and the per-class IoU is then
//
//     TP_g = Σ_{k: map[k] = g} n[g, k]
//     FP_g = Σ_{k: map[k] = g} Σ_{g' ≠ g} n[g', k]
//     FN_g = Σ_{k: map[k] ≠ g} n[g, k]
//     IoU_g = TP_g / (TP_g + FP_g + FN_g)        (0 when the denominator is 0)
//     mIoU  = mean over all G classes            (absent classes count as 0, as hbird / Leopart do; P23)
//
// The three mappings of the protocols:
// - identity (linear probe, §6.2: "mIoU without any matching");
// - Hungarian, one-to-one, maximising the summed IoU (in-context §6.1 and K = G clustering §6.3);
// - many-to-one by precision (overclustering K > G, §6.3): each k goes to argmax_g n[g, k] / Σ_g n[g, k].

/// (G, K) pixel counts of ground truth against prediction.
public struct ConfusionMatrix: Sendable, Equatable {
    /// G: ground-truth classes (labels 0 ..< G; anything else must be the ignore label).
    public let gtClasses: Int
    /// K: predicted labels (0 ..< K).
    public let predClasses: Int
    /// (G, K) row-major: `counts[g * K + k]` pixels of class g predicted as k.
    public private(set) var counts: [Int]

    /// - Throws: `.invalidArgument` when a count is below 1 or G·K exceeds 2²⁴.
    public init(gtClasses: Int, predClasses: Int) throws {
        guard gtClasses >= 1, predClasses >= 1 else {
            throw NecoError.invalidArgument("confusion matrix needs at least one class (got \(gtClasses) × \(predClasses))")
        }
        guard gtClasses * predClasses <= 1 << 24 else {
            throw NecoError.invalidArgument("confusion matrix \(gtClasses) × \(predClasses) is too large")
        }
        self.gtClasses = gtClasses
        self.predClasses = predClasses
        counts = [Int](repeating: 0, count: gtClasses * predClasses)
    }

    /// Adds one label map pair. Pixels whose ground truth equals `ignore` are skipped.
    ///
    /// - Parameters:
    ///   - gt: (P) ground-truth classes, each in 0 ..< G or equal to `ignore`.
    ///   - pred: (P) predicted labels, each in 0 ..< K.
    /// - Throws: `.shape` when the sizes differ; `.invalidArgument` for a label out of range
    ///   (the matrix is then left unchanged).
    public mutating func add<A: Collection, B: Collection>(gt: A, pred: B, ignore: Int? = 255) throws
    where A.Element: BinaryInteger, B.Element: BinaryInteger {
        guard gt.count == pred.count else {
            throw NecoError.shape("ground truth has \(gt.count) pixels, prediction \(pred.count)")
        }
        let g = gtClasses, k = predClasses
        var local = counts   // committed only when every pixel is valid
        var i = 0
        for (t, p) in zip(gt, pred) {
            let ti = Int(t), pi = Int(p)
            if let ignore, ti == ignore { i += 1; continue }
            guard ti >= 0, ti < g else {
                throw NecoError.invalidArgument("ground-truth label \(ti) at pixel \(i) is outside 0..<\(g)")
            }
            guard pi >= 0, pi < k else {
                throw NecoError.invalidArgument("predicted label \(pi) at pixel \(i) is outside 0..<\(k)")
            }
            local[ti * k + pi] += 1
            i += 1
        }
        counts = local
    }

    /// Adds the counts of another matrix of the same shape.
    public mutating func add(_ other: ConfusionMatrix) throws {
        guard other.gtClasses == gtClasses, other.predClasses == predClasses else {
            throw NecoError.shape("confusion matrices \(gtClasses)×\(predClasses) and \(other.gtClasses)×\(other.predClasses) differ")
        }
        for i in 0..<counts.count { counts[i] += other.counts[i] }
    }

    /// n[g, k].
    public subscript(g: Int, k: Int) -> Int { counts[g * predClasses + k] }

    /// Pixels counted (ignored ones excluded).
    public var total: Int { counts.reduce(0, +) }

    /// (G) pixels per ground-truth class.
    public var gtTotals: [Int] {
        (0..<gtClasses).map { g in (0..<predClasses).reduce(0) { $0 + counts[g * predClasses + $1] } }
    }

    /// (K) pixels per predicted label.
    public var predTotals: [Int] {
        (0..<predClasses).map { k in (0..<gtClasses).reduce(0) { $0 + counts[$1 * predClasses + k] } }
    }

    /// (G, K) IoU of class g with label k taken alone: n[g,k] / (|g| + |k| − n[g,k]).
    public var pairIoU: [Double] {
        let rt = gtTotals, ct = predTotals, k = predClasses
        var out = [Double](repeating: 0, count: counts.count)
        for g in 0..<gtClasses {
            for j in 0..<k {
                let tp = counts[g * k + j], den = rt[g] + ct[j] - tp
                out[g * k + j] = den > 0 ? Double(tp) / Double(den) : 0
            }
        }
        return out
    }

    /// Per-class IoU and mIoU under `mapping` (K entries: the ground-truth class of each
    /// predicted label, or −1 for none).
    public func score(mapping: [Int]) throws -> SegmentationScore {
        guard mapping.count == predClasses else {
            throw NecoError.shape("mapping has \(mapping.count) entries for \(predClasses) predicted labels")
        }
        let g = gtClasses, k = predClasses
        var tp = [Int](repeating: 0, count: g), fp = tp, fn = tp
        var correct = 0
        for t in 0..<g {
            for j in 0..<k {
                let n = counts[t * k + j]
                if n == 0 { continue }
                let m = mapping[j]
                guard m >= -1, m < g else { throw NecoError.invalidArgument("mapping[\(j)] = \(m) is outside -1..<\(g)") }
                if m == t {
                    tp[t] += n
                    correct += n
                } else {
                    fn[t] += n
                    if m >= 0 { fp[m] += n }
                }
            }
        }
        let iou = (0..<g).map { c -> Double in
            let den = tp[c] + fp[c] + fn[c]
            return den > 0 ? Double(tp[c]) / Double(den) : 0
        }
        let present = gtTotals.map { $0 > 0 }
        let tot = total
        return SegmentationScore(perClass: iou, present: present,
                                 pixelAccuracy: tot > 0 ? Double(correct) / Double(tot) : 0, mapping: mapping)
    }
}

/// The result of a segmentation evaluation.
public struct SegmentationScore: Sendable, Equatable {
    /// (G) IoU per ground-truth class, in [0, 1].
    public var perClass: [Double]
    /// (G) whether the class has any (non-ignored) ground-truth pixel.
    public var present: [Bool]
    /// Fraction of counted pixels whose mapped prediction equals the ground truth.
    public var pixelAccuracy: Double
    /// The mapping used (predicted label → ground-truth class, −1 for none).
    public var mapping: [Int]

    /// Mean IoU over all G classes (absent classes contribute 0; NECO-SPEC P23).
    public var mIoU: Double { perClass.isEmpty ? 0 : perClass.reduce(0, +) / Double(perClass.count) }
    /// Mean IoU over the classes present in the ground truth only.
    public var mIoUPresent: Double {
        let v = zip(perClass, present).filter { $0.1 }.map(\.0)
        return v.isEmpty ? 0 : v.reduce(0, +) / Double(v.count)
    }
}

/// How predicted labels are matched to ground-truth classes.
public enum Matching: String, Sendable, CaseIterable {
    /// Label k is class k (needs K ≤ G; labels ≥ G are unmatched).
    case identity
    /// One-to-one, maximising the summed IoU (`scipy.optimize.linear_sum_assignment` on −IoU).
    case hungarian
    /// Each label to the class in which it has the highest precision.
    case manyToOne

    /// The mapping (K entries) for `confusion`.
    public func mapping(for confusion: ConfusionMatrix) -> [Int] {
        let g = confusion.gtClasses, k = confusion.predClasses
        switch self {
        case .identity:
            return (0..<k).map { $0 < g ? $0 : -1 }
        case .hungarian:
            // Rows must not outnumber columns: solve on the smaller side.
            let iou = confusion.pairIoU
            var mapping = [Int](repeating: -1, count: k)
            if k <= g {
                // rows = predicted labels (K), cols = classes (G), cost = −IoU.
                var cost = [Double](repeating: 0, count: k * g)
                for j in 0..<k { for t in 0..<g { cost[j * g + t] = -iou[t * k + j] } }
                let a = Hungarian.solve(cost: cost, rows: k, cols: g)
                for j in 0..<k { mapping[j] = a[j] }
            } else {
                var cost = [Double](repeating: 0, count: g * k)
                for t in 0..<g { for j in 0..<k { cost[t * k + j] = -iou[t * k + j] } }
                let a = Hungarian.solve(cost: cost, rows: g, cols: k)
                for t in 0..<g { mapping[a[t]] = t }
            }
            return mapping
        case .manyToOne:
            // precision(k → g) = n[g,k] / |k|: the arg-max of the column (lowest g on ties).
            // A label with no pixels keeps class 0; it adds nothing either way.
            return (0..<k).map { j in
                var best = 0, bestCount = -1
                for t in 0..<g where confusion[t, j] > bestCount {
                    best = t
                    bestCount = confusion[t, j]
                }
                return best
            }
        }
    }

    /// `confusion.score(mapping: mapping(for: confusion))`.
    public func score(_ confusion: ConfusionMatrix) -> SegmentationScore {
        // The mapping is built for this matrix, so `score` cannot fail.
        (try? confusion.score(mapping: mapping(for: confusion)))
            ?? SegmentationScore(perClass: [], present: [], pixelAccuracy: 0, mapping: [])
    }
}
