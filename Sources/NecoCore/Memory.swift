#if canImport(Glibc)
import Glibc
#endif

/// Checked allocation of large buffers.
///
/// Swift's own allocator (arrays, `UnsafeMutablePointer.allocate`) traps when `malloc` fails, which
/// would abort the host process. Every buffer whose size follows from caller input (a file, a
/// picture, a batch, a queue) goes through here first: the size is computed with overflow checks,
/// and for buffers of at least `probeThreshold` bytes the memory is tried with `mmap` before
/// Swift allocates it, so a request the process cannot satisfy (an `RLIMIT_AS` limit, an
/// overcommit refusal) becomes a `NecoError(.outOfMemory)` instead of a trap.
///
/// `allocate` returns memory from `posix_memalign` directly (no race); `reserve` is a probe, so a
/// concurrent thread could in principle take the memory between the probe and the allocation
/// that follows it. Small buffers are not probed: a process that cannot get a megabyte cannot
/// report an error either.
public enum Memory {
    /// Buffers of at least this many bytes are probed (1 MiB).
    public static let probeThreshold = 1 << 20

    /// `count` elements of `T` in bytes, or `.outOfMemory` naming `what` on overflow.
    public static func bytes<T>(_ count: Int, of _: T.Type, _ what: @autoclosure () -> String) throws -> Int {
        guard count >= 0 else { throw NecoError.invalidArgument("\(what()): negative size \(count)") }
        let (b, o) = count.multipliedReportingOverflow(by: MemoryLayout<T>.stride)
        guard !o else { throw NecoError(.outOfMemory, "\(what()): \(count) elements overflow the address space") }
        return b
    }

    /// Checks that `count` elements of `T` can be allocated now (see the type's notes).
    /// - Throws: `.outOfMemory` naming `what` and the size.
    public static func reserve<T>(_ count: Int, of type: T.Type, _ what: @autoclosure () -> String) throws {
        let n = try bytes(count, of: type, what())
        guard n >= probeThreshold else { return }
        // mmap, not malloc: LLVM deletes an unused malloc/free pair and folds its NULL check away.
        // glibc's malloc serves such sizes with mmap too, so the answer is the same: the address
        // space limit (RLIMIT_AS) and the kernel's overcommit check both apply.
        let p = mmap(nil, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let p, p != MAP_FAILED else {
            throw NecoError(.outOfMemory, "\(what()): cannot allocate \(describe(n))")
        }
        munmap(p, n)
    }

    /// Checks the sum of several buffers at once (e.g. the working set of a forward pass).
    public static func reserve(bytes parts: [Int], _ what: @autoclosure () -> String) throws {
        var total = 0
        for p in parts {
            let (t, o) = total.addingReportingOverflow(max(p, 0))
            guard !o else { throw NecoError(.outOfMemory, "\(what()): size overflows the address space") }
            total = t
        }
        try reserve(total, of: UInt8.self, what())
    }

    /// A zero-filled array of `count` elements, checked first.
    public static func zeros<T: Numeric>(_ count: Int, of _: T.Type = T.self, _ what: @autoclosure () -> String) throws -> [T] {
        try reserve(count, of: T.self, what())
        return [T](repeating: 0, count: count)
    }

    /// `count` elements of uninitialised memory, 64-byte aligned, from `posix_memalign`; release
    /// with `free`. - Throws: `.outOfMemory` when the allocation fails.
    public static func allocate<T>(_ count: Int, of type: T.Type, _ what: @autoclosure () -> String) throws -> UnsafeMutablePointer<T> {
        let n = max(try bytes(count, of: type, what()), 1)
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 64, n) == 0, let raw else {
            throw NecoError(.outOfMemory, "\(what()): cannot allocate \(describe(n))")
        }
        return raw.bindMemory(to: T.self, capacity: max(count, 1))
    }

    /// Address space that must stay free when a computation starts, for the work buffers that
    /// OpenBLAS maps by itself on first use: 128 MiB per BLAS thread (measured with Debian's
    /// OpenBLAS 0.3.21: an sgemm on 2 threads grows the address space by 256 MiB, on 16 by
    /// 1920 MiB), plus 32 MiB of margin each. OpenBLAS retries a failed `mmap` of those buffers
    /// without end, so a computation that would leave less than this free is refused up front
    /// (`reserve(bytes:)` of its own buffers plus this). Only address space is probed: the
    /// buffers are touched as the GEMMs need them.
    public static var blasHeadroom: Int { (160 << 20) * max(1, Threads.count) }

    /// Hands the whole pages inside [p, p + bytes) back to the system (`madvise(MADV_DONTNEED)`):
    /// they read as zeros afterwards and count in the resident set only once written again. For
    /// private anonymous memory (what `allocate` returns for large sizes). Returns the bytes
    /// released.
    @discardableResult
    public static func releasePages(_ p: UnsafeMutableRawPointer, bytes: Int) -> Int {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard page > 0, bytes > 0 else { return 0 }
        let start = (Int(bitPattern: p) + page - 1) / page * page
        let end = (Int(bitPattern: p) + bytes) / page * page
        guard end > start, let base = UnsafeMutableRawPointer(bitPattern: start) else { return 0 }
        return madvise(base, end - start, MADV_DONTNEED) == 0 ? end - start : 0
    }

    /// "1.5 GB", "12 MB", "300 bytes".
    public static func describe(_ bytes: Int) -> String {
        if bytes >= 1_000_000_000 { return "\(Double(bytes / 10_000_000) / 100) GB" }
        if bytes >= 1_000_000 { return "\(bytes / 1_000_000) MB" }
        return "\(bytes) bytes"
    }
}
