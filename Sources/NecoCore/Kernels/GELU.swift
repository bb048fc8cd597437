import CNecoKernels

/// Exact (erf) GELU: y = ½·x·(1 + erf(x/√2)), as `torch.nn.functional.gelu(approximate="none")`.
/// Forward and backward side by side; backward accumulates (`+=`) into `dInput`.
///
/// The arithmetic lives in CNecoKernels (one source, compiled per CPU path, chosen at run time;
/// see `CPUFeatures`): erf by Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7), its e^(−z²)
/// by a range-reduced polynomial (relative error ≤ 2e-7). These functions split the work over
/// `Threads.count` workers.
public enum GELU {
    /// out (count) = gelu(input (count)); `out` may equal `input`.
    public static func forward(out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, count: Int) {
        Threads.parallelFor(count, minChunk: 1 << 14) { s, e in
            nk_gelu(out + s, input + s, e - s)
        }
    }

    /// In place: x (count) = gelu(x).
    public static func forwardInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) {
        forward(out: x, input: x, count: count)
    }

    /// dInput (count) += dOut · gelu'(input), gelu'(x) = Φ(x) + x·φ(x).
    public static func backward(dInput: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                                input: UnsafePointer<Float>, count: Int) {
        Threads.parallelFor(count, minChunk: 1 << 14) { s, e in
            nk_gelu_backward(dInput + s, dOut + s, input + s, e - s)
        }
    }
}
