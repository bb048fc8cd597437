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
}

@_cdecl("neco_predict_default_params")
public func neco_predict_default_params() -> neco_predict_params {
    neco_predict_params(struct_size: MemoryLayout<neco_predict_params>.size, k: 30, n_classes: 0, temperature: 0.02)
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
        let p = try readParams(params, Int32(NECO_SUPPORT_PREDICT_PARAMS), neco_predict_default_params(), "neco_predict_params")
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
        let scores = try outScores.map { UnsafeMutableBufferPointer(start: $0, count: try capacity(scoresCapacity, "scores_capacity")) }
        let labels = try outLabels.map { UnsafeMutableBufferPointer(start: $0, count: try capacity(labelsCapacity, "labels_capacity")) }
        // Searching, voting and the arg-max are PatchIndex.predict's (NecoEval).
        try bank.predict(queries: queries, rows: rows, k: Int(p.k), temperature: p.temperature,
                         classes: p.n_classes > 0 ? Int(p.n_classes) : nil, scores: scores, labels: labels)
    }
}
