import Foundation
import NecoCore
import NecoImage
import XCTest
import _NecoTestSupport

/// Decoding parity with Pillow's `Image.open(f).convert("RGB")`, and bad input.
final class DecodeTests: XCTestCase {
    func testEveryFixtureMatchesPillowExactly() throws {
        let cases = try ImageFixtures.cases("decode")
        XCTAssertGreaterThanOrEqual(cases.count, 13)
        for c in cases {
            let (file, expectedName) = (c.fields[0], c.fields[1])
            let width = Int(c.fields[2])!, height = Int(c.fields[3])!
            let image = try ImageDecoder.load(path: ImageFixtures.path(file))
            XCTAssertEqual(image.width, width, file)
            XCTAssertEqual(image.height, height, file)
            let expected = try ImageFixtures.rgb(expectedName, width: width, height: height)
            let d = byteDiff(image.pixels, expected.pixels)
            // libjpeg-turbo ISLOW + fancy upsampling is what Pillow uses: exact for JPEG too.
            XCTAssertEqual(d.max, 0, "\(file): max |diff| \(d.max) over \(d.count) values")
        }
    }

    func testSniff() {
        XCTAssertEqual(ImageDecoder.sniff([0xFF, 0xD8, 0xFF, 0xE0]), .jpeg)
        XCTAssertEqual(ImageDecoder.sniff([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]), .png)
        XCTAssertNil(ImageDecoder.sniff([0x89, 0x50, 0x4E, 0x47]))
        XCTAssertNil(ImageDecoder.sniff([]))
        XCTAssertNil(ImageDecoder.sniff(Array("GIF89a".utf8)))
    }

    func testMissingFileIsIOErrorNamingTheFile() {
        let p = ImageFixtures.path("does-not-exist.png")
        assertThrowsNeco(.io, [p]) { try ImageDecoder.load(path: p) }
    }

    func testDirectoryIsIOError() {
        let p = ImageFixtures.path("")
        assertThrowsNeco(.io, [p]) { try ImageDecoder.load(path: p) }
    }

    func testEmptyFileIsFormatError() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = dir + "/empty.jpg"
        try FileIO.writeAtomically(p, bytes: [])
        assertThrowsNeco(.format, [p, "not a JPEG or PNG image"]) { try ImageDecoder.load(path: p) }
    }

    func testRandomBytesAreFormatError() {
        var rng = TestRNG(seed: 1)
        let junk = (0..<1000).map { _ in rng.byte() }
        assertThrowsNeco(.format, ["junk.bin", "not a JPEG or PNG image"]) {
            try ImageDecoder.decode(bytes: [0x12] + junk, name: "junk.bin")
        }
    }

    func testRandomBytesAfterMagicNeverCrash() {
        // Valid magic, garbage body: both decoders must fail cleanly.
        var rng = TestRNG(seed: 2)
        for magic in [[0xFF, 0xD8, 0xFF] as [UInt8], [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]] {
            for n in [0, 1, 7, 100, 5000] {
                let body = (0..<n).map { _ in rng.byte() }
                assertThrowsNeco(.format, ["junk.img", "cannot decode"], "magic \(magic) + \(n) bytes") {
                    try ImageDecoder.decode(bytes: magic + body, name: "junk.img")
                }
            }
        }
    }

    func testTruncatedJPEG() throws {
        let full = try ImageFixtures.bytes("rgb_q90.jpg")
        assertThrowsNeco(.format, ["cut.jpg", "JPEG"], "first 100 bytes") {
            try ImageDecoder.decode(bytes: Array(full.prefix(100)), name: "cut.jpg")
        }
        // Cut inside the entropy-coded data: libjpeg would only warn and pad with grey; Pillow
        // reports a truncated file, and so do we.
        assertThrowsNeco(.format, ["cut.jpg", "Premature end of JPEG file"], "70 %") {
            try ImageDecoder.decode(bytes: Array(full.prefix(full.count * 7 / 10)), name: "cut.jpg")
        }
        let progressive = try ImageFixtures.bytes("rgb_prog.jpg")
        assertThrowsNeco(.format, ["cut.jpg"], "progressive, 60 %") {
            try ImageDecoder.decode(bytes: Array(progressive.prefix(progressive.count * 6 / 10)), name: "cut.jpg")
        }
        assertThrowsNeco(.format, ["cut.jpg"], "magic only") {
            try ImageDecoder.decode(bytes: [0xFF, 0xD8, 0xFF], name: "cut.jpg")
        }
    }

    func testJPEGWithoutEOIIsTruncated() throws {
        // Pillow reports "image file is truncated" even when only the final EOI marker is missing.
        let full = try ImageFixtures.bytes("rgb_q90.jpg")
        XCTAssertEqual(Array(full.suffix(2)), [0xFF, 0xD9])
        assertThrowsNeco(.format, ["no-eoi.jpg", "Premature end of JPEG file"]) {
            try ImageDecoder.decode(bytes: Array(full.dropLast(2)), name: "no-eoi.jpg")
        }
        // Bytes after EOI are ignored.
        let image = try ImageDecoder.decode(bytes: full + [0, 1, 2, 3], name: "trailing.jpg")
        XCTAssertEqual(image.pixels, try ImageFixtures.rgb("rgb_q90_jpg.rgb", width: 61, height: 47).pixels)
    }

    func testTruncatedPNG() throws {
        let full = try ImageFixtures.bytes("rgb.png")
        for n in [8, 20, 33, 100, full.count / 2, full.count - 30] {
            assertThrowsNeco(.format, ["cut.png", "PNG"], "first \(n) of \(full.count) bytes") {
                try ImageDecoder.decode(bytes: Array(full.prefix(n)), name: "cut.png")
            }
        }
    }

    func testCorruptPNGCRC() throws {
        let full = try ImageFixtures.bytes("rgb.png")
        // IHDR: bytes 8..<33 (length, type, 13 data bytes, CRC at 29..<33).
        var badIHDRCRC = full
        badIHDRCRC[30] ^= 0xFF
        assertThrowsNeco(.format, ["crc.png", "CRC"], "IHDR CRC") {
            try ImageDecoder.decode(bytes: badIHDRCRC, name: "crc.png")
        }
        // A wrong IDAT CRC.
        let idat = try XCTUnwrap(findChunk(full, "IDAT"))
        let idatLength = Int(full[idat]) << 24 | Int(full[idat + 1]) << 16 | Int(full[idat + 2]) << 8 | Int(full[idat + 3])
        var badIDATCRC = full
        badIDATCRC[idat + 8 + idatLength] ^= 0x01
        assertThrowsNeco(.format, ["crc.png", "CRC"], "IDAT CRC") {
            try ImageDecoder.decode(bytes: badIDATCRC, name: "crc.png")
        }
        // A flipped byte inside the IDAT data: zlib usually notices before the CRC does.
        var badIDAT = full
        badIDAT[idat + 8 + 10] ^= 0x01
        assertThrowsNeco(.format, ["crc.png", "cannot decode PNG"], "IDAT data") {
            try ImageDecoder.decode(bytes: badIDAT, name: "crc.png")
        }
        // An ancillary chunk with a bad CRC is refused too (as Pillow does).
        let gamma = try ImageFixtures.bytes("gamma.png")
        let gAMA = try XCTUnwrap(findChunk(gamma, "gAMA"))
        var badGamma = gamma
        badGamma[gAMA + 8 + 4] ^= 0x55   // first CRC byte (4 data bytes)
        assertThrowsNeco(.format, ["crc.png"], "gAMA CRC") {
            try ImageDecoder.decode(bytes: badGamma, name: "crc.png")
        }
    }

    func testHugePNGHeaderIsRefusedBeforeAllocating() throws {
        // A valid IHDR claiming 60000 x 60000 (3.6 G pixels) and no data.
        var ihdr: [UInt8] = Array("IHDR".utf8)
        for v in [UInt32(60000), UInt32(60000)] { ihdr += [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
        ihdr += [8, 2, 0, 0, 0]
        let crc = crc32(ihdr)
        let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13] + ihdr
            + [UInt8(crc >> 24), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc & 0xFF)]
        assertThrowsNeco(.invalidArgument, ["huge.png", "60000 x 60000"]) {
            try ImageDecoder.decode(bytes: png, name: "huge.png")
        }
    }

    func testHugeJPEGHeaderIsRefusedBeforeAllocating() throws {
        var jpeg = try ImageFixtures.bytes("rgb_q90.jpg")
        // SOF0: FF C0, length (2), precision (1), height (2), width (2).
        let sof = try XCTUnwrap((0..<(jpeg.count - 1)).first { jpeg[$0] == 0xFF && jpeg[$0 + 1] == 0xC0 })
        jpeg[sof + 5] = 0xFF; jpeg[sof + 6] = 0x00   // height 65280
        jpeg[sof + 7] = 0xFF; jpeg[sof + 8] = 0x00   // width 65280
        assertThrowsNeco(.invalidArgument, ["huge.jpg", "65280 x 65280"]) {
            try ImageDecoder.decode(bytes: jpeg, name: "huge.jpg")
        }
    }

    func testProgressiveJPEGWithTooManyScansIsRefused() throws {
        // Repeat the first scan of a progressive file 600 times: libjpeg only warns about the bogus
        // progression, so without a limit it would walk the coefficient buffer 600 times.
        let full = try ImageFixtures.bytes("rgb_prog.jpg")
        let sos = try XCTUnwrap((0..<(full.count - 1)).first { full[$0] == 0xFF && full[$0 + 1] == 0xDA })
        var end = sos + 2
        while end + 1 < full.count {
            if full[end] == 0xFF && full[end + 1] != 0 && !(0xD0...0xD7).contains(full[end + 1]) && end > sos + 4 { break }
            end += 1
        }
        let scan = Array(full[sos..<end])
        var bytes = Array(full[..<sos])
        for _ in 0..<600 { bytes += scan }
        bytes += full[sos...]
        assertThrowsNeco(.format, ["scans.jpg", "more than 500 scans"]) {
            try ImageDecoder.decode(bytes: bytes, name: "scans.jpg")
        }
    }

    func testGarbageInsideJPEGScanNeverCrashes() throws {
        // Flip bytes all over the entropy-coded data; the decoder may succeed (libjpeg resyncs) or
        // throw .format, but must never exit or trap.
        let full = try ImageFixtures.bytes("rgb_q90.jpg")
        var rng = TestRNG(seed: 3)
        for _ in 0..<50 {
            var b = full
            for _ in 0..<20 { b[rng.index(2..<b.count)] = rng.byte() }
            do { _ = try ImageDecoder.decode(bytes: b, name: "fuzz.jpg") } catch let e as NecoError {
                XCTAssertTrue(e.kind == .format || e.kind == .outOfMemory || e.kind == .invalidArgument, e.message)
                XCTAssertTrue(e.message.hasPrefix("fuzz.jpg: "), e.message)
            }
        }
    }

    func testGarbageInsidePNGNeverCrashes() throws {
        let full = try ImageFixtures.bytes("palette.png")
        var rng = TestRNG(seed: 4)
        for _ in 0..<50 {
            var b = full
            for _ in 0..<5 { b[rng.index(8..<b.count)] = rng.byte() }
            do { _ = try ImageDecoder.decode(bytes: b, name: "fuzz.png") } catch let e as NecoError {
                XCTAssertTrue(e.kind == .format || e.kind == .outOfMemory || e.kind == .invalidArgument, e.message)
                XCTAssertTrue(e.message.hasPrefix("fuzz.png: "), e.message)
            }
        }
    }

    // MARK: limits and leniency

    /// A PNG that is only a signature and an IHDR claiming `width` × `height` RGB8.
    private func pngHeader(width: UInt32, height: UInt32) -> [UInt8] {
        var ihdr: [UInt8] = Array("IHDR".utf8)
        for v in [width, height] { ihdr += [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
        ihdr += [8, 2, 0, 0, 0]
        let crc = crc32(ihdr)
        return [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13] + ihdr
            + [UInt8(crc >> 24), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc & 0xFF)]
    }

    func testPixelCapRefusesDecompressionBombsFromTheHeader() throws {
        // 16384 × 16384 = 2^28 pixels: within the hard limit, beyond the default cap (Pillow's
        // MAX_IMAGE_PIXELS), so refused before any allocation.
        XCTAssertEqual(ImageDecoder.Options().maxPixels, 89_478_485)
        assertThrowsNeco(.invalidArgument, ["bomb.png", "16384 x 16384", "pixel limit of 89478485"]) {
            try ImageDecoder.decode(bytes: pngHeader(width: 16384, height: 16384), name: "bomb.png")
        }
        // A small JPEG whose SOF claims 16384 × 16384.
        var jpeg = try ImageFixtures.bytes("rgb_q90.jpg")
        let sof = try XCTUnwrap((0..<(jpeg.count - 1)).first { jpeg[$0] == 0xFF && jpeg[$0 + 1] == 0xC0 })
        jpeg[sof + 5] = 0x40; jpeg[sof + 6] = 0x00
        jpeg[sof + 7] = 0x40; jpeg[sof + 8] = 0x00
        assertThrowsNeco(.invalidArgument, ["bomb.jpg", "16384 x 16384", "pixel limit"]) {
            try ImageDecoder.decode(bytes: jpeg, name: "bomb.jpg")
        }
        // The cap is configurable per call and process-wide.
        let small = try ImageFixtures.bytes("rgb_q90.jpg")   // 61 × 47 = 2867 pixels
        assertThrowsNeco(.invalidArgument, ["small.jpg", "pixel limit of 2866"]) {
            try ImageDecoder.decode(bytes: small, name: "small.jpg", options: .init(maxPixels: 2866))
        }
        XCTAssertEqual(try ImageDecoder.decode(bytes: small, name: "small.jpg", options: .init(maxPixels: 2867)).width, 61)
        let saved = ImageDecoder.defaultOptions
        defer { ImageDecoder.defaultOptions = saved }
        ImageDecoder.defaultOptions.maxPixels = 1000
        assertThrowsNeco(.invalidArgument, ["small.jpg", "pixel limit of 1000"]) {
            try ImageDecoder.decode(bytes: small, name: "small.jpg")
        }
        assertThrowsNeco(.invalidArgument, ["max image pixels 0"]) {
            try ImageDecoder.decode(bytes: small, name: "small.jpg", options: .init(maxPixels: 0))
        }
        assertThrowsNeco(.invalidArgument, ["out of range"]) {
            try ImageDecoder.decode(bytes: small, name: "small.jpg", options: .init(maxPixels: (1 << 28) + 1))
        }
    }

    func testTruncatedFilesAreAcceptedOnlyWhenAsked() throws {
        let lenient = ImageDecoder.Options(allowTruncated: true)
        let full = try ImageFixtures.bytes("rgb_q90.jpg")
        let reference = try ImageDecoder.decode(bytes: full, name: "full.jpg")
        let cut = Array(full.prefix(full.count * 7 / 10))
        assertThrowsNeco(.format, ["cut.jpg", "Premature end of JPEG file"]) {
            try ImageDecoder.decode(bytes: cut, name: "cut.jpg")
        }
        let partial = try ImageDecoder.decode(bytes: cut, name: "cut.jpg", options: lenient)
        XCTAssertEqual(partial.width, reference.width)
        XCTAssertEqual(partial.height, reference.height)
        // The first rows are decoded as in the complete file; the last row is libjpeg's grey fill.
        let row = 3 * reference.width
        XCTAssertEqual(partial.pixels[0..<(4 * row)], reference.pixels[0..<(4 * row)])
        XCTAssertTrue(partial.pixels[(partial.pixels.count - row)...].allSatisfy { $0 == 128 })
        let noEOI = try ImageDecoder.decode(bytes: Array(full.dropLast(2)), name: "no-eoi.jpg", options: lenient)
        XCTAssertEqual(noEOI.pixels, reference.pixels)
        // PNG: the rows read so far, the rest black (libpng inflates the image data in blocks, so
        // of a small file cut inside its only IDAT chunk no row may be complete).
        let png = try ImageFixtures.bytes("rgb.png")
        let pngRef = try ImageDecoder.decode(bytes: png, name: "rgb.png")
        let pngCut = Array(png.prefix(png.count * 6 / 10))
        assertThrowsNeco(.format, ["cut.png", "truncated"]) {
            try ImageDecoder.decode(bytes: pngCut, name: "cut.png")
        }
        let pngPartial = try ImageDecoder.decode(bytes: pngCut, name: "cut.png", options: lenient)
        XCTAssertEqual(pngPartial.width, pngRef.width)
        XCTAssertEqual(pngPartial.height, pngRef.height)
        let pngRow = 3 * pngRef.width
        for y in 0..<pngRef.height {
            let got = pngPartial.pixels[(y * pngRow)..<((y + 1) * pngRow)]
            XCTAssertTrue(got.elementsEqual(pngRef.pixels[(y * pngRow)..<((y + 1) * pngRow)]) || got.allSatisfy { $0 == 0 },
                          "row \(y) is neither decoded nor black")
        }
        XCTAssertTrue(pngPartial.pixels.suffix(3 * pngRef.width).allSatisfy { $0 == 0 })
        // A file cut inside its header is still an error.
        assertThrowsNeco(.format, ["head.png"]) {
            try ImageDecoder.decode(bytes: Array(png.prefix(30)), name: "head.png", options: lenient)
        }
    }

    // MARK: helpers

    /// Offset of the first chunk of `type` (its length field), or nil.
    private func findChunk(_ png: [UInt8], _ type: String) -> Int? {
        var at = 8
        let t = Array(type.utf8)
        while at + 8 <= png.count {
            let length = Int(png[at]) << 24 | Int(png[at + 1]) << 16 | Int(png[at + 2]) << 8 | Int(png[at + 3])
            if Array(png[(at + 4)..<(at + 8)]) == t { return at }
            at += 12 + length
        }
        return nil
    }

    private func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0xEDB8_8320 : c >> 1 }
        }
        return c ^ 0xFFFF_FFFF
    }
}
