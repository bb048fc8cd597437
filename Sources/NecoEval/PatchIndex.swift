import NecoCore

#if canImport(Glibc)
import Glibc
#endif

/// Exact k-nearest-neighbour search by cosine similarity over a bank of patch features, with an
/// optional integer label per patch (NECO-SPEC §7 "nearest-patch retrieval", §6.1).
///
/// Letters: D feature dim, M bank rows, Q query rows, k neighbours.
///
/// Rows are L2-normalised when added (`x / max(‖x‖₂, 1e-12)`, so a zero row stays zero and is
/// similar to nothing), and queries are normalised the same way, so the score is
///
///     sim[q, m] = ⟨x̂_q, b̂_m⟩ ∈ [−1, 1].
///
/// Search is chunked: a (Qc, D) block of normalised queries times a (Mc, D) block of the bank,
/// transposed, through `Gemm.gemm` gives a (Qc, Mc) similarity tile, and each query row keeps its
/// k best in a small heap (`TopKHeap`) while the tiles stream past. Memory is O(Qc·Mc + Qc·k)
/// whatever the bank size. Results are sorted best first; ties keep the lower bank index first.
///
/// Thread safety: `search` only reads the bank and may run from several threads at once; `add`
/// must not run concurrently with any other call on the same index.
public final class PatchIndex: @unchecked Sendable {
    /// Feature width D.
    public let dim: Int
    /// Rows in the bank, M.
    public internal(set) var count = 0
    /// (capacity, D) normalised rows; malloc'd so that a failed allocation is an error, not a trap.
    var bank: UnsafeMutablePointer<Float>? = nil
    /// (capacity) labels, −1 where none was given.
    var labelStore: UnsafeMutablePointer<Int32>? = nil
    private var capacity = 0

    /// Largest feature width accepted.
    public static let maxDim = 1 << 16
    /// Largest bank, in floats (M·D ≤ 2³², 16 GiB).
    public static let maxBankFloats = 1 << 32
    /// Query rows per GEMM tile, and bank rows per tile: each similarity tile is a
    /// (1024, D) · (4096, D)ᵀ product into 1024 × 4096 floats (16 MiB of scratch). With 1024
    /// query rows every pass over the bank does 4× the work per bank row read and packed that
    /// 256 rows do: on a 1M × 384 bank the GEMMs ran at 94 % of one large sgemm's speed (256:
    /// 83 %) and the whole search about 10 % faster (docs/EVAL.md, `neco bench-index`).
    static let queryTile = 1024
    static let bankTile = 4096
    /// Upper bound on heap slots (Qc·k) held at once; Qc shrinks for large k.
    static let heapBudget = 1 << 22

    /// - Throws: `.invalidArgument` when `dim` is outside 1...`maxDim`.
    public init(dim: Int) throws {
        guard dim >= 1, dim <= PatchIndex.maxDim else {
            throw NecoError.invalidArgument("index dim \(dim) out of range 1...\(PatchIndex.maxDim)")
        }
        self.dim = dim
    }

    deinit {
        free(bank)
        free(labelStore)
    }

    /// Label of bank row `i` (−1 when the row was added without labels), or nil when out of range.
    public func label(_ i: Int) -> Int32? {
        guard i >= 0, i < count, let labelStore else { return nil }
        return labelStore[i]
    }

    /// A copy of bank row `i` (normalised), or nil when out of range.
    public func row(_ i: Int) -> [Float]? {
        guard i >= 0, i < count, let bank else { return nil }
        return Array(UnsafeBufferPointer(start: bank + i * dim, count: dim))
    }

    /// Appends `rows` feature rows (rows, D), row-major, with an optional label per row.
    ///
    /// - Throws: `.invalidArgument` for a negative row count or a non-finite value (nothing is
    ///   added then); `.outOfMemory` when the bank would exceed `maxBankFloats` or memory runs out.
    public func add(_ features: UnsafePointer<Float>, rows: Int, labels: UnsafePointer<Int32>? = nil) throws {
        guard rows >= 0 else { throw NecoError.invalidArgument("row count \(rows) is negative") }
        if rows == 0 { return }
        let (newCount, o1) = count.addingReportingOverflow(rows)
        let (floats, o2) = newCount.multipliedReportingOverflow(by: dim)
        guard !o1, !o2, floats <= PatchIndex.maxBankFloats else {
            throw NecoError(.outOfMemory, "index of \(count) + \(rows) rows × \(dim) exceeds \(PatchIndex.maxBankFloats) floats")
        }
        try PatchIndex.checkFinite(features, rows: rows, dim: dim, what: "features")
        try reserve(newCount)
        guard let bank, let labelStore else { throw NecoError(.internal, "index storage missing") }
        let dst = bank + count * dim
        dst.update(from: features, count: rows * dim)
        PatchIndex.normalizeRows(dst, rows: rows, dim: dim)
        if let labels {
            (labelStore + count).update(from: labels, count: rows)
        } else {
            (labelStore + count).update(repeating: -1, count: rows)
        }
        count = newCount
    }

    /// Grows the storage to hold at least `rows` rows (doubling).
    func reserve(_ rows: Int) throws {
        if rows <= capacity { return }
        var newCap = max(rows, min(capacity * 2, PatchIndex.maxBankFloats / dim), 64)
        newCap = max(newCap, rows)
        guard let nb = realloc(bank, newCap * dim * MemoryLayout<Float>.stride) else {
            throw NecoError(.outOfMemory, "cannot grow the index to \(newCap) rows × \(dim)")
        }
        bank = nb.bindMemory(to: Float.self, capacity: newCap * dim)
        guard let nl = realloc(labelStore, newCap * MemoryLayout<Int32>.stride) else {
            throw NecoError(.outOfMemory, "cannot grow the index labels to \(newCap) rows")
        }
        labelStore = nl.bindMemory(to: Int32.self, capacity: newCap)
        capacity = newCap
    }

    /// The `k` most similar bank rows of every query row.
    ///
    /// - Parameters:
    ///   - queries: (rows, D) row-major, not necessarily normalised.
    ///   - indices: (rows, k) bank row numbers, best first.
    ///   - similarities: (rows, k) cosine similarities, or nil.
    ///   - labels: (rows, k) labels of those rows, or nil.
    /// - Throws: `.invalidArgument` for `k < 1`, `rows < 0` or non-finite queries; `.shape` when
    ///   `k` exceeds the bank size; `.outOfMemory` when scratch cannot be allocated.
    public func search(queries: UnsafePointer<Float>, rows: Int, k: Int,
                       indices: UnsafeMutablePointer<Int64>,
                       similarities: UnsafeMutablePointer<Float>? = nil,
                       labels: UnsafeMutablePointer<Int32>? = nil) throws {
        try search(queries: queries, rows: rows, k: k, indices: indices, similarities: similarities, labels: labels,
                   queryTile: PatchIndex.queryTile, bankTile: PatchIndex.bankTile)
    }

    /// `search` with other tile sizes (the throughput bench); results do not depend on them.
    func search(queries: UnsafePointer<Float>, rows: Int, k: Int, indices: UnsafeMutablePointer<Int64>,
                similarities: UnsafeMutablePointer<Float>?, labels: UnsafeMutablePointer<Int32>?,
                queryTile: Int, bankTile: Int) throws {
        precondition(queryTile >= 1 && bankTile >= 1, "search: tiles must be positive")
        guard k >= 1 else { throw NecoError.invalidArgument("k = \(k) must be at least 1") }
        // Room for OpenBLAS's own buffers before the first GEMM (it would retry a failed mmap forever).
        try Memory.reserve(Memory.blasHeadroom, of: UInt8.self, "a search (work buffers of the similarity GEMMs)")
        guard rows >= 0 else { throw NecoError.invalidArgument("query row count \(rows) is negative") }
        guard k <= count else {
            throw NecoError.shape("k = \(k) exceeds the \(count) rows in the index")
        }
        if rows == 0 { return }
        try PatchIndex.checkFinite(queries, rows: rows, dim: dim, what: "queries")
        guard let bank, let labelStore else { throw NecoError(.internal, "index storage missing") }

        let d = dim, m = count
        let qTile = max(1, min(queryTile, rows, PatchIndex.heapBudget / k))
        let bTile = min(bankTile, m)
        let q = try Scratch<Float>(qTile * d)             // normalised query tile (Qc, D)
        let tile = try Scratch<Float>(qTile * bTile)      // similarity tile (Qc, Mc)
        let heapSims = try Scratch<Float>(qTile * k)      // (Qc, k)
        let heapIdxStore = try Scratch<Int>(qTile * k)    // (Qc, k)
        let heapIdx = heapIdxStore.base
        var heapCounts = [Int](repeating: 0, count: qTile)

        var q0 = 0
        while q0 < rows {
            let mq = min(qTile, rows - q0)
            q.base.update(from: queries + q0 * d, count: mq * d)
            PatchIndex.normalizeRows(q.base, rows: mq, dim: d)
            for r in 0..<mq { heapCounts[r] = 0 }
            var b0 = 0
            while b0 < m {
                let nb = min(bTile, m - b0)
                // tile (mq, nb) = q (mq, D) · bank[b0 ..< b0+nb]ᵀ
                Gemm.gemm(out: tile.base, a: q.base, b: bank + b0 * d, m: mq, n: nb, k: d, transB: true)
                let tileBase = tile.base, hs = heapSims.base
                heapCounts.withUnsafeMutableBufferPointer { counts in
                    let countsBase = counts.baseAddress!
                    Threads.parallelFor(mq, minChunk: 8) { s, e in
                        for r in s..<e {
                            var heap = TopKHeap(sims: hs + r * k, idx: heapIdx + r * k, k: k)
                            heap.count = countsBase[r]
                            let row = tileBase + r * nb
                            for j in 0..<nb { heap.offer(row[j], b0 + j) }
                            countsBase[r] = heap.count
                        }
                    }
                }
                b0 += nb
            }
            for r in 0..<mq {
                var heap = TopKHeap(sims: heapSims.base + r * k, idx: heapIdx + r * k, k: k)
                heap.count = heapCounts[r]
                let n = heap.sortBestFirst()   // n == k because k <= m
                let out = (q0 + r) * k
                for i in 0..<n {
                    let j = heap.idx[i]
                    indices[out + i] = Int64(j)
                    similarities?[out + i] = heap.sims[i]
                    labels?[out + i] = labelStore[j]
                }
            }
            q0 += mq
        }
    }

    /// Patch-to-patch nearest neighbours between two feature sets: for every row of `a`
    /// (rowsA, D), its `k` most similar rows of `b` (rowsB, D). Equivalent to building an index
    /// from `b` and searching it with `a`.
    public static func nearest(from a: UnsafePointer<Float>, rows rowsA: Int,
                               to b: UnsafePointer<Float>, rows rowsB: Int, dim: Int, k: Int,
                               indices: UnsafeMutablePointer<Int64>,
                               similarities: UnsafeMutablePointer<Float>? = nil) throws {
        let index = try PatchIndex(dim: dim)
        try index.add(b, rows: rowsB)
        try index.search(queries: a, rows: rowsA, k: k, indices: indices, similarities: similarities)
    }

    // MARK: Array conveniences (Swift callers and tests)

    /// Appends (features.count / D) rows; `labels`, if given, holds one label per row.
    public func add(_ features: [Float], labels: [Int32]? = nil) throws {
        guard features.count % dim == 0 else {
            throw NecoError.shape("\(features.count) values are not a whole number of \(dim)-wide rows")
        }
        let rows = features.count / dim
        if let labels, labels.count != rows {
            throw NecoError.shape("\(labels.count) labels for \(rows) rows")
        }
        try features.withUnsafeBufferPointer { f in
            guard let base = f.baseAddress else { return }
            if let labels {
                try labels.withUnsafeBufferPointer { try add(base, rows: rows, labels: $0.baseAddress) }
            } else {
                try add(base, rows: rows)
            }
        }
    }

    /// Searches with (queries.count / D) rows; returns (rows, k) indices, similarities and labels.
    public func search(_ queries: [Float], k: Int) throws -> (indices: [Int64], similarities: [Float], labels: [Int32]) {
        guard queries.count % dim == 0 else {
            throw NecoError.shape("\(queries.count) values are not a whole number of \(dim)-wide rows")
        }
        let rows = queries.count / dim
        guard k >= 1 else { throw NecoError.invalidArgument("k = \(k) must be at least 1") }
        guard k <= count else { throw NecoError.shape("k = \(k) exceeds the \(count) rows in the index") }
        var idx = [Int64](repeating: 0, count: rows * k)
        var sims = [Float](repeating: 0, count: rows * k)
        var labs = [Int32](repeating: 0, count: rows * k)
        try queries.withUnsafeBufferPointer { qp in
            guard let qb = qp.baseAddress else { return }
            try idx.withUnsafeMutableBufferPointer { ip in
                try sims.withUnsafeMutableBufferPointer { sp in
                    try labs.withUnsafeMutableBufferPointer { lp in
                        try search(queries: qb, rows: rows, k: k, indices: ip.baseAddress!,
                                   similarities: sp.baseAddress, labels: lp.baseAddress)
                    }
                }
            }
        }
        return (idx, sims, labs)
    }

    // MARK: Helpers

    /// x[r, :] /= max(‖x[r, :]‖₂, 1e-12), the norm accumulated in Double so that large finite
    /// values cannot overflow it.
    static func normalizeRows(_ x: UnsafeMutablePointer<Float>, rows: Int, dim: Int) {
        Threads.parallelFor(rows, minChunk: 64) { s, e in
            for r in s..<e {
                let p = x + r * dim
                var ss: Double = 0
                for i in 0..<dim { let v = Double(p[i]); ss += v * v }
                let inv = 1 / max(ss.squareRoot(), 1e-12)
                for i in 0..<dim { p[i] = Float(Double(p[i]) * inv) }
            }
        }
    }

    static func checkFinite(_ x: UnsafePointer<Float>, rows: Int, dim: Int, what: String) throws {
        let n = rows * dim
        for i in 0..<n where !x[i].isFinite {
            throw NecoError.invalidArgument("\(what) row \(i / dim), column \(i % dim) holds a non-finite value (\(x[i]))")
        }
    }
}

/// A malloc'd scratch buffer that reports allocation failure as `.outOfMemory`.
final class Scratch<T> {
    let base: UnsafeMutablePointer<T>
    init(_ count: Int) throws {
        guard let p = UnsafeMutablePointer<T>.allocateChecked(count) else {
            throw NecoError(.outOfMemory, "cannot allocate \(count) × \(MemoryLayout<T>.stride) bytes of scratch")
        }
        base = p
    }
    deinit { free(base) }
}

extension UnsafeMutablePointer {
    /// malloc that returns nil on failure instead of trapping.
    static func allocateChecked(_ n: Int) -> UnsafeMutablePointer<Pointee>? {
        let (bytes, o) = max(n, 1).multipliedReportingOverflow(by: MemoryLayout<Pointee>.stride)
        guard !o, let raw = malloc(bytes) else { return nil }
        return raw.bindMemory(to: Pointee.self, capacity: max(n, 1))
    }
}
