import NecoCore
import NecoModel
import NecoONNX
import XCTest
import _NecoTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The tiny models of Tests/Fixtures/vit (all built with 4 heads).
enum Tiny: String, CaseIterable {
    case reg4 = "tiny_reg4"          // timm scheme, 4 registers, antialias rule, patch 14, grid 5
    case noreg = "tiny_noreg"        // Meta keys, no registers
    case v1 = "tiny_v1"              // DINO v1: patch 16, no LayerScale, NeCo rule
    case swiglu = "tiny_swiglu_meta" // SwiGLU feed-forward

    func load(rule: PosEmbedRule? = nil) throws -> ViTModel {
        try WeightLoader.load(path: fixturePath("vit/\(rawValue).weights.safetensors"),
                              options: LoadOptions(heads: 4, posEmbedRule: rule))
    }
}

/// Swift forward split like the ONNX outputs.
struct SplitTokens {
    var patches: [Float]    // (B, M, D)
    var cls: [Float]        // (B, D)
    var registers: [Float]  // (B, R, D)
    var patchCount: Int
}

func forwardSplit(_ model: ViTModel, input: [Float], batch: Int, height: Int, width: Int) throws -> SplitTokens {
    let c = model.config
    let t = model.tokenCount(height: height, width: width), d = c.embedDim, r = c.registers
    var out = [Float](repeating: 0, count: batch * t * d)
    try input.withUnsafeBufferPointer { ip in
        try out.withUnsafeMutableBufferPointer { op in
            try model.forward(out: op.baseAddress!, images: ip.baseAddress!, batch: batch, height: height, width: width)
        }
    }
    var s = SplitTokens(patches: [], cls: [], registers: [], patchCount: t - 1 - r)
    for b in 0..<batch {
        let row = b * t * d
        s.cls += out[row..<(row + d)]
        s.registers += out[(row + d)..<(row + (1 + r) * d)]
        s.patches += out[(row + (1 + r) * d)..<(row + t * d)]
    }
    return s
}

/// A random projection head D → h1 → h2 → f with PyTorch-like init scale.
func randomHead(inDim: Int, hidden: Int, out: Int, seed: UInt64) throws -> ProjectionHeadWeights {
    var rng = TestRNG(seed: seed)
    let dims = [(hidden, inDim), (hidden, hidden), (out, hidden)]
    return try ProjectionHeadWeights(layers: zip(ProjectionHeadWeights.layerIndices, dims).map { i, od in
        let scale = 1 / Float(od.1).squareRoot()
        return ProjectionHeadWeights.Linear(name: "projection_head.\(i)", outDim: od.0, inDim: od.1,
                                     weight: rng.floats(od.0 * od.1, scale: scale), bias: rng.floats(od.0, scale: 0.1))
    })
}

/// Reference head in Double: Linear, exact GELU, Linear, exact GELU, Linear, L2 normalisation.
func headReference(_ head: ProjectionHeadWeights, tokens: [Float], rows: Int) -> [Float] {
    var x = tokens.map(Double.init)
    var width = head.inputDim
    for (i, l) in head.layers.enumerated() {
        var y = [Double](repeating: 0, count: rows * l.outDim)
        for r in 0..<rows {
            for o in 0..<l.outDim {
                var acc = Double(l.bias[o])
                for k in 0..<width { acc += x[r * width + k] * Double(l.weight[o * width + k]) }
                y[r * l.outDim + o] = i < 2 ? 0.5 * acc * (1 + erf(acc / 2.0.squareRoot())) : acc
            }
        }
        x = y
        width = l.outDim
    }
    var out = [Float](repeating: 0, count: rows * width)
    for r in 0..<rows {
        var n = 0.0
        for k in 0..<width { n += x[r * width + k] * x[r * width + k] }
        let den = max(n.squareRoot(), 1e-12)
        for k in 0..<width { out[r * width + k] = Float(x[r * width + k] / den) }
    }
    return out
}

/// Fills a model's parameter slab with deterministic small values (norm scales around 1), so a
/// preset can be exported without a checkpoint.
func filledModel(_ config: ViTConfig, seed: UInt64 = 7) throws -> ViTModel {
    let p = try ViTParameters(config: config)
    var rng = TestRNG(seed: seed)
    for spec in p.layout.specs {
        let t = p.tensor(spec.name)!
        let isScale = spec.name.hasSuffix("norm1.weight") || spec.name.hasSuffix("norm2.weight") || spec.name == "norm.weight"
        for i in 0..<t.count { t[i] = isScale ? 1 + 0.1 * rng.uniform() : 0.02 * rng.uniform() }
    }
    return ViTModel(params: p, source: "filled", scheme: .meta)
}
