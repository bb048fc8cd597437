import NecoCore
import XCTest
import _NecoTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Checked allocation, paths as bytes, regular files only, stale temporaries.
final class ReliabilityTests: XCTestCase {
    func testAllocationBeyondTheMachineIsAnErrorNotATrap() throws {
        // 2^60 bytes: no machine maps that; overflowing sizes are errors too.
        XCTAssertThrowsError(try Memory.reserve(1 << 58, of: Float.self, "huge")) {
            XCTAssertEqual(($0 as? NecoError)?.kind, .outOfMemory)
            XCTAssertTrue(($0 as? NecoError)?.message.hasPrefix("huge: cannot allocate") ?? false)
        }
        XCTAssertThrowsError(try Memory.bytes(Int.max / 2, of: Float.self, "overflow")) {
            XCTAssertEqual(($0 as? NecoError)?.kind, .outOfMemory)
        }
        XCTAssertThrowsError(try Memory.reserve(bytes: [Int.max, Int.max], "sum")) {
            XCTAssertEqual(($0 as? NecoError)?.kind, .outOfMemory)
        }
        XCTAssertThrowsError(try Memory.allocate(1 << 58, of: Float.self, "raw")) {
            XCTAssertEqual(($0 as? NecoError)?.kind, .outOfMemory)
        }
        XCTAssertThrowsError(try Memory.zeros(-1, of: Float.self, "negative")) {
            XCTAssertEqual(($0 as? NecoError)?.kind, .invalidArgument)
        }
        // Sizes that fit work, probed or not.
        XCTAssertEqual(try Memory.zeros(3, of: Float.self, "small"), [0, 0, 0])
        XCTAssertEqual(try Memory.zeros(1 << 21, of: UInt8.self, "probed").count, 1 << 21)
        let p = try Memory.allocate(1000, of: Double.self, "aligned")
        XCTAssertEqual(Int(bitPattern: p) % 64, 0)
        free(p)
    }

    func testPathBytesRoundTripAndDisplay() {
        let cases: [[UInt8]] = [Array("plain/ascii.png".utf8), Array("café".utf8), [0x6D, 0xFF, 0xFE], [0xC3],
                                [0xE2, 0x82], [0xF4, 0x8F, 0xBE, 0x80, 0x41], [0xED, 0xA0, 0x80], [0x0A, 0x7F], []]
        for b in cases {
            XCTAssertEqual(Path.bytes(Path.string(b)), b, "\(b)")
            Path.withCString(Path.string(b)) { XCTAssertEqual(Array(UnsafeBufferPointer(start: $0, count: strlen($0))).map { UInt8(bitPattern: $0) }, b) }
        }
        XCTAssertEqual(Path.string(Array("café".utf8)), "café")
        XCTAssertEqual(Path.display("a\nb\tc\r\u{1}"), "a\\nb\\tc\\r\\x01")
        XCTAssertEqual(Path.display(Path.string([0x61, 0xFF])), "a\\xff")
        XCTAssertEqual(Path.display("ünïcode stays"), "ünïcode stays")
    }

    func testOnlyRegularFilesAreOpenedAndFIFOsNeverBlock() throws {
        let folder = try TempFolder(prefix: "neco-core")
        defer { folder.cleanup() }
        let fifo = folder.file("pipe")
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        // A FIFO without a writer would block open() forever without O_NONBLOCK.
        XCTAssertThrowsError(try FileIO.readAll(fifo)) {
            XCTAssertEqual(($0 as? NecoError)?.kind, .io)
            XCTAssertTrue(($0 as? NecoError)?.message.contains("not a regular file (a FIFO)") ?? false)
        }
        XCTAssertThrowsError(try FileIO.readAll(folder.path)) {
            XCTAssertTrue(($0 as? NecoError)?.message.contains("a folder") ?? false)
        }
        XCTAssertThrowsError(try FileIO.readAll("/dev/zero")) {
            XCTAssertTrue(($0 as? NecoError)?.message.contains("character device") ?? false)
        }
        let name = Path.string(Array(folder.path.utf8) + [0x2F, 0xFF, 0x0A])
        try FileIO.writeAtomically(name, bytes: [1, 2, 3])
        XCTAssertEqual(try FileIO.readAll(name), [1, 2, 3])
    }

    func testStaleTemporariesOfDeadWritersOnly() throws {
        let folder = try TempFolder(prefix: "neco-core")
        defer { folder.cleanup() }
        var pid: pid_t = 0
        var argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
        defer { free(argv[0]) }
        XCTAssertEqual(posix_spawn(&pid, "/bin/true", nil, nil, &argv, nil), 0)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        let target = folder.file("ck.safetensors")
        let dead = target + ".tmp-\(pid)", live = target + ".tmp-1", mine = target + ".tmp-\(getpid())"
        let unrelated = target + ".tmp-notapid"
        for f in [dead, live, mine, unrelated] { try FileIO.writeAtomically(f, bytes: [0]) }
        XCTAssertEqual(Set(FileIO.removeStaleTemporaries(of: target)), [dead, mine])
        XCTAssertEqual(folder.contents, ["ck.safetensors.tmp-1", "ck.safetensors.tmp-notapid"])
    }
}
