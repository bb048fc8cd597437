import CNecoKernels
import Foundation
import NecoCore
import XCTest
import _NecoTestSupport

/// Every kernel of CNecoKernels on every CPU path this machine supports, against naive Double
/// references, on random data and edge sizes: 1, primes, and lengths that are not multiples of
/// the vector width (4, 8 or 16 lanes). The active path is restored afterwards.
final class CPUPathTests: XCTestCase {
    /// exp: the polynomial's relative error is ≤ 2e-7; one more float rounding of the result.
    static let expRtol = 3e-7
    /// GELU and gelu': erf (A&S 7.1.26) is accurate to 1.5e-7 absolute, multiplied by |x|/2 ≤ 4
    /// for |x| ≤ 8, plus float rounding; the same bound as KernelTests.geluAtol for |x| ≤ 8.
    static let geluAtol = 1e-6
    /// Softmax, LayerNorm and their backwards: sums of ≤ 1031 float terms of size ≤ ~10
    /// (≈ 1e-6 relative), against Double.
    static let rowRtol = 1e-5, rowAtol = 2e-6

    static let sizes = [1, 2, 3, 5, 7, 8, 9, 13, 15, 16, 17, 31, 33, 64, 97, 384, 1031]

    var initial = CPUFeatures.path
    override func setUp() { initial = CPUFeatures.path }
    override func tearDown() { try? CPUFeatures.setPath(initial) }

    func forEachPath(_ body: (CPUFeatures.Path) throws -> Void) rethrows {
        func select(_ p: CPUFeatures.Path) {
            do { try CPUFeatures.setPath(p) } catch { XCTFail("\(error)") }
        }
        XCTAssertTrue(CPUFeatures.available.contains(.portable))
        XCTAssertTrue(CPUFeatures.available.contains(CPUFeatures.best))
        for p in CPUFeatures.available {
            select(p)
            XCTAssertEqual(CPUFeatures.path, p)
            try body(p)
        }
    }

    func testPathSelection() throws {
        print("  CPU paths available: \(CPUFeatures.available.map(\.name)), best \(CPUFeatures.best.name), active \(initial.name)")
        for p in CPUFeatures.Path.allCases where !CPUFeatures.available.contains(p) {
            XCTAssertThrowsError(try CPUFeatures.setPath(p))
        }
        XCTAssertEqual(CPUFeatures.Path(name: "neon"), .portable)
        XCTAssertNil(CPUFeatures.Path(name: "sse9"))
        if let forced = ProcessInfo.processInfo.environment["NECO_CPU"], let want = CPUFeatures.Path(name: forced),
           CPUFeatures.available.contains(want) {
            XCTAssertEqual(initial, want, "NECO_CPU=\(forced) is honoured")
        }
    }

    /// exp at the ends of its clamped range: up to 88.7 the result is finite and within the
    /// tolerance (2^n for n = 128 would overflow; the kernel scales by 2^(n-1) and 2, or vscalefps),
    /// above it the value at 88.7, below −80 the value at −80. The two scalings are exact, so the
    /// AVX2 and AVX-512 paths (the same fused polynomial) give the same bits.
    func testExpAtTheEndsOfItsRange() {
        let xs: [Float] = [88.7, 88.69, 88.6, 88.5, 88.39, 88.38, 88.0, 87.5, 100, .greatestFiniteMagnitude,
                           -79.9, -80, -81, -1000, 0, 1e-8, -1e-8, 0.3466, -0.3466]
        var bits: [CPUFeatures.Path: [UInt32]] = [:]
        forEachPath { p in
            var e = [Float](repeating: .nan, count: xs.count)
            nk_exp(&e, xs, xs.count)
            let ref = xs.map { Float(Foundation.exp(Double(min(max($0, -80), 88.7)))) }
            XCTAssertTrue(e.allSatisfy(\.isFinite), "\(p.name) exp finite: \(e)")
            assertClose(e, ref, rtol: Self.expRtol, atol: 0, "\(p.name) exp at the range ends")
            bits[p] = e.map(\.bitPattern)
        }
        if let a = bits[.avx2], let b = bits[.avx512] { XCTAssertEqual(a, b, "vscalefps and the exponent-bit scaling") }
    }

    func testElementwiseKernelsMatchNaive() {
        forEachPath { p in
            var rng = TestRNG(seed: 7)
            for n in Self.sizes {
                let x = rng.floats(n, scale: 8)
                let dy = rng.floats(n)
                // exp over its whole clamped range (and beyond).
                let xe = rng.floats(n, scale: 85)
                var e = [Float](repeating: 0, count: n)
                nk_exp(&e, xe, n)
                let eRef = xe.map { Float(Foundation.exp(Double(max($0, -80)))) }
                assertClose(e, eRef, rtol: Self.expRtol, atol: 0, "\(p.name) exp n=\(n)")

                var y = [Float](repeating: 0, count: n)
                GELU.forward(out: &y, input: x, count: n)
                assertClose(y, x.map { Float(geluRef(Double($0))) }, rtol: 0, atol: Self.geluAtol, "\(p.name) gelu n=\(n)")
                var inPlace = x
                GELU.forwardInPlace(&inPlace, count: n)
                XCTAssertEqual(inPlace, y, "\(p.name) gelu in place n=\(n)")

                let dx0 = rng.floats(n)
                var dx = dx0
                GELU.backward(dInput: &dx, dOut: dy, input: x, count: n)
                let dxRef = (0..<n).map { Float(Double(dx0[$0]) + Double(dy[$0]) * geluGradRef(Double(x[$0]))) }
                assertClose(dx, dxRef, rtol: 0, atol: Self.geluAtol, "\(p.name) gelu backward n=\(n)")
            }
        }
    }

    func testRowKernelsMatchNaive() {
        forEachPath { p in
            var rng = TestRNG(seed: 11)
            for cols in Self.sizes {
                let rows = cols % 3 + 2
                let x = rng.floats(rows * cols, scale: 4), w = rng.floats(cols), b = rng.floats(cols)
                let g = rng.floats(rows * cols)

                // GELU gradient in place with column sums.
                var grad = g
                var sums = [Float](repeating: 0.5, count: cols)
                GELU.backwardInPlace(grad: &grad, input: x, rows: rows, cols: cols, columnSum: &sums)
                let gradRef = (0..<(rows * cols)).map { Double(g[$0]) * geluGradRef(Double(x[$0])) }
                assertClose(grad, gradRef.map(Float.init), rtol: 0, atol: Self.geluAtol, "\(p.name) gelu grad rows")
                let sumRef = (0..<cols).map { j in 0.5 + (0..<rows).reduce(0.0) { $0 + gradRef[$1 * cols + j] } }
                assertClose(sums, sumRef.map(Float.init), rtol: 0, atol: 4 * Self.geluAtol, "\(p.name) gelu colsum")

                // Softmax forward and backward (accumulating and in place).
                let scale: Float = 0.37
                var sm = x
                Softmax.forwardInPlace(&sm, rows: rows, cols: cols, scale: scale)
                var smRef = [Double](repeating: 0, count: rows * cols)
                for r in 0..<rows {
                    let row = (0..<cols).map { Double(scale) * Double(x[r * cols + $0]) }
                    let mx = row.max()!
                    let s = row.reduce(0) { $0 + Foundation.exp($1 - mx) }
                    for j in 0..<cols { smRef[r * cols + j] = Foundation.exp(row[j] - mx) / s }
                }
                assertClose(sm, smRef.map(Float.init), rtol: Self.rowRtol, atol: Self.rowAtol, "\(p.name) softmax n=\(cols)")
                let d0 = rng.floats(rows * cols)
                var ds = d0
                Softmax.backward(dInput: &ds, dOut: g, probs: sm, rows: rows, cols: cols, scale: scale)
                var dsRef = [Double](repeating: 0, count: rows * cols)
                for r in 0..<rows {
                    let dot = (0..<cols).reduce(0.0) { $0 + Double(g[r * cols + $1]) * Double(sm[r * cols + $1]) }
                    for j in 0..<cols {
                        let i = r * cols + j
                        dsRef[i] = Double(scale) * Double(sm[i]) * (Double(g[i]) - dot)
                    }
                }
                assertClose(ds, (0..<(rows * cols)).map { Float(Double(d0[$0]) + dsRef[$0]) }, rtol: Self.rowRtol,
                            atol: Self.rowAtol, "\(p.name) softmax backward n=\(cols)")
                var gIn = g
                gIn.withUnsafeMutableBufferPointer { gp in
                    Softmax.backward(dInput: gp.baseAddress!, dOut: gp.baseAddress!, probs: sm, rows: rows, cols: cols,
                                     scale: scale, accumulate: false)
                }
                assertClose(gIn, dsRef.map(Float.init), rtol: Self.rowRtol, atol: Self.rowAtol, "\(p.name) softmax bwd in place")

                // LayerNorm forward (with statistics) and backward.
                var ln = [Float](repeating: 0, count: rows * cols)
                var mean = [Float](repeating: 0, count: rows), rstd = mean
                LayerNorm.forward(out: &ln, mean: &mean, rstd: &rstd, input: x, weight: w, bias: b, rows: rows, dim: cols)
                var lnRef = [Double](repeating: 0, count: rows * cols), dlnRef = lnRef
                for r in 0..<rows {
                    let xs = (0..<cols).map { Double(x[r * cols + $0]) }
                    let mu = xs.reduce(0, +) / Double(cols)
                    let v = xs.reduce(0) { $0 + ($1 - mu) * ($1 - mu) } / Double(cols)
                    let rs = 1 / (v + Double(LayerNorm.defaultEps)).squareRoot()
                    let xh = xs.map { ($0 - mu) * rs }
                    let dxh = (0..<cols).map { Double(g[r * cols + $0]) * Double(w[$0]) }
                    let md = dxh.reduce(0, +) / Double(cols)
                    let mdx = (0..<cols).reduce(0.0) { $0 + dxh[$1] * xh[$1] } / Double(cols)
                    for j in 0..<cols {
                        lnRef[r * cols + j] = xh[j] * Double(w[j]) + Double(b[j])
                        dlnRef[r * cols + j] = rs * (dxh[j] - md - xh[j] * mdx)
                    }
                    XCTAssertEqual(Double(mean[r]), mu, accuracy: 1e-6)
                    XCTAssertEqual(Double(rstd[r]), rs, accuracy: 1e-5 * rs)
                }
                assertClose(ln, lnRef.map(Float.init), rtol: Self.rowRtol, atol: Self.rowAtol, "\(p.name) layernorm n=\(cols)")
                var dln = [Float](repeating: 0, count: rows * cols)
                var dw = [Float](repeating: 0, count: cols), db = dw
                LayerNorm.backward(dInput: &dln, dWeight: &dw, dBias: &db, dOut: g, input: x, weight: w, mean: mean,
                                   rstd: rstd, rows: rows, dim: cols)
                assertClose(dln, dlnRef.map(Float.init), rtol: Self.rowRtol, atol: Self.rowAtol, "\(p.name) layernorm backward n=\(cols)")
            }
        }
    }

    /// The same inputs give results within float rounding of each other on every path.
    func testPathsAgree() {
        var rng = TestRNG(seed: 3)
        let rows = 5, cols = 261
        let x = rng.floats(rows * cols, scale: 6), w = rng.floats(cols), b = rng.floats(cols)
        var results: [[Float]] = []
        forEachPath { _ in
            var y = x
            GELU.forwardInPlace(&y, count: rows * cols)
            var ln = [Float](repeating: 0, count: rows * cols)
            LayerNorm.forward(out: &ln, mean: nil, rstd: nil, input: y, weight: w, bias: b, rows: rows, dim: cols)
            Softmax.forwardInPlace(&ln, rows: rows, cols: cols, scale: 0.5)
            results.append(ln)
        }
        for r in results.dropFirst() { assertClose(r, results[0], rtol: Self.rowRtol, atol: Self.rowAtol, "paths agree") }
    }

    func testPeakProbeMeasuresSomething() {
        let peak = CPUFeatures.measurePeakGFLOPS(seconds: 0.02)
        print("  measured FMA peak: \(peak) GFLOP/s on \(Threads.count) threads")
        XCTAssertGreaterThan(peak, 0.1)
    }
}

private func geluRef(_ x: Double) -> Double { 0.5 * x * (1 + erf(x / 2.0.squareRoot())) }
private func geluGradRef(_ x: Double) -> Double {
    0.5 * (1 + erf(x / 2.0.squareRoot())) + x * Foundation.exp(-0.5 * x * x) / (2 * Double.pi).squareRoot()
}
