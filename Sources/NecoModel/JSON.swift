// A small, strict JSON reader and writer (RFC 8259), without Foundation.
//
// It exists for the safetensors header and for config files, so it keeps object key order (the
// header lists tensors in file order, and written files should be byte-stable) and it never traps
// on any input: every malformed document becomes `NecoError(.format, "JSON: ... at byte N")`,
// where N is the 0-based offset of the offending byte.
//
// Strictness, on purpose:
// - no comments, no trailing commas, no single quotes, no NaN/Infinity, no leading `+` or zeros;
// - strings must be valid UTF-8, control characters must be escaped, `\u` escapes must form valid
//   scalars (a high surrogate must be followed by a low one);
// - numbers that overflow a `Double` are rejected;
// - duplicate keys in one object are rejected (a safetensors header with two entries of the same
//   name is ambiguous);
// - nesting is limited to `JSONValue.maxDepth` levels, so recursion depth is bounded.

#if canImport(Glibc)
import Glibc
#endif
import NecoCore

/// A parsed JSON document.
///
/// Objects are stored as an ordered list of `(key, value)` pairs: key order from the input is kept
/// and written back unchanged by `serialized()`.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    /// Arrays and objects may nest at most this deep; deeper input is rejected with `.format`.
    public static let maxDepth = 64

    /// The largest integer magnitude `intValue` returns: 2^53 − 1 (JavaScript's
    /// `Number.MAX_SAFE_INTEGER`). Every integer up to it has exactly one `Double`.
    public static let maxSafeInteger: Double = 9_007_199_254_740_991

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case let (.bool(a), .bool(b)): return a == b
        case let (.number(a), .number(b)): return a == b
        case let (.string(a), .string(b)): return a == b
        case let (.array(a), .array(b)): return a == b
        case let (.object(a), .object(b)):
            guard a.count == b.count else { return false }
            for i in 0..<a.count where a[i].0 != b[i].0 || a[i].1 != b[i].1 { return false }
            return true
        default: return false
        }
    }
}

// MARK: - Accessors

extension JSONValue {
    /// The value of the first member named `key`, or nil when absent or when `self` is no object.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        for (k, v) in members where k == key { return v }
        return nil
    }

    /// The element at `index`, or nil when out of range or when `self` is no array.
    public subscript(index: Int) -> JSONValue? {
        guard case .array(let elements) = self, index >= 0, index < elements.count else { return nil }
        return elements[index]
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var doubleValue: Double? {
        if case .number(let d) = self { return d }
        return nil
    }

    /// The number as an `Int` when it is an exact integer of magnitude ≤ 2^53 − 1 (`1`, `-3`,
    /// `2.0`, `1e3`); nil for fractions, larger magnitudes (which a `Double` may have rounded)
    /// and non-numbers.
    public var intValue: Int? {
        guard case .number(let d) = self, d.isFinite, d.rounded(.towardZero) == d,
              d.magnitude <= JSONValue.maxSafeInteger else { return nil }
        return Int(d)
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// The members in document order.
    public var objectValue: [(String, JSONValue)]? {
        if case .object(let o) = self { return o }
        return nil
    }
}

extension JSONValue: CustomStringConvertible {
    public var description: String { serialized() }
}

// MARK: - Parsing

extension JSONValue {
    /// Parses one JSON document (surrounding whitespace allowed, nothing else after it).
    ///
    /// - Throws: `NecoError(.format, "JSON: <what> at byte N")` on any malformed input.
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws -> JSONValue {
        var p = _JSONParser(bytes)
        return try p.parseDocument()
    }

    /// Parses one JSON document from any byte collection (copied once if not contiguous).
    public static func parse<C: Collection>(_ bytes: C) throws -> JSONValue where C.Element == UInt8 {
        if let r = try bytes.withContiguousStorageIfAvailable({ try parse(UnsafeRawBufferPointer($0)) }) {
            return r
        }
        return try Array(bytes).withUnsafeBytes { try parse($0) }
    }

    /// Parses one JSON document from UTF-8 text.
    public static func parse(_ text: String) throws -> JSONValue {
        var copy = text
        return try copy.withUTF8 { try parse(UnsafeRawBufferPointer($0)) }
    }
}

/// Recursive-descent parser over a byte buffer. Not API.
struct _JSONParser {
    let base: UnsafeRawBufferPointer
    var pos = 0
    var depth = 0

    init(_ bytes: UnsafeRawBufferPointer) { base = bytes }

    // ASCII bytes used below.
    static let quote: UInt8 = 0x22, backslash: UInt8 = 0x5C, slash: UInt8 = 0x2F
    static let comma: UInt8 = 0x2C, colon: UInt8 = 0x3A, minus: UInt8 = 0x2D, plus: UInt8 = 0x2B
    static let dot: UInt8 = 0x2E, zero: UInt8 = 0x30, nine: UInt8 = 0x39
    static let lbrace: UInt8 = 0x7B, rbrace: UInt8 = 0x7D, lbracket: UInt8 = 0x5B, rbracket: UInt8 = 0x5D

    func fail(_ what: String, at offset: Int) -> NecoError {
        NecoError(.format, "JSON: \(what) at byte \(offset)")
    }

    func describe(_ b: UInt8) -> String {
        if b >= 0x21 && b < 0x7F { return "character '\(String(UnicodeScalar(b)))'" }
        let hex = String(b, radix: 16, uppercase: true)
        return "byte 0x\(hex.count == 1 ? "0" + hex : hex)"
    }

    func unexpected(at offset: Int, expecting: String) -> NecoError {
        if offset >= base.count { return fail("unexpected end of input (expected \(expecting))", at: offset) }
        return fail("unexpected \(describe(base[offset])) (expected \(expecting))", at: offset)
    }

    mutating func skipWhitespace() {
        while pos < base.count {
            let b = base[pos]
            guard b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 else { return }
            pos += 1
        }
    }

    mutating func parseDocument() throws -> JSONValue {
        skipWhitespace()
        let v = try parseValue()
        skipWhitespace()
        guard pos == base.count else {
            throw fail("unexpected \(describe(base[pos])) after the end of the document", at: pos)
        }
        return v
    }

    mutating func parseValue() throws -> JSONValue {
        guard pos < base.count else { throw unexpected(at: pos, expecting: "a value") }
        switch base[pos] {
        case Self.lbrace: return try parseObject()
        case Self.lbracket: return try parseArray()
        case Self.quote: return .string(try parseString())
        case 0x74: try literal("true"); return .bool(true)
        case 0x66: try literal("false"); return .bool(false)
        case 0x6E: try literal("null"); return .null
        case Self.minus, Self.zero...Self.nine: return .number(try parseNumber())
        default: throw unexpected(at: pos, expecting: "a value")
        }
    }

    mutating func literal(_ word: StaticString) throws {
        let start = pos
        let n = word.utf8CodeUnitCount
        for i in 0..<n {
            guard pos < base.count, base[pos] == word.utf8Start[i] else {
                throw unexpected(at: pos, expecting: "'\(word)' starting at byte \(start)")
            }
            pos += 1
        }
    }

    mutating func enter() throws {
        depth += 1
        if depth > JSONValue.maxDepth {
            throw fail("nesting deeper than \(JSONValue.maxDepth) levels", at: pos)
        }
    }

    mutating func parseArray() throws -> JSONValue {
        try enter()
        defer { depth -= 1 }
        pos += 1  // '['
        var elements: [JSONValue] = []
        skipWhitespace()
        if pos < base.count && base[pos] == Self.rbracket {
            pos += 1
            return .array(elements)
        }
        while true {
            skipWhitespace()
            elements.append(try parseValue())
            skipWhitespace()
            guard pos < base.count else { throw unexpected(at: pos, expecting: "',' or ']'") }
            if base[pos] == Self.comma { pos += 1; continue }
            if base[pos] == Self.rbracket { pos += 1; return .array(elements) }
            throw unexpected(at: pos, expecting: "',' or ']'")
        }
    }

    mutating func parseObject() throws -> JSONValue {
        try enter()
        defer { depth -= 1 }
        pos += 1  // '{'
        var members: [(String, JSONValue)] = []
        var seen = Set<String>()
        skipWhitespace()
        if pos < base.count && base[pos] == Self.rbrace {
            pos += 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard pos < base.count, base[pos] == Self.quote else {
                throw unexpected(at: pos, expecting: "a string key")
            }
            let keyStart = pos
            let key = try parseString()
            guard seen.insert(key).inserted else {
                throw fail("duplicate key \"\(key)\"", at: keyStart)
            }
            skipWhitespace()
            guard pos < base.count, base[pos] == Self.colon else { throw unexpected(at: pos, expecting: "':'") }
            pos += 1
            skipWhitespace()
            members.append((key, try parseValue()))
            skipWhitespace()
            guard pos < base.count else { throw unexpected(at: pos, expecting: "',' or '}'") }
            if base[pos] == Self.comma { pos += 1; continue }
            if base[pos] == Self.rbrace { pos += 1; return .object(members) }
            throw unexpected(at: pos, expecting: "',' or '}'")
        }
    }

    // MARK: Numbers

    /// number = [ "-" ] ( "0" / [1-9] *DIGIT ) [ "." 1*DIGIT ] [ ( "e" / "E" ) [ "+" / "-" ] 1*DIGIT ]
    mutating func parseNumber() throws -> Double {
        let start = pos
        func isDigit(_ i: Int) -> Bool { i < base.count && base[i] >= Self.zero && base[i] <= Self.nine }
        if base[pos] == Self.minus { pos += 1 }
        guard isDigit(pos) else { throw unexpected(at: pos, expecting: "a digit") }
        if base[pos] == Self.zero {
            pos += 1
            if isDigit(pos) { throw fail("leading zero in a number", at: start) }
        } else {
            while isDigit(pos) { pos += 1 }
        }
        if pos < base.count && base[pos] == Self.dot {
            pos += 1
            guard isDigit(pos) else { throw unexpected(at: pos, expecting: "a digit after '.'") }
            while isDigit(pos) { pos += 1 }
        }
        if pos < base.count && (base[pos] == 0x65 || base[pos] == 0x45) {
            pos += 1
            if pos < base.count && (base[pos] == Self.plus || base[pos] == Self.minus) { pos += 1 }
            guard isDigit(pos) else { throw unexpected(at: pos, expecting: "a digit in the exponent") }
            while isDigit(pos) { pos += 1 }
        }
        // The grammar above is a subset of what Double(_:) accepts, and Double(_:) is
        // locale-independent and correctly rounded.
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: base[start..<pos]), as: UTF8.self)
        guard let d = Double(text) else { throw fail("invalid number", at: start) }
        guard d.isFinite else { throw fail("number \(text) is out of range", at: start) }
        return d
    }

    // MARK: Strings

    static func hexValue(_ b: UInt8) -> UInt32? {
        switch b {
        case 0x30...0x39: return UInt32(b - 0x30)
        case 0x41...0x46: return UInt32(b - 0x41 + 10)
        case 0x61...0x66: return UInt32(b - 0x61 + 10)
        default: return nil
        }
    }

    /// Reads the 4 hex digits of a `\u` escape whose backslash is at `escapeStart`; `pos` is
    /// just past the `u`.
    mutating func hex4(escapeStart: Int) throws -> UInt32 {
        var v: UInt32 = 0
        for _ in 0..<4 {
            guard pos < base.count else { throw unexpected(at: pos, expecting: "4 hex digits after \\u") }
            guard let h = Self.hexValue(base[pos]) else {
                throw fail("invalid \\u escape (expected 4 hex digits)", at: escapeStart)
            }
            v = v << 4 | h
            pos += 1
        }
        return v
    }

    /// Length of the well-formed UTF-8 sequence at `i` (2, 3 or 4), or nil (Unicode Table 3-7).
    func utf8SequenceLength(at i: Int) -> Int? {
        let b0 = base[i]
        let n: Int
        var lo: UInt8 = 0x80, hi: UInt8 = 0xBF
        switch b0 {
        case 0xC2...0xDF: n = 2
        case 0xE0: n = 3; lo = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: n = 3
        case 0xED: n = 3; hi = 0x9F
        case 0xF0: n = 4; lo = 0x90
        case 0xF1...0xF3: n = 4
        case 0xF4: n = 4; hi = 0x8F
        default: return nil
        }
        guard i + n <= base.count else { return nil }
        guard base[i + 1] >= lo && base[i + 1] <= hi else { return nil }
        for k in 2..<n where base[i + k] < 0x80 || base[i + k] > 0xBF { return nil }
        return n
    }

    mutating func parseString() throws -> String {
        let open = pos
        pos += 1  // opening quote
        let runStart = pos
        // Fast path: no escapes; the bytes are validated and decoded in one go.
        while pos < base.count {
            let b = base[pos]
            if b == Self.quote {
                let s = String(decoding: UnsafeRawBufferPointer(rebasing: base[runStart..<pos]), as: UTF8.self)
                pos += 1
                return s
            }
            if b == Self.backslash { break }
            try stepPlainByte(b)
        }
        guard pos < base.count else { throw fail("unterminated string starting", at: open) }
        // Slow path: collect bytes, decoding escapes.
        var out = [UInt8](UnsafeRawBufferPointer(rebasing: base[runStart..<pos]))
        while pos < base.count {
            let b = base[pos]
            if b == Self.quote {
                pos += 1
                return String(decoding: out, as: UTF8.self)
            }
            if b != Self.backslash {
                let from = pos
                try stepPlainByte(b)
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: base[from..<pos]))
                continue
            }
            let escapeStart = pos
            pos += 1
            guard pos < base.count else { break }
            let e = base[pos]
            pos += 1
            switch e {
            case Self.quote: out.append(Self.quote)
            case Self.backslash: out.append(Self.backslash)
            case Self.slash: out.append(Self.slash)
            case 0x62: out.append(0x08)  // \b
            case 0x66: out.append(0x0C)  // \f
            case 0x6E: out.append(0x0A)  // \n
            case 0x72: out.append(0x0D)  // \r
            case 0x74: out.append(0x09)  // \t
            case 0x75:  // \uXXXX
                var scalar = try hex4(escapeStart: escapeStart)
                if scalar >= 0xD800 && scalar <= 0xDBFF {
                    guard pos + 1 < base.count, base[pos] == Self.backslash, base[pos + 1] == 0x75 else {
                        throw fail("high surrogate \\u\(String(scalar, radix: 16, uppercase: true)) not followed by a low surrogate", at: escapeStart)
                    }
                    let lowStart = pos
                    pos += 2
                    let low = try hex4(escapeStart: lowStart)
                    guard low >= 0xDC00 && low <= 0xDFFF else {
                        throw fail("high surrogate not followed by a low surrogate", at: lowStart)
                    }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if scalar >= 0xDC00 && scalar <= 0xDFFF {
                    throw fail("lone low surrogate \\u\(String(scalar, radix: 16, uppercase: true))", at: escapeStart)
                }
                // Not a surrogate, so always a valid scalar.
                guard let u = Unicode.Scalar(scalar) else { throw fail("invalid \\u escape", at: escapeStart) }
                out.append(contentsOf: UTF8.encode(u)!)
            default:
                throw fail("invalid escape \\\(describe(e))", at: escapeStart)
            }
        }
        throw fail("unterminated string starting", at: open)
    }

    /// Advances over one unescaped character (ASCII or a UTF-8 sequence) starting with byte `b`.
    mutating func stepPlainByte(_ b: UInt8) throws {
        if b < 0x20 { throw fail("unescaped control \(describe(b)) in a string", at: pos) }
        if b < 0x80 { pos += 1; return }
        guard let n = utf8SequenceLength(at: pos) else { throw fail("invalid UTF-8 in a string", at: pos) }
        pos += n
    }
}

// MARK: - Serializing

extension JSONValue {
    /// Compact JSON text (no whitespace), object members in stored order.
    ///
    /// Integral numbers of magnitude ≤ 2^53 − 1 are written without a fraction (`3`, not `3.0`);
    /// other finite numbers use Swift's shortest round-trip form (`0.1`, `1e-07`). JSON has no
    /// NaN or infinity: non-finite numbers are written as `null`.
    public func serialized() -> String {
        var out: [UInt8] = []
        JSONValue.write(self, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    static func write(_ v: JSONValue, to out: inout [UInt8]) {
        switch v {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .number(let d): out.append(contentsOf: formatNumber(d).utf8)
        case .string(let s): writeString(s, to: &out)
        case .array(let a):
            out.append(0x5B)
            for (i, e) in a.enumerated() {
                if i > 0 { out.append(0x2C) }
                write(e, to: &out)
            }
            out.append(0x5D)
        case .object(let o):
            out.append(0x7B)
            for (i, (k, e)) in o.enumerated() {
                if i > 0 { out.append(0x2C) }
                writeString(k, to: &out)
                out.append(0x3A)
                write(e, to: &out)
            }
            out.append(0x7D)
        }
    }

    static func formatNumber(_ d: Double) -> String {
        guard d.isFinite else { return "null" }
        if d.rounded(.towardZero) == d && d.magnitude <= maxSafeInteger { return String(Int(d)) }
        return d.description  // e.g. "0.1", "1e-07", "1e+20": all valid JSON numbers
    }

    static func writeString(_ s: String, to out: inout [UInt8]) {
        let hex: [UInt8] = Array("0123456789abcdef".utf8)
        out.append(0x22)
        for b in s.utf8 {
            switch b {
            case 0x22: out.append(0x5C); out.append(0x22)
            case 0x5C: out.append(0x5C); out.append(0x5C)
            case 0x0A: out.append(0x5C); out.append(0x6E)
            case 0x0D: out.append(0x5C); out.append(0x72)
            case 0x09: out.append(0x5C); out.append(0x74)
            case 0x08: out.append(0x5C); out.append(0x62)
            case 0x0C: out.append(0x5C); out.append(0x66)
            case 0..<0x20:
                out.append(contentsOf: [0x5C, 0x75, 0x30, 0x30, hex[Int(b >> 4)], hex[Int(b & 0xF)]])
            default: out.append(b)
            }
        }
        out.append(0x22)
    }
}
