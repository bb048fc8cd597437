import NecoCore
import NecoEval
import XCTest
import _NecoTestSupport

/// The patch-index file: a round trip searches bit-identically; foreign, truncated, corrupt and
/// future-version files are `.format` errors that say which.
final class PatchIndexFileTests: XCTestCase {
    func testRoundTripAndDamagedFiles() throws {
        let dir = try TempFolder(prefix: "neco-index-file")
        defer { dir.cleanup() }
        let d = 12, m = 257
        var rng = PatchIndexTests.LCG(state: 7)
        let index = try PatchIndex(dim: d)
        try index.add(rng.floats(100 * d), labels: (0..<100).map { Int32($0 % 5) })
        try index.add(rng.floats((m - 100) * d))  // rows without labels: −1
        let path = dir.file("bank.necoindex")
        try index.save(to: path)

        let loaded = try PatchIndex.load(path: path)
        XCTAssertEqual(loaded.dim, d)
        XCTAssertEqual(loaded.count, m)
        let queries = rng.floats(9 * d)
        let a = try index.search(queries, k: 7), b = try loaded.search(queries, k: 7)
        XCTAssertEqual(a.indices, b.indices)
        XCTAssertEqual(a.similarities, b.similarities)  // bit-identical: the rows are stored normalised
        XCTAssertEqual(a.labels, b.labels)
        XCTAssertEqual(loaded.label(150), -1)

        // An empty index round-trips too.
        try PatchIndex(dim: 3).save(to: dir.file("empty.necoindex"))
        XCTAssertEqual(try PatchIndex.load(path: dir.file("empty.necoindex")).count, 0)

        var bytes = try FileIO.readAll(path)
        XCTAssertEqual(bytes.count, 32 + 4 * m * d + 4 * m + 8)
        func expectFormat(_ data: [UInt8], _ phrase: String, line: UInt = #line) throws {
            let bad = dir.file("bad.necoindex")
            try FileIO.writeAtomically(bad, bytes: data)
            XCTAssertThrowsError(try PatchIndex.load(path: bad), line: line) { e in
                XCTAssertEqual((e as? NecoError)?.kind, .format, line: line)
                XCTAssertTrue("\(e)".contains(phrase), "\(e)", line: line)
            }
        }
        try expectFormat(Array("not an index at all, just text...........".utf8), "not a libneco patch-index file")
        try expectFormat(Array(bytes.dropLast(5)), "truncated")
        bytes[40] ^= 1
        try expectFormat(bytes, "checksum mismatch")
        bytes[40] ^= 1
        bytes[8] = 9
        try expectFormat(bytes, "format version 9")
        XCTAssertThrowsError(try PatchIndex.load(path: dir.file("missing"))) { XCTAssertEqual(($0 as? NecoError)?.kind, .io) }
    }
}
