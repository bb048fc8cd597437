import Foundation
import NecoCore
import XCTest
import _NecoTestSupport

/// `Attention.forward` (the C kernel `nk_attention_head`) on every CPU path: against a naive
/// Double reference on edge shapes (T and E of 1, primes, around the 16-query block, the
/// micro-tile rows and the vector width), on ViT-S's shape and past 1000 tokens, with and
/// without the probabilities, on scratch full of NaN, and for 1 and 2 threads.
final class AttentionKernelTests: XCTestCase {
    /// Outputs are convex combinations of v rows (|v| ≤ 1). Each probability carries exp's 2e-7
    /// relative error plus the float rounding of its score (≤ E products of size ≤ 1, scaled to
    /// |scale · s| ≤ ~4: ~1e-6 absolute in the exponent); the sum and P·v add a few ulps.
    static let outAtol = 2e-6
    /// Probabilities: exp's 2e-7 relative and the score's rounding, on values ≤ 1.
    static let probAtol = 1e-6

    var initial = CPUFeatures.path
    var initialThreads = Threads.count
    override func setUp() { initial = CPUFeatures.path; initialThreads = Threads.count }
    override func tearDown() { try? CPUFeatures.setPath(initial); Threads.setCount(initialThreads) }

    /// qkv (B, T, 3D) → heads (B, T, D) and probabilities (B, H, T, T) in Double, the textbook way.
    func reference(_ qkv: [Float], batch: Int, tokens t: Int, heads: Int, headDim e: Int,
                   scale: Double) -> (out: [Double], probs: [Double]) {
        let d = heads * e
        var out = [Double](repeating: 0, count: batch * t * d)
        var probs = [Double](repeating: 0, count: batch * heads * t * t)
        for b in 0..<batch {
            for h in 0..<heads {
                func at(_ which: Int, _ i: Int, _ c: Int) -> Double { Double(qkv[(b * t + i) * 3 * d + which * d + h * e + c]) }
                for i in 0..<t {
                    var s = (0..<t).map { j in scale * (0..<e).reduce(0.0) { $0 + at(0, i, $1) * at(1, j, $1) } }
                    let m = s.max()!
                    s = s.map { Foundation.exp($0 - m) }
                    let sum = s.reduce(0, +)
                    for j in 0..<t { probs[((b * heads + h) * t + i) * t + j] = s[j] / sum }
                    for c in 0..<e {
                        out[(b * t + i) * d + h * e + c] = (0..<t).reduce(0.0) { $0 + s[$1] * at(2, $1, c) } / sum
                    }
                }
            }
        }
        return (out, probs)
    }

    /// The kernel's heads, and its probabilities when `withProbs` (their heads must be the same bits).
    func kernel(_ qkv: [Float], batch: Int, tokens t: Int, heads: Int, headDim e: Int, scale: Float,
                withProbs: Bool = false) -> (out: [Float], probs: [Float]) {
        var out = [Float](repeating: .nan, count: batch * t * heads * e)
        // Scratch full of NaN: a value read before it is written would reach the output.
        var scratch = [Float](repeating: .nan, count: Attention.scratchCount(tokens: t, headDim: e))
        Attention.forward(out: &out, scratch: &scratch, qkv: qkv, batch: batch, tokens: t, heads: heads,
                          headDim: e, scale: scale)
        guard withProbs else { return (out, []) }
        var again = [Float](repeating: .nan, count: out.count)
        var probs = [Float](repeating: .nan, count: batch * heads * t * t)
        Attention.forward(out: &again, probs: &probs, scratch: &scratch, qkv: qkv, batch: batch, tokens: t,
                          heads: heads, headDim: e, scale: scale)
        XCTAssertEqual(again.map(\.bitPattern), out.map(\.bitPattern), "heads with and without probabilities")
        return (out, probs)
    }

    func testMatchesNaiveOnEdgeShapes() {
        for p in CPUFeatures.available {
            XCTAssertNoThrow(try CPUFeatures.setPath(p))
            var rng = TestRNG(seed: 31)
            for t in [1, 2, 3, 13, 14, 15, 16, 17, 29, 33, 47] {
                for e in [1, 3, 8, 13, 16, 20, 33, 64] {
                    let (batch, heads) = (t % 2 + 1, e % 3 + 1)
                    let qkv = rng.floats(batch * t * 3 * heads * e)
                    let scale = Float(1 / Double(e).squareRoot()) * 2
                    let got = kernel(qkv, batch: batch, tokens: t, heads: heads, headDim: e, scale: scale, withProbs: true)
                    let want = reference(qkv, batch: batch, tokens: t, heads: heads, headDim: e, scale: Double(scale))
                    assertClose(got.out, want.out.map { Float($0) }, rtol: 0, atol: Self.outAtol, "\(p.name) T=\(t) E=\(e)")
                    assertClose(got.probs, want.probs.map { Float($0) }, rtol: 0, atol: Self.probAtol,
                                "\(p.name) P T=\(t) E=\(e)")
                }
            }
        }
    }

    /// Large scores (|scale · s| up to ~60): the maximum is subtracted before exp, so nothing
    /// overflows and the result stays a convex combination.
    func testLargeScoresStayStable() {
        for p in CPUFeatures.available {
            XCTAssertNoThrow(try CPUFeatures.setPath(p))
            var rng = TestRNG(seed: 5)
            let (t, e) = (37, 16)
            let qkv = rng.floats(t * 3 * e, scale: 2)
            let got = kernel(qkv, batch: 1, tokens: t, heads: 1, headDim: e, scale: 4).out
            let want = reference(qkv, batch: 1, tokens: t, heads: 1, headDim: e, scale: 4).out
            // |s| ≤ 64 scaled by 4: a score's rounding is ~64 · 4 · 6e-8 ≈ 1.5e-5 in the exponent, relative in P.
            assertClose(got, want.map { Float($0) }, rtol: 0, atol: 4e-5, "\(p.name) large scores")
            XCTAssertTrue(got.allSatisfy { $0.isFinite && abs($0) <= 2 })
        }
    }

    /// ViT-S/14 at 224 (T = 261 with 4 registers, E = 64) and T past 1000 (ViT-S/14 at 448 px
    /// has 1029 tokens): the sizes the model runs, against the reference.
    func testMatchesNaiveOnModelSizes() {
        for p in CPUFeatures.available {
            XCTAssertNoThrow(try CPUFeatures.setPath(p))
            var rng = TestRNG(seed: 8)
            for (t, e) in [(261, 64), (1029, 8)] {
                let qkv = rng.floats(t * 3 * 2 * e)
                let got = kernel(qkv, batch: 1, tokens: t, heads: 2, headDim: e, scale: 1 / Float(e).squareRoot()).out
                let want = reference(qkv, batch: 1, tokens: t, heads: 2, headDim: e, scale: 1 / Double(e).squareRoot()).out
                assertClose(got, want.map { Float($0) }, rtol: 0, atol: Self.outAtol, "\(p.name) T=\(t) E=\(e)")
            }
        }
    }

    /// Each (batch, head) runs whole on one worker: 1 and 2 threads give the same bits.
    func testSameBitsForAnyThreadCount() {
        var rng = TestRNG(seed: 9)
        let (batch, t, heads, e) = (3, 50, 3, 24)
        let qkv = rng.floats(batch * t * 3 * heads * e)
        Threads.setCount(1)
        let one = kernel(qkv, batch: batch, tokens: t, heads: heads, headDim: e, scale: 0.3).out
        Threads.setCount(2)
        let two = kernel(qkv, batch: batch, tokens: t, heads: heads, headDim: e, scale: 0.3).out
        XCTAssertEqual(one.map(\.bitPattern), two.map(\.bitPattern))
    }
}
