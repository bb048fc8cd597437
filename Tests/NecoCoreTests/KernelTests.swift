import Dispatch
import NecoCore
import NecoModel
import XCTest
import _NecoTestSupport

/// Kernel checks in three oracles: naive reference vs optimised, PyTorch fixtures
/// (scripts/reference/make_kernel_fixtures.py), and finite differences in Double for backwards.
final class KernelTests: XCTestCase {
    /// Single kernels vs PyTorch fp32: both are correctly rounded up to a few ulps of the values
    /// involved (|x| ≤ ~10), so 2e-6 absolute is tight but safe.
    static let kernelAtol = 2e-6
    /// erf by Abramowitz–Stegun 7.1.26 is accurate to 1.5e-7 absolute; GELU multiplies by x/2 (|x| ≤ 8).
    static let geluAtol = 1e-6
    /// PyTorch computes the bicubic source coordinates in float32 (up to 1.1e-5 from float64 on values
    /// ~3); ours are computed in Double, so compare with the float64 reference at 2e-6 and the float32
    /// one at 2e-5.
    static let posF64Atol = 2e-6, posF32Atol = 2e-5

    // MARK: GEMM

    func testGemmMatchesNaiveForAllTransposesAndStrides() {
        var rng = TestRNG(seed: 1)
        for (m, n, k) in [(1, 1, 1), (7, 5, 3), (33, 17, 65), (64, 130, 31)] {
            for ta in [false, true] {
                for tb in [false, true] {
                    let lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 1
                    let a = rng.floats((ta ? k : m) * lda), b = rng.floats((tb ? n : k) * ldb)
                    let c0 = rng.floats(m * ldc)
                    var fast = c0, slow = c0
                    fast.withUnsafeMutableBufferPointer { f in
                        Gemm.gemm(out: f.baseAddress!, a: a, b: b, m: m, n: n, k: k, transA: ta, transB: tb,
                                  alpha: 0.5, beta: 0.25, lda: lda, ldb: ldb, ldc: ldc)
                    }
                    slow.withUnsafeMutableBufferPointer { s in
                        Gemm.gemmReference(out: s.baseAddress!, a: a, b: b, m: m, n: n, k: k, transA: ta, transB: tb,
                                           alpha: 0.5, beta: 0.25, lda: lda, ldb: ldb, ldc: ldc)
                    }
                    // K ≤ 65 products of values in [-1, 1]: fp32 summation error ≲ 1e-5.
                    assertClose(fast, slow, rtol: 1e-5, atol: 2e-5, "gemm \(m)x\(n)x\(k) tA=\(ta) tB=\(tb)")
                }
            }
        }
    }

    /// `bias:` adds a row vector to the product (beta ignored), serial and split over workers by
    /// rows (tall) and by columns (wide), with strided output; sizes straddle the parallel threshold.
    func testGemmWithBias() {
        var rng = TestRNG(seed: 2)
        let saved = Threads.count
        defer { Threads.setCount(saved) }
        Threads.setCount(2)
        for (m, n, k) in [(1, 1, 1), (13, 7, 5), (300, 97, 80), (61, 900, 64)] {
            let ldc = n + 3
            let a = rng.floats(m * k), b = rng.floats(n * k), bias = rng.floats(n)
            var fast = rng.floats(m * ldc), slow = fast
            fast.withUnsafeMutableBufferPointer { f in
                Gemm.gemm(out: f.baseAddress!, a: a, b: b, m: m, n: n, k: k, transB: true, beta: 0.5, ldc: ldc, bias: bias)
            }
            slow.withUnsafeMutableBufferPointer { s in
                Gemm.gemmReference(out: s.baseAddress!, a: a, b: b, m: m, n: n, k: k, transB: true, ldc: ldc)
                for r in 0..<m { for j in 0..<n { s[r * ldc + j] += bias[j] } }
            }
            // K ≤ 80 products of values in [-1, 1]: fp32 summation error ≲ 2e-5.
            assertClose(fast, slow, rtol: 1e-5, atol: 3e-5, "gemm+bias \(m)x\(n)x\(k)")
        }
    }

    // MARK: PyTorch fixtures

    func testLayerNormMatchesTorch() throws {
        let fx = try Fixture("kernels/layernorm.safetensors")
        let x = try fx.floats("x"), w = try fx.floats("weight"), b = try fx.floats("bias")
        var y = [Float](repeating: 0, count: x.count)
        y.withUnsafeMutableBufferPointer {
            LayerNorm.forward(out: $0.baseAddress!, mean: nil, rstd: nil, input: x, weight: w, bias: b, rows: 5, dim: 37)
        }
        assertClose(y, try fx.floats("y"), rtol: 0, atol: Self.kernelAtol, "layernorm vs torch fp32")
        assertClose(y, try fx.floats("y64"), rtol: 0, atol: Self.kernelAtol, "layernorm vs torch fp64")
    }

    func testGELUMatchesTorch() throws {
        let fx = try Fixture("kernels/gelu.safetensors")
        let x = try fx.floats("x")
        var y = [Float](repeating: 0, count: x.count)
        y.withUnsafeMutableBufferPointer { GELU.forward(out: $0.baseAddress!, input: x, count: x.count) }
        let c = assertClose(y, try fx.floats("y64"), rtol: 0, atol: Self.geluAtol, "gelu vs torch fp64")
        print("  gelu: \(c)")
        assertClose(y, try fx.floats("y"), rtol: 0, atol: Self.geluAtol, "gelu vs torch fp32")
    }

    func testSoftmaxMatchesTorch() throws {
        let fx = try Fixture("kernels/softmax.safetensors")
        var x = try fx.floats("x")
        x.withUnsafeMutableBufferPointer { Softmax.forwardInPlace($0.baseAddress!, rows: 7, cols: 53) }
        assertClose(x, try fx.floats("y64"), rtol: 1e-5, atol: 1e-7, "softmax vs torch fp64")
    }

    func testAttentionMatchesTorch() throws {
        let fx = try Fixture("kernels/attention.safetensors")
        let x = try fx.floats("x")
        let (bsz, t, d, heads) = (2, 11, 48, 6)
        var qkv = [Float](repeating: 0, count: bsz * t * 3 * d)
        var merged = [Float](repeating: 0, count: bsz * t * d)
        var out = merged
        var probs = [Float](repeating: 0, count: bsz * heads * t * t)
        let qw = try fx.floats("qkv_weight"), qb = try fx.floats("qkv_bias")
        let pw = try fx.floats("proj_weight"), pb = try fx.floats("proj_bias")
        var scratch = [Float](repeating: 0, count: Attention.scratchCount(tokens: t, headDim: 8))
        qkv.withUnsafeMutableBufferPointer { Linear.forward(out: $0.baseAddress!, input: x, weight: qw, bias: qb, rows: bsz * t, inDim: d, outDim: 3 * d) }
        Attention.forward(out: &merged, probs: &probs, scratch: &scratch, qkv: qkv, batch: bsz, tokens: t, heads: heads,
                          headDim: 8, scale: 1 / Float(8).squareRoot())
        out.withUnsafeMutableBufferPointer { Linear.forward(out: $0.baseAddress!, input: merged, weight: pw, bias: pb, rows: bsz * t, inDim: d, outDim: d) }
        assertClose(probs, try fx.floats("attn"), rtol: 0, atol: Self.kernelAtol, "attention probabilities")
        assertClose(merged, try fx.floats("merged"), rtol: 0, atol: Self.kernelAtol, "attention heads")
        assertClose(out, try fx.floats("out64"), rtol: 0, atol: Self.kernelAtol, "attention output")
        // Without probabilities (inference) the heads are the same bits.
        var merged2 = [Float](repeating: 0, count: merged.count)
        Attention.forward(out: &merged2, scratch: &scratch, qkv: qkv, batch: bsz, tokens: t, heads: heads, headDim: 8,
                          scale: 1 / Float(8).squareRoot())
        XCTAssertEqual(merged, merged2)
    }

    func testPatchEmbedMatchesTorchConv() throws {
        let fx = try Fixture("kernels/patch_embed.safetensors")
        let img = try fx.floats("image"), w = try fx.floats("weight"), b = try fx.floats("bias")
        var tokens = [Float](repeating: 0, count: 2 * 6 * 16)
        var cols = [Float](repeating: 0, count: 6 * 588)
        for n in 0..<2 {
            cols.withUnsafeMutableBufferPointer { c in
                img.withUnsafeBufferPointer { ip in
                    PatchEmbed.im2col(cols: c.baseAddress!, image: ip.baseAddress! + n * 3 * 28 * 42, channels: 3, height: 28, width: 42, patch: 14)
                }
            }
            tokens.withUnsafeMutableBufferPointer { tp in
                Linear.forward(out: tp.baseAddress! + n * 6 * 16, input: cols, weight: w, bias: b, rows: 6, inDim: 588, outDim: 16)
            }
        }
        assertClose(tokens, try fx.floats("tokens64"), rtol: 0, atol: 1e-5, "patch embed vs conv2d")  // K = 588 terms
    }

    func testPosEmbedRulesMatchTorch() throws {
        let fx = try Fixture("kernels/posembed.safetensors")
        let pe = try fx.floats("pe")
        let rules: [(PosEmbedRule, String)] = [(.neco, "neco"), (.bicubic, "size"), (.antialias, "antialias")]
        for (h, w) in [(16, 16), (7, 7), (32, 32), (13, 19), (40, 40), (1, 1)] {
            for (rule, name) in rules {
                var out = [Float](repeating: 0, count: h * w * 8)
                var scratch = [Float](repeating: 0, count: h * 37 * 8)
                out.withUnsafeMutableBufferPointer { o in
                    scratch.withUnsafeMutableBufferPointer { s in
                        PosEmbed.resample(out: o.baseAddress!, table: pe, scratch: s.baseAddress!, grid: 37, height: h, width: w, dim: 8, rule: rule)
                    }
                }
                let c = assertClose(out, try fx.floats("\(name)_\(h)x\(w)_f64"), rtol: 0, atol: Self.posF64Atol, "\(name) \(h)x\(w) vs f64")
                assertClose(out, try fx.floats("\(name)_\(h)x\(w)"), rtol: 0, atol: Self.posF32Atol, "\(name) \(h)x\(w) vs f32")
                if h == 16 { print("  pos \(name) 16x16: \(c)") }
            }
        }
        // Small 5×5 tables (what the tiny models use), up- and downsampling.
        let small = try fx.floats("pe_small")
        for (h, w) in [(3, 4), (8, 7)] {
            for (rule, name) in rules {
                var out = [Float](repeating: 0, count: h * w * 8)
                var scratch = [Float](repeating: 0, count: h * 5 * 8)
                out.withUnsafeMutableBufferPointer { o in
                    scratch.withUnsafeMutableBufferPointer { s in
                        PosEmbed.resample(out: o.baseAddress!, table: small, scratch: s.baseAddress!, grid: 5, height: h, width: w, dim: 8, rule: rule)
                    }
                }
                assertClose(out, try fx.floats("small_\(name)_\(h)x\(w)_f64"), rtol: 0, atol: Self.posF64Atol, "small \(name) \(h)x\(w)")
            }
        }
    }

    /// NECO-SPEC §9.4 test vectors for the NeCo rule (taps and weights per output index).
    func testNecoRuleSpecVectors() {
        let w7 = PosEmbed.weights(rule: .neco, inSize: 37, outSize: 7)
        func row(_ w: [Float], _ d: Int, _ n: Int) -> [Float] { Array(w[(d * n)..<((d + 1) * n)]) }
        let r0 = row(w7, 0, 37)
        XCTAssertEqual(r0[1], -0.063372, accuracy: 1e-6); XCTAssertEqual(r0[2], 0.976367, accuracy: 1e-6)
        XCTAssertEqual(r0[3], 0.094490, accuracy: 1e-6); XCTAssertEqual(r0[4], -0.007485, accuracy: 1e-6)
        let r6 = row(w7, 6, 37)
        XCTAssertEqual(r6[32], -0.109964, accuracy: 1e-6); XCTAssertEqual(r6[35], -0.065484, accuracy: 1e-6)
        let w32 = PosEmbed.weights(rule: .neco, inSize: 37, outSize: 32)
        let q0 = row(w32, 0, 37)  // taps (0,0,1,2) clamped: weights on index 0 add up
        XCTAssertEqual(q0[0], -0.048838 + 0.987449, accuracy: 2e-6)
        XCTAssertEqual(q0[1], 0.065425, accuracy: 1e-6); XCTAssertEqual(q0[2], -0.004036, accuracy: 1e-6)
        let q31 = row(w32, 31, 37)  // taps (34,35,36,36)
        XCTAssertEqual(q31[34], -0.022255, accuracy: 1e-6); XCTAssertEqual(q31[36], 0.926202 - 0.093907, accuracy: 2e-6)
    }

    // MARK: Threads

    func testParallelForCoversEveryIndexOnce() {
        for n in [0, 1, 2, 3, 17, 1000] {
            var hits = [Int](repeating: 0, count: n)
            hits.withUnsafeMutableBufferPointer { h in
                let p = h.baseAddress
                Threads.parallelFor(n) { s, e in for i in s..<e { p![i] += 1 } }
            }
            XCTAssertEqual(hits, [Int](repeating: 1, count: n))
        }
    }

    /// Dynamically scheduled loops: every index exactly once, each chunk a multiple of the grain
    /// but the last, each worker index within the thread count, chunks no larger than the
    /// guided share of what was left (so they shrink towards the end); and nested inside a region
    /// (libdispatch's fallback) the same. One worker stalls for a while in some rounds, so the
    /// others take its share.
    func testParallelDynamicCoversEveryIndexOnce() {
        let saved = Threads.count
        defer { Threads.setCount(saved) }
        for width in [1, 2, 3, 4] {
            Threads.setCount(width)
            for (n, grain) in [(0, 1), (1, 1), (2, 1), (7, 3), (17, 1), (100, 28), (261, 28), (1000, 7), (4176, 28)] {
                var hits = [Int](repeating: 0, count: n)
                var chunks = [Int](repeating: 0, count: 3 * (n + 1))  // (start, end, worker) per chunk, by start
                hits.withUnsafeMutableBufferPointer { h in
                    chunks.withUnsafeMutableBufferPointer { c in
                        let p = h.baseAddress, q = c.baseAddress
                        Threads.parallelDynamic(n, grain: grain) { w, s, e in
                            if s == 0 && n > 50 && width > 1 { usleep(2000) }
                            q![3 * s] = s; q![3 * s + 1] = e; q![3 * s + 2] = w + 1
                            for i in s..<e { p![i] += 1 }
                        }
                    }
                }
                XCTAssertEqual(hits, [Int](repeating: 1, count: n), "width \(width) n \(n)")
                var start = 0
                while start < n {
                    let end = chunks[3 * start + 1], worker = chunks[3 * start + 2] - 1
                    XCTAssertGreaterThan(end, start)
                    XCTAssertTrue(end == n || (end - start) % grain == 0, "chunk \(start)..<\(end), grain \(grain)")
                    XCTAssertTrue((0..<width).contains(worker))
                    // One worker (or one grain of work) runs the whole range as one chunk.
                    let workers = min(width, (n + grain - 1) / grain)
                    let share = (n - start + 2 * workers - 1) / (2 * workers)
                    XCTAssertLessThanOrEqual(end - start, workers <= 1 ? n : max(grain, (share + grain - 1) / grain * grain))
                    start = end
                }
            }
        }
        Threads.setCount(3)
        var nested = [Int](repeating: 0, count: 9 * 40)
        nested.withUnsafeMutableBufferPointer { h in
            let p = h.baseAddress
            Threads.parallelFor(9) { s, e in
                for i in s..<e { Threads.parallelDynamic(40, grain: 3) { _, s2, e2 in for j in s2..<e2 { p![i * 40 + j] += 1 } } }
            }
        }
        XCTAssertEqual(nested, [Int](repeating: 1, count: 9 * 40))
    }

    /// The pool under stress: many regions of varying widths (threads that sit out a region still
    /// acknowledge it), regions nested inside regions (they fall back to libdispatch), and
    /// regions started from several host threads at once (only one holds the pool; the others
    /// fall back). Every index is covered exactly once in every region.
    func testWorkerPoolRegions() {
        let saved = Threads.count
        defer { Threads.setCount(saved) }
        for width in [2, 3, 4, 2, 5] {  // more workers than cores is allowed: pool threads are made as needed
            Threads.setCount(width)
            for round in 0..<200 {
                let n = 1 + (round * 7) % 41
                var hits = [Int](repeating: 0, count: n)
                hits.withUnsafeMutableBufferPointer { h in
                    let p = h.baseAddress
                    Threads.parallelFor(n) { s, e in for i in s..<e { p![i] += 1 } }
                }
                XCTAssertEqual(hits, [Int](repeating: 1, count: n), "width \(width) round \(round)")
            }
        }
        Threads.setCount(3)
        var nested = [Int](repeating: 0, count: 9 * 9)
        nested.withUnsafeMutableBufferPointer { h in
            let p = h.baseAddress
            Threads.parallelFor(9) { s, e in
                for i in s..<e { Threads.parallelFor(9) { s2, e2 in for j in s2..<e2 { p![i * 9 + j] += 1 } } }
            }
        }
        XCTAssertEqual(nested, [Int](repeating: 1, count: 81))
        let callers = 4, n = 1000
        var grid = [Int](repeating: 0, count: callers * 50 * n)
        grid.withUnsafeMutableBufferPointer { h in
            let p = _UnsafeBox(h.baseAddress!)
            DispatchQueue.concurrentPerform(iterations: callers) { c in
                for r in 0..<50 {
                    let base = p.pointer + (c * 50 + r) * n
                    Threads.parallelFor(n) { s, e in for i in s..<e { base[i] += 1 } }
                }
            }
        }
        XCTAssertEqual(grid, [Int](repeating: 1, count: grid.count))
    }
}

/// Carries a pointer into concurrent closures (each writes its own slice).
private struct _UnsafeBox: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Int>
    init(_ p: UnsafeMutablePointer<Int>) { pointer = p }
}
