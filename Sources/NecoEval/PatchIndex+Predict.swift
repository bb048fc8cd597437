import NecoCore

#if canImport(Glibc)
import Glibc
#endif

/// In-context prediction from a hard-labelled `PatchIndex` (the Hummingbird vote of
/// `SegmentationMemory` with one-hot labels; C: neco_index_predict), down to pixel labels.
///
/// Letters: Q query rows, D width, k voters, C classes, h × w patch grid, H × W pixels.
///
///     w_j = softmax_j(cos(q, row_j) / τ)   over the k nearest rows j
///     scores[q, c] = Σ_j w_j · [label_j = c]                   (each row sums to 1)
///     labels[q] = arg-max_c scores[q, c]                         (lowest class on ties)
extension PatchIndex {
    /// Queries per search-and-vote chunk (bounds the (chunk, k) and (chunk, C) scratch).
    static let predictChunkRows = 4096
    /// The most classes a prediction may have (65536): with `classes` nil every label must be
    /// below it, so one huge label cannot ask for gigabytes of scores.
    public static let maxPredictClasses = 1 << 16

    /// 1 + the largest label in the index, or nil when no row has a label.
    public var labelClassCount: Int? {
        guard count > 0, let labelStore else { return nil }
        var mx: Int32 = -1
        for i in 0..<count { mx = max(mx, labelStore[i]) }
        return mx >= 0 ? Int(mx) + 1 : nil
    }

    /// Class scores (Q, C) and arg-max labels (Q) of `rows` queries (Q, D), into caller buffers
    /// (either may be nil, not both; each holds at least Q·C resp. Q elements). `classes` nil =
    /// `labelClassCount`.
    ///
    /// - Throws: `.invalidArgument` for an empty index, one without labels, k < 1, τ ≤ 0 or not
    ///   finite, a label ≥ C in the index, a voting row without a label, no output, non-finite
    ///   queries; `.shape` for k larger than the index or a buffer that is too small;
    ///   `.outOfMemory` for the scratch.
    public func predict(queries: UnsafePointer<Float>, rows: Int, k: Int, temperature: Float, classes: Int? = nil,
                        scores: UnsafeMutableBufferPointer<Float>?, labels: UnsafeMutableBufferPointer<Int32>?) throws {
        guard scores != nil || labels != nil else { throw NecoError.invalidArgument("no output: scores and labels are both absent") }
        guard rows >= 0 else { throw NecoError.invalidArgument("\(rows) query rows") }
        guard count > 0 else { throw NecoError.invalidArgument("the index is empty: add labelled rows first") }
        guard k >= 1 else { throw NecoError.invalidArgument("k = \(k) must be ≥ 1") }
        guard k <= count else { throw NecoError.shape("k = \(k) is larger than the index (\(count) rows)") }
        guard temperature > 0, temperature.isFinite else {
            throw NecoError.invalidArgument("temperature = \(temperature) must be positive and finite")
        }
        guard let fromIndex = labelClassCount else {
            throw NecoError.invalidArgument("the index has no labels: add rows with labels to predict from it")
        }
        guard classes != nil || fromIndex <= Self.maxPredictClasses else {
            throw NecoError.invalidArgument("the index holds label \(fromIndex - 1): without a class count the classes are 1 + the "
                                            + "largest label, at most \(Self.maxPredictClasses); give n_classes or smaller labels")
        }
        let c = classes ?? fromIndex
        guard c >= 1 else { throw NecoError.invalidArgument("classes = \(c) must be ≥ 1") }
        guard fromIndex <= c else {
            throw NecoError.invalidArgument("the index holds label \(fromIndex - 1), which is not below n_classes = \(c)")
        }
        if let scores {
            let (need, o) = rows.multipliedReportingOverflow(by: c)
            guard !o, scores.count >= need else {
                throw NecoError.shape("the scores buffer holds \(scores.count) elements, need \(rows) queries × \(c) classes")
            }
        }
        if let labels, labels.count < rows {
            throw NecoError.shape("the labels buffer holds \(labels.count) elements, need \(rows) (one per query)")
        }
        if rows == 0 { return }

        let chunk = min(rows, PatchIndex.predictChunkRows)
        let (slots, o1) = chunk.multipliedReportingOverflow(by: k)
        let (scoreSlots, o2) = chunk.multipliedReportingOverflow(by: c)
        guard !o1, !o2,
              let idx = UnsafeMutablePointer<Int64>.allocateOrNil(slots),
              let sims = UnsafeMutablePointer<Float>.allocateOrNil(slots),
              let labs = UnsafeMutablePointer<Int32>.allocateOrNil(slots),
              let votes = UnsafeMutablePointer<Float>.allocateOrNil(scoreSlots) else {
            throw NecoError(.outOfMemory, "cannot allocate the scratch of \(chunk) queries × k = \(k)")
        }
        defer { free(idx); free(sims); free(labs); free(votes) }
        var r0 = 0
        while r0 < rows {
            let n = min(chunk, rows - r0)
            try search(queries: queries + r0 * dim, rows: n, k: k, indices: idx, similarities: sims, labels: labs)
            for i in 0..<(n * k) where labs[i] < 0 || Int(labs[i]) >= c {
                if labs[i] < 0 {
                    throw NecoError.invalidArgument("index row \(idx[i]) has no label (-1) but is among the \(k) nearest rows of query \(r0 + i / k): every row that can vote needs a label")
                }
                throw NecoError.invalidArgument("index row \(idx[i]) has label \(labs[i]), not below n_classes = \(c)")
            }
            LabelVote.voteHard(out: votes, labels: labs, similarities: sims, rows: n, k: k, temperature: temperature, classes: c)
            if let scores { (scores.baseAddress! + r0 * c).update(from: votes, count: n * c) }
            if let labels {
                for r in 0..<n {
                    let row = votes + r * c
                    var best = 0
                    for j in 1..<max(c, 1) where row[j] > row[best] { best = j }
                    labels[r0 + r] = Int32(best)
                }
            }
            r0 += n
        }
    }

    /// Pixel labels of one picture: its patch features (h·w, D) vote as in `predict`, the
    /// (h, w, C) scores are upsampled bilinearly (half-pixel centres) to H × W, and each pixel
    /// takes its arg-max class. Returns (H·W) labels in raster order.
    public func predictPixels(queries: UnsafePointer<Float>, gridHeight h: Int, gridWidth w: Int,
                              outHeight: Int, outWidth: Int, k: Int, temperature: Float, classes: Int? = nil) throws -> [Int32] {
        guard h >= 1, w >= 1, outHeight >= 1, outWidth >= 1 else {
            throw NecoError.invalidArgument("grid \(h)×\(w) and output \(outHeight)×\(outWidth) must be at least 1×1")
        }
        guard let c = classes ?? labelClassCount else {
            throw NecoError.invalidArgument("the index has no labels: add rows with labels to predict from it")
        }
        var scores = [Float](repeating: 0, count: h * w * c)
        try scores.withUnsafeMutableBufferPointer {
            try predict(queries: queries, rows: h * w, k: k, temperature: temperature, classes: c, scores: $0, labels: nil)
        }
        return BilinearPlan(inHeight: h, inWidth: w, outHeight: outHeight, outWidth: outWidth).argmax(scores, channels: c)
    }
}
