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

@_cdecl("neco_eval_default_params")
public func neco_eval_default_params() -> neco_eval_params {
    let p = InContextProtocol()
    return neco_eval_params(struct_size: MemoryLayout<neco_eval_params>.size, size: 224, batch: 8, max_train: 0, max_val: 0,
                            k: Int32(p.k), temperature: p.temperature, memory_size: Int32(p.memorySize))
}

@_cdecl("neco_eval_incontext")
public func neco_eval_incontext(_ model: OpaquePointer?, _ benchDir: UnsafePointer<CChar>?,
                                _ params: UnsafePointer<neco_eval_params>?, _ outResult: UnsafeMutablePointer<neco_eval_result>?,
                                _ perClass: UnsafeMutablePointer<Double>?, _ perClassCapacity: Int) -> neco_status {
    guarded("neco_eval_incontext") {
        let m = try unbox(model, "model", as: ModelHandle.self)
        let dir = try cString(benchDir, "bench_dir")
        guard let outResult else { throw NecoError.invalidArgument("out_result is NULL") }
        let p = try readParams(params, Int32(NECO_SUPPORT_EVAL_PARAMS), neco_eval_default_params(), "neco_eval_params")
        guard p.size >= 1, p.size <= ExtractLimits.maxInputSide else {
            throw NecoError.invalidArgument("params.size = \(p.size) out of range 1...\(ExtractLimits.maxInputSide)")
        }
        guard p.batch >= 1, p.batch <= 256 else { throw NecoError.invalidArgument("params.batch = \(p.batch) out of range 1...256") }
        guard p.max_train >= 0, p.max_val >= 0 else {
            throw NecoError.invalidArgument("params.max_train / max_val = \(p.max_train) / \(p.max_val) must be ≥ 0 (0 = all)")
        }
        guard p.k >= 1, p.k <= IndexLimits.maxK else { throw NecoError.invalidArgument("params.k = \(p.k) out of range 1...\(IndexLimits.maxK)") }
        guard p.temperature > 0, p.temperature.isFinite else {
            throw NecoError.invalidArgument("params.temperature = \(p.temperature) must be positive and finite")
        }
        guard p.memory_size >= 0 else { throw NecoError.invalidArgument("params.memory_size = \(p.memory_size) must be ≥ 0") }
        let c = m.model.config
        guard Int(p.size) % c.patchSize == 0 else {
            throw NecoError.shape("params.size = \(p.size) is not a multiple of the patch size \(c.patchSize)")
        }
        let bench = try Benchmark(path: dir)
        let classes = bench.classes.count
        if perClass != nil {
            let have = try capacity(perClassCapacity, "per_class_capacity")
            guard have >= classes else { throw NecoError.shape("per_class_capacity = \(have), need \(classes) (one per class)") }
        }
        let train = p.max_train > 0 ? Array(bench.train.prefix(Int(p.max_train))) : bench.train
        let val = p.max_val > 0 ? Array(bench.val.prefix(Int(p.max_val))) : bench.val
        let cache = try FeatureCache(model: m.model, bench: bench, size: Int(p.size), batch: Int(p.batch))
        cache.progress = { split, done, all, rate in
            log(NECO_LOG_DEBUG, "neco_eval_incontext: features \(split) \(done)/\(all), \(Int(rate * 10) / 10) img/s")
        }
        var proto = InContextProtocol()
        proto.k = Int(p.k)
        proto.temperature = p.temperature
        proto.memorySize = Int(p.memory_size)
        let r = try proto.evaluate(cache, train: train, val: val, classes: classes)
        if let perClass { for (i, v) in r.score.perClass.enumerated() { perClass[i] = v } }
        outResult.pointee = neco_eval_result(miou: r.score.mIoU, pixel_accuracy: r.score.pixelAccuracy, n_classes: Int32(classes),
                                             memory_patches: Int64(r.memoryPatches), n_train: Int64(train.count), n_val: Int64(val.count))
    }
}
