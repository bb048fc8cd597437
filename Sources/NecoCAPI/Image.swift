import CNecoSupport
import NecoCore
import NecoImage

#if canImport(Glibc)
import Glibc
#endif

/// What a `neco_image *` points at: decoded RGB8 pixels at a stable address.
final class ImageHandle: Handle {
    override class var cName: String { "neco_image" }
    let width: Int
    let height: Int
    /// (height, width, 3), malloc'd so that neco_image_data can hand out a stable pointer.
    let pixels: UnsafeMutablePointer<UInt8>

    init(_ img: RGBImage) throws {
        let n = img.pixels.count
        guard let raw = malloc(max(n, 1)) else {
            throw NecoError(.outOfMemory, "cannot allocate \(n) bytes for a \(img.width)×\(img.height) picture")
        }
        let dst = raw.bindMemory(to: UInt8.self, capacity: max(n, 1))
        img.pixels.withUnsafeBufferPointer { src in
            if let base = src.baseAddress { dst.update(from: base, count: n) }
        }
        pixels = dst
        width = img.width
        height = img.height
    }

    deinit { free(pixels) }
}

/// Encoded files larger than this are refused by neco_image_decode (2 GiB).
let maxEncodedBytes = 1 << 31

@_cdecl("neco_image_load")
public func neco_image_load(_ path: UnsafePointer<CChar>?, _ outImage: UnsafeMutablePointer<OpaquePointer?>?) -> neco_status {
    guarded("neco_image_load") {
        let out = try clearOut(outImage, "out_image")
        let file = try cString(path, "path")
        let img = try ImageDecoder.load(path: file)
        out.pointee = box(try ImageHandle(img))
    }
}

@_cdecl("neco_image_decode")
public func neco_image_decode(_ data: UnsafeRawPointer?, _ nBytes: Int, _ outImage: UnsafeMutablePointer<OpaquePointer?>?) -> neco_status {
    guarded("neco_image_decode") {
        let out = try clearOut(outImage, "out_image")
        guard let data else { throw NecoError.invalidArgument("data is NULL") }
        let n = try capacity(nBytes, "n_bytes")
        guard n > 0 else { throw NecoError.invalidArgument("n_bytes is 0") }
        guard n <= maxEncodedBytes else {
            throw NecoError(.outOfMemory, "n_bytes = \(n) exceeds the limit of \(maxEncodedBytes) bytes")
        }
        let img = try ImageDecoder.decode(buffer: UnsafeRawBufferPointer(start: data, count: n), name: "image data")
        out.pointee = box(try ImageHandle(img))
    }
}

@_cdecl("neco_image_free")
public func neco_image_free(_ image: OpaquePointer?) {
    release(image, "neco_image_free", as: ImageHandle.self)
}

private func imageValue<R>(_ function: StaticString, _ p: OpaquePointer?, _ fallback: R, _ get: (ImageHandle) -> R) -> R {
    do {
        return get(try unbox(p, "image", as: ImageHandle.self))
    } catch let e as NecoError {
        note(function, e.message)
    } catch {
        note(function, "\(error)")
    }
    return fallback
}

@_cdecl("neco_image_width")
public func neco_image_width(_ image: OpaquePointer?) -> Int32 {
    imageValue("neco_image_width", image, 0) { Int32(clamping: $0.width) }
}

@_cdecl("neco_image_height")
public func neco_image_height(_ image: OpaquePointer?) -> Int32 {
    imageValue("neco_image_height", image, 0) { Int32(clamping: $0.height) }
}

@_cdecl("neco_image_data")
public func neco_image_data(_ image: OpaquePointer?) -> UnsafePointer<UInt8>? {
    imageValue("neco_image_data", image, nil) { UnsafePointer($0.pixels) }
}

@_cdecl("neco_image_set_max_pixels")
public func neco_image_set_max_pixels(_ maxPixels: Int64) -> neco_status {
    guarded("neco_image_set_max_pixels") {
        var o = ImageDecoder.defaultOptions
        o.maxPixels = maxPixels == 0 ? ImageDecoder.Options.defaultMaxPixels : Int(clamping: maxPixels)
        try o.validate()
        ImageDecoder.defaultOptions = o
    }
}

@_cdecl("neco_image_get_max_pixels")
public func neco_image_get_max_pixels() -> Int64 { Int64(ImageDecoder.defaultOptions.maxPixels) }

@_cdecl("neco_image_set_load_truncated")
public func neco_image_set_load_truncated(_ allow: Bool) {
    ImageDecoder.defaultOptions.allowTruncated = allow
}

@_cdecl("neco_image_get_load_truncated")
public func neco_image_get_load_truncated() -> Bool { ImageDecoder.defaultOptions.allowTruncated }
