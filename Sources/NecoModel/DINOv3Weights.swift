import NecoCore

/// Loading DINOv3 checkpoints in the three key layouts, plus libneco's own canonical names.
///
///     role              Meta                     timm vit_*_patch16_dinov3   Hugging Face DINOv3ViTModel
///     CLS               cls_token                cls_token                   embeddings.cls_token
///     registers         storage_tokens           reg_token                   embeddings.register_tokens
///     patch embedding   patch_embed.proj.*       patch_embed.proj.*          embeddings.patch_embeddings.*
///     qkv weight        blocks.N.attn.qkv.weight (same)                      layer.N.attention.{q,k,v}_proj.weight
///     qkv bias          attn.qkv.bias (+bias_mask) attn.{q,v}_bias (_qkvb)   attention.{q,v}_proj.bias
///     proj              attn.proj.*              attn.proj.*                 attention.o_proj.*
///     LayerScale        ls1.gamma, ls2.gamma     gamma_1, gamma_2            layer_scale1.lambda1, layer_scale2.lambda1
///     MLP               mlp.fc1, mlp.fc2         mlp.fc1, mlp.fc2            mlp.up_proj, mlp.down_proj
///     SwiGLU            mlp.w1, w2, w3           mlp.fc1_g, fc1_x, fc2       mlp.gate_proj, up_proj, down_proj
///     final norm        norm.*                   norm.*                      norm.*
///     ignored           mask_token, rope_embed.periods (checked), bias_mask (checked)
///
/// The canonical layout fuses SwiGLU's gate and value rows into `mlp.w12` (gate first) and the
/// q, k, v projections into `attn.qkv`; parts of the qkv bias the checkpoint lacks are zero
/// (`QKVBiasMode`).
enum DINOv3Loader {
    /// Whether a key set is a DINOv3 (RoPE) checkpoint: Meta's storage tokens or RoPE periods, or a
    /// ViT with a CLS token and no position table.
    static func matches(_ names: Set<String>) -> Bool {
        if names.contains("storage_tokens") || names.contains("rope_embed.periods") { return true }
        if names.contains("embeddings.cls_token") { return !names.contains("embeddings.position_embeddings") }
        return names.contains("cls_token") && !names.contains("pos_embed")
    }

    private enum Recipe {
        case copy(String)
        case concatRows([String])
        /// q | k | v thirds of the fused bias; nil parts are zero.
        case biasParts([String?])
        case zeros
    }

    static func load(source: TensorSource, names: [String], options: LoadOptions, sourceName: String,
                     recorded: WeightLoader.Recorded?) throws -> ViTModel {
        let nameSet = Set(names)
        func shape(_ n: String) -> [Int]? { source.tensorShape(n) }
        let hf = nameSet.contains("embeddings.cls_token")
        let timm = !hf && (nameSet.contains("reg_token") || nameSet.contains("blocks.0.gamma_1"))
        let meta = !hf && !timm && (nameSet.contains("storage_tokens") || nameSet.contains("rope_embed.periods"))
        let scheme: WeightScheme = hf ? .huggingFace : (timm ? .timm : .meta)

        let clsKey = hf ? "embeddings.cls_token" : "cls_token"
        let regKey = hf ? "embeddings.register_tokens" : (timm ? "reg_token" : (meta ? "storage_tokens" : "register_tokens"))
        let patchKey = hf ? "embeddings.patch_embeddings" : "patch_embed.proj"
        let blockPrefix = hf ? "layer." : "blocks."

        guard let clsShape = shape(clsKey), let dim = clsShape.last, dim > 0 else {
            throw NecoError.format("no '\(clsKey)' tensor: not a DINOv3 ViT checkpoint")
        }
        guard let pw = shape(patchKey + ".weight"), pw.count == 4, pw[2] == pw[3], pw[0] == dim, pw[1] >= 1, pw[2] >= 1 else {
            throw NecoError.format("missing or malformed '\(patchKey).weight' (expected (D, C, P, P))")
        }
        var depth = 0
        while nameSet.contains(where: { $0.hasPrefix("\(blockPrefix)\(depth).") }) { depth += 1 }
        guard depth > 0 else { throw NecoError.format("no transformer blocks ('\(blockPrefix)0.*') found") }
        let b0 = "\(blockPrefix)0."
        func matrix(_ key: String) -> [Int]? {
            guard let s = shape(key), s.count == 2, s[0] > 0, s[1] > 0 else { return nil }
            return s
        }
        // Feed-forward: (gate, value, out) keys for SwiGLU, (fc1, fc2) for the MLP.
        let swigluKeys: (String, String, String)? = hf ? ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
            : timm ? ("mlp.fc1_g", "mlp.fc1_x", "mlp.fc2") : ("mlp.w1", "mlp.w2", "mlp.w3")
        let mlpKeys = hf ? ("mlp.up_proj", "mlp.down_proj") : ("mlp.fc1", "mlp.fc2")
        let ffn: FFNKind, hidden: Int
        var fusedW12 = false
        if hf ? nameSet.contains(b0 + "mlp.gate_proj.weight") : nameSet.contains(b0 + swigluKeys!.0 + ".weight") {
            guard let w = matrix(b0 + swigluKeys!.0 + ".weight") else { throw NecoError.format("block 0: malformed SwiGLU weights") }
            ffn = .swiglu; hidden = w[0]
        } else if let w = matrix(b0 + "mlp.w12.weight") {
            ffn = .swiglu; hidden = w[0] / 2; fusedW12 = true
        } else if let w = matrix(b0 + mlpKeys.0 + ".weight") {
            ffn = .mlp; hidden = w[0]
        } else {
            throw NecoError.format("block 0 has no 2-D feed-forward weights")
        }
        guard hidden >= 1 else { throw NecoError.format("block 0 feed-forward width is 0") }
        let ls1Key = hf ? "layer_scale1.lambda1" : (timm ? "gamma_1" : "ls1.gamma")
        let ls2Key = hf ? "layer_scale2.lambda1" : (timm ? "gamma_2" : "ls2.gamma")
        let layerScale = nameSet.contains(b0 + ls1Key)
        let registers = shape(regKey).map { $0.count >= 2 ? $0[$0.count - 2] : 0 } ?? 0
        guard registers >= 0, registers <= 64 else { throw NecoError.format("'\(regKey)' holds \(registers) register tokens (at most 64)") }
        if let want = options.registers, want != registers {
            throw NecoError.shape("asked for \(want) register tokens but the DINOv3 weights have \(registers)")
        }

        // qkv bias mode.
        var biasMode: QKVBiasMode
        if hf {
            let q = nameSet.contains(b0 + "attention.q_proj.bias"), k = nameSet.contains(b0 + "attention.k_proj.bias")
            biasMode = k ? .full : (q ? .maskedKey : .none)
        } else if timm {
            biasMode = nameSet.contains(b0 + "attn.q_bias") ? .maskedKey : .none
        } else if meta {
            if !nameSet.contains(b0 + "attn.qkv.bias") { biasMode = .none }
            else { biasMode = nameSet.contains(b0 + "attn.qkv.bias_mask") ? .maskedKey : .full }
        } else {
            biasMode = recorded?.qkvBias ?? .maskedKey
        }

        let heads = options.heads ?? recorded?.heads ?? options.expect?.heads ?? max(1, dim / 64)
        var config = ViTConfig.dinov3(name: "dinov3_d\(dim)_l\(depth)", embedDim: dim, depth: depth, heads: heads,
                                      mlpHidden: hidden, ffn: ffn, registers: registers, qkvBias: biasMode)
        config.patchSize = pw[2]
        config.inChannels = pw[1]
        config.layerScale = layerScale
        if let e = recorded?.layerNormEps { config.layerNormEps = e }

        if let e = options.expect {
            var diffs: [String] = []
            if e.family != .dinov3 { diffs.append("a DINOv3 (RoPE) checkpoint (expected \(e.name), which has a position table)") }
            if e.embedDim != dim { diffs.append("embed dim \(dim) (expected \(e.embedDim))") }
            if e.depth != depth { diffs.append("depth \(depth) (expected \(e.depth))") }
            if e.patchSize != pw[2] { diffs.append("patch \(pw[2]) (expected \(e.patchSize))") }
            if e.mlpHidden != hidden || e.ffn != ffn { diffs.append("feed-forward \(ffn.rawValue) \(hidden) (expected \(e.ffn.rawValue) \(e.mlpHidden))") }
            if e.layerScale != layerScale { diffs.append("LayerScale \(layerScale) (expected \(e.layerScale))") }
            if e.registers != registers { diffs.append("\(registers) registers (expected \(e.registers))") }
            if !diffs.isEmpty { throw NecoError.shape("config \(e.name) does not fit the weights: \(diffs.joined(separator: "; "))") }
            if options.heads == nil { config.heads = e.heads }
            config.name = e.name
        }
        if dim % config.heads != 0 || config.headDim % 4 != 0 {
            throw NecoError.shape("\(config.heads) heads do not fit embed dim \(dim) with RoPE (head width must be a multiple of 4)")
        }
        // RoPE periods: Meta stores them; they decide the bf16 rounding unless the caller does.
        var bf16 = options.ropeBF16Periods ?? recorded?.ropeBF16Periods ?? false
        if meta, nameSet.contains("rope_embed.periods") {
            let e = config.headDim
            guard let s = shape("rope_embed.periods"), s.reduce(1, *) == e / 4 else {
                throw NecoError.format("'rope_embed.periods' has shape \(shape("rope_embed.periods") ?? []); expected (\(e / 4))")
            }
            var stored = [Float](repeating: 0, count: e / 4)
            try stored.withUnsafeMutableBufferPointer { try source.readTensor("rope_embed.periods", into: $0) }
            func fits(_ b: Bool) -> Bool {
                zip(stored, RoPE.periods(headDim: e, settings: RoPESettings(bf16Periods: b))).allSatisfy {
                    abs($0 - $1) <= 1e-6 * max(1, abs($1))
                }
            }
            if options.ropeBF16Periods == nil {
                if fits(true) { bf16 = true } else if fits(false) { bf16 = false } else {
                    throw NecoError.format("'rope_embed.periods' do not follow base 100 (period j = 100^(4j/\(e))), rounded or not")
                }
            }
        }
        config.rope = RoPESettings(base: 100, bf16Periods: bf16)

        if options.expect != nil {
            // named above
        } else if let n = recorded?.name {
            config.name = n
        } else {
            for preset in ViTConfig.dinov3PresetNames {
                if let pc = ViTConfig.preset(preset), pc.embedDim == dim, pc.depth == depth, pc.patchSize == pw[2],
                   pc.mlpHidden == hidden, pc.ffn == ffn, pc.registers == registers {
                    config.name = pc.name
                }
            }
        }
        if let r = recorded {
            let inferred = ["embed_dim": dim, "depth": depth, "patch_size": pw[2], "mlp_hidden": hidden,
                            "registers": registers, "pos_grid": 0, "in_channels": pw[1]]
            let diffs = r.sizes.filter { inferred[$0.0] != $0.1 }.map { "\($0.0) \($0.1) (weights: \(inferred[$0.0] ?? -1))" }
            if !diffs.isEmpty {
                throw NecoError.format("the metadata's model config does not fit the weights: \(diffs.joined(separator: "; "))")
            }
        }
        try config.validate()

        // Canonical name → recipe.
        let params = try ViTParameters(config: config)
        var recipes: [(ParamSpec, Recipe)] = []
        for spec in params.layout.specs {
            let n = spec.name
            let r: Recipe
            if n == "cls_token" { r = .copy(clsKey) }
            else if n == "register_tokens" { r = .copy(regKey) }
            else if n.hasPrefix("patch_embed.proj.") { r = .copy(patchKey + "." + n.split(separator: ".").last!) }
            else if n.hasPrefix("norm.") { r = .copy(n) }
            else if n.hasPrefix("blocks.") {
                let parts = n.split(separator: ".", maxSplits: 2)
                let p = "\(blockPrefix)\(parts[1]).", rest = String(parts[2])
                let suffix = String(rest.split(separator: ".").last!)
                switch rest {
                case "attn.qkv.weight":
                    r = hf ? .concatRows(["q", "k", "v"].map { p + "attention.\($0)_proj.weight" }) : .copy(p + rest)
                case "attn.qkv.bias":
                    switch (biasMode, hf, timm) {
                    case (.none, _, _): r = .zeros
                    case (_, true, _): r = .biasParts(["q", "k", "v"].map {
                        $0 == "k" && biasMode != .full ? nil : p + "attention.\($0)_proj.bias" })
                    case (_, _, true): r = .biasParts([p + "attn.q_bias", nil, p + "attn.v_bias"])
                    default: r = .copy(p + rest)
                    }
                case _ where rest.hasPrefix("attn.proj."): r = .copy(hf ? p + "attention.o_proj." + suffix : p + rest)
                case "ls1.gamma": r = .copy(p + ls1Key)
                case "ls2.gamma": r = .copy(p + ls2Key)
                case _ where rest.hasPrefix("mlp.fc1."): r = .copy(p + mlpKeys.0 + "." + suffix)
                case _ where rest.hasPrefix("mlp.fc2."): r = .copy(p + mlpKeys.1 + "." + suffix)
                case _ where rest.hasPrefix("mlp.w12."):
                    r = fusedW12 ? .copy(p + rest) : .concatRows([p + swigluKeys!.0 + "." + suffix, p + swigluKeys!.1 + "." + suffix])
                case _ where rest.hasPrefix("mlp.w3."): r = .copy(fusedW12 ? p + rest : p + swigluKeys!.2 + "." + suffix)
                default: r = .copy(p + rest)   // norm1.*, norm2.*
                }
            } else { r = .zeros }
            recipes.append((spec, r))
        }

        // Check every key before reading anything.
        var used: Set<String> = ["mask_token", "embeddings.mask_token", "rope_embed.periods"]
        var missing: [String] = [], badShape: [String] = []
        func check(_ key: String, count: Int, exactShape: [Int]? = nil) {
            used.insert(key)
            guard let s = shape(key) else { missing.append(key); return }
            if s.reduce(1, *) != count || (exactShape.map { s.filter { $0 != 1 } != $0.filter { $0 != 1 } } ?? false) {
                badShape.append("\(key) \(s) (expected \(exactShape ?? [count]))")
            }
        }
        for (spec, r) in recipes {
            switch r {
            case .copy(let key): check(key, count: spec.count, exactShape: spec.shape)
            case .concatRows(let keys): for key in keys { check(key, count: spec.count / keys.count) }
            case .biasParts(let keys): for key in keys.compactMap({ $0 }) { check(key, count: spec.count / 3) }
            case .zeros: break
            }
        }
        // Meta's k-bias mask: a buffer that must read 1 | 0 | 1.
        var masks: [String] = []
        if meta && biasMode == .maskedKey {
            for i in 0..<depth {
                let key = "blocks.\(i).attn.qkv.bias_mask"
                check(key, count: 3 * dim)
                masks.append(key)
            }
        }
        let unexpected = names.filter { !used.contains($0) }
        if !missing.isEmpty || !badShape.isEmpty || !unexpected.isEmpty {
            var parts: [String] = []
            if !missing.isEmpty { parts.append("missing keys: \(missing.joined(separator: ", "))") }
            if !badShape.isEmpty { parts.append("wrong shapes: \(badShape.joined(separator: ", "))") }
            if !unexpected.isEmpty { parts.append("unexpected keys: \(unexpected.prefix(12).joined(separator: ", "))\(unexpected.count > 12 ? ", …" : "")") }
            throw NecoError.format("weights do not fit \(config.name) (DINOv3, scheme \(scheme.rawValue)): \(parts.joined(separator: "; "))")
        }
        var maskValues = [Float](repeating: 0, count: 3 * dim)
        for key in masks {
            try maskValues.withUnsafeMutableBufferPointer { try source.readTensor(key, into: $0) }
            for (j, v) in maskValues.enumerated() where v != ((j >= dim && j < 2 * dim) ? 0 : 1) {
                throw NecoError.format("'\(key)' is not the key-bias mask (1 for q and v, 0 for k): value \(v) at \(j)")
            }
        }

        // Read.
        for (spec, r) in recipes {
            let dst = params[spec.offset]
            switch r {
            case .copy(let key):
                try source.readTensor(key, into: UnsafeMutableBufferPointer(start: dst, count: spec.count))
            case .concatRows(let keys):
                let part = spec.count / keys.count
                for (i, key) in keys.enumerated() {
                    try source.readTensor(key, into: UnsafeMutableBufferPointer(start: dst + i * part, count: part))
                }
            case .biasParts(let keys):
                let part = spec.count / 3
                for (i, key) in keys.enumerated() {
                    if let key { try source.readTensor(key, into: UnsafeMutableBufferPointer(start: dst + i * part, count: part)) }
                    else { (dst + i * part).update(repeating: 0, count: part) }
                }
            case .zeros:
                dst.update(repeating: 0, count: spec.count)
            }
            if spec.name.hasSuffix("attn.qkv.bias") { RoPE.maskBias(dst, mode: biasMode, dim: dim) }
        }
        for (i, v) in params.slab.buffer.enumerated() where !v.isFinite {
            let spec = params.layout.specs.last { $0.offset <= i }!
            throw NecoError.format("tensor \(spec.name) holds a non-finite value (\(v))")
        }
        let model = ViTModel(params: params, source: sourceName, scheme: scheme)
        model.prepareForInference()
        return model
    }
}
