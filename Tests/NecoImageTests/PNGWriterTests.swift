import Foundation
import NecoCore
import NecoImage
import XCTest

final class PNGWriterTests: XCTestCase {
    func testEncodeDecodeRoundTrip() throws {
        for (w, h) in [(1, 1), (61, 47), (3, 200)] {
            let pixels = (0..<(w * h * 3)).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 7) }
            let img = RGBImage(width: w, height: h, pixels: pixels)
            let png = try PNGWriter.encode(img)
            XCTAssertEqual(ImageDecoder.sniff(png), .png)
            XCTAssertEqual(try ImageDecoder.decode(bytes: png, name: "roundtrip.png"), img, "\(w)x\(h)")
        }
    }

    func testWriteAtomicallyThenLoad() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let img = try ImageFixtures.rgb("rgb_png.rgb", width: 61, height: 47)
        let p = dir + "/out.png"
        try PNGWriter.write(img, to: p)
        XCTAssertEqual(try ImageDecoder.load(path: p), img)
        // Overwrite; no temporary files are left behind.
        try PNGWriter.write(RGBImage(width: 2, height: 2), to: p)
        XCTAssertEqual(try ImageDecoder.load(path: p), RGBImage(width: 2, height: 2))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["out.png"])
    }

    func testWriteToMissingDirectoryIsIOError() {
        let p = "/nonexistent-neco-dir/x.png"
        assertThrowsNeco(.io, [p]) { try PNGWriter.write(RGBImage(width: 1, height: 1), to: p) }
    }
}
