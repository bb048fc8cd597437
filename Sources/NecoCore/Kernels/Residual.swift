/// Residual add with an optional per-channel LayerScale: x += gamma ⊙ branch.
///
/// Shapes: residual/branch (rows, dim); gamma (dim) or nil for plain residual (DINO v1).
/// Backward: dBranch += dResidual ⊙ gamma; dGamma += Σ_rows dResidual ⊙ branch
/// (the residual gradient itself passes through unchanged).
public enum Residual {
    @inlinable
    public static func addScaled(residual: UnsafeMutablePointer<Float>, branch: UnsafePointer<Float>,
                                 gamma: UnsafePointer<Float>?, rows: Int, dim: Int) {
        Threads.parallelFor(rows, minChunk: max(1, 16384 / max(dim, 1))) { s, e in
            for r in s..<e {
                let x = residual + r * dim, b = branch + r * dim
                if let gamma {
                    for i in 0..<dim { x[i] += gamma[i] * b[i] }
                } else {
                    for i in 0..<dim { x[i] += b[i] }
                }
            }
        }
    }

    @inlinable
    public static func backwardScaled(dBranch: UnsafeMutablePointer<Float>, dGamma: UnsafeMutablePointer<Float>?,
                                      dResidual: UnsafePointer<Float>, branch: UnsafePointer<Float>,
                                      gamma: UnsafePointer<Float>?, rows: Int, dim: Int) {
        for r in 0..<rows {
            let g = dResidual + r * dim, db = dBranch + r * dim, b = branch + r * dim
            if let gamma {
                for i in 0..<dim { db[i] += g[i] * gamma[i] }
                if let dGamma { for i in 0..<dim { dGamma[i] += g[i] * b[i] } }
            } else {
                for i in 0..<dim { db[i] += g[i] }
            }
        }
    }
}
