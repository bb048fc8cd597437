import NecoModel

#if canImport(Glibc)
import Glibc
#endif

/// The formula weights of scripts/reference/README.md ("vits14_reg4_formula"), keyed by timm names.
public enum FormulaWeights {
    public static func fnv1a(_ s: String) -> UInt32 {
        var h: UInt32 = 2_166_136_261
        for b in s.utf8 { h ^= UInt32(b); h = h &* 16_777_619 }
        return h
    }

    /// Uniform [-1, 1) from a 32-bit integer mix of the flat index and the key hash (exact on both sides).
    public static func hash(_ i: Int, _ h: UInt32) -> Double {
        var x = UInt32(truncatingIfNeeded: i) &* 2_654_435_761 &+ h
        x ^= x >> 16
        x = x &* 0x85EB_CA6B
        x ^= x >> 13
        x = x &* 0xC2B2_AE35
        x ^= x >> 16
        return Double(x) / 4_294_967_296 * 2 - 1
    }

    public static func values(_ key: String, count: Int) -> [Float] {
        let h = fnv1a(key)
        let (a, b): (Double, Double)
        if key.hasSuffix("norm1.weight") || key.hasSuffix("norm2.weight") || key == "norm.weight" { (a, b) = (1, 0.1) }
        else if key.hasSuffix(".gamma") { (a, b) = (0.1, 0.05) }
        else if key.hasSuffix(".bias") { (a, b) = (0, 0.02) }
        else if ["cls_token", "reg_token", "pos_embed"].contains(key) { (a, b) = (0, 0.5) }
        else { (a, b) = (0, 0.05) }
        return (0..<count).map { Float(a + b * hash($0, h)) }
    }

    public static func vits14Reg4() -> DictionaryTensorSource {
        let d = 384
        var keys: [(String, [Int])] = [("cls_token", [1, 1, d]), ("reg_token", [1, 4, d]), ("pos_embed", [1, 1369, d]),
                                       ("patch_embed.proj.weight", [d, 3, 14, 14]), ("patch_embed.proj.bias", [d])]
        for i in 0..<12 {
            let p = "blocks.\(i)."
            keys += [(p + "norm1.weight", [d]), (p + "norm1.bias", [d]), (p + "attn.qkv.weight", [3 * d, d]),
                     (p + "attn.qkv.bias", [3 * d]), (p + "attn.proj.weight", [d, d]), (p + "attn.proj.bias", [d]),
                     (p + "ls1.gamma", [d]), (p + "norm2.weight", [d]), (p + "norm2.bias", [d]),
                     (p + "mlp.fc1.weight", [4 * d, d]), (p + "mlp.fc1.bias", [4 * d]), (p + "mlp.fc2.weight", [d, 4 * d]),
                     (p + "mlp.fc2.bias", [d]), (p + "ls2.gamma", [d])]
        }
        keys += [("norm.weight", [d]), ("norm.bias", [d])]
        return DictionaryTensorSource(keys.map { ($0.0, $0.1, values($0.0, count: $0.1.reduce(1, *))) })
    }

    public static func input(count: Int) -> [Float] { (0..<count).map { Float(2 * sin(0.0173 * Double($0) + 0.5)) } }
}
