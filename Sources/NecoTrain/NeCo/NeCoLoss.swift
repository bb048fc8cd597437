import NecoCore

// The NeCo loss, NECO-SPEC §4.1–4.7 and pitfalls P2–P9: ROI-aligned teacher and student patch
// features of every (global anchor g, partner crop v) pair, cosine similarities to reference
// patches, soft permutation matrices from a differentiable sorting network, and the
// cross-entropy of the student's matrices against the teacher's (no-grad) matrices.
//
// Dimension letters: B images, nG global crops (2), nC crops in all (6), G global grid (16 at
// 224 px, 37 at 518 px), g local grid (7 at 98 px), E embedding width (256), Q = PH·PW query
// cells per image (49), K references per image (= n, the sorting size, 49).
//
// Gradient convention: everything accumulates (`+=`) into the student feature-map gradients.

/// Overlap boxes of a batch in pixels (x1, y1, x2, y2), NECO-SPEC §3.4–3.5:
/// `anchor[b, g, c]` is I(g, c) in global crop g's output frame (NeCo's `gc`, (B, nG, nC, 4)),
/// `partner[b, c, g]` is I(g, c) in crop c's own output frame (NeCo's `all`, (B, nC, nG, 4)).
public struct NeCoBoxes: Sendable, Equatable {
    public var batch: Int
    public var globalCrops: Int
    public var crops: Int
    /// (B, nG, nC, 4)
    public var anchor: [Float]
    /// (B, nC, nG, 4)
    public var partner: [Float]

    public init(batch: Int, globalCrops: Int, crops: Int, anchor: [Float], partner: [Float]) {
        precondition(anchor.count == batch * globalCrops * crops * 4 && partner.count == anchor.count,
                     "NeCoBoxes: arrays must hold B·nG·nC·4 values")
        self.batch = batch
        self.globalCrops = globalCrops
        self.crops = crops
        self.anchor = anchor
        self.partner = partner
    }

    /// I(g, c) of image b in g's frame.
    public func anchorBox(image b: Int, anchor g: Int, crop c: Int) -> (Float, Float, Float, Float) {
        let o = ((b * globalCrops + g) * crops + c) * 4
        return (anchor[o], anchor[o + 1], anchor[o + 2], anchor[o + 3])
    }

    /// I(g, c) of image b in c's frame.
    public func partnerBox(image b: Int, crop c: Int, anchor g: Int) -> (Float, Float, Float, Float) {
        let o = ((b * crops + c) * globalCrops + g) * 4
        return (partner[o], partner[o + 1], partner[o + 2], partner[o + 3])
    }
}

/// The loss kernels and the pair loop.
public enum NeCoLoss {
    // MARK: - Cross-entropy between soft permutation matrices

    /// Unfused cross-entropy, the reference for the fused kernel:
    /// ```
    /// ℓ = −scale · Σ_r Σ_{i,j} Pt[r, i, j] · ln Ps[r, i, j]
    /// ```
    /// NeCo uses scale = 1/(B·Q·K) (a mean over images, query cells and references of the sum over
    /// ranks). No epsilon, no temperature (§4.6). Returns ℓ (summed in Double).
    /// Shapes: target, prediction (R, n, n).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func crossEntropy<T: NeCoScalar>(target: UnsafePointer<T>, prediction: UnsafePointer<T>, rows: Int,
                                                  size n: Int, scale: Double) -> Double {
        var acc = 0.0
        for k in 0..<(rows * n * n) { acc += Double(target[k] * T.necoLog(prediction[k])) }
        return -scale * acc
    }

    /// dPrediction (R, n, n) += ∂ℓ/∂Ps = −scale · Pt / Ps.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func crossEntropyBackward<T: NeCoScalar>(dPrediction: UnsafeMutablePointer<T>, target: UnsafePointer<T>,
                                                          prediction: UnsafePointer<T>, rows: Int, size n: Int, scale: Double) {
        let s = T(necoParameter: scale)
        for k in 0..<(rows * n * n) { dPrediction[k] += -s * target[k] / prediction[k] }
    }

    /// Fused per-row kernel: teacher soft sort (no tape), student soft sort (with tape),
    /// cross-entropy and the adjoint back to the student similarities, one row at a time, rows
    /// in parallel. No (R, n, n) matrix is ever materialised.
    ///
    /// ```
    /// Pt[r] = X(teacherSim[r]),  Ps[r] = X(studentSim[r])
    /// ℓ = −scale · Σ_r Σ_{i,j} Pt[r,i,j] · ln max(Ps[r,i,j], logFloor)
    /// dStudentSim[r] += (∂X/∂sim)ᵀ · (−scale · Pt[r] / Ps[r])
    /// ```
    /// `logFloor` = 0 (the default) is the reference behaviour (no clamp, P3); with a floor > 0,
    /// clamped entries get zero gradient.
    /// Returns ℓ; per-row sums are combined in row order in Double, so the result does not depend
    /// on the thread count.
    /// Shapes: teacherSim, studentSim, dStudentSim (R, n).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func sortedCrossEntropy<T: NeCoScalar>(dStudentSim: UnsafeMutablePointer<T>?, teacherSim: UnsafePointer<T>,
                                                        studentSim: UnsafePointer<T>, rows: Int, teacherSort: SoftSort,
                                                        studentSort: SoftSort, scale: Double, logFloor: Double = 0) -> Double {
        precondition(teacherSort.size == studentSort.size, "teacher and student sorting networks must have the same size")
        let n = studentSort.size, st = studentSort.stride, tc = studentSort.tapeCount
        let s = T(necoParameter: scale), floor = T(necoParameter: logFloor)
        var partial = [Double](repeating: 0, count: rows)
        partial.withUnsafeMutableBufferPointer { pp in
            let part = pp.baseAddress!
            Threads.parallelChunks(rows) { _, start, end in
                let xt = UnsafeMutablePointer<T>.allocate(capacity: n)
                let wt = UnsafeMutablePointer<T>.allocate(capacity: n * st)
                let xs = UnsafeMutablePointer<T>.allocate(capacity: n)
                let ws = UnsafeMutablePointer<T>.allocate(capacity: n * st)
                let gw = UnsafeMutablePointer<T>.allocate(capacity: n * st)
                let tape = UnsafeMutablePointer<T>.allocate(capacity: max(tc, 1))
                defer {
                    xt.deallocate(); wt.deallocate(); xs.deallocate(); ws.deallocate(); gw.deallocate(); tape.deallocate()
                }
                for r in start..<end {
                    xt.update(from: teacherSim + r * n, count: n)
                    teacherSort.forwardRow(values: xt, wires: wt, tape: nil)
                    xs.update(from: studentSim + r * n, count: n)
                    studentSort.forwardRow(values: xs, wires: ws, tape: dStudentSim == nil ? nil : tape)
                    var acc = 0.0
                    if dStudentSim != nil { gw.update(repeating: 0, count: n * st) }
                    for j in 0..<n {
                        let pt = wt + j * st, ps = ws + j * st, g = gw + j * st
                        var rowAcc: T = 0
                        for i in 0..<n {
                            let p = ps[i]
                            if p >= floor {
                                rowAcc += pt[i] * T.necoLog(p)
                                if dStudentSim != nil { g[i] = -s * pt[i] / p }
                            } else {
                                rowAcc += pt[i] * T.necoLog(floor)
                            }
                        }
                        acc += Double(rowAcc)
                    }
                    part[r] = -acc
                    if let dStudentSim {
                        xs.update(repeating: 0, count: n)
                        studentSort.backwardRow(dValues: xs, dWires: gw, tape: tape)
                        let dst = dStudentSim + r * n
                        for i in 0..<n { dst[i] += xs[i] }
                    }
                }
            }
        }
        var total = 0.0
        for v in partial { total += v }
        return scale * total
    }

    // MARK: - One pair

    /// Scratch of one pair, (B, Q or K, E) buffers, allocated once per loss call.
    @usableFromInline
    final class PairScratch<T: NeCoScalar> {
        let tq, sq, refs, tHat, sHat, rHat, dSq: UnsafeMutablePointer<T>  // (B, 49, E)
        let tNorm, sNorm, rNorm: UnsafeMutablePointer<T>                 // (B, 49)
        let tSim, sSim, dSim: UnsafeMutablePointer<T>                    // (B, Q, K)
        let big: Int, small: Int, sims: Int

        init(batch: Int, queries: Int, keys: Int, dim: Int) {
            big = batch * max(queries, keys) * dim
            small = batch * max(queries, keys)
            sims = batch * queries * keys
            func alloc(_ n: Int) -> UnsafeMutablePointer<T> {
                let p = UnsafeMutablePointer<T>.allocate(capacity: max(n, 1))
                p.initialize(repeating: 0, count: max(n, 1))
                return p
            }
            tq = alloc(big); sq = alloc(big); refs = alloc(big); tHat = alloc(big); sHat = alloc(big)
            rHat = alloc(big); dSq = alloc(big)
            tNorm = alloc(small); sNorm = alloc(small); rNorm = alloc(small)
            tSim = alloc(sims); sSim = alloc(sims); dSim = alloc(sims)
        }

        deinit {
            for p in [tq, sq, refs, tHat, sHat, rHat, dSq, tNorm, sNorm, rNorm, tSim, sSim, dSim] { p.deallocate() }
        }
    }

    /// The loss of one pair from its ROI features and references:
    /// ```
    /// Pt = X(cos(Tq, R)) (no grad),  Ps = X(cos(Sq, R))
    /// ℓ(g, v) = −weight/(B·Q·K) · Σ_{b,q,i,j} Pt·ln Ps ;   dSq += ∂ℓ/∂Sq
    /// ```
    /// Shapes: tq, sq, dSq (B, Q, E); refs (B, K, E). Returns weight·ℓ(g, v).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func pairLoss<T: NeCoScalar>(dSq: UnsafeMutablePointer<T>?, tq: UnsafePointer<T>, sq: UnsafePointer<T>,
                                              refs: UnsafePointer<T>, batch: Int, queries: Int, dim: Int,
                                              teacherSort: SoftSort, studentSort: SoftSort, weight: Double,
                                              logFloor: Double = 0) -> Double {
        let keys = studentSort.size
        let ws = PairScratch<T>(batch: batch, queries: queries, keys: keys, dim: dim)
        return pairLoss(dSq: dSq, tq: tq, sq: sq, refs: refs, batch: batch, queries: queries, dim: dim,
                        teacherSort: teacherSort, studentSort: studentSort, weight: weight, logFloor: logFloor, scratch: ws)
    }

    static func pairLoss<T: NeCoScalar>(dSq: UnsafeMutablePointer<T>?, tq: UnsafePointer<T>, sq: UnsafePointer<T>,
                                       refs: UnsafePointer<T>, batch: Int, queries: Int, dim: Int,
                                       teacherSort: SoftSort, studentSort: SoftSort, weight: Double, logFloor: Double,
                                       scratch ws: PairScratch<T>) -> Double {
        let keys = studentSort.size
        CosineSimilarity.forward(sim: ws.tSim, xHat: ws.tHat, xNorm: ws.tNorm, rHat: ws.rHat, rNorm: ws.rNorm,
                                 x: tq, r: refs, batch: batch, queries: queries, keys: keys, channels: dim)
        CosineSimilarity.forward(sim: ws.sSim, xHat: ws.sHat, xNorm: ws.sNorm, rHat: ws.rHat, rNorm: ws.rNorm,
                                 x: sq, r: refs, batch: batch, queries: queries, keys: keys, channels: dim)
        let rows = batch * queries
        let scale = weight / Double(rows * keys)
        if let dSq {
            ws.dSim.update(repeating: 0, count: rows * keys)
            let loss = sortedCrossEntropy(dStudentSim: ws.dSim, teacherSim: ws.tSim, studentSim: ws.sSim, rows: rows,
                                          teacherSort: teacherSort, studentSort: studentSort, scale: scale, logFloor: logFloor)
            CosineSimilarity.backward(dX: dSq, dR: nil, dSim: ws.dSim, xHat: ws.sHat, xNorm: ws.sNorm, rHat: ws.rHat,
                                      rNorm: ws.rNorm, batch: batch, queries: queries, keys: keys, channels: dim)
            return loss
        }
        return sortedCrossEntropy(dStudentSim: nil as UnsafeMutablePointer<T>?, teacherSim: ws.tSim, studentSim: ws.sSim,
                                  rows: rows, teacherSort: teacherSort, studentSort: studentSort, scale: scale,
                                  logFloor: logFloor)
    }
}

/// Feature maps of one group of crops, channel-last: (crops·B, grid, grid, E), crop-major
/// (rows `[crop0 b0 … b(B−1), crop1 b0 …]`, NECO-SPEC §3.5). The trainer's `EmbeddingView`s.
public struct NeCoMaps<T: NeCoScalar> {
    public var base: UnsafePointer<T>
    public var crops: Int
    public var grid: Int
    public init(base: UnsafePointer<T>, crops: Int, grid: Int) {
        self.base = base
        self.crops = crops
        self.grid = grid
    }
}

/// Gradient buffers matching `NeCoMaps` (accumulated into).
public struct NeCoMapGradients<T: NeCoScalar> {
    public var base: UnsafeMutablePointer<T>
    public init(base: UnsafeMutablePointer<T>) { self.base = base }
}

/// The full NeCo loss over the (g, v) pairs of a batch, NECO-SPEC §4.6–4.7:
/// ```
/// for g in 0..<nG, v in 0..<nC, v ≠ g:
///   Tq = ROI(T[g],  anchor[:, g, v] / p)        (B, Q, E)
///   Sq = ROI(S[v],  partner[:, v, g] / p)       (B, Q, E)   (S[v] global or local)
///   R  = references(g, v, Tq)                   (B, K, E)
///   ℓ(g, v) = −1/(B·Q·K) Σ Pt·ln Ps
/// L = (1/nG) Σ_g (1/(nC − 1)) Σ_v ℓ(g, v)
/// ```
/// The pairs run one at a time (forward and backward), so memory stays at a few (B, 49, E)
/// buffers; gradients flow through the cosine and ROI Align back into the student maps.
public struct NeCoPairLoss: Sendable {
    public var roi: ROIAlign
    public var teacherSort: SoftSort
    public var studentSort: SoftSort
    /// Boxes are divided by this (14 for ViT-*/14) to reach patch-grid units.
    public var patchSize: Int
    /// 0 = no clamp inside the log (the reference, P3).
    public var logFloor: Double

    public init(teacherSort: SoftSort, studentSort: SoftSort, patchSize: Int, roiSize: Int = 7, logFloor: Double = 0) throws {
        guard teacherSort.size == studentSort.size else {
            throw NecoError.invalidArgument("teacher and student sorting networks differ in size")
        }
        guard patchSize >= 1 else { throw NecoError.invalidArgument("patch size must be ≥ 1") }
        guard roiSize >= 1 else { throw NecoError.invalidArgument("ROI size must be ≥ 1") }
        guard logFloor >= 0, logFloor < 1 else { throw NecoError.invalidArgument("log floor must be in [0, 1)") }
        roi = ROIAlign(pooledHeight: roiSize, pooledWidth: roiSize)
        self.teacherSort = teacherSort
        self.studentSort = studentSort
        self.patchSize = patchSize
        self.logFloor = logFloor
    }

    /// Q, query cells per image.
    public var queryCount: Int { roi.pooledHeight * roi.pooledWidth }
    /// K, references per image (the sorting size).
    public var referenceCount: Int { studentSort.size }

    /// ROI boxes of one pair in patch units: (teacher boxes on T[g], student boxes on S[v]).
    public func pairROIs<T: NeCoScalar>(boxes: NeCoBoxes, anchor g: Int, partner v: Int) -> ([ROI<T>], [ROI<T>]) {
        let b = boxes.batch, nG = boxes.globalCrops
        let p = T(patchSize)
        var teacher: [ROI<T>] = [], student: [ROI<T>] = []
        for i in 0..<b {
            let a = boxes.anchorBox(image: i, anchor: g, crop: v)
            teacher.append(ROI(image: g * b + i, x1: T(a.0) / p, y1: T(a.1) / p, x2: T(a.2) / p, y2: T(a.3) / p))
            let s = boxes.partnerBox(image: i, crop: v, anchor: g)
            let image = v < nG ? v * b + i : (v - nG) * b + i
            student.append(ROI(image: image, x1: T(s.0) / p, y1: T(s.1) / p, x2: T(s.2) / p, y2: T(s.3) / p))
        }
        return (teacher, student)
    }

    /// L over all pairs, and dL/d(student maps) accumulated into `dStudentGlobal` / `dStudentLocal`.
    ///
    /// - Parameters:
    ///   - teacherGlobal: (nG·B, G, G, E) teacher embeddings of the global crops (constants).
    ///   - studentGlobal: (nG·B, G, G, E); studentLocal: ((nC − nG)·B, g, g, E) or nil when nC = nG.
    ///   - references: called once per pair, in pair order (g-major, v ascending), with (g, v, Tq
    ///     (B, Q, E)) and an output buffer (B, K, E) to fill.
    ///   - pairLosses: optional sink for the weighted ℓ(g, v) of each pair, in pair order.
    /// - Returns: L.
    public func callAsFunction<T: NeCoScalar>(
        dStudentGlobal: NeCoMapGradients<T>?, dStudentLocal: NeCoMapGradients<T>?,
        teacherGlobal: NeCoMaps<T>, studentGlobal: NeCoMaps<T>, studentLocal: NeCoMaps<T>?,
        dim: Int, boxes: NeCoBoxes,
        references: (_ anchor: Int, _ partner: Int, _ teacherQueries: UnsafePointer<T>, _ out: UnsafeMutablePointer<T>) -> Void,
        pairLosses: ((_ anchor: Int, _ partner: Int, _ loss: Double) -> Void)? = nil
    ) -> Double {
        let b = boxes.batch, nG = boxes.globalCrops, nC = boxes.crops
        precondition(nG >= 1 && nC > nG || (nC == nG && nG >= 2), "NeCoPairLoss: need at least one partner per anchor")
        precondition(teacherGlobal.crops == nG && studentGlobal.crops == nG, "NeCoPairLoss: global maps must hold nG crops")
        precondition(nC == nG || studentLocal?.crops == nC - nG, "NeCoPairLoss: local maps must hold nC − nG crops")
        let q = queryCount, k = referenceCount
        let ws = NeCoLoss.PairScratch<T>(batch: b, queries: q, keys: k, dim: dim)
        let weight = 1 / Double(nG * (nC - 1))
        var total = 0.0
        for g in 0..<nG {
            for v in 0..<nC where v != g {
                let (tRois, sRois): ([ROI<T>], [ROI<T>]) = pairROIs(boxes: boxes, anchor: g, partner: v)
                let tg = teacherGlobal.grid
                roi.forward(out: ws.tq, features: teacherGlobal.base, rois: tRois, images: nG * b, height: tg, width: tg,
                            channels: dim)
                let local = v >= nG
                let maps = local ? studentLocal! : studentGlobal
                let grads = local ? dStudentLocal : dStudentGlobal
                let images = maps.crops * b
                roi.forward(out: ws.sq, features: maps.base, rois: sRois, images: images, height: maps.grid,
                            width: maps.grid, channels: dim)
                references(g, v, UnsafePointer(ws.tq), ws.refs)
                if grads != nil { ws.dSq.update(repeating: 0, count: b * q * dim) }
                let l = NeCoLoss.pairLoss(dSq: grads == nil ? nil : ws.dSq, tq: ws.tq, sq: ws.sq, refs: ws.refs, batch: b,
                                          queries: q, dim: dim, teacherSort: teacherSort, studentSort: studentSort,
                                          weight: weight, logFloor: logFloor, scratch: ws)
                if let grads {
                    roi.backward(dFeatures: grads.base, dOut: ws.dSq, rois: sRois, images: images, height: maps.grid,
                                 width: maps.grid, channels: dim)
                }
                pairLosses?(g, v, l)
                total += l
            }
        }
        return total
    }
}
