import NecoCore

/// Standardisation and PCA of the overclustering protocol (NECO-SPEC §6.3: sklearn
/// `StandardScaler`, then faiss `PCAMatrix(D, 50)`).
///
/// Letters: N rows, D input dim, d output dim.
public enum FeatureReduction {
    /// x[:, j] = (x[:, j] − mean_j) / std_j in place, with the population std (ddof 0, as
    /// `StandardScaler`); a constant column (std 0) is only centred. Statistics in Double.
    public static func standardize(_ x: UnsafeMutablePointer<Float>, rows n: Int, dim d: Int) {
        precondition(n >= 1 && d >= 1, "standardize: empty matrix")
        var mean = [Double](repeating: 0, count: d), sq = [Double](repeating: 0, count: d)
        for r in 0..<n {
            let p = x + r * d
            for j in 0..<d { let v = Double(p[j]); mean[j] += v; sq[j] += v * v }
        }
        var scale = [Float](repeating: 1, count: d), shift = [Float](repeating: 0, count: d)
        for j in 0..<d {
            let m = mean[j] / Double(n)
            let v = max(sq[j] / Double(n) - m * m, 0)
            shift[j] = Float(m)
            scale[j] = v > 0 ? Float(1 / v.squareRoot()) : 1
        }
        Threads.parallelFor(n, minChunk: 1024) { s, e in
            for r in s..<e {
                let p = x + r * d
                for j in 0..<d { p[j] = (p[j] - shift[j]) * scale[j] }
            }
        }
    }

    /// Eigen-decomposition of a symmetric (n, n) matrix by cyclic Jacobi rotations, in Double.
    ///
    /// - Returns: eigenvalues in decreasing order and the matching eigenvectors as the *rows* of
    ///   an (n, n) matrix (row i is the unit eigenvector of value i).
    /// - Complexity: O(n³) per sweep; symmetric matrices converge in a handful of sweeps.
    public static func symmetricEigen(_ matrix: [Double], n: Int, maxSweeps: Int = 50) -> (values: [Double], vectors: [Double]) {
        precondition(matrix.count == n * n && n >= 1, "symmetricEigen: needs an n×n matrix")
        var a = matrix
        var v = [Double](repeating: 0, count: n * n)
        for i in 0..<n { v[i * n + i] = 1 }
        a.withUnsafeMutableBufferPointer { ab in
            v.withUnsafeMutableBufferPointer { vb in
                let a = ab.baseAddress!, v = vb.baseAddress!
                for _ in 0..<maxSweeps {
                    var off = 0.0, diag = 0.0
                    for i in 0..<n {
                        diag += a[i * n + i] * a[i * n + i]
                        for j in (i + 1)..<max(n, i + 1) { off += a[i * n + j] * a[i * n + j] }
                    }
                    if off <= 1e-22 * max(diag, 1e-300) { break }
                    for p in 0..<(n - 1) {
                        for q in (p + 1)..<n {
                            let apq = a[p * n + q]
                            if abs(apq) < 1e-300 { continue }
                            let app = a[p * n + p], aqq = a[q * n + q]
                            // Rotation angle that zeroes a[p, q] (Golub & Van Loan, Algorithm 8.4.1).
                            let tau = (aqq - app) / (2 * apq)
                            let t = (tau >= 0 ? 1.0 : -1.0) / (abs(tau) + (1 + tau * tau).squareRoot())
                            let c = 1 / (1 + t * t).squareRoot(), s = t * c
                            for k in 0..<n {  // A ← A · J (columns p, q)
                                let akp = a[k * n + p], akq = a[k * n + q]
                                a[k * n + p] = c * akp - s * akq
                                a[k * n + q] = s * akp + c * akq
                            }
                            let rp = a + p * n, rq = a + q * n
                            for k in 0..<n {  // A ← Jᵀ · A (rows p, q)
                                let apk = rp[k], aqk = rq[k]
                                rp[k] = c * apk - s * aqk
                                rq[k] = s * apk + c * aqk
                            }
                            for k in 0..<n {  // V ← V · J: column i of V is eigenvector i
                                let vkp = v[k * n + p], vkq = v[k * n + q]
                                v[k * n + p] = c * vkp - s * vkq
                                v[k * n + q] = s * vkp + c * vkq
                            }
                        }
                    }
                }
            }
        }
        let order = (0..<n).sorted { a[$0 * n + $0] > a[$1 * n + $1] || (a[$0 * n + $0] == a[$1 * n + $1] && $0 < $1) }
        var values = [Double](), vectors = [Double](repeating: 0, count: n * n)
        for (row, i) in order.enumerated() {
            values.append(a[i * n + i])
            for k in 0..<n { vectors[row * n + k] = v[k * n + i] }
        }
        return (values, vectors)
    }

    /// The top `outDim` principal components of x (rows, D): the projections (rows, d) of the
    /// centred rows onto the eigenvectors of the covariance XᵀX / N with the largest eigenvalues
    /// (faiss `PCAMatrix` without whitening or rotation). The sign of each component is fixed
    /// so that its largest-magnitude loading is positive.
    ///
    /// - Throws: `.invalidArgument` unless 1 ≤ d ≤ D and rows ≥ 1.
    public static func pca(_ x: UnsafePointer<Float>, rows n: Int, dim d: Int, outDim k: Int) throws -> (projected: [Float], explained: [Double]) {
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
        let (values, vectors) = symmetricEigen(covD, n: d)
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
}
