/// Exact (erf) GELU: y = ½·x·(1 + erf(x/√2)), as `torch.nn.functional.gelu(approximate="none")`.
/// Forward and backward side by side; backward accumulates (`+=`) into `dInput`.
public enum GELU {
    @usableFromInline static let invSqrt2: Float = 0.707_106_781_186_547_5
    @usableFromInline static let invSqrt2Pi: Float = 0.398_942_280_401_432_7

    /// out (count) = gelu(input (count)); `out` must not overlap `input` (use `forwardInPlace`).
    @inlinable
    public static func forward(out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, count: Int) {
        Threads.parallelFor(count, minChunk: 1 << 15) { s, e in
            for i in s..<e {
                let x = input[i]
                out[i] = 0.5 * x * (1 + FastMath.erf(x * invSqrt2))
            }
        }
    }

    /// In place: x (count) = gelu(x). (A separate entry point because with `out == input` the
    /// vectoriser's runtime alias check fails and `forward` would fall back to scalar code.)
    @inlinable
    public static func forwardInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) {
        Threads.parallelFor(count, minChunk: 1 << 15) { s, e in
            for i in s..<e {
                let v = x[i]
                x[i] = 0.5 * v * (1 + FastMath.erf(v * invSqrt2))
            }
        }
    }

    /// dInput (count) += dOut · gelu'(input), gelu'(x) = Φ(x) + x·φ(x).
    @inlinable
    public static func backward(dInput: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                                input: UnsafePointer<Float>, count: Int) {
        Threads.parallelFor(count, minChunk: 1 << 15) { s, e in
            for i in s..<e {
                let x = input[i]
                let cdf = 0.5 * (1 + FastMath.erf(x * invSqrt2))
                let pdf = invSqrt2Pi * FastMath.exp(-0.5 * x * x)
                dInput[i] += dOut[i] * (cdf + x * pdf)
            }
        }
    }
}
