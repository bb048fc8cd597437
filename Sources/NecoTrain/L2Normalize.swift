import NecoCore

/// Row-wise L2 normalisation, as `torch.nn.functional.normalize(x, p=2, dim=-1, eps=1e-12)`.
/// Reference: https://pytorch.org/docs/stable/generated/torch.nn.functional.normalize.html
///
///     n = ‖x‖₂ (accumulated in Double);  y = x / max(n, eps)
///
/// Shapes: input/out (rows, dim), norms (rows). Saved for backward: y and n (the raw x is not
/// needed). Backward accumulates (`+=`):
///     n > eps:  dx += (g − y·(y·g)) / n
///     n ≤ eps:  dx += g / eps           (y = x/eps is linear there)
public enum L2Normalize {
    public static let defaultEps: Float = 1e-12

    /// out (rows, dim) ← input / max(‖input‖, eps); `out` may alias `input`. norms (rows) ← ‖input‖.
    public static func forward(out: UnsafeMutablePointer<Float>, norms: UnsafeMutablePointer<Float>?,
                               input: UnsafePointer<Float>, rows: Int, dim: Int, eps: Float = defaultEps) {
        Threads.parallelFor(rows, minChunk: max(1, 8192 / max(dim, 1))) { s, e in
            for r in s..<e {
                let x = input + r * dim, y = out + r * dim
                var acc: Double = 0
                for i in 0..<dim { acc += Double(x[i]) * Double(x[i]) }
                let n = Float(acc.squareRoot())
                let denom = max(n, eps)
                if UnsafePointer(y) == x {
                    for i in 0..<dim { y[i] = y[i] / denom }  // one pointer: vectorises in place
                } else {
                    for i in 0..<dim { y[i] = x[i] / denom }
                }
                norms?[r] = n
            }
        }
    }

    /// dInput (rows, dim) += backward of `forward` given dOut, the saved output y and norms.
    public static func backward(dInput: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                                out y: UnsafePointer<Float>, norms: UnsafePointer<Float>, rows: Int, dim: Int,
                                eps: Float = defaultEps) {
        Threads.parallelFor(rows, minChunk: max(1, 8192 / max(dim, 1))) { s, e in
            for r in s..<e {
                let g = dOut + r * dim, yr = y + r * dim, dx = dInput + r * dim
                let n = norms[r]
                if n > eps {
                    var dot: Float = 0
                    for i in 0..<dim { dot += yr[i] * g[i] }
                    let inv = 1 / n
                    for i in 0..<dim { dx[i] += (g[i] - yr[i] * dot) * inv }
                } else {
                    let inv = 1 / eps
                    for i in 0..<dim { dx[i] += g[i] * inv }
                }
            }
        }
    }
}
