#if canImport(Glibc)
import Glibc
#endif

/// Seconds of the monotonic clock (for timing phases; the origin is arbitrary).
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
