import NecoCore
import NecoImage

/// Principal components of patch features, and the RGB picture made from the first three.
public enum PCA {
    /// Top-k principal directions of `x` (rows, dim) by subspace iteration on the covariance.
    /// Returns the projections (rows, k) of the centred rows, components ordered by variance.
    public static func project(_ x: ArraySlice<Float>, rows: Int, dim: Int, k: Int = 3, iterations: Int = 60) -> [Float] {
        precondition(rows >= 1 && dim >= k && x.count == rows * dim)
        var centred = Array(x)
        var mean = [Float](repeating: 0, count: dim)
        for r in 0..<rows { for i in 0..<dim { mean[i] += centred[r * dim + i] } }
        for i in 0..<dim { mean[i] /= Float(rows) }
        for r in 0..<rows { for i in 0..<dim { centred[r * dim + i] -= mean[i] } }
        // cov (dim, dim) = Xᵀ X / rows
        var cov = [Float](repeating: 0, count: dim * dim)
        centred.withUnsafeBufferPointer { xp in
            cov.withUnsafeMutableBufferPointer { cp in
                Gemm.gemm(out: cp.baseAddress!, a: xp.baseAddress!, b: xp.baseAddress!, m: dim, n: dim, k: rows,
                          transA: true, alpha: 1 / Float(rows))
            }
        }
        // Subspace iteration: Q (dim, k) ← orth(cov · Q), deterministic start.
        var q = [Double](repeating: 0, count: dim * k)
        for i in 0..<dim { for j in 0..<k { q[i * k + j] = ((i * 7 + j * 13) % 17 == 0 ? 1 : 0) + Double((i + 1) * (j + 2) % 11) / 11 } }
        var z = [Double](repeating: 0, count: dim * k)
        for _ in 0..<iterations {
            for i in 0..<dim {
                for j in 0..<k {
                    var s = 0.0
                    for p in 0..<dim { s += Double(cov[i * dim + p]) * q[p * k + j] }
                    z[i * k + j] = s
                }
            }
            // Gram–Schmidt on the columns.
            for j in 0..<k {
                for prev in 0..<j {
                    var dot = 0.0
                    for i in 0..<dim { dot += z[i * k + j] * z[i * k + prev] }
                    for i in 0..<dim { z[i * k + j] -= dot * z[i * k + prev] }
                }
                var norm = 0.0
                for i in 0..<dim { norm += z[i * k + j] * z[i * k + j] }
                norm = max(norm.squareRoot(), 1e-30)
                for i in 0..<dim { z[i * k + j] /= norm }
            }
            q = z
        }
        var out = [Float](repeating: 0, count: rows * k)
        for r in 0..<rows {
            for j in 0..<k {
                var s = 0.0
                for i in 0..<dim { s += Double(centred[r * dim + i]) * q[i * k + j] }
                out[r * k + j] = Float(s)
            }
        }
        return out
    }

    /// The PCA picture: the first three components of the patch grid as RGB (each channel scaled
    /// between its 1st and 99th percentile), upsampled bilinearly to the image size, placed to the
    /// right of the input picture.
    public static func picture(image: RGBImage, features: ArraySlice<Float>, gridHeight gh: Int, gridWidth gw: Int,
                               dim: Int) -> RGBImage {
        let proj = project(features, rows: gh * gw, dim: dim, k: 3)
        var rgb = [Float](repeating: 0, count: gh * gw * 3)
        for c in 0..<3 {
            let col = (0..<(gh * gw)).map { proj[$0 * 3 + c] }.sorted()
            let lo = col[Int(Double(col.count - 1) * 0.01)], hi = col[Int(Double(col.count - 1) * 0.99)]
            let span = max(hi - lo, 1e-6)
            for i in 0..<(gh * gw) { rgb[i * 3 + c] = min(max((proj[i * 3 + c] - lo) / span, 0), 1) }
        }
        let up = Normalize.upsampleBilinear(rgb[...], height: gh, width: gw, dim: 3,
                                            outHeight: image.height, outWidth: image.width)
        var out = RGBImage(width: image.width * 2, height: image.height)
        for y in 0..<image.height {
            for x in 0..<image.width {
                for c in 0..<3 {
                    out.pixels[(y * out.width + x) * 3 + c] = image.pixels[(y * image.width + x) * 3 + c]
                    let v = up[(y * image.width + x) * 3 + c]
                    out.pixels[(y * out.width + image.width + x) * 3 + c] = UInt8(min(max(v * 255 + 0.5, 0), 255))
                }
            }
        }
        return out
    }
}
