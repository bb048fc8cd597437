import Foundation
import NecoCore
import NecoImage
import XCTest
import _NecoTestSupport

/// Reads Tests/Fixtures/image (written by scripts/reference/make_image_fixtures.py).
enum ImageFixtures {
    /// One manifest line, split on whitespace.
    struct Case {
        let kind: String
        let fields: [String]
    }

    static func path(_ name: String) -> String { fixturePath("image/" + name) }

    static func bytes(_ name: String) throws -> [UInt8] { try FileIO.readAll(path(name)) }

    /// A raw `(H, W, 3)` uint8 fixture as an image.
    static func rgb(_ name: String, width: Int, height: Int) throws -> RGBImage {
        let data = try bytes(name)
        guard data.count == width * height * 3 else {
            throw NecoError(.format, "\(name): \(data.count) bytes for \(width)x\(height)x3")
        }
        return RGBImage(width: width, height: height, pixels: data)
    }

    /// A raw little-endian float32 fixture.
    static func floats(_ name: String) throws -> [Float] {
        let data = try bytes(name)
        return stride(from: 0, to: data.count, by: 4).map { i in
            Float(bitPattern: UInt32(data[i]) | UInt32(data[i + 1]) << 8 | UInt32(data[i + 2]) << 16 | UInt32(data[i + 3]) << 24)
        }
    }

    static func cases(_ kind: String) throws -> [Case] {
        let text = String(decoding: try bytes("manifest.txt"), as: UTF8.self)
        guard text.hasPrefix("# neco image fixtures v1") else {
            throw NecoError(.format, "manifest.txt: unknown header")
        }
        return text.split(separator: "\n").compactMap { line -> Case? in
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard let k = f.first, !k.hasPrefix("#"), k == kind else { return nil }
            return Case(kind: k, fields: Array(f.dropFirst()))
        }
    }
}

/// Largest |a − b| over two equally long byte arrays (Int.max when the lengths differ), and the
/// number of differing values.
func byteDiff(_ a: [UInt8], _ b: [UInt8]) -> (max: Int, count: Int) {
    guard a.count == b.count else { return (Int.max, Int.max) }
    var m = 0, n = 0
    for i in 0..<a.count where a[i] != b[i] {
        m = max(m, abs(Int(a[i]) - Int(b[i])))
        n += 1
    }
    return (m, n)
}

/// Asserts that `body` throws a NecoError of `kind` whose message contains every fragment.
func assertThrowsNeco<T>(_ kind: NecoError.Kind, _ fragments: [String], _ label: String = "",
                         file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> T) {
    do {
        _ = try body()
        XCTFail("\(label): no error thrown", file: file, line: line)
    } catch let e as NecoError {
        XCTAssertEqual(e.kind, kind, "\(label): \(e.message)", file: file, line: line)
        for f in fragments {
            XCTAssertTrue(e.message.contains(f), "\(label): \(e.message.debugDescription) lacks \(f.debugDescription)",
                          file: file, line: line)
        }
    } catch {
        XCTFail("\(label): not a NecoError: \(error)", file: file, line: line)
    }
}

/// A fresh empty directory under the system temporary directory, removed by the caller.
func makeTemporaryDirectory() throws -> String {
    let dir = FileManager.default.temporaryDirectory
        .appendingPathComponent("neco-image-tests-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

extension TestRNG {
    /// A deterministic byte.
    mutating func byte() -> UInt8 { UInt8(truncatingIfNeeded: next() >> 56) }
    /// A deterministic index in `range` (non-empty).
    mutating func index(_ range: Range<Int>) -> Int { range.lowerBound + Int(next() % UInt64(range.count)) }
}
