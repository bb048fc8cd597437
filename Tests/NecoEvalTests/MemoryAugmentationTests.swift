import NecoCore
import NecoEval
import NecoImage
import XCTest

/// Hummingbird's memory augmentation: torchvision's crop rule, image and labels cropped alike,
/// the colour jitter's order and probabilities, determinism per (epoch, image).
final class MemoryAugmentationTests: XCTestCase {
    /// An image whose pixel (x, y) encodes its position, and labels equal to (x + y) mod 5.
    func sample(_ w: Int, _ h: Int) throws -> (RGBImage, LabelMap) {
        var px: [UInt8] = [], lab: [UInt8] = []
        for y in 0..<h {
            for x in 0..<w {
                px += [UInt8(x % 256), UInt8(y % 256), 128]
                lab.append(UInt8((x + y) % 5))
            }
        }
        return (RGBImage(width: w, height: h, pixels: px), try LabelMap(width: w, height: h, labels: lab))
    }

    func testCropRectanglesFollowTorchvisionRules() {
        let aug = MemoryAugmentation(epochs: 1)
        var rng = NecoRNG(seed: 3)
        var areas: [Double] = []
        for _ in 0..<2000 {
            let r = aug.cropRectangle(width: 120, height: 90, rng: &rng)
            XCTAssertGreaterThan(r.w, 0)
            XCTAssertGreaterThan(r.h, 0)
            XCTAssertLessThanOrEqual(r.x + r.w, 120)
            XCTAssertLessThanOrEqual(r.y + r.h, 90)
            areas.append(Double(r.w * r.h) / Double(120 * 90))
        }
        // Scale (0.5, 2.0): accepted draws are at least half the area (rounding aside), at most all
        // of it; the fallback is the whole image (its ratio 4/3 is inside the range).
        XCTAssertGreaterThanOrEqual(areas.min() ?? 0, 0.48)
        XCTAssertLessThanOrEqual(areas.max() ?? 2, 1.0)
        XCTAssertTrue(areas.contains(1.0), "draws larger than the image fall back to the central (whole) crop")
        // A very wide image falls back to a centred crop with the largest allowed ratio.
        var wide = MemoryAugmentation(epochs: 1)
        wide.scale = (10, 20)   // never fits: always the fallback
        var r2 = NecoRNG(seed: 1)
        let f = wide.cropRectangle(width: 400, height: 100, rng: &r2)
        XCTAssertEqual(f.h, 100)
        XCTAssertEqual(f.w, 133)
        XCTAssertEqual(f.x, (400 - 133) / 2)
    }

    func testImageAndLabelsAreCroppedAlike() throws {
        let (img, lab) = try sample(64, 48)
        var aug = MemoryAugmentation(epochs: 2)
        aug.probability = 0   // no colour change: pixels still encode their position
        for i in 0..<20 {
            var rng = MemoryAugmentation.rng(seed: 0, epoch: i % 2, index: i)
            let (ci, cl) = try aug.apply(image: img, labels: lab, rng: &rng)
            XCTAssertEqual(ci.width, cl.width)
            XCTAssertEqual(ci.height, cl.height)
            let x0 = Int(ci.pixels[0]), y0 = Int(ci.pixels[1])
            for y in stride(from: 0, to: ci.height, by: 5) {
                for x in stride(from: 0, to: ci.width, by: 7) {
                    let o = (y * ci.width + x) * 3
                    XCTAssertEqual(Int(ci.pixels[o]), x0 + x)
                    XCTAssertEqual(Int(ci.pixels[o + 1]), y0 + y)
                    XCTAssertEqual(Int(cl.labels[y * cl.width + x]), (x0 + x + y0 + y) % 5)
                }
            }
        }
    }

    func testColourJitterAndDeterminism() throws {
        let (img, lab) = try sample(40, 30)
        var aug = MemoryAugmentation(epochs: 1)
        aug.probability = 1
        aug.scale = (10, 20)   // the whole image: only the colours change
        var a = MemoryAugmentation.rng(seed: 0, epoch: 0, index: 7)
        var b = MemoryAugmentation.rng(seed: 0, epoch: 0, index: 7)
        var c = MemoryAugmentation.rng(seed: 0, epoch: 1, index: 7)
        let x = try aug.apply(image: img, labels: lab, rng: &a)
        let y = try aug.apply(image: img, labels: lab, rng: &b)
        let z = try aug.apply(image: img, labels: lab, rng: &c)
        XCTAssertEqual(x.image, y.image, "same (epoch, image) stream, same view")
        XCTAssertNotEqual(x.image, z.image, "another epoch, another view")
        XCTAssertNotEqual(x.image, img, "jitter applied")
        XCTAssertEqual(x.labels.labels, lab.labels, "labels are not jittered")
        // Brightness, contrast, saturation and hue in that order with the drawn factors.
        var r = MemoryAugmentation.rng(seed: 0, epoch: 0, index: 7)
        var expected = img
        func factor() -> Double { 1 - aug.jitter + 2 * aug.jitter * r.uniformDouble() }
        if r.uniformDouble() < 1 { expected = PillowColor.adjustBrightness(expected, factor: factor()) }
        if r.uniformDouble() < 1 { expected = PillowColor.adjustContrast(expected, factor: factor()) }
        if r.uniformDouble() < 1 { expected = PillowColor.adjustSaturation(expected, factor: factor()) }
        if r.uniformDouble() < 1 { expected = PillowColor.adjustHue(expected, factor: -aug.hue + 2 * aug.hue * r.uniformDouble()) }
        XCTAssertEqual(x.image, expected)
        XCTAssertThrowsError(try MemoryAugmentation(epochs: -1).validate())
        var bad = MemoryAugmentation(epochs: 1)
        bad.hue = 0.7
        XCTAssertThrowsError(try bad.validate())
    }
}
