import CNecoSupport
import NecoCore
import NecoModel
import NecoONNX

// Export entry points of neco.h ("Export" section): ONNX export of a loaded model's encoder.
// Validation and the mapping of neco_export_params onto ONNXExportOptions only; the graph, the
// checks and the atomic write are ONNXExporter's (NecoONNX).
//
// Letters: N images (dynamic in the graph), H×W model input in pixels, h×w patch grid, D embed
// dim, R registers.

enum ExportLimits {
    /// Largest fixed input side, pixels (as the model's default input size, ModelLimits).
    static let maxSide: Int32 = ModelLimits.maxImageSide
}

@_cdecl("neco_export_default_params")
public func neco_export_default_params() -> neco_export_params {
    neco_export_params(struct_size: MemoryLayout<neco_export_params>.size, input_size: Int32(NECO_EXPORT_SIZE_DYNAMIC.rawValue), height: 0, width: 0,
                       external_data: Int32(NECO_EXTERNAL_DATA_AUTO.rawValue), head_path: nil)
}

/// The exporter options for C params, every field checked. A `neco_model` holds the backbone only;
/// `head_path` names a file whose projection head becomes the "projection" output.
func exportOptions(_ m: ModelHandle, _ p: neco_export_params) throws -> ONNXExportOptions {
    var options = ONNXExportOptions()
    if let headPath = p.head_path {
        let file = try cString(headPath, "params.head_path")
        options.head = try ProjectionHeadWeights.load(path: file)
    }
    switch p.external_data {
    case Int32(NECO_EXTERNAL_DATA_AUTO.rawValue): options.externalData = .auto
    case Int32(NECO_EXTERNAL_DATA_ALWAYS.rawValue): options.externalData = .always
    case Int32(NECO_EXTERNAL_DATA_NEVER.rawValue): options.externalData = .never
    default:
        throw NecoError.invalidArgument("params.external_data = \(p.external_data) is not a neco_external_data (0...2)")
    }
    switch p.input_size {
    case Int32(NECO_EXPORT_SIZE_DYNAMIC.rawValue):
        guard p.height == 0, p.width == 0 else {
            throw NecoError.invalidArgument("params.height×width = \(p.height)×\(p.width) with NECO_EXPORT_SIZE_DYNAMIC: a dynamic export takes no size (use 0×0, or NECO_EXPORT_SIZE_FIXED)")
        }
        options.inputSize = .dynamic
    case Int32(NECO_EXPORT_SIZE_FIXED.rawValue):
        var h = p.height, w = p.width
        if h == 0 && w == 0 {
            h = Int32(clamping: m.imageHeight)
            w = Int32(clamping: m.imageWidth)
        }
        guard h >= 1, w >= 1, h <= ExportLimits.maxSide, w <= ExportLimits.maxSide else {
            throw NecoError.invalidArgument("params.height×width = \(p.height)×\(p.width): use 0×0 (the model's size) or 1...\(ExportLimits.maxSide) a side")
        }
        do {
            try m.model.validateInput(height: Int(h), width: Int(w))   // multiples of P, ≤ 65536 patches
        } catch let e as NecoError {
            throw NecoError(e.kind, "params.height×width = \(h)×\(w): \(e.message)")
        }
        options.inputSize = .fixed(height: Int(h), width: Int(w))
    default:
        throw NecoError.invalidArgument("params.input_size = \(p.input_size) is not a neco_export_size (0...1)")
    }
    return options
}

@_cdecl("neco_export_onnx")
public func neco_export_onnx(_ model: OpaquePointer?, _ path: UnsafePointer<CChar>?,
                             _ params: UnsafePointer<neco_export_params>?) -> neco_status {
    guarded("neco_export_onnx") {
        let m = try unbox(model, "model", as: ModelHandle.self)
        let file = try cString(path, "path")
        let options = try exportOptions(m, try readParams(params, Int32(NECO_SUPPORT_EXPORT_PARAMS), neco_export_default_params(),
                                                          "neco_export_params"))
        // Checks the path (not a directory, its folder takes a new file) before building; writes
        // <file>.tmp-… and renames it, removing it on any failure.
        let r = try ONNXExporter.export(model: m.model, to: file, options: options)
        let input = "(" + r.inputDims.map(\.description).joined(separator: ", ") + ")"
        let seconds = (r.seconds * 1000).rounded() / 1000
        log(NECO_LOG_INFO, "exported \(m.model.config.name) to \(file): input pixel_values \(input), \(r.fileBytes + r.externalDataBytes) bytes\(r.externalDataPath.map { " (weights in \($0))" } ?? ""), \(r.nodeCount) nodes, \(seconds) s")
    }
}
