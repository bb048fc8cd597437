/// Row softmax, numerically stabilised by the row maximum.
public enum Softmax {
    /// In place over `rows` rows of length `cols`: x[r, :] = softmax(scale · x[r, :]).
    /// Single-threaded on purpose: callers (attention) already run it inside a parallel region.
    @inlinable
    public static func forwardInPlace(_ x: UnsafeMutablePointer<Float>, rows: Int, cols: Int, scale: Float = 1) {
        for r in 0..<rows {
            let row = x + r * cols
            let mx = maxOf(row, cols)
            let shift = mx * scale
            for j in 0..<cols { row[j] = FastMath.exp(row[j] * scale - shift) }
            let sum = sumOf(row, cols)
            let inv = 1 / sum
            for k in 0..<cols { row[k] *= inv }
        }
    }

    /// Maximum of n values, with 4 independent accumulators.
    @inlinable @inline(__always)
    public static func maxOf(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var m0 = -Float.infinity, m1 = m0, m2 = m0, m3 = m0
        var j = 0
        while j + 4 <= n {
            m0 = max(m0, x[j]); m1 = max(m1, x[j + 1]); m2 = max(m2, x[j + 2]); m3 = max(m3, x[j + 3])
            j += 4
        }
        while j < n { m0 = max(m0, x[j]); j += 1 }
        return max(max(m0, m1), max(m2, m3))
    }

    /// Sum of n values in 8 lanes (a fixed order, so results are reproducible).
    @inlinable @inline(__always)
    public static func sumOf(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var lanes = SIMD8<Float>()
        var j = 0
        while j + 8 <= n {
            lanes += UnsafeRawPointer(x + j).loadUnaligned(as: SIMD8<Float>.self)
            j += 8
        }
        var s = lanes.sum()
        while j < n { s += x[j]; j += 1 }
        return s
    }

    /// Backward of y = softmax(scale · x) for one row set, given the saved probabilities y:
    /// dx[r, j] (+)= scale · y[r, j] · (dy[r, j] − Σ_k dy[r, k] · y[r, k]).
    /// Writes (`=`) into `dInput` when `accumulate == false` (the caller documents it).
    @inlinable
    public static func backward(dInput: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                                probs: UnsafePointer<Float>, rows: Int, cols: Int, scale: Float = 1,
                                accumulate: Bool = true) {
        for r in 0..<rows {
            let y = probs + r * cols, dy = dOut + r * cols, dx = dInput + r * cols
            var dot: Float = 0
            for j in 0..<cols { dot += dy[j] * y[j] }
            if accumulate {
                for j in 0..<cols { dx[j] += scale * y[j] * (dy[j] - dot) }
            } else {
                for j in 0..<cols { dx[j] = scale * y[j] * (dy[j] - dot) }
            }
        }
    }
}
