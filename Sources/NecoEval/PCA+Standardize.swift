import NecoCore

/// Standardisation of the overclustering protocol (NECO-SPEC §6.3: sklearn `StandardScaler`,
/// then faiss `PCAMatrix(D, 50)`, which is NecoCore's `PrincipalComponents.project`).
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
}
