import NecoCore

#if canImport(Glibc)
import Glibc
#endif

/// In-context (dense nearest-neighbour) segmentation, the Hummingbird protocol (NECO-SPEC §6.1).
///
/// Letters: D feature dim, M memory patches, Q query patches, k neighbours, C classes.
///
/// The memory holds L2-normalised training patch features with a soft label each (the class
/// fractions of the patch's pixels). A query patch takes its k most similar memory patches by
/// cosine similarity and votes with their soft labels:
///
///     w_j  = softmax_j( cos(q, key_j) / τ )            j = 1 … k     (k = 30, τ = 0.02)
///     ŷ(q) = Σ_j w_j · label_j                          (C)
///
/// The (h, w, C) patch predictions are then upsampled bilinearly to pixels and arg-maxed
/// (`BilinearPlan.argmax`); the score is mIoU after Hungarian matching (`Matching.hungarian`).
///
/// Thread safety: `predict` may run concurrently; `add` needs exclusive access.
public final class SegmentationMemory: @unchecked Sendable {
    /// The exact cosine top-k over the memory features (labels: the majority class of each patch).
    public let index: PatchIndex
    /// C.
    public let classes: Int
    /// (M, C) soft labels, row i for index row i.
    private var soft: [Float] = []

    /// - Throws: `.invalidArgument` for `classes` outside 1...65536 or a bad `dim`.
    public init(dim: Int, classes: Int) throws {
        guard classes >= 1, classes <= 1 << 16 else {
            throw NecoError.invalidArgument("class count \(classes) out of range 1...65536")
        }
        index = try PatchIndex(dim: dim)
        self.classes = classes
    }

    /// Memory patches M.
    public var count: Int { index.count }

    /// Adds `rows` patches: features (rows, D) and soft labels (rows, C), each row of the latter
    /// non-negative (normally summing to 1).
    ///
    /// - Throws: `.invalidArgument` for negative or non-finite label values (nothing is added);
    ///   as `PatchIndex.add`.
    public func add(features: UnsafePointer<Float>, rows: Int, softLabels: UnsafePointer<Float>) throws {
        guard rows >= 0 else { throw NecoError.invalidArgument("row count \(rows) is negative") }
        let c = classes
        for i in 0..<(rows * c) where !(softLabels[i] >= 0 && softLabels[i].isFinite) {
            throw NecoError.invalidArgument("soft label row \(i / c), class \(i % c) is \(softLabels[i]); must be finite and ≥ 0")
        }
        var hard = [Int32](repeating: 0, count: rows)
        for r in 0..<rows {
            var best = 0
            for j in 1..<max(c, 1) where softLabels[r * c + j] > softLabels[r * c + best] { best = j }
            hard[r] = Int32(best)
        }
        try hard.withUnsafeBufferPointer { try index.add(features, rows: rows, labels: $0.baseAddress) }
        soft.append(contentsOf: UnsafeBufferPointer(start: softLabels, count: rows * c))
    }

    /// Array form of `add(features:rows:softLabels:)`.
    public func add(features: [Float], softLabels: [Float]) throws {
        guard features.count % index.dim == 0 else {
            throw NecoError.shape("\(features.count) values are not a whole number of \(index.dim)-wide rows")
        }
        let rows = features.count / index.dim
        guard softLabels.count == rows * classes else {
            throw NecoError.shape("\(softLabels.count) soft-label values for \(rows) patches × \(classes) classes")
        }
        if rows == 0 { return }
        try features.withUnsafeBufferPointer { f in
            try softLabels.withUnsafeBufferPointer { s in
                try add(features: f.baseAddress!, rows: rows, softLabels: s.baseAddress!)
            }
        }
    }

    /// Adds one training image: its (h·w, D) patch features and its label map, already resized
    /// to the model input (h·patch × w·patch pixels).
    ///
    /// - Throws: `.shape` when the label map is not h·patch × w·patch; as `add`.
    public func add(features: ArraySlice<Float>, gridHeight gh: Int, gridWidth gw: Int, labels: LabelMap,
                    patch: Int) throws {
        guard labels.width == gw * patch, labels.height == gh * patch else {
            throw NecoError.shape("label map is \(labels.width)×\(labels.height) but the \(gh)×\(gw) patch grid covers \(gw * patch)×\(gh * patch) pixels")
        }
        guard features.count == gh * gw * index.dim else {
            throw NecoError.shape("\(features.count) feature values for a \(gh)×\(gw) grid of \(index.dim)-wide patches")
        }
        try add(features: Array(features), softLabels: labels.patchFractions(patch: patch, classes: classes))
    }

    /// Adds only `keep` patches of one training image, chosen as Hummingbird's bounded memory does
    /// (§6.1, `memory_size` set): patches holding rare classes of the image first. With
    /// `keep` ≥ h·w every patch is added. See `rareClassFirst`.
    public func add(features: ArraySlice<Float>, gridHeight gh: Int, gridWidth gw: Int, labels: LabelMap, patch: Int,
                    keep: Int, rng: inout NecoRNG) throws {
        guard labels.width == gw * patch, labels.height == gh * patch else {
            throw NecoError.shape("label map is \(labels.width)×\(labels.height) but the \(gh)×\(gw) patch grid covers \(gw * patch)×\(gh * patch) pixels")
        }
        guard features.count == gh * gw * index.dim else {
            throw NecoError.shape("\(features.count) feature values for a \(gh)×\(gw) grid of \(index.dim)-wide patches")
        }
        let soft = try labels.patchFractions(patch: patch, classes: classes)
        if keep >= gh * gw {
            try add(features: Array(features), softLabels: soft)
            return
        }
        let chosen = SegmentationMemory.rareClassFirst(softLabels: soft, rows: gh * gw, classes: classes, keep: keep, rng: &rng)
        let d = index.dim, base = features.startIndex
        var f = [Float](), s = [Float]()
        f.reserveCapacity(chosen.count * d)
        s.reserveCapacity(chosen.count * classes)
        for r in chosen {
            f += features[(base + r * d)..<(base + (r + 1) * d)]
            s += soft[(r * classes)..<((r + 1) * classes)]
        }
        try add(features: f, softLabels: s)
    }

    /// Hummingbird's patch sampling for a bounded memory: with n_c the number of the image's
    /// patches that contain class c,
    ///
    ///     score(p) = Σ_{c present in p} n_c        (1e6 for a patch with no labelled pixel)
    ///     score(p) ← score(p) · U(0, 1)           (patches with a non-zero score)
    ///
    /// and the `keep` patches with the lowest scores are kept (in increasing patch order), so
    /// patches of small objects beat the background.
    ///
    /// - Parameter softLabels: (rows, C) class fractions of each patch.
    /// - Returns: the kept patch numbers, ascending.
    public static func rareClassFirst(softLabels: [Float], rows: Int, classes c: Int, keep: Int, rng: inout NecoRNG) -> [Int] {
        precondition(softLabels.count == rows * c, "rareClassFirst: \(softLabels.count) values for \(rows) × \(c)")
        if keep >= rows { return Array(0..<rows) }
        if keep <= 0 { return [] }
        var count = [Double](repeating: 0, count: c)
        for r in 0..<rows { for j in 0..<c where softLabels[r * c + j] > 0 { count[j] += 1 } }
        var scores = [Double](repeating: 0, count: rows)
        for r in 0..<rows {
            var s = 0.0
            for j in 0..<c where softLabels[r * c + j] > 0 { s += count[j] }
            scores[r] = s == 0 ? 1e6 : s * rng.uniformDouble()
        }
        let order = (0..<rows).sorted { scores[$0] < scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
        return order.prefix(keep).sorted()
    }

    /// Soft-label predictions (rows, C) for query patches (rows, D).
    ///
    /// - Throws: `.invalidArgument` for k < 1, temperature ≤ 0 or an empty memory; `.shape` when
    ///   k exceeds the memory size.
    public func predict(queries: UnsafePointer<Float>, rows: Int, k: Int = 30, temperature: Float = 0.02) throws -> [Float] {
        guard index.count > 0 else {
            throw NecoError.invalidArgument("the memory bank is empty: add labelled training patches first")
        }
        guard k >= 1 else { throw NecoError.invalidArgument("k = \(k) must be at least 1") }
        guard k <= index.count else {
            throw NecoError.shape("k = \(k) is larger than the memory bank (\(index.count) patches)")
        }
        guard temperature > 0, temperature.isFinite else {
            throw NecoError.invalidArgument("temperature \(temperature) must be positive and finite")
        }
        if rows == 0 { return [] }
        var idx = [Int64](repeating: 0, count: rows * k)
        var sims = [Float](repeating: 0, count: rows * k)
        try idx.withUnsafeMutableBufferPointer { ip in
            try sims.withUnsafeMutableBufferPointer { sp in
                try index.search(queries: queries, rows: rows, k: k, indices: ip.baseAddress!, similarities: sp.baseAddress)
            }
        }
        var out = [Float](repeating: 0, count: rows * classes)
        out.withUnsafeMutableBufferPointer { op in
            soft.withUnsafeBufferPointer { lp in
                LabelVote.vote(out: op.baseAddress!, indices: idx, similarities: sims, rows: rows, k: k,
                               temperature: temperature, classes: classes, soft: lp.baseAddress!)
            }
        }
        return out
    }

    /// Array form of `predict(queries:rows:k:temperature:)`.
    public func predict(_ queries: [Float], k: Int = 30, temperature: Float = 0.02) throws -> [Float] {
        guard queries.count % index.dim == 0 else {
            throw NecoError.shape("\(queries.count) values are not a whole number of \(index.dim)-wide rows")
        }
        let rows = queries.count / index.dim
        if rows == 0 { return [] }
        return try queries.withUnsafeBufferPointer { try predict(queries: $0.baseAddress!, rows: rows, k: k, temperature: temperature) }
    }
}

/// The Hummingbird label vote, shared by `SegmentationMemory` (soft labels) and the C ABI's
/// prediction from a hard-labelled `PatchIndex`.
public enum LabelVote {
    /// out (rows, C) = Σ_j softmax_j(sim_j / τ) · soft[index_j]   with soft (M, C).
    public static func vote(out: UnsafeMutablePointer<Float>, indices: UnsafePointer<Int64>,
                            similarities: UnsafePointer<Float>, rows: Int, k: Int, temperature: Float,
                            classes c: Int, soft: UnsafePointer<Float>) {
        Threads.parallelFor(rows, minChunk: 256) { s, e in
            var w = [Float](repeating: 0, count: k)
            for r in s..<e {
                // Stable softmax over the k similarities.
                var mx = -Float.infinity
                for j in 0..<k { mx = max(mx, similarities[r * k + j]) }
                var sum: Float = 0
                for j in 0..<k {
                    w[j] = expf((similarities[r * k + j] - mx) / temperature)
                    sum += w[j]
                }
                let o = out + r * c
                for i in 0..<c { o[i] = 0 }
                for j in 0..<k {
                    let src = soft + Int(indices[r * k + j]) * c
                    let wj = w[j] / sum
                    for i in 0..<c { o[i] += wj * src[i] }
                }
            }
        }
    }

    /// out (rows, C) = Σ_j softmax_j(sim_j / τ) · onehot(label_j): the vote from the hard labels
    /// that `PatchIndex.search` returns. Every label must be in 0 ..< C (the caller checks).
    public static func voteHard(out: UnsafeMutablePointer<Float>, labels: UnsafePointer<Int32>,
                                similarities: UnsafePointer<Float>, rows: Int, k: Int, temperature: Float,
                                classes c: Int) {
        Threads.parallelFor(rows, minChunk: 256) { s, e in
            var w = [Float](repeating: 0, count: k)
            for r in s..<e {
                var mx = -Float.infinity
                for j in 0..<k { mx = max(mx, similarities[r * k + j]) }
                var sum: Float = 0
                for j in 0..<k {
                    w[j] = expf((similarities[r * k + j] - mx) / temperature)
                    sum += w[j]
                }
                let o = out + r * c
                for i in 0..<c { o[i] = 0 }
                for j in 0..<k { o[Int(labels[r * k + j])] += w[j] / sum }
            }
        }
    }
}
