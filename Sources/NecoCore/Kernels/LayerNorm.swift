import CNecoKernels

/// LayerNorm over the last dimension, as `torch.nn.functional.layer_norm` (biased variance).
///
///     y = (x − mean) · rstd · weight + bias,  rstd = 1 / sqrt(var + eps)
///
/// Shapes: input/out (rows, dim); mean/rstd (rows); weight/bias (dim).
/// Statistics accumulate in Float with a two-pass mean/variance, like PyTorch's CPU kernel; the
/// per-row arithmetic is in CNecoKernels (see `CPUFeatures`).
/// Backward accumulates (`+=`) into dInput, dWeight and dBias.
public enum LayerNorm {
    public static let defaultEps: Float = 1e-6

    public static func forward(out: UnsafeMutablePointer<Float>,
                               mean: UnsafeMutablePointer<Float>?, rstd: UnsafeMutablePointer<Float>?,
                               input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
                               rows: Int, dim: Int, eps: Float = defaultEps) {
        Threads.parallelFor(rows, minChunk: max(1, 8192 / max(dim, 1))) { s, e in
            nk_layernorm_rows(out + s * dim, mean.map { $0 + s }, rstd.map { $0 + s }, input + s * dim,
                              weight, bias, e - s, dim, eps)
        }
    }

    /// Given dOut (rows, dim) and the saved mean/rstd:
    ///   xhat = (x − mean)·rstd;  dxhat = dOut·weight
    ///   dx += rstd · (dxhat − mean(dxhat) − xhat · mean(dxhat·xhat))
    ///   dWeight += Σ_rows dOut·xhat;  dBias += Σ_rows dOut
    /// The parameter-gradient reduction over rows runs single-threaded so results are deterministic.
    public static func backward(dInput: UnsafeMutablePointer<Float>, dWeight: UnsafeMutablePointer<Float>,
                                dBias: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                                input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, rows: Int, dim: Int) {
        Threads.parallelFor(rows, minChunk: max(1, 8192 / max(dim, 1))) { s, e in
            nk_layernorm_backward_rows(dInput + s * dim, dOut + s * dim, input + s * dim, weight, mean + s, rstd + s,
                                       e - s, dim)
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
