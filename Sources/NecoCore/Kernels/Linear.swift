/// Fully connected layer with PyTorch's weight layout: y = x · Wᵀ + b.
///
/// Shapes: input (rows, inDim); weight (outDim, inDim); bias (outDim); out (rows, outDim).
/// Backward accumulates (`+=`): dInput += dOut · W; dWeight += dOutᵀ · x; dBias += Σ_rows dOut.
public enum Linear {
    /// With a bias, each row of `out` is first filled with it and the product accumulates onto it
    /// (beta = 1): one pass over `out` besides the GEMM. (Adding the bias after a beta = 0 product
    /// costs two: OpenBLAS clears `out` in a pass of its own when beta ≠ 1.)
    public static func forward(out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
                               weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                               rows: Int, inDim: Int, outDim: Int) {
        if let bias {
            Threads.parallelFor(rows, minChunk: max(1, (1 << 15) / max(outDim, 1))) { s, e in
                for r in s..<e { (out + r * outDim).update(from: bias, count: outDim) }
            }
            Gemm.gemm(out: out, a: input, b: weight, m: rows, n: outDim, k: inDim, transB: true, beta: 1)
        } else {
            Gemm.gemm(out: out, a: input, b: weight, m: rows, n: outDim, k: inDim, transB: true)
        }
    }

    @inlinable
    public static func backward(dInput: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>?,
                                dBias: UnsafeMutablePointer<Float>?, dOut: UnsafePointer<Float>,
                                input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                rows: Int, inDim: Int, outDim: Int) {
        if let dInput {
            // dInput (rows, inDim) += dOut (rows, outDim) · W (outDim, inDim)
            Gemm.gemm(out: dInput, a: dOut, b: weight, m: rows, n: inDim, k: outDim, beta: 1)
        }
        if let dWeight {
            // dWeight (outDim, inDim) += dOutᵀ (outDim, rows) · x (rows, inDim)
            Gemm.gemm(out: dWeight, a: dOut, b: input, m: outDim, n: inDim, k: rows, transA: true, beta: 1)
        }
        if let dBias {
            for r in 0..<rows {
                let g = dOut + r * outDim
                for j in 0..<outDim { dBias[j] += g[j] }
            }
        }
    }
}
