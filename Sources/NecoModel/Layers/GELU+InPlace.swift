import CNecoKernels
import NecoCore

extension GELU {
    /// In-place backward of the exact GELU for a buffer written exactly once, with the column
    /// sums of the result (the following Linear's bias gradient) fused into the same pass:
    ///
    ///     grad[r, j] ← grad[r, j] · gelu'(input[r, j]),   gelu'(x) = Φ(x) + x·φ(x)
    ///     columnSum[j] += Σ_r grad[r, j]                  (when non-nil)
    ///
    /// Φ(x) = ½(1 + erf(x/√2)) uses the forward's erf; its exp(−x²/2) is shared with
    /// φ(x) = exp(−x²/2)/√(2π), so each element costs one exp (CNecoKernels). Shapes: grad, input
    /// (rows, cols); columnSum (cols). The column sums add fixed blocks of `RowBlocks.rows` rows in
    /// order, so they do not depend on the thread count.
    public static func backwardInPlace(grad: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, rows: Int,
                                       cols: Int, columnSum: UnsafeMutablePointer<Float>?) {
        RowBlocks.forEach(rows: rows, cols: cols, into: columnSum) { r0, r1, partial in
            nk_gelu_grad_rows(grad + r0 * cols, input + r0 * cols, r1 - r0, cols, partial)
        }
    }
}

/// Row reductions in fixed blocks of rows: block b covers rows [b·rows, (b+1)·rows); the blocks
/// run in parallel, each into its own partial (cols) vector, and the partials are added to the
/// output in block order. The result is the same for every thread count.
public enum RowBlocks {
    public static let rows = 256

    /// Calls `body(r0, r1, partial)` for every block (partial is nil when `out` is nil), then
    /// out[j] += Σ_blocks partial[j].
    @inlinable
    public static func forEach(rows n: Int, cols: Int, into out: UnsafeMutablePointer<Float>?,
                               _ body: (Int, Int, UnsafeMutablePointer<Float>?) -> Void) {
        let blocks = (n + rows - 1) / rows
        let partials: UnsafeMutablePointer<Float>? = out == nil ? nil : .allocate(capacity: max(1, blocks * cols))
        partials?.initialize(repeating: 0, count: max(1, blocks * cols))
        Threads.parallelFor(blocks) { s, e in
            for b in s..<e {
                body(b * rows, min(n, (b + 1) * rows), partials.map { $0 + b * cols })
            }
        }
        if let out, let partials {
            for b in 0..<blocks {
                let p = partials + b * cols
                for j in 0..<cols { out[j] += p[j] }
            }
            partials.deallocate()
        }
    }
}
