import NecoCore
import NecoModel

/// Shape of NeCo's projection head (NECO-SPEC §2.5).
public struct HeadConfig: Sendable, Equatable {
    /// D, the backbone width.
    public var inDim: Int
    public var hiddenDim: Int
    public var outDim: Int
    /// Number of Linear layers (1: a single D → out Linear).
    public var layers: Int
    /// L2-normalise the output (NeCo: always).
    public var normalize: Bool

    public init(inDim: Int, hiddenDim: Int = 2048, outDim: Int = 256, layers: Int = 3, normalize: Bool = true) {
        self.inDim = inDim
        self.hiddenDim = hiddenDim
        self.outDim = outDim
        self.layers = layers
        self.normalize = normalize
    }

    /// The most parameters a head may have: 2^28 (1 GiB of floats; a trainer holds six such
    /// copies: student, teacher, gradient, two moments, and the activations). NeCo's head on
    /// ViT-g/14 has 7.8 M.
    public static let maxParameters = 1 << 28

    public func validate() throws {
        guard inDim >= 1, hiddenDim >= 1, outDim >= 1, layers >= 1, layers <= 16,
              inDim <= 65536, hiddenDim <= 65536, outDim <= 65536 else {
            throw NecoError.invalidArgument("projection head \(inDim) → \(hiddenDim) × \(layers) → \(outDim) is out of range")
        }
        // At most 16 layers of at most 65537 × 65536 values each: no overflow.
        let widths = [inDim] + Array(repeating: hiddenDim, count: layers - 1) + [outDim]
        let parameters = zip(widths, widths.dropFirst()).reduce(0) { $0 + ($1.0 + 1) * $1.1 }
        guard parameters <= Self.maxParameters else {
            throw NecoError.invalidArgument("projection head \(inDim) → \(hiddenDim) × \(layers) → \(outDim) has \(parameters) "
                                            + "parameters, beyond the limit of 2^28")
        }
    }
}

/// Offsets of the head's parameters in its own flat slab, with PyTorch names (NeCo's
/// `nn.Sequential`: Linear at even indices, GELU between): `projection_head.0.weight` (H, D),
/// `projection_head.0.bias` (H), `projection_head.2.*` (H, H), …, `projection_head.{2(L−1)}.*` (O, H).
public struct HeadLayout: Sendable {
    public struct LinearView: Sendable {
        public let weight: Int   // (outDim, inDim)
        public let bias: Int     // (outDim)
        public let inDim: Int
        public let outDim: Int
    }

    /// One named tensor (the counterpart of the backbone's `ParamSpec`).
    public struct Spec: Sendable, Equatable {
        public let name: String
        public let shape: [Int]
        public let offset: Int
        public var count: Int { shape.reduce(1, *) }
        /// AdamW decays the weights (≥ 2 dims), not the biases (NECO-SPEC §5.1).
        public var decays: Bool { shape.count >= 2 && !name.hasSuffix(".bias") }
    }

    public static let prefix = "projection_head."
    public let config: HeadConfig
    public let linears: [LinearView]
    public let specs: [Spec]
    public let total: Int

    public init(config c: HeadConfig) {
        self.config = c
        var specs: [Spec] = []
        var linears: [LinearView] = []
        var off = 0
        for l in 0..<c.layers {
            let inD = l == 0 ? c.inDim : c.hiddenDim
            let outD = l == c.layers - 1 ? c.outDim : c.hiddenDim
            let name = Self.prefix + "\(2 * l)."
            specs.append(Spec(name: name + "weight", shape: [outD, inD], offset: off))
            let w = off
            off += outD * inD
            specs.append(Spec(name: name + "bias", shape: [outD], offset: off))
            linears.append(LinearView(weight: w, bias: off, inDim: inD, outDim: outD))
            off += outD
        }
        self.specs = specs
        self.linears = linears
        self.total = off
    }
}

/// Saved tensors of one head forward over `rows` patch tokens (letters: D in, H hidden, O out).
///   input (rows, D)        the backbone patch tokens (copied in by the caller)
///   pre[l] (rows, H)       Linear l output before GELU, l = 0 ..< layers−1 (GELU outputs are recomputed)
///   out (rows, O)          the (normalised) embeddings
///   norms (rows)           ‖·‖ before normalisation
///   dOut (rows, O)         dL/d(out), filled by the loss
/// plus chunk scratch for the recomputations.
public final class HeadActivations: @unchecked Sendable {
    public let config: HeadConfig
    public let rows: Int
    public let input: Int, out: Int, norms: Int, dOut: Int
    public let pre: [Int]
    let scratchA: Int, scratchB: Int, scratchY: Int
    public let slab: FloatSlab

    /// Rows processed at once by the recomputations (bounds the scratch).
    public static let chunkRows = 1024

    public init(config c: HeadConfig, rows: Int) throws {
        try c.validate()
        self.config = c
        self.rows = rows
        let l = Self.layout(config: c, rows: rows)
        input = l.input; pre = l.pre; out = l.out; norms = l.norms; dOut = l.dOut
        scratchA = l.scratchA; scratchB = l.scratchB; scratchY = l.scratchY
        slab = try FloatSlab(count: l.total)
    }

    /// Bytes `init` would allocate for `rows` rows, without allocating.
    public static func byteCount(config c: HeadConfig, rows: Int) -> Int {
        layout(config: c, rows: rows).total * MemoryLayout<Float>.stride
    }

    /// Offsets (in floats) of the views, and the slab's size (`init`, `byteCount`).
    static func layout(config c: HeadConfig, rows: Int)
        -> (input: Int, pre: [Int], out: Int, norms: Int, dOut: Int, scratchA: Int, scratchB: Int, scratchY: Int, total: Int) {
        var total = 0
        func take(_ n: Int) -> Int { let o = total; total += n; return o }
        let input = take(rows * c.inDim)
        let pre = (0..<(c.layers - 1)).map { _ in take(rows * c.hiddenDim) }
        let out = take(rows * c.outDim)
        let norms = take(rows)
        let dOut = take(rows * c.outDim)
        let chunk = min(rows, chunkRows)
        let scratchA = take(chunk * c.hiddenDim)
        let scratchB = take(chunk * c.hiddenDim)
        let scratchY = take(chunk * c.outDim)
        return (input, pre, out, norms, dOut, scratchA, scratchB, scratchY, total)
    }
}

/// The projection head: D → H → … → H → O Linear layers with exact GELU between them, then
/// row-wise L2 normalisation (NECO-SPEC §2.5). Reference: NeCo `vit_v2.py` `projection_head`
/// and `forward_head`.
///
///     a₀ = x;  pre_l = a_l · W_lᵀ + b_l;  a_{l+1} = gelu(pre_l)   (l < L−1)
///     z = a_{L−1} · W_{L−1}ᵀ + b_{L−1};   out = z / max(‖z‖, 1e-12)
///
/// Backward (parameter gradients accumulate `+=` into the head part of the gradient slab; the
/// input gradient is written once):
///     dz = L2ᵀ(dOut);  dW_l += dpre_lᵀ · a_l;  db_l += Σ dpre_l;  da_l = dpre_l · W_l;
///     dpre_{l−1} = da_l ⊙ gelu'(pre_{l−1})
/// Work runs in chunks of `HeadActivations.chunkRows` rows (GELU outputs recomputed per chunk).
public final class ProjectionHead: @unchecked Sendable {
    public let layout: HeadLayout
    public let slab: FloatSlab
    public var config: HeadConfig { layout.config }
    public var count: Int { layout.total }

    public init(config: HeadConfig) throws {
        try config.validate()
        layout = HeadLayout(config: config)
        slab = try FloatSlab(count: layout.total)
    }

    /// NeCo's initialisation: weights truncated-normal (std 0.02, bounds ±2 absolute, i.e.
    /// effectively a plain normal), biases zero. Draws the weights in layer order.
    public func initialize(rng: inout NecoRNG) {
        for lin in layout.linears {
            let w = slab[lin.weight]
            for i in 0..<(lin.inDim * lin.outDim) { w[i] = rng.truncatedNormal(std: 0.02, low: -2, high: 2) }
            slab[lin.bias].update(repeating: 0, count: lin.outDim)
        }
    }

    /// Pointer to a named tensor, or nil.
    public func tensor(_ name: String) -> UnsafeMutableBufferPointer<Float>? {
        guard let s = layout.specs.first(where: { $0.name == name }) else { return nil }
        return UnsafeMutableBufferPointer(start: slab[s.offset], count: s.count)
    }

    /// Training forward over `rows` ≤ `acts.rows` rows of `acts.input`; writes `acts.out`.
    public func forwardTraining(_ acts: HeadActivations, rows: Int) {
        precondition(acts.config == config && rows <= acts.rows, "head activations do not fit")
        let c = config, a = acts.slab, p = slab
        let lins = layout.linears
        var r0 = 0
        while r0 < rows {
            let n = min(HeadActivations.chunkRows, rows - r0)
            var act = UnsafePointer(a[acts.input + r0 * c.inDim])
            for (l, lin) in lins.enumerated() {
                if l < lins.count - 1 {
                    let pre = a[acts.pre[l] + r0 * c.hiddenDim]
                    Linear.forward(out: pre, input: act, weight: p[lin.weight], bias: p[lin.bias], rows: n,
                                   inDim: lin.inDim, outDim: lin.outDim)
                    GELU.forward(out: a[acts.scratchA], input: pre, count: n * lin.outDim)
                    act = UnsafePointer(a[acts.scratchA])
                } else {
                    Linear.forward(out: a[acts.out + r0 * c.outDim], input: act, weight: p[lin.weight], bias: p[lin.bias],
                                   rows: n, inDim: lin.inDim, outDim: lin.outDim)
                }
            }
            let z = a[acts.out + r0 * c.outDim]
            if c.normalize {
                L2Normalize.forward(out: z, norms: a[acts.norms + r0], input: z, rows: n, dim: c.outDim)
            }
            r0 += n
        }
    }

    /// Backward of `forwardTraining` given `acts.dOut`. `grads` points at the head's part of the
    /// gradient slab (`layout` offsets); `dInput` (rows, D) is written (`=`, exactly once).
    public func backward(_ acts: HeadActivations, rows: Int, grads: UnsafeMutablePointer<Float>,
                         dInput: UnsafeMutablePointer<Float>) {
        precondition(acts.config == config && rows <= acts.rows, "head activations do not fit")
        let c = config, a = acts.slab, p = slab
        let lins = layout.linears
        let last = lins.count - 1
        var r0 = 0
        while r0 < rows {
            let n = min(HeadActivations.chunkRows, rows - r0)
            // out = normalize(z):  dz (n, O) into scratchY (written once)
            let dz = a[acts.scratchY]
            if c.normalize {
                dz.update(repeating: 0, count: n * c.outDim)
                L2Normalize.backward(dInput: dz, dOut: a[acts.dOut + r0 * c.outDim], out: a[acts.out + r0 * c.outDim],
                                     norms: a[acts.norms + r0], rows: n, dim: c.outDim)
            } else {
                dz.update(from: a[acts.dOut + r0 * c.outDim], count: n * c.outDim)
            }
            var dPre = dz
            var bufA = a[acts.scratchA], bufB = a[acts.scratchB]
            for l in stride(from: last, through: 0, by: -1) {
                let lin = lins[l]
                // Input of Linear l: x for l = 0, else gelu(pre_{l−1}) recomputed into bufA.
                let input: UnsafePointer<Float>
                if l == 0 {
                    input = UnsafePointer(a[acts.input + r0 * c.inDim])
                } else {
                    GELU.forward(out: bufA, input: a[acts.pre[l - 1] + r0 * c.hiddenDim], count: n * c.hiddenDim)
                    input = UnsafePointer(bufA)
                }
                // dW_l (out, in) += dPreᵀ · input;  db_l += Σ_rows dPre
                Gemm.gemm(out: grads + lin.weight, a: dPre, b: input, m: lin.outDim, n: lin.inDim, k: n,
                          transA: true, beta: 1)
                BranchResidual.columnSum(into: grads + lin.bias, dPre, rows: n, cols: lin.outDim)
                if l == 0 {
                    // dx (n, D) = dPre · W_0   [written once]
                    Gemm.gemm(out: dInput + r0 * c.inDim, a: dPre, b: p[lin.weight], m: n, n: lin.inDim, k: lin.outDim)
                } else {
                    // da_l (n, H) = dPre · W_l, over the recomputed activation (no longer needed)
                    Gemm.gemm(out: bufA, a: dPre, b: p[lin.weight], m: n, n: lin.inDim, k: lin.outDim)
                    // a_l = gelu(pre_{l−1}):  dpre_{l−1} = da_l ⊙ gelu'(pre_{l−1})
                    GELU.backwardInPlace(grad: bufA, input: a[acts.pre[l - 1] + r0 * c.hiddenDim], rows: n, cols: c.hiddenDim,
                                        columnSum: nil)
                    dPre = bufA
                    swap(&bufA, &bufB)
                }
            }
            r0 += n
        }
    }

    /// Inference forward (the teacher's): out (rows, O) from input (rows, D), chunked, nothing
    /// saved. `scratch` holds `inferenceScratchCount(rows:)` floats. Same arithmetic as
    /// `forwardTraining`.
    public func forward(out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, rows: Int,
                        scratch: UnsafeMutablePointer<Float>) {
        let c = config, p = slab
        let lins = layout.linears
        let chunk = min(rows, HeadActivations.chunkRows)
        let bufA = scratch, bufB = scratch + chunk * c.hiddenDim
        var r0 = 0
        while r0 < rows {
            let n = min(HeadActivations.chunkRows, rows - r0)
            var act = input + r0 * c.inDim
            for (l, lin) in lins.enumerated() {
                if l < lins.count - 1 {
                    // pre → bufA, gelu(pre) → bufB (out of place: an in-place GELU does not vectorise)
                    Linear.forward(out: bufA, input: act, weight: p[lin.weight], bias: p[lin.bias], rows: n,
                                   inDim: lin.inDim, outDim: lin.outDim)
                    GELU.forward(out: bufB, input: bufA, count: n * lin.outDim)
                    act = UnsafePointer(bufB)
                } else {
                    Linear.forward(out: out + r0 * c.outDim, input: act, weight: p[lin.weight], bias: p[lin.bias],
                                   rows: n, inDim: lin.inDim, outDim: lin.outDim)
                }
            }
            if c.normalize {
                L2Normalize.forward(out: out + r0 * c.outDim, norms: nil, input: out + r0 * c.outDim, rows: n,
                                    dim: c.outDim)
            }
            r0 += n
        }
    }

    /// Scratch floats `forward(out:input:rows:scratch:)` needs.
    public func inferenceScratchCount(rows: Int) -> Int { 2 * min(rows, HeadActivations.chunkRows) * config.hiddenDim }
}
