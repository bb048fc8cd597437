/// Fully connected layer with PyTorch's weight layout: y = x · Wᵀ + b.
///
/// Shapes: input (rows, inDim); weight (outDim, inDim); bias (outDim); out (rows, outDim).
/// Backward: dInput = dOut · W (written once, `inputGradient`); dWeight += dOutᵀ · x and
/// dBias += Σ_rows dOut (accumulated, `backward`).
public enum Linear {
    /// The bias is filled into `out` by the GEMM's own workers, block by block, and the product
    /// accumulates onto it (`Gemm.gemm(bias:)`).
    public static func forward(out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
                               weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                               rows: Int, inDim: Int, outDim: Int) {
        Gemm.gemm(out: out, a: input, b: weight, m: rows, n: outDim, k: inDim, transB: true, bias: bias)
    }

    /// dInput (rows, inDim) = dOut (rows, outDim) · W (outDim, inDim), written once (not
    /// accumulated), on libneco's packed kernel: W is first packed, transposed, into `pack`
    /// (`Gemm.packedCount(outDim: inDim, inDim: outDim)` floats). `dInput` must not overlap `dOut`.
    public static func inputGradient(_ dInput: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                                     weight: UnsafePointer<Float>, rows: Int, inDim: Int, outDim: Int,
                                     pack: UnsafeMutablePointer<Float>) {
        let wt = Gemm.pack(weight, outDim: inDim, inDim: outDim, transposed: true, into: pack)
        Gemm.linear(out: dInput, input: dOut, weight: wt, bias: nil, rows: rows)
    }

    /// The parameter gradients, accumulated (`+=`): dWeight (outDim, inDim) += dOutᵀ · x on
    /// libneco's weight-gradient kernel, dBias (outDim) += Σ_rows dOut. The input gradient is
    /// `inputGradient`.
    @inlinable
    public static func backward(dWeight: UnsafeMutablePointer<Float>?, dBias: UnsafeMutablePointer<Float>?,
                                dOut: UnsafePointer<Float>, input: UnsafePointer<Float>,
                                rows: Int, inDim: Int, outDim: Int) {
        if let dWeight {
            // dWeight (outDim, inDim) += dOutᵀ (outDim, rows) · x (rows, inDim)
            Gemm.weightGradient(out: dWeight, a: dOut, b: input, m: outDim, n: inDim, k: rows, accumulate: true)
        }
        if let dBias {
            for r in 0..<rows {
                let g = dOut + r * outDim
                for j in 0..<outDim { dBias[j] += g[j] }
            }
        }
    }
}
