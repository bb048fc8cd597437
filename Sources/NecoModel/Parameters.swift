import NecoCore

#if canImport(Glibc)
import Glibc
#endif

/// One named parameter tensor inside a flat slab.
public struct ParamSpec: Sendable, Equatable {
    /// Canonical (Meta DINOv2) key, e.g. `blocks.3.attn.qkv.weight`.
    public let name: String
    public let shape: [Int]
    public let offset: Int
    public var count: Int { shape.reduce(1, *) }
    /// AdamW decays tensors with ≥ 2 dimensions that are not biases (NECO-SPEC §5.1).
    public var decays: Bool { shape.count >= 2 && !name.hasSuffix(".bias") }
}

/// Offsets of every parameter of a ViT inside one flat slab (llm.c's `ParameterTensors`).
/// The same layout addresses the parameter slab, the gradient slab and the AdamW moments.
///
/// Letters: D embed dim, G position grid side, R registers, P patch, C channels, H MLP width.
public struct ViTLayout: Sendable {
    public struct Block: Sendable {
        public var norm1W = 0, norm1B = 0        // (D), (D)
        public var qkvW = 0, qkvB = 0            // (3D, D), (3D)
        public var projW = 0, projB = 0          // (D, D), (D)
        public var ls1 = -1                      // (D), −1 without LayerScale
        public var norm2W = 0, norm2B = 0        // (D), (D)
        public var fc1W = 0, fc1B = 0            // (H, D) | SwiGLU w12 (2H, D); (H) | (2H)
        public var fc2W = 0, fc2B = 0            // (D, H), (D)
        public var ls2 = -1                      // (D), −1 without LayerScale
    }

    public let config: ViTConfig
    public private(set) var specs: [ParamSpec] = []
    public private(set) var clsToken = 0         // (1, 1, D)
    public private(set) var posEmbed = -1        // (1, 1 + G², D): row 0 is the CLS slot; −1 for RoPE models
    public private(set) var registerTokens = -1  // (1, R, D), −1 when R = 0
    public private(set) var patchW = 0           // (D, C, P, P)
    public private(set) var patchB = 0           // (D)
    public private(set) var blocks: [Block] = []
    public private(set) var normW = 0, normB = 0 // (D), (D)
    public private(set) var total = 0

    public init(config c: ViTConfig) {
        self.config = c
        let d = c.embedDim
        func add(_ name: String, _ shape: [Int]) -> Int {
            let off = total
            specs.append(ParamSpec(name: name, shape: shape, offset: off))
            total += shape.reduce(1, *)
            return off
        }
        clsToken = add("cls_token", [1, 1, d])
        if c.rope == nil { posEmbed = add("pos_embed", [1, 1 + c.posGrid * c.posGrid, d]) }
        if c.registers > 0 { registerTokens = add("register_tokens", [1, c.registers, d]) }
        patchW = add("patch_embed.proj.weight", [d, c.inChannels, c.patchSize, c.patchSize])
        patchB = add("patch_embed.proj.bias", [d])
        let fc1Rows = c.ffn == .swiglu ? 2 * c.mlpHidden : c.mlpHidden
        let fc1Name = c.ffn == .swiglu ? "mlp.w12" : "mlp.fc1"
        let fc2Name = c.ffn == .swiglu ? "mlp.w3" : "mlp.fc2"
        for i in 0..<c.depth {
            let p = "blocks.\(i)."
            var b = Block()
            b.norm1W = add(p + "norm1.weight", [d]); b.norm1B = add(p + "norm1.bias", [d])
            b.qkvW = add(p + "attn.qkv.weight", [3 * d, d]); b.qkvB = add(p + "attn.qkv.bias", [3 * d])
            b.projW = add(p + "attn.proj.weight", [d, d]); b.projB = add(p + "attn.proj.bias", [d])
            if c.layerScale { b.ls1 = add(p + "ls1.gamma", [d]) }
            b.norm2W = add(p + "norm2.weight", [d]); b.norm2B = add(p + "norm2.bias", [d])
            b.fc1W = add(p + fc1Name + ".weight", [fc1Rows, d]); b.fc1B = add(p + fc1Name + ".bias", [fc1Rows])
            b.fc2W = add(p + fc2Name + ".weight", [d, c.mlpHidden]); b.fc2B = add(p + fc2Name + ".bias", [d])
            if c.layerScale { b.ls2 = add(p + "ls2.gamma", [d]) }
            blocks.append(b)
        }
        normW = add("norm.weight", [d]); normB = add("norm.bias", [d])
    }

    public func spec(named name: String) -> ParamSpec? { specs.first { $0.name == name } }
}

/// A flat, zero-initialised, 64-byte aligned Float slab that owns its memory.
/// `@unchecked Sendable`: the storage is only mutated by its owner (loading, training); inference
/// reads it concurrently, which is safe.
public final class FloatSlab: @unchecked Sendable {
    public let count: Int
    public let base: UnsafeMutablePointer<Float>

    public init(count: Int) throws {
        guard count >= 0, count <= (1 << 34) else { throw NecoError(.outOfMemory, "slab of \(count) floats is too large") }
        var raw: UnsafeMutableRawPointer? = nil
        guard posix_memalign(&raw, 64, max(count, 1) * MemoryLayout<Float>.stride) == 0, let raw else {
            throw NecoError(.outOfMemory, "cannot allocate \(count * 4) bytes")
        }
        self.count = count
        self.base = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        base.initialize(repeating: 0, count: max(count, 1))
    }

    deinit { free(base) }

    @inlinable public subscript(offset: Int) -> UnsafeMutablePointer<Float> { base + offset }
    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: base, count: count) }
    public func zero() { base.update(repeating: 0, count: count) }
    public func copy(from other: FloatSlab) {
        precondition(other.count == count, "slab sizes differ")
        base.update(from: other.base, count: count)
    }
}

/// The weights of one ViT: a layout plus the slab it addresses.
public final class ViTParameters: @unchecked Sendable {
    public let layout: ViTLayout
    public let slab: FloatSlab
    public var config: ViTConfig { layout.config }

    public init(config: ViTConfig) throws {
        try config.validate()
        layout = ViTLayout(config: config)
        slab = try FloatSlab(count: layout.total)
    }

    @inlinable public subscript(offset: Int) -> UnsafeMutablePointer<Float> { slab.base + offset }

    /// Number of parameters.
    public var count: Int { layout.total }

    /// Pointer to a named (canonical) tensor, or nil.
    public func tensor(_ name: String) -> UnsafeMutableBufferPointer<Float>? {
        guard let s = layout.spec(named: name) else { return nil }
        return UnsafeMutableBufferPointer(start: slab.base + s.offset, count: s.count)
    }
}
