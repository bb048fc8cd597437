import Foundation
import NecoCore
import NecoModel
import XCTest
import _NecoTestSupport

/// Training's attention backward (`AttentionRecompute.backward`: P and the heads recomputed by the
/// forward's code 64 queries at a time, then the four products and the softmax backward on each
/// strip) on every CPU path, against the
/// textbook formulas in Double: edge shapes (T and E of 1, primes, around the 16-query blocks and
/// the micro-tile rows), ViT-S's shape and T = 400, accumulation into what dQKV held, NaN-filled
/// scratch, and 1–2 threads.
final class AttentionBackwardTests: XCTestCase {
    /// dQ, dK, dV sum T products of values ≤ 1 in float, through P (exp's 2e-7 relative) and dS
    /// (dP, a sum of E products, less its P-weighted mean), each product's sum added to dQKV once.
    /// Observed against Double: ≤ 2.4e-7 at T ≤ 47 (portable; 1.4e-7 AVX2 and AVX-512) and, with
    /// dK and dV summed per 64-query strip, ≤ 2.4e-7 at T = 65–400 on every path (one float step at
    /// the magnitude of dQKV's start; the whole-matrix kernel read ≤ 1.2e-7 at T = 261 and 400);
    /// the bounds leave 4× room or more and stay far below a
    /// wrong term (≥ 1e-3 for these inputs). (A chain continuing from dQKV's value, rounding each of
    /// the T terms at that magnitude, read 1.5e-6 at T = 261: the kernel must add each sum once.)
    static let atolSmall = 1e-6, atolLarge = 1e-6

    var initial = CPUFeatures.path
    var initialThreads = Threads.count
    override func setUp() { initial = CPUFeatures.path; initialThreads = Threads.count }
    override func tearDown() { try? CPUFeatures.setPath(initial); Threads.setCount(initialThreads) }

    /// dQKV (B, T, 3D) of heads = attention(qkv) for dL/dheads = dOut, in Double.
    func reference(_ qkv: [Float], _ dOut: [Float], batch: Int, tokens t: Int, heads: Int, headDim e: Int,
                   scale: Double) -> [Double] {
        let d = heads * e
        var grad = [Double](repeating: 0, count: batch * t * 3 * d)
        for b in 0..<batch {
            for h in 0..<heads {
                func at(_ which: Int, _ i: Int, _ c: Int) -> Double { Double(qkv[(b * t + i) * 3 * d + which * d + h * e + c]) }
                func g(_ i: Int, _ c: Int) -> Double { Double(dOut[(b * t + i) * d + h * e + c]) }
                func add(_ which: Int, _ i: Int, _ c: Int, _ v: Double) {
                    let row: Int = (b * t + i) * 3 * d
                    grad[row + which * d + h * e + c] += v
                }
                var p = [[Double]](repeating: [], count: t)
                for i in 0..<t {
                    let s = (0..<t).map { j in scale * (0..<e).reduce(0.0) { $0 + at(0, i, $1) * at(1, j, $1) } }
                    let m = s.max()!
                    let x = s.map { Foundation.exp($0 - m) }
                    let sum = x.reduce(0, +)
                    p[i] = x.map { $0 / sum }
                }
                for i in 0..<t {
                    let dp = (0..<t).map { j in (0..<e).reduce(0.0) { $0 + g(i, $1) * at(2, j, $1) } }
                    let dot = (0..<t).reduce(0.0) { $0 + dp[$1] * p[i][$1] }
                    for j in 0..<t {
                        let ds = scale * p[i][j] * (dp[j] - dot)
                        for c in 0..<e {
                            add(0, i, c, ds * at(1, j, c))      // dQ[i] += dS[i, j] k[j]
                            add(1, j, c, ds * at(0, i, c))      // dK[j] += dS[i, j] q[i]
                            add(2, j, c, p[i][j] * g(i, c))     // dV[j] += P[i, j] dO[i]
                        }
                    }
                }
            }
        }
        return grad
    }

    /// The kernel's dQKV, accumulated onto `start`, on scratch full of NaN (a value read before it
    /// is written would reach the gradients), with the recomputed heads checked against the forward.
    func kernel(_ qkv: [Float], _ dOut: [Float], start: [Float], batch: Int, tokens t: Int, heads: Int, headDim e: Int,
                scale: Float) -> [Float] {
        var grad = start
        var heads0 = [Float](repeating: .nan, count: batch * t * heads * e)
        var scratch = [Float](repeating: .nan, count: AttentionRecompute.scratchCount(tokens: t, headDim: e))
        AttentionRecompute.backward(dQKV: &grad, headsOut: &heads0, dOut: dOut, qkv: qkv, scratch: &scratch,
                                    batch: batch, tokens: t, heads: heads, headDim: e, scale: scale)
        var forward = [Float](repeating: .nan, count: heads0.count)
        var fscratch = [Float](repeating: .nan, count: Attention.scratchCount(tokens: t, headDim: e))
        Attention.forward(out: &forward, scratch: &fscratch, qkv: qkv, batch: batch, tokens: t, heads: heads,
                          headDim: e, scale: scale)
        XCTAssertEqual(heads0.map(\.bitPattern), forward.map(\.bitPattern), "recomputed heads T=\(t) E=\(e)")
        return grad
    }

    func check(_ rng: inout TestRNG, path: CPUFeatures.Path, batch: Int, tokens t: Int, heads: Int, headDim e: Int,
               atol: Double) {
        let d = heads * e
        let qkv = rng.floats(batch * t * 3 * d), dOut = rng.floats(batch * t * d), start = rng.floats(batch * t * 3 * d)
        let scale = Float(1 / Double(e).squareRoot()) * 2
        let got = kernel(qkv, dOut, start: start, batch: batch, tokens: t, heads: heads, headDim: e, scale: scale)
        let want = zip(reference(qkv, dOut, batch: batch, tokens: t, heads: heads, headDim: e, scale: Double(scale)), start)
            .map { Float($0 + Double($1)) }
        assertClose(got, want, rtol: 0, atol: atol, "\(path.name) B=\(batch) T=\(t) H=\(heads) E=\(e)")
    }

    func testMatchesNaiveOnEdgeShapes() throws {
        for p in CPUFeatures.available {
            try CPUFeatures.setPath(p)
            var rng = TestRNG(seed: 41)
            for t in [1, 2, 3, 13, 14, 15, 16, 17, 29, 47] {
                for e in [1, 3, 13, 16, 20, 33] {
                    check(&rng, path: p, batch: t % 2 + 1, tokens: t, heads: e % 3 + 1, headDim: e, atol: Self.atolSmall)
                }
            }
            // Around the kernel's 64-query strips: one whole strip, one and one query, a partial
            // last strip of a partial 16-query block.
            for t in [63, 64, 65, 129] {
                for e in [5, 16] {
                    check(&rng, path: p, batch: 1, tokens: t, heads: 1 + e % 2, headDim: e, atol: Self.atolSmall)
                }
            }
        }
    }

    /// The strip kernel against the whole-matrix one (`Attention.forward` keeping P, then
    /// `Attention.backward`): dQ is the same bits (its sums run over every key in both), dK and dV
    /// add one sum per strip instead of one in all, within the bound above.
    func testStripsMatchStoredProbabilities() throws {
        for p in CPUFeatures.available {
            try CPUFeatures.setPath(p)
            var rng = TestRNG(seed: 44)
            let (batch, t, heads, e) = (2, 150, 2, 24)
            let d = heads * e
            let qkv = rng.floats(batch * t * 3 * d), dOut = rng.floats(batch * t * d), start = rng.floats(batch * t * 3 * d)
            var probs = [Float](repeating: .nan, count: batch * heads * t * t)
            var heads0 = [Float](repeating: .nan, count: batch * t * d)
            var fscratch = [Float](repeating: .nan, count: Attention.scratchCount(tokens: t, headDim: e))
            Attention.forward(out: &heads0, probs: &probs, scratch: &fscratch, qkv: qkv, batch: batch, tokens: t,
                              heads: heads, headDim: e, scale: 0.3)
            var stored = start
            var bscratch = [Float](repeating: .nan, count: Attention.backwardScratchCount(tokens: t, headDim: e))
            Attention.backward(dQKV: &stored, dOut: dOut, qkv: qkv, probs: probs, scratch: &bscratch, batch: batch,
                               tokens: t, heads: heads, headDim: e, scale: 0.3)
            let strips = kernel(qkv, dOut, start: start, batch: batch, tokens: t, heads: heads, headDim: e, scale: 0.3)
            for row in 0..<(batch * t) {
                let q = row * 3 * d
                XCTAssertEqual(strips[q..<(q + d)].map(\.bitPattern), stored[q..<(q + d)].map(\.bitPattern),
                               "\(p.name) dQ row \(row)")
            }
            assertClose(strips, stored, rtol: 0, atol: Self.atolLarge, "\(p.name) dK, dV")
        }
    }

    /// ViT-S/14 at 224 (T = 261, E = 64), and T = 400 (past one 384-deep block of the kernels).
    func testMatchesNaiveOnModelSizes() throws {
        for p in CPUFeatures.available {
            try CPUFeatures.setPath(p)
            var rng = TestRNG(seed: 42)
            check(&rng, path: p, batch: 1, tokens: 261, heads: 1, headDim: 64, atol: Self.atolLarge)
            check(&rng, path: p, batch: 1, tokens: 400, heads: 2, headDim: 8, atol: Self.atolLarge)
        }
    }

    /// Hostile sizes: the scratch count refuses them (-1 from C, an unallocatable count in Swift, so
    /// the allocation fails with an error) instead of overflowing into a small buffer.
    func testScratchCountRefusesHostileSizes() {
        XCTAssertEqual(Attention.headBackwardScratchCount(tokens: -1, headDim: 64), 1 << 48)
        XCTAssertEqual(Attention.headBackwardScratchCount(tokens: 1 << 21, headDim: 64), 1 << 48)
        XCTAssertEqual(Attention.headBackwardScratchCount(tokens: 261, headDim: 1 << 21), 1 << 48)
        XCTAssertThrowsError(try Memory.allocate(Attention.backwardScratchCount(tokens: 1 << 21, headDim: 64),
                                                 of: Float.self, "attention backward scratch"))
        // ViT-S at 224: the (T, T) gradient, three (T, 64) and one (272, 64) panel sets, a 14-row sliver.
        XCTAssertEqual(Attention.headBackwardScratchCount(tokens: 261, headDim: 64),
                       261 * 261 + 3 * 261 * 64 + 272 * 64 + 261 * 14 + 16)
        XCTAssertEqual(Attention.headRecomputingBackwardScratchCount(tokens: -1, headDim: 64), 1 << 48)
        XCTAssertEqual(Attention.headRecomputingBackwardScratchCount(tokens: 1 << 25, headDim: 64), 1 << 48)
        XCTAssertEqual(Attention.headRecomputingBackwardScratchCount(tokens: 261, headDim: 1 << 21), 1 << 48)
        XCTAssertThrowsError(try Memory.allocate(AttentionRecompute.scratchCount(tokens: 1 << 25, headDim: 64),
                                                 of: Float.self, "attention backward scratch"))
        // The strip kernel at 224: the forward's (keys in 274 rows, values, a block's scores,
        // queries and sums), k's and vᵀ's panels, a 64-query strip of P and of dS, the strip's dO
        // and q panels, a sliver: O(T · E), no (T, T) matrix.
        let forward = 274 * 64 + 261 * 64 + 274 * 16 + 64 * 16 + 16
        XCTAssertEqual(Attention.headRecomputingBackwardScratchCount(tokens: 261, headDim: 64),
                       forward + 261 * 64 + 272 * 64 + 2 * 64 * 261 + 2 * 64 * 64 + 64 * 14 + 16)
    }

    /// Each (batch, head) runs whole on one worker: 1 and 2 threads give the same bits.
    func testSameBitsForAnyThreadCount() {
        var rng = TestRNG(seed: 43)
        let (batch, t, heads, e) = (3, 50, 3, 24)
        let qkv = rng.floats(batch * t * 3 * heads * e), dOut = rng.floats(batch * t * heads * e)
        let start = [Float](repeating: 0, count: qkv.count)
        Threads.setCount(1)
        let one = kernel(qkv, dOut, start: start, batch: batch, tokens: t, heads: heads, headDim: e, scale: 0.3)
        Threads.setCount(2)
        let two = kernel(qkv, dOut, start: start, batch: batch, tokens: t, heads: heads, headDim: e, scale: 0.3)
        XCTAssertEqual(one.map(\.bitPattern), two.map(\.bitPattern))
    }
}
