import CNecoSupport
import NecoCore
import NecoEval

#if canImport(Glibc)
import Glibc
#endif

// Evaluation entry points of neco.h ("Evaluation" section): in-context (Hummingbird) label
// prediction from a labelled patch index. Validation first, then NecoEval; no numerics here.

enum PredictLimits {
    static let maxClasses: Int32 = 1 << 16
    /// Query rows searched per chunk, so that the (rows, k) scratch stays small.
    static let chunkRows = 4096
}

@_cdecl("neco_predict_default_params")
public func neco_predict_default_params() -> neco_predict_params {
    neco_predict_params(k: 30, n_classes: 0, temperature: 0.02)
}

/// Checks a (rows, dim) query block: non-negative, no overflow, within the per-call limit.
private func queryRows(_ rows: Int64, _ dim: Int) throws -> Int {
    guard rows >= 0 else { throw NecoError.invalidArgument("n_queries = \(rows) is negative") }
    guard let r = Int(exactly: rows) else { throw NecoError.invalidArgument("n_queries = \(rows) is too large") }
    _ = try checkedProduct([r, dim], limit: IndexLimits.maxBlockFloats, "n_queries × dim")
    return r
}

@_cdecl("neco_index_predict")
public func neco_index_predict(_ index: OpaquePointer?, _ queries: UnsafePointer<Float>?, _ nQueries: Int64,
                               _ params: UnsafePointer<neco_predict_params>?,
                               _ outScores: UnsafeMutablePointer<Float>?, _ scoresCapacity: Int,
                               _ outLabels: UnsafeMutablePointer<Int32>?, _ labelsCapacity: Int) -> neco_status {
    guarded("neco_index_predict") {
        let h = try unbox(index, "index", as: IndexHandle.self)
        let bank = h.index
        guard let queries else { throw NecoError.invalidArgument("queries is NULL") }
        guard outScores != nil || outLabels != nil else {
            throw NecoError.invalidArgument("out_scores and out_labels are both NULL")
        }
        let p = params?.pointee ?? neco_predict_default_params()
        guard p.k >= 1, p.k <= IndexLimits.maxK else {
            throw NecoError.invalidArgument("params.k = \(p.k) out of range 1...\(IndexLimits.maxK)")
        }
        guard p.temperature > 0, p.temperature.isFinite else {
            throw NecoError.invalidArgument("params.temperature = \(p.temperature) must be positive and finite")
        }
        guard p.n_classes >= 0, p.n_classes <= PredictLimits.maxClasses else {
            throw NecoError.invalidArgument("params.n_classes = \(p.n_classes) out of range 0...\(PredictLimits.maxClasses) (0 = from the index)")
        }
        let rows = try queryRows(nQueries, bank.dim)
        guard bank.count > 0 else { throw NecoError.invalidArgument("the index is empty: add labelled rows first") }
        let k = Int(p.k)
        guard k <= bank.count else {
            throw NecoError.shape("params.k = \(k) is larger than the index (\(bank.count) rows)")
        }
        // Classes: given, or 1 + the largest label; an index without any label is refused.
        var maxLabel: Int32 = -1
        for i in 0..<bank.count { maxLabel = max(maxLabel, bank.label(i) ?? -1) }
        guard maxLabel >= 0 else {
            throw NecoError.invalidArgument("the index has no labels: add rows with labels (neco_index_add with a labels array) to predict from it")
        }
        guard p.n_classes > 0 || Int(maxLabel) < Int(PredictLimits.maxClasses) else {
            throw NecoError.invalidArgument("the index holds label \(maxLabel): with params.n_classes = 0 the classes are 1 + the "
                                            + "largest label, at most \(PredictLimits.maxClasses); give n_classes or smaller labels")
        }
        let classes = p.n_classes > 0 ? Int(p.n_classes) : Int(maxLabel) + 1
        guard Int(maxLabel) < classes else {
            throw NecoError.invalidArgument("the index holds label \(maxLabel), which is not below params.n_classes = \(classes)")
        }
        if outScores != nil {
            let need = try checkedProduct([rows, classes], "n_queries × n_classes")
            let have = try capacity(scoresCapacity, "scores_capacity")
            guard have >= need else {
                throw NecoError.shape("scores_capacity = \(have) elements, need \(need) (\(rows) queries × \(classes) classes)")
            }
        }
        if outLabels != nil {
            let have = try capacity(labelsCapacity, "labels_capacity")
            guard have >= rows else { throw NecoError.shape("labels_capacity = \(have) elements, need \(rows) (one per query)") }
        }
        if rows == 0 { return }

        // Chunks of queries: search, check the voters' labels, vote, arg-max.
        let chunk = min(rows, PredictLimits.chunkRows)
        let (slots, o1) = chunk.multipliedReportingOverflow(by: k)
        let (scoreSlots, o2) = chunk.multipliedReportingOverflow(by: classes)
        guard !o1, !o2,
              let idx = UnsafeMutablePointer<Int64>.allocateOrNil(slots),
              let sims = UnsafeMutablePointer<Float>.allocateOrNil(slots),
              let labs = UnsafeMutablePointer<Int32>.allocateOrNil(slots),
              let scores = UnsafeMutablePointer<Float>.allocateOrNil(scoreSlots) else {
            throw NecoError(.outOfMemory, "cannot allocate the scratch of \(chunk) queries × k = \(k)")
        }
        defer { free(idx); free(sims); free(labs); free(scores) }
        var r0 = 0
        while r0 < rows {
            let n = min(chunk, rows - r0)
            try bank.search(queries: queries + r0 * bank.dim, rows: n, k: k, indices: idx, similarities: sims, labels: labs)
            for i in 0..<(n * k) where labs[i] < 0 || Int(labs[i]) >= classes {
                let row = idx[i]
                if labs[i] < 0 {
                    throw NecoError.invalidArgument("index row \(row) has no label (-1) but is among the \(k) nearest rows of query \(r0 + i / k): every row that can vote needs a label")
                }
                throw NecoError.invalidArgument("index row \(row) has label \(labs[i]), not below n_classes = \(classes)")
            }
            LabelVote.voteHard(out: scores, labels: labs, similarities: sims, rows: n, k: k, temperature: p.temperature,
                               classes: classes)
            if let outScores { (outScores + r0 * classes).update(from: scores, count: n * classes) }
            if let outLabels {
                for r in 0..<n {
                    let row = scores + r * classes
                    var best = 0
                    for c in 1..<max(classes, 1) where row[c] > row[best] { best = c }
                    outLabels[r0 + r] = Int32(best)
                }
            }
            r0 += n
        }
    }
}
