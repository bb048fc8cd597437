import CNecoKernels

/// Fully connected layer with PyTorch's weight layout: y = x · Wᵀ + b.
///
/// Shapes: input (rows, inDim); weight (outDim, inDim); bias (outDim); out (rows, outDim).
/// Backward accumulates (`+=`): dInput += dOut · W; dWeight += dOutᵀ · x; dBias += Σ_rows dOut.
public enum Linear {
    /// The bias is added after the product (`addBias`), so a following elementwise kernel can take
    /// it over (`GELU.forwardAddingBias`) with the same result bit for bit.
    public static func forward(out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
                               weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                               rows: Int, inDim: Int, outDim: Int) {
        Gemm.gemm(out: out, a: input, b: weight, m: rows, n: outDim, k: inDim, transB: true)
        if let bias { addBias(out, bias: bias, rows: rows, cols: outDim) }
    }

    /// y (rows, cols) += bias (cols): the epilogue of `forward`, after the product.
    public static func addBias(_ y: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, rows: Int, cols: Int) {
        Threads.parallelFor(rows, minChunk: max(1, (1 << 15) / max(cols, 1))) { s, e in
            nk_add_bias_rows(y + s * cols, bias, e - s, cols)
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
