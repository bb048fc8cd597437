import NecoCore

#if canImport(Glibc)
import Glibc
#endif

/// Backbone family: how positions enter the model.
public enum ModelFamily: String, Sendable {
    /// DINO v1 / DINOv2: a learned position table added to the patch tokens.
    case dinov2
    /// DINOv3: no position table; axial RoPE on the patch tokens' queries and keys.
    case dinov3
}

/// Which parts of the fused qkv bias (3D) exist. The key third never matters for DINOv2-style
/// attention without RoPE, but with RoPE it would, so DINOv3 fixes it at zero.
public enum QKVBiasMode: String, Sendable {
    /// q, k and v biases (DINO / DINOv2).
    case full
    /// q and v biases, key bias fixed at zero (Meta's `mask_k_bias`, timm's `_qkvb` variants,
    /// Hugging Face `DINOv3ViTModel` with `key_bias=False`).
    case maskedKey = "masked_k"
    /// No qkv bias at all (timm's plain `vit_*_patch16_dinov3`).
    case none

    /// Ranges of the (3D) bias that must stay zero (and receive no gradient).
    public func zeroRanges(dim d: Int) -> [Range<Int>] {
        switch self {
        case .full: return []
        case .maskedKey: return [d..<(2 * d)]
        case .none: return [0..<(3 * d)]
        }
    }
}

/// RoPE of a DINOv3 model (Meta's `RopePositionEmbedding` with `base`, "separate" coordinate
/// normalisation; timm `RotaryEmbeddingDinoV3`).
///
/// With head width E and n = E/4, period j = base^(2j / (E/2)) for j < n. Patch (i, j) of an h×w
/// grid sits at y = 2(i + ½)/h − 1, x = 2(j + ½)/w − 1. Angle θ_k = 2π·y/period_k for k < n and
/// 2π·x/period_(k−n) for n ≤ k < 2n; channels k and k + E/2 of every head are rotated by θ_k
/// (the rotate-half form).
public struct RoPESettings: Sendable, Equatable {
    public var base: Float
    /// Round the periods to bfloat16 (round to nearest even), as Meta's released checkpoints
    /// store them (`rope_embed.periods`); timm and Hugging Face compute them in float32.
    public var bf16Periods: Bool

    public init(base: Float = 100, bf16Periods: Bool = false) {
        self.base = base
        self.bf16Periods = bf16Periods
    }

    func validate() throws {
        guard base.isFinite, base > 1, base < 1e9 else { throw NecoError.invalidArgument("RoPE base \(base) out of range (1, 1e9)") }
    }
}

/// Training-time coordinate augmentation of DINOv3's RoPE (off at inference). Each is drawn once
/// per forward pass and applies to every image of the batch, in Meta's order: shift (add
/// U(−s, s) per axis), jitter (multiply by exp(U(−ln J, ln J)) per axis), rescale (multiply both
/// axes by exp(U(−ln R, ln R))).
public struct RoPEAugment: Sendable, Equatable {
    public var shift: Float?
    public var jitter: Float?
    public var rescale: Float?
    public init(shift: Float? = nil, jitter: Float? = nil, rescale: Float? = nil) {
        self.shift = shift
        self.jitter = jitter
        self.rescale = rescale
    }
    public var isActive: Bool { shift != nil || jitter != nil || rescale != nil }

    public func validate() throws {
        if let s = shift, !(s.isFinite && s >= 0) { throw NecoError.invalidArgument("RoPE shift \(s) must be ≥ 0") }
        if let j = jitter, !(j.isFinite && j >= 1) { throw NecoError.invalidArgument("RoPE jitter \(j) must be ≥ 1") }
        if let r = rescale, !(r.isFinite && r >= 1) { throw NecoError.invalidArgument("RoPE rescale \(r) must be ≥ 1") }
    }

    /// One draw: coordinates become (y + sy)·jy·r, (x + sx)·jx·r. `uniform` returns U(0, 1).
    public func sample(_ uniform: () -> Float) -> RoPECoordinateTransform {
        var t = RoPECoordinateTransform()
        if let s = shift { t.shiftY = (2 * uniform() - 1) * s; t.shiftX = (2 * uniform() - 1) * s }
        if let j = jitter {
            let m = Float(log(Double(j)))
            t.scaleY = Float(exp(Double((2 * uniform() - 1) * m))); t.scaleX = Float(exp(Double((2 * uniform() - 1) * m)))
        }
        if let r = rescale {
            let m = Float(log(Double(r)))
            let f = Float(exp(Double((2 * uniform() - 1) * m)))
            t.scaleY *= f; t.scaleX *= f
        }
        return t
    }
}

/// A drawn coordinate transform (identity at inference).
public struct RoPECoordinateTransform: Sendable, Equatable {
    public var shiftY: Float = 0, shiftX: Float = 0, scaleY: Float = 1, scaleX: Float = 1
    public init() {}
    public var isIdentity: Bool { self == RoPECoordinateTransform() }
}

extension ViTConfig {
    /// A DINOv3 architecture: 16-px patches, 4 storage tokens, RoPE (base 100), LayerScale,
    /// LayerNorm ε = 1e-5, no position table.
    public static func dinov3(name: String, embedDim: Int, depth: Int, heads: Int, mlpHidden: Int,
                              ffn: FFNKind = .mlp, registers: Int = 4, qkvBias: QKVBiasMode = .maskedKey,
                              rope: RoPESettings = RoPESettings()) -> ViTConfig {
        var c = ViTConfig(name: name, patchSize: 16, embedDim: embedDim, depth: depth, heads: heads,
                          mlpHidden: mlpHidden, ffn: ffn, layerScale: true, registers: registers, posGrid: 0,
                          posEmbedRule: .neco)
        c.layerNormEps = 1e-5
        c.rope = rope
        c.qkvBias = qkvBias
        return c
    }

    /// DINOv3 ViT-S/16 (21.6 M parameters).
    public static func dinov3Small() -> ViTConfig {
        dinov3(name: "dinov3_vits16", embedDim: 384, depth: 12, heads: 6, mlpHidden: 1536)
    }
    /// DINOv3 ViT-S+/16: SwiGLU feed-forward of width 1536.
    public static func dinov3SmallPlus() -> ViTConfig {
        dinov3(name: "dinov3_vits16plus", embedDim: 384, depth: 12, heads: 6, mlpHidden: 1536, ffn: .swiglu)
    }
    /// DINOv3 ViT-B/16.
    public static func dinov3Base() -> ViTConfig {
        dinov3(name: "dinov3_vitb16", embedDim: 768, depth: 12, heads: 12, mlpHidden: 3072)
    }
    /// DINOv3 ViT-L/16.
    public static func dinov3Large() -> ViTConfig {
        dinov3(name: "dinov3_vitl16", embedDim: 1024, depth: 24, heads: 16, mlpHidden: 4096)
    }
    /// DINOv3 ViT-H+/16: SwiGLU feed-forward of width 5120.
    public static func dinov3HugePlus() -> ViTConfig {
        dinov3(name: "dinov3_vith16plus", embedDim: 1280, depth: 32, heads: 20, mlpHidden: 5120, ffn: .swiglu)
    }

    public static let dinov3PresetNames = ["dinov3_vits16", "dinov3_vits16plus", "dinov3_vitb16", "dinov3_vitl16",
                                           "dinov3_vith16plus"]

    static func dinov3Preset(_ name: String) -> ViTConfig? {
        switch name.lowercased() {
        case "dinov3_vits16", "vit-s/16-v3": return dinov3Small()
        case "dinov3_vits16plus", "vit-s+/16": return dinov3SmallPlus()
        case "dinov3_vitb16", "vit-b/16-v3": return dinov3Base()
        case "dinov3_vitl16", "vit-l/16": return dinov3Large()
        case "dinov3_vith16plus", "vit-h+/16": return dinov3HugePlus()
        default: return nil
        }
    }
}
