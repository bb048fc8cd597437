import NecoCore
import NecoImage

/// Principal components of patch features, and the RGB picture made from the first three.
public enum PCA {
    /// The projections (rows, k) of the centred rows of `x` (rows, dim) onto its top-k principal
    /// components, ordered by variance (NecoCore's `PrincipalComponents`, on LAPACK).
    public static func project(_ x: ArraySlice<Float>, rows: Int, dim: Int, k: Int = 3) throws -> [Float] {
        guard x.count == rows * dim else {
            throw NecoError.shape("PCA of \(rows) rows × \(dim) given \(x.count) values")
        }
        return try x.withUnsafeBufferPointer { try PrincipalComponents.project($0.baseAddress!, rows: rows, dim: dim, outDim: k).projected }
    }

    /// The PCA picture: the first three components of the patch grid as RGB (each channel scaled
    /// between its 1st and 99th percentile), upsampled bilinearly to the image size, placed to the
    /// right of the input picture.
    public static func picture(image: RGBImage, features: ArraySlice<Float>, gridHeight gh: Int, gridWidth gw: Int,
                               dim: Int) throws -> RGBImage {
        let proj = try project(features, rows: gh * gw, dim: dim, k: 3)
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
