import NecoCore
import NecoModel

/// Weights of NeCo's projection head (NECO-SPEC §2.5), applied to every patch token:
///
///     z = L3(GELU(L2(GELU(L1(x)))));   out = z / max(‖z‖₂, 1e-12)
///
/// with Linear layers L1 (D → 2048), L2 (2048 → 2048), L3 (2048 → 256) and exact (erf) GELU. The
/// widths are not fixed: any chain D → H1 → H2 → F is accepted. Keys follow the training code's
/// `projection_head = nn.Sequential(Linear, GELU, Linear, GELU, Linear)`:
/// `projection_head.{0,2,4}.{weight,bias}`, weights stored (out, in) as in PyTorch.
/// (NecoTrain.ProjectionHead is the trainable head with its backward pass; these are the frozen
/// weights that the ONNX graph embeds.)
public struct ProjectionHeadWeights: Sendable {
    public struct Linear: Sendable {
        /// Key of the weight; the bias key replaces the trailing `weight` with `bias`.
        public var name: String
        public var outDim: Int
        public var inDim: Int
        /// (outDim, inDim), row-major.
        public var weight: [Float]
        /// (outDim).
        public var bias: [Float]

        public init(name: String, outDim: Int, inDim: Int, weight: [Float], bias: [Float]) {
            self.name = name
            self.outDim = outDim
            self.inDim = inDim
            self.weight = weight
            self.bias = bias
        }

        public var weightKey: String { name + ".weight" }
        public var biasKey: String { name + ".bias" }
    }

    public static let defaultPrefix = "projection_head"
    /// Indices of the three Linear layers inside the `nn.Sequential`.
    public static let layerIndices = [0, 2, 4]

    public var layers: [Linear]

    /// Three layers whose widths chain; throws `.shape` otherwise.
    public init(layers: [Linear]) throws {
        guard layers.count == 3 else {
            throw NecoError.shape("projection head: need 3 Linear layers, got \(layers.count)")
        }
        for (i, l) in layers.enumerated() {
            guard l.outDim >= 1, l.inDim >= 1, l.weight.count == l.outDim * l.inDim, l.bias.count == l.outDim else {
                throw NecoError.shape("projection head layer \(l.name): weight has \(l.weight.count) values and bias \(l.bias.count) for (\(l.outDim), \(l.inDim))")
            }
            if i > 0 && layers[i - 1].outDim != l.inDim {
                throw NecoError.shape("projection head: layer \(layers[i - 1].name) gives \(layers[i - 1].outDim) features but \(l.name) takes \(l.inDim)")
            }
        }
        self.layers = layers
    }

    public var inputDim: Int { layers[0].inDim }
    public var outputDim: Int { layers[2].outDim }
    public var parameterCount: Int { layers.reduce(0) { $0 + $1.weight.count + $1.bias.count } }

    /// Reads `prefix.{0,2,4}.{weight,bias}` from any tensor source (a safetensors file, a dictionary).
    public static func load(source: TensorSource, prefix: String = defaultPrefix, sourceName: String = "weights") throws -> ProjectionHeadWeights {
        var layers: [Linear] = []
        var missing: [String] = []
        for i in layerIndices {
            let name = "\(prefix).\(i)"
            guard let ws = source.tensorShape(name + ".weight"), let bs = source.tensorShape(name + ".bias") else {
                missing.append(name)
                continue
            }
            guard ws.count == 2, bs.count == 1, bs[0] == ws[0] else {
                throw NecoError.shape("\(sourceName): projection head \(name): weight \(ws) and bias \(bs) are not a Linear layer")
            }
            var w = [Float](repeating: 0, count: ws[0] * ws[1])
            var b = [Float](repeating: 0, count: bs[0])
            try w.withUnsafeMutableBufferPointer { try source.readTensor(name + ".weight", into: $0) }
            try b.withUnsafeMutableBufferPointer { try source.readTensor(name + ".bias", into: $0) }
            layers.append(Linear(name: name, outDim: ws[0], inDim: ws[1], weight: w, bias: b))
        }
        guard missing.isEmpty else {
            throw NecoError.format("\(sourceName): no projection head: missing \(missing.map { $0 + ".weight/.bias" }.joined(separator: ", "))")
        }
        return try ProjectionHeadWeights(layers: layers)
    }

    /// Reads the head from a safetensors file (e.g. a training checkpoint).
    public static func load(path: String, prefix: String = defaultPrefix) throws -> ProjectionHeadWeights {
        try load(source: SafetensorsFile(path: path), prefix: prefix, sourceName: path)
    }
}
