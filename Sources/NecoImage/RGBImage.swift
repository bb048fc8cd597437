/// An 8-bit RGB picture, the currency of NecoImage.
///
/// `pixels` is `(H, W, 3)` row-major with no row padding: the value of channel `c` at row `y`,
/// column `x` is `pixels[(y * width + x) * 3 + c]`.
public struct RGBImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// (H, W, 3) row-major, `height * width * 3` values.
    public var pixels: [UInt8]

    /// Wraps existing pixels. Precondition: `width, height >= 1` and
    /// `pixels.count == width * height * 3`.
    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width >= 1 && height >= 1, "RGBImage: size \(width)x\(height) must be at least 1x1")
        precondition(pixels.count == width * height * 3,
                      "RGBImage: \(pixels.count) values for \(width)x\(height)x3")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// A black image. Precondition: `width, height >= 1`.
    public init(width: Int, height: Int) {
        self.init(width: width, height: height, pixels: [UInt8](repeating: 0, count: width * height * 3))
    }
}
