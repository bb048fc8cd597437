import NecoCore

#if canImport(Glibc)
import Glibc
#endif

/// Euclidean k-means (Lloyd), following faiss `Clustering` as used by NeCo's overclustering
/// (NECO-SPEC §6.3: `faiss.Kmeans(d, K, niter=100, nredo=5, seed=s)`).
///
/// Letters: N points, d dims, K clusters.
///
/// Per run:
/// 1. if N > 256·K, train on a random subset of 256·K points (faiss `max_points_per_centroid`);
/// 2. centroids = K distinct random training points;
/// 3. `iterations` times: assign every point to its nearest centroid
///    (‖x‖² − 2·x·c + ‖c‖², the x·c block through `Gemm.gemm`), move each centroid to the mean of
///    its points, and split a populous cluster into any empty one (faiss: copy a centroid chosen
///    with probability ∝ size − 1, then nudge the two copies by ±1/1024 on alternate dims);
///    stop early when no assignment changes (the fixed point faiss would keep iterating on).
///
/// With `redo` > 1 the run is repeated with further seeds and the one with the lowest objective
/// (sum of squared distances over the training points) is kept. Finally every one of the N
/// points is assigned to the kept centroids.
public enum KMeans {
    public struct Result: Sendable {
        /// (K, d) centroids.
        public var centroids: [Float]
        /// (N) cluster of each input point.
        public var assignment: [Int32]
        /// Sum of squared distances of the training points to their centroids (best run).
        public var objective: Double
        /// Lloyd iterations run by the kept run.
        public var iterations: Int
    }

    public static let maxPointsPerCentroid = 256

    /// - Parameters:
    ///   - points: (N, d) row-major.
    /// - Throws: `.invalidArgument` when K < 1, K > N, iterations < 1 or redo < 1.
    public static func fit(points x: UnsafePointer<Float>, count n: Int, dim d: Int, clusters k: Int,
                           iterations: Int = 100, redo: Int = 1, seed: UInt64 = 0) throws -> Result {
        guard d >= 1 else { throw NecoError.invalidArgument("k-means needs dim ≥ 1") }
        guard k >= 1, k <= n else {
            throw NecoError.invalidArgument("k-means with K = \(k) clusters needs 1 ≤ K ≤ N = \(n) points")
        }
        guard iterations >= 1, redo >= 1 else {
            throw NecoError.invalidArgument("k-means needs iterations ≥ 1 and redo ≥ 1")
        }
        var rng = NecoRNG(seed: seed)
        // 1. Training subset.
        let nTrain = min(n, maxPointsPerCentroid * k)
        var train: [Float]
        if nTrain < n {
            let perm = rng.permutation(n)
            train = [Float](repeating: 0, count: nTrain * d)
            for i in 0..<nTrain { for j in 0..<d { train[i * d + j] = x[perm[i] * d + j] } }
        } else {
            train = Array(UnsafeBufferPointer(start: x, count: n * d))
        }
        var best: (centroids: [Float], objective: Double, iterations: Int)? = nil
        for _ in 0..<redo {
            let run = train.withUnsafeBufferPointer {
                lloyd($0.baseAddress!, count: nTrain, dim: d, clusters: k, iterations: iterations, rng: &rng)
            }
            if best == nil || run.objective < best!.objective { best = run }
        }
        let kept = best!
        var assignment = [Int32](repeating: 0, count: n)
        kept.centroids.withUnsafeBufferPointer { cp in
            assignment.withUnsafeMutableBufferPointer { ap in
                _ = assign(ap.baseAddress!, points: x, count: n, centroids: cp.baseAddress!, dim: d, clusters: k)
            }
        }
        return Result(centroids: kept.centroids, assignment: assignment, objective: kept.objective, iterations: kept.iterations)
    }

    /// Array form of `fit(points:count:dim:clusters:iterations:redo:seed:)`.
    public static func fit(_ points: [Float], dim d: Int, clusters k: Int, iterations: Int = 100, redo: Int = 1,
                           seed: UInt64 = 0) throws -> Result {
        guard d >= 1, points.count % d == 0 else {
            throw NecoError.shape("\(points.count) values are not a whole number of \(d)-wide points")
        }
        let n = points.count / d
        guard n >= 1 else { throw NecoError.invalidArgument("k-means needs at least one point") }
        return try points.withUnsafeBufferPointer {
            try fit(points: $0.baseAddress!, count: n, dim: d, clusters: k, iterations: iterations, redo: redo, seed: seed)
        }
    }

    /// One k-means run from a random initialisation.
    static func lloyd(_ x: UnsafePointer<Float>, count n: Int, dim d: Int, clusters k: Int, iterations: Int,
                      rng: inout NecoRNG) -> (centroids: [Float], objective: Double, iterations: Int) {
        var c = [Float](repeating: 0, count: k * d)
        let perm = rng.permutation(n)
        for i in 0..<k { for j in 0..<d { c[i * d + j] = x[perm[i] * d + j] } }
        var assignment = [Int32](repeating: -1, count: n)
        var previous = assignment
        var objective = 0.0
        var run = 0
        var sums = [Double](repeating: 0, count: k * d)
        var sizes = [Int](repeating: 0, count: k)
        for it in 0..<iterations {
            run = it + 1
            objective = c.withUnsafeBufferPointer { cp in
                assignment.withUnsafeMutableBufferPointer { ap in
                    assign(ap.baseAddress!, points: x, count: n, centroids: cp.baseAddress!, dim: d, clusters: k)
                }
            }
            if assignment == previous { break }
            previous = assignment
            // Means.
            for i in 0..<(k * d) { sums[i] = 0 }
            for i in 0..<k { sizes[i] = 0 }
            for p in 0..<n {
                let a = Int(assignment[p])
                sizes[a] += 1
                for j in 0..<d { sums[a * d + j] += Double(x[p * d + j]) }
            }
            for i in 0..<k where sizes[i] > 0 {
                for j in 0..<d { c[i * d + j] = Float(sums[i * d + j] / Double(sizes[i])) }
            }
            // Empty clusters: split a populous one (faiss `split_clusters`).
            for ci in 0..<k where sizes[ci] == 0 {
                var cj = 0
                while true {
                    let r = rng.uniformDouble() * Double(n - k)
                    var acc = 0.0
                    cj = 0
                    while cj < k - 1 {
                        acc += Double(max(sizes[cj] - 1, 0))
                        if acc > r { break }
                        cj += 1
                    }
                    if sizes[cj] > 1 { break }
                    if sizes.allSatisfy({ $0 <= 1 }) { break }
                }
                let eps: Float = 1.0 / 1024
                for j in 0..<d {
                    let v = c[cj * d + j]
                    if j % 2 == 0 {
                        c[ci * d + j] = v * (1 + eps); c[cj * d + j] = v * (1 - eps)
                    } else {
                        c[ci * d + j] = v * (1 - eps); c[cj * d + j] = v * (1 + eps)
                    }
                }
                sizes[ci] = sizes[cj] / 2
                sizes[cj] -= sizes[ci]
            }
        }
        return (c, objective, run)
    }

    /// Nearest centroid of every point (lowest index on ties); returns Σ squared distances.
    static func assign(_ out: UnsafeMutablePointer<Int32>, points x: UnsafePointer<Float>, count n: Int,
                       centroids c: UnsafePointer<Float>, dim d: Int, clusters k: Int) -> Double {
        var cNorm = [Float](repeating: 0, count: k)
        for i in 0..<k {
            var s: Float = 0
            for j in 0..<d { s += c[i * d + j] * c[i * d + j] }
            cNorm[i] = s
        }
        let block = max(1, min(n, (1 << 22) / max(k, 1)))   // rows per (block, K) product tile
        var dots = [Float](repeating: 0, count: block * k)
        var total = 0.0
        var r0 = 0
        while r0 < n {
            let m = min(block, n - r0)
            dots.withUnsafeMutableBufferPointer { dp in
                Gemm.gemm(out: dp.baseAddress!, a: x + r0 * d, b: c, m: m, n: k, k: d, transB: true)
            }
            var partial = [Double](repeating: 0, count: Threads.count)
            dots.withUnsafeBufferPointer { dp in
                cNorm.withUnsafeBufferPointer { cn in
                    partial.withUnsafeMutableBufferPointer { pp in
                        let dot = dp.baseAddress!, cnp = cn.baseAddress!, part = pp.baseAddress!
                        Threads.parallelChunks(m) { w, s, e in
                            var acc = 0.0
                            for r in s..<e {
                                let row = dot + r * k
                                var best = 0
                                var bestD = cnp[0] - 2 * row[0]
                                for i in 1..<max(k, 1) {
                                    let dist = cnp[i] - 2 * row[i]
                                    if dist < bestD { bestD = dist; best = i }
                                }
                                out[r0 + r] = Int32(best)
                                var xn: Float = 0
                                let xp = x + (r0 + r) * d
                                for j in 0..<d { xn += xp[j] * xp[j] }
                                acc += Double(max(xn + bestD, 0))
                            }
                            part[w] += acc
                        }
                    }
                }
            }
            total += partial.reduce(0, +)
            r0 += m
        }
        return total
    }
}
