import NecoCore
import NecoModel
import NecoTrain
import XCTest
import _NecoTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Tolerances and helpers of the NeCo objective tests (fixtures from
/// scripts/reference/make_neco_fixtures.py).
enum NeCoTol {
    /// Soft permutation matrices, soft-sorted values, ROI outputs and loss values against the fp32
    /// references: |a − e| ≤ 1e-5 · max|e| (the "1e-5 relative on matrices and loss").
    /// Both sides run the same fp32 operations; they differ only by libm's atan/exp/erf rounding
    /// (1 ulp) propagated through ≤ 49 layers and by summation order.
    static let matrix = 1e-5
    /// Gradients against the fp32 references: |a − e| ≤ 1e-4 · max|e| (the bound).
    static let gradient = 1e-4
    /// Our Double path against diffsort / torchvision run in float64: same formulas, so only
    /// rounding order differs.
    static let double = 1e-11
    /// Finite differences in Double (central, h = 1e-6): truncation O(h²)·f''' and rounding
    /// O(ε/h) ≈ 1e-10 relative to the function's scale; 1e-6 of the gradient's scale catches
    /// any wrong term (those are off by O(1)).
    static let finiteDifference = 1e-6
}

/// Upstream gradient of the fixtures: G[k] = sin(0.37·k + 0.1), flat C-order index k.
func necoFormulaGrad(_ n: Int) -> [Double] { (0..<n).map { sin(0.37 * Double($0) + 0.1) } }

/// |a − e| ≤ tol · max|e| elementwise; returns the worst |a − e| / max|e|.
@discardableResult
func necoAssertScaled<A: BinaryFloatingPoint, E: BinaryFloatingPoint>(
    _ a: [A], _ e: [E], _ tol: Double, _ label: String, file: StaticString = #filePath, line: UInt = #line
) -> Double {
    XCTAssertEqual(a.count, e.count, "\(label): count", file: file, line: line)
    guard a.count == e.count, !e.isEmpty else { return 0 }
    let scale = max(e.map { abs(Double($0)) }.max()!, 1e-300)
    var worst = 0.0, at = 0
    for i in 0..<a.count {
        let r = abs(Double(a[i]) - Double(e[i])) / scale
        if !(r <= worst) { worst = r; at = i }
    }
    if !(worst <= tol) {
        XCTFail("\(label): max |Δ|/max|e| = \(worst) at [\(at)]: \(a[at]) vs \(e[at])", file: file, line: line)
    }
    return worst
}

extension Fixture {
    /// A float64 tensor (`*_f64`).
    func doubles(_ name: String) throws -> [Double] {
        try file.withRawBytes(name) { raw in
            (0..<(raw.count / 8)).map { raw.loadUnaligned(fromByteOffset: $0 * 8, as: Double.self) }
        }
    }
}

/// Finite-difference check in Double: for up to `samples` indices i of x, compares the analytic
/// gradient with (L(x + h e_i) − L(x − h e_i)) / 2h. Returns the worst |Δ| / max|analytic|.
@discardableResult
func necoFiniteDifference(_ label: String, x: inout [Double], analytic: [Double], samples: Int = 40, h: Double = 1e-6,
                          tol: Double = NeCoTol.finiteDifference, loss: ([Double]) -> Double,
                          file: StaticString = #filePath, line: UInt = #line) -> Double {
    XCTAssertEqual(x.count, analytic.count, "\(label): gradient count", file: file, line: line)
    let scale = max(analytic.map { abs($0) }.max() ?? 0, 1e-12)
    let n = min(samples, x.count)
    var worst = 0.0
    for k in 0..<n {
        let i = n == x.count ? k : (k * 7919 + k * x.count / n) % x.count
        let x0 = x[i]
        x[i] = x0 + h
        let lp = loss(x)
        x[i] = x0 - h
        let lm = loss(x)
        x[i] = x0
        let numeric = (lp - lm) / (2 * h)
        let err = abs(numeric - analytic[i]) / scale
        worst = max(worst, err)
        if err > tol {
            XCTFail("\(label)[\(i)]: analytic \(analytic[i]), numeric \(numeric) (scale \(scale))", file: file, line: line)
            return worst
        }
    }
    print("  fd \(label): \(n) of \(x.count), worst |Δ|/max|g| = \(worst)")
    return worst
}

/// Seconds of the monotonic clock.
func necoNow() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
