import CImageIO
import NecoCore

/// Decodes JPEG and PNG files to ``RGBImage``, with the same pixels as Pillow's
/// `Image.open(path).convert("RGB")` (libjpeg-turbo with the ISLOW IDCT; libpng without gamma
/// correction, alpha dropped rather than composited; see `cimageio.h` for every rule).
///
/// EXIF orientation is not applied (Pillow does not apply it on open either).
public enum ImageDecoder {
    /// The container formats that ``decode(bytes:name:)`` recognises by their magic bytes.
    public enum Format: Sendable, Equatable {
        case jpeg
        case png
    }

    /// Sniffs the format: JPEG starts with `FF D8 FF`, PNG with `89 50 4E 47 0D 0A 1A 0A`.
    /// Returns nil for anything else.
    public static func sniff(_ bytes: [UInt8]) -> Format? {
        if bytes.count >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF {
            return .jpeg
        }
        let pngMagic: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        if bytes.count >= 8 && bytes[0..<8].elementsEqual(pngMagic) {
            return .png
        }
        return nil
    }

    /// Decodes a JPEG or PNG held in memory to `(H, W, 3)` RGB8.
    ///
    /// - Parameter name: the file name used in error messages.
    /// - Throws: `NecoError(.format)` for data that is not a JPEG or PNG ("<name>: not a JPEG or
    ///   PNG image") or is corrupt or truncated ("<name>: cannot decode JPEG: <libjpeg's message>");
    ///   `NecoError(.outOfMemory)` for pictures beyond 65535 pixels a side or 2^28 pixels.
    public static func decode(bytes: [UInt8], name: String) throws -> RGBImage {
        guard let format = sniff(bytes) else {
            throw NecoError(.format, "\(name): not a JPEG or PNG image")
        }
        var image = cimageio_image()
        var message = [CChar](repeating: 0, count: Int(CIMAGEIO_ERR_LEN))
        let status: Int32 = bytes.withUnsafeBufferPointer { data in
            message.withUnsafeMutableBufferPointer { err in
                switch format {
                case .jpeg:
                    return cimageio_decode_jpeg(data.baseAddress, data.count, &image, err.baseAddress, err.count)
                case .png:
                    return cimageio_decode_png(data.baseAddress, data.count, &image, err.baseAddress, err.count)
                }
            }
        }
        defer { cimageio_free(image.pixels) }
        let label = format == .jpeg ? "JPEG" : "PNG"
        guard status == CIMAGEIO_OK.rawValue, let pixels = image.pixels else {
            let reason = cString(message)
            if status == CIMAGEIO_ERR_TOO_LARGE.rawValue {
                throw NecoError(.outOfMemory, "\(name): \(label) too large: \(reason)")
            }
            throw NecoError(.format, "\(name): cannot decode \(label): \(reason)")
        }
        let width = Int(image.width), height = Int(image.height)
        let count = width * height * 3
        let copy = [UInt8](UnsafeBufferPointer(start: pixels, count: count))
        return RGBImage(width: width, height: height, pixels: copy)
    }

    /// Reads and decodes an image file.
    ///
    /// - Throws: `NecoError(.io)` naming the file when it cannot be read (missing, a directory,
    ///   no permission); otherwise as ``decode(bytes:name:)``. An empty file is `.format`.
    public static func load(path: String) throws -> RGBImage {
        let bytes = try FileIO.readAll(path)
        return try decode(bytes: bytes, name: path)
    }

    /// The NUL-terminated prefix of `buffer` as a String (invalid UTF-8 repaired).
    static func cString(_ buffer: [CChar]) -> String {
        let end = buffer.firstIndex(of: 0) ?? buffer.count
        return String(decoding: buffer[..<end].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
