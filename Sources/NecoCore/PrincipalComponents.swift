import COpenBLAS

/// Principal component analysis, the one copy libneco has (the overclustering protocol's PCA 50,
/// the PCA picture's three colours), on LAPACK's symmetric eigensolver.
///
/// Letters: N rows, D input dim, k output dim.
public enum PrincipalComponents {
    /// Eigen-decomposition of a symmetric (n, n) matrix (row-major; only symmetric input makes
    /// sense) by LAPACK `dsyevr` (relatively robust representations, double precision).
    /// - Returns: eigenvalues in decreasing order and the matching unit eigenvectors as the *rows*
    ///   of an (n, n) matrix (row i belongs to value i).
    /// - Throws: `.invalidArgument` for a matrix that is not n × n; `.outOfMemory` beyond 32-bit
    ///   LAPACK sizes; `.internal` if LAPACK reports a failure.
    public static func symmetricEigen(_ matrix: [Double], n: Int) throws -> (values: [Double], vectors: [Double]) {
        guard n >= 1, matrix.count == n * n else {
            throw NecoError.invalidArgument("symmetric eigen-decomposition needs an n×n matrix (n = \(n), \(matrix.count) values)")
        }
        guard n <= 46_340 else { throw NecoError(.outOfMemory, "a \(n)×\(n) eigenproblem exceeds LAPACK's 32-bit sizes") }
        var a = matrix  // row-major symmetric = column-major symmetric; dsyevr overwrites it
        var n32 = Int32(n), lda = Int32(n), ldz = Int32(n)
        var vl = 0.0, vu = 0.0, il: Int32 = 1, iu = Int32(n), abstol = 0.0
        var m: Int32 = 0, info: Int32 = 0
        var w = [Double](repeating: 0, count: n)
        var z = [Double](repeating: 0, count: n * n)
        var isuppz = [Int32](repeating: 0, count: 2 * n)
        // Workspace query, then the decomposition.
        var lwork: Int32 = -1, liwork: Int32 = -1
        var workSize = 0.0
        var iworkSize: Int32 = 0
        dsyevr_("V", "A", "U", &n32, &a, &lda, &vl, &vu, &il, &iu, &abstol, &m, &w, &z, &ldz, &isuppz,
                &workSize, &lwork, &iworkSize, &liwork, &info, 1, 1, 1)
        guard info == 0 else { throw NecoError(.internal, "LAPACK dsyevr workspace query failed (info \(info))") }
        lwork = Int32(workSize.rounded(.up))
        liwork = iworkSize
        var work = [Double](repeating: 0, count: Int(max(lwork, 1)))
        var iwork = [Int32](repeating: 0, count: Int(max(liwork, 1)))
        dsyevr_("V", "A", "U", &n32, &a, &lda, &vl, &vu, &il, &iu, &abstol, &m, &w, &z, &ldz, &isuppz,
                &work, &lwork, &iwork, &liwork, &info, 1, 1, 1)
        guard info == 0, Int(m) == n else {
            throw NecoError(.internal, "LAPACK dsyevr failed (info \(info), \(m) of \(n) eigenvalues)")
        }
        // Ascending → descending. Column i of Z (column-major) is z[i·n ..< (i+1)·n].
        var values = [Double](repeating: 0, count: n), vectors = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            let src = n - 1 - i
            values[i] = w[src]
            for j in 0..<n { vectors[i * n + j] = z[src * n + j] }
        }
        return (values, vectors)
    }

    /// The top `outDim` principal components of x (rows, D): the projections (rows, k) of the
    /// centred rows onto the eigenvectors of the covariance XᵀX / N with the largest eigenvalues
    /// (faiss `PCAMatrix` without whitening or rotation), and each component's share of the total
    /// variance. The sign of each component is fixed so that its largest-magnitude loading is
    /// positive, so the result does not depend on the eigensolver's signs.
    ///
    /// - Throws: `.invalidArgument` unless 1 ≤ k ≤ D and rows ≥ 1.
    public static func project(_ x: UnsafePointer<Float>, rows n: Int, dim d: Int, outDim k: Int) throws -> (projected: [Float], explained: [Double]) {
        guard n >= 1, d >= 1, k >= 1, k <= d else {
            throw NecoError.invalidArgument("PCA to \(k) dims of \(n) rows × \(d) needs 1 ≤ \(k) ≤ \(d) and at least one row")
        }
        var mean = [Float](repeating: 0, count: d)
        do {
            var acc = [Double](repeating: 0, count: d)
            for r in 0..<n { for j in 0..<d { acc[j] += Double(x[r * d + j]) } }
            for j in 0..<d { mean[j] = Float(acc[j] / Double(n)) }
        }
        // Centred copy, then cov (D, D) = Xcᵀ Xc / N through the GEMM wrapper, in chunks of rows
        // so that the copy stays small.
        var cov = [Float](repeating: 0, count: d * d)
        let chunk = 65_536
        var centred = [Float](repeating: 0, count: min(n, chunk) * d)
        var r0 = 0
        while r0 < n {
            let m = min(chunk, n - r0)
            for r in 0..<m { for j in 0..<d { centred[r * d + j] = x[(r0 + r) * d + j] - mean[j] } }
            centred.withUnsafeBufferPointer { cp in
                cov.withUnsafeMutableBufferPointer { op in
                    Gemm.gemm(out: op.baseAddress!, a: cp.baseAddress!, b: cp.baseAddress!, m: d, n: d, k: m,
                              transA: true, alpha: 1 / Float(n), beta: r0 == 0 ? 0 : 1)
                }
            }
            r0 += m
        }
        // Symmetrise in Double (the GEMM's two triangles agree up to rounding).
        var covD = [Double](repeating: 0, count: d * d)
        for i in 0..<d { for j in 0..<d { covD[i * d + j] = 0.5 * (Double(cov[i * d + j]) + Double(cov[j * d + i])) } }
        let (values, vectors) = try symmetricEigen(covD, n: d)
        // Components (k, D) as Float, sign-fixed.
        var comp = [Float](repeating: 0, count: k * d)
        for i in 0..<k {
            var big = 0
            for j in 0..<d where abs(vectors[i * d + j]) > abs(vectors[i * d + big]) { big = j }
            let sgn: Double = vectors[i * d + big] < 0 ? -1 : 1
            for j in 0..<d { comp[i * d + j] = Float(sgn * vectors[i * d + j]) }
        }
        // projected (N, k) = (X − mean) · compᵀ, chunked like the covariance.
        var out = [Float](repeating: 0, count: n * k)
        r0 = 0
        while r0 < n {
            let m = min(chunk, n - r0)
            for r in 0..<m { for j in 0..<d { centred[r * d + j] = x[(r0 + r) * d + j] - mean[j] } }
            centred.withUnsafeBufferPointer { cp in
                comp.withUnsafeBufferPointer { wp in
                    out.withUnsafeMutableBufferPointer { op in
                        Gemm.gemm(out: op.baseAddress! + r0 * k, a: cp.baseAddress!, b: wp.baseAddress!, m: m, n: k, k: d,
                                  transB: true)
                    }
                }
            }
            r0 += m
        }
        let total = values.reduce(0) { $0 + max($1, 0) }
        let explained = (0..<k).map { total > 0 ? max(values[$0], 0) / total : 0 }
        return (out, explained)
    }

    /// Singular values of x (rows, D), in decreasing order: the square roots of the eigenvalues of
    /// the Gram matrix xᵀx (D, D), accumulated in Double (`cblas_dsyrk` over chunks of rows
    /// converted to Double), so that the small values keep their accuracy; eigenvalues that
    /// rounding makes slightly negative count as 0. No centring.
    /// - Throws: `.invalidArgument` for no rows or no columns.
    public static func singularValues(_ x: UnsafePointer<Float>, rows n: Int, dim d: Int) throws -> [Double] {
        guard n >= 1, d >= 1, d <= 46_340 else {
            throw NecoError.invalidArgument("singular values of \(n) rows × \(d) need at least one row and 1...46340 columns")
        }
        var gram = [Double](repeating: 0, count: d * d)  // upper triangle (row-major) filled by dsyrk
        let chunk = max(1, min(n, (1 << 22) / d))
        var rowsD = [Double](repeating: 0, count: chunk * d)
        var r0 = 0
        while r0 < n {
            let m = min(chunk, n - r0)
            for i in 0..<(m * d) { rowsD[i] = Double(x[r0 * d + i]) }
            // gram (D, D) += chunkᵀ (D, m) · chunk (m, D)
            cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(d), Int32(m), 1, rowsD, Int32(d), 1, &gram, Int32(d))
            r0 += m
        }
        for i in 0..<d { for j in 0..<i { gram[i * d + j] = gram[j * d + i] } }
        return try symmetricEigen(gram, n: d).values.map { max($0, 0).squareRoot() }
    }
}
