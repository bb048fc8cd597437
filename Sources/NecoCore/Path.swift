#if canImport(Glibc)
import Glibc
#endif

/// File names are bytes on Linux; Swift strings are Unicode. libneco keeps a path's exact bytes
/// from the caller to the system call:
///
/// - `Path.string(bytes)` decodes the UTF-8 parts as usual and carries every byte that is not
///   part of valid UTF-8 as the private-use scalar U+10FF00 + byte (U+10FF80…U+10FFFF), in the
///   spirit of Python's "surrogateescape" (Swift strings cannot hold lone surrogates). Valid
///   UTF-8 that itself encodes a scalar of that range is carried byte by byte the same way, so
///   the mapping is reversible for every byte string.
/// - `Path.withCString(path)` turns those scalars back into their bytes for `open`, `stat`,
///   `rename`, … (plain UTF-8 otherwise).
/// - `Path.display(path)` is the printable form for messages: escaped bytes as `\xff`, control
///   characters as `\n`, `\t`, `\x01`, so that a message stays one line.
///
/// Every library function that passes a path to the system goes through `withCString`.
public enum Path {
    static let escapeBase: UInt32 = 0x10FF00
    static let escapeFirst: UInt32 = 0x10FF80

    /// The path for the bytes `bytes` (no NUL).
    public static func string<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        // Fast path: ASCII, or UTF-8 without the escape range.
        var scalars = String.UnicodeScalarView()
        var parser = Unicode.UTF8.ForwardParser()
        var it = bytes.makeIterator()
        var rest = bytes[...]
        while true {
            switch parser.parseScalar(from: &it) {
            case .valid(let encoded):
                let s = Unicode.UTF8.decode(encoded)
                if s.value >= escapeFirst {
                    for b in encoded { scalars.append(Unicode.Scalar(escapeBase + UInt32(b))!) }
                } else {
                    scalars.append(s)
                }
                rest = rest.dropFirst(encoded.count)
            case .error(let length):
                for b in rest.prefix(length) { scalars.append(Unicode.Scalar(escapeBase + UInt32(b))!) }
                rest = rest.dropFirst(length)
            case .emptyInput:
                return String(scalars)
            }
        }
    }

    /// The path of a NUL-terminated C string.
    public static func string(cString p: UnsafePointer<CChar>) -> String {
        let n = strlen(p)
        return p.withMemoryRebound(to: UInt8.self, capacity: n) { string(UnsafeBufferPointer(start: $0, count: n)) }
    }

    /// The bytes of `path` (escaped bytes restored).
    public static func bytes(_ path: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(path.utf8.count)
        for s in path.unicodeScalars {
            if s.value >= escapeFirst {
                out.append(UInt8(s.value - escapeBase))
            } else {
                out.append(contentsOf: String(s).utf8)
            }
        }
        return out
    }

    /// Calls `body` with the NUL-terminated bytes of `path`.
    public static func withCString<R>(_ path: String, _ body: (UnsafePointer<CChar>) throws -> R) rethrows -> R {
        guard path.unicodeScalars.contains(where: { $0.value >= escapeFirst }) else { return try path.withCString(body) }
        var b = bytes(path)
        b.append(0)
        return try b.withUnsafeBufferPointer { try $0.withMemoryRebound(to: CChar.self) { try body($0.baseAddress!) } }
    }

    /// `path` (or any message holding paths) for display on one line: escaped bytes as `\xNN`,
    /// newline, carriage return and tab as `\n`, `\r`, `\t`, other control characters as `\xNN`.
    public static func display(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F || $0.value >= escapeFirst }) else {
            return text
        }
        var out = String.UnicodeScalarView()
        func hex(_ v: UInt32) {
            let digits = Array("0123456789abcdef".unicodeScalars)
            out.append(contentsOf: "\\x".unicodeScalars)
            out.append(digits[Int(v >> 4) & 15])
            out.append(digits[Int(v) & 15])
        }
        for s in text.unicodeScalars {
            switch s.value {
            case 0x0A: out.append(contentsOf: "\\n".unicodeScalars)
            case 0x0D: out.append(contentsOf: "\\r".unicodeScalars)
            case 0x09: out.append(contentsOf: "\\t".unicodeScalars)
            case 0..<0x20, 0x7F: hex(s.value)
            case escapeFirst...: hex(s.value - escapeBase)
            default: out.append(s)
            }
        }
        return String(out)
    }
}
