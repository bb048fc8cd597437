import NecoCore

#if canImport(Glibc)
import Glibc
#endif

/// The patch-index file (`PatchIndex.save` / `PatchIndex.load`, C: neco_index_save / _load).
///
/// Layout, little-endian (the byte order of every host libneco builds for):
///
///     offset  size      field
///     0       8         magic "NECOIDX\0"
///     8       4         format version (UInt32), 1
///     12      4         D, row width (UInt32)
///     16      8         M, rows (UInt64)
///     24      8         reserved, 0
///     32      4·M·D     rows (M, D) Float32, L2-normalised as the index holds them
///     ...     4·M       labels (M) Int32, −1 for rows added without a label
///     ...     8         checksum (UInt64): `Checksum` over every 32-bit word before it
///
/// The rows are stored normalised, so a loaded index gives bit-identical searches.
extension PatchIndex {
    static let fileMagic: [UInt8] = Array("NECOIDX".utf8) + [0]
    /// The format this library writes; `load` reads this version only and names it otherwise.
    public static let fileFormatVersion: UInt32 = 1
    static let headerBytes = 32

    /// Writes the index to `path` atomically (a temporary file, fsync, rename): a failure leaves
    /// any previous file at `path` as it was. Only reads the index.
    /// - Throws: `.io` when the file cannot be written.
    public func save(to path: String) throws {
        var header = [UInt32](repeating: 0, count: PatchIndex.headerBytes / 4)
        header.withUnsafeMutableBytes { raw in
            for (i, b) in PatchIndex.fileMagic.enumerated() { raw[i] = b }
            raw.storeBytes(of: PatchIndex.fileFormatVersion.littleEndian, toByteOffset: 8, as: UInt32.self)
            raw.storeBytes(of: UInt32(dim).littleEndian, toByteOffset: 12, as: UInt32.self)
            raw.storeBytes(of: UInt64(count).littleEndian, toByteOffset: 16, as: UInt64.self)
        }
        var hasher = Checksum()
        let rows = count * dim
        try FileIO.writeAtomically(path) { fd in
            try header.withUnsafeBytes { h in
                hasher.add(h.baseAddress!, words: header.count)
                try FileIO.writeAll(fd, h, path: path)
            }
            if count > 0, let bank, let labelStore {
                hasher.add(bank, words: rows)
                try FileIO.writeAll(fd, UnsafeRawBufferPointer(start: bank, count: rows * 4), path: path)
                hasher.add(labelStore, words: count)
                try FileIO.writeAll(fd, UnsafeRawBufferPointer(start: labelStore, count: count * 4), path: path)
            }
            var sum = hasher.value.littleEndian
            try withUnsafeBytes(of: &sum) { try FileIO.writeAll(fd, $0, path: path) }
        }
    }

    /// Reads an index written by `save`.
    /// - Throws: `.io` when the file cannot be read; `.format` for a file that is not a libneco
    ///   index, a format version other than `fileFormatVersion`, a size that does not match its
    ///   header (truncated or extended), an impossible header, or a checksum mismatch (corrupt);
    ///   `.outOfMemory` when the rows do not fit.
    public static func load(path: String) throws -> PatchIndex {
        let bytes = try FileIO.readAll(path)
        func bad(_ why: String) -> NecoError { NecoError.format("\(path): \(why)") }
        guard bytes.count >= headerBytes + 8, Array(bytes[0..<8]) == fileMagic else {
            throw bad("not a libneco patch-index file (no NECOIDX header)")
        }
        return try bytes.withUnsafeBytes { raw -> PatchIndex in
            let version = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
            guard version == fileFormatVersion else {
                throw bad("patch-index format version \(version); this libneco reads version \(fileFormatVersion)")
            }
            let d = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 12, as: UInt32.self)))
            let m64 = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
            guard d >= 1, d <= maxDim else { throw bad("row width \(d) out of range 1...\(maxDim)") }
            guard m64 <= UInt64(maxBankFloats / d) else { throw bad("\(m64) rows × \(d) exceed the index limit") }
            let m = Int(m64)
            let expected = headerBytes + 4 * m * d + 4 * m + 8
            guard bytes.count == expected else {
                throw bad("\(bytes.count) bytes where the header (\(m) rows × \(d)) needs \(expected): truncated or extended")
            }
            var hasher = Checksum()
            hasher.add(raw.baseAddress!, words: (expected - 8) / 4)
            let stored = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: expected - 8, as: UInt64.self))
            guard stored == hasher.value else { throw bad("checksum mismatch: the file is corrupt") }

            let index = try PatchIndex(dim: d)
            guard m > 0 else { return index }
            try index.reserve(m)
            guard let bank = index.bank, let labels = index.labelStore else {
                throw NecoError(.internal, "index storage missing")
            }
            UnsafeMutableRawPointer(bank).copyMemory(from: raw.baseAddress! + headerBytes, byteCount: 4 * m * d)
            UnsafeMutableRawPointer(labels).copyMemory(from: raw.baseAddress! + headerBytes + 4 * m * d, byteCount: 4 * m)
            // Rows written by `save` are finite; a file that passes the checksum but holds other
            // values was not written by libneco.
            for i in 0..<(m * d) where !bank[i].isFinite {
                throw bad("row \(i / d) holds a non-finite value")
            }
            index.count = m
            return index
        }
    }
}
