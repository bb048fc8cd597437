/// FNV-1a-style 64-bit hash over 32-bit words, in four interleaved lanes (fast; detects
/// corruption, not tampering). Used by training checkpoints and patch-index files.
public struct Checksum: Sendable {
    static let prime: UInt64 = 0x0000_0100_0000_01B3
    var h0: UInt64 = 0xCBF2_9CE4_8422_2325, h1: UInt64 = 0xCBF2_9CE4_8422_2324
    var h2: UInt64 = 0xCBF2_9CE4_8422_2327, h3: UInt64 = 0xCBF2_9CE4_8422_2326
    var total: UInt64 = 0

    public init() {}

    /// Adds `n` 32-bit words at `raw` (4-byte aligned).
    public mutating func add(_ raw: UnsafeRawPointer, words n: Int) {
        let p = Self.prime
        let w = raw.assumingMemoryBound(to: UInt32.self)
        var a = h0, b = h1, c = h2, d = h3
        var i = 0
        while i + 4 <= n {
            a = (a ^ UInt64(w[i])) &* p
            b = (b ^ UInt64(w[i + 1])) &* p
            c = (c ^ UInt64(w[i + 2])) &* p
            d = (d ^ UInt64(w[i + 3])) &* p
            i += 4
        }
        while i < n { a = (a ^ UInt64(w[i])) &* p; i += 1 }
        h0 = a; h1 = b; h2 = c; h3 = d
        total &+= UInt64(n)
    }

    /// Adds a string map (e.g. a safetensors `__metadata__`): every entry but `checksum`, sorted
    /// by key, each key and value as UTF-8 with a 0 byte after each, zero-padded to whole words.
    public mutating func add(metadata: [String: String]) {
        var bytes: [UInt8] = []
        for k in metadata.keys.sorted() where k != "checksum" {
            bytes += Array(k.utf8) + [0] + Array(metadata[k]!.utf8) + [0]
        }
        while bytes.count % 4 != 0 { bytes.append(0) }
        guard !bytes.isEmpty else { return }
        bytes.withUnsafeBytes { add($0.baseAddress!, words: $0.count / 4) }
    }

    public var value: UInt64 {
        let p = Self.prime
        var h = (h0 ^ total) &* p
        h = (h ^ h1) &* p
        h = (h ^ h2) &* p
        h = (h ^ h3) &* p
        return h
    }
}
