import CNecoSupport
import Neco
import NecoCore
import NecoModel
import NecoTrain

#if canImport(Glibc)
import Glibc
#endif

/// What a `neco_model *` points at: the loaded model, its extractor and the default input size.
final class ModelHandle: Handle {
    override class var cName: String { "neco_model" }
    let extractor: FeatureExtractor
    var model: ViTModel { extractor.model }
    let imageHeight: Int
    let imageWidth: Int
    /// NUL-terminated architecture name returned by neco_model_name (owned, freed in deinit).
    let name: UnsafeMutablePointer<CChar>

    init(model: ViTModel, imageHeight: Int, imageWidth: Int, name: UnsafeMutablePointer<CChar>) {
        extractor = FeatureExtractor(model: model)
        self.imageHeight = imageHeight
        self.imageWidth = imageWidth
        self.name = name
    }

    deinit { free(name) }
}

/// Limits on model params, checked before anything is loaded.
enum ModelLimits {
    static let maxHeads: Int32 = 1024
    static let maxRegisters: Int32 = 64
    static let maxImageSide: Int32 = 16384
}

@_cdecl("neco_model_default_params")
public func neco_model_default_params() -> neco_model_params {
    neco_model_params(struct_size: MemoryLayout<neco_model_params>.size, n_heads: 0, n_registers: -1, pos_rule: Int32(NECO_POS_RULE_AUTO.rawValue),
                      image_height: 224, image_width: 224, expect_arch: nil)
}

@_cdecl("neco_model_load")
public func neco_model_load(_ path: UnsafePointer<CChar>?, _ params: UnsafePointer<neco_model_params>?,
                            _ outModel: UnsafeMutablePointer<OpaquePointer?>?) -> neco_status {
    guarded("neco_model_load") {
        let out = try clearOut(outModel, "out_model")
        let file = try NeCoRun.modelFile(try cString(path, "path"))  // a run folder stands for its checkpoint
        let p = try readParams(params, Int32(NECO_SUPPORT_MODEL_PARAMS), neco_model_default_params(), "neco_model_params")

        // Params.
        var options = LoadOptions()
        guard p.n_heads >= 0, p.n_heads <= ModelLimits.maxHeads else {
            throw NecoError.invalidArgument("params.n_heads = \(p.n_heads) out of range 0...\(ModelLimits.maxHeads) (0 = embed dim / 64)")
        }
        if p.n_heads > 0 { options.heads = Int(p.n_heads) }
        guard p.n_registers >= -1, p.n_registers <= ModelLimits.maxRegisters else {
            throw NecoError.invalidArgument("params.n_registers = \(p.n_registers) out of range -1...\(ModelLimits.maxRegisters) (-1 = as stored)")
        }
        if p.n_registers >= 0 { options.registers = Int(p.n_registers) }
        switch p.pos_rule {
        case Int32(NECO_POS_RULE_AUTO.rawValue): break
        case Int32(NECO_POS_RULE_NECO.rawValue): options.posEmbedRule = .neco
        case Int32(NECO_POS_RULE_BICUBIC.rawValue): options.posEmbedRule = .bicubic
        case Int32(NECO_POS_RULE_ANTIALIAS.rawValue): options.posEmbedRule = .antialias
        default: throw NecoError.invalidArgument("params.pos_rule = \(p.pos_rule) is not a neco_pos_rule (0...3)")
        }
        guard p.image_height >= 1, p.image_height <= ModelLimits.maxImageSide,
              p.image_width >= 1, p.image_width <= ModelLimits.maxImageSide else {
            throw NecoError.invalidArgument("params.image_height×image_width = \(p.image_height)×\(p.image_width) out of range 1...\(ModelLimits.maxImageSide)")
        }
        if let arch = p.expect_arch {
            let name = try cString(arch, "params.expect_arch", maxBytes: 64)
            guard let preset = ViTConfig.preset(name, registers: max(0, Int(p.n_registers))) else {
                throw NecoError.invalidArgument("params.expect_arch '\(name)' is not one of \(ViTConfig.presetNames.joined(separator: ", "))")
            }
            options.expect = preset
        }

        // Weights (WeightLoader refuses scalar and empty tensors before it reads any shape).
        let model: ViTModel
        do {
            // By path, so that libneco's own files (training checkpoints, exported students)
            // bring the architecture they record: heads and position rule where params say auto.
            model = try WeightLoader.load(path: file, options: options)
        } catch let e as NecoError {
            throw NecoError(e.kind, e.message.hasPrefix(file) ? e.message : "\(file): \(e.message)")
        }
        let c = model.config
        guard c.inChannels == 3 else {
            throw NecoError.format("\(file): the patch embedding takes \(c.inChannels) channels; neco.h feeds RGB (3)")
        }
        do {
            try model.validateInput(height: Int(p.image_height), width: Int(p.image_width))
        } catch let e as NecoError {
            throw NecoError.shape("params.image_height×image_width: \(e.message)")
        }
        guard let name = strdup(c.name) else { throw NecoError(.outOfMemory, "cannot copy the model name") }
        let handle = ModelHandle(model: model, imageHeight: Int(p.image_height), imageWidth: Int(p.image_width), name: name)
        log(NECO_LOG_INFO, "loaded \(file): \(c.name) (\(c.family.rawValue)), D \(c.embedDim), \(c.depth) layers, \(c.heads) heads, \(c.registers) registers, patch \(c.patchSize), \(model.parameterCount) parameters, scheme \(model.scheme.rawValue), pos rule \(c.posEmbedRule.rawValue)")
        out.pointee = box(handle)
    }
}

@_cdecl("neco_model_free")
public func neco_model_free(_ model: OpaquePointer?) {
    release(model, "neco_model_free", as: ModelHandle.self)
}

/// `get(model)` for a valid model, else 0 and a message.
private func modelValue<R: BinaryInteger>(_ function: StaticString, _ p: OpaquePointer?, _ get: (ModelHandle) -> Int) -> R {
    do {
        let m = try unbox(p, "model", as: ModelHandle.self)
        return R(clamping: get(m))
    } catch let e as NecoError {
        note(function, e.message)
    } catch {
        note(function, "\(error)")
    }
    return 0
}

@_cdecl("neco_model_embed_dim")
public func neco_model_embed_dim(_ model: OpaquePointer?) -> Int32 {
    modelValue("neco_model_embed_dim", model) { $0.model.config.embedDim }
}

@_cdecl("neco_model_patch_size")
public func neco_model_patch_size(_ model: OpaquePointer?) -> Int32 {
    modelValue("neco_model_patch_size", model) { $0.model.config.patchSize }
}

@_cdecl("neco_model_n_layers")
public func neco_model_n_layers(_ model: OpaquePointer?) -> Int32 {
    modelValue("neco_model_n_layers", model) { $0.model.config.depth }
}

@_cdecl("neco_model_n_heads")
public func neco_model_n_heads(_ model: OpaquePointer?) -> Int32 {
    modelValue("neco_model_n_heads", model) { $0.model.config.heads }
}

@_cdecl("neco_model_n_registers")
public func neco_model_n_registers(_ model: OpaquePointer?) -> Int32 {
    modelValue("neco_model_n_registers", model) { $0.model.config.registers }
}

@_cdecl("neco_model_n_params")
public func neco_model_n_params(_ model: OpaquePointer?) -> Int64 {
    modelValue("neco_model_n_params", model) { $0.model.parameterCount }
}

@_cdecl("neco_model_image_height")
public func neco_model_image_height(_ model: OpaquePointer?) -> Int32 {
    modelValue("neco_model_image_height", model) { $0.imageHeight }
}

@_cdecl("neco_model_image_width")
public func neco_model_image_width(_ model: OpaquePointer?) -> Int32 {
    modelValue("neco_model_image_width", model) { $0.imageWidth }
}

@_cdecl("neco_model_name")
public func neco_model_name(_ model: OpaquePointer?) -> UnsafePointer<CChar>? {
    do {
        return UnsafePointer(try unbox(model, "model", as: ModelHandle.self).name)
    } catch let e as NecoError {
        note("neco_model_name", e.message)
    } catch {
        note("neco_model_name", "\(error)")
    }
    return nil
}

@_cdecl("neco_model_family")
public func neco_model_family(_ model: OpaquePointer?) -> Int32 {
    modelValue("neco_model_family", model) {
        Int($0.model.config.family == .dinov3 ? NECO_FAMILY_DINOV3.rawValue : NECO_FAMILY_DINOV2.rawValue)
    }
}

@_cdecl("neco_model_workspace_bytes")
public func neco_model_workspace_bytes(_ model: OpaquePointer?) -> Int64 {
    modelValue("neco_model_workspace_bytes", model) { $0.model.workspaceByteCount }
}

@_cdecl("neco_model_release_workspaces")
public func neco_model_release_workspaces(_ model: OpaquePointer?) {
    guard model != nil else { return }
    do {
        try unbox(model, "model", as: ModelHandle.self).model.releaseWorkspaces()
    } catch let e as NecoError {
        note("neco_model_release_workspaces", e.message)
    } catch {
        note("neco_model_release_workspaces", "\(error)")
    }
}
