import NecoCore
import NecoEval
import XCTest

/// PatchIndex (chunked GEMM + per-row heap) against a naive brute-force top-k in Double.
final class PatchIndexTests: XCTestCase {
    /// Deterministic uniform values in [-0.5, 0.5).
    struct LCG {
        var state: UInt64
        mutating func next() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(state >> 40) / Float(1 << 24) - 0.5
        }
        mutating func floats(_ n: Int) -> [Float] { (0..<n).map { _ in next() } }
    }

    /// Cosine similarities of every query to every bank row, (Q, M), in Double.
    func naiveSims(_ q: [Float], _ bank: [Float], dim d: Int) -> [[Double]] {
        let nq = q.count / d, nb = bank.count / d
        func norm(_ x: [Float], _ r: Int) -> Double {
            var s = 0.0
            for i in 0..<d { s += Double(x[r * d + i]) * Double(x[r * d + i]) }
            return max(s.squareRoot(), 1e-12)
        }
        let bn = (0..<nb).map { norm(bank, $0) }
        return (0..<nq).map { r in
            let qn = norm(q, r)
            return (0..<nb).map { m in
                var s = 0.0
                for i in 0..<d { s += Double(q[r * d + i]) * Double(bank[m * d + i]) }
                return s / (qn * bn[m])
            }
        }
    }

    /// The naive ranking of each query row: bank rows by decreasing similarity, ties by index.
    func naiveOrder(_ sims: [[Double]]) -> [[Int]] {
        sims.map { row in row.indices.sorted { row[$0] > row[$1] || (row[$0] == row[$1] && $0 < $1) } }
    }

    /// Checks `got` (Q, k) against the naive ranking: similarities to 1e-5, indices equal except
    /// where the naive similarities of the two candidates are within 1e-5 (near-ties may swap),
    /// similarities non-increasing, no duplicate neighbours. Collects problems, asserts once.
    func assertMatchesNaive(_ got: (indices: [Int64], similarities: [Float], labels: [Int32]), _ sims: [[Double]],
                            order: [[Int]]? = nil, k: Int, file: StaticString = #filePath, line: UInt = #line) {
        let order = order ?? naiveOrder(sims)
        var problems: [String] = []
        for (r, row) in sims.enumerated() {
            for j in 0..<k {
                let gi = Int(got.indices[r * k + j]), gs = Double(got.similarities[r * k + j])
                guard gi >= 0, gi < row.count else { problems.append("q\(r) rank \(j): index \(gi) out of range"); continue }
                if abs(gs - row[order[r][j]]) > 1e-5 { problems.append("q\(r) rank \(j): sim \(gs) vs \(row[order[r][j]])") }
                if abs(gs - row[gi]) > 1e-5 { problems.append("q\(r) rank \(j): reported sim \(gs) of row \(gi) is \(row[gi])") }
                if gi != order[r][j] && abs(row[gi] - row[order[r][j]]) > 1e-5 {
                    problems.append("q\(r) rank \(j): row \(gi) instead of \(order[r][j])")
                }
                if j > 0 && got.similarities[r * k + j] > got.similarities[r * k + j - 1] { problems.append("q\(r) rank \(j): not sorted") }
            }
            if Set(got.indices[(r * k)..<((r + 1) * k)]).count != k { problems.append("q\(r): duplicate neighbours") }
        }
        XCTAssertTrue(problems.isEmpty, "\(problems.count) problems, first: \(problems.prefix(5))", file: file, line: line)
    }

    func testMatchesBruteForceAcrossTiles() throws {
        // 5000 bank rows > one 4096-row tile; 300 queries > one 256-row tile.
        var g = LCG(state: 1)
        let d = 24
        let bank = g.floats(5000 * d), queries = g.floats(300 * d)
        let index = try PatchIndex(dim: d)
        try index.add(bank)
        XCTAssertEqual(index.count, 5000)
        let sims = naiveSims(queries, bank, dim: d)
        let order = naiveOrder(sims)
        for k in [1, 7, 50] {
            assertMatchesNaive(try index.search(queries, k: k), sims, order: order, k: k)
        }
    }

    /// The heaps are filled by parallel workers; any thread count gives the naive result.
    /// (Not bit-identical across thread counts: OpenBLAS may sum a GEMM tile in another order
    /// when it runs threaded, which moves similarities by an ulp.)
    func testAnyThreadCountMatchesBruteForce() throws {
        var g = LCG(state: 2)
        let d = 16
        let bank = g.floats(3000 * d), q = g.floats(200 * d)
        let index = try PatchIndex(dim: d)
        try index.add(bank)
        let sims = naiveSims(q, bank, dim: d)
        let order = naiveOrder(sims)
        let saved = Threads.count
        defer { Threads.setCount(saved) }
        for n in [1, 3, 4] {
            Threads.setCount(n)
            assertMatchesNaive(try index.search(q, k: 9), sims, order: order, k: 9)
        }
    }

    func testLargeKShrinksTheQueryTileAndReturnsTheFullRanking() throws {
        var g = LCG(state: 3)
        let d = 8, m = 600
        let bank = g.floats(m * d), queries = g.floats(5 * d)
        let index = try PatchIndex(dim: d)
        try index.add(bank)
        let r = try index.search(queries, k: m)   // every row, sorted
        assertMatchesNaive(r, naiveSims(queries, bank, dim: d), k: m)
    }

    func testLabelsFollowTheirRows() throws {
        var g = LCG(state: 4)
        let d = 6
        let a = g.floats(40 * d), b = g.floats(30 * d)
        let index = try PatchIndex(dim: d)
        try index.add(a, labels: (0..<40).map { Int32($0 % 5) })
        try index.add(b)   // no labels: -1
        XCTAssertEqual(index.count, 70)
        XCTAssertEqual(index.label(3), 3)
        XCTAssertEqual(index.label(45), -1)
        XCTAssertNil(index.label(70))
        XCTAssertNil(index.label(-1))
        let r = try index.search(g.floats(10 * d), k: 12)
        for (i, idx) in r.indices.enumerated() {
            XCTAssertEqual(r.labels[i], idx < 40 ? Int32(idx % 5) : -1)
        }
    }

    func testRowsAreNormalisedAndSelfMatchIsExact() throws {
        var g = LCG(state: 5)
        let d = 10
        let bank = g.floats(100 * d).map { $0 * 1000 }   // scale does not matter for cosine
        let index = try PatchIndex(dim: d)
        try index.add(bank)
        let row = try XCTUnwrap(index.row(7))
        XCTAssertEqual(row.reduce(0) { $0 + Double($1) * Double($1) }, 1, accuracy: 1e-5)
        let r = try index.search(bank, k: 1)
        XCTAssertEqual(r.indices, (0..<100).map { Int64($0) })
        for s in r.similarities { XCTAssertEqual(s, 1, accuracy: 1e-5) }
    }

    func testZeroRowsAndHugeValues() throws {
        let d = 4
        let index = try PatchIndex(dim: d)
        // A zero row stays zero (similar to nothing); 3e38 squared overflows Float but not Double.
        try index.add([0, 0, 0, 0, 3e38, 0, 0, 0, 1, 1, 0, 0])
        let r = try index.search([1, 0, 0, 0], k: 3)
        XCTAssertEqual(r.indices, [1, 2, 0])
        XCTAssertEqual(r.similarities[0], 1, accuracy: 1e-6)
        XCTAssertEqual(r.similarities[1], Float(0.5).squareRoot(), accuracy: 1e-6)
        XCTAssertEqual(r.similarities[2], 0)
        // A zero query: every similarity is 0, ties by lower index.
        let z = try index.search([0, 0, 0, 0], k: 3)
        XCTAssertEqual(z.indices, [0, 1, 2])
        XCTAssertEqual(z.similarities, [0, 0, 0])
    }

    func testTiesKeepTheLowerIndex() throws {
        let index = try PatchIndex(dim: 2)
        try index.add([1, 0, 0, 1, 1, 0, 2, 0, 0, 1])   // rows 0, 2, 3 identical direction
        let r = try index.search([1, 0], k: 4)
        XCTAssertEqual(r.indices, [0, 2, 3, 1])
    }

    func testNearestBetweenTwoFeatureSets() throws {
        var g = LCG(state: 6)
        let d = 12
        let a = g.floats(50 * d), b = g.floats(80 * d)
        var idx = [Int64](repeating: -1, count: 50 * 3)
        var sim = [Float](repeating: 0, count: 50 * 3)
        try a.withUnsafeBufferPointer { ap in
            try b.withUnsafeBufferPointer { bp in
                try PatchIndex.nearest(from: ap.baseAddress!, rows: 50, to: bp.baseAddress!, rows: 80, dim: d, k: 3,
                                       indices: &idx, similarities: &sim)
            }
        }
        let index = try PatchIndex(dim: d)
        try index.add(b)
        let r = try index.search(a, k: 3)
        XCTAssertEqual(idx, r.indices)
        XCTAssertEqual(sim, r.similarities)
        assertMatchesNaive((idx, sim, []), naiveSims(a, b, dim: d), k: 3)
    }

    func testErrors() throws {
        XCTAssertThrowsError(try PatchIndex(dim: 0)) { XCTAssertEqual(($0 as? NecoError)?.kind, .invalidArgument) }
        XCTAssertThrowsError(try PatchIndex(dim: PatchIndex.maxDim + 1)) { XCTAssertEqual(($0 as? NecoError)?.kind, .invalidArgument) }
        let index = try PatchIndex(dim: 3)
        try index.add([1, 2, 3, 4, 5, 6])
        // k beyond the bank.
        XCTAssertThrowsError(try index.search([1, 0, 0], k: 3)) { XCTAssertEqual(($0 as? NecoError)?.kind, .shape) }
        XCTAssertThrowsError(try index.search([1, 0, 0], k: 0)) { XCTAssertEqual(($0 as? NecoError)?.kind, .invalidArgument) }
        // Ragged input and label counts.
        XCTAssertThrowsError(try index.add([1, 2])) { XCTAssertEqual(($0 as? NecoError)?.kind, .shape) }
        XCTAssertThrowsError(try index.add([1, 2, 3], labels: [1, 2])) { XCTAssertEqual(($0 as? NecoError)?.kind, .shape) }
        XCTAssertThrowsError(try index.search([1, 0], k: 1)) { XCTAssertEqual(($0 as? NecoError)?.kind, .shape) }
        // Non-finite values: refused, nothing added.
        XCTAssertThrowsError(try index.add([1, .nan, 3])) { XCTAssertEqual(($0 as? NecoError)?.kind, .invalidArgument) }
        XCTAssertThrowsError(try index.add([1, 2, 3, .infinity, 0, 0])) { XCTAssertEqual(($0 as? NecoError)?.kind, .invalidArgument) }
        XCTAssertEqual(index.count, 2)
        XCTAssertThrowsError(try index.search([.nan, 0, 0], k: 1)) { XCTAssertEqual(($0 as? NecoError)?.kind, .invalidArgument) }
        // Negative counts through the pointer API.
        let x: [Float] = [1, 2, 3]
        try x.withUnsafeBufferPointer { p in
            XCTAssertThrowsError(try index.add(p.baseAddress!, rows: -1)) { XCTAssertEqual(($0 as? NecoError)?.kind, .invalidArgument) }
            var out: [Int64] = [0]
            XCTAssertThrowsError(try index.search(queries: p.baseAddress!, rows: -1, k: 1, indices: &out)) {
                XCTAssertEqual(($0 as? NecoError)?.kind, .invalidArgument)
            }
            // Bank beyond 2^32 floats: refused before reading.
            XCTAssertThrowsError(try index.add(p.baseAddress!, rows: 1 << 31)) { XCTAssertEqual(($0 as? NecoError)?.kind, .outOfMemory) }
        }
        // Empty queries are fine.
        XCTAssertEqual(try index.search([], k: 1).indices, [])
    }
}
