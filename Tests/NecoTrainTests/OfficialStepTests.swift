import NecoCore
import NecoModel
import XCTest
import _NecoTestSupport
import NecoTrain

/// Whole NeCo training steps against the official code (vpariza/NeCo's Lightning module, run by
/// scripts/reference/make_step_fixtures.py on a tiny DINOv2 ViT in float64): the same weights,
/// crops, crop rectangles and random permutations go through `Trainer` + `NeCoObjective`, and the
/// loss, every student gradient, the student and teacher after one AdamW + EMA update, and the
/// losses of three consecutive steps must agree.
final class OfficialStepTests: XCTestCase {
    /// Loss: the reference is float64; ours sums the per-row losses in Double over float32 inputs.
    static let lossRelTol = 1e-5
    /// Gradients, relative to each tensor's largest entry (float32 backward vs a float64 reference).
    static let gradRelTol = 1e-3
    /// Weights after one update, absolute. An AdamW step moves a weight by about lr (1e-5 backbone,
    /// 1e-4 head) whatever its gradient's size, so this checks the update's sign and size, the
    /// groups, the schedules and the EMA order.
    static let weightAbsTol = 1e-5
    /// Updates (after − before), as a fraction of the group's learning rate. The weights are float32
    /// (one ulp of a weight up to 2 is 2.4e-7, 0.024 of the backbone lr), so 0.1 · lr separates a
    /// rounding difference from a wrong update: a missed, doubled or sign-flipped AdamW step, a
    /// folded CLS slot, or a wrong weight-decay group is off by ≥ 0.5 · lr.
    static let updateLRFraction = 0.1
    /// The teacher backbone's update at step 1 is exactly 0 in the official order (the teacher starts
    /// as the student and the EMA reads the pre-update student); EMA after AdamW would move it by
    /// (1 − m) · Δstudent ≈ 0.1 · lr. Its RMS over the whole backbone must stay below 0.02 · lr.
    static let teacherRMSLRFraction = 0.02
    /// Overlap boxes: float32 arithmetic on both sides, values up to 56.
    static let boxAbsTol = 1e-5

    struct Case {
        let fx: Fixture
        let name: String
        var meta: [String: String] { fx.metadata }
        func int(_ k: String) -> Int { Int(meta[k] ?? "") ?? -1 }
    }

    func load(_ name: String) throws -> Case {
        Case(fx: try Fixture("step/\(name).safetensors"), name: name)
    }

    func config(_ c: Case) -> ViTConfig {
        ViTConfig(name: "tiny-step", patchSize: 14, embedDim: 16, depth: 2, heads: 2, mlpHidden: 64, layerScale: true,
                  registers: c.int("registers"), posGrid: 5, posEmbedRule: .neco)
    }

    /// The student backbone from the fixture's `student.*` tensors (Meta names).
    func student(_ c: Case) throws -> ViTModel {
        let params = try ViTParameters(config: config(c))
        for s in params.layout.specs {
            XCTAssertEqual(c.fx.shape("student." + s.name), s.shape, s.name)
            try c.fx.file.readFloat32("student." + s.name, into: UnsafeMutableBufferPointer(start: params[s.offset], count: s.count))
        }
        return ViTModel(params: params, source: c.name, scheme: .meta)
    }

    func trainer(_ c: Case, model: ViTModel) throws -> Trainer {
        var tc = TrainerConfig(totalSteps: c.int("total_steps"))
        tc.lrBackbone = 1e-5
        tc.lrHead = 1e-4
        tc.finalLR = 0
        tc.weightDecayStart = 0.04
        tc.weightDecayEnd = 0.5
        tc.momentumStart = 0.9
        tc.momentumEnd = 1.0
        tc.dropPathRate = 0
        tc.headHiddenDim = 24
        tc.headOutDim = 16
        tc.headLayers = 3
        let t = try Trainer(student: model, config: tc)
        for (head, prefix) in [(t.studentHead!, "student."), (t.teacherHead!, "teacher.")] {
            for s in head.layout.specs {
                try c.fx.file.readFloat32(prefix + s.name, into: UnsafeMutableBufferPointer(start: head.slab[s.offset], count: s.count))
            }
        }
        return t
    }

    func objective(_ c: Case) throws -> NeCoObjective {
        var oc = NeCoObjectiveConfig()
        oc.crops.globalSize = c.int("global_size")
        oc.crops.localSize = c.int("local_size")
        oc.crops.globalCrops = 2
        oc.crops.localCrops = c.int("local_crops")
        oc.patchSize = 14
        oc.network = try XCTUnwrap(SortingNetworkKind(rawValue: c.meta["network"] ?? ""))
        oc.relaxation = try XCTUnwrap(Relaxation(rawValue: c.meta["relaxation"] ?? ""))
        oc.studentSteepness = Double(c.meta["steepness"] ?? "") ?? 0
        oc.teacherSteepness = oc.studentSteepness
        let queue = c.int("queue_length")
        oc.references = c.meta["references"] == "queue" ? .queue(length: queue) : .batch
        let o = try NeCoObjective(config: oc, dim: 16, rng: NecoRNG(seed: 1, stream: 2))
        if queue > 0 {
            try o.references.restoreQueues(try c.fx.floats("queue"), filled: [queue, queue])
        }
        return o
    }

    /// The crops, and the boxes libneco derives from the crop rectangles (checked against the
    /// official `calculate_bboxes`).
    func batch(_ c: Case, objective: NeCoObjective) throws -> NeCoBatch {
        let b = c.int("batch"), nL = c.int("local_crops"), nC = 2 + nL
        let rects = try c.fx.floats("crop_rects")   // (B, nC, 4) x1, y1, x2, y2
        var anchor: [Float] = [], partner: [Float] = []
        var crops: [[CropBox]] = []
        for i in 0..<b {
            var set: [CropBox] = []
            for v in 0..<nC {
                let r = rects[(i * nC + v) * 4..<(i * nC + v + 1) * 4].map { Int($0) }
                set.append(CropBox(left: r[0], top: r[1], width: r[2] - r[0], height: r[3] - r[1]))
            }
            let (a, p) = try MultiCrop.overlapBoxes(set, config: objective.config.crops)
            anchor += a
            partner += p
            crops.append(set)
        }
        _ = assertClose(anchor, try c.fx.floats("gc_boxes"), rtol: 0, atol: Self.boxAbsTol, "\(c.name): anchor boxes")
        _ = assertClose(partner, try c.fx.floats("all_boxes"), rtol: 0, atol: Self.boxAbsTol, "\(c.name): partner boxes")
        var globals: [Float] = [], locals: [Float] = []
        for v in 0..<nC {
            if v < 2 { globals += try c.fx.floats("crop_\(v)") } else { locals += try c.fx.floats("crop_\(v)") }
        }
        return NeCoBatch(batch: b, globals: globals, locals: locals,
                         boxes: NeCoBoxes(batch: b, globalCrops: 2, crops: nC, anchor: anchor, partner: partner),
                         paths: Array(repeating: "", count: b), crops: crops)
    }

    /// Replays the official step's `torch.randperm` draws, step by step.
    final class Replay {
        var draws: [[Int]] = []
        var next = 0
        var mismatch: String? = nil

        func load(_ c: Case, step: Int) throws {
            let n = c.int("draws_\(step)")
            draws = try (0..<n).map { i in try c.fx.floats("draw_\(step)_\(i)").map { Int($0) } }
            next = 0
        }

        func draw(_ n: Int, _ count: Int) -> [Int] {
            guard next < draws.count, draws[next].count == n else {
                if mismatch == nil { mismatch = "draw \(next): libneco asks for a permutation of \(n), the official step drew "
                    + (next < draws.count ? "one of \(draws[next].count)" : "nothing more") }
                return Array(0..<count)
            }
            defer { next += 1 }
            return Array(draws[next].prefix(count))
        }
    }

    func assertAbs(_ a: UnsafePointer<Float>, _ e: [Float], _ tol: Double, _ label: String) -> Double {
        var worst = 0.0, at = 0
        for i in 0..<e.count {
            let d = abs(Double(a[i]) - Double(e[i]))
            if d > worst { worst = d; at = i }
        }
        if worst > tol { XCTFail("\(label): max |Δ| = \(worst) at [\(at)]: \(a[at]) vs \(e[at])") }
        return worst
    }

    func run(_ name: String) throws {
        let c = try load(name)
        let model = try student(c)
        let t = try trainer(c, model: model)
        let o = try objective(c)
        let replay = Replay()
        o.references.draws = { n, count in replay.draw(n, count) }
        let b = try batch(c, objective: o)
        let expected = try c.fx.file.floats("losses_f64").map(Double.init)
        var worstGrad = 0.0, worstW = 0.0, worstUpdate = 0.0, teacherRMS = 0.0
        // Weights before the first step, to measure the update.
        let before = Array(UnsafeBufferPointer(start: model.params.slab.base, count: model.params.count))
        let headBefore = [t.studentHead!, t.teacherHead!].map { Array(UnsafeBufferPointer(start: $0.slab.base, count: $0.count)) }
        for step in 0..<c.int("steps") {
            try replay.load(c, step: step)
            let report = try o.step(trainer: t, batch: b)
            XCTAssertNil(replay.mismatch, "\(name) step \(step): \(replay.mismatch ?? "")")
            XCTAssertEqual(replay.next, replay.draws.count, "\(name) step \(step): draws used")
            let rel = abs(Double(report.loss) - expected[step]) / abs(expected[step])
            XCTAssertLessThanOrEqual(rel, Self.lossRelTol, "\(name) step \(step): loss \(report.loss) vs \(expected[step])")
            let objRel = abs(o.lastReport.loss - expected[step]) / abs(expected[step])
            XCTAssertLessThanOrEqual(objRel, Self.lossRelTol, "\(name) step \(step): objective loss (Double)")
            guard step == 0 else { continue }
            // Every student gradient, backbone then head.
            for s in model.params.layout.specs {
                let g = Array(UnsafeBufferPointer(start: t.gradients.base + s.offset, count: s.count))
                worstGrad = max(worstGrad, assertScaled(g, try c.fx.floats("grad." + s.name), Self.gradRelTol, "\(name) grad \(s.name)"))
            }
            for s in t.studentHead!.layout.specs {
                let g = Array(UnsafeBufferPointer(start: t.gradients.base + t.backboneCount + s.offset, count: s.count))
                worstGrad = max(worstGrad, assertScaled(g, try c.fx.floats("grad." + s.name), Self.gradRelTol, "\(name) grad \(s.name)"))
            }
            // The student and the teacher after EMA (from the pre-update student) and AdamW.
            for s in model.params.layout.specs {
                worstW = max(worstW, assertAbs(model.params[s.offset], try c.fx.floats("student_after." + s.name),
                                               Self.weightAbsTol, "\(name) student \(s.name)"))
                worstW = max(worstW, assertAbs(t.teacher!.params[s.offset], try c.fx.floats("teacher_after." + s.name),
                                               Self.weightAbsTol, "\(name) teacher \(s.name)"))
            }
            for (head, prefix) in [(t.studentHead!, "student_after."), (t.teacherHead!, "teacher_after.")] {
                for s in head.layout.specs {
                    worstW = max(worstW, assertAbs(head.slab[s.offset], try c.fx.floats(prefix + s.name),
                                                   Self.weightAbsTol, "\(name) \(prefix)\(s.name)"))
                }
            }
            // The updates themselves, relative to the learning rate.
            let lrB = t.config.lrBackbone, lrH = t.config.lrHead
            func update(_ now: UnsafePointer<Float>, _ was: ArraySlice<Float>, _ expected: [Float], lr: Double,
                        _ label: String) -> [Double] {
                var diffs: [Double] = []
                for i in 0..<expected.count {
                    diffs.append(Double(now[i]) - Double(was[was.startIndex + i]) - Double(expected[i]))
                }
                let worst = diffs.map(abs).max() ?? 0
                if worst > Self.updateLRFraction * lr { XCTFail("\(label): update off by \(worst / lr) · lr") }
                worstUpdate = max(worstUpdate, worst / lr)
                return diffs
            }
            var teacherSq = 0.0, teacherN = 0
            for s in model.params.layout.specs {
                let was = before[s.offset..<s.offset + s.count]
                _ = update(model.params[s.offset], was, try c.fx.floats("student_update." + s.name), lr: lrB,
                           "\(name) student update \(s.name)")
                let d = update(t.teacher!.params[s.offset], was, try c.fx.floats("teacher_update." + s.name), lr: lrB,
                               "\(name) teacher update \(s.name)")
                for x in d { teacherSq += x * x }
                teacherN += d.count
            }
            teacherRMS = (teacherSq / Double(max(teacherN, 1))).squareRoot() / lrB
            XCTAssertLessThanOrEqual(teacherRMS, Self.teacherRMSLRFraction, "\(name): teacher backbone update RMS (of lr)")
            for (k, (head, prefix)) in [(t.studentHead!, "student_update."), (t.teacherHead!, "teacher_update.")].enumerated() {
                for s in head.layout.specs {
                    _ = update(head.slab[s.offset], headBefore[k][s.offset..<s.offset + s.count],
                               try c.fx.floats(prefix + s.name), lr: lrH, "\(name) \(prefix)\(s.name)")
                }
            }
        }
        print("official step \(name): worst gradient \(worstGrad) (relative), worst weight \(worstW) (absolute), "
              + "worst update \(worstUpdate) (of lr), teacher backbone update RMS \(teacherRMS) (of lr)")
    }

    func testQueueBitonicCauchyLocalCropsFourRegisters() throws { try run("queue_bitonic_cauchy_local_reg4") }
    func testBatchOddEvenCauchyGlobalOnlyNoRegisters() throws { try run("batch_oddeven_cauchy_global_reg0") }
    func testBatchBitonicReciprocalLocalCropsNoRegisters() throws { try run("batch_bitonic_reciprocal_local_reg0") }
    func testQueueOddEvenReciprocalGlobalOnlyFourRegisters() throws { try run("queue_oddeven_reciprocal_global_reg4") }
}
