#if canImport(Glibc)
import Glibc
#endif

/// The element type of the NeCo objective's kernels: `Float` in training (the reference runs in
/// fp32, NECO-SPEC P5), `Double` in the finite-difference tests.
///
/// The kernels in `NecoTrain/NeCo/` are generic over this protocol and carry
/// `@_specialize(where T == Float)` (and `Double`) on their entry points, so both
/// instantiations are compiled once in this module and callers get concrete code.
/// The math functions map to libm's `…f` variants for Float and the plain ones for Double.
public protocol NeCoScalar: BinaryFloatingPoint, Sendable {
    static func necoAtan(_ x: Self) -> Self
    static func necoExp(_ x: Self) -> Self
    static func necoLog(_ x: Self) -> Self
    static func necoErf(_ x: Self) -> Self
    static func necoPow(_ x: Self, _ y: Self) -> Self
    /// Exact conversion of a Double parameter into this type (rounding to nearest for Float),
    /// as PyTorch does when a Python float meets a tensor of this dtype.
    init(necoParameter: Double)
}

extension Float: NeCoScalar {
    @inlinable public static func necoAtan(_ x: Float) -> Float { atanf(x) }
    @inlinable public static func necoExp(_ x: Float) -> Float { expf(x) }
    @inlinable public static func necoLog(_ x: Float) -> Float { logf(x) }
    @inlinable public static func necoErf(_ x: Float) -> Float { erff(x) }
    @inlinable public static func necoPow(_ x: Float, _ y: Float) -> Float { powf(x, y) }
    @inlinable public init(necoParameter v: Double) { self = Float(v) }
}

extension Double: NeCoScalar {
    @inlinable public static func necoAtan(_ x: Double) -> Double { atan(x) }
    @inlinable public static func necoExp(_ x: Double) -> Double { exp(x) }
    @inlinable public static func necoLog(_ x: Double) -> Double { log(x) }
    @inlinable public static func necoErf(_ x: Double) -> Double { erf(x) }
    @inlinable public static func necoPow(_ x: Double, _ y: Double) -> Double { pow(x, y) }
    @inlinable public init(necoParameter v: Double) { self = v }
}
