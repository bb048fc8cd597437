import NecoCore
import NecoModel
import XCTest
import _NecoTestSupport
import NecoTrain

/// Finite-difference checks of every layer's backward on tiny shapes (see `GradCheck`).
final class LayerGradTests: XCTestCase {
    func testLayerNorm() {
        var r = TestRNG(seed: 11)
        let rows = 5, dim = 13
        let x = Buf(r.floats(rows * dim, scale: 2)), w = Buf(r.floats(dim).map { 1 + 0.3 * $0 }), b = Buf(r.floats(dim, scale: 0.2))
        let g = r.floats(rows * dim), gb = Buf(g)
        let out = Buf(zeros: rows * dim), mean = Buf(zeros: rows), rstd = Buf(zeros: rows)
        func loss() -> Double {
            LayerNorm.forward(out: out.p, mean: nil, rstd: nil, input: x.p, weight: w.p, bias: b.p, rows: rows, dim: dim)
            return GradCheck.project(out.p, g)
        }
        LayerNorm.forward(out: out.p, mean: mean.p, rstd: rstd.p, input: x.p, weight: w.p, bias: b.p, rows: rows, dim: dim)
        let dx = Buf(zeros: rows * dim), dw = Buf(zeros: dim), db = Buf(zeros: dim)
        LayerNorm.backward(dInput: dx.p, dWeight: dw.p, dBias: db.p, dOut: gb.p, input: x.p, weight: w.p, mean: mean.p,
                           rstd: rstd.p, rows: rows, dim: dim)
        GradCheck.check("layernorm.input", x: x.p, count: x.count, analytic: dx.array, loss: loss)
        GradCheck.check("layernorm.weight", x: w.p, count: dim, analytic: dw.array, loss: loss)
        GradCheck.check("layernorm.bias", x: b.p, count: dim, analytic: db.array, loss: loss)
    }

    func testLinear() {
        var r = TestRNG(seed: 12)
        let rows = 4, inDim = 7, outDim = 5
        let x = Buf(r.floats(rows * inDim)), w = Buf(r.floats(outDim * inDim, scale: 0.5)), b = Buf(r.floats(outDim, scale: 0.1))
        let g = r.floats(rows * outDim), gb = Buf(g)
        let out = Buf(zeros: rows * outDim)
        func loss() -> Double {
            Linear.forward(out: out.p, input: x.p, weight: w.p, bias: b.p, rows: rows, inDim: inDim, outDim: outDim)
            return GradCheck.project(out.p, g)
        }
        let dx = Buf(zeros: x.count), dw = Buf(zeros: w.count), db = Buf(zeros: outDim)
        let pack = Buf(zeros: Gemm.packedCount(outDim: inDim, inDim: outDim)!)
        Linear.inputGradient(dx.p, dOut: gb.p, weight: w.p, rows: rows, inDim: inDim, outDim: outDim, pack: pack.p)
        Linear.backward(dWeight: dw.p, dBias: db.p, dOut: gb.p, input: x.p, rows: rows, inDim: inDim, outDim: outDim)
        GradCheck.check("linear.input", x: x.p, count: x.count, analytic: dx.array, loss: loss)
        GradCheck.check("linear.weight", x: w.p, count: w.count, analytic: dw.array, loss: loss)
        GradCheck.check("linear.bias", x: b.p, count: outDim, analytic: db.array, loss: loss)
    }

    func testGELU() {
        var r = TestRNG(seed: 13)
        let n = 60
        let x = Buf(r.floats(n, scale: 3)), g = r.floats(n), gb = Buf(g), out = Buf(zeros: n)
        func loss() -> Double { GELU.forward(out: out.p, input: x.p, count: n); return GradCheck.project(out.p, g) }
        let dx = Buf(zeros: n)
        GELU.backward(dInput: dx.p, dOut: gb.p, input: x.p, count: n)
        GradCheck.check("gelu", x: x.p, count: n, analytic: dx.array, samples: n, loss: loss)
        // The in-place variant (one exp per element) agrees, and fuses the column sums.
        let inPlace = Buf(g), sums = Buf(zeros: 6)
        GELU.backwardInPlace(grad: inPlace.p, input: x.p, rows: 10, cols: 6, columnSum: sums.p)
        assertClose(inPlace.array, dx.array, rtol: 1e-6, atol: 1e-7, "in-place GELU backward")
        let ip = inPlace.array
        assertClose(sums.array, (0..<6).map { j in (0..<10).reduce(Float(0)) { $0 + ip[$1 * 6 + j] } }, rtol: 1e-6,
                    atol: 1e-7, "fused column sums")
    }

    func testSoftmax() {
        var r = TestRNG(seed: 14)
        let rows = 3, cols = 9
        let scale: Float = 0.7
        let x = Buf(r.floats(rows * cols, scale: 3)), g = r.floats(rows * cols), gb = Buf(g), y = Buf(zeros: rows * cols)
        func loss() -> Double {
            y.p.update(from: x.p, count: x.count)
            Softmax.forwardInPlace(y.p, rows: rows, cols: cols, scale: scale)
            return GradCheck.project(y.p, g)
        }
        _ = loss()
        let dx = Buf(zeros: x.count)
        Softmax.backward(dInput: dx.p, dOut: gb.p, probs: y.p, rows: rows, cols: cols, scale: scale)
        GradCheck.check("softmax", x: x.p, count: x.count, analytic: dx.array, samples: 27, loss: loss)
        // In place (dInput == dOut), as the attention backward kernel runs it (y recomputed at the
        // unperturbed x).
        _ = loss()
        let inPlace = Buf(g)
        Softmax.backward(dInput: inPlace.p, dOut: inPlace.p, probs: y.p, rows: rows, cols: cols, scale: scale,
                         accumulate: false)
        assertClose(inPlace.array, dx.array, rtol: 1e-5, atol: 1e-6, "in-place softmax backward")
    }

    /// Both attention backwards: the stored-probabilities kernel (NecoCore) and the recomputing one
    /// used in training, which must also rebuild the forward's head outputs bit for bit.
    func testAttention() {
        var r = TestRNG(seed: 15)
        let batch = 2, t = 5, heads = 2, e = 3, d = heads * e
        let scale = 1 / Float(e).squareRoot()
        let qkv = Buf(r.floats(batch * t * 3 * d, scale: 1.5)), g = r.floats(batch * t * d), gb = Buf(g)
        let out = Buf(zeros: batch * t * d), probs = Buf(zeros: batch * heads * t * t)
        let scratch = Buf(zeros: max(AttentionRecompute.scratchCount(tokens: t, headDim: e), Attention.scratchCount(tokens: t, headDim: e),
                                     Attention.backwardScratchCount(tokens: t, headDim: e)))
        func loss() -> Double {
            Attention.forward(out: out.p, probs: nil, scratch: scratch.p, qkv: qkv.p, batch: batch, tokens: t, heads: heads,
                              headDim: e, scale: scale)
            return GradCheck.project(out.p, g)
        }
        Attention.forward(out: out.p, probs: probs.p, scratch: scratch.p, qkv: qkv.p, batch: batch, tokens: t, heads: heads,
                          headDim: e, scale: scale)
        let forwardOut = out.array
        let dStored = Buf(zeros: qkv.count)
        Attention.backward(dQKV: dStored.p, dOut: gb.p, qkv: qkv.p, probs: probs.p, scratch: scratch.p, batch: batch,
                           tokens: t, heads: heads, headDim: e, scale: scale)
        let dRecompute = Buf(zeros: qkv.count), heads2 = Buf(zeros: out.count)
        AttentionRecompute.backward(dQKV: dRecompute.p, headsOut: heads2.p, dOut: gb.p, qkv: qkv.p, scratch: scratch.p,
                                    batch: batch, tokens: t, heads: heads, headDim: e, scale: scale)
        XCTAssertEqual(heads2.array, forwardOut, "recomputed heads must equal the forward's bit for bit")
        // Same formulas; the recomputing kernel's softmax backward sums its dot product in 8 lanes.
        assertClose(dRecompute.array, dStored.array, rtol: 1e-5, atol: 1e-6, "recomputed-P vs stored-P gradients")
        GradCheck.check("attention.qkv", x: qkv.p, count: qkv.count, analytic: dRecompute.array, samples: 60, loss: loss)
    }

    func testSwiGLU() {
        var r = TestRNG(seed: 16)
        let rows = 3, h = 4
        let gates = Buf(r.floats(rows * 2 * h, scale: 2)), g = r.floats(rows * h), gb = Buf(g), hidden = Buf(zeros: rows * h)
        func loss() -> Double {
            SwiGLU.forward(hidden: hidden.p, gates: gates.p, rows: rows, width: h)
            return GradCheck.project(hidden.p, g)
        }
        let dg = Buf(zeros: gates.count)
        SwiGLU.backward(dGates: dg.p, dHidden: gb.p, gates: gates.p, rows: rows, width: h)
        GradCheck.check("swiglu.gates", x: gates.p, count: gates.count, analytic: dg.array, samples: 24, loss: loss)
    }

    /// out = x + s_b · γ ⊙ (h·Wᵀ + b) with dropped, kept and subset-scaled samples, with and
    /// without LayerScale.
    func testBranchResidual() {
        for withGamma in [true, false] {
            var r = TestRNG(seed: withGamma ? 17 : 18)
            let batch = 3, t = 2, d = 4, k = 5, rows = batch * t
            let x = Buf(r.floats(rows * d)), h = Buf(r.floats(rows * k)), w = Buf(r.floats(d * k, scale: 0.7))
            let b = Buf(r.floats(d, scale: 0.3)), gamma = Buf(r.floats(d).map { 0.5 + 0.3 * $0 })
            let scales = Buf([0, 1.25, 2])
            let g = r.floats(rows * d), gb = Buf(g)
            let z = Buf(zeros: rows * d), out = Buf(zeros: rows * d)
            let gp: UnsafeMutablePointer<Float>? = withGamma ? gamma.p : nil
            func loss() -> Double {
                Linear.forward(out: z.p, input: h.p, weight: w.p, bias: b.p, rows: rows, inDim: k, outDim: d)
                BranchResidual.forward(out: out.p, residual: x.p, branch: z.p, gamma: gp, sampleScale: scales.p, batch: batch,
                                       tokens: t, dim: d)
                return GradCheck.project(out.p, g)
            }
            let dZ = Buf(zeros: rows * d), dZG = Buf(zeros: rows * d), dH = Buf(zeros: rows * k)
            let dW = Buf(zeros: d * k), dB = Buf(zeros: d), dGamma = Buf(zeros: d), gs = Buf(zeros: d * k)
            BranchResidual.backwardScale(dZ: dZ.p, dZGamma: dZG.p, dOut: gb.p, gamma: gp, sampleScale: scales.p, batch: batch,
                                         tokens: t, dim: d)
            let pack = Buf(zeros: Gemm.packedCount(outDim: k, inDim: d)!)
            BranchResidual.backwardInput(dInput: dH.p, dZGamma: dZG.p, weight: w.p, rows: rows, dim: d, inDim: k, pack: pack.p)
            BranchResidual.backwardParams(dWeight: dW.p, dBias: dB.p, dGamma: withGamma ? dGamma.p : nil, dZ: dZ.p, input: h.p,
                                          weight: w.p, bias: b.p, gamma: gp, gScratch: gs.p, batch: batch, tokens: t,
                                          dim: d, inDim: k)
            let tag = withGamma ? "layerscale" : "plain"
            // The residual path passes the gradient through unchanged.
            GradCheck.check("\(tag).residual", x: x.p, count: x.count, analytic: g, loss: loss)
            GradCheck.check("\(tag).input", x: h.p, count: h.count, analytic: dH.array, samples: 30, loss: loss)
            GradCheck.check("\(tag).weight", x: w.p, count: w.count, analytic: dW.array, samples: 20, loss: loss)
            GradCheck.check("\(tag).bias", x: b.p, count: d, analytic: dB.array, loss: loss)
            if withGamma { GradCheck.check("\(tag).gamma", x: gamma.p, count: d, analytic: dGamma.array, loss: loss) }
            // Dropped sample 0: no gradient reaches its branch input.
            XCTAssert(dH.array[0..<(t * k)].allSatisfy { $0 == 0 })
            // Parameter gradients accumulate.
            let before = dW.array
            BranchResidual.backwardParams(dWeight: dW.p, dBias: dB.p, dGamma: withGamma ? dGamma.p : nil, dZ: dZ.p, input: h.p,
                                          weight: w.p, bias: b.p, gamma: gp, gScratch: gs.p, batch: batch, tokens: t,
                                          dim: d, inDim: k)
            assertClose(dW.array, before.map { 2 * $0 }, rtol: 1e-6, atol: 1e-7, "\(tag): dW accumulates")
        }
    }

    /// The transpose of every resampling rule, upsampling and downsampling, reaches the table.
    func testPosEmbedResampleAllRules() {
        for rule in PosEmbedRule.allCases {
            for (h, w) in [(3, 4), (7, 6)] {
                var r = TestRNG(seed: UInt64(19 + h))
                let grid = 5, d = 3
                let table = Buf(r.floats(grid * grid * d)), g = r.floats(h * w * d), gb = Buf(g)
                let out = Buf(zeros: h * w * d), scratch = Buf(zeros: max(h, grid) * grid * d)
                func loss() -> Double {
                    PosEmbed.resample(out: out.p, table: table.p, scratch: scratch.p, grid: grid, height: h, width: w, dim: d, rule: rule)
                    return GradCheck.project(out.p, g)
                }
                let dt = Buf(zeros: table.count)
                PosEmbed.resampleBackward(dTable: dt.p, dOut: gb.p, scratch: scratch.p, grid: grid, height: h, width: w, dim: d,
                                          rule: rule)
                GradCheck.check("posembed.\(rule.rawValue).\(h)x\(w)", x: table.p, count: table.count, analytic: dt.array,
                                samples: 75, loss: loss)
            }
        }
    }

    /// Token assembly: patch embedding, resampled position table (3 rules), CLS and registers.
    func testEmbeddings() throws {
        for rule in PosEmbedRule.allCases {
            var c = ViTConfig(name: "tiny", patchSize: 4, embedDim: 6, depth: 1, heads: 2, mlpHidden: 8, registers: 2,
                              posGrid: 3, posEmbedRule: rule)
            c.inChannels = 3
            let params = try ViTParameters(config: c)
            var r = TestRNG(seed: 23)
            for i in 0..<params.count { params.slab.base[i] = r.uniform() * 0.5 }
            let L = params.layout
            let batch = 2, height = 12, width = 16, gh = 3, gw = 4, t = 1 + 2 + gh * gw
            let images = Buf(r.floats(batch * 3 * height * width))
            let g = r.floats(batch * t * c.embedDim), gb = Buf(g)
            let x = Buf(zeros: batch * t * c.embedDim)
            let scratch = Buf(zeros: max(Embeddings.forwardScratchCount(config: c, gridHeight: gh, gridWidth: gw),
                                         Embeddings.backwardScratchCount(config: c, batch: batch, gridHeight: gh, gridWidth: gw,
                                                                         wantImageGradient: true)))
            func loss() -> Double {
                Embeddings.forward(x: x.p, images: images.p, params: params.slab, layout: L, batch: batch, height: height,
                                   width: width, scratch: scratch.p)
                return GradCheck.project(x.p, g)
            }
            let grads = Buf(zeros: params.count), dImages = Buf(zeros: images.count)
            Embeddings.backward(grads: grads.p, dImages: dImages.p, dX: gb.p, images: images.p, params: params.slab, layout: L,
                                batch: batch, height: height, width: width, scratch: scratch.p)
            for name in ["cls_token", "register_tokens", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"] {
                let s = L.spec(named: name)!
                GradCheck.check("embeddings.\(rule.rawValue).\(name)", x: params[s.offset], count: s.count,
                                analytic: Array(grads.array[s.offset..<(s.offset + s.count)]), samples: 30, loss: loss)
            }
            GradCheck.check("embeddings.\(rule.rawValue).images", x: images.p, count: images.count, analytic: dImages.array,
                            samples: 30, loss: loss)
        }
    }

    func testL2Normalize() {
        for eps in [L2Normalize.defaultEps, 0.5] {
            var r = TestRNG(seed: 29)
            let rows = 4, dim = 6
            var xs = r.floats(rows * dim)
            for i in 0..<dim { xs[i] *= 0.05 }  // row 0 has norm < 0.5: the clamped branch when eps = 0.5
            let x = Buf(xs), g = r.floats(rows * dim), gb = Buf(g), y = Buf(zeros: rows * dim), n = Buf(zeros: rows)
            func loss() -> Double {
                L2Normalize.forward(out: y.p, norms: nil, input: x.p, rows: rows, dim: dim, eps: eps)
                return GradCheck.project(y.p, g)
            }
            L2Normalize.forward(out: y.p, norms: n.p, input: x.p, rows: rows, dim: dim, eps: eps)
            let dx = Buf(zeros: x.count)
            L2Normalize.backward(dInput: dx.p, dOut: gb.p, out: y.p, norms: n.p, rows: rows, dim: dim, eps: eps)
            // h must stay below the clamp's kink for row 0 (norm ≈ 0.05 ≪ 0.5), so use the default h.
            GradCheck.check("l2.eps\(eps)", x: x.p, count: x.count, analytic: dx.array, samples: 24, loss: loss)
        }
    }

    /// The projection head (3, 2 and 1 layers), over more rows than one chunk.
    func testProjectionHead() throws {
        for layers in [3, 2, 1] {
            let hc = HeadConfig(inDim: 5, hiddenDim: 7, outDim: 4, layers: layers)
            let head = try ProjectionHead(config: hc)
            var rng = NecoRNG(seed: 31)
            head.initialize(rng: &rng)
            var r = TestRNG(seed: 37)
            // Bigger weights than NeCo's init, so every layer matters in the check.
            for i in 0..<head.count { head.slab.base[i] = r.uniform() * 0.6 }
            let rows = HeadActivations.chunkRows + 6
            let acts = try HeadActivations(config: hc, rows: rows)
            let x = acts.slab[acts.input]
            for i in 0..<(rows * hc.inDim) { x[i] = r.uniform() }
            let g = r.floats(rows * hc.outDim)
            func loss() -> Double {
                head.forwardTraining(acts, rows: rows)
                return GradCheck.project(acts.slab[acts.out], g)
            }
            _ = loss()
            acts.slab[acts.dOut].update(from: g, count: g.count)
            let grads = Buf(zeros: head.count), dx = Buf(zeros: rows * hc.inDim)
            head.backward(acts, rows: rows, grads: grads.p, dInput: dx.p)
            for s in head.layout.specs {
                GradCheck.check("head\(layers).\(s.name)", x: head.slab[s.offset], count: s.count,
                                analytic: Array(grads.array[s.offset..<(s.offset + s.count)]), samples: 12, loss: loss)
            }
            // Input rows in both chunks.
            let dxa = dx.array
            for i in [0, 3, rows * hc.inDim - 2] {
                let x0 = x[i]
                x[i] = x0 + 1e-2; let lp = loss()
                x[i] = x0 - 1e-2; let lm = loss()
                x[i] = x0
                XCTAssertEqual((lp - lm) / 2e-2, Double(dxa[i]), accuracy: 2e-3, "head\(layers) input[\(i)]")
            }
            // The inference forward (teacher) gives the training forward's output.
            _ = loss()
            let out = Buf(zeros: rows * hc.outDim), scratch = Buf(zeros: head.inferenceScratchCount(rows: rows))
            head.forward(out: out.p, input: x, rows: rows, scratch: scratch.p)
            XCTAssertEqual(out.array, Array(UnsafeBufferPointer(start: acts.slab[acts.out], count: rows * hc.outDim)))
        }
    }
}
