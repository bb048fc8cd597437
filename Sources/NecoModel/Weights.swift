import NecoCore

/// Key naming scheme of a ViT checkpoint; detected from the key set.
public enum WeightScheme: String, Sendable {
    /// Meta's DINOv2 / DINO checkpoints (`blocks.N.attn.qkv.*`, `pos_embed` with the CLS slot,
    /// `register_tokens`). timm's models without registers use the very same keys.
    case meta
    /// timm `vit_*_dinov2` with registers: `reg_token`, and a `pos_embed` of (1, G², D) without the
    /// CLS slot because timm folds that slot into `cls_token`.
    case timm
    /// Hugging Face `Dinov2Model` / `Dinov2WithRegistersModel`: `embeddings.*`,
    /// `encoder.layer.N.attention.attention.{query,key,value}`.
    case huggingFace = "hf"
}

/// Anything that can hand out named float tensors: a safetensors file, or a dictionary in tests.
public protocol TensorSource {
    var tensorNames: [String] { get }
    func tensorShape(_ name: String) -> [Int]?
    func readTensor(_ name: String, into: UnsafeMutableBufferPointer<Float>) throws
}

extension SafetensorsFile: TensorSource {
    public var tensorNames: [String] { names }
    public func tensorShape(_ name: String) -> [Int]? { info(name)?.shape }
    public func readTensor(_ name: String, into out: UnsafeMutableBufferPointer<Float>) throws {
        try readFloat32(name, into: out)
    }
}

/// In-memory tensors (tests, formula weights).
public struct DictionaryTensorSource: TensorSource {
    public var tensors: [(name: String, shape: [Int], data: [Float])]
    public init(_ tensors: [(name: String, shape: [Int], data: [Float])]) { self.tensors = tensors }
    public var tensorNames: [String] { tensors.map(\.name) }
    public func tensorShape(_ name: String) -> [Int]? { tensors.first { $0.name == name }?.shape }
    public func readTensor(_ name: String, into out: UnsafeMutableBufferPointer<Float>) throws {
        guard let t = tensors.first(where: { $0.name == name }) else { throw NecoError.format("no tensor '\(name)'") }
        guard t.data.count == out.count else { throw NecoError.shape("tensor '\(name)' has \(t.data.count) values, need \(out.count)") }
        _ = out.update(from: t.data)
    }
}

/// Options for loading a checkpoint. Anything left nil is inferred from the weights.
public struct LoadOptions: Sendable {
    /// Attention heads; default embed dim / 64 (every DINO / DINOv2 model has 64-wide heads).
    public var heads: Int?
    /// Register tokens to build. 0 with register weights drops them (NeCo's "XR" setting);
    /// any other value must match the weights.
    public var registers: Int?
    /// Position resampling rule; default depends on the scheme (see `defaultRule`).
    public var posEmbedRule: PosEmbedRule?
    /// If set, the inferred architecture must equal this preset (apart from the rule and name).
    public var expect: ViTConfig?
    /// DINOv3: round the RoPE periods to bfloat16 (Meta's stored periods); default: as the file's
    /// `rope_embed.periods` show (Meta), else float32 (timm, Hugging Face).
    public var ropeBF16Periods: Bool?
    public init(heads: Int? = nil, registers: Int? = nil, posEmbedRule: PosEmbedRule? = nil, expect: ViTConfig? = nil,
                ropeBF16Periods: Bool? = nil) {
        self.heads = heads
        self.registers = registers
        self.posEmbedRule = posEmbedRule
        self.expect = expect
        self.ropeBF16Periods = ropeBF16Periods
    }
}

public enum WeightLoader {
    /// Keys that exist in checkpoints but are not used by the forward pass.
    static let ignored: Set<String> = ["mask_token", "embeddings.mask_token"]
    /// Key prefixes that are not part of the backbone. A libneco training checkpoint
    /// (NecoTrain `Checkpoint`) stores the student backbone under the canonical names and, next
    /// to it, the student's projection head (`projection_head.`, which NeCo's own loader drops
    /// too), the teacher (`teacher.`) and the AdamW moments (`optimizer.`); skipping these three
    /// makes a checkpoint load as its student backbone.
    public static let ignoredPrefixes = ["projection_head.", "teacher.", "optimizer."]

    /// `__metadata__["format"]` values of libneco's own files, whose `model` entry records the
    /// architecture (NecoTrain `Checkpoint.format` and `Checkpoint.exportModel`).
    public static let libnecoFormats: Set<String> = ["neco-checkpoint", "neco-model"]

    /// The settings a libneco file records in `__metadata__["model"]` (`ViTConfig`'s training
    /// JSON) that its tensors cannot show: heads, position rule, name and LayerNorm ε, plus the
    /// integer sizes, which must agree with the tensors.
    struct Recorded {
        var name: String?
        var heads: Int?
        var posEmbedRule: PosEmbedRule?
        var layerNormEps: Float?
        /// "embed_dim", "depth", "patch_size", "mlp_hidden", "registers", "pos_grid", "in_channels".
        var sizes: [(String, Int)] = []
        /// Tensors the file lists in `__metadata__["extra_tensors"]` (comma-separated): state
        /// stored next to the model, such as a NeCo run's reference queues; not part of it.
        var extraTensors: Set<String> = []
        /// DINOv3: "qkv_bias" and "rope_bf16_periods".
        var qkvBias: QKVBiasMode?
        var ropeBF16Periods: Bool?
    }

    /// The recorded architecture of a libneco file, or nil for any other file.
    /// - Throws: `.format` when `model` is missing, not JSON, or holds a wrongly typed or unknown value.
    static func recorded(metadata: [String: String]) throws -> Recorded? {
        guard let format = metadata["format"], libnecoFormats.contains(format) else { return nil }
        guard let text = metadata["model"] else { throw NecoError.format("\(format) file has no 'model' metadata") }
        var r = Recorded()
        r.extraTensors = Set((metadata["extra_tensors"] ?? "").split(separator: ",").map(String.init))
        let j = try JSONValue.parse(text)
        guard j.objectValue != nil else { throw NecoError.format("metadata 'model' is not a JSON object") }
        func bad(_ key: String) -> NecoError { NecoError.format("metadata 'model': bad '\(key)' \(j[key]?.serialized() ?? "")") }
        if let v = j["name"] { guard let s = v.stringValue else { throw bad("name") }; r.name = s }
        if let v = j["heads"] { guard let h = v.intValue, h >= 1 else { throw bad("heads") }; r.heads = h }
        if let v = j["pos_embed_rule"] {
            guard let s = v.stringValue, let rule = PosEmbedRule(rawValue: s) else { throw bad("pos_embed_rule") }
            r.posEmbedRule = rule
        }
        if let v = j["layer_norm_eps"] {
            guard let e = v.doubleValue, e > 0, e < 1 else { throw bad("layer_norm_eps") }
            r.layerNormEps = Float(e)
        }
        if let v = j["qkv_bias"] {
            guard let s = v.stringValue, let m = QKVBiasMode(rawValue: s) else { throw bad("qkv_bias") }
            r.qkvBias = m
        }
        if let v = j["rope_bf16_periods"] { guard let b = v.boolValue else { throw bad("rope_bf16_periods") }; r.ropeBF16Periods = b }
        for key in ["embed_dim", "depth", "patch_size", "mlp_hidden", "registers", "pos_grid", "in_channels"] {
            guard let v = j[key] else { continue }
            guard let n = v.intValue else { throw bad(key) }
            r.sizes.append((key, n))
        }
        return r
    }

    public static func detectScheme(_ names: [String]) -> WeightScheme {
        if names.contains(where: { $0.hasPrefix("embeddings.") || $0.hasPrefix("encoder.layer.") }) { return .huggingFace }
        if names.contains("reg_token") { return .timm }
        return .meta
    }

    /// Rule each scheme's own implementation uses when no override is given.
    public static func defaultRule(scheme: WeightScheme, registers: Int) -> PosEmbedRule {
        switch scheme {
        case .huggingFace: return .bicubic
        case .timm: return .antialias
        case .meta: return registers > 0 ? .antialias : .neco
        }
    }

    /// Loads a safetensors checkpoint in any of the three schemes, or a libneco file: a training
    /// checkpoint (its student backbone; the tensors named in `extra_tensors` are skipped too) or
    /// an exported model. For libneco files the architecture recorded in the metadata supplies the
    /// heads, position rule, name and LayerNorm ε wherever `options` leaves them nil, and its sizes
    /// must agree with the tensors.
    public static func load(path: String, options: LoadOptions = LoadOptions()) throws -> ViTModel {
        let file = try SafetensorsFile(path: path)
        do {
            let recorded = try recorded(metadata: file.metadata)
            var o = options
            if let r = recorded {
                o.heads = o.heads ?? r.heads
                o.posEmbedRule = o.posEmbedRule ?? r.posEmbedRule
            }
            return try load(source: file, options: o, sourceName: path, recorded: recorded)
        } catch let e as NecoError {
            throw NecoError(e.kind, e.message.hasPrefix(path) ? e.message : "\(path): \(e.message)")
        }
    }

    /// Where each canonical tensor comes from in the source.
    private enum Recipe {
        case copy(String)
        case concatRows([String])           // HF q, k, v → fused qkv
        case posWithoutCLS(String)          // timm (1, G², D): CLS slot left at zero
        case dropped                        // nothing in the source (e.g. zero CLS slot handled above)
    }

    public static func load(source: TensorSource, options: LoadOptions = LoadOptions(),
                            sourceName: String = "weights") throws -> ViTModel {
        try load(source: source, options: options, sourceName: sourceName, recorded: nil)
    }

    static func load(source: TensorSource, options: LoadOptions, sourceName: String,
                     recorded: Recorded?) throws -> ViTModel {
        let extra = recorded?.extraTensors ?? []
        let names = source.tensorNames.filter { name in
            !ignoredPrefixes.contains { name.hasPrefix($0) } && !extra.contains(name)
        }
        // Every tensor has at least one dimension and no zero-sized one: shapes are read by index
        // below, so a scalar or empty tensor is refused before anything else.
        for n in names {
            guard let s = source.tensorShape(n) else { continue }
            guard !s.isEmpty, s.allSatisfy({ $0 >= 1 }) else {
                throw NecoError.format("tensor '\(n)' has shape \(s); a ViT checkpoint has no scalar or empty tensors")
            }
        }
        let nameSet = Set(names)
        if DINOv3Loader.matches(nameSet) {
            return try DINOv3Loader.load(source: source, names: names, options: options, sourceName: sourceName,
                                         recorded: recorded)
        }
        let scheme = detectScheme(names)
        func shape(_ n: String) -> [Int]? { source.tensorShape(n) }

        // Source key names per canonical role.
        let hf = scheme == .huggingFace
        let clsKey = hf ? "embeddings.cls_token" : "cls_token"
        let posKey = hf ? "embeddings.position_embeddings" : "pos_embed"
        let regKey = hf ? "embeddings.register_tokens" : (scheme == .timm ? "reg_token" : "register_tokens")
        let patchKey = hf ? "embeddings.patch_embeddings.projection" : "patch_embed.proj"
        let blockPrefix = hf ? "encoder.layer." : "blocks."

        // Architecture from shapes.
        guard let clsShape = shape(clsKey), let dim = clsShape.last, dim > 0 else {
            throw NecoError.format("no '\(clsKey)' tensor: not a DINO/DINOv2 ViT checkpoint (scheme \(scheme.rawValue); keys: \(names.prefix(8).joined(separator: ", "))\(names.count > 8 ? ", …" : ""))")
        }
        guard let pw = shape(patchKey + ".weight"), pw.count == 4, pw[2] == pw[3], pw[0] == dim, pw[1] >= 1, pw[2] >= 1 else {
            throw NecoError.format("missing or malformed '\(patchKey).weight' (expected (D, C, P, P))")
        }
        var depth = 0
        while nameSet.contains(where: { $0.hasPrefix("\(blockPrefix)\(depth).") }) { depth += 1 }
        guard depth > 0 else { throw NecoError.format("no transformer blocks ('\(blockPrefix)0.*') found") }
        let b0 = "\(blockPrefix)0."
        let ffn: FFNKind
        let hidden: Int
        func matrix(_ key: String) -> [Int]? {
            guard let s = shape(key), s.count == 2, s[0] > 0, s[1] > 0 else { return nil }
            return s
        }
        if hf {
            if let w = matrix(b0 + "mlp.weights_in.weight") { ffn = .swiglu; hidden = w[0] / 2 }
            else if let w = matrix(b0 + "mlp.fc1.weight") { ffn = .mlp; hidden = w[0] }
            else { throw NecoError.format("block 0 has no 2-D feed-forward weights (mlp.fc1 / mlp.weights_in)") }
        } else if let w = matrix(b0 + "mlp.w12.weight") {
            ffn = .swiglu; hidden = w[0] / 2
        } else if let w1 = matrix(b0 + "mlp.fc1.weight"), let w2 = matrix(b0 + "mlp.fc2.weight") {
            if w1[0] == 2 * w2[1] { ffn = .swiglu; hidden = w2[1] } else { ffn = .mlp; hidden = w1[0] }
        } else {
            throw NecoError.format("block 0 has no 2-D feed-forward weights (mlp.fc1 / mlp.w12)")
        }
        guard hidden >= 1 else { throw NecoError.format("block 0 feed-forward width is 0") }
        let layerScale = nameSet.contains(hf ? b0 + "layer_scale1.lambda1" : b0 + "ls1.gamma")
        let weightRegisters = shape(regKey).map { $0.count >= 2 ? $0[$0.count - 2] : 0 } ?? 0
        guard weightRegisters >= 0, weightRegisters <= 64 else {
            throw NecoError.format("'\(regKey)' holds \(weightRegisters) register tokens (at most 64 supported)")
        }
        guard let posShape = shape(posKey), posShape.count >= 2 else { throw NecoError.format("no '\(posKey)' tensor") }
        let posRows = posShape[posShape.count - 2]
        guard posRows >= 1, posRows <= 1 << 20, posShape.last == dim else {
            throw NecoError.format("'\(posKey)' has shape \(posShape); expected (1, G² or 1 + G², \(dim))")
        }
        func isqrt(_ v: Int) -> Int? {
            guard v >= 1 else { return nil }
            let r = Int(Double(v).squareRoot().rounded())
            return r * r == v ? r : nil
        }
        let posHasCLS: Bool
        let grid: Int
        if let g = isqrt(posRows - 1), posRows > 1 { posHasCLS = true; grid = g }
        else if let g = isqrt(posRows) { posHasCLS = false; grid = g }
        else { throw NecoError.format("'\(posKey)' has \(posRows) rows: neither G² nor 1 + G²") }

        var registers = weightRegisters
        if let want = options.registers {
            if want == 0 { registers = 0 }
            else if want != weightRegisters {
                throw NecoError.shape("asked for \(want) register tokens but the weights have \(weightRegisters)")
            }
        }
        let heads = options.heads ?? max(1, dim / 64)
        var config = ViTConfig(name: "vit_d\(dim)_p\(pw[2])_l\(depth)", patchSize: pw[2], embedDim: dim, depth: depth,
                               heads: heads, mlpHidden: hidden, ffn: ffn, layerScale: layerScale, registers: registers,
                               posGrid: grid, posEmbedRule: .neco)
        config.inChannels = pw[1]
        config.posEmbedRule = options.posEmbedRule ?? defaultRule(scheme: scheme, registers: weightRegisters)
        if let e = options.expect {
            var diffs: [String] = []
            if e.embedDim != dim { diffs.append("embed dim \(dim) (expected \(e.embedDim))") }
            if e.depth != depth { diffs.append("depth \(depth) (expected \(e.depth))") }
            if e.patchSize != pw[2] { diffs.append("patch \(pw[2]) (expected \(e.patchSize))") }
            if e.mlpHidden != hidden || e.ffn != ffn { diffs.append("feed-forward \(ffn.rawValue) \(hidden) (expected \(e.ffn.rawValue) \(e.mlpHidden))") }
            if e.layerScale != layerScale { diffs.append("LayerScale \(layerScale) (expected \(e.layerScale))") }
            if e.posGrid != grid { diffs.append("position grid \(grid) (expected \(e.posGrid))") }
            if options.heads == nil { config.heads = e.heads }
            if !diffs.isEmpty {
                throw NecoError.shape("config \(e.name) does not fit the weights: \(diffs.joined(separator: "; "))")
            }
            config.name = e.name
        } else {
            for preset in ViTConfig.presetNames {
                if let pc = ViTConfig.preset(preset, registers: registers), pc.embedDim == dim, pc.depth == depth,
                   pc.patchSize == pw[2], pc.mlpHidden == hidden, pc.ffn == ffn, pc.posGrid == grid {
                    config.name = pc.name
                }
            }
        }
        if options.heads == nil && dim % config.heads != 0 { config.heads = 1 }
        if let r = recorded {
            let inferred = ["embed_dim": dim, "depth": depth, "patch_size": pw[2], "mlp_hidden": hidden,
                            "registers": weightRegisters, "pos_grid": grid, "in_channels": pw[1]]
            let diffs = r.sizes.filter { inferred[$0.0] != $0.1 }.map { "\($0.0) \($0.1) (weights: \(inferred[$0.0]!))" }
            if !diffs.isEmpty {
                throw NecoError.format("the metadata's model config does not fit the weights: \(diffs.joined(separator: "; "))")
            }
            if options.expect == nil, let n = r.name { config.name = n }
            if let e = r.layerNormEps { config.layerNormEps = e }
        }
        try config.validate()

        // Canonical name → recipe.
        let params = try ViTParameters(config: config)
        var recipes: [(ParamSpec, Recipe)] = []
        for spec in params.layout.specs {
            let n = spec.name
            let r: Recipe
            if n == "cls_token" { r = .copy(clsKey) }
            else if n == "pos_embed" { r = posHasCLS ? .copy(posKey) : .posWithoutCLS(posKey) }
            else if n == "register_tokens" { r = .copy(regKey) }
            else if n.hasPrefix("patch_embed.proj.") { r = .copy(patchKey + "." + n.split(separator: ".").last!) }
            else if n.hasPrefix("norm.") { r = .copy(hf ? "layernorm." + n.dropFirst(5) : n) }
            else if n.hasPrefix("blocks.") {
                let parts = n.split(separator: ".", maxSplits: 2)
                let idx = parts[1], rest = String(parts[2])
                if !hf {
                    var key = "blocks.\(idx)." + rest
                    if scheme != .meta || !nameSet.contains(key) {
                        // timm packs SwiGLU as mlp.fc1 / mlp.fc2.
                        if rest.hasPrefix("mlp.w12.") { key = "blocks.\(idx).mlp.fc1." + rest.dropFirst(8) }
                        if rest.hasPrefix("mlp.w3.") { key = "blocks.\(idx).mlp.fc2." + rest.dropFirst(7) }
                    }
                    r = .copy(key)
                } else {
                    let p = "encoder.layer.\(idx)."
                    let suffix = String(rest.split(separator: ".").last!)
                    switch rest {
                    case _ where rest.hasPrefix("norm1.") || rest.hasPrefix("norm2."): r = .copy(p + rest)
                    case _ where rest.hasPrefix("attn.qkv."):
                        r = .concatRows(["query", "key", "value"].map { p + "attention.attention.\($0).\(suffix)" })
                    case _ where rest.hasPrefix("attn.proj."): r = .copy(p + "attention.output.dense." + suffix)
                    case "ls1.gamma": r = .copy(p + "layer_scale1.lambda1")
                    case "ls2.gamma": r = .copy(p + "layer_scale2.lambda1")
                    case _ where rest.hasPrefix("mlp.fc1.") || rest.hasPrefix("mlp.fc2."): r = .copy(p + rest)
                    case _ where rest.hasPrefix("mlp.w12."): r = .copy(p + "mlp.weights_in." + suffix)
                    case _ where rest.hasPrefix("mlp.w3."): r = .copy(p + "mlp.weights_out." + suffix)
                    default: r = .copy(p + rest)
                    }
                }
            } else { r = .dropped }
            recipes.append((spec, r))
        }

        // Check every key before reading anything: one error lists all problems.
        var used = Set<String>()
        var missing: [String] = [], badShape: [String] = []
        for (spec, r) in recipes {
            switch r {
            case .copy(let key):
                used.insert(key)
                guard let s = shape(key) else { missing.append(key); continue }
                if s.reduce(1, *) != spec.count || s.filter({ $0 != 1 }) != spec.shape.filter({ $0 != 1 }) {
                    badShape.append("\(key) \(s) (expected \(spec.shape))")
                }
            case .concatRows(let keys):
                for key in keys {
                    used.insert(key)
                    guard let s = shape(key) else { missing.append(key); continue }
                    if s.reduce(1, *) != spec.count / 3 { badShape.append("\(key) \(s) (expected \(spec.shape[0] / 3)×…)") }
                }
            case .posWithoutCLS(let key):
                used.insert(key)
                if let s = shape(key), s.reduce(1, *) != spec.count - config.embedDim {
                    badShape.append("\(key) \(s)")
                }
            case .dropped: break
            }
        }
        if registers == 0 && weightRegisters > 0 { used.insert(regKey) }  // XR: register weights dropped on purpose
        let unexpected = names.filter { !used.contains($0) && !ignored.contains($0) }
        if !missing.isEmpty || !badShape.isEmpty || !unexpected.isEmpty {
            var parts: [String] = []
            if !missing.isEmpty { parts.append("missing keys: \(missing.joined(separator: ", "))") }
            if !badShape.isEmpty { parts.append("wrong shapes: \(badShape.joined(separator: ", "))") }
            if !unexpected.isEmpty { parts.append("unexpected keys: \(unexpected.joined(separator: ", "))") }
            throw NecoError.format("weights do not fit \(config.name) (scheme \(scheme.rawValue)): \(parts.joined(separator: "; "))")
        }

        // Read.
        for (spec, r) in recipes {
            let dst = params[spec.offset]
            switch r {
            case .copy(let key):
                try source.readTensor(key, into: UnsafeMutableBufferPointer(start: dst, count: spec.count))
            case .concatRows(let keys):
                let part = spec.count / 3
                for (i, key) in keys.enumerated() {
                    try source.readTensor(key, into: UnsafeMutableBufferPointer(start: dst + i * part, count: part))
                }
            case .posWithoutCLS(let key):
                dst.update(repeating: 0, count: config.embedDim)
                try source.readTensor(key, into: UnsafeMutableBufferPointer(start: dst + config.embedDim,
                                                                            count: spec.count - config.embedDim))
            case .dropped: break
            }
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
