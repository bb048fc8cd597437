import NecoCore
import NecoTrain
import XCTest
import _NecoTestSupport

/// Cosine similarity, cross-entropy and the full NeCo loss: finite differences in Double and the
/// PyTorch formulation of the official code (fixtures/neco/loss.safetensors).
final class NeCoLossTests: XCTestCase {
    // MARK: Cosine similarity

    func cosine(_ x: [Double], _ r: [Double], b: Int, q: Int, k: Int, c: Int)
        -> (sim: [Double], xHat: [Double], xNorm: [Double], rHat: [Double], rNorm: [Double]) {
        var sim = [Double](repeating: 0, count: b * q * k)
        var xHat = [Double](repeating: 0, count: x.count), rHat = [Double](repeating: 0, count: r.count)
        var xn = [Double](repeating: 0, count: b * q), rn = [Double](repeating: 0, count: b * k)
        CosineSimilarity.forward(sim: &sim, xHat: &xHat, xNorm: &xn, rHat: &rHat, rNorm: &rn, x: x, r: r,
                                 batch: b, queries: q, keys: k, channels: c)
        return (sim, xHat, xn, rHat, rn)
    }

    func testCosineForwardBackward() {
        var rng = TestRNG(seed: 31)
        let (b, q, k, c) = (2, 5, 4, 7)
        var x = rng.floats(b * q * c).map { Double($0) }
        var r = rng.floats(b * k * c).map { Double($0) }
        for i in 0..<c { x[3 * c + i] = 0 }  // a zero query vector: similarities 0 (P9)
        let fw = cosine(x, r, b: b, q: q, k: k, c: c)
        for kk in 0..<k { XCTAssertEqual(fw.sim[3 * k + kk], 0) }
        // A naive check of one entry.
        var dot = 0.0, nx = 0.0, nr = 0.0
        for i in 0..<c {
            dot += x[(q + 1) * c + i] * r[(k + 2) * c + i]
            nx += x[(q + 1) * c + i] * x[(q + 1) * c + i]
            nr += r[(k + 2) * c + i] * r[(k + 2) * c + i]
        }
        XCTAssertEqual(fw.sim[(q + 1) * k + 2], dot / (nx.squareRoot() * nr.squareRoot()), accuracy: 1e-14)
        let g = necoFormulaGrad(b * q * k)
        var dX = [Double](repeating: 0, count: x.count), dR = [Double](repeating: 0, count: r.count)
        CosineSimilarity.backward(dX: &dX, dR: &dR, dSim: g, xHat: fw.xHat, xNorm: fw.xNorm, rHat: fw.rHat, rNorm: fw.rNorm,
                                  batch: b, queries: q, keys: k, channels: c)
        func loss(_ xv: [Double], _ rv: [Double]) -> Double {
            let s = cosine(xv, rv, b: b, q: q, k: k, c: c).sim
            return zip(s, g).reduce(0) { $0 + $1.0 * $1.1 }
        }
        // Skip the zero row in the FD check: the map x/max(‖x‖, ε) is not differentiable there at the
        // scale of h; the analytic value there is dx̂/ε by definition.
        var dXcheck = dX
        for i in 0..<c { dXcheck[3 * c + i] = 0 }
        var xCheck = x
        necoFiniteDifference("cosine dX", x: &xCheck, analytic: dXcheck, samples: 40) { xv in
            var v = xv
            for i in 0..<c { v[3 * c + i] = 0 }
            return loss(v, r)
        }
        necoFiniteDifference("cosine dR", x: &r, analytic: dR, samples: 40) { loss(x, $0) }
        // The Float path agrees.
        let xf = x.map { Float($0) }, rf = r.map { Float($0) }
        var simF = [Float](repeating: 0, count: b * q * k)
        var a = [Float](repeating: 0, count: x.count), bb = [Float](repeating: 0, count: r.count)
        var n1 = [Float](repeating: 0, count: b * q), n2 = [Float](repeating: 0, count: b * k)
        CosineSimilarity.forward(sim: &simF, xHat: &a, xNorm: &n1, rHat: &bb, rNorm: &n2, x: xf, r: rf,
                                 batch: b, queries: q, keys: k, channels: c)
        necoAssertScaled(simF, fw.sim, 1e-6, "cosine Float vs Double")
    }

    // MARK: Cross-entropy

    /// The fused kernel's gradient equals the unfused chain (sort → CE backward → sort backward),
    /// and both match finite differences in Double.
    func testSortedCrossEntropy() throws {
        var rng = TestRNG(seed: 41)
        for (kind, relax, n, s) in [(SortingNetworkKind.bitonic, Relaxation.cauchy, 49, 100.0), (.oddEven, .logistic, 9, 8.0),
                                    (.bitonic, .gaussian, 5, 4.0)] {
            let teacher = try SoftSort(kind: kind, size: n, relaxation: relax, steepness: s)
            let student = try SoftSort(kind: kind, size: n, relaxation: relax, steepness: s * 0.7)
            let rows = 3
            let ts = rng.floats(rows * n).map { Double($0) }
            var ss = ts.map { $0 + 0.3 * Double(rng.uniform()) }
            let scale = 1.0 / Double(rows * n)
            var dFused = [Double](repeating: 0, count: rows * n)
            let lFused = NeCoLoss.sortedCrossEntropy(dStudentSim: &dFused, teacherSim: ts, studentSim: ss, rows: rows,
                                                     teacherSort: teacher, studentSort: student, scale: scale)
            // Unfused.
            var pt = [Double](repeating: 0, count: rows * n * n), ps = pt
            teacher.forward(permutations: &pt, sorted: nil, input: ts, rows: rows)
            student.forward(permutations: &ps, sorted: nil, input: ss, rows: rows)
            let l = NeCoLoss.crossEntropy(target: pt, prediction: ps, rows: rows, size: n, scale: scale)
            XCTAssertEqual(lFused, l, accuracy: 1e-13 * abs(l))
            var dP = [Double](repeating: 0, count: rows * n * n)
            NeCoLoss.crossEntropyBackward(dPrediction: &dP, target: pt, prediction: ps, rows: rows, size: n, scale: scale)
            var dChain = [Double](repeating: 0, count: rows * n)
            student.backward(dInput: &dChain, dPermutations: dP, dSorted: nil, input: ss, rows: rows)
            necoAssertScaled(dFused, dChain, 1e-12, "fused vs chain \(kind) \(relax)")
            necoFiniteDifference("CE \(kind.rawValue) \(relax.rawValue) n=\(n)", x: &ss, analytic: dFused, samples: 30) { sv in
                NeCoLoss.sortedCrossEntropy(dStudentSim: nil as UnsafeMutablePointer<Double>?, teacherSim: ts, studentSim: sv,
                                            rows: rows, teacherSort: teacher, studentSort: student, scale: scale)
            }
            // The CE gradient alone (∂ℓ/∂Ps = −scale·Pt/Ps) against finite differences.
            var psv = ps
            // Entries of Ps go down to ~1e-5 here: a smaller step keeps the truncation error of ln small.
            necoFiniteDifference("CE dPs \(relax.rawValue)", x: &psv, analytic: dP, samples: 20, h: 1e-9) { p in
                NeCoLoss.crossEntropy(target: pt, prediction: p, rows: rows, size: n, scale: scale)
            }
        }
    }

    // MARK: The whole loss vs the official formulation

    func testMatchesOfficialFormulation() throws {
        let fx = try Fixture("neco/loss.safetensors")
        for name in ["default", "oddeven_logistic"] {
            let meta = fx.metadata[name]!
            func value(_ key: String) -> String {
                let r = meta.split(separator: ",").first { $0.contains("\"\(key)\"") }!
                return String(r.split(separator: ":")[1]).filter { $0 != "\"" && $0 != "}" }
            }
            let b = Int(value("batch"))!, e = Int(value("dim"))!, patch = Int(value("patch"))!
            let gGrid = Int(value("global_size"))! / patch, lGrid = Int(value("local_size"))! / patch
            let kind = SortingNetworkKind(rawValue: value("network"))!
            let relax = Relaxation(rawValue: value("relaxation"))!
            let steep = Double(value("steepness"))!
            let sort = try SoftSort(kind: kind, size: 49, relaxation: relax, steepness: steep)
            let loss = try NeCoPairLoss(teacherSort: sort, studentSort: sort, patchSize: patch)
            let t = try fx.floats(name + ".teacher_global"), sg = try fx.floats(name + ".student_global")
            let sl = try fx.floats(name + ".student_local")
            let boxes = NeCoBoxes(batch: b, globalCrops: 2, crops: 6, anchor: try fx.floats(name + ".gc"),
                                  partner: try fx.floats(name + ".all"))
            let perms = try fx.file.ints(name + ".perms")
            var dg = [Float](repeating: 0, count: sg.count), dl = [Float](repeating: 0, count: sl.count)
            var pairs: [Double] = []
            var pair = 0
            let start = necoNow()
            let value = t.withUnsafeBufferPointer { tp in
                sg.withUnsafeBufferPointer { sgp in
                    sl.withUnsafeBufferPointer { slp in
                        dg.withUnsafeMutableBufferPointer { dgp in
                            dl.withUnsafeMutableBufferPointer { dlp in
                                loss(dStudentGlobal: NeCoMapGradients(base: dgp.baseAddress!),
                                     dStudentLocal: NeCoMapGradients(base: dlp.baseAddress!),
                                     teacherGlobal: NeCoMaps(base: tp.baseAddress!, crops: 2, grid: gGrid),
                                     studentGlobal: NeCoMaps(base: sgp.baseAddress!, crops: 2, grid: gGrid),
                                     studentLocal: NeCoMaps(base: slp.baseAddress!, crops: 4, grid: lGrid),
                                     dim: e, boxes: boxes,
                                     references: { _, _, tq, out in
                                         // Batch mode with the fixture's permutation of the pair.
                                         for r in 0..<(b * 49) {
                                             (out + r * e).update(from: tq + perms[pair * b * 49 + r] * e, count: e)
                                         }
                                         pair += 1
                                     },
                                     pairLosses: { _, _, l in pairs.append(l) })
                            }
                        }
                    }
                }
            }
            let elapsed = necoNow() - start
            let expected = Double(try fx.floats(name + ".loss")[0])
            let relLoss = abs(value - expected) / abs(expected)
            XCTAssertLessThanOrEqual(relLoss, NeCoTol.matrix, "\(name): loss \(value) vs \(expected)")
            let wp = necoAssertScaled(pairs, try fx.floats(name + ".pair_losses"), NeCoTol.matrix, name + " pair losses")
            let wg = necoAssertScaled(dg, try fx.floats(name + ".d_student_global"), NeCoTol.gradient, name + " dSg")
            let wl = necoAssertScaled(dl, try fx.floats(name + ".d_student_local"), NeCoTol.gradient, name + " dSl")
            print("  loss \(name): \(value) vs \(expected) (rel \(relLoss)); pairs \(wp); dSg \(wg); dSl \(wl); \(elapsed) s")
        }
    }

    /// The whole pair loop in Double against finite differences: ROI 3×3 (Q = 9), sorting size 9
    /// (bitonic, padded to 16), B = 2, E = 4, global grid 4 (56 px), local grid 2 (28 px).
    func testWholeLossFiniteDifferences() throws {
        var rng = TestRNG(seed: 51)
        let (b, e, gG, gL, patch) = (2, 4, 4, 2, 14)
        let sortT = try SoftSort(kind: .bitonic, size: 9, steepness: 30)
        let sortS = try SoftSort(kind: .bitonic, size: 9, steepness: 20)
        let loss = try NeCoPairLoss(teacherSort: sortT, studentSort: sortS, patchSize: patch, roiSize: 3)
        let t = rng.floats(2 * b * gG * gG * e).map { Double($0) }
        var sg = rng.floats(2 * b * gG * gG * e).map { Double($0) }
        var sl = rng.floats(4 * b * gL * gL * e).map { Double($0) }
        func box(_ size: Double) -> [Float] {
            let x1 = Double(rng.uniform() * 0.5 + 0.5) * size * 0.4, y1 = Double(rng.uniform() * 0.5 + 0.5) * size * 0.4
            let w = Double(rng.uniform() * 0.5 + 0.5) * size * 0.6, h = Double(rng.uniform() * 0.5 + 0.5) * size * 0.6
            return [Float(x1), Float(y1), Float(x1 + w), Float(y1 + h)]
        }
        var anchor: [Float] = [], partner: [Float] = []
        for _ in 0..<b { for _ in 0..<2 { for _ in 0..<6 { anchor += box(56) } } }
        for _ in 0..<b { for c in 0..<6 { for _ in 0..<2 { partner += box(c < 2 ? 56 : 28) } } }
        let boxes = NeCoBoxes(batch: b, globalCrops: 2, crops: 6, anchor: anchor, partner: partner)
        let perm = (0..<(b * 9)).map { ($0 * 7 + 3) % (b * 9) }
        func evaluate(_ sgv: [Double], _ slv: [Double], grads: Bool) -> (Double, [Double], [Double]) {
            var dg = [Double](repeating: 0, count: sgv.count), dl = [Double](repeating: 0, count: slv.count)
            let v = t.withUnsafeBufferPointer { tp in
                sgv.withUnsafeBufferPointer { sgp in
                    slv.withUnsafeBufferPointer { slp in
                        dg.withUnsafeMutableBufferPointer { dgp in
                            dl.withUnsafeMutableBufferPointer { dlp in
                                loss(dStudentGlobal: grads ? NeCoMapGradients(base: dgp.baseAddress!) : nil,
                                     dStudentLocal: grads ? NeCoMapGradients(base: dlp.baseAddress!) : nil,
                                     teacherGlobal: NeCoMaps(base: tp.baseAddress!, crops: 2, grid: gG),
                                     studentGlobal: NeCoMaps(base: sgp.baseAddress!, crops: 2, grid: gG),
                                     studentLocal: NeCoMaps(base: slp.baseAddress!, crops: 4, grid: gL),
                                     dim: e, boxes: boxes,
                                     references: { _, _, tq, out in
                                         for r in 0..<(b * 9) { (out + r * e).update(from: tq + perm[r] * e, count: e) }
                                     })
                            }
                        }
                    }
                }
            }
            return (v, dg, dl)
        }
        let (_, dg, dl) = evaluate(sg, sl, grads: true)
        necoFiniteDifference("NeCo loss dS_global", x: &sg, analytic: dg, samples: 40) { evaluate($0, sl, grads: false).0 }
        necoFiniteDifference("NeCo loss dS_local", x: &sl, analytic: dl, samples: 40) { evaluate(sg, $0, grads: false).0 }
    }
}
