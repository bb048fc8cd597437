import NecoCore
import NecoModel
import XCTest
import _NecoTestSupport

/// DINOv3 against timm's Eva with `rope_type='dinov3'` (scripts/reference/make_dinov3_fixtures.py):
/// the three key layouts, RoPE tables and attention stage by stage on tiny random models, and the
/// full-size S/16, S+/16 and B/16 through formula weights.
final class DINOv3ParityTests: XCTestCase {
    /// Tiny random models: fp32 vs timm's fp32, differing only by summation order and sin/cos
    /// rounding (ulp level); the same margin as the DINOv2 tiny fixtures.
    static let tinyAtol = 2e-5
    /// Full-size models, final tokens (the bound).
    static let fullAtol = 1e-4

    func forward(_ model: ViTModel, _ x: [Float], batch: Int, height: Int, width: Int,
                 observe: ((String, [Float]) -> Void)? = nil) throws -> [Float] {
        let t = model.tokenCount(height: height, width: width)
        var out = [Float](repeating: 0, count: batch * t * model.config.embedDim)
        try x.withUnsafeBufferPointer { xp in
            try out.withUnsafeMutableBufferPointer { op in
                try model.forward(out: op.baseAddress!, images: xp.baseAddress!, batch: batch, height: height,
                                  width: width) { name, v in observe?(name, Array(v)) }
            }
        }
        return out
    }

    func runStages(_ model: ViTModel, _ fx: Fixture, sizeSuffix: String, tag: String, height: Int, width: Int,
                   file: StaticString = #filePath, line: UInt = #line) throws {
        var got: [String: [Float]] = [:]
        let out = try forward(model, try fx.floats("x" + sizeSuffix), batch: 2, height: height, width: width) { got[$0] = $1 }
        for s in ["patch_embed", "tokens", "block0", "block1", "norm"] {
            let key = s + sizeSuffix + tag
            let c = assertClose(got[s] ?? [], try fx.floats(key), rtol: 0, atol: Self.tinyAtol, key, file: file, line: line)
            print("  \(key): \(c)")
        }
        assertClose(out, try fx.floats("norm" + sizeSuffix + tag), rtol: 0, atol: Self.tinyAtol, "output", file: file, line: line)
    }

    func testPresets() throws {
        let s = try XCTUnwrap(ViTConfig.preset("dinov3_vits16"))
        XCTAssertEqual(s.family, .dinov3)
        XCTAssertEqual(s.patchSize, 16)
        XCTAssertEqual(s.registers, 4)
        XCTAssertEqual(s.layerNormEps, 1e-5)
        XCTAssertEqual(ViTLayout(config: s).posEmbed, -1)
        XCTAssertNil(ViTLayout(config: s).spec(named: "pos_embed"))
        // Canonical layout: the fused qkv bias keeps its (zero) key third; no mask token or periods.
        XCTAssertEqual(try ViTParameters(config: s).count, 21_600_768)
        let plus = try XCTUnwrap(ViTConfig.preset("dinov3_vits16plus"))
        XCTAssertEqual(plus.ffn, .swiglu)
        XCTAssertEqual(plus.mlpHidden, 1536)
        let h = try XCTUnwrap(ViTConfig.preset("dinov3_vith16plus"))
        XCTAssertEqual(h.heads, 20)
        XCTAssertEqual(h.mlpHidden, 5120)
        for name in ViTConfig.dinov3PresetNames { XCTAssertNoThrow(try ViTConfig.preset(name)!.validate(), name) }
    }

    func testPeriodsAndBF16Rounding() throws {
        let fx = try Fixture("dinov3/tiny_mlp.fixture.safetensors")
        let f32 = RoPE.periods(headDim: 16, settings: RoPESettings(bf16Periods: false))
        let bf16 = RoPE.periods(headDim: 16, settings: RoPESettings(bf16Periods: true))
        XCTAssertEqual(f32, try fx.floats("periods_f32"))
        XCTAssertEqual(bf16, try fx.floats("periods_bf16"))
        XCTAssertNotEqual(f32, bf16)
    }

    /// RoPE cos/sin tables of both grids and both period roundings against timm's `get_embed`.
    func testRoPETables() throws {
        let fx = try Fixture("dinov3/tiny_mlp.fixture.safetensors")
        for bf16 in [false, true] {
            let model = try WeightLoader.load(path: fixturePath("dinov3/tiny_mlp.meta.weights.safetensors"),
                                              options: LoadOptions(heads: 2, ropeBF16Periods: bf16))
            let tag = bf16 ? "_bf16" : "_f32"
            for (h, w, sfx) in [(4, 4, ""), (3, 5, "_48x80")] {
                let t = model.ropeTables(gridHeight: h, gridWidth: w)
                assertClose(t.cos, try fx.floats("rope_cos" + sfx + tag), rtol: 0, atol: 1e-6, "cos\(sfx)\(tag)")
                assertClose(t.sin, try fx.floats("rope_sin" + sfx + tag), rtol: 0, atol: 1e-6, "sin\(sfx)\(tag)")
            }
        }
    }

    /// Block 0's attention with RoPE (LN1 → qkv → RoPE on patch q, k → softmax attention → proj).
    func testAttentionWithRoPE() throws {
        let fx = try Fixture("dinov3/tiny_mlp.fixture.safetensors")
        let model = try WeightLoader.load(path: fixturePath("dinov3/tiny_mlp.hf.weights.safetensors"), options: LoadOptions(heads: 2))
        let c = model.config, L = model.params.layout, p = model.params.slab, blk = L.blocks[0]
        let tokens = try fx.floats("tokens_f32")
        let b = 2, t = 5 + 16, d = c.embedDim, rows = b * t
        var y = [Float](repeating: 0, count: rows * d), qkv = [Float](repeating: 0, count: rows * 3 * d)
        var heads = y, out = y
        var scratch = [Float](repeating: 0, count: Attention.scratchCount(tokens: t, headDim: c.headDim))
        LayerNorm.forward(out: &y, mean: nil, rstd: nil, input: tokens, weight: p[blk.norm1W], bias: p[blk.norm1B],
                          rows: rows, dim: d, eps: c.layerNormEps)
        Linear.forward(out: &qkv, input: y, weight: p[blk.qkvW], bias: p[blk.qkvB], rows: rows, inDim: d, outDim: 3 * d)
        qkv.withUnsafeMutableBufferPointer {
            model.ropeTables(gridHeight: 4, gridWidth: 4).apply(qkv: $0.baseAddress!, batch: b, tokens: t, prefix: 5, heads: c.heads)
        }
        Attention.forward(out: &heads, probs: nil, scratch: &scratch, qkv: qkv, batch: b, tokens: t, heads: c.heads,
                          headDim: c.headDim, scale: 1 / Float(c.headDim).squareRoot())
        Linear.forward(out: &out, input: heads, weight: p[blk.projW], bias: p[blk.projB], rows: rows, inDim: d, outDim: d)
        let cl = assertClose(out, try fx.floats("attn0_f32"), rtol: 0, atol: Self.tinyAtol, "attention with RoPE")
        print("  attn0: \(cl)")
    }

    /// Meta layout (storage tokens, masked k bias with a non-zero k part, bf16 periods detected).
    func testTinyMetaLayout() throws {
        let fx = try Fixture("dinov3/tiny_mlp.fixture.safetensors")
        let model = try WeightLoader.load(path: fixturePath("dinov3/tiny_mlp.meta.weights.safetensors"),
                                          options: LoadOptions(heads: 2))
        XCTAssertEqual(model.scheme, .meta)
        XCTAssertEqual(model.config.family, .dinov3)
        XCTAssertEqual(model.config.qkvBias, .maskedKey)
        XCTAssertEqual(model.config.rope?.bf16Periods, true)
        XCTAssertEqual(model.config.registers, 4)
        try runStages(model, fx, sizeSuffix: "", tag: "_bf16", height: 64, width: 64)
        try runStages(model, fx, sizeSuffix: "_48x80", tag: "_bf16", height: 48, width: 80)
        // The same file with float32 periods matches timm's default.
        let f32 = try WeightLoader.load(path: fixturePath("dinov3/tiny_mlp.meta.weights.safetensors"),
                                        options: LoadOptions(heads: 2, ropeBF16Periods: false))
        try runStages(f32, fx, sizeSuffix: "_48x80", tag: "_f32", height: 48, width: 80)
    }

    /// Hugging Face DINOv3ViTModel layout (split q/k/v/o projections, layer_scale lambdas).
    func testTinyHuggingFaceLayout() throws {
        let fx = try Fixture("dinov3/tiny_mlp.fixture.safetensors")
        let model = try WeightLoader.load(path: fixturePath("dinov3/tiny_mlp.hf.weights.safetensors"),
                                          options: LoadOptions(heads: 2))
        XCTAssertEqual(model.scheme, .huggingFace)
        XCTAssertEqual(model.config.qkvBias, .maskedKey)
        XCTAssertEqual(model.config.rope?.bf16Periods, false)
        try runStages(model, fx, sizeSuffix: "", tag: "_f32", height: 64, width: 64)
        try runStages(model, fx, sizeSuffix: "_48x80", tag: "_f32", height: 48, width: 80)
    }

    /// timm layout of the plain SwiGLU variant (no qkv bias; fc1_g / fc1_x / fc2; reg_token; gamma_N).
    func testTinyTimmSwiGLU() throws {
        let fx = try Fixture("dinov3/tiny_swiglu.fixture.safetensors")
        let model = try WeightLoader.load(path: fixturePath("dinov3/tiny_swiglu.timm.weights.safetensors"),
                                          options: LoadOptions(heads: 2))
        XCTAssertEqual(model.scheme, .timm)
        XCTAssertEqual(model.config.ffn, .swiglu)
        XCTAssertEqual(model.config.qkvBias, .none)
        try runStages(model, fx, sizeSuffix: "", tag: "", height: 64, width: 64)
        try runStages(model, fx, sizeSuffix: "_48x80", tag: "", height: 48, width: 80)
    }

    func testExpectedPreset() throws {
        let path = fixturePath("dinov3/tiny_mlp.meta.weights.safetensors")
        XCTAssertThrowsError(try WeightLoader.load(path: path, options: LoadOptions(expect: ViTConfig.dinov3Small()))) {
            XCTAssertTrue("\($0)".contains("does not fit"), "\($0)")
        }
        XCTAssertThrowsError(try WeightLoader.load(path: path, options: LoadOptions(expect: ViTConfig.dinov2Small())))
        var tiny = ViTConfig.dinov3(name: "tiny", embedDim: 32, depth: 2, heads: 2, mlpHidden: 64)
        tiny.layerScale = true
        let m = try WeightLoader.load(path: path, options: LoadOptions(expect: tiny))
        XCTAssertEqual(m.config.name, "tiny")
        XCTAssertEqual(m.config.heads, 2)
    }

    func fullSize(_ config: ViTConfig, fixture: String) throws {
        let fx = try Fixture("dinov3/\(fixture)_formula.fixture.safetensors")
        let model = try WeightLoader.load(source: FormulaWeights.dinov3(config), sourceName: "formula")
        XCTAssertEqual(model.config.name, config.name)
        XCTAssertEqual(model.config.qkvBias, .none)
        let d = config.embedDim
        for (h, w, name) in [(224, 224, "224"), (192, 320, "192x320"), (512, 512, "512")] {
            let out = try forward(model, FormulaWeights.input(count: 2 * 3 * h * w), batch: 2, height: h, width: w)
            let index = try fx.floats("index_" + name).map { Int($0) }
            let t = model.tokenCount(height: h, width: w)
            var picked: [Float] = []
            for b in 0..<2 { for i in index { picked += out[((b * t) + i) * d ..< ((b * t) + i + 1) * d] } }
            let c = assertClose(picked, try fx.floats("out_" + name), rtol: 0, atol: Self.fullAtol, "\(fixture) \(name)")
            print("  \(fixture) \(name) (\(index.count) tokens per image): \(c)")
        }
    }

    func testFullSizeViTS16() throws { try fullSize(.dinov3Small(), fixture: "vits16") }
    func testFullSizeViTS16Plus() throws { try fullSize(.dinov3SmallPlus(), fixture: "vits16plus") }
    func testFullSizeViTB16() throws { try fullSize(.dinov3Base(), fixture: "vitb16") }
}
