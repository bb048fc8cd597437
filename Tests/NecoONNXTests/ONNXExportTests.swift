import NecoCore
import NecoModel
import NecoONNX
import XCTest
import _NecoTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Structure of the exported graphs (read back through libonnx) and the bad-input contract.
final class ONNXExportTests: XCTestCase {
    var tmp: TempFolder!

    override func setUpWithError() throws { tmp = try TempFolder(prefix: "neco-onnx") }
    override func tearDown() { tmp?.cleanup() }

    /// Exports, re-checks the file with libonnx and reads it back.
    func exportAndRead(_ model: ViTModel, _ name: String, _ options: ONNXExportOptions) throws -> (ONNXExportReport, ONNXModelInfo) {
        let report = try ONNXExporter.export(model: model, to: tmp.file(name), options: options)
        try ONNXModelInfo.check(path: tmp.file(name))
        return (report, try ONNXModelInfo.read(path: tmp.file(name)))
    }

    func expectedInitializers(_ model: ViTModel, head: ProjectionHeadWeights? = nil) -> [String] {
        model.params.layout.specs.map { ONNXExporter.initializerName(forKey: $0.name) }
            + (head?.layers.flatMap { [$0.weightKey, $0.biasKey] } ?? [])
    }

    func testFixedSizeGraphStructure() throws {
        let model = try Tiny.reg4.load()
        let (report, info) = try exportAndRead(model, "reg4.onnx", ONNXExportOptions(inputSize: .fixed(height: 42, width: 56)))
        XCTAssertEqual(info.irVersion, 8)
        XCTAssertEqual(info.opsets.count, 1)
        XCTAssertEqual(info.defaultOpset, 17)
        XCTAssertEqual(info.producerName, "libneco")
        XCTAssertEqual(info.producerVersion, ONNXExporter.producerVersion)
        XCTAssertTrue(info.docString.contains("pixel_values"), info.docString)
        XCTAssertEqual(info.inputs, [.init(name: "pixel_values", elemType: 1, dims: [.param("batch"), .value(3), .value(42), .value(56)])])
        XCTAssertEqual(info.outputs, [
            .init(name: "patch_tokens", elemType: 1, dims: [.param("batch"), .value(12), .value(32)]),
            .init(name: "cls_token", elemType: 1, dims: [.param("batch"), .value(32)]),
            .init(name: "register_tokens", elemType: 1, dims: [.param("batch"), .value(4), .value(32)]),
        ])
        // Initializers: exactly the parameters, canonical keys, layout order and shapes.
        XCTAssertEqual(info.initializers.map(\.name), expectedInitializers(model))
        XCTAssertEqual(info.initializers.map(\.dims), model.params.layout.specs.map(\.shape))
        XCTAssertTrue(info.initializers.contains { $0.name == "blocks.1.attn.qkv.weight" && $0.dims == [96, 32] })
        XCTAssertTrue(info.initializers.contains { $0.name == "param.register_tokens" && $0.dims == [1, 4, 32] })
        XCTAssertFalse(info.initializers.contains { $0.external })
        // Fixed size: the position table is resampled by constant matrices, no Resize.
        XCTAssertFalse(info.opTypes.contains("Resize"))
        XCTAssertEqual(info.opTypes.filter { $0 == "LayerNormalization" }.count, 2 * 2 + 1)
        XCTAssertEqual(report.nodeCount, info.opTypes.count)
        XCTAssertEqual(report.initializerCount, info.initializers.count)
        XCTAssertEqual(report.fileBytes, ONNXExporter.fileSizeForTests(tmp.file("reg4.onnx")))

        // Metadata.
        XCTAssertEqual(info.metadata("patch_size"), "14")
        XCTAssertEqual(info.metadata("pos_embed_rule"), "antialias")
        XCTAssertEqual(info.metadata("input_size"), "42x56")
        XCTAssertEqual(info.metadata("image_mean"), "0.485,0.456,0.406")
        XCTAssertEqual(info.metadata("image_std"), "0.229,0.224,0.225")
        XCTAssertEqual(info.metadata("outputs"), "patch_tokens,cls_token,register_tokens")
        let config = try JSONValue.parse(XCTUnwrap(info.metadata("neco.config")))
        XCTAssertEqual(config["patch_size"]?.intValue, 14)
        XCTAssertEqual(config["embed_dim"]?.intValue, 32)
        XCTAssertEqual(config["depth"]?.intValue, 2)
        XCTAssertEqual(config["heads"]?.intValue, 4)
        XCTAssertEqual(config["registers"]?.intValue, 4)
        XCTAssertEqual(config["pos_grid"]?.intValue, 5)
        XCTAssertEqual(config["pos_embed_rule"]?.stringValue, "antialias")
        XCTAssertEqual(config["ffn"]?.stringValue, "mlp")
        // No temporary files are left next to the model.
        XCTAssertEqual(tmp.contents, ["reg4.onnx"])
    }

    func testDynamicSizeGraphStructure() throws {
        for (tiny, rule, resize) in [(Tiny.reg4, PosEmbedRule.antialias, false), (.reg4, .bicubic, true), (.v1, .neco, true)] {
            let model = try tiny.load(rule: rule)
            let name = "\(tiny.rawValue)_\(rule.rawValue).onnx"
            let (_, info) = try exportAndRead(model, name, ONNXExportOptions(inputSize: .dynamic))
            XCTAssertEqual(info.irVersion, 8)
            XCTAssertEqual(info.defaultOpset, 17)
            XCTAssertEqual(info.inputs.first?.dims, [.param("batch"), .value(3), .param("height"), .param("width")])
            XCTAssertEqual(info.outputs.first?.dims, [.param("batch"), .param("num_patches"), .value(32)])
            XCTAssertEqual(info.metadata("input_size"), "dynamic")
            XCTAssertEqual(info.metadata("pos_embed_rule"), rule.rawValue)
            // .bicubic and .neco resample with Resize; .antialias with weights built in the graph.
            XCTAssertEqual(info.opTypes.contains("Resize"), resize, name)
            XCTAssertEqual(info.opTypes.contains("Range"), !resize, name)
            XCTAssertEqual(info.initializers.map(\.name), expectedInitializers(model), name)
            XCTAssertEqual(info.outputs.map(\.name),
                           model.config.registers > 0 ? ["patch_tokens", "cls_token", "register_tokens"] : ["patch_tokens", "cls_token"])
        }
    }

    /// Every tiny architecture (registers or not, DINO v1, SwiGLU), fixed and dynamic.
    func testEveryTinyArchitectureExports() throws {
        for tiny in Tiny.allCases {
            let model = try tiny.load()
            let p = model.config.patchSize
            for size in [ONNXExportOptions.InputSize.fixed(height: 3 * p, width: 4 * p), .dynamic] {
                let (_, info) = try exportAndRead(model, "\(tiny.rawValue).onnx", ONNXExportOptions(inputSize: size))
                XCTAssertEqual(info.initializers.map(\.name), expectedInitializers(model), tiny.rawValue)
                XCTAssertEqual(info.outputs.contains { $0.name == "register_tokens" }, model.config.registers > 0)
            }
        }
        let swiglu = try ONNXModelInfo.read(path: tmp.file("tiny_swiglu_meta.onnx"))
        XCTAssertTrue(swiglu.initializers.contains { $0.name == "blocks.0.mlp.w12.weight" && $0.dims == [128, 32] })
        XCTAssertTrue(swiglu.opTypes.contains("Sigmoid"))
        let v1 = try ONNXModelInfo.read(path: tmp.file("tiny_v1.onnx"))
        XCTAssertFalse(v1.initializers.contains { $0.name.hasSuffix("ls1.gamma") })
    }

    /// Full-size presets build and pass the checker (weights filled, not trained).
    func testViTS14PresetsExport() throws {
        for config in [ViTConfig.dinov2Small(registers: 4), .dinoSmall16()] {
            let model = try filledModel(config)
            let (report, info) = try exportAndRead(model, "\(config.name).onnx", ONNXExportOptions(inputSize: .fixed(height: 224, width: 224)))
            let m = (224 / config.patchSize) * (224 / config.patchSize)
            XCTAssertEqual(info.outputs.first?.dims, [.param("batch"), .value(m), .value(384)])
            XCTAssertEqual(info.initializers.count, model.params.layout.specs.count)
            XCTAssertGreaterThan(report.fileBytes, model.params.count * 4)
            XCTAssertLessThan(report.fileBytes, model.params.count * 4 + 1_000_000)
        }
    }

    func testProjectionHeadOutput() throws {
        let model = try Tiny.noreg.load()
        let head = try randomHead(inDim: 32, hidden: 48, out: 16, seed: 3)
        let (_, info) = try exportAndRead(model, "head.onnx", ONNXExportOptions(inputSize: .fixed(height: 42, width: 42), head: head))
        XCTAssertEqual(info.outputs.map(\.name), ["patch_tokens", "cls_token", "projection"])
        XCTAssertEqual(info.outputs.last?.dims, [.param("batch"), .value(9), .value(16)])
        XCTAssertEqual(info.initializers.map(\.name), expectedInitializers(model, head: head))
        XCTAssertTrue(info.initializers.contains { $0.name == "projection_head.2.weight" && $0.dims == [48, 48] })
        XCTAssertTrue(info.opTypes.contains("ReduceL2"))
        XCTAssertEqual(try JSONValue.parse(XCTUnwrap(info.metadata("neco.config")))["projection_head"]?.arrayValue?.count, 3)
    }

    func testExternalData() throws {
        let model = try Tiny.reg4.load()
        let (report, info) = try exportAndRead(model, "ext.onnx", ONNXExportOptions(externalData: .always))
        XCTAssertEqual(report.externalDataPath, tmp.file("ext.onnx.data"))
        XCTAssertEqual(tmp.contents, ["ext.onnx", "ext.onnx.data"])
        XCTAssertTrue(info.initializers.allSatisfy(\.external))
        XCTAssertGreaterThanOrEqual(report.externalDataBytes, model.params.count * 4)
        XCTAssertLessThan(report.fileBytes, 100_000)
    }

    // MARK: Bad input

    func assertThrows(_ kind: NecoError.Kind, containing text: String, file: StaticString = #filePath, line: UInt = #line,
                      _ body: () throws -> Void) {
        do {
            try body()
            XCTFail("no error thrown (expected \(kind): \(text))", file: file, line: line)
        } catch let e as NecoError {
            XCTAssertEqual(e.kind, kind, e.message, file: file, line: line)
            XCTAssertTrue(e.message.contains(text), "'\(e.message)' does not contain '\(text)'", file: file, line: line)
        } catch {
            XCTFail("unexpected error \(error)", file: file, line: line)
        }
    }

    func testUnwritablePathsGiveClearErrors() throws {
        let model = try Tiny.reg4.load()
        assertThrows(.io, containing: "No such file or directory") {
            try ONNXExporter.export(model: model, to: tmp.file("missing/dir/model.onnx"))
        }
        // A parent that is a regular file.
        XCTAssertTrue(FileManagerLite.write(tmp.file("plain"), "x"))
        assertThrows(.io, containing: "Not a directory") {
            try ONNXExporter.export(model: model, to: tmp.file("plain/model.onnx"))
        }
        assertThrows(.invalidArgument, containing: "is a directory") {
            try ONNXExporter.export(model: model, to: tmp.path)
        }
        assertThrows(.invalidArgument, containing: "no output path") {
            try ONNXExporter.export(model: model, to: "")
        }
        XCTAssertEqual(tmp.contents, ["plain"])
    }

    func testSizeNotMultipleOfPatchLeavesNoFile() throws {
        let model = try Tiny.reg4.load()
        let target = tmp.file("model.onnx")
        assertThrows(.shape, containing: "not a multiple of the patch size 14") {
            try ONNXExporter.export(model: model, to: target, options: ONNXExportOptions(inputSize: .fixed(height: 43, width: 56)))
        }
        assertThrows(.shape, containing: "smaller than one 14×14 patch") {
            try ONNXExporter.export(model: model, to: target, options: ONNXExportOptions(inputSize: .fixed(height: 0, width: 56)))
        }
        XCTAssertEqual(tmp.contents, [])
        // A failed export does not touch an existing file at the target path either.
        XCTAssertTrue(FileManagerLite.write(target, "previous"))
        assertThrows(.shape, containing: "multiple of the patch size") {
            try ONNXExporter.export(model: model, to: target, options: ONNXExportOptions(inputSize: .fixed(height: 70, width: 71)))
        }
        XCTAssertEqual(FileManagerLite.read(target), "previous")
        XCTAssertEqual(tmp.contents, ["model.onnx"])
        // A successful one replaces it atomically.
        try ONNXExporter.export(model: model, to: target, options: ONNXExportOptions(inputSize: .fixed(height: 70, width: 70)))
        XCTAssertEqual(try ONNXModelInfo.read(path: target).irVersion, 8)
        XCTAssertEqual(tmp.contents, ["model.onnx"])
    }

    func testModelWithoutWeightsIsRejected() throws {
        let empty = ViTModel(params: try ViTParameters(config: Tiny.reg4.load().config), source: "memory")
        assertThrows(.invalidArgument, containing: "has no weights") {
            try ONNXExporter.export(model: empty, to: tmp.file("empty.onnx"))
        }
        XCTAssertEqual(tmp.contents, [])
    }

    func testHeadThatDoesNotFitIsRejected() throws {
        let model = try Tiny.reg4.load()
        let head = try randomHead(inDim: 48, hidden: 16, out: 8, seed: 1)
        assertThrows(.shape, containing: "takes 48 features but the model gives 32") {
            try ONNXExporter.export(model: model, to: tmp.file("h.onnx"), options: ONNXExportOptions(head: head))
        }
        XCTAssertThrowsError(try ProjectionHeadWeights(layers: Array(head.layers.prefix(2))))
        var bad = head.layers
        bad[1].inDim = 7
        XCTAssertThrowsError(try ProjectionHeadWeights(layers: bad))
        assertThrows(.format, containing: "no projection head") {
            _ = try ProjectionHeadWeights.load(path: fixturePath("vit/tiny_reg4.weights.safetensors"))
        }
        XCTAssertEqual(tmp.contents, [])
    }

    func testReadingANonModelFails() throws {
        XCTAssertTrue(FileManagerLite.write(tmp.file("junk.onnx"), "this is not protobuf \u{1}\u{2}\u{3}"))
        XCTAssertThrowsError(try ONNXModelInfo.read(path: tmp.file("junk.onnx")))
        XCTAssertThrowsError(try ONNXModelInfo.check(path: tmp.file("junk.onnx")))
        XCTAssertThrowsError(try ONNXModelInfo.read(path: tmp.file("absent.onnx")))
    }
}

/// Small file helpers for tests (no Foundation).
enum FileManagerLite {
    static func write(_ path: String, _ text: String) -> Bool {
        (try? FileIO.writeAtomically(path, bytes: Array(text.utf8))) != nil
    }
    static func read(_ path: String) -> String? {
        (try? FileIO.readAll(path)).map { String(decoding: $0, as: UTF8.self) }
    }
}

extension ONNXExporter {
    static func fileSizeForTests(_ path: String) -> Int {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_size) : -1
    }
}
