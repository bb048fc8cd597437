import NecoCore

#if canImport(Glibc)
import Glibc
#endif

/// Axial rotary position embedding of DINOv3 (see `RoPESettings` for the formula).
///
/// Letters: h×w patch grid, N = h·w, E head width, n = E/4, B batch, T tokens, D = heads·E.
/// Tables: cos, sin (N, E/2), row-major over the grid; column k < n is the y angle of period k,
/// n ≤ k < 2n the x angle of period k − n.
///
/// Apply (rotate-half form), per patch token, head and k < E/2, on q and k of the fused qkv:
///     a' = a·cos θ_k − b·sin θ_k,   b' = b·cos θ_k + a·sin θ_k      (a = ch k, b = ch k + E/2)
/// Backward is the transposed rotation, i.e. the same call with sin negated (`inverse`).
public enum RoPE {
    /// Periods (E/4) as timm and Meta compute them: base^(2j / (E/2)), optionally rounded to bfloat16.
    public static func periods(headDim e: Int, settings s: RoPESettings) -> [Float] {
        let n = e / 4
        return (0..<n).map { j in
            let exponent = Float(2 * j) / Float(e / 2)
            let p = Float(pow(Double(s.base), Double(exponent)))
            return s.bf16Periods ? roundToBF16(p) : p
        }
    }

    /// Round to the nearest bfloat16 (ties to even), as `tensor.to(torch.bfloat16)`.
    public static func roundToBF16(_ v: Float) -> Float {
        let bits = v.bitPattern
        let rounded = (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) & 0xFFFF_0000
        return Float(bitPattern: rounded)
    }

    /// Patch-centre coordinates in [−1, 1] along one axis of `count` patches (float32 as PyTorch:
    /// (i + 0.5) / count, then 2c − 1).
    public static func coordinate(_ i: Int, of count: Int) -> Float {
        let c = (Float(i) + 0.5) / Float(count)
        return 2 * c - 1
    }

    /// Fills cos, sin (N, E/2) for an h×w grid.
    public static func tables(cos: UnsafeMutablePointer<Float>, sin: UnsafeMutablePointer<Float>,
                              gridHeight h: Int, gridWidth w: Int, headDim e: Int, periods: [Float],
                              transform t: RoPECoordinateTransform = RoPECoordinateTransform()) {
        let n = e / 4, half = e / 2
        let twoPi = Float(2 * Double.pi)
        for i in 0..<h {
            let y = t.isIdentity ? coordinate(i, of: h) : (coordinate(i, of: h) + t.shiftY) * t.scaleY
            for j in 0..<w {
                let x = t.isIdentity ? coordinate(j, of: w) : (coordinate(j, of: w) + t.shiftX) * t.scaleX
                let row = (i * w + j) * half
                for k in 0..<n {
                    let ay = twoPi * y / periods[k], ax = twoPi * x / periods[k]
                    cos[row + k] = Glibc.cosf(ay); sin[row + k] = Glibc.sinf(ay)
                    cos[row + n + k] = Glibc.cosf(ax); sin[row + n + k] = Glibc.sinf(ax)
                }
            }
        }
    }

    /// Rotates q and k of the patch tokens (rows `prefix ..< T` of each image) in place.
    /// - Parameters:
    ///   - qkv: (B, T, 3D) fused q | k | v, heads contiguous inside each third.
    ///   - inverse: rotate by −θ (the backward pass: dq_pre = Rᵀ dq).
    public static func apply(qkv: UnsafeMutablePointer<Float>, cos: UnsafePointer<Float>, sin: UnsafePointer<Float>,
                             batch: Int, tokens t: Int, prefix: Int, heads: Int, headDim e: Int,
                             inverse: Bool = false) {
        let d = heads * e, half = e / 2, n = t - prefix
        let sign: Float = inverse ? -1 : 1
        Threads.parallelFor(batch * n, minChunk: 16) { s, end in
            for idx in s..<end {
                let b = idx / n, i = idx % n
                let row = qkv + (b * t + prefix + i) * 3 * d
                let c = cos + i * half, sn = sin + i * half
                for part in 0..<2 {
                    for hd in 0..<heads {
                        let v = row + part * d + hd * e
                        for k in 0..<half {
                            let a = v[k], bb = v[k + half]
                            let sk = sign * sn[k]
                            v[k] = a * c[k] - bb * sk
                            v[k + half] = bb * c[k] + a * sk
                        }
                    }
                }
            }
        }
    }

    /// Zeroes the parts of a (3D) qkv bias (or its gradient) that `mode` fixes at zero.
    public static func maskBias(_ bias: UnsafeMutablePointer<Float>, mode: QKVBiasMode, dim d: Int) {
        for r in mode.zeroRanges(dim: d) { (bias + r.lowerBound).update(repeating: 0, count: r.count) }
    }
}

/// RoPE cos/sin tables of one grid (inference; cached per model and grid size by the caller).
public struct RoPETables: Sendable {
    public let gridHeight: Int, gridWidth: Int, headDim: Int
    /// (N, E/2) each.
    public let cos: [Float], sin: [Float]

    public init(config c: ViTConfig, gridHeight h: Int, gridWidth w: Int,
                transform: RoPECoordinateTransform = RoPECoordinateTransform()) {
        let e = c.headDim
        let periods = RoPE.periods(headDim: e, settings: c.rope ?? RoPESettings())
        var cs = [Float](repeating: 0, count: h * w * e / 2), sn = cs
        cs.withUnsafeMutableBufferPointer { cp in
            sn.withUnsafeMutableBufferPointer { sp in
                RoPE.tables(cos: cp.baseAddress!, sin: sp.baseAddress!, gridHeight: h, gridWidth: w, headDim: e,
                            periods: periods, transform: transform)
            }
        }
        gridHeight = h; gridWidth = w; headDim = e; cos = cs; sin = sn
    }
}

extension RoPETables {
    /// Rotates q and k of the patch tokens of a fused qkv (B, T, 3D) in place (`RoPE.apply`).
    public func apply(qkv: UnsafeMutablePointer<Float>, batch: Int, tokens: Int, prefix: Int, heads: Int,
                      inverse: Bool = false) {
        cos.withUnsafeBufferPointer { c in
            sin.withUnsafeBufferPointer { s in
                RoPE.apply(qkv: qkv, cos: c.baseAddress!, sin: s.baseAddress!, batch: batch, tokens: tokens,
                           prefix: prefix, heads: heads, headDim: headDim, inverse: inverse)
            }
        }
    }
}

extension ViTModel {
    /// RoPE tables of this (DINOv3) model for an h×w patch grid, without augmentation.
    public func ropeTables(gridHeight: Int, gridWidth: Int) -> RoPETables {
        RoPETables(config: config, gridHeight: gridHeight, gridWidth: gridWidth)
    }
}

extension Embeddings {
    /// Tokens 0 ..< 1 + R of every image of x (B, T, D): CLS, then the registers; the RoPE models'
    /// (DINOv3) token assembly, which adds no position to any token.
    public static func prefixTokens(x: UnsafeMutablePointer<Float>, params p: FloatSlab, layout L: ViTLayout,
                                    batch: Int, tokens t: Int) {
        let d = L.config.embedDim, r = L.config.registers
        for b in 0..<batch {
            let row = x + b * t * d
            row.update(from: p[L.clsToken], count: d)
            if r > 0 { (row + d).update(from: p[L.registerTokens], count: r * d) }
        }
    }

    /// Backward of `prefixTokens`: dCls += Σ_b dX[b, 0], dReg += Σ_b dX[b, 1…R].
    static func prefixTokensBackward(grads g: UnsafeMutablePointer<Float>, dX: UnsafePointer<Float>, layout L: ViTLayout,
                                     batch: Int, tokens t: Int) {
        let d = L.config.embedDim, r = L.config.registers
        for b in 0..<batch {
            let row = dX + b * t * d
            let dCls = g + L.clsToken
            for i in 0..<d { dCls[i] += row[i] }
            if r > 0 {
                let dReg = g + L.registerTokens
                for i in 0..<(r * d) { dReg[i] += row[d + i] }
            }
        }
    }
}
