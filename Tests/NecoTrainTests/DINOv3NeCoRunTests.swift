import NecoCore
import NecoImage
import NecoModel
import NecoTrain
import XCTest
import _NecoTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// NeCo post-pretraining of a tiny DINOv3 (16-px patches, RoPE with training-time rescale,
/// masked key bias): stop and resume is bit-identical, the checkpoint loads as DINOv3, and the
/// key bias stays zero.
final class DINOv3NeCoRunTests: XCTestCase {
    func testRunResumeAndCheckpoint() throws {
        let scratch = (getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp") + "/neco-v3-run-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        XCTAssertEqual(mkdir(scratch, 0o755), 0)
        defer { _ = system("rm -rf '\(scratch)'") }
        let dir = scratch + "/data"
        XCTAssertEqual(mkdir(dir, 0o755), 0)
        var rng = TestRNG(seed: 3)
        for i in 0..<5 {
            let w = 60 + i * 9, h = 56 + i * 5
            let px = (0..<(w * h * 3)).map { k in UInt8(truncatingIfNeeded: Int(128 + 100 * rng.uniform()) + k % 13) }
            try PNGWriter.write(RGBImage(width: w, height: h, pixels: px), to: "\(dir)/img\(i).png")
        }
        let folder = try ImageFolder(root: dir)
        func model() throws -> ViTModel {
            try WeightLoader.load(path: fixturePath("dinov3/tiny_mlp.meta.weights.safetensors"), options: LoadOptions(heads: 2))
        }
        var c = NeCoRunConfig(totalSteps: 4)
        c.batchSize = 2
        c.checkpointEvery = 0
        c.trainer.seed = 7
        c.trainer.lrBackbone = 1e-2
        c.trainer.lrHead = 1e-2
        c.trainer.headHiddenDim = 12
        c.trainer.headOutDim = 8
        c.trainer.ropeAugment = RoPEAugment(rescale: 2)
        c.objective.crops.globalSize = 64
        c.objective.crops.localSize = 32
        c.objective.roiSize = 3
        c.objective.references = .queue(length: 64)
        // Crop sizes must sit on the 16-px grid.
        var bad = c
        bad.objective.crops.localSize = 28
        XCTAssertThrowsError(try NeCoRun(model: try model(), images: .folder(folder), config: bad, directory: scratch + "/bad"))

        let a = try NeCoRun(model: try model(), images: .folder(folder), config: c, directory: scratch + "/a")
        a.warn = { _ in }
        XCTAssertEqual(try a.run(), .finished)
        XCTAssertTrue(a.losses.allSatisfy { $0.loss.isFinite && $0.loss > 0 })
        let b = try NeCoRun(model: try model(), images: .folder(folder), config: c, directory: scratch + "/b")
        b.warn = { _ in }
        XCTAssertEqual(try b.run(steps: 2), .paused)
        let b2 = try NeCoRun.resume(directory: scratch + "/b")
        b2.warn = { _ in }
        XCTAssertEqual(b2.config.trainer.ropeAugment, RoPEAugment(rescale: 2))
        XCTAssertEqual(try b2.run(), .finished)
        XCTAssertEqual((b.losses + b2.losses).map { $0.loss }, a.losses.map { $0.loss })
        XCTAssertEqual(Array(b2.trainer.student.params.slab.buffer), Array(a.trainer.student.params.slab.buffer))

        for path in [NeCoRun.checkpointFile, NeCoRun.studentFile] {
            let m = try WeightLoader.load(path: scratch + "/a/" + path)
            XCTAssertEqual(m.config.family, .dinov3, path)
            XCTAssertEqual(m.config.qkvBias, .maskedKey, path)
            XCTAssertEqual(m.config.rope?.bf16Periods, true, path)
            XCTAssertEqual(m.config.heads, 2, path)
            XCTAssertEqual(Array(m.params.slab.buffer), Array(a.trainer.student.params.slab.buffer), path)
        }
        let teacher = try Checkpoint.loadModel(path: scratch + "/a/" + NeCoRun.checkpointFile, teacher: true)
        XCTAssertEqual(Array(teacher.params.slab.buffer), Array(a.trainer.teacher!.params.slab.buffer))
        let d = 32, p = a.trainer.student.params
        for blk in p.layout.blocks {
            XCTAssertTrue(UnsafeBufferPointer(start: p[blk.qkvB + d], count: d).allSatisfy { $0 == 0 }, "key bias stays zero")
        }
        // The weights moved.
        XCTAssertNotEqual(Array(p.slab.buffer), Array(try model().params.slab.buffer))
    }
}
