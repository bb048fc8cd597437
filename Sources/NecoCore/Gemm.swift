import COpenBLAS

/// The one GEMM wrapper of libneco, over OpenBLAS `cblas_sgemm`, row-major.
///
///     out (M, N) = alpha · op(a) · op(b) + beta · out
///
/// `op(a)` is (M, K): `a` is stored (M, K) when `transA == false`, (K, M) when true.
/// `op(b)` is (K, N): `b` is stored (K, N) when `transB == false`, (N, K) when true.
/// PyTorch's `Linear` weight (out, in) gives `y = x · Wᵀ`: `gemm(out: y, a: x, b: w, transB: true)`.
/// Leading dimensions default to the dense row length; pass them to address sub-matrices (for
/// example one head's columns inside a fused QKV buffer).
public enum Gemm {
    @inlinable
    public static func gemm(
        out: UnsafeMutablePointer<Float>, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
        m: Int, n: Int, k: Int,
        transA: Bool = false, transB: Bool = false,
        alpha: Float = 1, beta: Float = 0,
        lda: Int? = nil, ldb: Int? = nil, ldc: Int? = nil
    ) {
        precondition(m >= 0 && n >= 0 && k >= 0 && m <= Int(Int32.max) && n <= Int(Int32.max) && k <= Int(Int32.max),
                     "gemm: dims out of range")
        if m == 0 || n == 0 { return }
        let lda = lda ?? (transA ? m : k)
        let ldb = ldb ?? (transB ? k : n)
        let ldc = ldc ?? n
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, out, Int32(ldc))
    }

    /// Naive triple loop with the same contract as `gemm`, accumulating in Double.
    /// The algorithmic reference for tests; never used on a hot path.
    public static func gemmReference(
        out: UnsafeMutablePointer<Float>, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
        m: Int, n: Int, k: Int,
        transA: Bool = false, transB: Bool = false,
        alpha: Float = 1, beta: Float = 0,
        lda: Int? = nil, ldb: Int? = nil, ldc: Int? = nil
    ) {
        let lda = lda ?? (transA ? m : k)
        let ldb = ldb ?? (transB ? k : n)
        let ldc = ldc ?? n
        for i in 0..<m {
            for j in 0..<n {
                var acc: Double = 0
                for p in 0..<k {
                    let av = transA ? a[p * lda + i] : a[i * lda + p]
                    let bv = transB ? b[j * ldb + p] : b[p * ldb + j]
                    acc += Double(av) * Double(bv)
                }
                let prev: Float = beta == 0 ? 0 : beta * out[i * ldc + j]
                out[i * ldc + j] = Float(Double(alpha) * acc) + prev
            }
        }
    }
}
