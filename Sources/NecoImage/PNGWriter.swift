import CImageIO
import NecoCore

/// Writes ``RGBImage`` as 8-bit RGB PNG (libpng's simplified writer; an sRGB chunk is included).
public enum PNGWriter {
    /// Encodes `img` (`(H, W, 3)` RGB8) as a PNG file in memory.
    ///
    /// - Throws: `NecoError(.outOfMemory)` beyond 65535 pixels a side or 2^28 pixels;
    ///   `NecoError(.internal)` if libpng fails otherwise.
    public static func encode(_ img: RGBImage) throws -> [UInt8] {
        var png: UnsafeMutablePointer<UInt8>? = nil
        var length = 0
        var message = [CChar](repeating: 0, count: Int(CIMAGEIO_ERR_LEN))
        let status: Int32 = img.pixels.withUnsafeBufferPointer { px in
            message.withUnsafeMutableBufferPointer { err in
                cimageio_encode_png(px.baseAddress, Int32(clamping: img.width), Int32(clamping: img.height),
                                    &png, &length, err.baseAddress, err.count)
            }
        }
        defer { cimageio_free(png) }
        guard status == CIMAGEIO_OK.rawValue, let png else {
            let reason = ImageDecoder.cString(message)
            let kind: NecoError.Kind = status == CIMAGEIO_ERR_TOO_LARGE.rawValue ? .outOfMemory : .internal
            throw NecoError(kind, "PNG encoding of a \(img.width)x\(img.height) image failed: \(reason)")
        }
        return [UInt8](UnsafeBufferPointer(start: png, count: length))
    }

    /// Encodes `img` and writes it to `path` atomically (temporary file, fsync, rename): the
    /// file is either the old one or the complete new one.
    ///
    /// - Throws: `NecoError(.io)` naming `path` when it cannot be written; as ``encode(_:)``.
    public static func write(_ img: RGBImage, to path: String) throws {
        let bytes = try encode(img)
        try FileIO.writeAtomically(path, bytes: bytes)
    }
}
