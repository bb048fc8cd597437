import CNecoSupport
import NecoCore
import NecoEval

#if canImport(Glibc)
import Glibc
#endif

/// What a `neco_index *` points at.
final class IndexHandle: Handle {
    override class var cName: String { "neco_index" }
    let index: PatchIndex
    init(_ index: PatchIndex) { self.index = index }
}

enum IndexLimits {
    static let maxK: Int32 = 1 << 20
    /// Largest query or feature block passed in one call, in floats (16 GiB).
    static let maxBlockFloats = 1 << 32
}

@_cdecl("neco_index_init")
public func neco_index_init(_ dim: Int32, _ outIndex: UnsafeMutablePointer<OpaquePointer?>?) -> neco_status {
    guarded("neco_index_init") {
        let out = try clearOut(outIndex, "out_index")
        guard dim >= 1, Int(dim) <= PatchIndex.maxDim else {
            throw NecoError.invalidArgument("dim = \(dim) out of range 1...\(PatchIndex.maxDim)")
        }
        out.pointee = box(IndexHandle(try PatchIndex(dim: Int(dim))))
    }
}

@_cdecl("neco_index_free")
public func neco_index_free(_ index: OpaquePointer?) {
    release(index, "neco_index_free", as: IndexHandle.self)
}

/// Checks a (rows, dim) float block: non-negative count, no overflow, within the limit.
private func checkRows(_ rows: Int64, _ dim: Int, _ name: String) throws -> Int {
    guard rows >= 0 else { throw NecoError.invalidArgument("\(name) = \(rows) is negative") }
    guard let r = Int(exactly: rows) else { throw NecoError.invalidArgument("\(name) = \(rows) is too large") }
    _ = try checkedProduct([r, dim], limit: IndexLimits.maxBlockFloats, name)
    return r
}

@_cdecl("neco_index_add")
public func neco_index_add(_ index: OpaquePointer?, _ features: UnsafePointer<Float>?, _ nRows: Int64,
                           _ labels: UnsafePointer<Int32>?) -> neco_status {
    guarded("neco_index_add") {
        let h = try unbox(index, "index", as: IndexHandle.self)
        guard let features else { throw NecoError.invalidArgument("features is NULL") }
        let rows = try checkRows(nRows, h.index.dim, "n_rows")
        try h.index.add(features, rows: rows, labels: labels)
    }
}

@_cdecl("neco_index_size")
public func neco_index_size(_ index: OpaquePointer?) -> Int64 {
    do {
        return Int64(try unbox(index, "index", as: IndexHandle.self).index.count)
    } catch {
        note("neco_index_size", (error as? NecoError)?.message ?? "\(error)")
        return 0
    }
}

@_cdecl("neco_index_dim")
public func neco_index_dim(_ index: OpaquePointer?) -> Int32 {
    do {
        return Int32(clamping: try unbox(index, "index", as: IndexHandle.self).index.dim)
    } catch {
        note("neco_index_dim", (error as? NecoError)?.message ?? "\(error)")
        return 0
    }
}

@_cdecl("neco_index_save")
public func neco_index_save(_ index: OpaquePointer?, _ path: UnsafePointer<CChar>?) -> neco_status {
    guarded("neco_index_save") {
        let h = try unbox(index, "index", as: IndexHandle.self)
        let file = try cString(path, "path")
        guard !FileIO.isDirectory(file) else { throw NecoError.invalidArgument("path \(file) is a folder") }
        try h.index.save(to: file)
    }
}

@_cdecl("neco_index_load")
public func neco_index_load(_ path: UnsafePointer<CChar>?, _ outIndex: UnsafeMutablePointer<OpaquePointer?>?) -> neco_status {
    guarded("neco_index_load") {
        let out = try clearOut(outIndex, "out_index")
        let file = try cString(path, "path")
        out.pointee = box(IndexHandle(try PatchIndex.load(path: file)))
    }
}

/// Checks k and the output capacity for `rows` queries; returns k.
private func checkOutputs(rows: Int, k: Int32, available: Int, capacity cap: Int, anyOutput: Bool) throws -> Int {
    guard anyOutput else { throw NecoError.invalidArgument("all outputs are NULL") }
    guard k >= 1, k <= IndexLimits.maxK else {
        throw NecoError.invalidArgument("k = \(k) out of range 1...\(IndexLimits.maxK)")
    }
    guard Int(k) <= available else {
        throw NecoError.shape("k = \(k) exceeds the \(available) rows searched")
    }
    let have = try capacity(cap, "capacity")
    let need = try checkedProduct([rows, Int(k)], "n_queries × k")
    guard have >= need else {
        throw NecoError.shape("capacity = \(have) elements, need \(need) (\(rows) queries × k = \(k))")
    }
    return Int(k)
}

@_cdecl("neco_index_search")
public func neco_index_search(_ index: OpaquePointer?, _ queries: UnsafePointer<Float>?, _ nQueries: Int64, _ k: Int32,
                              _ outIndices: UnsafeMutablePointer<Int64>?, _ outSimilarities: UnsafeMutablePointer<Float>?,
                              _ outLabels: UnsafeMutablePointer<Int32>?, _ capacity: Int) -> neco_status {
    guarded("neco_index_search") {
        let h = try unbox(index, "index", as: IndexHandle.self)
        guard let queries else { throw NecoError.invalidArgument("queries is NULL") }
        let rows = try checkRows(nQueries, h.index.dim, "n_queries")
        let kk = try checkOutputs(rows: rows, k: k, available: h.index.count, capacity: capacity,
                                  anyOutput: outIndices != nil || outSimilarities != nil || outLabels != nil)
        if rows == 0 { return }
        // PatchIndex always writes indices; use scratch when the caller did not ask for them.
        if let outIndices {
            try h.index.search(queries: queries, rows: rows, k: kk, indices: outIndices,
                               similarities: outSimilarities, labels: outLabels)
        } else {
            let n = rows * kk
            guard let scratch = UnsafeMutablePointer<Int64>.allocateOrNil(n) else {
                throw NecoError(.outOfMemory, "cannot allocate \(n) indices")
            }
            defer { free(scratch) }
            try h.index.search(queries: queries, rows: rows, k: kk, indices: scratch,
                               similarities: outSimilarities, labels: outLabels)
        }
    }
}

@_cdecl("neco_match_patches")
public func neco_match_patches(_ a: UnsafePointer<Float>?, _ nA: Int64, _ b: UnsafePointer<Float>?, _ nB: Int64,
                               _ dim: Int32, _ k: Int32, _ outIndices: UnsafeMutablePointer<Int64>?,
                               _ outSimilarities: UnsafeMutablePointer<Float>?, _ capacity: Int) -> neco_status {
    guarded("neco_match_patches") {
        guard let a else { throw NecoError.invalidArgument("a is NULL") }
        guard let b else { throw NecoError.invalidArgument("b is NULL") }
        guard dim >= 1, Int(dim) <= PatchIndex.maxDim else {
            throw NecoError.invalidArgument("dim = \(dim) out of range 1...\(PatchIndex.maxDim)")
        }
        let d = Int(dim)
        let ra = try checkRows(nA, d, "n_a")
        let rb = try checkRows(nB, d, "n_b")
        let kk = try checkOutputs(rows: ra, k: k, available: rb, capacity: capacity,
                                  anyOutput: outIndices != nil || outSimilarities != nil)
        if ra == 0 { return }
        if let outIndices {
            try PatchIndex.nearest(from: a, rows: ra, to: b, rows: rb, dim: d, k: kk,
                                   indices: outIndices, similarities: outSimilarities)
        } else {
            let n = ra * kk
            guard let scratch = UnsafeMutablePointer<Int64>.allocateOrNil(n) else {
                throw NecoError(.outOfMemory, "cannot allocate \(n) indices")
            }
            defer { free(scratch) }
            try PatchIndex.nearest(from: a, rows: ra, to: b, rows: rb, dim: d, k: kk,
                                   indices: scratch, similarities: outSimilarities)
        }
    }
}
