import Foundation
import NecoCore
import NecoModel
import NecoONNX
import XCTest
import _NecoTestSupport

/// DINOv3 exports: fixed sizes carry the RoPE tables as constants, dynamic sizes compute them in
/// the graph without control flow; ONNX Runtime against the Swift forward (≤ 1e-4) and
/// onnx.checker(full_check) through scripts/onnx_parity.py, which also rejects If / Loop / Scan.
extension ONNXRuntimeParityTests {
    func testDINOv3ONNXRuntimeMatchesSwiftForward() throws {
        try requirePythonEnvironment()
        let dir = try TempFolder(prefix: "neco-onnx-v3")
        defer { dir.cleanup() }
        let suite = Suite(dir)
        var seed: UInt64 = 300
        func cases(_ model: ViTModel, _ tag: String, sizes: [(Int, Int)], batches: [Int] = [1, 3]) throws {
            try suite.export(model, tag + "_dynamic.onnx", ONNXExportOptions(inputSize: .dynamic))
            for (h, w) in sizes {
                let fixed = tag + "_\(h)x\(w).onnx"
                try suite.export(model, fixed, ONNXExportOptions(inputSize: .fixed(height: h, width: w)))
                for batch in batches {
                    seed += 1
                    let x = syntheticInput(batch: batch, height: h, width: w, seed: seed)
                    for file in [tag + "_dynamic.onnx", fixed] {
                        try suite.add("\(file) \(h)x\(w) batch \(batch)", model: model, file: file, input: x, batch: batch,
                                      height: h, width: w)
                    }
                }
            }
        }
        // Meta layout: bf16 periods, masked key bias, GELU MLP; non-square and one-row grids.
        let meta = try WeightLoader.load(path: fixturePath("dinov3/tiny_mlp.meta.weights.safetensors"), options: LoadOptions(heads: 2))
        try cases(meta, "v3_mlp_bf16", sizes: [(64, 64), (48, 80), (16, 96)])
        // timm layout: SwiGLU, no qkv bias, float32 periods.
        let swiglu = try WeightLoader.load(path: fixturePath("dinov3/tiny_swiglu.timm.weights.safetensors"), options: LoadOptions(heads: 2))
        try cases(swiglu, "v3_swiglu", sizes: [(80, 48)])
        // Full-size ViT-S/16 (formula weights) at 224 and 192×320.
        let vits = try WeightLoader.load(source: FormulaWeights.dinov3(.dinov3Small()), sourceName: "formula")
        try cases(vits, "dinov3_vits16", sizes: [(224, 224), (192, 320)], batches: [2])

        let manifest = try suite.write()
        let (rc, out) = try runProcess(python, [repositoryRoot + "/scripts/onnx_parity.py", "check", manifest])
        print(out)
        XCTAssertEqual(rc, 0, "ONNX Runtime parity failed:\n\(out.suffix(4000))")
        XCTAssertTrue(out.contains("PARITY PASS"), out)
        XCTAssertFalse(out.contains("control-flow"), out)
    }

    /// The fixed export stores the tables as constants; the dynamic one builds them with Cos / Sin.
    func testDINOv3GraphShapes() throws {
        let model = try WeightLoader.load(path: fixturePath("dinov3/tiny_mlp.meta.weights.safetensors"), options: LoadOptions(heads: 2))
        let dir = try TempFolder(prefix: "neco-onnx-v3-graph")
        defer { dir.cleanup() }
        let fixed = try ONNXExporter.export(model: model, to: dir.file("f.onnx"), options: ONNXExportOptions(inputSize: .fixed(height: 48, width: 80)))
        let dynamic = try ONNXExporter.export(model: model, to: dir.file("d.onnx"), options: ONNXExportOptions(inputSize: .dynamic))
        XCTAssertEqual(fixed.initializerCount, model.params.layout.specs.count, "initializers are exactly the parameters")
        XCTAssertEqual(dynamic.initializerCount, fixed.initializerCount)
        let fixedText = String(decoding: try FileIO.readAll(dir.file("f.onnx")), as: UTF8.self)
        let dynamicText = String(decoding: try FileIO.readAll(dir.file("d.onnx")), as: UTF8.self)
        XCTAssertTrue(fixedText.contains("const/rope/cos") && !fixedText.contains("rope/grid_hw"))
        XCTAssertTrue(dynamicText.contains("rope/grid_hw") && dynamicText.contains("Cos") && !dynamicText.contains("pos_embed/"))
    }
}
