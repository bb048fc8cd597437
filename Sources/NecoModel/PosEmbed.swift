import NecoCore

/// Position-embedding resampling: the learned (G, G, D) grid → (h, w, D), separable bicubic.
///
/// Each rule (see `PosEmbedRule`) reduces to two dense 1-D weight matrices, Wy (h, G) and Wx (w, G):
///     out[i, j, :] = Σ_p Σ_q Wy[i, p] · Wx[j, q] · pe[p, q, :]
/// Forward applies rows then columns with GEMMs; backward is the transpose (so gradients reach the
/// G×G table during training). Taps and weights are computed in Double, stored as Float.
public enum PosEmbed {
    /// Resampling matrix (outSize, inSize) for one axis.
    public static func weights(rule: PosEmbedRule, inSize: Int, outSize: Int) -> [Float] {
        var w = [Double](repeating: 0, count: outSize * inSize)
        switch rule {
        case .neco, .bicubic:
            // PyTorch upsample_bicubic2d, align_corners=False: u = (d + 0.5)·scale − 0.5, taps clamped.
            let a = -0.75
            let scale = rule == .neco ? Double(inSize) / (Double(outSize) + 0.1) : Double(inSize) / Double(outSize)
            func c1(_ s: Double) -> Double { ((a + 2) * s - (a + 3)) * s * s + 1 }
            func c2(_ s: Double) -> Double { ((a * s - 5 * a) * s + 8 * a) * s - 4 * a }
            for d in 0..<outSize {
                let u = (Double(d) + 0.5) * scale - 0.5
                let i0 = Int(u.rounded(.down))
                let t = u - Double(i0)
                let coeffs = [c2(t + 1), c1(t), c1(1 - t), c2(2 - t)]
                for k in 0..<4 {
                    let idx = min(max(i0 - 1 + k, 0), inSize - 1)
                    w[d * inSize + idx] += coeffs[k]
                }
            }
        case .antialias:
            // PyTorch _upsample_bicubic2d_aa (Pillow-style): A = −0.5, support 2·max(scale, 1),
            // taps outside the input dropped, weights normalised to sum 1.
            let a = -0.5
            func filter(_ x0: Double) -> Double {
                let x = abs(x0)
                if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
                if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
                return 0
            }
            let scale = Double(inSize) / Double(outSize)
            let support = scale >= 1 ? 2 * scale : 2
            let invScale = scale >= 1 ? 1 / scale : 1
            for d in 0..<outSize {
                let center = scale * (Double(d) + 0.5)
                let xmin = max(Int(center - support + 0.5), 0)
                let xmax = min(Int(center + support + 0.5), inSize)
                var total = 0.0
                var taps: [Double] = []
                for j in xmin..<max(xmin, xmax) {
                    let v = filter((Double(j) - center + 0.5) * invScale)
                    taps.append(v)
                    total += v
                }
                for (k, v) in taps.enumerated() {
                    w[d * inSize + xmin + k] = total != 0 ? v / total : 0
                }
            }
        }
        return w.map { Float($0) }
    }

    /// out (h·w, D) ← pe (G·G, D) resampled; `scratch` needs h·G·D floats.
    /// When (h, w) == (G, G) the table is copied as-is (no resampling at the native size).
    public static func resample(out: UnsafeMutablePointer<Float>, table: UnsafePointer<Float>,
                                scratch: UnsafeMutablePointer<Float>,
                                grid g: Int, height h: Int, width w: Int, dim d: Int, rule: PosEmbedRule) {
        if h == g && w == g {
            out.update(from: table, count: g * g * d)
            return
        }
        let wy = weights(rule: rule, inSize: g, outSize: h)
        let wx = weights(rule: rule, inSize: g, outSize: w)
        // rows: tmp (h, G·D) = Wy (h, G) · pe (G, G·D)
        wy.withUnsafeBufferPointer { wyp in
            Gemm.gemm(out: scratch, a: wyp.baseAddress!, b: table, m: h, n: g * d, k: g)
        }
        // columns: out[i] (w, D) = Wx (w, G) · tmp[i] (G, D)
        wx.withUnsafeBufferPointer { wxp in
            for i in 0..<h {
                Gemm.gemm(out: out + i * w * d, a: wxp.baseAddress!, b: scratch + i * g * d, m: w, n: d, k: g)
            }
        }
    }

    /// Backward of `resample`: dTable (G·G, D) += Wyᵀ · (Wxᵀ · dOut) per row; `scratch` h·G·D floats.
    public static func resampleBackward(dTable: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                                        scratch: UnsafeMutablePointer<Float>,
                                        grid g: Int, height h: Int, width w: Int, dim d: Int, rule: PosEmbedRule) {
        if h == g && w == g {
            for i in 0..<(g * g * d) { dTable[i] += dOut[i] }
            return
        }
        let wy = weights(rule: rule, inSize: g, outSize: h)
        let wx = weights(rule: rule, inSize: g, outSize: w)
        // tmp[i] (G, D) = Wxᵀ (G, w) · dOut[i] (w, D)
        wx.withUnsafeBufferPointer { wxp in
            for i in 0..<h {
                Gemm.gemm(out: scratch + i * g * d, a: wxp.baseAddress!, b: dOut + i * w * d, m: g, n: d, k: w,
                          transA: true)
            }
        }
        // dTable (G, G·D) += Wyᵀ (G, h) · tmp (h, G·D)
        wy.withUnsafeBufferPointer { wyp in
            Gemm.gemm(out: dTable, a: wyp.baseAddress!, b: scratch, m: g, n: g * d, k: h, transA: true, beta: 1)
        }
    }
}
