import NecoCore
import NecoModel
import XCTest
import _NecoTestSupport

/// Finite-difference gradient checks (STYLE §10d, oracle 2; ggml's `test-backend-ops` "grad" mode).
///
/// The kernels are Float. The scalar probed is L = Σ out · g for a fixed random projection g,
/// summed in Double, so the only rounding in a difference L(x + h) − L(x − h) comes from the few
/// outputs that the perturbed element changes. The derivative uses the 4-point central formula
///     L' ≈ (L(x−2h) − 8 L(x−h) + 8 L(x+h) − L(x+2h)) / (12 h)
/// with h = 1e-2 on values of magnitude ~1 (truncation error O(h⁴) ≈ 1e-8).
enum GradCheck {
    /// Float rounding of the perturbed outputs, divided by h, bounds the numeric error at about
    /// 1e-5 relative to the gradient's scale; 2e-3 of the tensor's largest gradient plus 1e-2
    /// relative leaves room without hiding a wrong formula (those are off by O(1)).
    static let atolOfMax = 2e-3
    static let rtol = 1e-2

    /// Σ out · g in Double.
    static func project(_ out: UnsafePointer<Float>, _ g: [Float]) -> Double {
        var s = 0.0
        for i in 0..<g.count { s += Double(out[i]) * Double(g[i]) }
        return s
    }

    /// Compares `analytic` (count) with finite differences of `loss` with respect to `x` (count),
    /// at up to `samples` evenly spread indices. `x` is restored exactly afterwards.
    static func check(_ label: String, x: UnsafeMutablePointer<Float>, count: Int, analytic: [Float],
                      samples: Int = 24, h: Float = 1e-2, loss: () -> Double,
                      file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(analytic.count, count, "\(label): gradient count", file: file, line: line)
        let scale = max(analytic.map { abs(Double($0)) }.max() ?? 0, 1e-6)
        let n = min(samples, count)
        var worst = 0.0
        for k in 0..<n {
            let i = n == count ? k : (k * 7919 + k * count / n) % count
            let x0 = x[i]
            func at(_ delta: Float) -> Double { x[i] = x0 + delta; return loss() }
            let lm2 = at(-2 * h), lm1 = at(-h), lp1 = at(h), lp2 = at(2 * h)
            x[i] = x0
            let numeric = (lm2 - 8 * lm1 + 8 * lp1 - lp2) / (12 * Double(h))
            let a = Double(analytic[i])
            let err = abs(numeric - a)
            worst = max(worst, err / scale)
            if err > atolOfMax * scale + rtol * abs(a) {
                XCTFail("\(label)[\(i)]: analytic \(a), numeric \(numeric) (scale \(scale))", file: file, line: line)
                return
            }
        }
        print("  gradcheck \(label): \(n) of \(count) elements, worst |Δ|/max|g| = \(worst)")
    }
}

/// Owns a Float buffer at a stable address (test inputs that kernels read and FD perturbs).
final class Buf {
    let p: UnsafeMutablePointer<Float>
    let count: Int
    init(_ values: [Float]) {
        count = values.count
        p = .allocate(capacity: Swift.max(count, 1))
        p.initialize(from: values, count: count)
    }
    init(zeros n: Int) {
        count = n
        p = .allocate(capacity: Swift.max(n, 1))
        p.initialize(repeating: 0, count: Swift.max(n, 1))
    }
    deinit { p.deallocate() }
    var array: [Float] { Array(UnsafeBufferPointer(start: p, count: count)) }
    func zero() { p.update(repeating: 0, count: count) }
}
