import ArgumentParser
import NecoCore
import NecoModel
import NecoONNX

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export the encoder to ONNX (IR 8, opset 17), checked by libonnx.",
        discussion: """
            Input pixel_values (N, C, H, W) float32, ImageNet-normalised; N is dynamic. With --size the \
            input is fixed at HxW; with --dynamic-size (the default) H and W are symbolic and the position \
            table is resampled inside the graph with the model's rule (see --pos-rule); for DINOv3 the RoPE tables are \
            constants at a fixed size and computed in the graph (no control flow) otherwise. Outputs \
            patch_tokens (N, h*w, D), cls_token (N, D), register_tokens (N, R, D) when the model has \
            registers, and with --with-head projection (N, h*w, F). A failed export leaves no file behind.
            """)
    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Output .onnx file.") var out: String
    @Option(help: "Fixed input size S or HxW (multiples of the patch size).") var size: String?
    @Flag(help: "Symbolic input height and width (default when --size is not given).") var dynamicSize = false
    @Flag(help: "Add the projection head output (weights: --head, else the --model file).") var withHead = false
    @Option(help: "Safetensors file with projection_head.{0,2,4}.{weight,bias} (implies --with-head).") var head: String?
    @Option(help: "Where the weights go: auto (external data only beyond 1.8 GB), always (<out>.data), never.")
    var externalData: String = "auto"

    func run() throws {
        if size != nil && dynamicSize {
            throw NecoError.invalidArgument("give either --size or --dynamic-size, not both")
        }
        let external: ONNXExportOptions.ExternalData
        switch externalData {
        case "auto": external = .auto
        case "always": external = .always
        case "never": external = .never
        default: throw NecoError.invalidArgument("unknown --external-data '\(externalData)' (use auto, always or never)")
        }
        let model = try modelOptions.load()
        var options = ONNXExportOptions(externalData: external)
        if let s = size {
            let (h, w) = try parseSize(s)
            options.inputSize = .fixed(height: h, width: w)
        }
        if withHead || head != nil {
            guard let source = head ?? modelOptions.model else {
                throw NecoError.invalidArgument("--with-head needs the head weights: give --head FILE or a --model checkpoint that contains projection_head.* keys")
            }
            options.head = try ProjectionHeadWeights.load(path: source)
        }
        let report = try ONNXExporter.export(model: model, to: out, options: options)
        print(report)
        print("rule \(model.config.posEmbedRule.rawValue), opset \(ONNXExporter.opset), IR \(ONNXExporter.irVersion), \(ONNXModelInfo.libraryVersion)")
        print("EXPORT seconds=\(fmt(report.seconds, 3)) bytes=\(report.fileBytes + report.externalDataBytes) nodes=\(report.nodeCount) peak_rss_mib=\(fmt(peakRSSMiB(), 0))")
    }
}
