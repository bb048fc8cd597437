import NecoCore

// Reference patches R (B, K, E) for each (g, v) pair, NECO-SPEC §4.3 and pitfalls P11–P12.
//
// Dimension letters: B images, nG global crops (anchors), G global grid, E embedding width,
// Q ROI cells per image (49), K references per image (49), L queue length (8192).

/// Where each image's K reference patches come from.
public enum NeCoReferenceMode: Sendable, Equatable {
    /// One random permutation of the pair's B·Q ROI-aligned teacher patches, reshaped to (B, K, E)
    /// (`is_queue_usable` False: DINO-v1 and template configs, the legacy default).
    case batch
    /// A FIFO queue of past and current teacher patches per anchor (`is_queue_usable` True: all
    /// released DINOv2 configs; NeCo's length is 8192).
    case queue(length: Int)
}

/// Draws reference patches and keeps the teacher queues.
///
/// Queue mode, per step (official `update_queue` + `knn_loss`):
/// ```
/// push (before the loss), for g = 0, 1, …:   n = min(10·B, L)
///     filled ← min(filled + n, L)              (one counter shared by all queues, P11)
///     idx = first n of a random permutation of the B·G² teacher rows of crop g
///     queue_g[n:] ← queue_g[:L−n] ; queue_g[:n] ← T_g[idx]
/// sample(g), fresh for every pair:  idx = first B·K of a random permutation of 0..<L,
///     reduced modulo filled (P12) ; R = queue_g[idx]
/// ```
/// With the shared counter, during the first steps queue 0 is sampled as if it held twice as
/// many rows as it does, so some references are still-zero rows (similarity 0 to everything).
/// `sharedCounter: false` gives each queue its own counter instead (a documented deviation).
///
/// Batch mode: `R[r] = Tq[perm[r] mod B·Q]` for one random permutation `perm` of B·K rows
/// (the official code tiles the pool to B·K rows before permuting; with Q = K it is a plain
/// permutation).
///
/// All draws come from `rng` (`NecoRNG`), so a run is reproducible; save `rng` with a
/// checkpoint to resume the same sequence. NeCo never saves the queues; `NeCoRun` does
/// (`queue`, `filled`, `restoreQueues`), so that a resumed run continues exactly.
public final class NeCoReferenceSampler: @unchecked Sendable {
    public let mode: NeCoReferenceMode
    public let dim: Int
    public let anchors: Int
    public let sharedCounter: Bool
    /// Random state of every draw (push and sample).
    public var rng: NecoRNG
    /// (nG, L, E) queue rows, newest first; empty in batch mode.
    public private(set) var queue: [Float]
    /// Filled rows per queue (all equal with the shared counter).
    public private(set) var filled: [Int]
    /// Replaces the random draws: called as `draws(n, count)` wherever the sampler would take the
    /// first `count` entries of a random permutation of 0..<n, it must return `count` distinct
    /// indices in 0..<n. Used to replay permutations recorded from another implementation (the
    /// whole-step comparison with the official code). nil (the default): draw from `rng`.
    public var draws: ((_ n: Int, _ count: Int) -> [Int])? = nil
    /// The ranks of a data-parallel run (docs/DISTRIBUTED.md). Each rank passes its own shard of
    /// B images (rank r holds images r·B…(r+1)·B − 1 of the global batch of N·B) and gets the
    /// references of exactly those images from the global batch: pushes gather every rank's
    /// teacher rows first, batch-mode pools gather every rank's teacher queries, and every rank
    /// draws the same permutations (the same `rng`), so the queues stay identical on all ranks
    /// and N ranks × B behave like one process × N·B. Default: the single process.
    public var communicator: Communicator = SingleProcess.shared

    /// The most values all queues together may hold, n_global_crops × queue length × dim: 2^28
    /// floats (1 GiB). NeCo's largest setting (2 × 65536 × 256) is 2^25.
    public static let maxQueueValues = 1 << 28

    /// - Throws: `.invalidArgument` for a queue length < 1 or a dimension < 1, or queues beyond
    ///   `maxQueueValues`; `.outOfMemory` when they cannot be allocated.
    public init(mode: NeCoReferenceMode, dim: Int, anchors: Int = 2, rng: NecoRNG, sharedCounter: Bool = true) throws {
        guard dim >= 1, anchors >= 1 else { throw NecoError.invalidArgument("reference sampler: dim and anchors must be ≥ 1") }
        self.mode = mode
        self.dim = dim
        self.anchors = anchors
        self.rng = rng
        self.sharedCounter = sharedCounter
        filled = Array(repeating: 0, count: anchors)
        switch mode {
        case .batch:
            queue = []
        case .queue(let length):
            guard length >= 1, length <= 1 << 24 else {
                throw NecoError.invalidArgument("reference queue length \(length) must be in 1...\(1 << 24)")
            }
            let (rows, o1) = anchors.multipliedReportingOverflow(by: length)
            let (values, o2) = rows.multipliedReportingOverflow(by: dim)
            guard !o1, !o2, values <= Self.maxQueueValues else {
                throw NecoError.invalidArgument("reference queues of \(anchors) × \(length) rows × \(dim) values exceed the limit of "
                                                + "2^28 values (1 GiB): shorten the queue or the head's output")
            }
            queue = try Memory.zeros(values, of: Float.self, "reference queues (\(anchors) × \(length) × \(dim))")
        }
    }

    /// Puts saved queues back (queue mode): `queue` (nG, L, E) and the per-queue fill counts.
    /// - Throws: `.shape` when the sizes do not match this sampler.
    public func restoreQueues(_ saved: [Float], filled saveFilled: [Int]) throws {
        guard saved.count == queue.count, saveFilled.count == anchors,
              saveFilled.allSatisfy({ $0 >= 0 && $0 <= queueLength }) else {
            throw NecoError.shape("reference queues: saved \(saved.count) values / \(saveFilled.count) counters, "
                                  + "this sampler has \(queue.count) / \(anchors) (length \(queueLength))")
        }
        queue = saved
        filled = saveFilled
    }

    public var queueLength: Int {
        if case .queue(let length) = mode { return length }
        return 0
    }

    /// Checks that a batch of `batch` images with `references` patches each can be served.
    /// - Throws: `.invalidArgument` in batch mode for B < 2 (an image would only see its own
    ///   patches), in queue mode when B·K exceeds the queue length (P12).
    public func validate(batch: Int, references: Int) throws {
        switch mode {
        case .batch:
            guard batch >= 2 else {
                throw NecoError.invalidArgument("batch references need a batch of at least 2 images (got \(batch))")
            }
        case .queue(let length):
            guard batch * references <= length else {
                throw NecoError.invalidArgument(
                    "queue references need batch × \(references) ≤ queue length \(length) (batch \(batch) is too large)")
            }
        }
    }

    /// The first `count` entries of a uniformly random permutation of 0..<n (partial Fisher–Yates).
    func partialPermutation(_ n: Int, _ count: Int) -> [Int] {
        if let draws {
            let d = draws(n, min(count, n))
            precondition(d.count == min(count, n) && d.allSatisfy { $0 >= 0 && $0 < n },
                         "reference draws: expected \(min(count, n)) indices in 0..<\(n)")
            return d
        }
        var a = Array(0..<n)
        let k = min(count, n)
        for i in 0..<k {
            let j = i + rng.bounded(n - i)
            a.swapAt(i, j)
        }
        return Array(a[0..<k])
    }

    /// Queue mode: pushes `min(10·B, L, B·G²)` random teacher rows of every anchor crop, anchors in
    /// order (call once per step, before the loss). No-op in batch mode.
    /// - Parameter teacherGlobal: (nG·B, G, G, E) teacher embeddings, crop-major (this rank's
    ///   shard: with N ranks the push is that of the gathered (nG·N·B, G, G, E)).
    /// - Throws: `.distributed` when the ranks cannot gather.
    public func push(teacherGlobal: UnsafePointer<Float>, batch: Int, grid: Int) throws {
        guard case .queue = mode else { return }
        let ranks = communicator.size
        guard ranks > 1 else { return pushGlobal(teacherGlobal, batch: batch, grid: grid) }
        // (N, nG, B, G², E) rank-major → (nG, N·B, G², E) crop-major.
        let block = batch * grid * grid * dim
        var gathered = [Float](repeating: 0, count: ranks * anchors * block)
        var global = [Float](repeating: 0, count: gathered.count)
        try gathered.withUnsafeMutableBytes {
            try communicator.gather(teacherGlobal, bytes: anchors * block * 4, into: $0.baseAddress!)
        }
        for r in 0..<ranks {
            for g in 0..<anchors {
                global.replaceSubrange(((g * ranks + r) * block)..<((g * ranks + r + 1) * block),
                                       with: gathered[((r * anchors + g) * block)..<((r * anchors + g + 1) * block)])
            }
        }
        global.withUnsafeBufferPointer { pushGlobal($0.baseAddress!, batch: ranks * batch, grid: grid) }
    }

    func pushGlobal(_ teacherGlobal: UnsafePointer<Float>, batch: Int, grid: Int) {
        guard case .queue(let length) = mode else { return }
        let rows = batch * grid * grid, e = dim
        let n = min(10 * batch, length, rows)
        queue.withUnsafeMutableBufferPointer { qp in
            for g in 0..<anchors {
                if sharedCounter {
                    let f = min(filled[0] + n, length)
                    for i in 0..<anchors { filled[i] = f }
                } else {
                    filled[g] = min(filled[g] + n, length)
                }
                let idx = partialPermutation(rows, n)
                let q = qp.baseAddress! + g * length * e
                // Shift back by n rows (the oldest n fall off), newest rows at the front.
                if length > n { (q + n * e).update(from: q, count: (length - n) * e) }
                let src = teacherGlobal + g * rows * e
                for (r, i) in idx.enumerated() { (q + r * e).update(from: src + i * e, count: e) }
            }
        }
    }

    /// References of one pair: out (B·K, E).
    /// - Parameters:
    ///   - anchor: g (selects the queue in queue mode).
    ///   - teacherQueries: (B·Q, E) ROI-aligned teacher patches of the pair (batch mode's pool;
    ///     with N ranks the pool is every rank's, gathered).
    ///   - batch: B, this rank's images.
    /// - Throws: `.distributed` when the ranks cannot gather.
    public func sample(anchor g: Int, teacherQueries: UnsafePointer<Float>, queries: Int, out: UnsafeMutablePointer<Float>,
                       batch: Int, references k: Int) throws {
        let e = dim, ranks = communicator.size, rank = communicator.rank
        // This rank's rows of the global draw: [rank·B·K, (rank + 1)·B·K).
        let first = rank * batch * k
        switch mode {
        case .batch:
            let pool = ranks * batch * queries
            var gathered: [Float] = []
            if ranks > 1 {
                gathered = [Float](repeating: 0, count: pool * e)
                try gathered.withUnsafeMutableBytes {
                    try communicator.gather(teacherQueries, bytes: batch * queries * e * 4, into: $0.baseAddress!)
                }
            }
            let perm = partialPermutation(ranks * batch * k, ranks * batch * k)
            gathered.withUnsafeBufferPointer { gp in
                let src = ranks > 1 ? gp.baseAddress! : teacherQueries
                for r in 0..<(batch * k) { (out + r * e).update(from: src + (perm[first + r] % pool) * e, count: e) }
            }
        case .queue(let length):
            guard ranks * batch * k <= length else {
                throw NecoError.invalidArgument("queue references: B·K = \(ranks * batch * k) exceeds the queue length \(length)")
            }
            let f = max(filled[g], 1)
            let idx = partialPermutation(length, ranks * batch * k)
            queue.withUnsafeBufferPointer { qp in
                let q = qp.baseAddress! + g * length * e
                for r in 0..<(batch * k) { (out + r * e).update(from: q + (idx[first + r] % f) * e, count: e) }
            }
        }
    }
}
