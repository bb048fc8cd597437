import NecoCore
import NecoImage
import XCTest

/// Resize parity with Pillow's `Image.resize((w, h), Image.BILINEAR)` and crop geometry.
final class ResizeTests: XCTestCase {
    func testResizeMatchesPillow() throws {
        let cases = try ImageFixtures.cases("resize")
        XCTAssertGreaterThanOrEqual(cases.count, 11)
        var worst = 0
        for c in cases {
            let src = try ImageFixtures.rgb(c.fields[0], width: Int(c.fields[1])!, height: Int(c.fields[2])!)
            let w = Int(c.fields[4])!, h = Int(c.fields[5])!
            let expected = try ImageFixtures.rgb(c.fields[3], width: w, height: h)
            let out = ImageResize.resizeBilinearAntialias(src, width: w, height: h)
            XCTAssertEqual(out.width, w)
            XCTAssertEqual(out.height, h)
            let d = byteDiff(out.pixels, expected.pixels)
            worst = max(worst, d.max)
            XCTAssertEqual(d.max, 0, "\(src.width)x\(src.height) -> \(w)x\(h): max |diff| \(d.max) over \(d.count) values")
        }
        print("NecoImage resize vs Pillow: \(cases.count) cases, max |diff| \(worst)")
    }

    func testSameSizeIsIdentity() throws {
        let src = try ImageFixtures.rgb("rgb_png.rgb", width: 61, height: 47)
        XCTAssertEqual(ImageResize.resizeBilinearAntialias(src, width: 61, height: 47), src)
    }

    func testConstantImageStaysConstant() {
        let src = RGBImage(width: 33, height: 21, pixels: [UInt8]((0..<(33 * 21)).flatMap { _ in [7, 128, 255] as [UInt8] }))
        for (w, h) in [(1, 1), (5, 40), (100, 3), (224, 224)] {
            let out = ImageResize.resizeBilinearAntialias(src, width: w, height: h)
            for i in stride(from: 0, to: out.pixels.count, by: 3) {
                XCTAssertEqual(Array(out.pixels[i..<(i + 3)]), [7, 128, 255], "\(w)x\(h)")
                if out.pixels[i] != 7 { break }
            }
        }
    }

    func testCenterCropUsesHalfToEvenRounding() {
        // 1 x 8 image whose red channel is the column index.
        let src = RGBImage(width: 8, height: 1, pixels: (0..<8).flatMap { [UInt8($0), 0, 0] })
        // (8 - 3) / 2 = 2.5 -> round half to even -> 2; (8 - 5) / 2 = 1.5 -> 2; (8 - 7) / 2 = 0.5 -> 0.
        XCTAssertEqual(ImageResize.centerCrop(src, width: 3, height: 1).pixels.enumerated().filter { $0.offset % 3 == 0 }.map(\.element), [2, 3, 4])
        XCTAssertEqual(ImageResize.centerCrop(src, width: 5, height: 1).pixels[0], 2)
        XCTAssertEqual(ImageResize.centerCrop(src, width: 7, height: 1).pixels[0], 0)
        XCTAssertEqual(ImageResize.centerCrop(src, width: 8, height: 1), src)
    }

    func testCrop() {
        let src = RGBImage(width: 4, height: 3, pixels: (0..<12).flatMap { [UInt8($0), UInt8($0 + 100), 0] })
        let out = ImageResize.crop(src, x: 1, y: 1, width: 2, height: 2)
        XCTAssertEqual(out.width, 2)
        XCTAssertEqual(out.height, 2)
        XCTAssertEqual(out.pixels.enumerated().filter { $0.offset % 3 == 0 }.map(\.element), [5, 6, 9, 10])
    }
}
