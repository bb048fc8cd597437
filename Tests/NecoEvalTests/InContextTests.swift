import NecoCore
import NecoEval
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// In-context segmentation on synthetic features, label-map helpers, bilinear resampling and
/// the linear probe.
final class InContextTests: XCTestCase {
    /// A 2-class label map of `cells` (h, w) cells of `patch` pixels each.
    func map(_ cells: [UInt8], gh: Int, gw: Int, patch: Int) throws -> LabelMap {
        var px = [UInt8](repeating: 0, count: gh * gw * patch * patch)
        for y in 0..<(gh * patch) { for x in 0..<(gw * patch) { px[y * gw * patch + x] = cells[(y / patch) * gw + x / patch] } }
        return try LabelMap(width: gw * patch, height: gh * patch, labels: px)
    }

    /// Feature of a patch of class c: a class direction plus noise.
    func feature(_ c: Int, dim: Int, rng: inout NecoRNG) -> [Float] {
        (0..<dim).map { j in (j == c ? 1 : 0) + rng.uniform(-0.1, 0.1) }
    }

    func testPatchFractions() throws {
        // 4×4 pixels, 2×2 patches: top-left patch has 1 pixel of class 1, one ignore pixel (→ 0).
        let m = try LabelMap(width: 4, height: 4, labels: [1, 0, 2, 2,
                                                          255, 0, 2, 2,
                                                          0, 0, 1, 1,
                                                          0, 0, 1, 0])
        let f = try m.patchFractions(patch: 2, classes: 3)
        XCTAssertEqual(f, [0.75, 0.25, 0, 0, 0, 1, 1, 0, 0, 0.25, 0.75, 0])
        XCTAssertEqual(try m.patchMajority(patch: 2, classes: 3), [0, 2, 0, 1])
        XCTAssertThrowsError(try m.patchFractions(patch: 3, classes: 3)) { XCTAssertEqual(($0 as? NecoError)?.kind, .shape) }
        XCTAssertThrowsError(try m.patchFractions(patch: 2, classes: 2)) { XCTAssertEqual(($0 as? NecoError)?.kind, .format) }
        XCTAssertThrowsError(try LabelMap(width: 3, height: 3, labels: [0])) { XCTAssertEqual(($0 as? NecoError)?.kind, .shape) }
    }

    func testNearestResizeRules() throws {
        let m = try LabelMap(width: 4, height: 1, labels: [0, 1, 2, 3])
        // PIL: src = floor((o + 0.5)·4/3) = 0, 2, 3; torch: floor(o·4/3) = 0, 1, 2.
        XCTAssertEqual(m.resizedNearest(width: 3, height: 1, rule: .pil).labels, [0, 2, 3])
        XCTAssertEqual(m.resizedNearest(width: 3, height: 1, rule: .torch).labels, [0, 1, 2])
        XCTAssertEqual(m.resizedNearest(width: 8, height: 1).labels, [0, 0, 1, 1, 2, 2, 3, 3])
    }

    /// Upsampling 2 → 4 with half-pixel centres: weights (1, 0), (0.75, 0.25), (0.25, 0.75), (0, 1)
    /// as torch.nn.functional.interpolate(mode="bilinear", align_corners=False).
    func testBilinearForwardAndTranspose() {
        let plan = BilinearPlan(inHeight: 1, inWidth: 2, outHeight: 1, outWidth: 4)
        var out = [Float](repeating: 0, count: 4)
        let src: [Float] = [0, 4]
        out.withUnsafeMutableBufferPointer { o in src.withUnsafeBufferPointer { plan.forward(out: o.baseAddress!, src: $0.baseAddress!, channels: 1) } }
        XCTAssertEqual(out, [0, 1, 3, 4])
        // ⟨up(x), y⟩ = ⟨x, upᵀ(y)⟩ for random x (3×5×2) and y (7×4×2).
        var rng = NecoRNG(seed: 1)
        let p = BilinearPlan(inHeight: 3, inWidth: 5, outHeight: 7, outWidth: 4)
        let x = (0..<30).map { _ in rng.uniform(-1, 1) }, y = (0..<56).map { _ in rng.uniform(-1, 1) }
        var ux = [Float](repeating: 0, count: 56), ty = [Float](repeating: 0, count: 30)
        ux.withUnsafeMutableBufferPointer { o in x.withUnsafeBufferPointer { p.forward(out: o.baseAddress!, src: $0.baseAddress!, channels: 2) } }
        ty.withUnsafeMutableBufferPointer { g in y.withUnsafeBufferPointer { p.backward(grad: g.baseAddress!, gradOut: $0.baseAddress!, channels: 2) } }
        let lhs = zip(ux, y).map { Double($0) * Double($1) }.reduce(0, +)
        let rhs = zip(x, ty).map { Double($0) * Double($1) }.reduce(0, +)
        XCTAssertEqual(lhs, rhs, accuracy: 1e-5)
        // argmax over upsampled 2-channel scores: channel 1 wins where the mix passes 0.5.
        let scores: [Float] = [1, 0, 0, 1]  // (1, 2, 2): left patch class 0, right patch class 1
        XCTAssertEqual(plan.argmax(scores, channels: 2), [0, 0, 1, 1])
    }

    /// The Hummingbird vote for k = 2 by hand: similarities 1 and 0.98 at τ = 0.02 give weights
    /// 1/(1 + e⁻¹) and e⁻¹/(1 + e⁻¹).
    func testVoteWeightsByHand() throws {
        let mem = try SegmentationMemory(dim: 2, classes: 2)
        // Two memory rows at angles whose cosines with the query (1, 0) are 1 and 0.98.
        let c = Float(0.98), s = (1 - c * c).squareRoot()
        try mem.add(features: [1, 0, c, s], softLabels: [1, 0, 0, 1])
        let p = try mem.predict([1, 0], k: 2, temperature: 0.02)
        let w0 = 1 / (1 + expf(-1))
        XCTAssertEqual(p[0], w0, accuracy: 1e-4)
        XCTAssertEqual(p[1], 1 - w0, accuracy: 1e-4)
        // Hard-label vote through PatchIndex labels gives the same.
        var out = [Float](repeating: 0, count: 2)
        let labels: [Int32] = [0, 1], sims: [Float] = [1, c]
        out.withUnsafeMutableBufferPointer { o in
            LabelVote.voteHard(out: o.baseAddress!, labels: labels, similarities: sims, rows: 1, k: 2, temperature: 0.02, classes: 2)
        }
        XCTAssertEqual(out[0], w0, accuracy: 1e-4)
    }

    /// Synthetic images whose patch features carry their class: in-context prediction on new
    /// images is exact, so the protocol's mIoU is 1.
    func testInContextOnSyntheticFeatures() throws {
        let gh = 4, gw = 4, patch = 4, dim = 6, classes = 3
        var rng = NecoRNG(seed: 2)
        func image(_ shift: Int) throws -> ([Float], LabelMap) {
            var cells = [UInt8](), feats = [Float]()
            for p in 0..<(gh * gw) {
                let c = ((p % gw) / 2 + (p / gw) / 2 + shift) % classes
                cells.append(UInt8(c))
                feats += feature(c, dim: dim, rng: &rng)
            }
            return (feats, try map(cells, gh: gh, gw: gw, patch: patch))
        }
        let mem = try SegmentationMemory(dim: dim, classes: classes)
        for i in 0..<4 {
            let (f, m) = try image(i)
            try mem.add(features: f[...], gridHeight: gh, gridWidth: gw, labels: m, patch: patch)
        }
        XCTAssertEqual(mem.count, 64)
        var cm = try ConfusionMatrix(gtClasses: classes, predClasses: classes)
        let plan = BilinearPlan(inHeight: gh, inWidth: gw, outHeight: gh * patch, outWidth: gw * patch)
        for i in 10..<13 {
            let (f, m) = try image(i)
            let scores = try mem.predict(f, k: 5, temperature: 0.02)
            try cm.add(gt: m.labels, pred: plan.argmax(scores, channels: classes))
        }
        // Bilinear upsampling blurs only across class borders, which lie on patch borders here.
        XCTAssertGreaterThan(Matching.hungarian.score(cm).mIoU, 0.8)
        let patchLevel = try mem.predict(image(0).0, k: 5, temperature: 0.02)
        let (_, truth) = try image(0)
        let maj = try truth.patchMajority(patch: patch, classes: classes)
        for p in 0..<(gh * gw) {
            let row = Array(patchLevel[(p * classes)..<((p + 1) * classes)])
            XCTAssertEqual(row.firstIndex(of: row.max()!), Int(maj[p]))
        }
    }

    /// Bad input: k larger than the bank, an empty bank, a label map of the wrong size, bad
    /// soft labels, bad temperature.
    func testInContextErrors() throws {
        let mem = try SegmentationMemory(dim: 2, classes: 2)
        XCTAssertThrowsError(try mem.predict([1, 0], k: 1)) { XCTAssertEqual(($0 as? NecoError)?.kind, .invalidArgument) }
        try mem.add(features: [1, 0, 0, 1], softLabels: [1, 0, 0, 1])
        XCTAssertThrowsError(try mem.predict([1, 0], k: 3)) {
            XCTAssertEqual(($0 as? NecoError)?.kind, .shape)
            XCTAssertTrue("\($0)".contains("larger than the memory bank"))
        }
        XCTAssertThrowsError(try mem.predict([1, 0], k: 1, temperature: 0)) { XCTAssertEqual(($0 as? NecoError)?.kind, .invalidArgument) }
        XCTAssertThrowsError(try mem.add(features: [1, 0], softLabels: [-1, 2])) { XCTAssertEqual(($0 as? NecoError)?.kind, .invalidArgument) }
        XCTAssertThrowsError(try mem.add(features: [1, 0], softLabels: [1])) { XCTAssertEqual(($0 as? NecoError)?.kind, .shape) }
        let wrong = try LabelMap(width: 6, height: 8, labels: [UInt8](repeating: 0, count: 48))
        XCTAssertThrowsError(try mem.add(features: [Float](repeating: 1, count: 8)[...], gridHeight: 2, gridWidth: 2, labels: wrong, patch: 4)) {
            XCTAssertEqual(($0 as? NecoError)?.kind, .shape)
            XCTAssertTrue("\($0)".contains("label map is 6×8"))
        }
        XCTAssertThrowsError(try SegmentationMemory(dim: 2, classes: 0))
    }

    /// Bounded memory (hbird `sample_features`): score = Σ over the classes in a patch of the
    /// number of the image's patches holding that class, times U(0, 1); lowest scores kept; a
    /// patch without any labelled pixel scores 1e6 and comes last.
    func testRareClassFirst() {
        // 7 patches: 4 pure background (n_bg = 4), 2 pure object (n_obj = 2), 1 with no label.
        var soft = [Float](repeating: 0, count: 14)
        for p in 0..<4 { soft[p * 2] = 1 }
        for p in 4..<6 { soft[p * 2 + 1] = 1 }
        var rng = NecoRNG(seed: 0)
        var keptCount = [Int](repeating: 0, count: 7)
        for _ in 0..<400 {
            let kept = SegmentationMemory.rareClassFirst(softLabels: soft, rows: 7, classes: 2, keep: 2, rng: &rng)
            XCTAssertEqual(kept.count, 2)
            XCTAssertEqual(kept, kept.sorted())
            for p in kept { keptCount[p] += 1 }
        }
        XCTAssertEqual(keptCount[6], 0, "a patch without labels is kept last")
        // P(object kept) > P(background kept): scores 2·U against 4·U.
        XCTAssertGreaterThan(Double(min(keptCount[4], keptCount[5])), 1.4 * Double(max(keptCount[0], keptCount[1], keptCount[2], keptCount[3])))
        XCTAssertEqual(SegmentationMemory.rareClassFirst(softLabels: soft, rows: 7, classes: 2, keep: 6, rng: &rng), Array(0..<6))
        XCTAssertEqual(SegmentationMemory.rareClassFirst(softLabels: soft, rows: 7, classes: 2, keep: 9, rng: &rng), Array(0..<7))
    }

    /// A linear probe learns a linearly separable patch problem to mIoU 1 and its loss falls.
    func testLinearProbeLearnsSeparableProblem() throws {
        let gh = 4, gw = 4, patch = 4, dim = 5, classes = 3, images = 8
        var rng = NecoRNG(seed: 4)
        var feats = [Float](), maps = [LabelMap]()
        for i in 0..<images {
            var cells = [UInt8]()
            for p in 0..<(gh * gw) {
                let c = ((p % gw) / 2 + i) % classes
                cells.append(UInt8(c))
                feats += feature(c, dim: dim, rng: &rng)
            }
            maps.append(try map(cells, gh: gh, gw: gw, patch: patch))
        }
        let probe = try LinearProbe(dim: dim, classes: classes, seed: 1)
        var o = LinearProbe.Options()
        o.epochs = 60
        o.learningRate = 0.5
        o.stepEpoch = 50
        o.batchSize = 4
        o.maskSize = 16
        let losses = try probe.train(features: feats, images: images, gridHeight: gh, gridWidth: gw, labels: maps, options: o)
        XCTAssertLessThan(losses.last!, losses.first! * 0.5)
        var cm = try ConfusionMatrix(gtClasses: classes, predClasses: classes)
        for i in 0..<images {
            let n = gh * gw * dim
            let pred = try probe.predict(feats[(i * n)..<((i + 1) * n)], gridHeight: gh, gridWidth: gw, outHeight: gh, outWidth: gw)
            try cm.add(gt: maps[i].resizedNearest(width: gw, height: gh).labels, pred: pred)
        }
        XCTAssertEqual(Matching.identity.score(cm).mIoU, 1, accuracy: 1e-12)
        XCTAssertThrowsError(try probe.train(features: feats, images: images + 1, gridHeight: gh, gridWidth: gw, labels: maps)) {
            XCTAssertEqual(($0 as? NecoError)?.kind, .shape)
        }
    }

    /// The probe's analytic gradient (one SGD step with lr → tiny, no momentum/decay) matches a
    /// finite difference of the loss: checked through the loss decrease along −grad.
    func testLinearProbeStepDecreasesLoss() throws {
        var rng = NecoRNG(seed: 6)
        let gh = 2, gw = 2, dim = 3, classes = 2
        let feats = (0..<(gh * gw * dim)).map { _ in rng.uniform(-1, 1) }
        let m = try LabelMap(width: 4, height: 4, labels: [0, 0, 1, 1, 0, 0, 1, 1, 0, 1, 1, 1, 255, 0, 1, 1])
        var o = LinearProbe.Options()
        o.epochs = 1
        o.batchSize = 1
        o.maskSize = 4
        o.momentum = 0
        o.weightDecay = 0
        o.learningRate = 1e-2
        let probe = try LinearProbe(dim: dim, classes: classes, seed: 2)
        let l0 = try probe.train(features: feats, images: 1, gridHeight: gh, gridWidth: gw, labels: [m], options: o)[0]
        let l1 = try probe.train(features: feats, images: 1, gridHeight: gh, gridWidth: gw, labels: [m], options: o)[0]
        XCTAssertLessThan(l1, l0)
    }
}
