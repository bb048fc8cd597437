import Foundation
import NecoCore
import NecoTrain
import XCTest
import _NecoTestSupport

/// Data-parallel training and sharded extraction under a real MPI launcher (Open MPI's `mpirun`,
/// 2 ranks on this machine), against the single process (docs/DISTRIBUTED.md). Tiny model, the
/// sample photos. Skips when mpirun or the photos are missing (scripts/setup.sh --test installs
/// both).
final class DistributedTests: XCTestCase {
    /// Loss of N ranks × B/N against one process × B: only the order of the sums over ranks
    /// differs (a float32 loss and a Double mean).
    static let lossTolerance = 1e-5
    /// Gradients (AdamW's first moment after one step, 0.1·g), relative to each tensor's largest
    /// value: float32 sums of the same terms in another order.
    static let gradientTolerance = 1e-4
    /// Weights after 1 and 3 AdamW + EMA steps, absolute (lr 1e-5 / 1e-4 for the head).
    static let weightTolerance = 1e-5
    /// AdamW's step is lr·m̂/(√v̂ + ε), about lr·sign(g) at first: where a gradient is no larger
    /// than the rounding noise of its sum, the two runs may step in opposite directions (up to
    /// 2·lr apart). After one step, such elements (|m| below this fraction of the tensor's largest
    /// |m|) are exempt from `weightTolerance`; every other weight must match.
    static let noiseBand = 1e-3
    /// After several steps those few opposite steps have moved later gradients a little: moments
    /// within this fraction of each tensor's largest, and at most `flippedFraction` of the weights
    /// beyond `weightTolerance`, each by at most 2·lr per step (opposite AdamW steps).
    static let laterGradientTolerance = 1e-3
    static let flippedFraction = 1e-5
    static let largestLearningRate = 1e-4

    var tmp: TempFolder!
    override func setUpWithError() throws { tmp = try TempFolder(prefix: "neco-mpi") }
    override func tearDown() { tmp.cleanup() }

    let photos = necoCache + "/photos"

    func tools() throws -> (neco: String, mpirun: String) {
        let neco = productsDirectory().appendingPathComponent("neco").path
        guard FileManager.default.isExecutableFile(atPath: neco) else { throw XCTSkip("neco not built at \(neco)") }
        guard let mpirun = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first(where: { FileManager.default.isExecutableFile(atPath: $0) })
        else { throw XCTSkip("mpirun missing: install openmpi-bin (scripts/setup.sh --test does)") }
        guard FileIO.isDirectory(photos) else { throw XCTSkip("\(photos) missing: run scripts/setup.sh") }
        return (neco, mpirun)
    }

    /// Runs a shell command line (with `$NECO` and `$MPIRUN` set) under a time limit.
    /// - Returns: the exit status (124 when the limit was hit) and the combined output.
    func shell(_ command: String, limit: Int = 300, environment: [String: String] = [:]) throws -> (Int32, String) {
        let (neco, mpirun) = try tools()
        let log = tmp.file("shell-\(UUID().uuidString).txt")
        var env = ["NECO": neco, "MPIRUN": mpirun + " --oversubscribe", "OMPI_ALLOW_RUN_AS_ROOT": "1",
                   "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMPI_MCA_rmaps_base_oversubscribe": "1"]
        env.merge(environment) { $1 }
        let (rc, _) = try runTool("/bin/sh", ["-c", "timeout \(limit) sh -c '\(command)' > \(log) 2>&1"], environment: env)
        let out = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        return (rc, out)
    }

    var trainArgs: String {
        "--model \(tinyModel) --heads 4 --data \(photos) --global-size 28 --local-size 14 --roi-size 2 --seed 5 --quiet "
            + "--threads 1 --drop-path 0.1"
    }

    func train(ranks: Int, steps: Int, references: String, out: String, extra: String = "") throws {
        let launcher = ranks > 1 ? "$MPIRUN -np \(ranks) " : ""
        let (rc, text) = try shell("\(launcher)$NECO train \(trainArgs) --batch 4 --steps \(steps) --references \(references) "
                                   + "--checkpoint-every 1 --out \(out) \(extra)")
        XCTAssertEqual(rc, 0, text)
    }

    func losses(_ run: String) throws -> [Double] {
        let lines = String(decoding: try FileIO.readAll(run + "/log.csv"), as: UTF8.self).split(separator: "\n")
        guard let header = lines.first?.split(separator: ","), let li = header.firstIndex(of: "loss") else { return [] }
        return lines.dropFirst().compactMap { Double($0.split(separator: ",")[li]) }
    }

    /// Every trainable tensor of a trainer's state: student and teacher values and AdamW's first
    /// moment (backbone, then the heads).
    func tensors(_ t: Trainer) -> [(name: String, student: [Float], teacher: [Float], moment: [Float])] {
        func read(_ p: UnsafePointer<Float>, _ n: Int) -> [Float] { Array(UnsafeBufferPointer(start: p, count: n)) }
        var out: [(name: String, student: [Float], teacher: [Float], moment: [Float])] = []
        for spec in t.student.params.layout.specs {
            guard let teacher = t.teacher else { break }
            out.append((spec.name, read(t.student.params[spec.offset], spec.count), read(teacher.params[spec.offset], spec.count),
                        read(t.optimizer.m.base + spec.offset, spec.count)))
        }
        if let sh = t.studentHead, let th = t.teacherHead {
            for spec in sh.layout.specs {
                out.append(("head." + spec.name, read(sh.slab[spec.offset], spec.count), read(th.slab[spec.offset], spec.count),
                            read(t.optimizer.m.base + t.backboneCount + spec.offset, spec.count)))
            }
        }
        return out
    }

    /// 2 ranks × 2 images = 1 process × 4 images: the loss of each of 3 steps, the gradients of
    /// the first, and the student, teacher and heads after 3 steps, in both reference modes, with
    /// stochastic depth on.
    func testTwoRanksEqualOneProcessWithTheWholeBatch() throws {
        _ = try tools()
        for references in ["queue", "batch"] {
            for steps in [1, 3] {
                let one = tmp.file("\(references)-\(steps)-one"), two = tmp.file("\(references)-\(steps)-two")
                try train(ranks: 1, steps: steps, references: references, out: one)
                try train(ranks: 2, steps: steps, references: references, out: two)
                let l1 = try losses(one), l2 = try losses(two)
                XCTAssertEqual(l1.count, steps)
                XCTAssertEqual(l2.count, steps)
                for (a, b) in zip(l1, l2) {
                    XCTAssertLessThanOrEqual(abs(a - b), Self.lossTolerance * abs(a), "\(references): loss \(a) vs \(b)")
                }
                let t1 = try Checkpoint.load(path: one + "/" + NeCoRun.checkpointFile)
                let t2 = try Checkpoint.load(path: two + "/" + NeCoRun.checkpointFile)
                XCTAssertEqual(t1.step, steps)
                XCTAssertEqual(t2.step, steps)
                compare(t1, t2, "\(references) after \(steps) steps")
                let meta = try Checkpoint.metadata(path: two + "/" + NeCoRun.checkpointFile)
                XCTAssertEqual(meta["neco.ranks"], "2")
            }
        }
    }

    /// A run paused by 2 ranks resumes in 1 process (and would in 4: the global batch divides)
    /// and ends where an uninterrupted run ends; 3 ranks are refused with a clear error.
    func testResumeWithAnotherRankCount() throws {
        _ = try tools()
        let straight = tmp.file("straight"), paused = tmp.file("paused")
        try train(ranks: 1, steps: 4, references: "queue", out: straight)
        try train(ranks: 2, steps: 4, references: "queue", out: paused, extra: "--pause-after 2")
        XCTAssertEqual(try losses(paused).count, 2)
        let (rc3, text3) = try shell("$MPIRUN -np 3 $NECO train --resume \(paused) --quiet --threads 1")
        XCTAssertNotEqual(rc3, 0)
        XCTAssertTrue(text3.contains("cannot be split over 3 ranks"), text3)
        let (rc, text) = try shell("$NECO train --resume \(paused) --quiet --threads 1")
        XCTAssertEqual(rc, 0, text)
        let a = try losses(straight), b = try losses(paused)
        XCTAssertEqual(b.count, 4)
        for (x, y) in zip(a, b) { XCTAssertLessThanOrEqual(abs(x - y), Self.lossTolerance * abs(x), "loss \(x) vs \(y)") }
        let t1 = try Checkpoint.load(path: straight + "/" + NeCoRun.checkpointFile)
        let t2 = try Checkpoint.load(path: paused + "/" + NeCoRun.checkpointFile)
        compare(t1, t2, "resumed")
    }

    /// After one step: moments (0.1·gradients) within `gradientTolerance` of each tensor's largest
    /// value, weights within `weightTolerance` except where the gradient is in the noise band.
    /// After more steps: see `laterGradientTolerance`.
    func compare(_ t1: Trainer, _ t2: Trainer, _ label: String) {
        let a = tensors(t1), b = tensors(t2)
        XCTAssertEqual(a.map { $0.name }, b.map { $0.name })
        let steps = t1.step, first = steps == 1
        var differ = 0, total = 0
        for (x, y) in zip(a, b) {
            let scale = x.moment.map { abs(Double($0)) }.max() ?? 0
            let worstMoment = zip(x.moment, y.moment).map { abs(Double($0) - Double($1)) }.max() ?? 0
            let tolerance = first ? Self.gradientTolerance : Self.laterGradientTolerance
            XCTAssertLessThanOrEqual(worstMoment, tolerance * max(scale, 1e-30), "\(label): moment of \(x.name)")
            for (wx, wy) in [(x.student, y.student), (x.teacher, y.teacher)] {
                for i in wx.indices {
                    let d = abs(Double(wx[i]) - Double(wy[i]))
                    guard d > Self.weightTolerance else { continue }
                    differ += 1
                    if first && abs(Double(x.moment[i])) > Self.noiseBand * scale || d > 2 * Self.largestLearningRate * Double(steps) {
                        XCTFail("\(label): \(x.name)[\(i)] \(wx[i]) vs \(wy[i]), m \(x.moment[i]) of max \(scale)")
                        return
                    }
                }
                total += wx.count
            }
        }
        XCTAssertLessThanOrEqual(Double(differ), Self.flippedFraction * Double(total), "\(label): \(differ) of \(total) weights differ")
        print("\(label): \(differ) of \(total) weights differ by more than \(Self.weightTolerance)")
    }

    /// Ranks that disagree stop together with one message, instead of training different runs
    /// or waiting for each other. Each rank's standard error goes to its own file (through mpirun
    /// the two streams can interleave mid-line).
    func testMismatchesStopEveryRankWithTheSameError() throws {
        _ = try tools()
        func errors(_ tag: String) -> [String] {
            (0..<2).map { (try? String(contentsOfFile: tmp.file("\(tag)-rank\($0).txt"), encoding: .utf8)) ?? "" }
        }
        // A different seed on rank 1: the configuration differs.
        let seedArgs = trainArgs.replacingOccurrences(of: "--seed 5", with: "")
        let (rc, text) = try shell("$MPIRUN -np 2 sh -c \"exec \\$NECO train \(seedArgs) --seed 5\\$OMPI_COMM_WORLD_RANK --batch 4 "
                                   + "--steps 2 --out \(tmp.file("seed")) 2> \(tmp.file("seed"))-rank\\$OMPI_COMM_WORLD_RANK.txt\"",
                                   limit: 120)
        XCTAssertNotEqual(rc, 0, text)
        XCTAssertNotEqual(rc, 124, "timed out: \(text)")
        for (r, e) in errors("seed").enumerated() {
            XCTAssertTrue(e.contains("differs between ranks: rank 1 has 'config {\"trainer\":{\"seed\":\"51\""), "rank \(r): \(e)")
        }
        // A data folder missing on rank 1.
        let dataArgs = trainArgs.replacingOccurrences(of: "--data \(photos)", with: "")
        let (rc2, text2) = try shell("$MPIRUN -np 2 sh -c \"if [ \\$OMPI_COMM_WORLD_RANK = 1 ]; then D=/nonexistent-neco; "
                                     + "else D=\(photos); fi; exec \\$NECO train \(dataArgs) --data \\$D --batch 4 --steps 2 "
                                     + "--out \(tmp.file("data")) 2> \(tmp.file("data"))-rank\\$OMPI_COMM_WORLD_RANK.txt\"", limit: 120)
        XCTAssertNotEqual(rc2, 0, text2)
        XCTAssertNotEqual(rc2, 124, "timed out: \(text2)")
        for (r, e) in errors("data").enumerated() {
            XCTAssertTrue(e.contains("starting the run: rank 1 of 2 failed: cannot open folder /nonexistent-neco"), "rank \(r): \(e)")
        }
    }

    /// A rank that dies mid-run ends the job (the launcher stops the others), and a rank that
    /// stops answering makes the others fail after NECO_MPI_TIMEOUT, never a hang.
    func testARankThatDiesOrHangsEndsTheJob() throws {
        _ = try tools()
        let long = "$NECO train \(trainArgs) --batch 4 --steps 1000000 --checkpoint-every 0 --log none"
        // SIGKILL of rank 1 after 3 s.
        var start = Date()
        let (rc, text) = try shell("$MPIRUN -np 2 sh -c \"if [ \\$OMPI_COMM_WORLD_RANK = 1 ]; then (sleep 3; kill -9 \\$\\$) & fi; "
                                   + "exec \(long) --out \(tmp.file("killed"))\"", limit: 120)
        XCTAssertNotEqual(rc, 0, text)
        XCTAssertNotEqual(rc, 124, "the job did not end: \(text)")
        XCTAssertLessThan(Date().timeIntervalSince(start), 60)
        // SIGSTOP of rank 1 after 3 s: mpirun sees nothing; rank 0 gives up after 5 s.
        start = Date()
        let (rc2, text2) = try shell("$MPIRUN -np 2 sh -c \"if [ \\$OMPI_COMM_WORLD_RANK = 1 ]; then (sleep 3; kill -STOP \\$\\$) & fi; "
                                     + "exec \(long) --out \(tmp.file("stopped"))\"", limit: 120, environment: ["NECO_MPI_TIMEOUT": "5"])
        XCTAssertNotEqual(rc2, 0, text2)
        XCTAssertNotEqual(rc2, 124, "the job did not end: \(text2)")
        XCTAssertTrue(text2.contains("waited 5 s for the other ranks"), text2)
        XCTAssertLessThan(Date().timeIntervalSince(start), 60)
    }

    /// `mpirun -np 2 neco extract` writes the same files as one process, and --resume writes only
    /// what is missing.
    func testShardedExtractionAndResume() throws {
        _ = try tools()
        let one = tmp.file("x1"), two = tmp.file("x2")
        let args = "--model \(tinyModel) --heads 4 --size 56 --threads 1 \(photos)"
        var (rc, text) = try shell("$NECO extract \(args) --out \(one)")
        XCTAssertEqual(rc, 0, text)
        (rc, text) = try shell("$MPIRUN -np 2 $NECO extract \(args) --out \(two)")
        XCTAssertEqual(rc, 0, text)
        XCTAssertTrue(text.contains("over 2 ranks"), text)
        let names = try FileManager.default.contentsOfDirectory(atPath: one).sorted()
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: two).sorted(), names)
        XCTAssertGreaterThan(names.count, 1)
        for n in names { try assertSameArray(one + "/" + n, two + "/" + n) }
        // Resume: one output removed, one left; only the missing one is computed again.
        try FileManager.default.removeItem(atPath: two + "/" + names[0])
        (rc, text) = try shell("$MPIRUN -np 2 $NECO extract \(args) --out \(two) --resume")
        XCTAssertEqual(rc, 0, text)
        XCTAssertTrue(text.contains("wrote 1 files") && text.contains("kept \(names.count - 1) already there"), text)
        try assertSameArray(one + "/" + names[0], two + "/" + names[0])
    }

    /// Two .npy files with the same header and float32 values within 1e-5 of the largest: a
    /// rank extracts its images in smaller batches, whose GEMMs block the sums differently.
    func assertSameArray(_ a: String, _ b: String) throws {
        let x = try FileIO.readAll(a), y = try FileIO.readAll(b)
        let headerLength = 10 + Int(x[8]) + Int(x[9]) << 8
        XCTAssertEqual(x.count, y.count, a)
        XCTAssertEqual(Array(x[..<headerLength]), Array(y[..<headerLength]), a)
        func floats(_ bytes: [UInt8]) -> [Float] {
            Array(bytes[headerLength...]).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        }
        let fx = floats(x), fy = floats(y)
        _ = assertClose(fy, fx, rtol: 0, atol: 1e-5 * Double(fx.map { abs($0) }.max() ?? 1), a)
    }
}
