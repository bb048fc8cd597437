import CNecoKernels
import NecoCore
import XCTest
import _NecoTestSupport

/// libneco's own packed-weight GEMM (`Gemm.linear`, CNecoKernels `nk_gemm_linear`) on every CPU path
/// this machine supports, against the naive Double reference and against OpenBLAS, on edge shapes
/// (1, primes, sizes that are not multiples of the 14/6/3/2-row tiles, the 16-column panels or the
/// 384-deep K blocks), with and without bias, strided output, and the GELU and residual epilogues.
final class PackedGemmTests: XCTestCase {
    /// Products of values in [-1, 1] summed over K ≤ 769 terms in float: the observed error against
    /// the Double reference is ≤ 2e-5; the bound leaves 3× room and stays far below a wrong term
    /// (≥ 1e-3 for these inputs).
    static let atol = 6e-5, rtol = 1e-5

    static let shapes: [(m: Int, n: Int, k: Int)] = [
        (1, 1, 1), (1, 16, 1), (2, 17, 3), (3, 5, 7), (13, 31, 2), (14, 16, 384), (15, 33, 385),
        (29, 47, 97), (97, 131, 769), (261, 48, 384), (6, 1, 13), (43, 15, 768),
    ]

    var initial = CPUFeatures.path
    var threads = Threads.count
    override func setUp() { initial = CPUFeatures.path; threads = Threads.count }
    override func tearDown() { try? CPUFeatures.setPath(initial); Threads.setCount(threads) }

    static func geluRef(_ x: Double) -> Double { 0.5 * x * (1 + erf(x / 2.0.squareRoot())) }

    /// One random case: a (m, k), W (n, k) and its packed copy, bias (n).
    struct Case {
        let path: CPUFeatures.Path
        let m: Int, n: Int, k: Int
        let a: [Float], w: [Float], bias: [Float]
        let packed: PackedWeight
        var name: String { "\(path.name) \(m)x\(n)x\(k)" }
    }

    /// Runs `body` for every shape on every CPU path this machine has, with fresh random data.
    func forEachCase(seed: UInt64, _ shapes: [(m: Int, n: Int, k: Int)], _ body: (Case) throws -> Void) throws {
        var rng = TestRNG(seed: seed)
        for path in CPUFeatures.available {
            try CPUFeatures.setPath(path)
            for (m, n, k) in shapes {
                let a = rng.floats(m * k), w = rng.floats(n * k), bias = rng.floats(n)
                try body(Case(path: path, m: m, n: n, k: k, a: a, w: w, bias: bias,
                              packed: try PackedWeight(w, outDim: n, inDim: k)))
            }
        }
    }

    func testMatchesNaiveAndOpenBLASOnEveryPath() throws {
        try forEachCase(seed: 11, Self.shapes) { c in
            let (m, n, k, a, w, bias, packed) = (c.m, c.n, c.k, c.a, c.w, c.bias, c.packed)
            for withBias in [false, true] {
                let ldc = n + (withBias ? 3 : 0)
                var ref = [Float](repeating: 0, count: m * ldc), blas = ref
                ref.withUnsafeMutableBufferPointer { r in
                    Gemm.gemmReference(out: r.baseAddress!, a: a, b: w, m: m, n: n, k: k, transB: true, ldc: ldc)
                    if withBias { for i in 0..<m { for j in 0..<n { r[i * ldc + j] += bias[j] } } }
                }
                blas.withUnsafeMutableBufferPointer { b in
                    Gemm.gemm(out: b.baseAddress!, a: a, b: w, m: m, n: n, k: k, transB: true, ldc: ldc,
                              bias: withBias ? bias : nil)
                }
                // Padding columns of a strided output keep their value.
                var own = [Float](repeating: 7, count: m * ldc)
                own.withUnsafeMutableBufferPointer { o in
                    bias.withUnsafeBufferPointer { bp in
                        Gemm.linear(out: o.baseAddress!, input: a, weight: packed, bias: withBias ? bp.baseAddress : nil,
                                    rows: m, ldOut: ldc)
                    }
                }
                let what = "\(c.name) bias=\(withBias)"
                for i in 0..<m { for j in n..<ldc { XCTAssertEqual(own[i * ldc + j], 7, "\(what): padding written") } }
                for i in 0..<m { for j in n..<ldc { ref[i * ldc + j] = 7; blas[i * ldc + j] = 7 } }
                assertClose(own, ref, rtol: Self.rtol, atol: Self.atol, "\(what) vs naive")
                assertClose(own, blas, rtol: Self.rtol, atol: Self.atol, "\(what) vs OpenBLAS")
            }
        }
    }

    /// The GELU epilogue is the same function as the GELU kernel, applied to the same sums: equal bit
    /// for bit to the product followed by `nk_gelu` on the same path, and close to Double GELU of
    /// the naive product.
    func testGELUEpilogue() throws {
        try forEachCase(seed: 12, [(1, 1, 1), (15, 33, 385), (29, 47, 97)]) { c in
            var fused = [Float](repeating: 0, count: c.m * c.n), plain = fused
            Gemm.linear(out: &fused, input: c.a, weight: c.packed, bias: c.bias, rows: c.m, epilogue: .gelu)
            Gemm.linear(out: &plain, input: c.a, weight: c.packed, bias: c.bias, rows: c.m)
            let ref = plain.map { Float(Self.geluRef(Double($0))) }
            nk_gelu(&plain, plain, plain.count)
            XCTAssertEqual(fused, plain, "\(c.name): fused GELU differs from GEMM + GELU")
            // GELU's erf approximation (1.5e-7) times |x|/2 plus one rounding.
            assertClose(fused, ref, rtol: 1e-5, atol: 2e-6, "\(c.name) GELU epilogue vs Double GELU")
        }
    }

    /// The residual epilogue is the residual kernel applied to the same sums: out = residual + γ ⊙ z
    /// equals the product followed by `Residual.addScaled` bit for bit (no fused multiply-add in the
    /// epilogue), with and without γ, on strided rows, for K longer than one 384-deep block (partial
    /// sums pass through `out` first), and for 1 and 2 threads (row and column splits), on every path.
    func testResidualEpilogue() throws {
        try forEachCase(seed: 14, [(1, 1, 1), (15, 33, 385), (29, 47, 97), (43, 15, 768), (261, 384, 1536)]) { c in
            var rng = TestRNG(seed: UInt64(c.m * 1000 + c.n))
            let ld = c.n + 5
            let residual = rng.floats(c.m * ld), gamma = rng.floats(c.n)
            for withGamma in [false, true] {
                var plain = [Float](repeating: 0, count: c.m * ld)
                Gemm.linear(out: &plain, input: c.a, weight: c.packed, bias: c.bias, rows: c.m, ldOut: ld)
                var expected = residual
                expected.withUnsafeMutableBufferPointer { e in
                    gamma.withUnsafeBufferPointer { g in
                        for i in 0..<c.m {
                            Residual.addScaled(residual: e.baseAddress! + i * ld, branch: plain.withUnsafeBufferPointer { $0.baseAddress! + i * ld },
                                               gamma: withGamma ? g.baseAddress : nil, rows: 1, dim: c.n)
                        }
                    }
                }
                for t in [1, 2] {
                    Threads.setCount(t)
                    // Padding columns keep their value (7), as the residual's padding is not read.
                    var fused = [Float](repeating: 7, count: c.m * ld)
                    residual.withUnsafeBufferPointer { r in
                        gamma.withUnsafeBufferPointer { g in
                            Gemm.linear(out: &fused, input: c.a, weight: c.packed, bias: c.bias, rows: c.m,
                                        epilogue: .residual, residual: r.baseAddress, layerScale: withGamma ? g.baseAddress : nil,
                                        ldOut: ld)
                        }
                    }
                    for i in 0..<c.m { for j in c.n..<ld { expected[i * ld + j] = 7 } }
                    let first = fused.indices.first { fused[$0].bitPattern != expected[$0].bitPattern }
                    XCTAssertNil(first, "\(c.name) γ=\(withGamma) \(t) threads: fused residual differs at element "
                                 + "\(first ?? 0): \(first.map { fused[$0] } ?? 0) vs \(first.map { expected[$0] } ?? 0)")
                }
            }
        }
    }

    /// Row tiles and column panels go to different workers, but each output is computed the same
    /// way: identical bits for 1, 2, 3 and 4 threads, for shapes that split by rows, by columns
    /// (fewer whole tiles than workers), both (whole tiles, then the rest by columns), and into
    /// dynamically claimed row chunks (two or more packed row blocks per worker; K past one block).
    func testSameBitsForAnyThreadCount() throws {
        // 103 rows: 7 whole AVX-512 tiles, so 4 workers take one each and split 47 rows by columns.
        try forEachCase(seed: 13, [(261, 1152, 384), (2088, 64, 96), (37, 512, 200), (103, 80, 300),
                                   (1501, 40, 500)]) { c in
            var first: [Float] = []
            for t in [1, 2, 3, 4] {
                Threads.setCount(t)
                var out = [Float](repeating: 0, count: c.m * c.n)
                Gemm.linear(out: &out, input: c.a, weight: c.packed, bias: c.bias, rows: c.m, epilogue: .gelu)
                if first.isEmpty { first = out } else {
                    XCTAssertEqual(out, first, "\(c.name): \(t) threads differ from 1")
                }
            }
        }
    }

    /// Wide products pack each row block of the input before the tiles read it, narrow ones
    /// (fewer than NK_GEMM_PACK_MIN_N columns) read its rows in place: the same bits. The first
    /// panels of a wide weight's packed copy are a narrow packed weight of their own, so the narrow
    /// product must equal the wide one's first columns exactly (whole and partial row tiles, K past
    /// one block, every epilogue, every path).
    func testRowsInPlaceEqualPackedRows() throws {
        let wide = Int(NK_GEMM_PACK_MIN_N) + 16, narrow = 200
        try forEachCase(seed: 31, [(61, wide, 100), (29, wide, 777)]) { c in
            let res = [Float](repeating: 0.5, count: c.m * wide), gamma = [Float](repeating: 0.25, count: wide)
            for epi in [Gemm.Epilogue.none, .gelu, .residual] {
                var full = [Float](repeating: .nan, count: c.m * wide)
                var part = [Float](repeating: .nan, count: c.m * wide)
                res.withUnsafeBufferPointer { r in
                    gamma.withUnsafeBufferPointer { g in
                        let rp = epi == .residual ? r.baseAddress : nil, gp = epi == .residual ? g.baseAddress : nil
                        Gemm.linear(out: &full, input: c.a, weight: c.packed.panels, bias: c.bias, rows: c.m, epilogue: epi,
                                    residual: rp, layerScale: gp)
                        let first = PackedPanels(base: c.packed.panels.base, outDim: narrow, inDim: c.k)
                        Gemm.linear(out: &part, input: c.a, weight: first, bias: c.bias, rows: c.m, epilogue: epi,
                                    residual: rp, layerScale: gp, ldOut: wide)
                    }
                }
                for i in 0..<c.m {
                    XCTAssertEqual(Array(part[(i * wide)..<(i * wide + narrow)]), Array(full[(i * wide)..<(i * wide + narrow)]),
                                   "\(c.name) \(epi) row \(i)")
                }
            }
        }
    }

    /// Packing per call (`Gemm.pack`, what training and unpacked models run): the panels equal a
    /// `PackedWeight`'s for any thread count, and transposed packing of Wᵀ gives W's panels.
    func testPackPerCallEqualsPackedOnce() throws {
        var rng = TestRNG(seed: 17)
        for (n, k) in [(1, 1), (16, 1), (17, 3), (31, 2), (47, 97), (131, 769), (1152, 384)] {
            let w = rng.floats(n * k)
            var wt = [Float](repeating: 0, count: n * k)  // Wᵀ (k, n)
            for j in 0..<n { for p in 0..<k { wt[p * n + j] = w[j * k + p] } }
            let once = try PackedWeight(w, outDim: n, inDim: k)
            let expected = Array(UnsafeBufferPointer(start: once.panels.base, count: once.bytes / 4))
            for t in [1, 2, 4] {
                Threads.setCount(t)
                // Filled with NaN first: every float of the panels, padding included, is written.
                var buf = [Float](repeating: .nan, count: expected.count)
                for transposed in [false, true] {
                    let src = transposed ? wt : w
                    buf.withUnsafeMutableBufferPointer { b in
                        let panels = Gemm.pack(src, outDim: n, inDim: k, transposed: transposed, into: b.baseAddress!)
                        XCTAssertEqual(panels.outDim, n)
                        XCTAssertEqual(panels.inDim, k)
                    }
                    XCTAssertEqual(buf, expected, "(\(n), \(k)) transposed=\(transposed), \(t) threads")
                }
            }
        }
    }

    /// A Linear's input gradient dX (m, in) = dY (m, out) · W (out, in) on the packed kernel (W packed
    /// transposed per call), against the naive Double reference and OpenBLAS, on every path.
    func testInputGradientMatchesNaiveAndOpenBLAS() throws {
        var rng = TestRNG(seed: 19)
        for path in CPUFeatures.available {
            try CPUFeatures.setPath(path)
            for (m, outDim, inDim) in [(1, 1, 1), (2, 17, 3), (15, 33, 385), (29, 97, 47), (261, 384, 1536), (43, 769, 15)] {
                let dY = rng.floats(m * outDim), w = rng.floats(outDim * inDim)
                var ref = [Float](repeating: 0, count: m * inDim), blas = ref
                Gemm.gemmReference(out: &ref, a: dY, b: w, m: m, n: inDim, k: outDim)
                Gemm.gemm(out: &blas, a: dY, b: w, m: m, n: inDim, k: outDim)
                var own = [Float](repeating: .nan, count: m * inDim)
                var pack = [Float](repeating: 0, count: Gemm.packedCount(outDim: inDim, inDim: outDim)!)
                Linear.inputGradient(&own, dOut: dY, weight: w, rows: m, inDim: inDim, outDim: outDim, pack: &pack)
                let what = "\(path.name) \(m)x\(outDim)x\(inDim)"
                assertClose(own, ref, rtol: Self.rtol, atol: Self.atol, "\(what) vs naive")
                assertClose(own, blas, rtol: Self.rtol, atol: Self.atol, "\(what) vs OpenBLAS")
            }
        }
    }

    /// The weight-gradient product out (m, n) (+)= aᵀ · b (a (k, m), b (k, n)) on every path, against
    /// the naive Double reference and OpenBLAS: edge shapes (1, primes, more than one K block and
    /// column block, partial tiles), written or accumulated, dense and strided; and the same bits
    /// for 1 to 4 threads.
    func testWeightGradientMatchesNaiveAndOpenBLAS() throws {
        var rng = TestRNG(seed: 23)
        let shapes = [(1, 1, 1), (1, 17, 2), (3, 5, 7), (14, 16, 384), (15, 33, 385), (29, 47, 97), (97, 131, 769),
                      (384, 300, 61), (43, 15, 1000), (6, 1, 13)]
        for path in CPUFeatures.available {
            try CPUFeatures.setPath(path)
            for (m, n, k) in shapes {
                for (accumulate, strided) in [(false, false), (true, false), (true, true)] {
                    let lda = m + (strided ? 5 : 0), ldb = n + (strided ? 3 : 0), ldc = n + (strided ? 2 : 0)
                    let a = rng.floats(k * lda), b = rng.floats(k * ldb), start = rng.floats(m * ldc)
                    var ref = start, blas = start, own = start
                    Gemm.gemmReference(out: &ref, a: a, b: b, m: m, n: n, k: k, transA: true, beta: accumulate ? 1 : 0,
                                       lda: lda, ldb: ldb, ldc: ldc)
                    Gemm.gemm(out: &blas, a: a, b: b, m: m, n: n, k: k, transA: true, beta: accumulate ? 1 : 0,
                              lda: lda, ldb: ldb, ldc: ldc)
                    Gemm.weightGradient(out: &own, a: a, b: b, m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc,
                                        accumulate: accumulate)
                    let what = "\(path.name) \(m)x\(n)x\(k) accumulate=\(accumulate) strided=\(strided)"
                    for i in 0..<m { for j in n..<ldc { XCTAssertEqual(own[i * ldc + j], start[i * ldc + j], "\(what): padding written") } }
                    assertClose(own, ref, rtol: Self.rtol, atol: Self.atol, "\(what) vs naive")
                    assertClose(own, blas, rtol: Self.rtol, atol: Self.atol, "\(what) vs OpenBLAS")
                }
            }
            // Split by rows (m ≥ n) and by columns (m < n): each output is the same chain.
            for (m, n, k) in [(1152, 384, 300), (384, 1536, 200), (97, 131, 769)] {
                let a = rng.floats(k * m), b = rng.floats(k * n)
                var first: [Float] = []
                for t in [1, 2, 3, 4] {
                    Threads.setCount(t)
                    var out = [Float](repeating: 0, count: m * n)
                    Gemm.weightGradient(out: &out, a: a, b: b, m: m, n: n, k: k, accumulate: false)
                    if first.isEmpty { first = out } else { XCTAssertEqual(out, first, "\(path.name) \(m)x\(n)x\(k): \(t) threads") }
                }
            }
        }
    }

    func testPackedSizesAndBadShapes() {
        XCTAssertEqual(nk_gemm_packed_floats(16, 3), 48)
        XCTAssertEqual(nk_gemm_packed_floats(17, 3), 96)
        XCTAssertEqual(nk_gemm_packed_floats(-1, 3), -1)
        XCTAssertEqual(nk_gemm_packed_floats(1 << 40, 1 << 20), -1)
        let w = [Float](repeating: 1, count: 4)
        XCTAssertThrowsError(try PackedWeight(w, outDim: 0, inDim: 4))
        XCTAssertThrowsError(try PackedWeight(w, outDim: 2, inDim: 0))
        XCTAssertNil(Gemm.packedCount(outDim: 0, inDim: 4))
        XCTAssertNil(Gemm.packedCount(outDim: 1 << 40, inDim: 1 << 20))
        XCTAssertEqual(Gemm.packedCount(outDim: 17, inDim: 3), 96)
    }
}
