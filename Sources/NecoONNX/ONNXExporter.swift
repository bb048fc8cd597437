import NecoCore
import NecoModel

#if canImport(Glibc)
import Glibc
#endif

/// Options of `ONNXExporter.export`.
public struct ONNXExportOptions: Sendable {
    /// Spatial size of the `pixel_values` input. The batch dimension is always dynamic.
    public enum InputSize: Sendable, Equatable {
        /// H and W fixed at export time (multiples of the patch size). The position table is
        /// resampled by two constant matrices computed by `PosEmbed.weights` (every rule).
        case fixed(height: Int, width: Int)
        /// H and W symbolic; the resampling happens inside the graph with the model's rule:
        /// `.bicubic` and `.neco` as an ONNX `Resize` (cubic, half_pixel, A = −0.75; `sizes` resp.
        /// `scales` = (g + 0.1)/G, and the table as-is at the native grid), `.antialias` as the
        /// same weight matrices computed in the graph (opset 17 has no `Resize` antialias).
        case dynamic
    }

    /// Where the weights go.
    public enum ExternalData: Sendable, Equatable {
        /// Inside the .onnx file unless the parameters exceed `ONNXExporter.externalDataThreshold`
        /// bytes (protobuf caps a file at 2 GiB; only ViT-g/14 is that large).
        case auto
        /// Always in `<file>.data` next to the model (ONNX external data, 4096-aligned).
        case always
        /// Always inside the .onnx file (fails beyond 2 GiB).
        case never
    }

    public var inputSize: InputSize
    /// Adds the `projection` output: the projection head on every patch token, L2-normalised.
    public var head: ProjectionHeadWeights?
    public var externalData: ExternalData
    /// Normalisation the caller must apply to `pixel_values` (recorded in the metadata only).
    public var imageMean: [Float]
    public var imageStd: [Float]

    public init(inputSize: InputSize = .dynamic, head: ProjectionHeadWeights? = nil, externalData: ExternalData = .auto,
                imageMean: [Float] = [0.485, 0.456, 0.406], imageStd: [Float] = [0.229, 0.224, 0.225]) {
        self.inputSize = inputSize
        self.head = head
        self.externalData = externalData
        self.imageMean = imageMean
        self.imageStd = imageStd
    }
}

/// What an export wrote.
public struct ONNXExportReport: Sendable, CustomStringConvertible {
    public var path: String
    /// `<path>.data` when the weights were stored as external data.
    public var externalDataPath: String?
    /// Size of the .onnx file, and of the external data file (0 without one).
    public var fileBytes: Int
    public var externalDataBytes: Int
    public var nodeCount: Int
    public var initializerCount: Int
    /// Wall time of the whole export (graph, checker, shape inference, write), seconds.
    public var seconds: Double
    /// Where the time went: "build" (graph and weight copies), "check" (checker and strict shape
    /// inference), "write" (serialise, fsync, rename).
    public var phases: [(name: String, seconds: Double)]
    public var inputDims: [ONNXDim]
    public var outputs: [(name: String, dims: [ONNXDim])]

    public var description: String {
        let mb = Double(fileBytes + externalDataBytes) / 1_000_000
        let shape = { (d: [ONNXDim]) in "(" + d.map(\.description).joined(separator: ", ") + ")" }
        var s = "wrote \(path) (\((mb * 10).rounded() / 10) MB"
        if let e = externalDataPath { s += ", weights in \(e)" }
        s += ", \(nodeCount) nodes, \(initializerCount) initializers) in \((seconds * 1000).rounded() / 1000) s ("
        s += phases.map { "\($0.name) \(($0.seconds * 1000).rounded() / 1000)" }.joined(separator: ", ") + ")\n"
        s += "  input  pixel_values \(shape(inputDims))\n"
        s += outputs.map { "  output \($0.name) \(shape($0.dims))" }.joined(separator: "\n")
        return s
    }
}

/// ONNX export of a DINO / DINOv2 encoder (ONNX IR 8, opset 17) through Debian's libonnx.
///
/// Graph: input `pixel_values` (N, C, H, W) float32, ImageNet-normalised; outputs `patch_tokens`
/// (N, h·w, D) after the final LayerNorm, `cls_token` (N, D), `register_tokens` (N, R, D) when
/// R > 0, and `projection` (N, h·w, F) with a projection head. N is dynamic; H and W are fixed or
/// dynamic (`ONNXExportOptions.InputSize`).
///
/// Initializers are the model's parameters under their canonical (Meta DINOv2) keys, in layout
/// order, plus the head's `projection_head.{0,2,4}.*`. Two keys collide with output names and
/// are prefixed (see `initializerName(forKey:)`): `cls_token` → `param.cls_token`,
/// `register_tokens` → `param.register_tokens`. All other constants are `Constant` nodes.
///
/// The model is checked with `onnx::checker::check_model` and strict shape inference before it
/// is written; the file is written to a temporary name and renamed, so a failed export leaves
/// nothing at `path`.
public enum ONNXExporter {
    public static let irVersion = 8
    public static let opset = 17
    public static let producerName = "libneco"
    public static let producerVersion = "0.1.0"
    /// Parameter bytes beyond which `.auto` stores the weights as external data.
    public static let externalDataThreshold = 1_800_000_000

    /// Output names, in graph order.
    public static let patchTokensOutput = "patch_tokens"
    public static let clsTokenOutput = "cls_token"
    public static let registerTokensOutput = "register_tokens"
    public static let projectionOutput = "projection"
    public static let inputName = "pixel_values"

    /// Initializer name of a canonical parameter key: the key itself, except the two keys that
    /// are also output names.
    public static func initializerName(forKey key: String) -> String {
        key == clsTokenOutput || key == registerTokensOutput ? "param." + key : key
    }

    /// Exports `model` to `path` (see the type's documentation). Throws `NecoError`:
    /// `.shape` for a size that is not a multiple of the patch size or a head that does not fit,
    /// `.invalidArgument` for a model without weights or a bad path, `.io` when the file cannot be
    /// written, `.internal` if libonnx rejects the graph.
    @discardableResult
    public static func export(model: ViTModel, to path: String, options: ONNXExportOptions = ONNXExportOptions()) throws -> ONNXExportReport {
        let t0 = monotonicSeconds()
        try validate(model: model, path: path, options: options)

        let paramBytes = model.params.count * 4 + (options.head?.parameterCount ?? 0) * 4
        let external: Bool
        switch options.externalData {
        case .auto: external = paramBytes > externalDataThreshold
        case .always: external = true
        case .never: external = false
        }
        let location = external ? baseName(path) + ".data" : nil

        let graph = try GraphBuilder(graphName: model.config.name, irVersion: irVersion, opset: opset)
        let built = try ViTGraph(model: model, options: options, graph: graph, externalLocation: location).build()
        let t1 = monotonicSeconds()
        try graph.checkModel()
        let t2 = monotonicSeconds()
        let fileBytes = graph.byteSize
        if !external && fileBytes > Int(Int32.max) {
            throw NecoError(.outOfMemory, "\(path): the model would be \(fileBytes) bytes, over protobuf's 2 GiB limit; export with external data")
        }
        try graph.save(to: path)
        let t3 = monotonicSeconds()
        let dataPath = location.map { folderName(path) + "/" + $0 }
        return ONNXExportReport(path: path, externalDataPath: dataPath, fileBytes: fileSize(path) ?? fileBytes,
                                externalDataBytes: dataPath.flatMap(fileSize) ?? 0, nodeCount: graph.nodeCount,
                                initializerCount: graph.initializerCount, seconds: t3 - t0,
                                phases: [("build", t1 - t0), ("check", t2 - t1), ("write", t3 - t2)],
                                inputDims: built.inputDims, outputs: built.outputs)
    }

    /// All argument checks, before anything is built or written.
    static func validate(model: ViTModel, path: String, options: ONNXExportOptions) throws {
        let c = model.config
        try c.validate()
        if case .fixed(let h, let w) = options.inputSize {
            do { try model.validateInput(height: h, width: w) } catch let e as NecoError {
                throw NecoError(e.kind, "cannot export at \(h)x\(w): \(e.message)")
            }
        }
        if let head = options.head, head.inputDim != c.embedDim {
            throw NecoError.shape("the projection head takes \(head.inputDim) features but the model gives \(c.embedDim)")
        }
        guard options.imageMean.count == c.inChannels, options.imageStd.count == c.inChannels else {
            throw NecoError.invalidArgument("image mean/std need \(c.inChannels) values")
        }
        // A model whose weights were never loaded has an all-zero slab: its final-norm scale and
        // its patch embedding are exactly zero, which no trained or randomly initialised model has.
        let p = model.params
        let allZero = ["norm.weight", "patch_embed.proj.weight"].allSatisfy { key in
            p.tensor(key).map { $0.allSatisfy { $0 == 0 } } ?? true
        }
        if allZero {
            throw NecoError.invalidArgument("the model has no weights (norm.weight and patch_embed.proj.weight are all zero): load a checkpoint before exporting")
        }

        guard !path.isEmpty else { throw NecoError.invalidArgument("no output path given") }
        if FileIOProbe.isDirectory(path) {
            throw NecoError.invalidArgument("\(path) is a directory: give a file name such as model.onnx")
        }
        // Fail early (before building a large graph) when the folder cannot take a new file.
        try FileIOProbe.probeWritable(path)
    }

    static func baseName(_ path: String) -> String {
        path.split(separator: "/", omittingEmptySubsequences: false).last.map(String.init) ?? path
    }

    static func folderName(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    static func fileSize(_ path: String) -> Int? {
        var st = stat()
        return Path.withCString(path) { stat($0, &st) } == 0 ? Int(st.st_size) : nil
    }
}

/// POSIX checks used before an export.
enum FileIOProbe {
    static func isDirectory(_ path: String) -> Bool { FileIO.isDirectory(path) }

    /// Creates and removes a temporary file next to `path`; throws `.io` with the reason.
    static func probeWritable(_ path: String) throws {
        let probe = path + ".probe-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = FileIO.open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw NecoError.io("\(path): cannot create the output file: \(FileIO.errnoString())")
        }
        close(fd)
        FileIO.remove(probe)
    }
}
