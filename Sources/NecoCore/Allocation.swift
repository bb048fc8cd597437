#if canImport(Glibc)
import Glibc
#endif

extension UnsafeMutablePointer {
    /// Allocation that reports failure instead of trapping (malloc-backed; release with free()).
    /// n < 1 allocates one element.
    public static func allocateOrNil(_ n: Int) -> UnsafeMutablePointer<Pointee>? {
        let (bytes, o) = Swift.max(n, 1).multipliedReportingOverflow(by: MemoryLayout<Pointee>.stride)
        guard !o, let raw = malloc(bytes) else { return nil }
        return raw.bindMemory(to: Pointee.self, capacity: Swift.max(n, 1))
    }
}
