/// Patch embedding: a P×P convolution with stride P, written as im2col + GEMM.
///
/// Letters: B batch, C channels, H×W image, P patch, h = H/P, w = W/P, N = h·w, D embed dim.
/// Each patch flattens to C·P·P values in (channel, row, col) order, which matches the layout of a
/// PyTorch conv weight (D, C, P, P) viewed as (D, C·P·P). Tokens are row-major over the patch grid.
/// Pixels beyond h·P rows or w·P columns are ignored, as a strided convolution does.
public enum PatchEmbed {
    /// cols (N, C·P·P) ← image (C, H, W) for one image.
    @inlinable
    public static func im2col(cols: UnsafeMutablePointer<Float>, image: UnsafePointer<Float>,
                              channels: Int, height: Int, width: Int, patch: Int) {
        let h = height / patch, w = width / patch
        let k = channels * patch * patch
        Threads.parallelFor(h, minChunk: 2) { s, e in
            for py in s..<e {
                for px in 0..<w {
                    var dst = cols + (py * w + px) * k
                    for c in 0..<channels {
                        let plane = image + c * height * width
                        for r in 0..<patch {
                            let src = plane + (py * patch + r) * width + px * patch
                            dst.update(from: src, count: patch)
                            dst += patch
                        }
                    }
                }
            }
        }
    }

    /// Adjoint of `im2col`: dImage (C, H, W) += scatter of dCols (N, C·P·P).
    @inlinable
    public static func col2imAdd(dImage: UnsafeMutablePointer<Float>, dCols: UnsafePointer<Float>,
                                 channels: Int, height: Int, width: Int, patch: Int) {
        let h = height / patch, w = width / patch
        let k = channels * patch * patch
        for py in 0..<h {
            for px in 0..<w {
                var src = dCols + (py * w + px) * k
                for c in 0..<channels {
                    let plane = dImage + c * height * width
                    for r in 0..<patch {
                        let dst = plane + (py * patch + r) * width + px * patch
                        for i in 0..<patch { dst[i] += src[i] }
                        src += patch
                    }
                }
            }
        }
    }
}
