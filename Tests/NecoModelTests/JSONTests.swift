import NecoCore
import XCTest

import NecoModel

final class JSONTests: XCTestCase {
    // MARK: helpers

    private func parse(_ s: String, file: StaticString = #filePath, line: UInt = #line) -> JSONValue? {
        do { return try JSONValue.parse(s) } catch {
            XCTFail("unexpected error for \(s.debugDescription): \(error)", file: file, line: line)
            return nil
        }
    }

    /// Asserts that `bytes` fail to parse with a `.format` NecoError whose message contains
    /// `fragment` (and always "at byte").
    private func assertRejects(_ bytes: [UInt8], _ fragment: String = "", file: StaticString = #filePath, line: UInt = #line) {
        do {
            let v = try JSONValue.parse(bytes)
            XCTFail("accepted \(String(decoding: bytes, as: UTF8.self).debugDescription) as \(v)", file: file, line: line)
        } catch let e as NecoError {
            XCTAssertEqual(e.kind, .format, file: file, line: line)
            XCTAssertTrue(e.message.contains("at byte"), "no position in: \(e.message)", file: file, line: line)
            if !fragment.isEmpty {
                XCTAssertTrue(e.message.contains(fragment), "\(e.message.debugDescription) lacks \(fragment.debugDescription)", file: file, line: line)
            }
        } catch {
            XCTFail("not a NecoError: \(error)", file: file, line: line)
        }
    }

    private func assertRejects(_ s: String, _ fragment: String = "", file: StaticString = #filePath, line: UInt = #line) {
        assertRejects(Array(s.utf8), fragment, file: file, line: line)
    }

    // MARK: values

    func testLiteralsAndWhitespace() {
        XCTAssertEqual(parse("null"), .null)
        XCTAssertEqual(parse(" \t\r\ntrue\n"), .bool(true))
        XCTAssertEqual(parse("false"), .bool(false))
        XCTAssertEqual(parse("[]"), .array([]))
        XCTAssertEqual(parse("{}"), .object([]))
        XCTAssertEqual(parse(" [ 1 , [ ] , { } ] "), .array([.number(1), .array([]), .object([])]))
    }

    func testNumbers() {
        XCTAssertEqual(parse("0"), .number(0))
        XCTAssertEqual(parse("-0")?.doubleValue?.sign, .minus)
        XCTAssertEqual(parse("12"), .number(12))
        XCTAssertEqual(parse("-3.25"), .number(-3.25))
        XCTAssertEqual(parse("1.5e3"), .number(1500))
        XCTAssertEqual(parse("1E+2"), .number(100))
        XCTAssertEqual(parse("25e-1"), .number(2.5))
        XCTAssertEqual(parse("0.1"), .number(0.1))
        XCTAssertEqual(parse("1e-320"), .number(Double("1e-320")!))  // subnormal is fine
        XCTAssertEqual(parse("9007199254740991")?.intValue, 9_007_199_254_740_991)
        XCTAssertEqual(parse("-9007199254740991")?.intValue, -9_007_199_254_740_991)
        // 2^53 + 1 rounds to 2^53 as a Double, so it is not reported as an exact Int.
        XCTAssertNil(parse("9007199254740993")?.intValue)
        XCTAssertEqual(parse("1.0")?.intValue, 1)
        XCTAssertEqual(parse("1e3")?.intValue, 1000)
        XCTAssertNil(parse("1.5")?.intValue)
        XCTAssertNil(parse("\"1\"")?.intValue)

        for bad in ["01", "-01", "1.", ".5", "+1", "1e", "1e+", "-", "--1", "1.e3", "0x10", "NaN", "nan",
                    "Infinity", "-Infinity", "inf", "1 2", "1_000"] {
            assertRejects(bad)
        }
        assertRejects("1e400", "out of range")
        assertRejects("-1e400", "out of range")
        assertRejects("[0, 01]", "leading zero")
    }

    func testStrings() {
        XCTAssertEqual(parse(#""""#), .string(""))
        XCTAssertEqual(parse(#""abc""#), .string("abc"))
        XCTAssertEqual(parse(#""a\"b\\c\/d\be\ff\ng\rh\ti""#), .string("a\"b\\c/d\u{8}e\u{C}f\ng\rh\ti"))
        XCTAssertEqual(parse(#""\u00e9\u00C9\u20ac\u0000""#), .string("éÉ€\u{0}"))
        XCTAssertEqual(parse(#""\ud83d\ude00""#), .string("😀"))
        XCTAssertEqual(parse(#""x\uD834\uDD1Ey""#), .string("x𝄞y"))
        XCTAssertEqual(parse("\"é€😀 raw\""), .string("é€😀 raw"))
        XCTAssertEqual(parse("\"\u{7F}\""), .string("\u{7F}"))

        assertRejects(#""abc"#, "unterminated")
        assertRejects(#""abc\"#, "unterminated")
        assertRejects(#""\x""#, "invalid escape")
        assertRejects(#""\u12""#, "\\u")
        assertRejects(#""\u12G4""#, "hex")
        assertRejects(#""\ud800""#, "surrogate")
        assertRejects(#""\ud800x""#, "surrogate")
        assertRejects(#""\ud800\u0041""#, "surrogate")
        assertRejects(#""\udc00""#, "lone low surrogate")
        assertRejects("\"a\nb\"", "control")
        assertRejects("\"a\tb\"", "control")
        assertRejects("'single'")
        // Invalid UTF-8: overlong, encoded surrogate, out of range, truncated, stray continuation.
        for bytes: [UInt8] in [[0xC0, 0x80], [0xC1, 0xBF], [0xE0, 0x80, 0x80], [0xED, 0xA0, 0x80],
                               [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xE2, 0x82], [0x80], [0xFF]] {
            assertRejects([0x22] + bytes + [0x22], "UTF-8")
        }
    }

    func testObjectsKeepOrderAndRejectDuplicates() throws {
        let v = try XCTUnwrap(parse(#"{"z": 1, "a": [true, null], "m": {"k": "v"}}"#))
        XCTAssertEqual(v.objectValue?.map(\.0), ["z", "a", "m"])
        XCTAssertEqual(v["z"]?.intValue, 1)
        XCTAssertEqual(v["a"]?[0], .bool(true))
        XCTAssertEqual(v["a"]?[1]?.isNull, true)
        XCTAssertNil(v["a"]?[2])
        XCTAssertNil(v["a"]?[-1])
        XCTAssertEqual(v["m"]?["k"]?.stringValue, "v")
        XCTAssertNil(v["missing"])
        XCTAssertNil(v["z"]?["k"])
        XCTAssertEqual(v.serialized(), #"{"z":1,"a":[true,null],"m":{"k":"v"}}"#)
        // Order matters for equality.
        XCTAssertNotEqual(parse(#"{"a":1,"b":2}"#), parse(#"{"b":2,"a":1}"#))
        assertRejects(#"{"a": 1, "a": 2}"#, "duplicate key")
    }

    func testMalformedStructure() {
        assertRejects("", "end of input")
        assertRejects("   ", "end of input")
        assertRejects("[1, 2,]", "at byte 6")
        assertRejects("[1 2]", "at byte 3")
        assertRejects(#"{"a" 1}"#, "':'")
        assertRejects(#"{"a": 1,}"#, "string key")
        assertRejects(#"{a: 1}"#, "string key")
        assertRejects(#"{"a": 1"#, "end of input")
        assertRejects("[", "end of input")
        assertRejects("]")
        assertRejects("{}}", "after the end")
        assertRejects("nul", "end of input")
        assertRejects("tru e")
        assertRejects("[1] // comment", "after the end")
        assertRejects("\u{FEFF}{}")  // no BOM
        assertRejects([0x7B, 0x00, 0x7D], "0x00")
    }

    func testDepthLimit() {
        let ok = String(repeating: "[", count: JSONValue.maxDepth) + String(repeating: "]", count: JSONValue.maxDepth)
        XCTAssertNotNil(parse(ok))
        let deep = String(repeating: "[", count: JSONValue.maxDepth + 1) + String(repeating: "]", count: JSONValue.maxDepth + 1)
        assertRejects(deep, "nesting deeper than \(JSONValue.maxDepth)")
        // Very deep input must not overflow the stack either.
        assertRejects(String(repeating: "[", count: 1_000_000), "nesting")
        assertRejects(String(repeating: #"{"a":"#, count: 100_000), "nesting")
    }

    // MARK: serializing

    func testSerialized() {
        XCTAssertEqual(JSONValue.number(3).serialized(), "3")
        XCTAssertEqual(JSONValue.number(-0.0).serialized(), "0")
        XCTAssertEqual(JSONValue.number(0.5).serialized(), "0.5")
        XCTAssertEqual(JSONValue.number(1e-7).serialized(), "1e-07")
        XCTAssertEqual(JSONValue.number(1e20).serialized(), "1e+20")
        XCTAssertEqual(JSONValue.number(9_007_199_254_740_991).serialized(), "9007199254740991")
        XCTAssertEqual(JSONValue.number(.nan).serialized(), "null")
        XCTAssertEqual(JSONValue.number(-.infinity).serialized(), "null")
        XCTAssertEqual(JSONValue.string("a\"b\\c\n\r\t\u{8}\u{C}\u{1}\u{1F}/é😀").serialized(),
                       #""a\"b\\c\n\r\t\b\f\u0001\u001f/é😀""#)
        let v = JSONValue.object([("k", .array([.null, .bool(false), .number(-1.25), .string("")])), ("", .object([]))])
        XCTAssertEqual(v.serialized(), #"{"k":[null,false,-1.25,""],"":{}}"#)
        XCTAssertEqual("\(v)", v.serialized())
    }

    func testRoundTripRandomValues() throws {
        var rng = JSONTestRNG(seed: 7)
        for _ in 0..<300 {
            let v = randomValue(&rng, depth: 0)
            let text = v.serialized()
            XCTAssertEqual(try JSONValue.parse(text), v, text)
            XCTAssertEqual(try JSONValue.parse(Array(text.utf8)), v)
        }
    }

    // MARK: fuzzing: any input either parses or throws .format; nothing traps

    func testFuzzNeverTraps() throws {
        var rng = JSONTestRNG(seed: 42)
        let alphabet = Array(#"{}[],:"\ u0123456789abcdefABCDEF.eE+-truefalsnl"#.utf8) + [0x00, 0x0A, 0x80, 0xC3, 0xA9, 0xED, 0xF0, 0xFF]
        var parsed = 0
        for _ in 0..<20_000 {
            let n = Int(rng.next() % 24)
            let bytes = (0..<n).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }
            if fuzzOne(bytes) { parsed += 1 }
        }
        for _ in 0..<2_000 {
            let n = Int(rng.next() % 64)
            let bytes = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            _ = fuzzOne(bytes)
        }
        // Truncations and single-byte mutations of valid documents.
        for _ in 0..<100 {
            let doc = Array(randomValue(&rng, depth: 0).serialized().utf8)
            for cut in 0..<doc.count { _ = fuzzOne(Array(doc[..<cut])) }
            for _ in 0..<20 where !doc.isEmpty {
                var m = doc
                m[Int(rng.next() % UInt64(m.count))] = alphabet[Int(rng.next() % UInt64(alphabet.count))]
                _ = fuzzOne(m)
            }
        }
        XCTAssertGreaterThan(parsed, 0)
    }

    /// Returns whether `bytes` parsed; fails the test on any error that is not a `.format` NecoError.
    private func fuzzOne(_ bytes: [UInt8]) -> Bool {
        do {
            let v = try JSONValue.parse(bytes)
            // Whatever parses must survive a round trip.
            XCTAssertEqual(try? JSONValue.parse(v.serialized()), v, "\(bytes)")
            return true
        } catch let e as NecoError {
            XCTAssertEqual(e.kind, .format)
            return false
        } catch {
            XCTFail("not a NecoError: \(error)")
            return false
        }
    }

    private func randomValue(_ rng: inout JSONTestRNG, depth: Int) -> JSONValue {
        let pick = depth > 3 ? rng.next() % 4 : rng.next() % 6
        switch pick {
        case 0: return rng.next() % 2 == 0 ? .null : .bool(rng.next() % 2 == 0)
        case 1:
            switch rng.next() % 3 {
            case 0: return .number(Double(Int64(bitPattern: rng.next()) >> 20))
            case 1: return .number(Double(bitPattern: rng.next() & 0x7FEF_FFFF_FFFF_FFFF) * (rng.next() % 2 == 0 ? 1 : -1))
            default: return .number(Double(rng.next() % 1000) / 8)
            }
        case 2, 3: return .string(randomString(&rng))
        case 4: return .array((0..<Int(rng.next() % 4)).map { _ in randomValue(&rng, depth: depth + 1) })
        default:
            var members: [(String, JSONValue)] = []
            var seen = Set<String>()
            for _ in 0..<Int(rng.next() % 4) {
                let k = randomString(&rng)
                if seen.insert(k).inserted { members.append((k, randomValue(&rng, depth: depth + 1))) }
            }
            return .object(members)
        }
    }

    private func randomString(_ rng: inout JSONTestRNG) -> String {
        let pool: [Unicode.Scalar] = ["a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "\u{0}", "\u{1F}", "\u{7F}",
                                      "é", "€", "😀", "\u{FFFF}", "\u{10FFFF}", "\u{2028}"]
        var s = String.UnicodeScalarView()
        for _ in 0..<Int(rng.next() % 8) { s.append(pool[Int(rng.next() % UInt64(pool.count))]) }
        return String(s)
    }
}

/// Deterministic test RNG (splitmix64).
private struct JSONTestRNG {
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
