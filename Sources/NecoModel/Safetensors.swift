// safetensors reading (memory-mapped, validated) and writing (atomic).
//
// ### Format
// ```
// bytes [0, 8)          N: the header size, an unsigned 64-bit little-endian integer
// bytes [8, 8+N)        the header: a UTF-8 JSON object, possibly padded with trailing spaces
// bytes [8+N, EOF)      the data buffer: raw little-endian, row-major (C order) tensor data
// ```
// The header maps each tensor name to
// `{"dtype": "F32", "shape": [3, 4], "data_offsets": [begin, end]}`, where `begin`/`end` are byte
// offsets **relative to the start of the data buffer** (not the file), `end − begin ==
// product(shape) × size(dtype)`, and a shape of `[]` is a scalar (one element). The optional key
// `__metadata__` maps strings to strings. Python's reader additionally demands that the tensors
// tile the data buffer without gaps; this reader only demands that each lies inside it.
//
// ### References
// https://github.com/huggingface/safetensors (README "Format", safetensors/src/tensor.rs)

#if canImport(Glibc)
import Glibc
#endif
import NecoCore

#if _endian(big)
#error("libneco assumes a little-endian host: safetensors data is read by memcpy")
#endif

/// Element types of the safetensors format. Raw values are the header's `dtype` strings.
public enum DType: String, Sendable, CaseIterable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case f8e5m2 = "F8_E5M2", f8e4m3 = "F8_E4M3"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8"
    case u64 = "U64", u32 = "U32", u16 = "U16", u8 = "U8"
    case bool = "BOOL"

    /// Bytes per element.
    public var elementSize: Int {
        switch self {
        case .f64, .i64, .u64: return 8
        case .f32, .i32, .u32: return 4
        case .f16, .bf16, .i16, .u16: return 2
        case .f8e5m2, .f8e4m3, .i8, .u8, .bool: return 1
        }
    }
}

/// One tensor entry of a safetensors header.
public struct TensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: DType
    /// Row-major dimensions; `[]` for a scalar.
    public let shape: [Int]
    /// Number of elements: the product of `shape` (1 for a scalar).
    public let count: Int
    /// Byte range inside the data buffer (relative to its start), `count × dtype.elementSize` long.
    public let dataOffsets: Range<Int>
}

// MARK: - Reader

/// A memory-mapped, fully validated safetensors file.
///
/// `init` checks the whole header against the file size, so the read functions cannot go out of
/// bounds. The tensor data is not copied until it is read.
///
/// Thread safety: immutable after `init`; the mapping is read-only and private, so one instance
/// can be read from several threads at once (hence `@unchecked Sendable`). As with any `mmap`,
/// truncating the file on disk while it is mapped makes later reads fault; do not do that.
public final class SafetensorsFile: @unchecked Sendable {
    /// Headers above this size are rejected, as Python's reader does (`MAX_HEADER_SIZE`).
    public static let maxHeaderSize = 100_000_000

    public let path: String
    /// The `__metadata__` map (empty when absent).
    public let metadata: [String: String]
    /// Tensor names in header order.
    public let names: [String]

    private let infos: [String: TensorInfo]
    private let mapping: UnsafeMutableRawPointer
    private let mappedSize: Int
    /// The data buffer: `mapping + 8 + N` up to the end of the file.
    private let data: UnsafeRawBufferPointer

    /// Opens and maps `path` and validates its header.
    ///
    /// - Throws: `.io` if the file cannot be opened or mapped; `.format` with
    ///   `"<path>: <what is wrong>"` for anything malformed.
    public init(path: String) throws {
        self.path = path
        let (fd, fileSize) = try FileIO.openRegular(path)
        defer { close(fd) }
        guard fileSize >= 8 else {
            throw NecoError.format("\(path): file is \(fileSize) bytes, too short for a safetensors header (empty or truncated file?)")
        }
        guard let m = mmap(nil, fileSize, PROT_READ, MAP_PRIVATE, fd, 0),
              m != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw NecoError.io("\(path): mmap failed: \(FileIO.errnoString())")
        }
        var validated = false
        defer { if !validated { munmap(m, fileSize) } }
        let file = UnsafeRawBufferPointer(start: m, count: fileSize)
        let n = file.loadUnaligned(fromByteOffset: 0, as: UInt64.self)  // little-endian host
        guard n <= UInt64(fileSize - 8) else {
            throw NecoError.format("\(path): header length \(n) exceeds file size \(fileSize) (truncated file?)")
        }
        let headerSize = Int(n)
        guard headerSize <= Self.maxHeaderSize else {
            throw NecoError.format("\(path): header length \(n) exceeds the limit of \(Self.maxHeaderSize) bytes")
        }
        let dataBuffer = UnsafeRawBufferPointer(rebasing: file[(8 + headerSize)...])
        let header: Header
        do {
            header = try Self.parseHeader(UnsafeRawBufferPointer(rebasing: file[8..<(8 + headerSize)]),
                                          dataSize: dataBuffer.count)
        } catch let e as NecoError {
            throw NecoError(e.kind, "\(path): \(e.message)")
        }
        validated = true
        mapping = m
        mappedSize = fileSize
        data = dataBuffer
        metadata = header.metadata
        names = header.names
        infos = header.infos
    }

    deinit {
        munmap(mapping, mappedSize)
    }

    /// The entry for `name`, or nil if the file has no such tensor.
    public func info(_ name: String) -> TensorInfo? { infos[name] }

    // MARK: Header validation

    private struct Header {
        var metadata: [String: String] = [:]
        var names: [String] = []
        var infos: [String: TensorInfo] = [:]
    }

    private static func parseHeader(_ bytes: UnsafeRawBufferPointer, dataSize: Int) throws -> Header {
        let json: JSONValue
        do {
            json = try JSONValue.parse(bytes)
        } catch let e as NecoError {
            throw NecoError.format("header is not valid JSON: \(e.message) of the header")
        }
        guard let members = json.objectValue else {
            throw NecoError.format("header is not a JSON object")
        }
        var h = Header()
        h.names.reserveCapacity(members.count)
        for (name, value) in members {
            if name == "__metadata__" {
                guard let entries = value.objectValue else {
                    throw NecoError.format("__metadata__ is not an object")
                }
                for (k, v) in entries {
                    guard let s = v.stringValue else {
                        throw NecoError.format("__metadata__ value for '\(k)' is not a string")
                    }
                    h.metadata[k] = s
                }
                continue
            }
            let info = try parseEntry(name, value, dataSize: dataSize)
            h.names.append(name)
            h.infos[name] = info
        }
        return h
    }

    private static func parseEntry(_ name: String, _ value: JSONValue, dataSize: Int) throws -> TensorInfo {
        func bad(_ what: String) -> NecoError { NecoError.format("tensor '\(name)': \(what)") }
        guard value.objectValue != nil else { throw bad("entry is not a JSON object") }
        guard let dtypeValue = value["dtype"] else { throw bad("missing \"dtype\"") }
        guard let dtypeString = dtypeValue.stringValue else { throw bad("\"dtype\" is not a string") }
        guard let dtype = DType(rawValue: dtypeString) else { throw bad("unknown dtype '\(dtypeString)'") }

        guard let shapeValue = value["shape"] else { throw bad("missing \"shape\"") }
        guard let dims = shapeValue.arrayValue else { throw bad("\"shape\" is not an array") }
        var shape: [Int] = []
        shape.reserveCapacity(dims.count)
        var count = 1
        var overflow = false
        for d in dims {
            guard let v = d.intValue, v >= 0 else {
                throw bad("shape \(shapeValue.serialized()) has an entry that is not a non-negative integer")
            }
            shape.append(v)
            (count, overflow) = count.multipliedReportingOverflow(by: v)
            if overflow { throw bad("shape \(shapeValue.serialized()) is too large") }
        }
        let (byteCount, o2) = count.multipliedReportingOverflow(by: dtype.elementSize)
        if o2 { throw bad("shape \(shapeValue.serialized()) is too large") }

        guard let offsetsValue = value["data_offsets"] else { throw bad("missing \"data_offsets\"") }
        guard let offsets = offsetsValue.arrayValue, offsets.count == 2,
              let begin = offsets[0].intValue, let end = offsets[1].intValue, begin >= 0, end >= 0 else {
            throw bad("\"data_offsets\" \(offsetsValue.serialized()) is not [begin, end] with non-negative integers")
        }
        guard begin <= end else { throw bad("data_offsets [\(begin), \(end)] has begin > end") }
        let shapeText = "[" + shape.map(String.init).joined(separator: ", ") + "]"
        guard end - begin == byteCount else {
            throw bad("data_offsets [\(begin), \(end)] span \(end - begin) bytes but \(dtype.rawValue) \(shapeText) needs \(byteCount)")
        }
        guard end <= dataSize else {
            throw NecoError.format("tensor '\(name)' ends at byte \(end) but the data section has \(dataSize) bytes (truncated file?)")
        }
        return TensorInfo(name: name, dtype: dtype, shape: shape, count: count, dataOffsets: begin..<end)
    }

    // MARK: Reading

    private func lookup(_ name: String) throws -> TensorInfo {
        guard let i = infos[name] else { throw NecoError.format("\(path): no tensor named '\(name)'") }
        return i
    }

    private func checkCount(_ info: TensorInfo, _ n: Int) throws {
        guard n == info.count else {
            throw NecoError.shape("\(path): tensor '\(info.name)' has \(info.count) elements but the buffer holds \(n)")
        }
    }

    /// Calls `body` with the tensor's raw little-endian bytes, straight from the mapping (no copy).
    /// The pointer is valid only inside `body`. Throws `.format` if there is no tensor `name`.
    public func withRawBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let info = try lookup(name)
        return try withExtendedLifetime(self) {
            try body(UnsafeRawBufferPointer(rebasing: data[info.dataOffsets]))
        }
    }

    /// Reads a floating-point tensor into `into`, converting to `Float`.
    ///
    /// F32 is copied with `memcpy`; F16 and BF16 are widened exactly (see
    /// `float32(fromFloat16Bits:)`, `float32(fromBFloat16Bits:)`); F64 is rounded to nearest.
    ///
    /// - Throws: `.format` if there is no tensor `name` or its dtype is not F32/F16/BF16/F64;
    ///   `.shape` if `into.count` differs from the tensor's element count.
    public func readFloat32(_ name: String, into out: UnsafeMutableBufferPointer<Float>) throws {
        let info = try lookup(name)
        guard [.f32, .f16, .bf16, .f64].contains(info.dtype) else {
            throw NecoError.format("\(path): tensor '\(name)' has dtype \(info.dtype.rawValue); expected a float type (F32, F16, BF16 or F64)")
        }
        try checkCount(info, out.count)
        let n = info.count
        guard n > 0, let dst = out.baseAddress else { return }
        let src = data.baseAddress! + info.dataOffsets.lowerBound
        withExtendedLifetime(self) {
            switch info.dtype {
            case .f32:
                memcpy(dst, src, n * 4)
            case .f16:
                for i in 0..<n {
                    dst[i] = Self.float32(fromFloat16Bits: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                }
            case .bf16:
                for i in 0..<n {
                    dst[i] = Self.float32(fromBFloat16Bits: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                }
            case .f64:
                for i in 0..<n {
                    dst[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Double.self))
                }
            default:
                break  // excluded above
            }
            releasePages(src, count: info.dataOffsets.count)
        }
    }

    /// Drops the whole pages of `[start, start + count)` from this process's resident set (the
    /// page cache keeps them; a later read maps them in again). Loading a model therefore never
    /// holds the file's pages and the copied weights in memory at once (peak RSS ≈ weights, not 2×).
    private func releasePages(_ start: UnsafeRawPointer, count: Int) {
        let page = max(4096, Int(sysconf(Int32(_SC_PAGESIZE))))
        let lo = (Int(bitPattern: start) + page - 1) / page * page
        let hi = (Int(bitPattern: start) + count) / page * page
        if hi > lo { _ = madvise(UnsafeMutableRawPointer(bitPattern: lo), hi - lo, MADV_DONTNEED) }
    }

    /// The tensor converted to `Float` (see `readFloat32(_:into:)`), in row-major order.
    public func floats(_ name: String) throws -> [Float] {
        let info = try lookup(name)
        var out = [Float](repeating: 0, count: info.count)
        try out.withUnsafeMutableBufferPointer { try readFloat32(name, into: $0) }
        return out
    }

    /// Reads an integer (or BOOL) tensor into `into`, widening to `Int64`.
    ///
    /// - Throws: `.format` if there is no tensor `name`, its dtype is not an integer type, or a U64
    ///   value exceeds `Int64.max`; `.shape` if `into.count` differs from the element count.
    public func readInt64(_ name: String, into out: UnsafeMutableBufferPointer<Int64>) throws {
        let info = try lookup(name)
        switch info.dtype {
        case .i64, .i32, .i16, .i8, .u64, .u32, .u16, .u8, .bool: break
        default:
            throw NecoError.format("\(path): tensor '\(name)' has dtype \(info.dtype.rawValue); expected an integer type")
        }
        try checkCount(info, out.count)
        let n = info.count
        guard n > 0, let dst = out.baseAddress else { return }
        let src = data.baseAddress! + info.dataOffsets.lowerBound
        try withExtendedLifetime(self) {
            switch info.dtype {
            case .i64: memcpy(dst, src, n * 8)
            case .i32: for i in 0..<n { dst[i] = Int64(src.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
            case .i16: for i in 0..<n { dst[i] = Int64(src.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)) }
            case .i8: for i in 0..<n { dst[i] = Int64(src.load(fromByteOffset: i, as: Int8.self)) }
            case .u32: for i in 0..<n { dst[i] = Int64(src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)) }
            case .u16: for i in 0..<n { dst[i] = Int64(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
            case .u8, .bool: for i in 0..<n { dst[i] = Int64(src.load(fromByteOffset: i, as: UInt8.self)) }
            case .u64:
                for i in 0..<n {
                    let v = src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)
                    guard let w = Int64(exactly: v) else {
                        throw NecoError.format("\(path): tensor '\(name)' element \(i) = \(v) does not fit in Int64")
                    }
                    dst[i] = w
                }
            default: break  // excluded above
            }
        }
    }

    /// The integer tensor as `[Int]` (see `readInt64(_:into:)`), in row-major order.
    public func ints(_ name: String) throws -> [Int] {
        let info = try lookup(name)
        var out = [Int64](repeating: 0, count: info.count)
        try out.withUnsafeMutableBufferPointer { try readInt64(name, into: $0) }
        return out.map { Int($0) }
    }

    // MARK: Half-precision conversion

    /// IEEE 754 binary16 bits to `Float`, exactly: normals, subnormals (down to 2^-24), signed
    /// zeros, infinities, and NaNs (payload kept in the high mantissa bits).
    @inlinable
    public static func float32(fromFloat16Bits h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exponent = UInt32(h >> 10) & 0x1F
        let mantissa = UInt32(h & 0x03FF)
        if exponent == 0x1F {  // inf / nan
            return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
        }
        if exponent == 0 {  // zero / subnormal: mantissa × 2^-24, exact in Float
            let magnitude = Float(mantissa) * 0x1p-24
            return sign != 0 ? -magnitude : magnitude
        }
        // normal: rebias 15 → 127
        return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
    }

    /// bfloat16 bits to `Float`, exactly: bfloat16 is the upper half of a binary32.
    @inlinable
    public static func float32(fromBFloat16Bits b: UInt16) -> Float {
        Float(bitPattern: UInt32(b) << 16)
    }
}

// MARK: - Writer

/// Builds a safetensors file of F32 and I64 tensors and writes it atomically.
///
/// Layout written: the 8-byte header size, the JSON header (`__metadata__` first with sorted keys
/// when non-empty, then the tensors in insertion order) padded with spaces to a multiple of 8
/// bytes, so the data buffer starts 8-byte aligned. Tensor data is packed without gaps (Python's
/// reader rejects gaps), I64 tensors first, then F32, each group in insertion order, so every
/// tensor is aligned to its element size. The files load with Python's `safetensors`.
///
/// Inputs are copied (arrays passed as `[Float]`/`[Int64]` share storage until mutated).
public struct SafetensorsWriter: Sendable {
    private enum Payload {
        case f32([Float])
        case i64([Int64])

        var dtype: DType {
            switch self {
            case .f32: return .f32
            case .i64: return .i64
            }
        }

        var byteCount: Int {
            switch self {
            case .f32(let a): return a.count * 4
            case .i64(let a): return a.count * 8
            }
        }
    }

    private struct Entry {
        let name: String
        let shape: [Int]
        let payload: Payload
    }

    /// Written as `__metadata__` (omitted when empty).
    public var metadata: [String: String] = [:]
    private var entries: [Entry] = []
    private var nameSet: Set<String> = []

    public init() {}

    /// Tensor names in insertion order.
    public var names: [String] { entries.map(\.name) }

    /// Adds an F32 tensor (data copied).
    /// - Throws: `.invalidArgument` for a duplicate or reserved name or a negative dimension;
    ///   `.shape` if `product(shape) != data.count`.
    public mutating func add(_ name: String, shape: [Int], data: UnsafeBufferPointer<Float>) throws {
        try add(name, shape: shape, floats: Array(data))
    }

    /// Adds an F32 tensor.
    public mutating func add(_ name: String, shape: [Int], floats: [Float]) throws {
        try check(name, shape: shape, count: floats.count)
        append(Entry(name: name, shape: shape, payload: .f32(floats)))
    }

    /// Adds an I64 tensor (data copied).
    public mutating func addInt64(_ name: String, shape: [Int], data: UnsafeBufferPointer<Int64>) throws {
        try addInt64(name, shape: shape, ints: Array(data))
    }

    /// Adds an I64 tensor.
    public mutating func addInt64(_ name: String, shape: [Int], ints: [Int64]) throws {
        try check(name, shape: shape, count: ints.count)
        append(Entry(name: name, shape: shape, payload: .i64(ints)))
    }

    /// Adds an I64 tensor from `Int`s.
    public mutating func addInt64(_ name: String, shape: [Int], ints: [Int]) throws {
        try addInt64(name, shape: shape, ints: ints.map { Int64($0) })
    }

    private func check(_ name: String, shape: [Int], count: Int) throws {
        guard name != "__metadata__" else {
            throw NecoError.invalidArgument("safetensors: '__metadata__' is reserved and cannot name a tensor")
        }
        guard !nameSet.contains(name) else {
            throw NecoError.invalidArgument("safetensors: duplicate tensor name '\(name)'")
        }
        var product = 1
        for d in shape {
            guard d >= 0 else {
                throw NecoError.invalidArgument("safetensors: tensor '\(name)': negative dimension in shape \(shape)")
            }
            let (p, o) = product.multipliedReportingOverflow(by: d)
            guard !o else { throw NecoError.invalidArgument("safetensors: tensor '\(name)': shape \(shape) is too large") }
            product = p
        }
        guard product == count else {
            throw NecoError.shape("safetensors: tensor '\(name)': shape \(shape) has \(product) elements but \(count) values were given")
        }
    }

    private mutating func append(_ e: Entry) {
        nameSet.insert(e.name)
        entries.append(e)
    }

    /// The header bytes (JSON padded with spaces to a multiple of 8) and the data order.
    private func layout() -> (header: [UInt8], order: [Int]) {
        // I64 (8-byte elements) before F32, stable within each group.
        let order = entries.indices.filter { entries[$0].payload.dtype == .i64 }
            + entries.indices.filter { entries[$0].payload.dtype != .i64 }
        var offsets = [Range<Int>](repeating: 0..<0, count: entries.count)
        var at = 0
        for i in order {
            let n = entries[i].payload.byteCount
            offsets[i] = at..<(at + n)
            at += n
        }
        var members: [(String, JSONValue)] = []
        if !metadata.isEmpty {
            let sorted = metadata.keys.sorted().map { ($0, JSONValue.string(metadata[$0]!)) }
            members.append(("__metadata__", .object(sorted)))
        }
        for (i, e) in entries.enumerated() {
            members.append((e.name, .object([
                ("dtype", .string(e.payload.dtype.rawValue)),
                ("shape", .array(e.shape.map { .number(Double($0)) })),
                ("data_offsets", .array([.number(Double(offsets[i].lowerBound)), .number(Double(offsets[i].upperBound))])),
            ])))
        }
        var header = Array(JSONValue.object(members).serialized().utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        return (header, order)
    }

    /// Writes the file atomically (temporary file in the same directory, fsync, rename): on any
    /// failure `path` is left as it was and no partial file remains.
    ///
    /// - Throws: `.io` if the file cannot be created or written.
    public func write(to path: String) throws {
        let (header, order) = layout()
        try FileIO.writeAtomically(path) { fd in
            var size = UInt64(header.count).littleEndian
            try withUnsafeBytes(of: &size) { try FileIO.writeAll(fd, $0, path: path) }
            try header.withUnsafeBytes { try FileIO.writeAll(fd, $0, path: path) }
            for i in order {
                switch entries[i].payload {
                case .f32(let a): try a.withUnsafeBytes { try FileIO.writeAll(fd, $0, path: path) }
                case .i64(let a): try a.withUnsafeBytes { try FileIO.writeAll(fd, $0, path: path) }
                }
            }
        }
    }
}
