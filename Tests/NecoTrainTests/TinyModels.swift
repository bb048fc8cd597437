import NecoCore
import NecoModel
import _NecoTestSupport

/// Small random ViTs for tests that need no fixture.
enum TinyModels {
    /// DINOv2-style: LayerScale, 2 registers, a 3×3 position grid (so 12×16 inputs resample it).
    static func reg(rule: PosEmbedRule = .neco, depth: Int = 2, ffn: FFNKind = .mlp) -> ViTConfig {
        ViTConfig(name: "tiny_reg", patchSize: 4, embedDim: 8, depth: depth, heads: 2, mlpHidden: ffn == .swiglu ? 8 : 16,
                  ffn: ffn, layerScale: true, registers: 2, posGrid: 3, posEmbedRule: rule)
    }

    /// DINO v1-style: no LayerScale, no registers.
    static func v1() -> ViTConfig {
        ViTConfig(name: "tiny_v1", patchSize: 4, embedDim: 8, depth: 2, heads: 2, mlpHidden: 16, layerScale: false,
                  registers: 0, posGrid: 3, posEmbedRule: .neco)
    }

    /// Random weights in the style of scripts/reference/common.randomize_: Linear weights of
    /// scale 1/√fan_in, biases 0.1, norms 1 ± 0.2, LayerScale 0.5 ± 0.3, tokens 0.5.
    static func model(_ c: ViTConfig, seed: UInt64) throws -> ViTModel {
        let params = try ViTParameters(config: c)
        var r = TestRNG(seed: seed)
        for s in params.layout.specs {
            let p = params[s.offset]
            let n = s.name
            for i in 0..<s.count {
                let u = r.uniform() * 1.7  // uniform with unit-ish spread
                let v: Float
                if n.hasSuffix(".gamma") { v = 0.5 + 0.3 * u }
                else if n.hasSuffix(".bias") { v = 0.1 * u }
                else if n.hasSuffix("norm1.weight") || n.hasSuffix("norm2.weight") || n == "norm.weight" { v = 1 + 0.2 * u }
                else if s.shape.count >= 2 && n.hasSuffix(".weight") {
                    v = u / Float(s.shape.dropFirst().reduce(1, *)).squareRoot()
                } else { v = 0.5 * u }
                p[i] = v
            }
        }
        return ViTModel(params: params, source: "random", scheme: .meta)
    }
}
