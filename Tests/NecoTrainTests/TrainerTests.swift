import NecoCore
import NecoModel
import XCTest
import _NecoTestSupport
import NecoTrain

#if canImport(Glibc)
import Glibc
#endif

/// The training loop: schedules, AdamW, determinism, frozen blocks, checkpoints and resume.
final class TrainerTests: XCTestCase {
    // MARK: Fixtures of this file

    static func config(seed: UInt64 = 5, trainable: TrainableBlocks = .all) -> TrainerConfig {
        var c = TrainerConfig(totalSteps: 10)
        c.seed = seed
        c.warmupSteps = 2
        c.lrBackbone = 2e-3
        c.lrHead = 5e-3
        c.momentumStart = 0.9
        c.gradClip = 0.5
        c.dropPathRate = 0.1
        c.trainable = trainable
        c.headHiddenDim = 12
        c.headOutDim = 6
        c.headLayers = 3
        return c
    }

    /// Two inputs per step: 2 views at 12×16 seen by the teacher, 2 views at 8×8 seen by the
    /// student only; pixels depend on the step, so every step differs.
    final class Inputs {
        let a: Buf, b: Buf, targetB: Buf
        init(step: Int) {
            a = Buf((0..<(2 * 3 * 12 * 16)).map { Float(sin(0.37 * Double($0) + Double(step))) })
            b = Buf((0..<(2 * 3 * 8 * 8)).map { Float(cos(0.11 * Double($0) - Double(step))) })
            targetB = Buf((0..<(2 * 4 * 6)).map { Float(sin(0.5 * Double($0))) * 0.3 })
        }
        var list: [TrainingInput] {
            [TrainingInput(images: a.p, batch: 2, height: 12, width: 16, teacher: true),
             TrainingInput(images: b.p, batch: 2, height: 8, width: 8, teacher: false)]
        }
        /// MSE(student A, teacher A) + ½ · MSE(student B, fixed target).
        func loss(_ ctx: LossContext) throws -> Float {
            var total = try DenseMSE.studentTeacherObjective(ctx)
            let s = ctx.student[1]
            total += Float(DenseMSE.forwardBackward(dStudent: ctx.studentGradient[1].base, student: s.base, target: targetB.p,
                                                    count: s.count, weight: 0.5) * 0.5)
            return total
        }
    }

    func makeTrainer(_ c: TrainerConfig = config()) throws -> Trainer {
        try Trainer(student: try TinyModels.model(TinyModels.reg(depth: 3), seed: 91), config: c)
    }

    func train(_ t: Trainer, steps: Int) throws -> [Float] {
        var losses: [Float] = []
        for _ in 0..<steps {
            let inp = Inputs(step: t.step)
            losses.append(try t.step(inp.list, loss: inp.loss).loss)
        }
        return losses
    }

    func tmpPath(_ name: String) -> String {
        let dir = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        return "\(dir)/neco-train-test-\(getpid())-\(name)"
    }

    func params(_ t: Trainer) -> [[Float]] {
        var out = [Array(t.student.params.slab.buffer), Array(t.teacher!.params.slab.buffer)]
        out.append(Array(t.studentHead!.slab.buffer))
        out.append(Array(t.teacherHead!.slab.buffer))
        out.append(Array(t.optimizer.m.buffer))
        out.append(Array(t.optimizer.v.buffer))
        return out
    }

    // MARK: Schedules and optimiser

    /// NECO-SPEC §9.5: step 0 and T/2 values; warmup; the stochastic-depth rates and paths.
    func testSchedulesAndRates() {
        var c = TrainerConfig(totalSteps: 100)
        c.lrBackbone = 1e-5
        let s = TrainingSchedules(config: c)
        let v0 = s.values(at: 0), vh = s.values(at: 50)
        XCTAssertEqual(v0.lrBackbone, 1e-5)
        XCTAssertEqual(v0.lrHead, 1e-4)
        XCTAssertEqual(v0.weightDecay, 0.04, accuracy: 1e-15)
        XCTAssertEqual(v0.momentum, 0.9995, accuracy: 1e-15)
        XCTAssertEqual(vh.lrBackbone, 0.5e-5, accuracy: 1e-18)
        XCTAssertEqual(vh.weightDecay, 0.27, accuracy: 1e-12)
        XCTAssertEqual(vh.momentum, 0.99975, accuracy: 1e-12)
        XCTAssertEqual(s.values(at: 100).lrBackbone, 0)
        XCTAssertEqual(s.values(at: 99).weightDecay, 0.5, accuracy: 2e-4)
        let w = CosineSchedule(start: 1, end: 0, totalSteps: 10, warmupSteps: 3, warmupStart: 0)
        XCTAssertEqual((0..<4).map { w.value(at: $0) }, [0, 0.5, 1, 1])
        XCTAssertEqual(w.value(at: 3 + 7 / 2 + 0), 0.5 + 0.5 * cos(Double.pi * 3 / 7), accuracy: 1e-15)

        let rates = StochasticDepth.rates(rate: 0.1, depth: 12)
        XCTAssertEqual(rates[0], 0)
        XCTAssertEqual(Double(rates[1]), 0.0090909, accuracy: 1e-7)
        XCTAssertEqual(Double(rates[10]), 0.0909091, accuracy: 1e-7)
        XCTAssertEqual(Double(rates[11]), 0.10000000149011612)
        XCTAssertEqual(rates.map { StochasticDepth.path(rate: $0) },
                       [.none] + Array(repeating: .perSample, count: 10) + [.subset])
    }

    /// Subset path at B = 128 keeps 115 samples scaled by 128/115 (NECO-SPEC §2.6); classic
    /// drop path keeps about 1 − p of the samples, scaled by 1/(1 − p).
    func testStochasticDepthDraws() throws {
        let c = TinyModels.reg(depth: 2)
        let acts = try ViTActivations(config: c, batch: 128, height: 4, width: 4)
        var rng = NecoRNG(seed: 1, stream: 1)
        StochasticDepth.sample(into: acts, rates: [0.08, 0.10000000149011612], rng: &rng)
        let classic = acts.branchScales(block: 0, branch: 0)
        let kept = classic.filter { $0 != 0 }
        XCTAssert(kept.allSatisfy { $0 == Float(1 / (1 - Double(Float(0.08)))) })
        XCTAssert(abs(Double(kept.count) / 128 - 0.92) < 0.1)
        XCTAssert(kept.count < 128)
        for branch in 0..<2 {
            let subset = acts.branchScales(block: 1, branch: branch)
            XCTAssertEqual(subset.filter { $0 != 0 }.count, 115)
            XCTAssert(subset.filter { $0 != 0 }.allSatisfy { $0 == Float(128.0 / 115.0) })
        }
        XCTAssertNotEqual(Array(acts.branchScales(block: 1, branch: 0)), Array(acts.branchScales(block: 1, branch: 1)))
    }

    /// AdamW against the update written out in Double, over a few steps with decay.
    func testAdamWFormula() throws {
        let opt = try AdamW(count: 3)
        let p = Buf([0.5, -0.2, 1.5]), g = Buf([0.1, -0.3, 0.02])
        let seg = [ParamSegment(params: p.p, offset: 0, count: 2, group: .backboneDecay),
                   ParamSegment(params: p.p + 2, offset: 2, count: 1, group: .headNoDecay)]
        var ref = p.array.map(Double.init), m = [0.0, 0, 0], v = [0.0, 0, 0]
        for t in 1...4 {
            let lr = [1e-2, 1e-2, 3e-2, 3e-2], wd = [0.1, 0, 0.2, 0]
            opt.update(segments: seg, grads: g.p, lr: lr, weightDecay: wd)
            for i in 0..<3 {
                let grp = i < 2 ? 0 : 3
                let gi = Double(g.p[i])
                ref[i] *= 1 - lr[grp] * wd[grp]
                m[i] = 0.9 * m[i] + 0.1 * gi
                v[i] = 0.999 * v[i] + 0.001 * gi * gi
                let mh = m[i] / (1 - pow(0.9, Double(t))), vh = v[i] / (1 - pow(0.999, Double(t)))
                ref[i] -= lr[grp] * mh / (vh.squareRoot() + 1e-8)
            }
        }
        assertClose(p.array, ref.map { Float($0) }, rtol: 1e-5, atol: 1e-7, "AdamW")
        XCTAssertEqual(opt.stepCount, 4)
    }

    // MARK: Determinism and resume

    /// Same seed and thread count → bit-identical losses and weights; another seed differs.
    func testDeterministicTrajectory() throws {
        let a = try makeTrainer(), b = try makeTrainer()
        let la = try train(a, steps: 5), lb = try train(b, steps: 5)
        XCTAssertEqual(la, lb)
        XCTAssertEqual(params(a), params(b))
        XCTAssert(la.allSatisfy { $0.isFinite })
        XCTAssertNotEqual(la[0], la[4], "the loss should move")
        let c = try makeTrainer(Self.config(seed: 6))
        XCTAssertNotEqual(try train(c, steps: 5), la)
    }

    /// Recomputing the feed-forward pre-activation in backward changes no bit of a trajectory
    /// (drop path, clipping, heads, all blocks and the last two), and stores fewer activations.
    func testRecomputedFeedForwardIsBitIdentical() throws {
        for trainable in [TrainableBlocks.all, .last(2)] {
            let stored = try makeTrainer(Self.config(trainable: trainable)), recomputed = try makeTrainer(Self.config(trainable: trainable))
            recomputed.recomputeFeedForward = true
            XCTAssertEqual(try train(stored, steps: 3), try train(recomputed, steps: 3), "\(trainable)")
            XCTAssertEqual(params(stored), params(recomputed), "\(trainable)")
            XCTAssertLessThan(recomputed.byteCount, stored.byteCount)
        }
    }

    /// Recomputing in only some blocks changes no bit either; each further recomputed block
    /// frees one pre-activation (the first one pays for the recompute buffer), and a count over
    /// the trained blocks is all of them.
    func testPartlyRecomputedFeedForward() throws {
        let stored = try makeTrainer()
        let expected = try train(stored, steps: 2)
        let depth = stored.student.config.depth
        XCTAssertGreaterThanOrEqual(depth, 2)
        var bytes: [Int] = []
        for n in [0, 1, 2, depth, depth + 5] {
            let t = try makeTrainer()
            t.recomputedFeedForwardBlocks = n
            XCTAssertEqual(try train(t, steps: 2), expected, "\(n) blocks")
            XCTAssertEqual(params(t), params(stored), "\(n) blocks")
            XCTAssertEqual(t.recomputeFeedForward, n >= depth)
            bytes.append(t.byteCount)
        }
        XCTAssertLessThanOrEqual(bytes[1], bytes[0], "one block: its buffer at most becomes the recompute buffer")
        XCTAssertLessThan(bytes[2], bytes[1])
        XCTAssertLessThan(bytes[3], bytes[2])
        XCTAssertEqual(bytes[4], bytes[3])
        let t = try makeTrainer()
        t.recomputedFeedForwardBlocks = -1
        XCTAssertThrowsError(try train(t, steps: 1))
    }

    /// Under a memory limit the trainer recomputes in as few blocks as fit: the byte count it
    /// predicts is what it allocates, the trajectory is bit-identical, and a limit nothing fits
    /// is refused before anything is allocated.
    func testMemoryLimitChoosesTheRecomputeCount() throws {
        let free = try makeTrainer()
        let expected = try train(free, steps: 2)
        let inputs = Inputs(step: 0).list
        let depth = free.student.config.depth
        let bytes = try (0...depth).map { try free.activationByteCount(for: inputs, recomputedBlocks: $0) }
        XCTAssertLessThan(bytes[depth], bytes[0])
        // The prediction is the allocation.
        XCTAssertEqual(free.byteCount + free.student.parameterCount * 4, free.stateByteCount + bytes[0])
        for n in 0...depth {
            let t = try makeTrainer()
            // Just enough for n blocks recomputing (and not for fewer, when fewer need more).
            t.memoryLimit = t.stateByteCount + bytes[n]
            XCTAssertEqual(try train(t, steps: 2), expected, "limit for \(n) blocks")
            XCTAssertEqual(params(t), params(free))
            let chosen = t.recomputedFeedForwardBlocksInUse
            XCTAssertLessThanOrEqual(chosen, n)
            XCTAssertEqual(bytes[chosen], bytes[..<(chosen + 1)].min(), "the smallest count that fits")
            XCTAssertLessThanOrEqual(t.byteCount + t.student.parameterCount * 4, t.memoryLimit!)
            XCTAssertEqual(t.byteCount + t.student.parameterCount * 4, t.stateByteCount + bytes[chosen])
        }
        // A floor from recomputedFeedForwardBlocks is kept.
        let floor = try makeTrainer()
        floor.memoryLimit = Int.max
        floor.recomputedFeedForwardBlocks = 2
        XCTAssertEqual(try train(floor, steps: 1), Array(expected.prefix(1)))
        XCTAssertEqual(floor.recomputedFeedForwardBlocksInUse, 2)
        // Too small for anything: a clear error, nothing allocated, and the trainer still works.
        let tight = try makeTrainer()
        let before = tight.byteCount
        tight.memoryLimit = tight.stateByteCount + bytes[depth] - 1
        XCTAssertThrowsError(try train(tight, steps: 1)) { e in
            XCTAssertEqual((e as? NecoError)?.kind, .outOfMemory)
            XCTAssertTrue("\(e)".contains("memory limit"), "\(e)")
        }
        XCTAssertEqual(tight.byteCount, before)
        tight.memoryLimit = nil
        XCTAssertEqual(try train(tight, steps: 2), expected)
    }

    /// Two inputs of the same shape keep separate activations: the step equals one input holding
    /// both batches (same loss and gradients up to summation order).
    func testInputsOfTheSameShape() throws {
        var c = Self.config()
        c.dropPathRate = 0
        c.gradClip = nil
        let split = try makeTrainer(c), joined = try makeTrainer(c)
        let n = 2 * 3 * 12 * 16
        let both = Buf((0..<(2 * n)).map { Float(sin(0.37 * Double($0))) })
        let first = Buf(Array(both.array[0..<n])), second = Buf(Array(both.array[n...]))
        let a = try split.step([TrainingInput(images: first.p, batch: 2, height: 12, width: 16, teacher: true),
                                TrainingInput(images: second.p, batch: 2, height: 12, width: 16, teacher: true)],
                               loss: DenseMSE.studentTeacherObjective)
        let b = try joined.step([TrainingInput(images: both.p, batch: 4, height: 12, width: 16, teacher: true)],
                                loss: DenseMSE.studentTeacherObjective)
        XCTAssertEqual(Double(a.loss), Double(b.loss), accuracy: 1e-6 * Double(b.loss))
        assertClose(Array(split.gradients.buffer), Array(joined.gradients.buffer), rtol: 1e-3,
                    atol: 1e-4 * Double(joined.gradients.buffer.map { abs($0) }.max()!), "gradients")
        XCTAssertNotNil(split.activations(for: TrainingInput(images: first.p, batch: 2, height: 12, width: 16, teacher: true),
                                          occurrence: 1))
    }

    /// A step whose loss throws, is not finite, or gives a non-finite gradient changes nothing:
    /// the next steps equal those of an untouched trainer.
    func testFailedStepChangesNothing() throws {
        struct Boom: Error {}
        let a = try makeTrainer(), b = try makeTrainer()
        let inp = Inputs(step: 0)
        XCTAssertThrowsError(try a.step(inp.list) { _ in throw Boom() })
        XCTAssertThrowsError(try a.step(inp.list) { _ in Float.nan }) { XCTAssertEqual(($0 as? NecoError)?.kind, .diverged) }
        XCTAssertThrowsError(try a.step(inp.list) { ctx in
            ctx.studentGradient[0].base[3] = .infinity
            return 1
        }) { XCTAssert(($0 as? NecoError)?.message.contains("gradient is not finite") ?? false) }
        XCTAssertEqual(a.step, 0)
        XCTAssertEqual(a.rng, b.rng)
        XCTAssertEqual(try train(a, steps: 2), try train(b, steps: 2))
        XCTAssertEqual(params(a), params(b))
    }

    /// Resuming from a checkpoint at step N reproduces steps N … N+k of an uninterrupted run bit
    /// for bit, whether the trainer is rebuilt from the file or restored into a fresh one.
    func testResumeIsBitIdentical() throws {
        let path = tmpPath("resume.safetensors")
        defer { unlink(path) }
        let full = try makeTrainer()
        let first = try train(full, steps: 3)
        try Checkpoint.save(full, to: path)
        let rest = try train(full, steps: 4)

        let loaded = try Checkpoint.load(path: path)
        XCTAssertEqual(loaded.step, 3)
        XCTAssertEqual(try train(loaded, steps: 4), rest)
        XCTAssertEqual(params(loaded), params(full))

        let fresh = try makeTrainer()
        try Checkpoint.restore(fresh, from: path)
        XCTAssertEqual(try train(fresh, steps: 4), rest)
        XCTAssertEqual(params(fresh), params(full))
        XCTAssertEqual(first.count, 3)
    }

    /// The checkpoint's student (and teacher) load as plain models; the export loads with the
    /// unmodified `WeightLoader.load(path:)`.
    func testCheckpointModelsLoad() throws {
        let path = tmpPath("models.safetensors"), export = tmpPath("export.safetensors")
        defer { unlink(path); unlink(export) }
        let t = try makeTrainer()
        _ = try train(t, steps: 2)
        try Checkpoint.save(t, to: path)
        let s = try Checkpoint.loadModel(path: path)
        XCTAssertEqual(Array(s.params.slab.buffer), Array(t.student.params.slab.buffer))
        XCTAssertEqual(s.config.posEmbedRule, t.student.config.posEmbedRule)
        let te = try Checkpoint.loadModel(path: path, teacher: true)
        XCTAssertEqual(Array(te.params.slab.buffer), Array(t.teacher!.params.slab.buffer))
        try Checkpoint.exportModel(t, to: export)
        let e = try WeightLoader.load(path: export, options: LoadOptions(heads: 2, posEmbedRule: .neco))
        XCTAssertEqual(Array(e.params.slab.buffer), Array(t.student.params.slab.buffer))
        let file = try SafetensorsFile(path: path)
        XCTAssert(file.names.contains("projection_head.0.weight"))
        XCTAssert(file.names.contains("teacher.projection_head.4.bias"))
        XCTAssert(file.names.contains("blocks.2.mlp.fc2.weight"))
    }

    /// Corrupt, truncated, foreign and mismatched files fail with clear errors; a failed write
    /// leaves the previous checkpoint in place.
    func testCheckpointErrors() throws {
        let path = tmpPath("errors.safetensors"), bad = tmpPath("bad.safetensors")
        defer { unlink(path); unlink(bad) }
        let t = try makeTrainer()
        _ = try train(t, steps: 1)
        try Checkpoint.save(t, to: path)
        let good = try FileIO.readAll(path)

        func expect(_ kind: NecoError.Kind, _ needle: String, _ body: () throws -> Void, line: UInt = #line) {
            do {
                try body()
                XCTFail("expected an error containing '\(needle)'", line: line)
            } catch let e as NecoError {
                XCTAssertEqual(e.kind, kind, e.message, line: line)
                XCTAssert(e.message.contains(needle), "message: \(e.message)", line: line)
            } catch { XCTFail("unexpected \(error)", line: line) }
        }
        // A flipped byte near the end of the data.
        var flipped = good
        flipped[flipped.count - 100] ^= 0x40
        try FileIO.writeAtomically(bad, bytes: flipped)
        expect(.format, "checksum mismatch") { _ = try Checkpoint.load(path: bad) }
        // Truncated.
        try FileIO.writeAtomically(bad, bytes: Array(good.prefix(good.count / 2)))
        expect(.format, "truncated") { _ = try Checkpoint.load(path: bad) }
        // Not a checkpoint.
        try Checkpoint.exportModel(t, to: bad)
        expect(.format, "not a libneco training checkpoint") { _ = try Checkpoint.load(path: bad) }
        // Another configuration.
        var other = Self.config()
        other.lrHead = 1e-3
        let mismatched = try makeTrainer(other)
        expect(.invalidArgument, "lr_head") { try Checkpoint.restore(mismatched, from: path) }
        let deeper = try Trainer(student: try TinyModels.model(TinyModels.reg(depth: 2), seed: 1), config: Self.config())
        expect(.invalidArgument, "model") { try Checkpoint.restore(deeper, from: path) }
        // A write that cannot complete (no such folder) throws and touches nothing.
        expect(.io, "cannot create") { try Checkpoint.save(t, to: tmpPath("missing-dir") + "/x.safetensors") }
        // A write that fails half-way (the file-size limit stands in for a full disk or a crash)
        // leaves the previous checkpoint byte for byte, and no temporary file.
        _ = try train(t, steps: 1)
        signal(SIGXFSZ, SIG_IGN)
        var old = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &old)
        var limit = rlimit(rlim_cur: rlim_t(good.count / 3), rlim_max: old.rlim_max)
        setrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &limit)
        expect(.io, "write failed") { try Checkpoint.save(t, to: path) }
        setrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &old)
        XCTAssertEqual(try FileIO.readAll(path), good)
        XCTAssertFalse(FileIO.exists(path + ".tmp-\(getpid())"))
        // A stray temporary file of a crashed writer does not matter.
        try FileIO.writeAtomically(path + ".tmp-999999", bytes: [1, 2, 3])
        defer { unlink(path + ".tmp-999999") }
        XCTAssertEqual(try Checkpoint.load(path: path).step, 1)
    }

    // MARK: Frozen blocks

    /// `.last(1)`: only the last block and the head change; AdamW never touches frozen tensors.
    func testFrozenBlocksStayUnchanged() throws {
        let t = try makeTrainer(Self.config(trainable: .last(1)))
        let before = Array(t.student.params.slab.buffer)
        let headBefore = Array(t.studentHead!.slab.buffer)
        _ = try train(t, steps: 3)
        let after = Array(t.student.params.slab.buffer)
        for s in t.student.params.layout.specs {
            let range = s.offset..<(s.offset + s.count)
            let changed = after[range] != before[range]
            XCTAssertEqual(changed, s.name.hasPrefix("blocks.2."), s.name)
            if !s.name.hasPrefix("blocks.2.") {
                XCTAssert(t.optimizer.m.buffer[range].allSatisfy { $0 == 0 }, s.name)
            }
        }
        XCTAssertNotEqual(Array(t.studentHead!.slab.buffer), headBefore)
        XCTAssertEqual(t.trainableCount, t.segments.reduce(0) { $0 + $1.count })
        // Only the last block's activations are kept.
        XCTAssertEqual(t.activations(for: Inputs(step: 0).list[0])?.firstSavedBlock, 2)
    }

    /// Two EMA updates of a weight with itself, in Float: a few ulps (2⁻²³ ≈ 1.2e-7) relative.
    static let emaRounding: Float = 4e-7

    /// `headOnlySteps = 2`: the backbone's rate is 0 for steps 0 and 1 (the student's backbone
    /// stays bit-equal to the initial weights, the teacher's within EMA rounding, while the head
    /// learns), then follows the cosine schedule unchanged; the setting survives the config's
    /// JSON, and files without it read as 0.
    func testHeadOnlyStepsFreezeTheBackboneFirst() throws {
        var c = Self.config()
        c.headOnlySteps = 2
        let s = TrainingSchedules(config: c), plain = TrainingSchedules(config: Self.config())
        XCTAssertEqual(s.values(at: 0).lrBackbone, 0)
        XCTAssertEqual(s.values(at: 1).lrBackbone, 0)
        for step in 2..<10 { XCTAssertEqual(s.values(at: step).lrBackbone, plain.values(at: step).lrBackbone) }
        for step in 0..<10 { XCTAssertEqual(s.values(at: step).lrHead, plain.values(at: step).lrHead) }

        c.warmupSteps = 0  // so step 0's head rate is not 0 either
        let t = try makeTrainer(c)
        let backbone = Array(t.student.params.slab.buffer), teacher = Array(t.teacher!.params.slab.buffer)
        let head = Array(t.studentHead!.slab.buffer)
        _ = try train(t, steps: 2)
        XCTAssert(Array(t.student.params.slab.buffer) == backbone, "student backbone moved during head-only steps")
        // The teacher averages equal weights: m·x + (1 − m)·x, equal to x up to its rounding.
        let drift = zip(t.teacher!.params.slab.buffer, teacher).map { abs($0 - $1) / max(abs($1), 1) }.max() ?? 0
        XCTAssertLessThanOrEqual(drift, Self.emaRounding)
        XCTAssert(Array(t.studentHead!.slab.buffer) != head, "the head did not learn")
        _ = try train(t, steps: 1)
        XCTAssert(Array(t.student.params.slab.buffer) != backbone, "the backbone did not learn after the head-only steps")

        XCTAssertEqual(try TrainerConfig(json: c.json), c)
        XCTAssertEqual(try TrainerConfig(json: Self.config().json).headOnlySteps, 0)
        c.headOnlySteps = 10
        XCTAssertThrowsError(try c.validate())
    }
}
