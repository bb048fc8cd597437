import NecoCore
import NecoModel
import XCTest
import _NecoTestSupport
import NecoTrain

/// The training forward against the inference forward, and the whole-model backward against
/// finite differences.
final class ViTTrainingTests: XCTestCase {
    func run(_ model: ViTModel, _ acts: ViTActivations, _ images: Buf) throws -> [Float] {
        try model.forwardTraining(acts, images: images.p)
        return Array(acts.output)
    }

    /// With every stochastic-depth scale at 1, `forwardTraining` gives `forward`'s output bit for bit.
    func testTrainingForwardEqualsInference() throws {
        let cases: [(ViTConfig, Int, Int)] = [
            (TinyModels.reg(rule: .neco), 12, 16), (TinyModels.reg(rule: .antialias), 12, 12),
            (TinyModels.reg(rule: .bicubic, ffn: .swiglu), 16, 8), (TinyModels.v1(), 12, 12),
        ]
        for (k, (c, h, w)) in cases.enumerated() {
            let model = try TinyModels.model(c, seed: UInt64(40 + k))
            var r = TestRNG(seed: UInt64(50 + k))
            let batch = 3
            let images = Buf(r.floats(batch * 3 * h * w))
            let t = model.tokenCount(height: h, width: w)
            let expected = Buf(zeros: batch * t * c.embedDim)
            try model.forward(out: expected.p, images: images.p, batch: batch, height: h, width: w)
            // Packed copies (inference's default) against each weight packed per product: the same bits.
            XCTAssertFalse(model.weightsArePacked)
            try model.packWeights(releasing: false)
            let packed = Buf(zeros: batch * t * c.embedDim)
            try model.forward(out: packed.p, images: images.p, batch: batch, height: h, width: w)
            XCTAssertEqual(packed.array, expected.array, "\(c.name) packed copies")
            model.unpackWeights()
            for first in [0, 1, c.depth] {
                let acts = try ViTActivations(config: c, batch: batch, height: h, width: w, firstSavedBlock: first)
                let got = try run(model, acts, images)
                XCTAssertEqual(got, expected.array, "\(c.name) \(c.ffn) \(c.posEmbedRule) saved from \(first)")
                // Borrowing the memory without saving (the trainer's teacher pass).
                try model.forwardTraining(acts, images: images.p, saveActivations: false)
                XCTAssertEqual(Array(acts.output), expected.array, "\(c.name) unsaved")
            }
        }
    }

    /// Every parameter tensor and the images, against finite differences, with dropped, kept and
    /// subset-scaled samples, for LayerScale + registers, SwiGLU, and DINO v1 models.
    func testWholeModelGradcheck() throws {
        let cases: [(ViTConfig, Int, Int)] = [
            (TinyModels.reg(rule: .neco), 12, 16), (TinyModels.reg(rule: .antialias, ffn: .swiglu), 8, 12), (TinyModels.v1(), 8, 8),
        ]
        for (k, (c, h, w)) in cases.enumerated() {
            let model = try TinyModels.model(c, seed: UInt64(60 + k))
            var r = TestRNG(seed: UInt64(70 + k))
            let batch = 3
            let images = Buf(r.floats(batch * 3 * h * w))
            let acts = try ViTActivations(config: c, batch: batch, height: h, width: w)
            // Block 0: sample 1 dropped in the attention branch, kept ×1.25 in the MLP branch;
            // block 1: the subset path (samples 0 and 2 kept, ×1.5).
            _ = acts.branchScales(block: 0, branch: 0).update(from: [1.25, 0, 1.25])
            _ = acts.branchScales(block: 0, branch: 1).update(from: [1.25, 1.25, 0])
            _ = acts.branchScales(block: 1, branch: 0).update(from: [1.5, 0, 1.5])
            _ = acts.branchScales(block: 1, branch: 1).update(from: [0, 1.5, 1.5])
            let g = r.floats(acts.rows * c.embedDim)
            func loss() -> Double {
                try! model.forwardTraining(acts, images: images.p)
                return GradCheck.project(acts.output.baseAddress!, g)
            }
            _ = loss()
            _ = acts.outputGradient.update(from: g)
            let grads = Buf(zeros: model.params.count), dImages = Buf(zeros: images.count)
            try model.backward(acts, grads: grads.p, images: images.p, dImages: dImages.p)
            let all = grads.array
            for s in model.params.layout.specs {
                GradCheck.check("\(c.name).\(c.ffn.rawValue).\(s.name)", x: model.params[s.offset], count: s.count,
                                analytic: Array(all[s.offset..<(s.offset + s.count)]), samples: 6, loss: loss)
            }
            GradCheck.check("\(c.name).images", x: images.p, count: images.count, analytic: dImages.array, samples: 12, loss: loss)
        }
    }

    /// Backward from block N gives exactly the full backward's gradients for blocks ≥ N and
    /// nothing below; frozen blocks need not be saved; gradients accumulate over calls.
    func testTrainablePartsAndAccumulation() throws {
        let c = TinyModels.reg(depth: 3)
        let model = try TinyModels.model(c, seed: 81)
        var r = TestRNG(seed: 82)
        let batch = 2, h = 12, w = 12
        let images = Buf(r.floats(batch * 3 * h * w))
        let full = try ViTActivations(config: c, batch: batch, height: h, width: w)
        try model.forwardTraining(full, images: images.p)
        let g = r.floats(full.rows * c.embedDim)
        _ = full.outputGradient.update(from: g)
        let gAll = Buf(zeros: model.params.count)
        try model.backward(full, grads: gAll.p, images: images.p)
        let L = model.params.layout
        for first in [1, 2, 3] {
            let parts = ViTTrainableParts(firstBlock: first, embeddingsAndNorm: false)
            for saved in [0, first] {
                let acts = try ViTActivations(config: c, batch: batch, height: h, width: w, firstSavedBlock: saved)
                try model.forwardTraining(acts, images: images.p)
                XCTAssertEqual(Array(acts.output), Array(full.output))
                _ = acts.outputGradient.update(from: g)
                let gp = Buf(zeros: model.params.count)
                try model.backward(acts, grads: gp.p, images: images.p, trainable: parts)
                let got = gp.array, want = gAll.array
                for s in L.specs {
                    let range = s.offset..<(s.offset + s.count)
                    var trains = false
                    if s.name.hasPrefix("blocks.") { trains = Int(s.name.split(separator: ".")[1])! >= first }
                    if trains {
                        XCTAssertEqual(Array(got[range]), Array(want[range]), "\(s.name) from block \(first)")
                    } else {
                        XCTAssert(got[range].allSatisfy { $0 == 0 }, "\(s.name) must get no gradient when training from block \(first)")
                    }
                }
            }
        }
        // Not saved below block 2: cannot train block 1.
        let acts = try ViTActivations(config: c, batch: batch, height: h, width: w, firstSavedBlock: 2)
        try model.forwardTraining(acts, images: images.p)
        let gp = Buf(zeros: model.params.count)
        XCTAssertThrowsError(try model.backward(acts, grads: gp.p, images: images.p,
                                                trainable: ViTTrainableParts(firstBlock: 1, embeddingsAndNorm: false)))
        XCTAssertThrowsError(try model.backward(acts, grads: gp.p, images: images.p,
                                                trainable: ViTTrainableParts(firstBlock: 1, embeddingsAndNorm: true)))
        // Accumulation: a second backward doubles every gradient.
        try model.backward(full, grads: gAll.p, images: images.p)
        let twice = gAll.array
        let once = Buf(zeros: model.params.count)
        try model.backward(full, grads: once.p, images: images.p)
        assertClose(twice, once.array.map { 2 * $0 }, rtol: 1e-5, atol: 1e-7, "gradients accumulate")
    }
}

/// Thread counts split GEMMs into row or column shares and elementwise kernels into row chunks;
/// none of that changes what is summed for one output element, and reductions over rows use fixed
/// blocks (`RowBlocks`), so forward outputs and gradients agree across thread counts.
final class ThreadCountTests: XCTestCase {
    /// Same arithmetic per element for every split; the bound only allows for a GEMM library that
    /// picks a different kernel for a differently shaped share (values here are O(1)).
    static let atol = 1e-5

    func testForwardAndBackwardAgreeFor1_2_4Threads() throws {
        // Two ViT-S/14 blocks with registers at 56×56, batch 2: GEMMs large enough to be split.
        let c = ViTConfig(name: "vits14_2blocks", patchSize: 14, embedDim: 384, depth: 2, heads: 6, mlpHidden: 1536,
                          ffn: .mlp, layerScale: true, registers: 4, posGrid: 4, posEmbedRule: .bicubic)
        let params = try ViTParameters(config: c)
        var r = TestRNG(seed: 5)
        for i in 0..<params.count { params.slab.base[i] = r.uniform() * 0.05 }
        let model = ViTModel(params: params, source: "random")
        let batch = 2, h = 56, w = 56
        let images = Buf(r.floats(batch * 3 * h * w))
        let t = model.tokenCount(height: h, width: w)
        let g = r.floats(batch * t * c.embedDim)
        let saved = Threads.count
        defer { Threads.setCount(saved) }
        var outs: [[Float]] = [], grads: [[Float]] = []
        for n in [1, 2, 4] {
            Threads.setCount(n)
            let out = Buf(zeros: batch * t * c.embedDim)
            try model.forward(out: out.p, images: images.p, batch: batch, height: h, width: w)
            outs.append(out.array)
            let acts = try ViTActivations(config: c, batch: batch, height: h, width: w)
            try model.forwardTraining(acts, images: images.p)
            _ = acts.outputGradient.update(from: g)
            let gp = Buf(zeros: model.params.count)
            try model.backward(acts, grads: gp.p, images: images.p)
            grads.append(gp.array)
        }
        for k in 1..<3 {
            assertClose(outs[k], outs[0], rtol: 0, atol: Self.atol, "forward, \([1, 2, 4][k]) threads vs 1")
            assertClose(grads[k], grads[0], rtol: 0, atol: Self.atol, "gradients, \([1, 2, 4][k]) threads vs 1")
        }
        print("  threads 1/2/4: forward identical \(outs[1] == outs[0] && outs[2] == outs[0]), "
              + "gradients identical \(grads[1] == grads[0] && grads[2] == grads[0])")
    }
}
