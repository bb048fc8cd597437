import NecoCore

/// NumPy `.npy` (format 1.0) writer for float32 arrays, written atomically.
public enum Npy {
    public static func encode(shape: [Int], data: UnsafeBufferPointer<Float>) -> [UInt8] {
        let dims = shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? "," : "")
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(dims)), }"
        let total = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - total % 64) % 64) + "\n"
        var out: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0]
        let n = header.utf8.count
        out += [UInt8(n & 0xFF), UInt8(n >> 8)]
        out += Array(header.utf8)
        out.reserveCapacity(out.count + data.count * 4)
        out += UnsafeRawBufferPointer(data)
        return out
    }

    public static func write(_ path: String, shape: [Int], data: [Float]) throws {
        guard shape.reduce(1, *) == data.count else {
            throw NecoError.shape("npy: shape \(shape) does not hold \(data.count) values")
        }
        let bytes = data.withUnsafeBufferPointer { encode(shape: shape, data: $0) }
        try FileIO.writeAtomically(path, bytes: bytes)
    }
}
