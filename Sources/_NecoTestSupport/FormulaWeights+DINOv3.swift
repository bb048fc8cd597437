import NecoModel

extension FormulaWeights {
    /// The DINOv3 formula weights of scripts/reference/README.md, keyed by timm's DINOv3 names:
    /// `values` with `gamma_1` / `gamma_2` under the `.gamma` rule. Plain (no qkv bias) models.
    public static func dinov3Values(_ key: String, count: Int) -> [Float] {
        guard key.hasSuffix("gamma_1") || key.hasSuffix("gamma_2") else { return values(key, count: count) }
        let h = fnv1a(key)
        return (0..<count).map { Float(0.1 + 0.05 * hash($0, h)) }
    }

    /// timm `vit_*_patch16_dinov3` (4 registers) with formula weights.
    public static func dinov3(_ c: ViTConfig) -> DictionaryTensorSource {
        let d = c.embedDim, hdn = c.mlpHidden
        var keys: [(String, [Int])] = [("cls_token", [1, 1, d]), ("reg_token", [1, 4, d]),
                                       ("patch_embed.proj.weight", [d, 3, 16, 16]), ("patch_embed.proj.bias", [d])]
        for i in 0..<c.depth {
            let p = "blocks.\(i)."
            keys += [(p + "gamma_1", [d]), (p + "gamma_2", [d]), (p + "norm1.weight", [d]), (p + "norm1.bias", [d]),
                     (p + "attn.qkv.weight", [3 * d, d]), (p + "attn.proj.weight", [d, d]), (p + "attn.proj.bias", [d]),
                     (p + "norm2.weight", [d]), (p + "norm2.bias", [d])]
            if c.ffn == .swiglu {
                keys += [(p + "mlp.fc1_g.weight", [hdn, d]), (p + "mlp.fc1_g.bias", [hdn]),
                         (p + "mlp.fc1_x.weight", [hdn, d]), (p + "mlp.fc1_x.bias", [hdn])]
            } else {
                keys += [(p + "mlp.fc1.weight", [hdn, d]), (p + "mlp.fc1.bias", [hdn])]
            }
            keys += [(p + "mlp.fc2.weight", [d, hdn]), (p + "mlp.fc2.bias", [d])]
        }
        keys += [("norm.weight", [d]), ("norm.bias", [d])]
        return DictionaryTensorSource(keys.map { ($0.0, $0.1, dinov3Values($0.0, count: $0.1.reduce(1, *))) })
    }
}
