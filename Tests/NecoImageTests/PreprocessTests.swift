import NecoCore
import NecoImage
import XCTest
import _NecoTestSupport

/// Preprocessing parity with torchvision (Resize + CenterCrop, ToTensor + Normalize on PIL images).
final class PreprocessTests: XCTestCase {
    func testPreprocessMatchesReference() throws {
        let cases = try ImageFixtures.cases("preprocess")
        XCTAssertGreaterThanOrEqual(cases.count, 6)
        for c in cases {
            let src = try ImageFixtures.rgb(c.fields[0], width: Int(c.fields[1])!, height: Int(c.fields[2])!)
            let a = Int(c.fields[4])!, b = Int(c.fields[5])!
            let mode: ResizeMode = c.fields[3] == "shortSideCrop" ? .shortSideCrop(size: a) : .fitMultiple(maxSide: a, multiple: b)
            let w = Int(c.fields[7])!, h = Int(c.fields[8])!
            let expected = try ImageFixtures.rgb(c.fields[6], width: w, height: h)
            let out = try Preprocess.apply(src, mode: mode)
            XCTAssertEqual(out.width, w, "\(mode)")
            XCTAssertEqual(out.height, h, "\(mode)")
            let d = byteDiff(out.pixels, expected.pixels)
            XCTAssertEqual(d.max, 0, "\(mode): max |diff| \(d.max) over \(d.count) values")
        }
    }

    func testNormalizeMatchesTorchvisionBitExactly() throws {
        let c = try XCTUnwrap(ImageFixtures.cases("normalize").first)
        let w = Int(c.fields[1])!, h = Int(c.fields[2])!
        let src = try ImageFixtures.rgb(c.fields[0], width: w, height: h)
        let expected = try ImageFixtures.floats(c.fields[3])
        var out = [Float](repeating: .nan, count: 3 * h * w)
        out.withUnsafeMutableBufferPointer { Preprocess.normalize(src, into: $0.baseAddress!) }
        let c0 = assertClose(out, expected, rtol: 0, atol: 0, "normalize")
        XCTAssertEqual(c0.maxAbs, 0)
    }

    func testNormalizeLayoutAndValues() {
        // 2 x 1 image: pixel 0 = (0, 255, 128), pixel 1 = (255, 0, 64).
        let img = RGBImage(width: 2, height: 1, pixels: [0, 255, 128, 255, 0, 64])
        var out = [Float](repeating: .nan, count: 6)
        out.withUnsafeMutableBufferPointer {
            Preprocess.normalize(img, into: $0.baseAddress!, mean: (0.5, 0.5, 0.5), std: (0.5, 0.5, 0.5))
        }
        // (3, H, W) planar: R plane, G plane, B plane.
        let expected: [Float] = [-1, 1, 1, -1, (Float(128) / 255 - 0.5) / 0.5, (Float(64) / 255 - 0.5) / 0.5]
        XCTAssertEqual(out, expected)
        let (data, th, tw) = try! Preprocess.tensor(img, mode: .stretch(height: 1, width: 2))
        XCTAssertEqual(th, 1)
        XCTAssertEqual(tw, 2)
        XCTAssertEqual(data[0], (0 - 0.485) / 0.229)
        XCTAssertEqual(data[2], (1 - Float(0.456)) / 0.224)
    }

    func testGeometry() throws {
        // torchvision Resize(224) on 640 x 480: short 480 -> 224, long int(224 * 640 / 480) = 298.
        var g = try Preprocess.geometry(width: 640, height: 480, mode: .shortSideCrop(size: 224))
        XCTAssertTrue(g.resize == (298, 224) && g.output == (224, 224), "\(g)")
        g = try Preprocess.geometry(width: 333, height: 500, mode: .shortSideCrop(size: 224))
        XCTAssertTrue(g.resize == (224, 336) && g.output == (224, 224), "\(g)")
        g = try Preprocess.geometry(width: 640, height: 480, mode: .stretch(height: 224, width: 448))
        XCTAssertTrue(g.resize == (448, 224) && g.output == (448, 224), "\(g)")
        // fitMultiple: 640 x 480 -> 518 x 388.5 -> multiples of 14: 518 (37·14), 392 (28·14).
        g = try Preprocess.geometry(width: 640, height: 480, mode: .fitMultiple(maxSide: 518, multiple: 14))
        XCTAssertTrue(g.resize == (518, 392) && g.output == (518, 392), "\(g)")
        // A very thin picture keeps at least one multiple on the short side.
        g = try Preprocess.geometry(width: 1000, height: 3, mode: .fitMultiple(maxSide: 224, multiple: 14))
        XCTAssertTrue(g.resize == (224, 14), "\(g)")
        // Square, exact.
        g = try Preprocess.geometry(width: 50, height: 50, mode: .fitMultiple(maxSide: 224, multiple: 16))
        XCTAssertTrue(g.resize == (224, 224), "\(g)")
    }

    func testTensorShapes() throws {
        let src = try ImageFixtures.rgb("rgb_png.rgb", width: 61, height: 47)
        var t = try Preprocess.tensor(src, mode: .shortSideCrop(size: 28))
        XCTAssertEqual(t.data.count, 3 * 28 * 28)
        XCTAssertEqual(t.height, 28)
        XCTAssertEqual(t.width, 28)
        t = try Preprocess.tensor(src, mode: .fitMultiple(maxSide: 40, multiple: 14))
        XCTAssertEqual(t.height, 28)
        XCTAssertEqual(t.width, 42)
        XCTAssertEqual(t.data.count, 3 * 28 * 42)
        t = try Preprocess.tensor(src, mode: .stretch(height: 14, width: 70))
        XCTAssertEqual(t.data.count, 3 * 14 * 70)
        XCTAssertTrue(t.data.allSatisfy { $0.isFinite })
    }

    func testInvalidSizesThrow() {
        let src = RGBImage(width: 4, height: 4)
        assertThrowsNeco(.invalidArgument, ["stretch"]) { try Preprocess.tensor(src, mode: .stretch(height: 0, width: 4)) }
        assertThrowsNeco(.invalidArgument, ["shortSideCrop"]) { try Preprocess.tensor(src, mode: .shortSideCrop(size: 0)) }
        assertThrowsNeco(.invalidArgument, ["fitMultiple"]) { try Preprocess.tensor(src, mode: .fitMultiple(maxSide: 224, multiple: 0)) }
        assertThrowsNeco(.invalidArgument, ["fitMultiple"]) { try Preprocess.tensor(src, mode: .fitMultiple(maxSide: -1, multiple: 14)) }
        assertThrowsNeco(.invalidArgument, ["std"]) { try Preprocess.tensor(src, mode: .stretch(height: 2, width: 2), std: (1, 0, 1)) }
    }
}
