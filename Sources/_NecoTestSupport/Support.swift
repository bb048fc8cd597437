import NecoCore
import NecoModel
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Test helpers shared by every test target: fixture loading and the one tolerance-aware check.

/// Absolute path of the repository root, derived from this file's location.
public let repositoryRoot: String = {
    var parts = String(#filePath).split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)  // Sources/_NecoTestSupport/Support.swift
    return parts.joined(separator: "/")
}()

/// Path of a committed fixture under Tests/Fixtures.
public func fixturePath(_ relative: String) -> String { repositoryRoot + "/Tests/Fixtures/" + relative }

/// Cache directory where the setup step puts the default model and sample photos.
public var necoCache: String {
    if let env = getenv("NECO_CACHE") { return String(cString: env) }
    return String(cString: getenv("HOME")) + "/.cache/neco"
}

/// A loaded fixture file (safetensors with metadata format = neco-fixture).
public struct Fixture {
    public let file: SafetensorsFile
    public init(_ relative: String) throws {
        file = try SafetensorsFile(path: fixturePath(relative))
    }
    public func floats(_ name: String) throws -> [Float] { try file.floats(name) }
    public func shape(_ name: String) -> [Int] { file.info(name)?.shape ?? [] }
    public var metadata: [String: String] { file.metadata }
}

/// Summary of how far `actual` is from `expected`.
public struct Closeness: CustomStringConvertible {
    public var maxAbs: Double = 0
    public var maxRel: Double = 0
    public var nmse: Double = 0
    public var mismatches: [(Int, Float, Float)] = []
    public var description: String {
        let shown = mismatches.prefix(5).map { "[\($0.0)] \($0.1) vs \($0.2)" }.joined(separator: ", ")
        return "max abs \(maxAbs), max rel \(maxRel), nmse \(nmse)" + (mismatches.isEmpty ? "" : "; first mismatches: \(shown)")
    }
}

public func closeness<A: Collection, B: Collection>(_ actual: A, _ expected: B, rtol: Double, atol: Double) -> Closeness
where A.Element == Float, B.Element == Float {
    var c = Closeness()
    var errSq = 0.0, refSq = 0.0
    for (i, (a, e)) in zip(actual, expected).enumerated() {
        let diff = abs(Double(a) - Double(e))
        c.maxAbs = max(c.maxAbs, diff)
        if e != 0 { c.maxRel = max(c.maxRel, diff / abs(Double(e))) }
        errSq += diff * diff
        refSq += Double(e) * Double(e)
        if !(diff <= atol + rtol * abs(Double(e))) && c.mismatches.count < 5 { c.mismatches.append((i, a, e)) }
        if a.isNaN != e.isNaN && c.mismatches.count < 5 { c.mismatches.append((i, a, e)) }
    }
    c.nmse = refSq > 0 ? errSq / refSq : errSq
    return c
}

/// The one tolerance-aware assertion: shapes (counts) first, then |a − e| ≤ atol + rtol·|e| everywhere.
@discardableResult
public func assertClose<A: Collection, B: Collection>(_ actual: A, _ expected: B, rtol: Double = 1e-4, atol: Double = 1e-5,
                                                     _ label: String = "", file: StaticString = #filePath, line: UInt = #line) -> Closeness
where A.Element == Float, B.Element == Float {
    guard actual.count == expected.count else {
        XCTFail("\(label): count \(actual.count) != expected \(expected.count)", file: file, line: line)
        return Closeness()
    }
    let c = closeness(actual, expected, rtol: rtol, atol: atol)
    if !c.mismatches.isEmpty { XCTFail("\(label): \(c)", file: file, line: line) }
    return c
}

/// Deterministic pseudo-random floats for test inputs (SplitMix64 → uniform [-1, 1)). Not
/// libneco's generator (that is NecoRNG, in NecoCore): the finite-difference and parity tests
/// were validated on exactly these input streams, so they keep them.
public struct TestRNG {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    public mutating func uniform() -> Float { Float(next() >> 40) / Float(1 << 24) * 2 - 1 }
    public mutating func floats(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in uniform() * scale } }
}

/// A fresh empty folder under $TMPDIR named `<prefix>-XXXXXX`, removed with its files by `cleanup()`.
public final class TempFolder {
    public let path: String
    public init(prefix: String = "neco-test") throws {
        var template = Array(((getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp") + "/\(prefix)-XXXXXX").utf8CString)
        guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw NecoError.io("mkdtemp failed")
        }
        path = String(cString: p)
    }
    public func file(_ name: String) -> String { path + "/" + name }
    /// Names of the files in the folder, sorted.
    public var contents: [String] { Self.names(in: path).sorted() }

    /// Removes the folder with everything in it, sub-folders included (run folders, shards).
    public func cleanup() { Self.removeTree(path) }

    /// The entries of folder `dir` other than "." and "..", in directory order.
    static func names(in dir: String) -> [String] {
        guard let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = FileIO.entryName(e)
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    static func removeTree(_ path: String) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            for n in names(in: path) { removeTree(path + "/" + n) }
            rmdir(path)
        } else {
            FileIO.remove(path)
        }
    }
}

/// |a − e| ≤ tol · max|e| elementwise (a tolerance relative to the tensor's scale, as for
/// gradients); fails with the worst element and returns the worst ratio.
@discardableResult
public func assertScaled(_ a: [Float], _ e: [Float], _ tol: Double, _ label: String,
                         file: StaticString = #filePath, line: UInt = #line) -> Double {
    XCTAssertEqual(a.count, e.count, "\(label): count", file: file, line: line)
    guard a.count == e.count, !e.isEmpty else { return 0 }
    let scale = max(e.map { abs(Double($0)) }.max() ?? 0, 1e-30)
    var worst = 0.0, at = 0
    for i in 0..<a.count {
        let r = abs(Double(a[i]) - Double(e[i])) / scale
        if r > worst { worst = r; at = i }
    }
    if worst > tol {
        XCTFail("\(label): max |Δ|/max|e| = \(worst) at [\(at)]: \(a[at]) vs \(e[at])", file: file, line: line)
    }
    return worst
}
