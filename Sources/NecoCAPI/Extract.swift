import CNecoSupport
import Neco
import NecoCore
import NecoImage
import NecoModel

// Feature extraction entry points. Every size is checked here, before any buffer is allocated or
// any kernel runs; the numerics are Preprocess (NecoImage), FeatureExtractor and Normalize (Neco).
//
// Letters: N images, H×W model input, h×w patch grid, oh×ow output map, D embed dim, R registers.

enum ExtractLimits {
    /// RGB pictures handed in: at most this many pixels a side and in all (as the decoder).
    static let maxPictureSide = 65535
    static let maxPicturePixels = 1 << 28
    /// Requested model input size (params.height / width).
    static let maxInputSide: Int32 = 16384
    /// Upsampled output map.
    static let maxOutSide: Int32 = 16384
    static let maxOutPositions = 1 << 24
    static let maxBatch: Int32 = 4096
    /// Largest float tensor assembled for one call (16 GiB).
    static let maxTensorFloats = 1 << 32
}

/// Everything one call will produce, derived from the model, the input size and the params.
struct ExtractPlan: Equatable {
    var inputHeight = 0, inputWidth = 0
    var gridHeight = 0, gridWidth = 0
    var outHeight = 0, outWidth = 0
    var dim = 0, registers = 0
    var upsample = false
    var l2 = false

    var patchesPerImage: Int { outHeight * outWidth * dim }
    var clsPerImage: Int { dim }
    var registersPerImage: Int { registers * dim }

    var shape: neco_feature_shape {
        neco_feature_shape(input_height: Int32(inputHeight), input_width: Int32(inputWidth),
                           grid_height: Int32(gridHeight), grid_width: Int32(gridWidth),
                           out_height: Int32(outHeight), out_width: Int32(outWidth),
                           dim: Int32(dim), n_registers: Int32(registers),
                           n_patches: Int64(outHeight * outWidth),
                           patches_per_image: patchesPerImage, cls_per_image: clsPerImage,
                           registers_per_image: registersPerImage)
    }
}

@_cdecl("neco_extract_default_params")
public func neco_extract_default_params() -> neco_extract_params {
    neco_extract_params(struct_size: MemoryLayout<neco_extract_params>.size, resize: Int32(NECO_RESIZE_STRETCH.rawValue), height: 0, width: 0,
                        out_height: 0, out_width: 0, l2_normalize: false)
}

/// The plan for model input of `height × width` (already resized), or `.shape` if the model
/// cannot take it.
func plan(_ m: ModelHandle, inputHeight: Int, inputWidth: Int, _ p: neco_extract_params) throws -> ExtractPlan {
    let c = m.model.config
    try m.model.validateInput(height: inputHeight, width: inputWidth)
    var r = ExtractPlan()
    r.inputHeight = inputHeight
    r.inputWidth = inputWidth
    r.gridHeight = inputHeight / c.patchSize
    r.gridWidth = inputWidth / c.patchSize
    r.dim = c.embedDim
    r.registers = c.registers
    r.l2 = p.l2_normalize
    let oh = p.out_height, ow = p.out_width
    if oh == 0 && ow == 0 {
        r.outHeight = r.gridHeight
        r.outWidth = r.gridWidth
    } else {
        guard oh >= 1, ow >= 1, oh <= ExtractLimits.maxOutSide, ow <= ExtractLimits.maxOutSide,
              Int(oh) * Int(ow) <= ExtractLimits.maxOutPositions else {
            throw NecoError.invalidArgument("params.out_height×out_width = \(oh)×\(ow): use 0×0 (no upsampling) or 1...\(ExtractLimits.maxOutSide) a side, at most \(ExtractLimits.maxOutPositions) positions")
        }
        r.outHeight = Int(oh)
        r.outWidth = Int(ow)
        r.upsample = true
    }
    return r
}

/// Plan and resize mode for an RGB picture of `height × width`.
func rgbPlan(_ m: ModelHandle, height: Int32, width: Int32, _ p: neco_extract_params) throws -> (ExtractPlan, ResizeMode) {
    guard height >= 1, width >= 1 else {
        throw NecoError.invalidArgument("picture size \(height)×\(width) (height×width) must be at least 1×1")
    }
    let h = Int(height), w = Int(width)
    guard h <= ExtractLimits.maxPictureSide, w <= ExtractLimits.maxPictureSide, h * w <= ExtractLimits.maxPicturePixels else {
        throw NecoError(.outOfMemory, "picture size \(h)×\(w) (height×width) exceeds \(ExtractLimits.maxPictureSide) a side or \(ExtractLimits.maxPicturePixels) pixels")
    }
    var th = p.height, tw = p.width
    if th == 0 && tw == 0 {
        th = Int32(m.imageHeight)
        tw = Int32(m.imageWidth)
    }
    let mode: ResizeMode
    switch p.resize {
    case Int32(NECO_RESIZE_NONE.rawValue):
        mode = .stretch(height: h, width: w)   // equal size: Preprocess does not resample
    default:
        guard th >= 1, tw >= 1, th <= ExtractLimits.maxInputSide, tw <= ExtractLimits.maxInputSide else {
            throw NecoError.invalidArgument("params.height×width = \(p.height)×\(p.width): use 0×0 (the model's size) or 1...\(ExtractLimits.maxInputSide) a side")
        }
        switch p.resize {
        case Int32(NECO_RESIZE_STRETCH.rawValue):
            mode = .stretch(height: Int(th), width: Int(tw))
        case Int32(NECO_RESIZE_CROP.rawValue):
            guard th == tw else {
                throw NecoError.invalidArgument("NECO_RESIZE_CROP needs a square size, got \(th)×\(tw)")
            }
            mode = .shortSideCrop(size: Int(th))
        case Int32(NECO_RESIZE_FIT.rawValue):
            mode = .fitMultiple(maxSide: Int(max(th, tw)), multiple: m.model.config.patchSize)
        default:
            throw NecoError.invalidArgument("params.resize = \(p.resize) is not a neco_resize_mode (0...3)")
        }
    }
    let g = try Preprocess.geometry(width: w, height: h, mode: mode)
    // The intermediate resize (before a centre crop) must stay within the picture limits too.
    guard g.resize.width <= ExtractLimits.maxPictureSide, g.resize.height <= ExtractLimits.maxPictureSide,
          g.resize.width * g.resize.height <= ExtractLimits.maxPicturePixels else {
        throw NecoError(.outOfMemory, "resizing a \(h)×\(w) (height×width) picture this way needs a \(g.resize.height)×\(g.resize.width) intermediate picture, beyond the limits")
    }
    do {
        return (try plan(m, inputHeight: g.output.height, inputWidth: g.output.width, p), mode)
    } catch let e as NecoError where e.kind == .shape {
        throw NecoError.shape("a \(h)×\(w) (height×width) picture becomes \(g.output.height)×\(g.output.width) model input: \(e.message)")
    }
}

/// Plan for float input of `height × width`.
func nchwPlan(_ m: ModelHandle, height: Int32, width: Int32, _ p: neco_extract_params) throws -> ExtractPlan {
    guard height >= 1, width >= 1 else {
        throw NecoError.invalidArgument("input size \(height)×\(width) (height×width) must be at least 1×1")
    }
    return try plan(m, inputHeight: Int(height), inputWidth: Int(width), p)
}

func extractParams(_ p: UnsafePointer<neco_extract_params>?) throws -> neco_extract_params {
    try readParams(p, Int32(NECO_SUPPORT_EXTRACT_PARAMS), neco_extract_default_params(), "neco_extract_params")
}

/// Checks the caller's buffers against `plan` for `batch` images.
func checkBuffers(_ out: UnsafePointer<neco_feature_buffers>?, _ plan: ExtractPlan, batch: Int) throws -> neco_feature_buffers {
    guard let out else { throw NecoError.invalidArgument("out is NULL") }
    let b = out.pointee
    guard b.patches != nil || b.cls != nil || b.registers != nil else {
        throw NecoError.invalidArgument("out has no buffer: patches, cls and registers are all NULL")
    }
    func check(_ ptr: UnsafeMutablePointer<Float>?, _ cap: Int, _ perImage: Int, _ name: String) throws {
        guard ptr != nil else { return }
        let have = try capacity(cap, "out->\(name)_capacity")
        let need = try checkedProduct([batch, perImage], "out->\(name)")
        guard have >= need else {
            throw NecoError.shape("out->\(name)_capacity = \(have) floats, need \(need) (\(batch) × \(perImage))")
        }
    }
    try check(b.patches, b.patches_capacity, plan.patchesPerImage, "patches")
    try check(b.cls, b.cls_capacity, plan.clsPerImage, "cls")
    try check(b.registers, b.registers_capacity, plan.registersPerImage, "registers")
    return b
}

/// Runs the model on a checked (N, 3, H, W) tensor and fills the checked buffers
/// (FeatureExtractor's extraction into caller buffers: upsampling and L2 live there).
func runExtraction(_ m: ModelHandle, _ tensor: UnsafePointer<Float>, batch: Int, _ plan: ExtractPlan,
                   _ out: neco_feature_buffers) throws {
    func view(_ p: UnsafeMutablePointer<Float>?, _ perImage: Int) -> UnsafeMutableBufferPointer<Float>? {
        p.map { UnsafeMutableBufferPointer(start: $0, count: batch * perImage) }  // capacities checked by checkBuffers
    }
    try m.extractor.extract(tensor: tensor, batch: batch, height: plan.inputHeight, width: plan.inputWidth,
                            outputSize: plan.upsample ? (plan.outHeight, plan.outWidth) : nil, l2Normalize: plan.l2,
                            into: FeatureBuffers(patches: view(out.patches, plan.patchesPerImage),
                                                 cls: view(out.cls, plan.clsPerImage),
                                                 registers: view(out.registers, plan.registersPerImage)))
}

/// Model input for a checked RGB picture.
func rgbTensor(_ rgb: UnsafePointer<UInt8>, height: Int, width: Int, mode: ResizeMode) throws -> (data: [Float], height: Int, width: Int) {
    try Memory.reserve(height * width * 3, of: UInt8.self, "copying a \(height)×\(width) picture")
    let img = RGBImage(width: width, height: height, pixels: Array(UnsafeBufferPointer(start: rgb, count: height * width * 3)))
    return try Preprocess.tensor(img, mode: mode)
}

// MARK: - Size queries

@_cdecl("neco_extract_shape_rgb")
public func neco_extract_shape_rgb(_ model: OpaquePointer?, _ height: Int32, _ width: Int32,
                                   _ params: UnsafePointer<neco_extract_params>?,
                                   _ outShape: UnsafeMutablePointer<neco_feature_shape>?) -> neco_status {
    guarded("neco_extract_shape_rgb") {
        let m = try unbox(model, "model", as: ModelHandle.self)
        guard let outShape else { throw NecoError.invalidArgument("out_shape is NULL") }
        outShape.pointee = try rgbPlan(m, height: height, width: width, extractParams(params)).0.shape
    }
}

@_cdecl("neco_extract_shape_nchw")
public func neco_extract_shape_nchw(_ model: OpaquePointer?, _ height: Int32, _ width: Int32,
                                    _ params: UnsafePointer<neco_extract_params>?,
                                    _ outShape: UnsafeMutablePointer<neco_feature_shape>?) -> neco_status {
    guarded("neco_extract_shape_nchw") {
        let m = try unbox(model, "model", as: ModelHandle.self)
        guard let outShape else { throw NecoError.invalidArgument("out_shape is NULL") }
        outShape.pointee = try nchwPlan(m, height: height, width: width, extractParams(params)).shape
    }
}

// MARK: - Extraction

@_cdecl("neco_extract_rgb")
public func neco_extract_rgb(_ model: OpaquePointer?, _ rgb: UnsafePointer<UInt8>?, _ height: Int32, _ width: Int32,
                             _ params: UnsafePointer<neco_extract_params>?,
                             _ out: UnsafePointer<neco_feature_buffers>?) -> neco_status {
    guarded("neco_extract_rgb") {
        try extractRGB(model, [rgb], [height], [width], params, out)
    }
}

@_cdecl("neco_extract_rgb_batch")
public func neco_extract_rgb_batch(_ model: OpaquePointer?, _ images: UnsafePointer<UnsafePointer<UInt8>?>?,
                                   _ heights: UnsafePointer<Int32>?, _ widths: UnsafePointer<Int32>?, _ nImages: Int32,
                                   _ params: UnsafePointer<neco_extract_params>?,
                                   _ out: UnsafePointer<neco_feature_buffers>?) -> neco_status {
    guarded("neco_extract_rgb_batch") {
        guard let images else { throw NecoError.invalidArgument("images is NULL") }
        guard let heights else { throw NecoError.invalidArgument("heights is NULL") }
        guard let widths else { throw NecoError.invalidArgument("widths is NULL") }
        guard nImages >= 1, nImages <= ExtractLimits.maxBatch else {
            throw NecoError.invalidArgument("n_images = \(nImages) out of range 1...\(ExtractLimits.maxBatch)")
        }
        let n = Int(nImages)
        try extractRGB(model, Array(UnsafeBufferPointer(start: images, count: n)),
                       Array(UnsafeBufferPointer(start: heights, count: n)),
                       Array(UnsafeBufferPointer(start: widths, count: n)), params, out)
    }
}

@_cdecl("neco_extract_image")
public func neco_extract_image(_ model: OpaquePointer?, _ image: OpaquePointer?,
                               _ params: UnsafePointer<neco_extract_params>?,
                               _ out: UnsafePointer<neco_feature_buffers>?) -> neco_status {
    guarded("neco_extract_image") {
        let img = try unbox(image, "image", as: ImageHandle.self)
        try extractRGB(model, [UnsafePointer(img.pixels)], [Int32(clamping: img.height)], [Int32(clamping: img.width)], params, out)
    }
}

/// The RGB path shared by the three entry points above: plan every picture (all checks), check the
/// buffers, then preprocess, run and copy out.
private func extractRGB(_ model: OpaquePointer?, _ images: [UnsafePointer<UInt8>?], _ heights: [Int32], _ widths: [Int32],
                        _ params: UnsafePointer<neco_extract_params>?, _ out: UnsafePointer<neco_feature_buffers>?) throws {
    let m = try unbox(model, "model", as: ModelHandle.self)
    let p = try extractParams(params)
    let single = images.count == 1
    var plans: [(ExtractPlan, ResizeMode)] = []
    for i in 0..<images.count {
        let which = single ? "" : "image \(i): "
        guard images[i] != nil else { throw NecoError.invalidArgument(single ? "rgb is NULL" : "images[\(i)] is NULL") }
        do {
            plans.append(try rgbPlan(m, height: heights[i], width: widths[i], p))
        } catch let e as NecoError {
            throw NecoError(e.kind, which + e.message)
        }
        if i > 0 && plans[i].0 != plans[0].0 {
            throw NecoError.shape("image \(i) (\(heights[i])×\(widths[i]), height×width) becomes \(plans[i].0.inputHeight)×\(plans[i].0.inputWidth) model input but image 0 becomes \(plans[0].0.inputHeight)×\(plans[0].0.inputWidth); use NECO_RESIZE_STRETCH or NECO_RESIZE_CROP to batch pictures of different shapes")
        }
    }
    let plan = plans[0].0
    let buffers = try checkBuffers(out, plan, batch: images.count)
    let perImage = 3 * plan.inputHeight * plan.inputWidth
    let total = try checkedProduct([images.count, perImage], limit: ExtractLimits.maxTensorFloats, "input tensor")
    var data: [Float] = []
    data.reserveCapacity(total)
    for i in 0..<images.count {
        guard let rgb = images[i] else { throw NecoError.invalidArgument("images[\(i)] is NULL") }
        let t = try rgbTensor(rgb, height: Int(heights[i]), width: Int(widths[i]), mode: plans[i].1)
        guard t.height == plan.inputHeight, t.width == plan.inputWidth, t.data.count == perImage else {
            throw NecoError(.internal, "preprocessing gave \(t.height)×\(t.width), planned \(plan.inputHeight)×\(plan.inputWidth)")
        }
        data.append(contentsOf: t.data)
    }
    try data.withUnsafeBufferPointer { d in
        guard let base = d.baseAddress else { throw NecoError(.internal, "empty input tensor") }
        try runExtraction(m, base, batch: images.count, plan, buffers)
    }
}

@_cdecl("neco_extract_nchw")
public func neco_extract_nchw(_ model: OpaquePointer?, _ images: UnsafePointer<Float>?, _ nImages: Int32,
                              _ height: Int32, _ width: Int32, _ params: UnsafePointer<neco_extract_params>?,
                              _ out: UnsafePointer<neco_feature_buffers>?) -> neco_status {
    guarded("neco_extract_nchw") {
        let m = try unbox(model, "model", as: ModelHandle.self)
        guard let images else { throw NecoError.invalidArgument("images is NULL") }
        guard nImages >= 1, nImages <= ExtractLimits.maxBatch else {
            throw NecoError.invalidArgument("n_images = \(nImages) out of range 1...\(ExtractLimits.maxBatch)")
        }
        let plan = try nchwPlan(m, height: height, width: width, extractParams(params))
        let buffers = try checkBuffers(out, plan, batch: Int(nImages))
        _ = try checkedProduct([Int(nImages), 3, plan.inputHeight, plan.inputWidth], limit: ExtractLimits.maxTensorFloats, "input tensor")
        try runExtraction(m, images, batch: Int(nImages), plan, buffers)
    }
}
