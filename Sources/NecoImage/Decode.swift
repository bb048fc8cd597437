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

    /// Limits and leniency of decoding. The defaults protect a process from hostile files: the
    /// pixel cap refuses a "decompression bomb" (a small file that claims a huge picture) from its
    /// header, before any allocation or decoding work, and a truncated file is an error.
    public struct Options: Sendable, Equatable {
        /// Pillow's `Image.MAX_IMAGE_PIXELS` (89,478,485, about 9459 × 9459): the default cap.
        public static let defaultMaxPixels = 89_478_485
        /// The largest cap that may be set: 2^28 pixels (768 MiB of RGB8), also 65535 a side.
        public static let maxPixelsLimit = 1 << 28
        public static let maxSide = 65535

        /// Pictures of more than `maxPixels` pixels (width × height) are refused with
        /// `.invalidArgument`; 1...`maxPixelsLimit`.
        public var maxPixels: Int
        /// Accept a file that ends early (Pillow's `ImageFile.LOAD_TRUNCATED_IMAGES`): the rows
        /// that are missing come out grey (JPEG, libjpeg's fill) or black (PNG). Default false:
        /// a truncated file is `.format`.
        public var allowTruncated: Bool

        public init(maxPixels: Int = defaultMaxPixels, allowTruncated: Bool = false) {
            self.maxPixels = maxPixels
            self.allowTruncated = allowTruncated
        }

        /// - Throws: `.invalidArgument` for a cap outside 1...`maxPixelsLimit`.
        public func validate() throws {
            guard maxPixels >= 1 && maxPixels <= Self.maxPixelsLimit else {
                throw NecoError.invalidArgument("max image pixels \(maxPixels) out of range 1...\(Self.maxPixelsLimit)")
            }
        }
    }

    /// The options that `decode` and `load` use when none are given (also the training loader's and
    /// the C ABI's). Process-wide, like Pillow's module settings: set it before starting threads
    /// that decode; a value that fails `Options.validate()` is ignored in favour of the defaults.
    public nonisolated(unsafe) static var defaultOptions = Options()

    /// Sniffs the format: JPEG starts with `FF D8 FF`, PNG with `89 50 4E 47 0D 0A 1A 0A`.
    /// Returns nil for anything else.
    public static func sniff(_ bytes: [UInt8]) -> Format? {
        bytes.withUnsafeBytes { sniff($0) }
    }

    /// As `sniff(_:)` over raw bytes.
    public static func sniff(_ bytes: UnsafeRawBufferPointer) -> Format? {
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
    ///   `NecoError(.invalidArgument)` for a picture beyond the pixel cap of `options` or 65535 a
    ///   side (told from the header, before decoding); `.outOfMemory` when the pixels cannot be
    ///   allocated.
    public static func decode(bytes: [UInt8], name: String, options: Options? = nil) throws -> RGBImage {
        try bytes.withUnsafeBytes { try decode(buffer: $0, name: name, options: options) }
    }

    /// As `decode(bytes:name:options:)`, from memory the caller owns (not copied).
    public static func decode(buffer bytes: UnsafeRawBufferPointer, name: String, options: Options? = nil) throws -> RGBImage {
        var opts = options ?? defaultOptions
        if options == nil, (try? opts.validate()) == nil { opts = Options() }
        try opts.validate()
        guard let format = sniff(bytes) else {
            throw NecoError(.format, "\(name): not a JPEG or PNG image")
        }
        var image = cimageio_image()
        var message = [CChar](repeating: 0, count: Int(CIMAGEIO_ERR_LEN))
        var copts = cimageio_options(max_pixels: UInt64(opts.maxPixels), allow_truncated: opts.allowTruncated ? 1 : 0)
        let data = UnsafeBufferPointer(start: bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), count: bytes.count)
        let status: Int32 = message.withUnsafeMutableBufferPointer { err in
            switch format {
            case .jpeg:
                return cimageio_decode_jpeg(data.baseAddress, data.count, &copts, &image, err.baseAddress, err.count)
            case .png:
                return cimageio_decode_png(data.baseAddress, data.count, &copts, &image, err.baseAddress, err.count)
            }
        }
        defer { cimageio_free(image.pixels) }
        let label = format == .jpeg ? "JPEG" : "PNG"
        guard status == CIMAGEIO_OK.rawValue, let pixels = image.pixels else {
            let reason = cString(message)
            if status == CIMAGEIO_ERR_TOO_LARGE.rawValue {
                // Beyond the documented limits (told from the header) is a refused argument;
                // a failed allocation below them is out of memory.
                let refused = reason.contains("exceeds the")
                throw NecoError(refused ? .invalidArgument : .outOfMemory, "\(name): \(label) too large: \(reason)")
            }
            throw NecoError(.format, "\(name): cannot decode \(label): \(reason)")
        }
        let width = Int(image.width), height = Int(image.height)
        let count = width * height * 3
        try Memory.reserve(count, of: UInt8.self, "\(name): \(width)×\(height) picture")
        let copy = [UInt8](UnsafeBufferPointer(start: pixels, count: count))
        return RGBImage(width: width, height: height, pixels: copy)
    }

    /// Reads and decodes an image file.
    ///
    /// - Throws: `NecoError(.io)` naming the file when it cannot be read (missing, a directory,
    ///   no permission); otherwise as ``decode(bytes:name:)``. An empty file is `.format`.
    public static func load(path: String, options: Options? = nil) throws -> RGBImage {
        let bytes = try FileIO.readAll(path)
        return try decode(bytes: bytes, name: path, options: options)
    }

    /// The NUL-terminated prefix of `buffer` as a String (invalid UTF-8 repaired).
    static func cString(_ buffer: [CChar]) -> String {
        let end = buffer.firstIndex(of: 0) ?? buffer.count
        return String(decoding: buffer[..<end].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
