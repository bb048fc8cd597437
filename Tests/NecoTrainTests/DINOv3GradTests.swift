import NecoCore
import NecoModel
import XCTest
import _NecoTestSupport

/// Backward through DINOv3 (RoPE on q and k, SwiGLU, masked key bias, LayerScale) against PyTorch
/// autograd on timm's Eva (scripts/reference/make_dinov3_fixtures.py, `grads`).
final class DINOv3GradTests: XCTestCase {
    /// Relative to each tensor's largest gradient: the bound, as for DINOv2
    /// (PyTorchParityTests.gradRelTol); the two sides differ only by summation order.
    static let gradRelTol = 1e-3

    func testTinyGradientsMatchAutograd() throws {
        let fx = try Fixture("dinov3/grads.fixture.safetensors")
        let model = try WeightLoader.load(path: fixturePath("dinov3/grads.weights.safetensors"), options: LoadOptions(heads: 2))
        XCTAssertEqual(model.config.ffn, .swiglu)
        XCTAssertEqual(model.config.qkvBias, .maskedKey)
        let batch = 2, h = 48, w = 64
        let x = try fx.floats("x")
        let acts = try ViTActivations(config: model.config, batch: batch, height: h, width: w)
        try x.withUnsafeBufferPointer { try model.forwardTraining(acts, images: $0.baseAddress!) }
        assertClose(Array(acts.output), try fx.floats("out"), rtol: 0, atol: 2e-5, "training forward")
        let dOut = try fx.floats("w")
        _ = acts.outputGradient.update(from: dOut)
        var grads = [Float](repeating: 0, count: model.params.count)
        var dx = [Float](repeating: 0, count: x.count)
        try x.withUnsafeBufferPointer { xp in
            try grads.withUnsafeMutableBufferPointer { gp in
                try dx.withUnsafeMutableBufferPointer { dp in
                    try model.backward(acts, grads: gp.baseAddress!, images: xp.baseAddress!, dImages: dp.baseAddress!)
                }
            }
        }
        var worstOverall = 0.0
        func check(_ a: [Float], _ e: [Float], _ label: String) {
            XCTAssertEqual(a.count, e.count, label)
            let scale = max(e.map { abs(Double($0)) }.max() ?? 0, 1e-30)
            let worst = zip(a, e).map { abs(Double($0) - Double($1)) / scale }.max() ?? 0
            XCTAssertLessThanOrEqual(worst, Self.gradRelTol, "\(label): max |Δ|/max|e| = \(worst)")
            worstOverall = max(worstOverall, worst)
        }
        var worstSeen = 0
        for s in model.params.layout.specs {
            let e = try fx.floats("grad." + s.name)
            check(Array(grads[s.offset ..< s.offset + s.count]), e, s.name)
            worstSeen += 1
        }
        XCTAssertEqual(worstSeen, model.params.layout.specs.count)
        check(dx, try fx.floats("grad.x"), "image gradient")
        print("  DINOv3 gradients: worst max |Δ|/max|e| over every tensor = \(worstOverall)")
        // The key third of every qkv bias gradient stays zero (mask_k_bias).
        let d = model.config.embedDim
        for blk in model.params.layout.blocks {
            XCTAssertTrue(grads[(blk.qkvB + d) ..< (blk.qkvB + 2 * d)].allSatisfy { $0 == 0 })
        }
    }

    /// A training forward with an identity RoPE transform is bit-identical to inference with the
    /// same GEMMs (unpacked weights); an augmented one (shift / jitter / rescale) changes the tables
    /// and hence the output.
    func testRoPEAugmentOnlyInTraining() throws {
        let model = try WeightLoader.load(path: fixturePath("dinov3/grads.weights.safetensors"), options: LoadOptions(heads: 2))
        model.unpackWeights()
        let x = try Fixture("dinov3/grads.fixture.safetensors").floats("x")
        let acts = try ViTActivations(config: model.config, batch: 2, height: 48, width: 64)
        try x.withUnsafeBufferPointer { try model.forwardTraining(acts, images: $0.baseAddress!) }
        var inf = [Float](repeating: 0, count: acts.output.count)
        try x.withUnsafeBufferPointer { xp in
            try inf.withUnsafeMutableBufferPointer {
                try model.forward(out: $0.baseAddress!, images: xp.baseAddress!, batch: 2, height: 48, width: 64)
            }
        }
        XCTAssertEqual(Array(acts.output), inf)
        var rng = TestRNG(seed: 5)
        acts.ropeTransform = RoPEAugment(shift: 0.1, jitter: 1.2, rescale: 2).sample { (rng.uniform() + 1) / 2 }
        XCTAssertFalse(acts.ropeTransform.isIdentity)
        try x.withUnsafeBufferPointer { try model.forwardTraining(acts, images: $0.baseAddress!) }
        XCTAssertNotEqual(Array(acts.output), inf)
    }
}
