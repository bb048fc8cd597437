/// Branch-free `exp` and `erf` for the elementwise kernels (softmax, GELU), written as scalar code
/// that LLVM auto-vectorises when it is inlined into a plain loop over a buffer.
///
/// `exp`: range reduction x = n·ln2 + r with |r| ≤ ln2/2, a degree-7 Taylor polynomial for e^r and
/// 2^n assembled in the exponent bits. Relative error ≤ 2e-7 on [-80, 88.7]; inputs below −80 give
/// e^-80 ≈ 1.8e-35 instead of a subnormal or zero (subnormal arithmetic costs ~100× more).
/// `erf`: Abramowitz & Stegun 7.1.26, erf(x) = 1 − t·(a1 + t·(a2 + …))·e^(−x²), t = 1/(1 + p·|x|),
/// absolute error ≤ 1.5e-7 (plus float rounding), odd-extended.
public enum FastMath {
    @inlinable @inline(__always)
    public static func exp(_ x0: Float) -> Float {
        let x = min(max(x0, -80), 88.7)  // ≥ e^-80: results stay normal (subnormals are slow)
        // Round to nearest integer with the 1.5·2²³ trick: the integer lands in the low mantissa bits.
        let shifted = x * 1.442_695_04 + 12_582_912
        let n = shifted - 12_582_912
        var r = x - n * 0.693_145_751_953_125       // ln2 high part (exact in float)
        r = r - n * 1.428_606_765_330_187e-6         // ln2 low part
        var p: Float = 1.0 / 5040.0
        p = p * r + 1.0 / 720.0
        p = p * r + 1.0 / 120.0
        p = p * r + 1.0 / 24.0
        p = p * r + 1.0 / 6.0
        p = p * r + 0.5
        p = p * r + 1.0
        p = p * r + 1.0
        let ni = Int32(bitPattern: shifted.bitPattern) &- 0x4B40_0000  // n as an integer
        return p * Float(bitPattern: UInt32(bitPattern: (ni &+ 127) &<< 23))
    }

    /// erf(x) together with e^(−x²), which it computes anyway (GELU's derivative reuses it).
    @inlinable @inline(__always)
    public static func erfWithGaussian(_ x: Float) -> (erf: Float, expNegSq: Float) {
        let ax = Float(bitPattern: x.bitPattern & 0x7FFF_FFFF)
        let t = 1.0 / (1.0 + 0.327_591_1 * ax)
        var poly: Float = 1.061_405_429
        poly = poly * t - 1.453_152_027
        poly = poly * t + 1.421_413_741
        poly = poly * t - 0.284_496_736
        poly = poly * t + 0.254_829_592
        poly = poly * t
        let e = exp(-(ax * ax))
        let y = 1.0 - poly * e
        // Copy the sign of x onto y (y ≥ 0 here).
        return (Float(bitPattern: y.bitPattern | (x.bitPattern & 0x8000_0000)), e)
    }

    @inlinable @inline(__always)
    public static func erf(_ x: Float) -> Float { erfWithGaussian(x).erf }
}
