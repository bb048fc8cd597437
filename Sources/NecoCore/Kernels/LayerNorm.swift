/// LayerNorm over the last dimension, as `torch.nn.functional.layer_norm` (biased variance).
///
///     y = (x − mean) · rstd · weight + bias,  rstd = 1 / sqrt(var + eps)
///
/// Shapes: input/out (rows, dim); mean/rstd (rows); weight/bias (dim).
/// Statistics accumulate in Float with a two-pass mean/variance, like PyTorch's CPU kernel.
/// Backward accumulates (`+=`) into dInput, dWeight and dBias.
public enum LayerNorm {
    public static let defaultEps: Float = 1e-6

    @inlinable
    public static func forward(out: UnsafeMutablePointer<Float>,
                               mean: UnsafeMutablePointer<Float>?, rstd: UnsafeMutablePointer<Float>?,
                               input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
                               rows: Int, dim: Int, eps: Float = defaultEps) {
        Threads.parallelFor(rows, minChunk: max(1, 8192 / max(dim, 1))) { s, e in
            for r in s..<e {
                let x = input + r * dim, y = out + r * dim
                var sum: Float = 0
                for i in 0..<dim { sum += x[i] }
                let m = sum / Float(dim)
                var v: Float = 0
                for i in 0..<dim { let d = x[i] - m; v += d * d }
                let rs = 1 / (v / Float(dim) + eps).squareRoot()
                for i in 0..<dim { y[i] = (x[i] - m) * rs * weight[i] + bias[i] }
                mean?[r] = m
                rstd?[r] = rs
            }
        }
    }

    /// Given dOut (rows, dim) and the saved mean/rstd:
    ///   xhat = (x − mean)·rstd;  dxhat = dOut·weight
    ///   dx += rstd · (dxhat − mean(dxhat) − xhat · mean(dxhat·xhat))
    ///   dWeight += Σ_rows dOut·xhat;  dBias += Σ_rows dOut
    /// The parameter-gradient reduction over rows runs single-threaded so results are deterministic.
    @inlinable
    public static func backward(dInput: UnsafeMutablePointer<Float>, dWeight: UnsafeMutablePointer<Float>,
                                dBias: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                                input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, rows: Int, dim: Int) {
        Threads.parallelFor(rows, minChunk: max(1, 8192 / max(dim, 1))) { s, e in
            for r in s..<e {
                let x = input + r * dim, g = dOut + r * dim, dx = dInput + r * dim
                let m = mean[r], rs = rstd[r]
                var sumD: Float = 0, sumDX: Float = 0
                for i in 0..<dim {
                    let xhat = (x[i] - m) * rs
                    let dxhat = g[i] * weight[i]
                    sumD += dxhat
                    sumDX += dxhat * xhat
                }
                let meanD = sumD / Float(dim), meanDX = sumDX / Float(dim)
                for i in 0..<dim {
                    let xhat = (x[i] - m) * rs
                    dx[i] += rs * (g[i] * weight[i] - meanD - xhat * meanDX)
                }
            }
        }
        for r in 0..<rows {
            let x = input + r * dim, g = dOut + r * dim
            let m = mean[r], rs = rstd[r]
            for i in 0..<dim {
                dWeight[i] += g[i] * (x[i] - m) * rs
                dBias[i] += g[i]
            }
        }
    }
}
