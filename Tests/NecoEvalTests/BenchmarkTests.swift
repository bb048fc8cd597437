import NecoCore
import NecoEval
import NecoImage
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The benchmark folder reader and its errors, and the pictures, on tiny folders written here.
final class BenchmarkTests: XCTestCase {
    var root = ""

    override func setUpWithError() throws {
        var template = Array("/tmp/neco-bench-test-XXXXXX".utf8CString)
        let made: String? = template.withUnsafeMutableBufferPointer { buf in
            guard let p = mkdtemp(buf.baseAddress!) else { return nil }
            return String(cString: p)
        }
        root = try XCTUnwrap(made)
    }

    override func tearDown() {
        removeTree(root)  // small, made by this test
    }

    func removeTree(_ path: String) {
        if FileIO.isDirectory(path) {
            if let d = opendir(path) {
                var names: [String] = []
                while let e = readdir(d) {
                    let n = withUnsafePointer(to: e.pointee.d_name) { $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) } }
                    if n != "." && n != ".." { names.append(n) }
                }
                closedir(d)
                for n in names { removeTree(path + "/" + n) }
            }
            rmdir(path)
        } else {
            unlink(path)
        }
    }

    func mkdirs(_ path: String) {
        var cur = ""
        for part in path.split(separator: "/") {
            cur += "/" + part
            mkdir(cur, 0o755)
        }
    }

    /// A gray PNG label map (value v → RGB v, v, v).
    func writeLabels(_ path: String, width: Int, height: Int, values: [UInt8]) throws {
        var img = RGBImage(width: width, height: height)
        for i in 0..<(width * height) { for c in 0..<3 { img.pixels[i * 3 + c] = values[i] } }
        try PNGWriter.write(img, to: path)
    }

    func writeSample(split: String, name: String, width: Int, height: Int, labelWidth: Int? = nil, value: UInt8 = 1) throws {
        mkdirs(root + "/" + split + "/images")
        mkdirs(root + "/" + split + "/labels")
        var img = RGBImage(width: width, height: height)
        for i in 0..<img.pixels.count { img.pixels[i] = UInt8(i % 251) }
        try PNGWriter.write(img, to: root + "/" + split + "/images/" + name + ".png")
        let lw = labelWidth ?? width
        try writeLabels(root + "/" + split + "/labels/" + name + ".png", width: lw, height: height,
                        values: [UInt8](repeating: value, count: lw * height))
    }

    func writeClasses(_ names: [String]) throws {
        try FileIO.writeAtomically(root + "/classes.txt", bytes: Array((names.joined(separator: "\n") + "\n").utf8))
    }

    func testReadsAValidBenchmark() throws {
        try writeClasses(["background", "thing"])
        try writeSample(split: "train", name: "a", width: 8, height: 6)
        try writeSample(split: "train", name: "b", width: 8, height: 6, value: 255)
        try writeSample(split: "val", name: "c", width: 5, height: 7, value: 0)
        let b = try Benchmark(path: root)
        XCTAssertEqual(b.classes, ["background", "thing"])
        XCTAssertEqual(b.train.map(\.name), ["a", "b"])
        XCTAssertEqual(b.val.map(\.name), ["c"])
        let (img, lab) = try b.load(b.val[0])
        XCTAssertEqual(img.width, 5)
        XCTAssertEqual(lab.height, 7)
        XCTAssertEqual(Set(lab.labels), [0])
        XCTAssertEqual(Set(try b.load(b.train[1]).labels.labels), [255])
    }

    func testEmptyBenchmarkDirectory() throws {
        XCTAssertThrowsError(try Benchmark(path: root)) {
            XCTAssertEqual(($0 as? NecoError)?.kind, .format)
            XCTAssertTrue("\($0)".contains("classes.txt"))
        }
        try writeClasses(["background", "thing"])
        XCTAssertThrowsError(try Benchmark(path: root)) {
            XCTAssertEqual(($0 as? NecoError)?.kind, .invalidArgument)
            XCTAssertTrue("\($0)".contains("is empty"), "\($0)")
        }
        mkdirs(root + "/train/images")
        XCTAssertThrowsError(try Benchmark(path: root)) {
            XCTAssertEqual(($0 as? NecoError)?.kind, .data)
            XCTAssertTrue("\($0)".contains("train/images holds no JPEG or PNG"), "\($0)")
        }
        XCTAssertThrowsError(try Benchmark(path: root + "/missing")) { XCTAssertEqual(($0 as? NecoError)?.kind, .io) }
    }

    func testLabelMapSizeMismatch() throws {
        try writeClasses(["background", "thing"])
        try writeSample(split: "train", name: "a", width: 8, height: 6, labelWidth: 7)
        try writeSample(split: "val", name: "b", width: 8, height: 6)
        let b = try Benchmark(path: root)
        XCTAssertThrowsError(try b.load(b.train[0])) {
            XCTAssertEqual(($0 as? NecoError)?.kind, .shape)
            XCTAssertTrue("\($0)".contains("is 7×6 but its image is 8×6"), "\($0)")
        }
    }

    func testBadLabelValuesAndMissingLabel() throws {
        try writeClasses(["background", "thing"])
        try writeSample(split: "train", name: "a", width: 4, height: 4, value: 9)
        try writeSample(split: "val", name: "b", width: 4, height: 4)
        let b = try Benchmark(path: root)
        XCTAssertThrowsError(try b.load(b.train[0])) { XCTAssertEqual(($0 as? NecoError)?.kind, .format) }
        // An RGB (non-gray) label map is refused.
        var rgb = RGBImage(width: 2, height: 2)
        rgb.pixels[0] = 10
        try PNGWriter.write(rgb, to: root + "/bad.png")
        XCTAssertThrowsError(try LabelMap.load(path: root + "/bad.png")) { XCTAssertEqual(($0 as? NecoError)?.kind, .format) }
        // An image without a label map.
        try PNGWriter.write(RGBImage(width: 2, height: 2), to: root + "/val/images/orphan.png")
        XCTAssertThrowsError(try Benchmark(path: root)) {
            XCTAssertEqual(($0 as? NecoError)?.kind, .format)
            XCTAssertTrue("\($0)".contains("has no label map"))
        }
    }

    func testPictures() throws {
        XCTAssertTrue(Pictures.color(0) == (0, 0, 0))
        XCTAssertTrue(Pictures.color(1) == (128, 0, 0))
        XCTAssertTrue(Pictures.color(2) == (0, 128, 0))
        XCTAssertTrue(Pictures.color(15) == (192, 128, 128))  // VOC "person"
        XCTAssertTrue(Pictures.color(255) == (255, 255, 255))
        let img = RGBImage(width: 4, height: 2, pixels: [UInt8](repeating: 100, count: 24))
        let gt = try LabelMap(width: 4, height: 2, labels: [0, 1, 1, 255, 0, 0, 2, 2])
        let pic = try Pictures.segmentation(image: img, prediction: [0, 1, 1, 1, 0, 0, 2, 0], groundTruth: gt, classes: 3)
        XCTAssertEqual(pic.width, max(3 * 4 + 2 * 6, 3 * (14 + 4) - 4))  // the legend is wider here
        // Background pixels are left as they are; class 1 is tinted towards maroon.
        XCTAssertEqual(Array(pic.pixels[0..<3]), [100, 100, 100])
        XCTAssertEqual(pic.pixels[(0 * pic.width + 4 + 6 + 1) * 3], UInt8((0.4 * 100 + 0.6 * 128).rounded()))
        XCTAssertThrowsError(try Pictures.segmentation(image: img, prediction: [0], groundTruth: gt, classes: 3))
        let heat = try Pictures.similarity(img, values: [0, 1], gridHeight: 1, gridWidth: 2, patch: 2, low: 0, high: 1, outlined: [1])
        XCTAssertEqual(heat.width, 4)
        XCTAssertEqual(try PNGWriter.encode(pic).prefix(4), [0x89, 0x50, 0x4E, 0x47])
    }
}
