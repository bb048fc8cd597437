import NecoCore
import NecoTrain
import XCTest
import _NecoTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Timings of the NeCo objective's kernels (figures printed, nothing asserted). Runs only with
/// NECO_BENCH=1, and is meant for release builds:
///     NECO_BENCH=1 swift test -c release --scratch-path .build-neco --filter NeCoBenchmarkTests
final class NeCoBenchmarkTests: XCTestCase {
    override func setUpWithError() throws {
        try XCTSkipUnless(getenv("NECO_BENCH") != nil, "set NECO_BENCH=1 to run the NeCo benchmarks")
    }

    func median(_ reps: Int, _ body: () -> Void) -> Double {
        body()  // warm-up
        var t: [Double] = []
        for _ in 0..<reps {
            let s = necoNow()
            body()
            t.append(necoNow() - s)
        }
        return t.sorted()[reps / 2]
    }

    /// Sorting network on B·49 rows of n = 49 (one pair, one side): forward only (teacher),
    /// forward with tape + CE + backward (student, fused), per B.
    func testSortingNetworkThroughput() throws {
        let sort = try SoftSort(kind: .bitonic, size: 49, steepness: 100)
        let odd = try SoftSort(kind: .oddEven, size: 49, steepness: 100)
        print("  threads \(Threads.count)")
        for b in [8, 64] {
            let rows = b * 49
            var rng = TestRNG(seed: 1)
            let t = rng.floats(rows * 49).map { 0.5 + 0.4 * $0 }
            let s = t.map { $0 + 0.05 * rng.uniform() }
            var X = [Float](repeating: 0, count: rows * 49 * 49)
            var d = [Float](repeating: 0, count: rows * 49)
            for (name, net) in [("bitonic", sort), ("odd_even", odd)] {
                let fwd = median(3) { net.forward(permutations: &X, sorted: nil, input: t, rows: rows) }
                let fused = median(3) {
                    _ = NeCoLoss.sortedCrossEntropy(dStudentSim: &d, teacherSim: t, studentSim: s, rows: rows, teacherSort: net,
                                                    studentSort: net, scale: 1)
                }
                let perStep = fused * 10
                print(String(format: "  %@ B=%d (%d rows): forward (materialising X) %.1f ms (%.2f µs/row); fused teacher fwd + student fwd/bwd + CE %.1f ms (%.2f µs/row); ×10 pairs = %.3f s/step",
                             name, b, rows, fwd * 1e3, fwd / Double(rows) * 1e6, fused * 1e3, fused / Double(rows) * 1e6, perStep))
            }
        }
    }

    /// The whole pair loop (ROI Align, cosine, sorting, CE and their backward) for ViT-S/14-like
    /// maps: B = 8, E = 256, 224-px globals (16×16) and 98-px locals (7×7), batch references.
    func testWholeLossThroughput() throws {
        let sort = try SoftSort(kind: .bitonic, size: 49, steepness: 100)
        let loss = try NeCoPairLoss(teacherSort: sort, studentSort: sort, patchSize: 14)
        let b = 8, e = 256
        var rng = TrainRNG(seed: 4)
        var config = MultiCropConfig()
        config.globalSize = 224
        var anchor: [Float] = [], partner: [Float] = []
        for _ in 0..<b {
            let crops = try MultiCrop.sample(width: 640, height: 480, config: config, rng: &rng)
            let (a, p) = try MultiCrop.overlapBoxes(crops, config: config)
            anchor += a
            partner += p
        }
        // Reorder per-image (nG, nC, 4) blocks into (B, nG, nC, 4): already image-major.
        let boxes = NeCoBoxes(batch: b, globalCrops: 2, crops: 6, anchor: anchor, partner: partner)
        var t = TestRNG(seed: 9)
        func unitRows(_ n: Int) -> [Float] {
            var v = t.floats(n * e)
            for r in 0..<n {
                var s: Float = 0
                for i in 0..<e { s += v[r * e + i] * v[r * e + i] }
                let k = 1 / s.squareRoot()
                for i in 0..<e { v[r * e + i] *= k }
            }
            return v
        }
        let tg = unitRows(2 * b * 256), sg = unitRows(2 * b * 256), sl = unitRows(4 * b * 49)
        var dg = [Float](repeating: 0, count: sg.count), dl = [Float](repeating: 0, count: sl.count)
        let sampler = try NeCoReferenceSampler(mode: .batch, dim: e, rng: TrainRNG(seed: 5))
        var value = 0.0
        let time = median(3) {
            value = tg.withUnsafeBufferPointer { tp in
                sg.withUnsafeBufferPointer { sgp in
                    sl.withUnsafeBufferPointer { slp in
                        dg.withUnsafeMutableBufferPointer { dgp in
                            dl.withUnsafeMutableBufferPointer { dlp in
                                loss(dStudentGlobal: NeCoMapGradients(base: dgp.baseAddress!),
                                     dStudentLocal: NeCoMapGradients(base: dlp.baseAddress!),
                                     teacherGlobal: NeCoMaps(base: tp.baseAddress!, crops: 2, grid: 16),
                                     studentGlobal: NeCoMaps(base: sgp.baseAddress!, crops: 2, grid: 16),
                                     studentLocal: NeCoMaps(base: slp.baseAddress!, crops: 4, grid: 7),
                                     dim: e, boxes: boxes,
                                     references: { g, _, tq, out in
                                         sampler.sample(anchor: g, teacherQueries: tq, queries: 49, out: out, batch: b,
                                                        references: 49)
                                     })
                            }
                        }
                    }
                }
            }
        }
        print(String(format: "  whole NeCo loss, B=8, E=256, 224/98: %.3f s per step (forward + backward, 10 pairs), loss %.4f",
                     time, value))
    }

    /// The data path on the cached sample photos (~/.cache/neco/photos, 6 images of 300–600 px):
    /// decode + 6 crops (224/98) + augmentation + normalisation, batches of 3.
    func testDataLoaderThroughput() throws {
        let folder = try ImageFolder(root: necoCache + "/photos")
        let loader = try NeCoDataLoader(folder: folder, batchSize: 3, crops: MultiCropConfig(), photometric: PhotometricConfig(),
                                        seed: 1, patchSize: 14)
        var images = 0
        let start = necoNow()
        for _ in 0..<8 {
            guard let b = try loader.next() ?? loader.next() else { break }
            images += b.batch
        }
        let t = necoNow() - start
        print(String(format: "  data path: %d images in %.3f s = %.1f images/s (%d threads)", images, t, Double(images) / t,
                     Threads.count))
    }
}
