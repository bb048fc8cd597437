import NecoCore
import NecoEval
import XCTest

/// Standardisation, Jacobi eigen-decomposition, PCA and k-means on data with known answers.
final class ClusterTests: XCTestCase {
    /// Points around `centers` (K, d) with uniform noise of ±`spread`; returns points and labels.
    func blobs(_ centers: [[Float]], perBlob: Int, spread: Float, seed: UInt64) -> ([Float], [Int]) {
        var rng = NecoRNG(seed: seed)
        var pts: [Float] = [], labels: [Int] = []
        for _ in 0..<perBlob {
            for (c, center) in centers.enumerated() {
                for v in center { pts.append(v + rng.uniform(-spread, spread)) }
                labels.append(c)
            }
        }
        return (pts, labels)
    }

    func testKMeansSeparatesBlobs() throws {
        let centers: [[Float]] = [[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]]
        let (pts, labels) = blobs(centers, perBlob: 50, spread: 1, seed: 1)
        for seed: UInt64 in 0..<3 {
            let r = try KMeans.fit(pts, dim: 3, clusters: 4, iterations: 50, redo: 3, seed: seed)
            // Each blob must be one cluster: Hungarian mIoU 1.
            var cm = try ConfusionMatrix(gtClasses: 4, predClasses: 4)
            try cm.add(gt: labels, pred: r.assignment)
            XCTAssertEqual(Matching.hungarian.score(cm).mIoU, 1, accuracy: 1e-12, "seed \(seed)")
            // Centroids near the centres, objective ≈ N · d · spread²/3.
            for c in 0..<4 {
                let mine = Array(r.centroids[(c * 3)..<(c * 3 + 3)])
                let near = centers.map { ctr in zip(ctr, mine).map { ($0 - $1) * ($0 - $1) }.reduce(0, +) }.min()!
                XCTAssertLessThan(near, 0.1)
            }
            XCTAssertEqual(r.objective, 200 * 3 / 3.0, accuracy: 40)
        }
    }

    func testKMeansIsDeterministicPerSeed() throws {
        let (pts, _) = blobs([[0, 0], [3, 3], [6, 0]], perBlob: 30, spread: 2, seed: 9)
        let a = try KMeans.fit(pts, dim: 2, clusters: 5, iterations: 30, redo: 2, seed: 4)
        let b = try KMeans.fit(pts, dim: 2, clusters: 5, iterations: 30, redo: 2, seed: 4)
        XCTAssertEqual(a.assignment, b.assignment)
        XCTAssertEqual(a.centroids, b.centroids)
    }

    /// K equal to N: every point its own cluster, objective 0; duplicate points force the
    /// empty-cluster split path.
    func testKMeansEdgeCases() throws {
        let pts: [Float] = [0, 0, 1, 1, 2, 2, 3, 3]
        let r = try KMeans.fit(pts, dim: 2, clusters: 4, iterations: 10, seed: 0)
        XCTAssertEqual(Set(r.assignment).count, 4)
        XCTAssertEqual(r.objective, 0, accuracy: 1e-9)
        let dup: [Float] = [Float](repeating: 1, count: 20) + [5, 5, 5, 5]
        let d = try KMeans.fit(dup, dim: 2, clusters: 3, iterations: 10, seed: 0)
        XCTAssertEqual(d.assignment.count, 12)
        XCTAssertThrowsError(try KMeans.fit(pts, dim: 2, clusters: 5)) {
            XCTAssertEqual(($0 as? NecoError)?.kind, .invalidArgument)
        }
        XCTAssertThrowsError(try KMeans.fit(pts, dim: 3, clusters: 1)) { XCTAssertEqual(($0 as? NecoError)?.kind, .shape) }
    }

    func testStandardize() {
        var x: [Float] = [1, 10, 5,
                          3, 10, 7,
                          5, 10, 9]
        x.withUnsafeMutableBufferPointer { FeatureReduction.standardize($0.baseAddress!, rows: 3, dim: 3) }
        let s = Float(1.5).squareRoot()  // (−2, 0, 2) / √(8/3) = (−√1.5, 0, √1.5); the constant column is only centred
        let e: [Float] = [-s, 0, -s, 0, 0, 0, s, 0, s]
        for i in 0..<9 { XCTAssertEqual(x[i], e[i], accuracy: 1e-5) }
    }

    func testSymmetricEigen() throws {
        // [[2, 1], [1, 2]]: eigenvalues 3 and 1, eigenvectors (1, 1)/√2 and (1, −1)/√2.
        let (v, vec) = try PrincipalComponents.symmetricEigen([2, 1, 1, 2], n: 2)
        XCTAssertEqual(v[0], 3, accuracy: 1e-12)
        XCTAssertEqual(v[1], 1, accuracy: 1e-12)
        XCTAssertEqual(abs(vec[0]), 1 / 2.0.squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(vec[0] * vec[1], 0.5, accuracy: 1e-12)
        XCTAssertEqual(vec[2] * vec[3], -0.5, accuracy: 1e-12)
        // A random symmetric 12×12: A·v = λ·v for every pair, values sorted, vectors orthonormal.
        var rng = NecoRNG(seed: 5)
        let n = 12
        var a = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in i..<n { let x = rng.normal(); a[i * n + j] = x; a[j * n + i] = x } }
        let (vals, vecs) = try PrincipalComponents.symmetricEigen(a, n: n)
        for i in 0..<n {
            if i > 0 { XCTAssertGreaterThanOrEqual(vals[i - 1], vals[i]) }
            for r in 0..<n {
                var av = 0.0
                for c in 0..<n { av += a[r * n + c] * vecs[i * n + c] }
                XCTAssertEqual(av, vals[i] * vecs[i * n + r], accuracy: 1e-9)
            }
            for j in 0..<n {
                let dot = (0..<n).reduce(0.0) { $0 + vecs[i * n + $1] * vecs[j * n + $1] }
                XCTAssertEqual(dot, i == j ? 1 : 0, accuracy: 1e-9)
            }
        }
    }

    /// Rows on a 2-D plane inside 6-D space: two components keep all the variance, the
    /// projections keep every centred row's length, are uncorrelated, and come in decreasing
    /// variance.
    func testPCARecoversPlane() throws {
        var rng = NecoRNG(seed: 2)
        let u: [Float] = [1, 0, 0, 0, 0, 0]
        let w: [Float] = [0, 0, 0.6, 0.8, 0, 0]
        var x: [Float] = []
        for _ in 0..<400 {
            let a = Float(rng.normal()) * 3, b = Float(rng.normal())
            for j in 0..<6 { x.append(5 + a * u[j] + b * w[j]) }
        }
        let (p, explained) = try x.withUnsafeBufferPointer { try PrincipalComponents.project($0.baseAddress!, rows: 400, dim: 6, outDim: 2) }
        XCTAssertEqual(explained[0] + explained[1], 1, accuracy: 1e-4)
        XCTAssertGreaterThan(explained[0], 5 * explained[1])
        var mean = [Double](repeating: 0, count: 6)
        for i in 0..<400 { for j in 0..<6 { mean[j] += Double(x[i * 6 + j]) / 400 } }
        var cross = 0.0, v0 = 0.0, v1 = 0.0
        for i in 0..<400 {
            let len2 = (0..<6).reduce(0.0) { $0 + (Double(x[i * 6 + $1]) - mean[$1]) * (Double(x[i * 6 + $1]) - mean[$1]) }
            let p0 = Double(p[i * 2]), p1 = Double(p[i * 2 + 1])
            XCTAssertEqual(p0 * p0 + p1 * p1, len2, accuracy: 1e-3 * max(1, len2))
            cross += p0 * p1; v0 += p0 * p0; v1 += p1 * p1
        }
        XCTAssertEqual(cross / 400, 0, accuracy: 1e-3)
        XCTAssertGreaterThan(v0, v1)
        XCTAssertThrowsError(try x.withUnsafeBufferPointer { try PrincipalComponents.project($0.baseAddress!, rows: 400, dim: 6, outDim: 7) })
    }

    /// The protocol's cluster counts are NECO-SPEC §6.3's (paper Table 1(a)): K = C, 300, 500;
    /// K = C is matched one-to-one, 300 and 500 many-to-one, and both run on 512 patches of
    /// 4 separable classes with every cluster pure (mIoU 1).
    func testDefaultClusterCountsFollowTheSpec() throws {
        XCTAssertEqual(Overcluster.defaultClusterCounts(classes: 21), [21, 300, 500])
        XCTAssertEqual(Overcluster.defaultClusterCounts(classes: 9), [9, 300, 500])
        let gh = 4, gw = 4, dim = 6, classes = 4, images = 32
        var rng = NecoRNG(seed: 3)
        var feats: [Float] = [], maps: [LabelMap] = []
        for i in 0..<images {
            var px = [UInt8](repeating: 0, count: 8 * 8)  // 2-pixel patches
            for p in 0..<(gh * gw) {
                let c = (p + i) % classes
                for y in 0..<2 { for x in 0..<2 { px[((p / gw) * 2 + y) * 8 + (p % gw) * 2 + x] = UInt8(c) } }
                for j in 0..<dim { feats.append((j == c ? 5 : 0) + rng.uniform(-0.3, 0.3)) }
            }
            maps.append(try LabelMap(width: 8, height: 8, labels: px))
        }
        let prep = try Overcluster.prepare(features: feats, images: images, gridHeight: gh, gridWidth: gw, dim: dim, pcaDim: 5)
        var o = Overcluster.Options()
        o.seeds = [0]
        o.redo = 1
        o.iterations = 5
        o.maskSize = 8
        for k in Overcluster.defaultClusterCounts(classes: classes) {
            let r = try Overcluster.evaluate(prep, labels: maps, classes: classes, clusters: k, options: o)
            XCTAssertEqual(r.matching, k == classes ? .hungarian : .manyToOne, "K = \(k)")
            // With K ≥ 300 random initial points, every blob of 128 patches holds some: all pure.
            // (K = C can end in a local minimum with one restart; testOverclusterProtocol covers it.)
            if k > classes { XCTAssertEqual(r.mIoU, 1, accuracy: 1e-12, "K = \(k)") }
        }
    }

    /// The whole overclustering protocol on synthetic "features" whose patches carry their class:
    /// K = C (Hungarian) and K > C (many-to-one) both reach mIoU 1.
    func testOverclusterProtocolOnSeparableFeatures() throws {
        let gh = 4, gw = 4, dim = 8, classes = 3, images = 6
        var rng = NecoRNG(seed: 8)
        var feats: [Float] = [], maps: [LabelMap] = []
        for i in 0..<images {
            var cells = [UInt8]()
            for p in 0..<(gh * gw) {
                let c = (p / 5 + i) % classes
                cells.append(UInt8(c))
                for j in 0..<dim { feats.append((j == c ? 4 : 0) + rng.uniform(-0.2, 0.2)) }
            }
            // 8-pixel patches: upscale the cell map to 32×32.
            var px = [UInt8](repeating: 0, count: 32 * 32)
            for y in 0..<32 { for x in 0..<32 { px[y * 32 + x] = cells[(y / 8) * gw + x / 8] } }
            maps.append(try LabelMap(width: 32, height: 32, labels: px))
        }
        let prep = try Overcluster.prepare(features: feats, images: images, gridHeight: gh, gridWidth: gw, dim: dim, pcaDim: 4)
        XCTAssertEqual(prep.dim, 4)
        var o = Overcluster.Options()
        o.seeds = [0, 1]
        o.redo = 2
        o.iterations = 20
        o.maskSize = 16
        let exact = try Overcluster.evaluate(prep, labels: maps, classes: classes, clusters: 3, options: o)
        XCTAssertEqual(exact.matching, .hungarian)
        XCTAssertEqual(exact.mIoU, 1, accuracy: 1e-12)
        let over = try Overcluster.evaluate(prep, labels: maps, classes: classes, clusters: 10, options: o)
        XCTAssertEqual(over.matching, .manyToOne)
        XCTAssertEqual(over.mIoU, 1, accuracy: 1e-12)
        XCTAssertThrowsError(try Overcluster.evaluate(prep, labels: Array(maps.prefix(2)), classes: classes, clusters: 3)) {
            XCTAssertEqual(($0 as? NecoError)?.kind, .shape)
        }
    }
}
