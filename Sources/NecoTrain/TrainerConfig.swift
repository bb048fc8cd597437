import NecoCore
import NecoModel

/// Which student blocks train (NeCo's `trainable_blocks`, NECO-SPEC §2.6). Any choice other than
/// `.all` also freezes every non-block backbone parameter (patch embedding, position table,
/// CLS and register tokens, final norm); the projection head always trains.
public enum TrainableBlocks: Sendable, Equatable {
    /// Everything trains (the paper's setting, `trainable_blocks: null`).
    case all
    /// Blocks n ..< depth train (NeCo's positive integer n).
    case freezeFirst(Int)
    /// The last n blocks train (NeCo's negative integer −n).
    case last(Int)

    /// The backbone parts this choice trains in a model of `depth` blocks.
    public func parts(depth: Int) throws -> ViTTrainableParts {
        switch self {
        case .all:
            return .all
        case .freezeFirst(let n):
            guard n >= 0, n <= depth else { throw NecoError.invalidArgument("freezeFirst(\(n)) needs 0...\(depth)") }
            return ViTTrainableParts(firstBlock: n, embeddingsAndNorm: false)
        case .last(let n):
            guard n >= 0, n <= depth else { throw NecoError.invalidArgument("last(\(n)) needs 0...\(depth)") }
            return ViTTrainableParts(firstBlock: depth - n, embeddingsAndNorm: false)
        }
    }

    var text: String {
        switch self {
        case .all: return "all"
        case .freezeFirst(let n): return "freeze_first:\(n)"
        case .last(let n): return "last:\(n)"
        }
    }

    init(text: String) throws {
        if text == "all" { self = .all; return }
        let parts = text.split(separator: ":")
        if parts.count == 2, let n = Int(parts[1]) {
            if parts[0] == "freeze_first" { self = .freezeFirst(n); return }
            if parts[0] == "last" { self = .last(n); return }
        }
        throw NecoError.format("unknown trainable-blocks setting '\(text)'")
    }
}

/// Hyper-parameters of a training run. Defaults are NeCo's ViT-S/14 settings (NECO-SPEC §5).
/// Stored as JSON in checkpoints.
public struct TrainerConfig: Sendable, Equatable {
    /// Seeds the head initialisation (stream 0) and the per-step draws (stream 1).
    public var seed: UInt64 = 0
    /// T, the number of optimisation steps the schedules span (≥ 1).
    public var totalSteps: Int
    /// Linear lr warmup steps (NeCo: 0).
    public var warmupSteps: Int = 0
    /// Steps at the start of the run in which only the projection head learns: the backbone's
    /// learning rate is 0 before this step, then follows its schedule (NeCo: 0). A fresh head is
    /// random, and the gradients it sends into the backbone at first mostly distort pre-trained
    /// features; training the head alone first ("linear probe, then fine-tune") avoids that.
    public var headOnlySteps: Int = 0
    public var lrBackbone: Double = 1e-5
    public var lrHead: Double = 1e-4
    /// Final learning rate of both groups (NeCo's `final_lr`: 0).
    public var finalLR: Double = 0
    public var weightDecayStart: Double = 0.04
    public var weightDecayEnd: Double = 0.5
    public var momentumStart: Double = 0.9995
    public var momentumEnd: Double = 1.0
    public var beta1: Double = 0.9
    public var beta2: Double = 0.999
    public var eps: Double = 1e-8
    /// Clip the gradient norm of the decaying (≥ 2-D, non-bias) trainable parameters to this
    /// value (PyTorch `clip_grad_norm_`); nil = no clipping (NeCo's default).
    public var gradClip: Double? = nil
    /// Student stochastic-depth rate (NeCo: 0.1; the teacher never drops).
    public var dropPathRate: Float = 0.1
    public var trainable: TrainableBlocks = .all
    /// Put a projection head on the patch tokens (NeCo: yes). Without it the loss sees the
    /// backbone's final-norm patch tokens.
    public var projectionHead: Bool = true
    public var headHiddenDim: Int = 2048
    public var headOutDim: Int = 256
    public var headLayers: Int = 3
    /// Keep an EMA teacher (NeCo: yes).
    public var useTeacher: Bool = true
    /// DINOv3 only: RoPE coordinate augmentation of the student's forward passes (one draw per
    /// crop set; Meta pre-trains with rescale 2). Off by default; the teacher never augments.
    public var ropeAugment = RoPEAugment()

    public init(totalSteps: Int) { self.totalSteps = totalSteps }

    /// The most steps a run may have (2^40): step counts, schedules and the data loader's
    /// random streams stay far from overflow below it.
    public static let maxTotalSteps = 1 << 40
    /// The widest projection-head layer (hidden or output), 65536.
    public static let maxHeadDim = 1 << 16

    /// Throws `.invalidArgument` naming the first bad value.
    public func validate() throws {
        func check(_ ok: Bool, _ m: String) throws { if !ok { throw NecoError.invalidArgument("trainer config: \(m)") } }
        try check(totalSteps >= 1 && totalSteps <= Self.maxTotalSteps, "totalSteps \(totalSteps) must be in 1...2^40")
        try check(warmupSteps >= 0 && warmupSteps < totalSteps, "warmupSteps \(warmupSteps) must be in 0..<totalSteps")
        try check(headOnlySteps >= 0 && headOnlySteps < totalSteps, "headOnlySteps \(headOnlySteps) must be in 0..<totalSteps")
        try check(lrBackbone >= 0 && lrHead >= 0 && finalLR >= 0 && lrBackbone.isFinite && lrHead.isFinite,
                  "learning rates must be finite and ≥ 0")
        try check(weightDecayStart >= 0 && weightDecayEnd >= 0, "weight decay must be ≥ 0")
        try check(momentumStart >= 0 && momentumStart <= 1 && momentumEnd >= 0 && momentumEnd <= 1,
                  "momentum must be in [0, 1]")
        try check(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1 && eps > 0, "AdamW betas in [0, 1), eps > 0")
        try check(gradClip.map { $0 > 0 && $0.isFinite } ?? true, "gradClip must be > 0")
        try check(dropPathRate >= 0 && dropPathRate < 1, "dropPathRate \(dropPathRate) must be in [0, 1)")
        do { try ropeAugment.validate() } catch let e as NecoError { try check(false, e.message) }
        try check(!projectionHead || (headHiddenDim >= 1 && headOutDim >= 1 && headHiddenDim <= Self.maxHeadDim
                                      && headOutDim <= Self.maxHeadDim && headLayers >= 1 && headLayers <= 16),
                  "projection head sizes out of range")
    }

    /// The head shape for a backbone of width `inDim`, or nil without a head.
    public func headConfig(inDim: Int) -> HeadConfig? {
        projectionHead ? HeadConfig(inDim: inDim, hiddenDim: headHiddenDim, outDim: headOutDim, layers: headLayers) : nil
    }

    // MARK: JSON

    public var json: JSONValue {
        .object([
            ("seed", .string(String(seed))),
            ("total_steps", .number(Double(totalSteps))),
            ("warmup_steps", .number(Double(warmupSteps))),
            ("lr_backbone", .number(lrBackbone)),
            ("lr_head", .number(lrHead)),
            ("final_lr", .number(finalLR)),
            ("weight_decay_start", .number(weightDecayStart)),
            ("weight_decay_end", .number(weightDecayEnd)),
            ("momentum_start", .number(momentumStart)),
            ("momentum_end", .number(momentumEnd)),
            ("beta1", .number(beta1)),
            ("beta2", .number(beta2)),
            ("eps", .number(eps)),
            ("grad_clip", gradClip.map { .number($0) } ?? .null),
            ("drop_path_rate", .number(Double(dropPathRate))),
            ("trainable", .string(trainable.text)),
            ("projection_head", .bool(projectionHead)),
            ("head_hidden_dim", .number(Double(headHiddenDim))),
            ("head_out_dim", .number(Double(headOutDim))),
            ("head_layers", .number(Double(headLayers))),
            ("use_teacher", .bool(useTeacher)),
        ] + (headOnlySteps > 0 ? [("head_only_steps", .number(Double(headOnlySteps)))] : []) + ropeJSON)
    }

    /// Only the RoPE augmentation settings that are on (older files have none).
    var ropeJSON: [(String, JSONValue)] {
        var out: [(String, JSONValue)] = []
        if let v = ropeAugment.shift { out.append(("rope_shift", .number(Double(v)))) }
        if let v = ropeAugment.jitter { out.append(("rope_jitter", .number(Double(v)))) }
        if let v = ropeAugment.rescale { out.append(("rope_rescale", .number(Double(v)))) }
        return out
    }

    public init(json j: JSONValue) throws {
        func num(_ k: String) throws -> Double {
            guard let v = j[k]?.doubleValue else { throw NecoError.format("trainer config: missing number '\(k)'") }
            return v
        }
        func int(_ k: String) throws -> Int {
            guard let v = j[k]?.intValue else { throw NecoError.format("trainer config: missing integer '\(k)'") }
            return v
        }
        func bool(_ k: String) throws -> Bool {
            guard let v = j[k]?.boolValue else { throw NecoError.format("trainer config: missing bool '\(k)'") }
            return v
        }
        guard let seedText = j["seed"]?.stringValue, let seed = UInt64(seedText) else {
            throw NecoError.format("trainer config: missing 'seed'")
        }
        self.init(totalSteps: try int("total_steps"))
        self.seed = seed
        warmupSteps = try int("warmup_steps")
        headOnlySteps = j["head_only_steps"]?.intValue ?? 0  // absent in files written before it existed
        lrBackbone = try num("lr_backbone")
        lrHead = try num("lr_head")
        finalLR = try num("final_lr")
        weightDecayStart = try num("weight_decay_start")
        weightDecayEnd = try num("weight_decay_end")
        momentumStart = try num("momentum_start")
        momentumEnd = try num("momentum_end")
        beta1 = try num("beta1")
        beta2 = try num("beta2")
        eps = try num("eps")
        gradClip = j["grad_clip"].flatMap { $0.isNull ? nil : $0.doubleValue }
        dropPathRate = Float(try num("drop_path_rate"))
        guard let t = j["trainable"]?.stringValue else { throw NecoError.format("trainer config: missing 'trainable'") }
        trainable = try TrainableBlocks(text: t)
        projectionHead = try bool("projection_head")
        headHiddenDim = try int("head_hidden_dim")
        headOutDim = try int("head_out_dim")
        headLayers = try int("head_layers")
        useTeacher = try bool("use_teacher")
        func optionalFloat(_ k: String) -> Float? { j[k]?.doubleValue.map { Float($0) } }
        ropeAugment = RoPEAugment(shift: optionalFloat("rope_shift"), jitter: optionalFloat("rope_jitter"),
                                  rescale: optionalFloat("rope_rescale"))
        try validate()
    }
}

extension ViTConfig {
    /// The architecture as JSON (checkpoint metadata).
    public var trainingJSON: JSONValue {
        .object([
            ("name", .string(name)),
            ("patch_size", .number(Double(patchSize))),
            ("embed_dim", .number(Double(embedDim))),
            ("depth", .number(Double(depth))),
            ("heads", .number(Double(heads))),
            ("mlp_hidden", .number(Double(mlpHidden))),
            ("ffn", .string(ffn.rawValue)),
            ("layer_scale", .bool(layerScale)),
            ("registers", .number(Double(registers))),
            ("pos_grid", .number(Double(posGrid))),
            ("pos_embed_rule", .string(posEmbedRule.rawValue)),
            ("in_channels", .number(Double(inChannels))),
            ("layer_norm_eps", .number(Double(layerNormEps))),
        ] + (rope.map { r in [("qkv_bias", JSONValue.string(qkvBias.rawValue)), ("rope_base", .number(Double(r.base))),
                               ("rope_bf16_periods", .bool(r.bf16Periods))] } ?? []))
    }

    public init(trainingJSON j: JSONValue) throws {
        func int(_ k: String) throws -> Int {
            guard let v = j[k]?.intValue else { throw NecoError.format("model config: missing integer '\(k)'") }
            return v
        }
        guard let name = j["name"]?.stringValue, let ffnText = j["ffn"]?.stringValue, let ffn = FFNKind(rawValue: ffnText),
              let ruleText = j["pos_embed_rule"]?.stringValue, let rule = PosEmbedRule(rawValue: ruleText),
              let ls = j["layer_scale"]?.boolValue, let eps = j["layer_norm_eps"]?.doubleValue else {
            throw NecoError.format("model config: missing or unknown name / ffn / pos_embed_rule / layer_scale / layer_norm_eps")
        }
        self.init(name: name, patchSize: try int("patch_size"), embedDim: try int("embed_dim"), depth: try int("depth"),
                  heads: try int("heads"), mlpHidden: try int("mlp_hidden"), ffn: ffn, layerScale: ls,
                  registers: try int("registers"), posGrid: try int("pos_grid"), posEmbedRule: rule)
        inChannels = try int("in_channels")
        layerNormEps = Float(eps)
        if let base = j["rope_base"]?.doubleValue {
            rope = RoPESettings(base: Float(base), bf16Periods: j["rope_bf16_periods"]?.boolValue ?? false)
            guard let m = j["qkv_bias"]?.stringValue.flatMap(QKVBiasMode.init(rawValue:)) else {
                throw NecoError.format("model config: missing or unknown 'qkv_bias'")
            }
            qkvBias = m
        }
        try validate()
    }
}
