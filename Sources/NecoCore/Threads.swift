import COpenBLAS
import Dispatch

/// The one place where libneco's thread count lives.
///
/// OpenBLAS runs its own pthread pool for every GEMM; libneco's elementwise kernels split their
/// rows over `Threads.count` workers with `Threads.parallelFor`. The two never run at once: a
/// parallel region never calls a threaded GEMM (see `Attention`, which switches BLAS to one thread
/// while it runs heads in parallel), so the cores are never oversubscribed.
///
/// Process-global and not thread-safe to change while other calls run (like `llama_set_n_threads`).
public enum Threads {
    nonisolated(unsafe) private static var _count: Int = max(1, Int(openblas_get_num_threads()))

    /// Number of threads used by GEMMs and parallel kernels.
    public static var count: Int { _count }

    /// Sets the thread count for OpenBLAS and for libneco's own parallel loops.
    /// - Precondition: `n >= 1`.
    public static func setCount(_ n: Int) {
        precondition(n >= 1, "thread count must be >= 1")
        _count = min(n, 256)
        openblas_set_num_threads(Int32(_count))
    }

    /// Number of processors online.
    public static var processorCount: Int { max(1, Int(openblas_get_num_procs())) }

    /// Runs `body(start, end)` over `0..<n` split into contiguous chunks, one per worker.
    /// `body` must only touch disjoint memory per index range. Small `n` runs inline.
    @inlinable
    public static func parallelFor(_ n: Int, minChunk: Int = 1, _ body: (Int, Int) -> Void) {
        let workers = min(count, max(1, n / max(1, minChunk)))
        if workers <= 1 || n <= 1 {
            body(0, n)
            return
        }
        let chunk = (n + workers - 1) / workers
        withoutActuallyEscaping(body) { body in
            let box = _UncheckedSendable(body)
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                let s = w * chunk
                let e = min(n, s + chunk)
                if s < e { box.value(s, e) }
            }
        }
    }

    /// Like `parallelFor`, but also passes the worker index (0 ..< `count`), so each worker can
    /// use its own scratch slot.
    @inlinable
    public static func parallelChunks(_ n: Int, _ body: (_ worker: Int, _ start: Int, _ end: Int) -> Void) {
        let workers = min(count, max(1, n))
        if workers <= 1 {
            body(0, 0, n)
            return
        }
        let chunk = (n + workers - 1) / workers
        withoutActuallyEscaping(body) { body in
            let box = _UncheckedSendable(body)
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                let s = w * chunk
                let e = min(n, s + chunk)
                if s < e { box.value(w, s, e) }
            }
        }
    }

    /// Runs `body` with OpenBLAS limited to one thread, restoring the count afterwards.
    /// Used by kernels that parallelise many small GEMMs themselves.
    @inlinable
    public static func withSingleThreadedBLAS<R>(_ body: () throws -> R) rethrows -> R {
        let n = count
        if n > 1 { openblas_set_num_threads(1) }
        defer { if n > 1 { openblas_set_num_threads(Int32(n)) } }
        return try body()
    }
}

/// Carries a non-Sendable closure into `concurrentPerform`. Safe because every caller's body writes
/// only to the disjoint index range it is given, and the closure does not outlive the call.
@usableFromInline
struct _UncheckedSendable<T>: @unchecked Sendable {
    @usableFromInline let value: T
    @usableFromInline init(_ value: T) { self.value = value }
}
