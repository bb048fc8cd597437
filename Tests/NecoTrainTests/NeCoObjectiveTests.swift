import NecoCore
import NecoImage
import NecoModel
import NecoTrain
import XCTest
import _NecoTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The image-folder loader and the objective wired into the training-core `Trainer`.
final class NeCoObjectiveTests: XCTestCase {
    /// A temporary folder with `count` PNGs in two levels, one corrupt JPEG and a text file.
    func makeFolder(count: Int) throws -> String {
        let dir = (getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp") + "/neco-objective-test-\(getpid())-\(count)"
        mkdir(dir, 0o755)
        mkdir(dir + "/sub", 0o755)
        mkdir(dir + "/sub/deeper", 0o755)
        var rng = TestRNG(seed: 17)
        for i in 0..<count {
            let w = 30 + i * 7 % 23, h = 26 + i * 5 % 19
            let px = (0..<(w * h * 3)).map { k in UInt8(truncatingIfNeeded: Int(128 + 100 * rng.uniform()) + k % 7) }
            let sub = i % 3 == 0 ? "" : (i % 3 == 1 ? "/sub" : "/sub/deeper")
            try PNGWriter.write(RGBImage(width: w, height: h, pixels: px), to: "\(dir)\(sub)/img\(i).PNG")
        }
        try FileIO.writeAtomically(dir + "/sub/broken.jpg", bytes: Array("not an image".utf8))
        try FileIO.writeAtomically(dir + "/readme.txt", bytes: Array("notes".utf8))
        return dir
    }

    func removeFolder(_ dir: String) {
        for f in (try? ImageFolder(root: dir).files) ?? [] { unlink(f) }
        unlink(dir + "/sub/broken.jpg")
        unlink(dir + "/readme.txt")
        rmdir(dir + "/sub/deeper")
        rmdir(dir + "/sub")
        rmdir(dir)
    }

    static func smallCrops() -> MultiCropConfig {
        var c = MultiCropConfig()
        c.globalSize = 16
        c.localSize = 8
        return c
    }

    func testLoaderBatchesShuffleAndSkip() throws {
        let dir = try makeFolder(count: 7)
        defer { removeFolder(dir) }
        let folder = try ImageFolder(root: dir)
        XCTAssertEqual(folder.files.count, 8, "7 PNGs and the broken .jpg, recursively; the .txt is ignored")
        let warnings = WarningSink()
        func loader(seed: UInt64) throws -> NeCoDataLoader {
            let l = try NeCoDataLoader(folder: folder, batchSize: 3, crops: Self.smallCrops(), photometric: PhotometricConfig(),
                                       seed: seed, patchSize: 4)
            l.warn = { warnings.add($0) }
            return l
        }
        let a = try loader(seed: 1)
        XCTAssertEqual(a.stepsPerEpoch, 2)
        // Six epochs: 7 readable files give 2 full batches of 3 per epoch (drop last); the broken
        // file is skipped with a warning whenever the epoch's order reaches it.
        var epochs: [[NeCoBatch]] = []
        for _ in 0..<6 {
            var batches: [NeCoBatch] = []
            while let b = try a.next() { batches.append(b) }
            epochs.append(batches)
        }
        XCTAssertTrue(epochs.allSatisfy { $0.count == 2 })
        XCTAssertEqual(a.epoch, 6)
        XCTAssertGreaterThan(a.skipped, 0)
        XCTAssertEqual(warnings.count, a.skipped)
        let first = epochs[0][0]
        XCTAssertEqual(first.globals.count, 2 * 3 * 3 * 16 * 16)
        XCTAssertEqual(first.locals.count, 4 * 3 * 3 * 8 * 8)
        XCTAssertEqual(first.boxes.anchor.count, 3 * 2 * 6 * 4)
        XCTAssertTrue(first.globals.allSatisfy { $0.isFinite && abs($0) < 3 })
        XCTAssertEqual(Set(epochs[0].flatMap { $0.paths }).count, 6)
        XCTAssertNotEqual(epochs[1][0].paths, first.paths, "epoch 1 has its own order")
        // Same seed → same batches.
        let b = try loader(seed: 1)
        let again = try b.next()!
        XCTAssertEqual(again.paths, first.paths)
        XCTAssertEqual(again.globals, first.globals)
        XCTAssertEqual(again.boxes, first.boxes)
        // Resume: seek to the state after the first batch.
        let c = try loader(seed: 1)
        c.seek(epoch: 0, position: b.position)
        XCTAssertEqual(try c.next()!.paths, epochs[0][1].paths)
        // Bad input.
        XCTAssertThrowsError(try ImageFolder(root: dir + "/sub/deeper/none"))
        XCTAssertThrowsError(try NeCoDataLoader(folder: folder, batchSize: 9, crops: Self.smallCrops(),
                                                photometric: PhotometricConfig(), seed: 1, patchSize: 4))
        XCTAssertThrowsError(try NeCoDataLoader(folder: folder, batchSize: 2, crops: Self.smallCrops(),
                                                photometric: PhotometricConfig(), seed: 1, patchSize: 5))
    }

    /// A few real training steps: loader → Trainer (tiny ViT + head, EMA teacher) → NeCo loss.
    func testTrainingStepsWithTrainer() throws {
        let dir = try makeFolder(count: 6)
        defer { removeFolder(dir) }
        let folder = try ImageFolder(root: dir)
        var tc = TrainerConfig(totalSteps: 4)
        tc.seed = 3
        tc.lrBackbone = 1e-2
        tc.lrHead = 1e-2
        tc.headHiddenDim = 12
        tc.headOutDim = 8
        let trainer = try Trainer(student: try TinyModels.model(TinyModels.reg(depth: 2), seed: 5), config: tc)
        var oc = NeCoObjectiveConfig()
        oc.crops = Self.smallCrops()
        oc.patchSize = 4
        oc.roiSize = 3  // Q = K = 9: keeps the debug-build test fast; 7 × 7 is covered by NeCoLossTests
        oc.references = .batch
        let objective = try NeCoObjective(config: oc, dim: 8, rng: NecoRNG(seed: 3, stream: 2))
        XCTAssertThrowsError(try objective.validate(batch: 1), "batch references need B ≥ 2")
        let loader = try NeCoDataLoader(folder: folder, batchSize: 2, crops: oc.crops, photometric: oc.photometric, seed: 3,
                                        patchSize: 4)
        loader.warn = { _ in }
        var losses: [Float] = []
        for _ in 0..<4 {
            guard let batch = try loader.next() ?? loader.next() else { break }
            let report = try objective.step(trainer: trainer, batch: batch)
            losses.append(report.loss)
            XCTAssertEqual(objective.lastReport.pairLosses.count, 10)
            XCTAssertEqual(objective.lastReport.pairLosses.reduce(0, +), objective.lastReport.loss, accuracy: 1e-12)
            XCTAssertEqual(Double(report.loss), objective.lastReport.loss, accuracy: 1e-6 * objective.lastReport.loss)
        }
        XCTAssertEqual(losses.count, 4)
        XCTAssertTrue(losses.allSatisfy { $0.isFinite && $0 > 0 && $0 < 3 * log(9) })
        // The run state round-trips through string metadata.
        let state = NeCoRunState(objective: objective, loader: loader)
        XCTAssertEqual(try NeCoRunState(metadata: state.metadata, imageCount: loader.images.count), state)
        let other = try NeCoObjective(config: oc, dim: 8, rng: NecoRNG(seed: 99))
        let otherLoader = try NeCoDataLoader(folder: folder, batchSize: 2, crops: oc.crops, photometric: oc.photometric,
                                             seed: 3, patchSize: 4)
        try state.restore(objective: other, loader: otherLoader)
        XCTAssertEqual(NeCoRunState(objective: other, loader: otherLoader), state)
        XCTAssertThrowsError(try NeCoRunState(metadata: ["neco.reference_rng": "1,2"], imageCount: 4))
        // Values are checked against their meaning: a position beyond the images, an epoch or a
        // skipped count near Int64.max, an all-zero random state.
        var bad = state.metadata
        bad["neco.loader_position"] = String(loader.images.count + 1)
        XCTAssertThrowsError(try NeCoRunState(metadata: bad, imageCount: loader.images.count))
        bad = state.metadata
        bad["neco.loader_epoch"] = String(Int.max - 1)
        XCTAssertThrowsError(try NeCoRunState(metadata: bad, imageCount: loader.images.count))
        bad = state.metadata
        bad["neco.loader_skipped"] = String(Int.max)
        XCTAssertThrowsError(try NeCoRunState(metadata: bad, imageCount: loader.images.count))
        bad = state.metadata
        bad["neco.reference_rng"] = "0,0,0,0"
        XCTAssertThrowsError(try NeCoRunState(metadata: bad, imageCount: loader.images.count))
        XCTAssertNotEqual(losses[0], losses[3])
        print("  tiny NeCo run losses: \(losses)")
    }

    /// Queue mode through `compute(ctx)`: the queues fill before the loss, and the loss equals the
    /// pair loop fed with the same references.
    func testQueueModeAndShapeChecks() throws {
        var oc = NeCoObjectiveConfig()
        oc.crops = Self.smallCrops()
        oc.patchSize = 4
        oc.roiSize = 3
        oc.references = .queue(length: 256)
        let objective = try NeCoObjective(config: oc, dim: 5, rng: NecoRNG(seed: 4))
        let b = 2
        var r = TestRNG(seed: 8)
        let tg = r.floats(2 * b * 16 * 5), sg = r.floats(2 * b * 16 * 5), sl = r.floats(4 * b * 4 * 5)
        var dg = [Float](repeating: 0, count: sg.count), dl = [Float](repeating: 0, count: sl.count)
        var rng = NecoRNG(seed: 1)
        var anchor: [Float] = [], partner: [Float] = []
        for _ in 0..<b {
            let crops = try MultiCrop.sample(width: 64, height: 48, config: oc.crops, rng: &rng)
            let (a, p) = try MultiCrop.overlapBoxes(crops, config: oc.crops)
            anchor += a
            partner += p
        }
        let boxes = NeCoBoxes(batch: b, globalCrops: 2, crops: 6, anchor: anchor, partner: partner)
        let report = try tg.withUnsafeBufferPointer { t in
            try sg.withUnsafeBufferPointer { s in
                try sl.withUnsafeBufferPointer { l in
                    try dg.withUnsafeMutableBufferPointer { g in
                        try dl.withUnsafeMutableBufferPointer { gl in
                            try objective.compute(teacherGlobal: NeCoMaps(base: t.baseAddress!, crops: 2, grid: 4),
                                                  studentGlobal: NeCoMaps(base: s.baseAddress!, crops: 2, grid: 4),
                                                  studentLocal: NeCoMaps(base: l.baseAddress!, crops: 4, grid: 2),
                                                  dStudentGlobal: NeCoMapGradients(base: g.baseAddress!),
                                                  dStudentLocal: NeCoMapGradients(base: gl.baseAddress!), boxes: boxes)
                        }
                    }
                }
            }
        }
        // n = min(10·B, 256, B·G²) = 20 rows per queue, shared counter → 40.
        XCTAssertEqual(objective.references.filled, [40, 40])
        XCTAssertTrue(report.loss.isFinite && report.loss > 0)
        XCTAssertTrue(dg.contains { $0 != 0 } && dl.contains { $0 != 0 })
        // Shape errors are reported, not trapped.
        var bad = oc
        bad.roiSize = 1
        XCTAssertThrowsError(try NeCoObjective(config: bad, dim: 5, rng: NecoRNG(seed: 1)))
        bad = oc
        bad.studentSteepness = 0
        XCTAssertThrowsError(try NeCoObjective(config: bad, dim: 5, rng: NecoRNG(seed: 1)))
        let small = try NeCoObjective(config: oc, dim: 5, rng: NecoRNG(seed: 1))
        XCTAssertThrowsError(try small.validate(batch: 29), "29·9 > 256")
        XCTAssertNoThrow(try small.validate(batch: 28))
    }
}

/// Collects loader warnings across threads (the loader calls `warn` from the calling thread).
final class WarningSink: @unchecked Sendable {
    private(set) var messages: [String] = []
    var count: Int { messages.count }
    func add(_ m: String) { messages.append(m) }
}
