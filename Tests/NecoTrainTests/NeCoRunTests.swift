import NecoCore
import NecoImage
import NecoModel
import NecoTrain
import XCTest
import _NecoTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// `NeCoRun`: the trainer, objective and loader wired together with a run folder; stop and resume,
/// failure handling and bad input.
final class NeCoRunTests: XCTestCase {
    var scratch = ""

    override func setUpWithError() throws {
        scratch = (getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp") + "/neco-run-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        XCTAssertEqual(mkdir(scratch, 0o755), 0)
    }

    override func tearDownWithError() throws {
        _ = system("rm -rf '\(scratch)'")
    }

    /// `count` small PNGs of varied sizes in `scratch/name`, plus `broken` undecodable .jpg files.
    func makeImages(_ name: String, count: Int, broken: Int = 0) throws -> String {
        let dir = scratch + "/" + name
        XCTAssertEqual(mkdir(dir, 0o755), 0)
        var rng = TestRNG(seed: 23)
        for i in 0..<count {
            let w = 30 + i * 7 % 23, h = 26 + i * 5 % 19
            let px = (0..<(w * h * 3)).map { k in UInt8(truncatingIfNeeded: Int(128 + 100 * rng.uniform()) + k % 11) }
            try PNGWriter.write(RGBImage(width: w, height: h, pixels: px), to: "\(dir)/img\(i).png")
        }
        for i in 0..<broken { try FileIO.writeAtomically("\(dir)/broken\(i).jpg", bytes: Array("not a jpeg".utf8)) }
        return dir
    }

    /// A small but complete NeCo configuration: 16/8 px crops on a patch-4 ViT, 3×3 ROI grid,
    /// a 64-row teacher queue, a 12 → 8 head.
    func config(steps: Int) -> NeCoRunConfig {
        var c = NeCoRunConfig(totalSteps: steps)
        c.batchSize = 2
        c.checkpointEvery = 0
        c.trainer.seed = 11
        c.trainer.lrBackbone = 1e-2
        c.trainer.lrHead = 1e-2
        c.trainer.headHiddenDim = 12
        c.trainer.headOutDim = 8
        c.objective.crops.globalSize = 16
        c.objective.crops.localSize = 8
        c.objective.roiSize = 3
        c.objective.references = .queue(length: 64)
        return c
    }

    func model() throws -> ViTModel { try TinyModels.model(TinyModels.reg(depth: 2), seed: 5) }

    func weights(_ m: ViTModel) -> [Float] { Array(m.params.slab.buffer) }

    /// Stopping after 3 of 6 steps (through `run(steps:)` and through the callback) and resuming
    /// from the folder gives the same losses, weights, queues and log as an uninterrupted run.
    func testStopAndResumeIsBitIdentical() throws {
        let images = try makeImages("data", count: 7)
        let folder = try ImageFolder(root: images)
        var c = config(steps: 6)
        c.log = .jsonl

        let a = try NeCoRun(model: try model(), images: .folder(folder), config: c, directory: scratch + "/a")
        a.warn = { _ in }
        XCTAssertEqual(try a.run(), .finished)
        XCTAssertEqual(a.losses.count, 6)
        XCTAssertTrue(a.losses.allSatisfy { $0.loss.isFinite && $0.loss > 0 })
        XCTAssertNotEqual(a.losses.first!.loss, a.losses.last!.loss)
        for f in [NeCoRun.configFile, NeCoRun.checkpointFile, NeCoRun.studentFile, NeCoRun.teacherFile, "log.jsonl"] {
            XCTAssertTrue(FileIO.exists(scratch + "/a/" + f), f)
        }
        // The exported student is a plain model file equal to the trained student; the checkpoint
        // (with its reference queues) loads as its student or its teacher.
        let student = try WeightLoader.load(path: scratch + "/a/" + NeCoRun.studentFile)
        XCTAssertEqual(weights(student), weights(a.trainer.student))
        let ckpt = scratch + "/a/" + NeCoRun.checkpointFile
        XCTAssertEqual(weights(try WeightLoader.load(path: ckpt)), weights(a.trainer.student))
        XCTAssertEqual(weights(try Checkpoint.loadModel(path: ckpt)), weights(a.trainer.student))
        XCTAssertEqual(weights(try Checkpoint.loadModel(path: ckpt, teacher: true)), weights(a.trainer.teacher!))

        // Paused after 3 steps (a checkpoint is written), resumed in a new object.
        let b = try NeCoRun(model: try model(), images: .folder(folder), config: c, directory: scratch + "/b")
        b.warn = { _ in }
        XCTAssertEqual(try b.run(steps: 3), .paused)
        XCTAssertEqual(b.checkpointStep, 3)
        let b2 = try NeCoRun.resume(directory: scratch + "/b")
        XCTAssertEqual(b2.stepsDone, 3)
        XCTAssertEqual(b2.objective.references.queue, b.objective.references.queue, "the queues are restored")
        b2.warn = { _ in }
        XCTAssertEqual(try b2.run(), .finished)
        XCTAssertEqual((b.losses + b2.losses).map { $0.loss }, a.losses.map { $0.loss })
        XCTAssertEqual(weights(b2.trainer.student), weights(a.trainer.student))
        XCTAssertEqual(weights(b2.trainer.teacher!), weights(a.trainer.teacher!))

        // Stopped by the callback after step 2, with two extra rows in the log that the resume
        // drops (the lost steps are re-run).
        let s = try NeCoRun(model: try model(), images: .folder(folder), config: c, directory: scratch + "/s")
        s.warn = { _ in }
        XCTAssertEqual(try s.run { $0.step < 2 }, .stopped)
        XCTAssertEqual(s.checkpointStep, 2)
        try s.step()  // a step after the checkpoint: logged, then lost
        let s2 = try NeCoRun.resume(directory: scratch + "/s")
        s2.warn = { _ in }
        XCTAssertEqual(s2.stepsDone, 2)
        XCTAssertEqual(try s2.run(), .finished)
        XCTAssertEqual(weights(s2.trainer.student), weights(a.trainer.student))
        let logA = String(decoding: try FileIO.readAll(scratch + "/a/log.jsonl"), as: UTF8.self).split(separator: "\n")
        let logS = String(decoding: try FileIO.readAll(scratch + "/s/log.jsonl"), as: UTF8.self).split(separator: "\n")
        XCTAssertEqual(logS.count, 6)
        func lossField(_ line: Substring) -> Substring? {
            line.split(separator: ",").first { $0.hasPrefix("\"loss\":") }
        }
        XCTAssertEqual(logS.map(lossField), logA.map(lossField))
        // A finished run cannot step.
        XCTAssertThrowsError(try s2.step())
    }

    /// A non-finite step throws, changes no weight and leaves the last checkpoint as it was.
    func testNonFiniteStepKeepsTheCheckpoint() throws {
        let images = try makeImages("data", count: 4)
        let run = try NeCoRun(model: try model(), images: .folder(try ImageFolder(root: images)), config: config(steps: 5),
                              directory: scratch + "/run")
        run.warn = { _ in }
        XCTAssertEqual(try run.run(steps: 2), .paused)
        let path = scratch + "/run/" + NeCoRun.checkpointFile
        let saved = try FileIO.readAll(path)
        // Poison one weight of the student's first block: its forward pass becomes NaN.
        let spec = run.trainer.student.params.layout.specs.first { $0.name == "blocks.0.attn.qkv.weight" }!
        run.trainer.student.params[spec.offset][0] = .nan
        let before = weights(run.trainer.student)
        XCTAssertThrowsError(try run.run()) { error in
            let m = (error as? NecoError)?.message ?? ""
            XCTAssertTrue(m.contains("not finite") && m.contains("checkpoint (step 2) is intact"), m)
        }
        XCTAssertEqual(run.stepsDone, 2)
        XCTAssertEqual(weights(run.trainer.student).map { $0.bitPattern }, before.map { $0.bitPattern })
        XCTAssertEqual(try FileIO.readAll(path), saved)
        // The checkpoint resumes cleanly.
        let resumed = try NeCoRun.resume(directory: scratch + "/run")
        resumed.warn = { _ in }
        XCTAssertEqual(resumed.stepsDone, 2)
        XCTAssertTrue(try resumed.step().loss.isFinite)
    }

    /// Caller-supplied images in memory (the C ABI's path), batch references.
    func testInMemoryImagesAndBatchReferences() throws {
        var rng = TestRNG(seed: 3)
        let images = (0..<4).map { i in
            RGBImage(width: 40 + i, height: 36, pixels: (0..<((40 + i) * 36 * 3)).map { _ in UInt8(truncatingIfNeeded: Int(255 * rng.uniform())) })
        }
        var c = config(steps: 3)
        c.objective.references = .batch
        c.objective.network = .oddEven
        c.objective.relaxation = .logisticPhi
        // logistic_phi at steepness 100 underflows to P = 0 (NECO-SPEC P3): without a floor the
        // first step fails with a hint, with the tiny floor the spec suggests it trains.
        let raw = try NeCoRun(model: try model(), images: .memory(images), config: c, directory: nil)
        XCTAssertThrowsError(try raw.step()) { XCTAssertTrue("\($0)".contains("set a tiny log floor"), "\($0)") }
        c.objective.logFloor = 1e-30
        let run = try NeCoRun(model: try model(), images: .memory(images), config: c, directory: nil)
        XCTAssertEqual(try run.run(), .finished)
        XCTAssertEqual(run.losses.count, 3)
        XCTAssertTrue(run.losses.allSatisfy { $0.loss.isFinite })
        // Without a folder a checkpoint needs a path; it then resumes with the same images.
        XCTAssertThrowsError(try run.saveCheckpoint())
        let path = scratch + "/memory.safetensors"
        try run.saveCheckpoint(to: path)
        XCTAssertThrowsError(try NeCoRun(checkpoint: path, images: nil, directory: nil), "in-memory runs need their images")
        XCTAssertThrowsError(try NeCoRun(checkpoint: path, images: .memory(Array(images.prefix(3))), directory: nil))
        let again = try NeCoRun(checkpoint: path, images: .memory(images), directory: nil)
        XCTAssertEqual(again.stepsDone, 3)
        XCTAssertTrue(again.isFinished)
        XCTAssertEqual(weights(again.trainer.student), weights(run.trainer.student))
        // Loading into a run built the same way (the C ABI's neco_trainer_load_checkpoint).
        let fresh = try NeCoRun(model: try model(), images: .memory(images), config: c, directory: nil)
        try fresh.restore(checkpoint: path)
        XCTAssertEqual(fresh.stepsDone, 3)
        XCTAssertEqual(weights(fresh.trainer.student), weights(run.trainer.student))
        XCTAssertEqual(fresh.objective.references.rng.words, run.objective.references.rng.words)
        var other = c
        other.objective.studentSteepness = 50
        let mismatched = try NeCoRun(model: try model(), images: .memory(images), config: other, directory: nil)
        XCTAssertThrowsError(try mismatched.restore(checkpoint: path)) {
            XCTAssertTrue("\($0)".contains("student_steepness 100"), "\($0)")
        }
        XCTAssertEqual(mismatched.stepsDone, 0)
    }

    /// Every bad input of the issue gives a clear error; unreadable images are skipped and counted.
    func testBadInput() throws {
        let m = try model()
        let empty = scratch + "/empty"
        mkdir(empty, 0o755)
        XCTAssertThrowsError(try ImageFolder(root: empty)) { XCTAssertTrue("\($0)".contains("no .jpg")) }
        XCTAssertThrowsError(try ImageFolder(root: scratch + "/missing"))

        let good = try ImageFolder(root: try makeImages("good", count: 4))
        func rejects(_ what: String, _ change: (inout NeCoRunConfig) -> Void, _ needle: String) {
            var c = config(steps: 2)
            change(&c)
            XCTAssertThrowsError(try NeCoRun(model: m, images: .folder(good), config: c, directory: nil), what) { error in
                XCTAssertTrue("\(error)".contains(needle), "\(what): \(error)")
            }
        }
        rejects("global crop not a multiple of the patch", { $0.objective.crops.globalSize = 18 }, "multiple of the patch size")
        rejects("local crop not a multiple of the patch", { $0.objective.crops.localSize = 10 }, "multiple of the patch size")
        rejects("batch references with one image", { $0.objective.references = .batch; $0.batchSize = 1 }, "at least 2 images")
        rejects("queue shorter than B·K", { $0.objective.references = .queue(length: 64); $0.batchSize = 8 }, "batch")
        rejects("steepness 0", { $0.objective.studentSteepness = 0 }, "steepness")
        rejects("negative teacher steepness", { $0.objective.teacherSteepness = -1 }, "steepness")
        rejects("sorting network of one wire", { $0.objective.roiSize = 1 }, "too small")
        rejects("batch larger than the folder", { $0.batchSize = 5; $0.objective.references = .queue(length: 8192) }, "exceeds")
        rejects("no teacher", { $0.trainer.useTeacher = false }, "teacher")

        // A run folder that already holds a run.
        let first = try NeCoRun(model: m, images: .folder(good), config: config(steps: 1), directory: scratch + "/used")
        first.warn = { _ in }
        _ = try first.run()
        XCTAssertThrowsError(try NeCoRun(model: m, images: .folder(good), config: config(steps: 1), directory: scratch + "/used")) {
            XCTAssertTrue("\($0)".contains("already holds a run"), "\($0)")
        }
        XCTAssertThrowsError(try NeCoRun.resume(directory: scratch + "/nothing"))
        // Resuming against a folder with another image count.
        let other = try ImageFolder(root: try makeImages("other", count: 5))
        XCTAssertThrowsError(try NeCoRun.resume(directory: scratch + "/used", images: .folder(other))) {
            XCTAssertTrue("\($0)".contains("cannot continue exactly"), "\($0)")
        }
        // A corrupt checkpoint.
        var bytes = try FileIO.readAll(scratch + "/used/" + NeCoRun.checkpointFile)
        bytes[bytes.count - 3] ^= 0xFF
        try FileIO.writeAtomically(scratch + "/used/" + NeCoRun.checkpointFile, bytes: bytes)
        XCTAssertThrowsError(try NeCoRun.resume(directory: scratch + "/used")) {
            XCTAssertTrue("\($0)".contains("checksum"), "\($0)")
        }

        // Unreadable images: skipped with a warning and counted; a folder with fewer readable
        // images than the batch stops with an error instead of looping.
        let mixed = try ImageFolder(root: try makeImages("mixed", count: 3, broken: 3))
        let sink = WarningSink()
        let run = try NeCoRun(model: m, images: .folder(mixed), config: config(steps: 4), directory: nil)
        run.warn = { sink.add($0) }
        _ = try run.run()
        XCTAssertGreaterThan(run.loader.skipped, 0)
        XCTAssertEqual(sink.count, run.loader.skipped)
        XCTAssertTrue(sink.messages[0].contains("broken"), sink.messages[0])
        let junk = try ImageFolder(root: try makeImages("junk", count: 1, broken: 3))
        let stuck = try NeCoRun(model: m, images: .folder(junk), config: config(steps: 2), directory: nil)
        stuck.warn = { _ in }
        XCTAssertThrowsError(try stuck.step()) { XCTAssertTrue("\($0)".contains("fewer than 2 readable images"), "\($0)") }
    }

    /// The run configuration survives JSON (it is how a checkpoint remembers the run).
    func testConfigJSONRoundTrip() throws {
        var c = config(steps: 9)
        c.objective.patchSize = 4
        c.objective.references = .batch
        c.objective.teacherSteepness = 1000
        c.objective.photometric.blurRadius = (0.2, 1.5)
        c.trainer.trainable = .last(1)
        c.log = .none
        XCTAssertEqual(try NeCoRunConfig(json: try JSONValue.parse(c.json.serialized())), c)
        XCTAssertEqual(try NeCoObjectiveConfig(json: NeCoObjectiveConfig().json), NeCoObjectiveConfig())
        XCTAssertThrowsError(try NeCoRunConfig(json: try JSONValue.parse("{\"trainer\": 1}")))
    }

    /// Evaluation during a run: before the first step, every `evalEvery` steps and at the end; the
    /// values go to eval.csv, the best student to best.safetensors, the curves to curves.png; a
    /// resumed run keeps the evaluations up to its checkpoint and goes on from there. A monitor
    /// (here with larger values than the metric) gets rows of its own and never chooses the best.
    func testEvaluationsBestStudentAndCurves() throws {
        let images = try makeImages("data", count: 7)
        let folder = try ImageFolder(root: images)
        var c = config(steps: 6)
        c.evalEvery = 2
        c.checkpointEvery = 3
        // A metric that peaks in the middle of the run: −|(first weight moved since the start) − target|.
        let start = try model().params.slab.buffer.first!
        var seen: [Int: Float] = [:]
        func evaluator(_ run: NeCoRun) -> NeCoEvaluator {
            NeCoEvaluator(name: "probe") { m in
                let w = m.params.slab.buffer.first!
                seen[run.stepsDone] = w
                return NeCoEvaluation(value: -Double(abs(w - start - 0.015)), monitors: [("moved", 1000 * Double(abs(w - start)))])
            }
        }
        let a = try NeCoRun(model: try model(), images: .folder(folder), config: c, directory: scratch + "/a")
        a.warn = { _ in }
        a.evaluator = evaluator(a)
        XCTAssertEqual(try a.run(steps: 3), .paused)
        XCTAssertEqual(a.evaluations.map { $0.step }, [0, 2])
        let resumed = try NeCoRun.resume(directory: scratch + "/a")
        resumed.warn = { _ in }
        XCTAssertEqual(resumed.evaluations.map { $0.step }, [0, 2], "evaluations up to the checkpoint (step 3) are kept")
        resumed.evaluator = evaluator(resumed)
        XCTAssertEqual(try resumed.run(), .finished)
        XCTAssertEqual(resumed.evaluations.map { $0.step }, [0, 2, 4, 6])
        let text = String(decoding: try FileIO.readAll(scratch + "/a/" + NeCoRun.evalFile), as: UTF8.self)
        let rows = text.split(separator: "\n")
        XCTAssertEqual(rows.first, "step,metric,value")
        XCTAssertEqual(rows.dropFirst().map { $0.split(separator: ",")[0] }, ["0", "0", "2", "2", "4", "4", "6", "6"])
        XCTAssertEqual(rows.dropFirst().map { $0.split(separator: ",")[1] }, ["probe", "moved", "probe", "moved", "probe", "moved", "probe", "moved"])
        XCTAssertTrue(resumed.evaluations.allSatisfy { $0.value <= 0 }, "monitor rows are not evaluations")
        let best = try XCTUnwrap(resumed.bestEvaluation)
        XCTAssertEqual(best.value, resumed.evaluations.map { $0.value }.max())
        // best.safetensors is the student of the best step.
        let saved = try WeightLoader.load(path: scratch + "/a/" + NeCoRun.bestFile)
        XCTAssertEqual(saved.params.slab.buffer.first, seen[best.step])
        let png = try ImageDecoder.load(path: scratch + "/a/" + NeCoRun.curvesFile)
        XCTAssertEqual(png.width, 720)
        XCTAssertEqual(png.height, 400)
        XCTAssertTrue(png.pixels.contains { $0 < 128 }, "the picture has ink")
        // A non-finite metric is an error, not a best model.
        let b = try NeCoRun(model: try model(), images: .folder(folder), config: c, directory: scratch + "/b")
        b.warn = { _ in }
        b.evaluator = NeCoEvaluator(name: "nan") { _ in .nan }
        XCTAssertThrowsError(try b.run())
        XCTAssertFalse(FileIO.exists(scratch + "/b/" + NeCoRun.bestFile))
        // A monitor name that would break eval.csv (or repeat the metric's) is an error.
        for bad in ["probe", "", "a,b"] {
            let r = try NeCoRun(model: try model(), images: .folder(folder), config: c, directory: scratch + "/bad\(bad.count)")
            r.warn = { _ in }
            r.evaluator = NeCoEvaluator(name: "probe") { _ in NeCoEvaluation(value: 1, monitors: [(bad, 2)]) }
            XCTAssertThrowsError(try r.run(), "monitor name '\(bad)'")
        }
    }
}
