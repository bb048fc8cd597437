import NecoCore
import NecoImage
import NecoTrain
import XCTest
import _NecoTestSupport

/// Multi-crop geometry, overlap boxes, photometric augmentation (against PIL / torchvision) and
/// the reference samplers.
final class NeCoDataTests: XCTestCase {
    // MARK: Boxes

    /// `calculate_bboxes` of NeCo on stored crop sets: bit-identical float32.
    func testOverlapBoxesMatchNeCo() throws {
        let fx = try Fixture("neco/boxes.safetensors")
        let crops = try fx.floats("crops"), gc = try fx.floats("gc"), all = try fx.floats("all")
        let dims = try fx.file.ints("dims")
        let sets = dims.count / 4
        XCTAssertEqual(sets, 10)
        for s in 0..<sets {
            var config = MultiCropConfig()
            config.globalSize = dims[s * 4 + 2]
            config.localSize = dims[s * 4 + 3]
            let boxes = (0..<6).map { c -> CropBox in
                let o = (s * 6 + c) * 4
                return CropBox(left: Int(crops[o]), top: Int(crops[o + 1]), width: Int(crops[o + 2] - crops[o]),
                               height: Int(crops[o + 3] - crops[o + 1]))
            }
            // The fixture's crops obey the overlap rule.
            let (W, H) = (dims[s * 4], dims[s * 4 + 1])
            let m = Int(Double(W * H) * 0.01)
            XCTAssertGreaterThan(boxes[1].intersectionArea(boxes[0]), 2 * m)
            for c in 2..<6 {
                XCTAssertGreaterThan(boxes[c].intersectionArea(boxes[0]), m)
                XCTAssertGreaterThan(boxes[c].intersectionArea(boxes[1]), m)
            }
            let (anchor, partner) = try MultiCrop.overlapBoxes(boxes, config: config)
            XCTAssertEqual(anchor, Array(gc[(s * 48)..<(s * 48 + 48)]), "set \(s) gc")
            XCTAssertEqual(partner, Array(all[(s * 48)..<(s * 48 + 48)]), "set \(s) all")
        }
    }

    /// The sampler's crops obey the scale, ratio and overlap rules on many images, and the boxes
    /// map the same physical region into every frame.
    func testSamplerProperties() throws {
        var rng = NecoRNG(seed: 7, stream: 3)
        let config = MultiCropConfig()
        try config.validate(patchSize: 14)
        for (W, H) in [(640, 480), (333, 500), (120, 90), (50, 50), (1000, 200), (31, 17)] {
            for _ in 0..<50 {
                let boxes = try MultiCrop.sample(width: W, height: H, config: config, rng: &rng)
                XCTAssertEqual(boxes.count, 6)
                let m = Int(Double(W * H) * 0.01)
                for (c, b) in boxes.enumerated() {
                    XCTAssert(b.left >= 0 && b.top >= 0 && b.right <= W && b.bottom <= H && b.width > 0 && b.height > 0)
                    if c == 1 { XCTAssertGreaterThan(b.intersectionArea(boxes[0]), 2 * m) }
                    if c >= 2 {
                        XCTAssertGreaterThan(b.intersectionArea(boxes[0]), m)
                        XCTAssertGreaterThan(b.intersectionArea(boxes[1]), m)
                    }
                }
                let (anchor, partner) = try MultiCrop.overlapBoxes(boxes, config: config)
                for g in 0..<2 {
                    for c in 0..<6 {
                        let a = Array(anchor[((g * 6 + c) * 4)..<((g * 6 + c) * 4 + 4)])
                        let p = Array(partner[((c * 2 + g) * 4)..<((c * 2 + g) * 4 + 4)])
                        XCTAssert(a[2] > a[0] && a[3] > a[1] && p[2] > p[0] && p[3] > p[1])
                        // Back to original pixels from both frames: the same rectangle.
                        let sg = Float(config.size(ofCrop: g)), sc = Float(config.size(ofCrop: c))
                        let bg = boxes[g], bc = boxes[c]
                        let fromG = Float(bg.left) + a[0] / sg * Float(bg.width)
                        let fromC = Float(bc.left) + p[0] / sc * Float(bc.width)
                        XCTAssertEqual(fromG, fromC, accuracy: 1e-3)
                        if g == c { XCTAssertEqual(a, [0, 0, sg, sg]) }
                    }
                }
            }
        }
        // Reproducible from the seed.
        var r1 = NecoRNG(seed: 99), r2 = NecoRNG(seed: 99)
        XCTAssertEqual(try MultiCrop.sample(width: 300, height: 200, config: config, rng: &r1),
                       try MultiCrop.sample(width: 300, height: 200, config: config, rng: &r2))
    }

    func testConfigValidation() {
        var c = MultiCropConfig()
        c.globalSize = 100
        XCTAssertThrowsError(try c.validate(patchSize: 14))
        c = MultiCropConfig()
        c.localSize = 90
        XCTAssertThrowsError(try c.validate(patchSize: 14))
        XCTAssertNoThrow(try MultiCropConfig().validate(patchSize: 14))
        var p = PhotometricConfig()
        p.hue = 0.7
        XCTAssertThrowsError(try p.validate())
    }

    // MARK: Photometric ops vs PIL / torchvision

    func image(_ fx: Fixture, _ name: String) throws -> RGBImage {
        let shape = fx.shape(name)
        return RGBImage(width: shape[1], height: shape[0], pixels: try fx.floats(name).map { UInt8($0) })
    }

    func testPhotometricOpsMatchPIL() throws {
        let fx = try Fixture("neco/augment.safetensors")
        let img = try image(fx, "input")
        func check(_ out: RGBImage, _ name: String) throws {
            let ref = try image(fx, name)
            let diffs = zip(out.pixels, ref.pixels).filter { $0 != $1 }.count
            XCTAssertEqual(diffs, 0, "\(name): \(diffs) of \(ref.pixels.count) values differ")
        }
        for f in [0.35, 1.0, 1.62] { try check(PillowColor.adjustBrightness(img, factor: f), "brightness_\(f)") }
        for f in [0.4, 1.7] { try check(PillowColor.adjustContrast(img, factor: f), "contrast_\(f)") }
        for f in [0.3, 1.8] { try check(PillowColor.adjustSaturation(img, factor: f), "saturation_\(f)") }
        for f in [-0.17, 0.05, 0.2] { try check(PillowColor.adjustHue(img, factor: f), "hue_\(f)") }
        try check(PillowColor.grayscale(img), "grayscale")
        for r in [0.1, 0.77, 1.3, 2.0] { try check(PillowColor.gaussianBlur(img, radius: r), "blur_\(r)") }
        var j = PillowColor.adjustHue(img, factor: 0.11)
        j = PillowColor.adjustContrast(j, factor: 1.3)
        j = PillowColor.adjustBrightness(j, factor: 0.7)
        j = PillowColor.adjustSaturation(j, factor: 1.45)
        try check(j, "jitter_3102")
        try check(PillowColor.gaussianBlur(try image(fx, "tiny_input"), radius: 2.0), "tiny_blur_2.0")
        // RandomResizedCrop's crop + PIL bilinear resize (NecoImage).
        let big = try image(fx, "big_input")
        try check(ImageResize.resizeBilinearAntialias(ImageResize.crop(big, x: 17, y: 11, width: 73, height: 61),
                                                      width: 98, height: 98), "crop_98")
        try check(ImageResize.resizeBilinearAntialias(ImageResize.crop(big, x: 5, y: 3, width: 95, height: 80),
                                                      width: 42, height: 42), "crop_42")
    }

    func testAugmentDrawsAndDeterminism() {
        let img = RGBImage(width: 16, height: 12, pixels: (0..<(16 * 12 * 3)).map { UInt8(($0 * 37) % 256) })
        var rng = NecoRNG(seed: 5)
        var jitter = 0, gray = 0, blur = 0
        let trials = 400
        for _ in 0..<trials {
            let (_, d) = Photometric.augment(img, config: PhotometricConfig(), rng: &rng)
            if let j = d.jitter {
                jitter += 1
                XCTAssertEqual(j.order.sorted(), [0, 1, 2, 3])
                XCTAssert(j.brightness >= 0.2 && j.brightness <= 1.8 && abs(j.hue) <= 0.2)
            }
            if d.grayscale { gray += 1 }
            if let r = d.blurRadius {
                blur += 1
                XCTAssert(r >= 0.1 && r <= 2.0)
            }
        }
        // Binomial(400, p): 4.5 standard deviations.
        XCTAssertEqual(Double(jitter) / Double(trials), 0.8, accuracy: 0.09)
        XCTAssertEqual(Double(gray) / Double(trials), 0.2, accuracy: 0.09)
        XCTAssertEqual(Double(blur) / Double(trials), 0.5, accuracy: 0.112)
        var a = NecoRNG(seed: 8), b = NecoRNG(seed: 8)
        XCTAssertEqual(Photometric.augment(img, config: PhotometricConfig(), rng: &a).0,
                       Photometric.augment(img, config: PhotometricConfig(), rng: &b).0)
        XCTAssertEqual(Photometric.augment(img, config: .none, rng: &a).0, img)
    }

    // MARK: References

    func testBatchReferencesArePermutations() throws {
        let (b, q, e) = (3, 49, 4)
        let sampler = try NeCoReferenceSampler(mode: .batch, dim: e, rng: NecoRNG(seed: 1))
        XCTAssertThrowsError(try sampler.validate(batch: 1, references: 49))
        XCTAssertNoThrow(try sampler.validate(batch: 2, references: 49))
        let tq = (0..<(b * q * e)).map { Float($0 / e) }  // row r holds r
        var out = [Float](repeating: -1, count: b * q * e)
        try sampler.sample(anchor: 0, teacherQueries: tq, queries: q, out: &out, batch: b, references: 49)
        let rows = (0..<(b * 49)).map { Int(out[$0 * e]) }
        XCTAssertEqual(rows.sorted(), Array(0..<(b * q)))
        XCTAssertNotEqual(rows, Array(0..<(b * q)))
    }

    /// Queue mode: FIFO order, the shared counter quirk (P11) and modulo sampling (P12).
    func testQueueReferences() throws {
        let (b, g, e, length) = (2, 4, 3, 64)
        let sampler = try NeCoReferenceSampler(mode: .queue(length: length), dim: e, rng: NecoRNG(seed: 2))
        XCTAssertThrowsError(try sampler.validate(batch: 2, references: 49))  // 98 > 64
        XCTAssertNoThrow(try sampler.validate(batch: 1, references: 49))
        // Teacher rows: crop c, row r holds value 1000·(c + 1) + step·100 + r.
        func teacher(step: Int) -> [Float] {
            (0..<(2 * b * g * g * e)).map { i in
                let row = i / e, c = row / (b * g * g), r = row % (b * g * g)
                return Float(1000 * (c + 1) + step * 100 + r)
            }
        }
        try sampler.push(teacherGlobal: teacher(step: 0), batch: b, grid: g)
        // n = min(10·B, L, B·G²) = 20 per queue; the shared counter counts both queues.
        XCTAssertEqual(sampler.filled, [40, 40])
        var q0 = Array(sampler.queue[0..<(length * e)])
        XCTAssertTrue((0..<20).allSatisfy { q0[$0 * e] >= 1000 && q0[$0 * e] < 1100 })
        XCTAssertTrue((20..<length).allSatisfy { q0[$0 * e] == 0 })
        XCTAssertEqual(Set((0..<20).map { q0[$0 * e] }).count, 20, "distinct rows")
        let q1 = Array(sampler.queue[(length * e)..<(2 * length * e)])
        XCTAssertTrue((0..<20).allSatisfy { q1[$0 * e] >= 2000 && q1[$0 * e] < 2100 })
        let firstRows = Array((0..<20).map { q0[$0 * e] })
        try sampler.push(teacherGlobal: teacher(step: 1), batch: b, grid: g)
        XCTAssertEqual(sampler.filled, [64, 64])
        q0 = Array(sampler.queue[0..<(length * e)])
        XCTAssertEqual(Array((20..<40).map { q0[$0 * e] }), firstRows, "older rows shifted back by n")
        // Sampling reduces indices modulo `filled`: with 40 filled rows (after one push), rows
        // 20..<40 of queue 0 are still zero, and some references are zero vectors (P11).
        let fresh = try NeCoReferenceSampler(mode: .queue(length: length), dim: e, rng: NecoRNG(seed: 3))
        try fresh.push(teacherGlobal: teacher(step: 0), batch: b, grid: g)
        var out = [Float](repeating: -1, count: 1 * 49 * e)
        try fresh.sample(anchor: 0, teacherQueries: [Float](repeating: 0, count: 49 * e), queries: 49, out: &out, batch: 1,
                     references: 49)
        let values = (0..<49).map { out[$0 * e] }
        XCTAssertTrue(values.contains(0), "shared counter: still-zero rows are sampled")
        XCTAssertTrue(values.allSatisfy { $0 == 0 || ($0 >= 1000 && $0 < 1100) })
        // Per-queue counters never reach the empty rows.
        let own = try NeCoReferenceSampler(mode: .queue(length: length), dim: e, rng: NecoRNG(seed: 3), sharedCounter: false)
        try own.push(teacherGlobal: teacher(step: 0), batch: b, grid: g)
        XCTAssertEqual(own.filled, [20, 20])
        try own.sample(anchor: 0, teacherQueries: [Float](repeating: 0, count: 49 * e), queries: 49, out: &out, batch: 1,
                   references: 49)
        XCTAssertTrue((0..<49).allSatisfy { out[$0 * e] >= 1000 && out[$0 * e] < 1100 })
    }
}
