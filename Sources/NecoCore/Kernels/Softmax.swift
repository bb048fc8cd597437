import CNecoKernels

/// Row softmax, numerically stabilised by the row maximum (arithmetic in CNecoKernels, see
/// `CPUFeatures`; exp has relative error ≤ 2e-7).
public enum Softmax {
    /// In place over `rows` rows of length `cols`: x[r, :] = softmax(scale · x[r, :]).
    /// Single-threaded: callers split rows over threads themselves. The forward that `backward`
    /// differentiates; the model's attention has its softmax inside `Attention`'s kernel (down the
    /// columns of a transposed score block), not here.
    @inlinable
    public static func forwardInPlace(_ x: UnsafeMutablePointer<Float>, rows: Int, cols: Int, scale: Float = 1) {
        nk_softmax_rows(x, rows, cols, scale)
    }

    /// Backward of y = softmax(scale · x) for one row set, given the saved probabilities y:
    /// dx[r, j] (+)= scale · y[r, j] · (dy[r, j] − Σ_k dy[r, k] · y[r, k]).
    /// Writes (`=`) into `dInput` when `accumulate == false` (the caller documents it); `dInput`
    /// may equal `dOut`. Single-threaded, like `forwardInPlace`.
    @inlinable
    public static func backward(dInput: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                                probs: UnsafePointer<Float>, rows: Int, cols: Int, scale: Float = 1,
                                accumulate: Bool = true) {
        nk_softmax_backward_rows(dInput, dOut, probs, rows, cols, scale, accumulate ? 1 : 0)
    }
}
