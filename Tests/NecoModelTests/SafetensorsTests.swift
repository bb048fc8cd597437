import Foundation
import NecoCore
import NecoModel
import XCTest

final class SafetensorsTests: XCTestCase {
    private var dir: String = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "neco-safetensors-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: dir)
    }

    // MARK: helpers

    private func path(_ name: String) -> String { dir + "/" + name }

    /// Writes a file by hand: the 8-byte little-endian header length (`headerLength`, default the
    /// real one), the header text, then `data`.
    @discardableResult
    private func handMade(_ header: String, data: [UInt8] = [], headerLength: UInt64? = nil,
                          name: String = "hand.safetensors") throws -> String {
        let h = Array(header.utf8)
        var bytes: [UInt8] = []
        withUnsafeBytes(of: (headerLength ?? UInt64(h.count)).littleEndian) { bytes.append(contentsOf: $0) }
        bytes += h + data
        let p = path(name)
        try writeBytes(bytes, to: p)
        return p
    }

    /// Writes `bytes` to `path` with plain POSIX calls; unlike `Data.write` there is no fsync,
    /// which keeps the fuzz test fast.
    private func writeBytes(_ bytes: [UInt8], to path: String) throws {
        unlink(path)
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw NecoError.io("\(path): cannot create") }
        defer { close(fd) }
        try bytes.withUnsafeBytes { try FileIO.writeAll(fd, $0, path: path) }
    }

    private func le16(_ values: [UInt16]) -> [UInt8] {
        values.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }
    }

    private func le<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
        values.flatMap { v in withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    }

    /// Runs `body`, expecting a NecoError of `kind` whose message contains every fragment.
    private func assertThrows(_ kind: NecoError.Kind, _ fragments: [String], file: StaticString = #filePath,
                              line: UInt = #line, _ body: () throws -> Void) {
        do {
            try body()
            XCTFail("no error; expected \(kind) with \(fragments)", file: file, line: line)
        } catch let e as NecoError {
            XCTAssertEqual(e.kind, kind, e.message, file: file, line: line)
            for f in fragments {
                XCTAssertTrue(e.message.contains(f), "\(e.message.debugDescription) lacks \(f.debugDescription)", file: file, line: line)
            }
        } catch {
            XCTFail("not a NecoError: \(error)", file: file, line: line)
        }
    }

    /// Expects `SafetensorsFile(path:)` on a hand-made file to fail with `.format` and fragments;
    /// the message must also name the file.
    private func assertCorrupt(_ header: String, data: [UInt8] = [], headerLength: UInt64? = nil,
                               _ fragments: String..., file: StaticString = #filePath, line: UInt = #line) throws {
        let p = try handMade(header, data: data, headerLength: headerLength)
        assertThrows(.format, [p + ": "] + fragments, file: file, line: line) { _ = try SafetensorsFile(path: p) }
    }

    private func assertBitwiseEqual(_ a: [Float], _ b: [Float], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern), "\(a) vs \(b)", file: file, line: line)
    }

    // MARK: round trip

    func testRoundTripF32AndI64WithMetadata() throws {
        let w0: [Float] = (0..<6).map { Float($0) * 0.5 - 1 }
        let odd: [Float] = [.pi, -0.0, .greatestFiniteMagnitude]  // 12 bytes: breaks 8-alignment if first
        let labels: [Int64] = [0, -1, 7, Int64.max, Int64.min]
        var w = SafetensorsWriter()
        try w.add("blocks.0.w", shape: [2, 3], floats: w0)
        try w.add("odd", shape: [3], floats: odd)
        try w.addInt64("labels", shape: [5], ints: labels)
        try w.add("scalar", shape: [], floats: [42])
        try w.add("empty", shape: [0, 4], floats: [])
        try odd.withUnsafeBufferPointer { try w.add("from-pointer", shape: [1, 3], data: $0) }
        try labels.withUnsafeBufferPointer { try w.addInt64("labels2", shape: [5, 1], data: $0) }
        try w.addInt64("labels3", shape: [2], ints: [3, -4] as [Int])
        w.metadata = ["format": "pt", "note": "quote \" and ünïcödé"]
        XCTAssertEqual(w.names, ["blocks.0.w", "odd", "labels", "scalar", "empty", "from-pointer", "labels2", "labels3"])
        let p = path("rt.safetensors")
        try w.write(to: p)

        let f = try SafetensorsFile(path: p)
        XCTAssertEqual(f.path, p)
        XCTAssertEqual(f.names, w.names)
        XCTAssertEqual(f.metadata, w.metadata)
        assertBitwiseEqual(try f.floats("blocks.0.w"), w0)
        assertBitwiseEqual(try f.floats("odd"), odd)
        assertBitwiseEqual(try f.floats("from-pointer"), odd)
        assertBitwiseEqual(try f.floats("scalar"), [42])
        XCTAssertEqual(try f.floats("empty"), [])
        XCTAssertEqual(try f.ints("labels"), labels.map { Int($0) })
        XCTAssertEqual(try f.ints("labels2"), labels.map { Int($0) })
        XCTAssertEqual(try f.ints("labels3"), [3, -4])

        let info = try XCTUnwrap(f.info("blocks.0.w"))
        XCTAssertEqual(info.name, "blocks.0.w")
        XCTAssertEqual(info.dtype, .f32)
        XCTAssertEqual(info.shape, [2, 3])
        XCTAssertEqual(info.count, 6)
        XCTAssertEqual(info.dataOffsets.count, 24)
        XCTAssertEqual(f.info("scalar")?.shape, [])
        XCTAssertEqual(f.info("scalar")?.count, 1)
        XCTAssertEqual(f.info("empty")?.count, 0)
        XCTAssertEqual(f.info("labels")?.dtype, .i64)
        XCTAssertNil(f.info("nope"))

        // Layout: header length a multiple of 8, every tensor aligned to its element size,
        // tensors packed without gaps (Python's reader requires it).
        let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: p)))
        let n = bytes[0..<8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        XCTAssertEqual(n % 8, 0)
        XCTAssertEqual(bytes[8], UInt8(ascii: "{"))
        var ranges: [Range<Int>] = []
        for name in f.names {
            let i = try XCTUnwrap(f.info(name))
            XCTAssertEqual(i.dataOffsets.lowerBound % i.dtype.elementSize, 0, name)
            ranges.append(i.dataOffsets)
        }
        ranges.sort { ($0.lowerBound, $0.upperBound) < ($1.lowerBound, $1.upperBound) }
        var end = 0
        for r in ranges {
            XCTAssertEqual(r.lowerBound, end)
            end = r.upperBound
        }
        XCTAssertEqual(8 + n + end, bytes.count)

        // Zero-copy access.
        try f.withRawBytes("scalar") { raw in
            XCTAssertEqual(raw.count, 4)
            XCTAssertEqual(raw.loadUnaligned(as: Float.self), 42)
        }
    }

    func testWriterWithoutMetadataAndOverwrite() throws {
        let p = path("x.safetensors")
        var a = SafetensorsWriter()
        try a.add("t", shape: [2], floats: [1, 2])
        try a.write(to: p)
        var b = SafetensorsWriter()
        try b.add("u", shape: [1], floats: [3])
        try b.write(to: p)  // atomically replaces
        let f = try SafetensorsFile(path: p)
        XCTAssertEqual(f.names, ["u"])
        XCTAssertEqual(f.metadata, [:])
        XCTAssertEqual(try f.floats("u"), [3])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["x.safetensors"])
        // No tensors at all is a valid file too.
        try SafetensorsWriter().write(to: path("none.safetensors"))
        XCTAssertEqual(try SafetensorsFile(path: path("none.safetensors")).names, [])
    }

    // MARK: conversions

    func testFloat16Conversion() throws {
        let bits: [UInt16] = [0x3C00, 0xC000, 0x7BFF, 0x0001, 0x7C00, 0xFC00, 0x7E00, 0x8000, 0x0000,
                              0x0400, 0x03FF, 0x3555, 0x8001, 0xFBFF, 0x7C01]
        let expected: [Float] = [1, -2, 65504, 5.960464477539063e-08, .infinity, -.infinity, .nan, -0.0, 0,
                                 6.103515625e-05, 6.097555160522461e-05, 0.333251953125, -5.960464477539063e-08,
                                 -65504, .nan]
        let p = try handMade(#"{"h":{"dtype":"F16","shape":[3,5],"data_offsets":[0,30]}}"#, data: le16(bits))
        let f = try SafetensorsFile(path: p)
        XCTAssertEqual(f.info("h")?.dtype, .f16)
        let got = try f.floats("h")
        XCTAssertEqual(got.count, expected.count)
        for (i, (g, e)) in zip(got, expected).enumerated() {
            if e.isNaN {
                XCTAssertTrue(g.isNaN, "element \(i)")
            } else {
                XCTAssertEqual(g.bitPattern, e.bitPattern, "element \(i): \(g) vs \(e)")
            }
        }
        // Quiet NaN stays quiet with the same payload bits on top.
        XCTAssertEqual(got[6].bitPattern, 0x7FC0_0000)
    }

    func testFloat16ConversionExhaustive() {
        #if arch(x86_64) || arch(arm64)
        #if !(os(macOS) && arch(x86_64))
        for h in 0...UInt16.max {
            let g = SafetensorsFile.float32(fromFloat16Bits: h)
            let e = Float(Float16(bitPattern: h))
            if e.isNaN {
                XCTAssertTrue(g.isNaN, "0x\(String(h, radix: 16))")
            } else if g.bitPattern != e.bitPattern {
                XCTFail("0x\(String(h, radix: 16)): \(g) vs \(e)")
                return
            }
        }
        #endif
        #endif
    }

    func testBFloat16Conversion() throws {
        let bits: [UInt16] = [0x3F80, 0xC000, 0x4049, 0x7F80, 0xFF80, 0x7FC0, 0x0001, 0x8000, 0x7F7F]
        let expected: [Float] = [1, -2, 3.140625, .infinity, -.infinity, .nan, Float(bitPattern: 0x0001_0000), -0.0,
                                 Float(bitPattern: 0x7F7F_0000)]
        let p = try handMade(#"{"b":{"dtype":"BF16","shape":[9],"data_offsets":[0,18]}}"#, data: le16(bits))
        let got = try SafetensorsFile(path: p).floats("b")
        for (i, (g, e)) in zip(got, expected).enumerated() {
            if e.isNaN { XCTAssertTrue(g.isNaN, "element \(i)") } else { XCTAssertEqual(g.bitPattern, e.bitPattern, "element \(i)") }
        }
        XCTAssertEqual(got.count, expected.count)
        XCTAssertEqual(SafetensorsFile.float32(fromBFloat16Bits: 0x3F80), 1)
    }

    func testFloat64AndUnalignedData() throws {
        // Header of 61 bytes: the data section starts at file byte 69, so nothing is aligned.
        let header = #"{"d":{"dtype":"F64","shape":[3],"data_offsets":[1,25]}}      "#
        XCTAssertEqual(header.utf8.count % 8, 5)
        let doubles: [Double] = [0.1, -1e300, 2.5]
        let data = [0xAB] + le(doubles.map(\.bitPattern))
        let f = try SafetensorsFile(path: try handMade(header, data: data))
        let got = try f.floats("d")
        XCTAssertEqual(got, [Float(0.1), -.infinity, 2.5])
    }

    func testIntegerTypes() throws {
        let header = """
            {"a":{"dtype":"I32","shape":[3],"data_offsets":[0,12]},\
            "b":{"dtype":"U8","shape":[3],"data_offsets":[12,15]},\
            "c":{"dtype":"BOOL","shape":[2],"data_offsets":[15,17]},\
            "d":{"dtype":"I16","shape":[1],"data_offsets":[17,19]},\
            "e":{"dtype":"U64","shape":[2],"data_offsets":[19,35]},\
            "f":{"dtype":"I8","shape":[1],"data_offsets":[35,36]},\
            "g":{"dtype":"U16","shape":[1],"data_offsets":[36,38]},\
            "h":{"dtype":"U32","shape":[1],"data_offsets":[38,42]},\
            "i":{"dtype":"I64","shape":[1],"data_offsets":[42,50]}}
            """
        var data = le([Int32(-5), 0, Int32.max]) + [0, 255, 9] + [1, 0] + le([Int16(-300)])
        data += le([UInt64(12), UInt64.max]) + [0xFF] + le([UInt16(65535)]) + le([UInt32.max]) + le([Int64(-2)])
        let f = try SafetensorsFile(path: try handMade(header, data: data))
        XCTAssertEqual(try f.ints("a"), [-5, 0, Int(Int32.max)])
        XCTAssertEqual(try f.ints("b"), [0, 255, 9])
        XCTAssertEqual(try f.ints("c"), [1, 0])
        XCTAssertEqual(try f.ints("d"), [-300])
        XCTAssertEqual(try f.ints("f"), [-1])
        XCTAssertEqual(try f.ints("g"), [65535])
        XCTAssertEqual(try f.ints("h"), [Int(UInt32.max)])
        XCTAssertEqual(try f.ints("i"), [-2])
        assertThrows(.format, ["tensor 'e'", "does not fit in Int64"]) { _ = try f.ints("e") }
        assertThrows(.format, ["tensor 'a' has dtype I32; expected a float type"]) { _ = try f.floats("a") }
    }

    func testReadErrors() throws {
        var w = SafetensorsWriter()
        try w.add("x", shape: [3, 4], floats: Array(repeating: 1, count: 12))
        try w.addInt64("y", shape: [2], ints: [1, 2] as [Int64])
        let p = path("r.safetensors")
        try w.write(to: p)
        let f = try SafetensorsFile(path: p)
        assertThrows(.format, [p, "tensor 'y' has dtype I64; expected a float type"]) { _ = try f.floats("y") }
        assertThrows(.format, [p, "tensor 'x' has dtype F32; expected an integer type"]) { _ = try f.ints("x") }
        assertThrows(.format, [p, "no tensor named 'z'"]) { _ = try f.floats("z") }
        assertThrows(.format, ["no tensor named 'z'"]) { _ = try f.ints("z") }
        assertThrows(.format, ["no tensor named 'z'"]) { try f.withRawBytes("z") { _ in } }
        var small = [Float](repeating: 0, count: 11)
        assertThrows(.shape, [p, "tensor 'x' has 12 elements but the buffer holds 11"]) {
            try small.withUnsafeMutableBufferPointer { try f.readFloat32("x", into: $0) }
        }
        var big = [Int64](repeating: 0, count: 3)
        assertThrows(.shape, ["tensor 'y' has 2 elements"]) {
            try big.withUnsafeMutableBufferPointer { try f.readInt64("y", into: $0) }
        }
        var exact = [Float](repeating: 0, count: 12)
        try exact.withUnsafeMutableBufferPointer { try f.readFloat32("x", into: $0) }
        XCTAssertEqual(exact, Array(repeating: 1, count: 12))
    }

    // MARK: corrupt files: a clear .format error naming the file, never a crash

    func testMissingFileAndDirectory() {
        assertThrows(.io, [path("missing.safetensors"), "No such file"]) {
            _ = try SafetensorsFile(path: self.path("missing.safetensors"))
        }
        assertThrows(.io, [dir, "not a regular file"]) { _ = try SafetensorsFile(path: self.dir) }
    }

    func testTooShortFiles() throws {
        for size in [0, 4, 7] {
            let p = path("short\(size).safetensors")
            try Data(repeating: 0, count: size).write(to: URL(fileURLWithPath: p))
            assertThrows(.format, [p, "file is \(size) bytes", "truncated"]) { _ = try SafetensorsFile(path: p) }
        }
    }

    func testHeaderLengthChecks() throws {
        try assertCorrupt("{}", headerLength: 123_456_789, "header length 123456789 exceeds file size 10 (truncated file?)")
        try assertCorrupt("{}", headerLength: UInt64.max, "header length 18446744073709551615 exceeds file size")
        try assertCorrupt("{}", headerLength: 3, "header length 3 exceeds file size 10")
        // Over the 100 MB limit but inside the file: a sparse 150 MB file costs no disk space.
        let p = try handMade("{}", headerLength: 120_000_000, name: "huge.safetensors")
        XCTAssertEqual(truncate(p, 150_000_000), 0)
        assertThrows(.format, [p, "header length 120000000 exceeds the limit of 100000000 bytes"]) {
            _ = try SafetensorsFile(path: p)
        }
    }

    func testHeaderNotJSONOrNotObject() throws {
        try assertCorrupt("{abc", "header is not valid JSON", "at byte 1")
        try assertCorrupt("", "header is not valid JSON", "end of input")
        try assertCorrupt("\u{0}\u{0}\u{0}\u{0}", "header is not valid JSON")
        try assertCorrupt("[1, 2]", "header is not a JSON object")
        try assertCorrupt("\"x\"", "header is not a JSON object")
        try assertCorrupt(#"{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"a":{}}"#, data: [0, 0, 0, 0], "duplicate key \"a\"")
        let p = path("badutf8.safetensors")
        let bytes = le([UInt64(4)]) + [0x7B, 0x22, 0xFF, 0x22]
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        assertThrows(.format, ["UTF-8"]) { _ = try SafetensorsFile(path: p) }
    }

    func testBadEntries() throws {
        let four: [UInt8] = [0, 0, 0, 0]
        try assertCorrupt(#"{"x":3}"#, "tensor 'x': entry is not a JSON object")
        try assertCorrupt(#"{"x":{"shape":[1],"data_offsets":[0,4]}}"#, data: four, "tensor 'x': missing \"dtype\"")
        try assertCorrupt(#"{"x":{"dtype":"F32","data_offsets":[0,4]}}"#, data: four, "tensor 'x': missing \"shape\"")
        try assertCorrupt(#"{"x":{"dtype":"F32","shape":[1]}}"#, data: four, "tensor 'x': missing \"data_offsets\"")
        try assertCorrupt(#"{"x":{"dtype":32,"shape":[1],"data_offsets":[0,4]}}"#, data: four, "\"dtype\" is not a string")
        try assertCorrupt(#"{"x":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}}"#, data: four, "tensor 'x': unknown dtype 'Q4'")
        try assertCorrupt(#"{"x":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}}"#, data: four, "unknown dtype 'f32'")
        try assertCorrupt(#"{"x":{"dtype":"F32","shape":3,"data_offsets":[0,4]}}"#, data: four, "\"shape\" is not an array")
        try assertCorrupt(#"{"x":{"dtype":"F32","shape":[-1,3],"data_offsets":[0,4]}}"#, data: four,
                          "tensor 'x': shape [-1,3] has an entry that is not a non-negative integer")
        try assertCorrupt(#"{"x":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#, data: four, "not a non-negative integer")
        try assertCorrupt(#"{"x":{"dtype":"F32","shape":["1"],"data_offsets":[0,4]}}"#, data: four, "not a non-negative integer")
        try assertCorrupt(#"{"x":{"dtype":"F32","shape":[1e300],"data_offsets":[0,4]}}"#, data: four, "not a non-negative integer")
        try assertCorrupt(#"{"x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#, data: four,
                          "tensor 'x': shape [4294967296,4294967296] is too large")
        try assertCorrupt(#"{"x":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,4]}}"#, data: four,
                          "not a non-negative integer")  // > 2^53: not an exact JSON integer
        try assertCorrupt(#"{"x":{"dtype":"F64","shape":[2147483648,2147483648],"data_offsets":[0,4]}}"#, data: four,
                          "is too large")  // 2^62 elements × 8 bytes overflows
        try assertCorrupt(#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0]}}"#, data: four, "\"data_offsets\" [0] is not [begin, end]")
        try assertCorrupt(#"{"x":{"dtype":"F32","shape":[1],"data_offsets":"0,4"}}"#, data: four, "is not [begin, end]")
        try assertCorrupt(#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}"#, data: four, "is not [begin, end]")
        try assertCorrupt(#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}"#, data: four, "is not [begin, end]")
        try assertCorrupt(#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}"#, data: four, "data_offsets [8, 4] has begin > end")
        try assertCorrupt(#"{"x":{"dtype":"F32","shape":[3,4],"data_offsets":[0,40]}}"#, data: Array(repeating: 0, count: 48),
                          "tensor 'x': data_offsets [0, 40] span 40 bytes but F32 [3, 4] needs 48")
        try assertCorrupt(#"{"x":{"dtype":"F32","shape":[3],"data_offsets":[4,16]}}"#, data: Array(repeating: 0, count: 12),
                          "tensor 'x' ends at byte 16 but the data section has 12 bytes (truncated file?)")
        try assertCorrupt(#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[9007199254740000,9007199254740004]}}"#, data: four,
                          "ends at byte 9007199254740004")
        try assertCorrupt(#"{"__metadata__":[1],"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: four,
                          "__metadata__ is not an object")
        try assertCorrupt(#"{"__metadata__":{"k":1}}"#, "__metadata__ value for 'k' is not a string")
    }

    func testAcceptsLenientButValidHeaders() throws {
        // Extra keys in an entry are ignored, whitespace padding is fine, overlapping and
        // out-of-order tensors are allowed as long as each lies inside the data buffer.
        let header = #"{ "b" : {"dtype":"U8","shape":[2],"data_offsets":[1,3],"extra":true}, "a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]} }   "#
        let f = try SafetensorsFile(path: try handMade(header, data: [5, 6, 7, 8]))
        XCTAssertEqual(f.names, ["b", "a"])
        XCTAssertEqual(try f.ints("b"), [6, 7])
        XCTAssertEqual(try f.ints("a"), [5, 6, 7])
    }

    func testTruncatedDataSection() throws {
        var w = SafetensorsWriter()
        try w.add("a", shape: [10], floats: Array(repeating: 1, count: 10))
        try w.add("b", shape: [25, 4], floats: Array(repeating: 2, count: 100))
        let p = path("t.safetensors")
        try w.write(to: p)
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: p)[.size] as? Int)
        XCTAssertEqual(truncate(p, off_t(size - 100)), 0)
        assertThrows(.format, [p, "tensor 'b' ends at byte 440 but the data section has 340 bytes (truncated file?)"]) {
            _ = try SafetensorsFile(path: p)
        }
    }

    /// Every truncation and many random byte flips of a valid file: init and reads either work or
    /// throw a NecoError; nothing traps.
    func testFuzzCorruptFilesNeverTrap() throws {
        var w = SafetensorsWriter()
        try w.add("w", shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])
        try w.addInt64("l", shape: [3], ints: [1, 2, 3] as [Int64])
        w.metadata = ["k": "v"]
        let good = path("good.safetensors")
        try w.write(to: good)
        let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: good)))
        let p = path("fuzz.safetensors")
        func attempt(_ b: [UInt8]) {
            do {
                try writeBytes(b, to: p)
                let f = try SafetensorsFile(path: p)
                for name in f.names {
                    let info = try XCTUnwrap(f.info(name))
                    switch info.dtype {
                    case .f32, .f16, .bf16, .f64: XCTAssertEqual(try f.floats(name).count, info.count)
                    case .f8e4m3, .f8e5m2: XCTAssertThrowsError(try f.floats(name))
                    default: _ = try? f.ints(name)
                    }
                }
            } catch is NecoError {
            } catch {
                XCTFail("unexpected \(error)")
            }
        }
        for cut in 0..<bytes.count { attempt(Array(bytes[..<cut])) }
        var rng = SafetensorsTestRNG(seed: 3)
        let headerEnd = 8 + Int(bytes[0]) + Int(bytes[1]) << 8
        let alphabet = Array(#"0123456789-[]{},:" eE.FIU"#.utf8)
        for _ in 0..<1500 {
            var m = bytes
            for _ in 0..<(1 + Int(rng.next() % 3)) {
                let i = Int(rng.next() % UInt64(headerEnd))
                m[i] = rng.next() % 2 == 0 ? UInt8(truncatingIfNeeded: rng.next()) : alphabet[Int(rng.next() % UInt64(alphabet.count))]
            }
            attempt(m)
        }
    }

    // MARK: writer errors

    func testWriterRejectsBadInput() throws {
        var w = SafetensorsWriter()
        try w.add("x", shape: [1], floats: [1])
        assertThrows(.invalidArgument, ["duplicate tensor name 'x'"]) { try w.add("x", shape: [1], floats: [2]) }
        assertThrows(.invalidArgument, ["duplicate tensor name 'x'"]) { try w.addInt64("x", shape: [1], ints: [2] as [Int64]) }
        assertThrows(.invalidArgument, ["'__metadata__' is reserved"]) { try w.add("__metadata__", shape: [1], floats: [2]) }
        assertThrows(.invalidArgument, ["negative dimension"]) { try w.add("n", shape: [-1, -2], floats: [1, 2]) }
        assertThrows(.invalidArgument, ["too large"]) { try w.add("o", shape: [Int.max, 2], floats: []) }
        assertThrows(.shape, ["tensor 'y'", "shape [2, 3] has 6 elements but 5 values were given"]) {
            try w.add("y", shape: [2, 3], floats: [1, 2, 3, 4, 5])
        }
        XCTAssertEqual(w.names, ["x"])  // failed adds leave the writer unchanged
    }

    func testUnwritableDestinationLeavesNoFile() throws {
        var w = SafetensorsWriter()
        try w.add("x", shape: [2], floats: [1, 2])
        let bad = "/nonexistent/dir/x.safetensors"
        assertThrows(.io, [bad]) { try w.write(to: bad) }
        XCTAssertFalse(FileManager.default.fileExists(atPath: bad))
        // The rename fails when the destination is a directory: no temporary file may remain.
        let target = path("is-a-dir")
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: false)
        assertThrows(.io, [target, "rename failed"]) { try w.write(to: target) }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["is-a-dir"])
    }

    // MARK: interoperability

    /// Tests/Fixtures/safetensors/reference.safetensors was written by Python's safetensors
    /// (scripts/reference/make_safetensors_fixture.py); the values here mirror that script.
    func testReadsPythonWrittenFixture() throws {
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/safetensors/reference.safetensors").path
        let f = try SafetensorsFile(path: fixture)
        XCTAssertEqual(Set(f.names), ["f32", "f16", "bf16", "f64", "i64", "i32", "u8", "scalar", "empty"])
        XCTAssertEqual(f.metadata, ["format": "pt", "generator": "scripts/reference/make_safetensors_fixture.py"])

        XCTAssertEqual(f.info("f32")?.shape, [2, 3])
        assertBitwiseEqual(try f.floats("f32"), [0, 1, -1.5, 3.25, 1e-7, -65536.5])

        let h = try f.floats("f16")
        XCTAssertEqual(h.count, 11)
        assertBitwiseEqual(Array(h[0..<6]), [1, -2, 65504, 0x1p-24, .infinity, -.infinity])
        XCTAssertTrue(h[6].isNaN)
        assertBitwiseEqual(Array(h[7...]), [0.333251953125, -0.0, 0x1p-14, 0x1p-14 - 0x1p-24])

        let b = try f.floats("bf16")
        XCTAssertEqual(f.info("bf16")?.dtype, .bf16)
        assertBitwiseEqual(Array(b[0..<4]), [1, -2, 3.140625, .infinity])
        XCTAssertTrue(b[4].isNaN)
        assertBitwiseEqual(Array(b[5...]), [0x1p-133, -0.0])

        XCTAssertEqual(try f.floats("f64"), [Float(0.1), -.infinity, 2.5])
        XCTAssertEqual(try f.ints("i64"), [0, -1, 42, 1 << 40])
        XCTAssertEqual(f.info("i32")?.shape, [2, 2])
        XCTAssertEqual(try f.ints("i32"), [1, -2, 3, Int(Int32.max)])
        XCTAssertEqual(try f.ints("u8"), [0, 255, 7])
        XCTAssertEqual(f.info("scalar")?.shape, [])
        XCTAssertEqual(try f.floats("scalar"), [7.5])
        XCTAssertEqual(f.info("empty")?.shape, [0, 3])
        XCTAssertEqual(try f.floats("empty"), [])
    }
}

/// Deterministic test RNG (splitmix64).
private struct SafetensorsTestRNG {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
