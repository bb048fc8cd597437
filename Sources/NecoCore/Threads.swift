import CNecoKernels
import COpenBLAS
import Dispatch

/// The one place where libneco's thread count lives.
///
/// libneco runs every parallel loop itself, on its own worker pool (`region`), and keeps OpenBLAS
/// single-threaded: `Gemm.gemm` splits a large product into row (or column) blocks and runs one
/// single-threaded `cblas_sgemm` per worker. One pool for GEMMs and elementwise kernels means no
/// oversubscription, and no OpenBLAS threads spinning for work while our kernels run.
///
/// Process-global and not thread-safe to change while other calls run (like `llama_set_n_threads`).
public enum Threads {
    nonisolated(unsafe) private static var _count: Int = {
        openblas_set_num_threads(1)
        return max(1, Int(openblas_get_num_procs()))
    }()

    /// Number of workers used by GEMMs and parallel kernels (default: processors online).
    public static var count: Int { _count }

    /// Sets the worker count. - Precondition: `n >= 1`.
    public static func setCount(_ n: Int) {
        precondition(n >= 1, "thread count must be >= 1")
        _ = _count  // make sure OpenBLAS has been switched to one thread
        _count = min(n, 256)
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
        region(workers) { w in
            let s = w * chunk
            let e = min(n, s + chunk)
            if s < e { body(s, e) }
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
        region(workers) { w in
            let s = w * chunk
            let e = min(n, s + chunk)
            if s < e { body(w, s, e) }
        }
    }

    /// Runs `body(worker, start, end)` over chunks of `0..<n` that go to whichever worker asks
    /// first (`nk_pool_claim`: guided self-scheduling, each chunk a multiple of `grain` but the
    /// last, shrinking as the range empties), so a worker the OS slows down does not hold the
    /// others up at the end of the loop. Only for loops whose result does not depend on which
    /// worker computes which index; `worker` (0 ..< `count`) names a scratch slot.
    @inlinable
    public static func parallelDynamic(_ n: Int, grain: Int = 1,
                                       _ body: (_ worker: Int, _ start: Int, _ end: Int) -> Void) {
        let grain = max(1, grain)
        let workers = min(count, (n + grain - 1) / grain)
        if workers <= 1 {
            if n > 0 { body(0, 0, n) }
            return
        }
        var cursor = 0
        withUnsafeMutablePointer(to: &cursor) { next in
            region(workers) { w in
                var end = 0
                while true {
                    let start = nk_pool_claim(next, n, workers, grain, &end)
                    if start >= n { break }
                    body(w, start, end)
                }
            }
        }
    }

    /// Runs `body(w)` for w in 0 ..< workers (≥ 2) in parallel, w = 0 on the calling thread: on
    /// libneco's pool (CNecoKernels' nk_pool: pool threads spin briefly between regions, so the
    /// back-to-back regions of a forward pass start without a kernel wake-up), or, when the pool
    /// is busy with another thread's region or the call is nested inside a region, on
    /// libdispatch's workers.
    @usableFromInline
    static func region(_ workers: Int, _ body: (Int) -> Void) {
        withoutActuallyEscaping(body) { body in
            var task = body
            let ran = withUnsafeMutablePointer(to: &task) { p in
                nk_pool_run(workers, { ctx, w in
                    ctx!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(w)
                }, p)
            }
            if ran != 0 {
                let box = _UncheckedSendable(body)
                DispatchQueue.concurrentPerform(iterations: workers) { w in box.value(w) }
            }
        }
    }
}

/// Carries a non-Sendable closure into `concurrentPerform`. Safe because every caller's body writes
/// only to the disjoint index range it is given, and the closure does not outlive the call.
@usableFromInline
struct _UncheckedSendable<T>: @unchecked Sendable {
    @usableFromInline let value: T
    @usableFromInline init(_ value: T) { self.value = value }
}
