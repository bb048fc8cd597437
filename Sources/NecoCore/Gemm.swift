import COpenBLAS
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CNecoKernels

/// The one GEMM wrapper of libneco, over OpenBLAS `cblas_sgemm`, row-major.
///
///     out (M, N) = alpha · op(a) · op(b) + beta · out
///
/// `op(a)` is (M, K): `a` is stored (M, K) when `transA == false`, (K, M) when true.
/// `op(b)` is (K, N): `b` is stored (K, N) when `transB == false`, (N, K) when true.
/// PyTorch's `Linear` weight (out, in) gives `y = x · Wᵀ`: `gemm(out: y, a: x, b: w, transB: true)`.
/// Leading dimensions default to the dense row length; pass them to address sub-matrices (for
/// example one head's columns inside a fused QKV buffer).
public enum Gemm {
    /// Products smaller than this many multiply-adds run on the calling thread.
    public static let parallelThreshold = 1 << 21

    /// - Parameters:
    ///   - parallel: split the product over `Threads.count` workers (row blocks of `out` when it
    ///     has at least as many rows as columns, else column blocks). Pass `false` inside a
    ///     parallel region.
    ///   - bias: (N) added to every row: out = alpha · op(a) · op(b) + bias (`beta` is then
    ///     ignored); each worker fills its own block, so the bias costs no pass of its own.
    @inlinable
    public static func gemm(
        out: UnsafeMutablePointer<Float>, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
        m: Int, n: Int, k: Int,
        transA: Bool = false, transB: Bool = false,
        alpha: Float = 1, beta: Float = 0,
        lda: Int? = nil, ldb: Int? = nil, ldc: Int? = nil, parallel: Bool = true,
        bias: UnsafePointer<Float>? = nil
    ) {
        precondition(m >= 0 && n >= 0 && k >= 0 && m <= Int(Int32.max) && n <= Int(Int32.max) && k <= Int(Int32.max),
                     "gemm: dims out of range")
        if m == 0 || n == 0 { return }
        let lda = lda ?? (transA ? m : k)
        let ldb = ldb ?? (transB ? k : n)
        let ldc = ldc ?? n
        let workers = Threads.count
        if !parallel || workers <= 1 || m * n * k < parallelThreshold {
            product(out, a, b, m, n, k, transA, transB, alpha, beta, lda, ldb, ldc, bias)
            return
        }
        // Each worker packs its own share of one operand and all of the other: split the longer
        // side, so the operand every worker packs in full is the smaller one (at batch 1 the
        // activations, 261 rows, rather than a 1152-row weight). Shares are as equal as the
        // granularity allows (4 rows, 16 columns), so two workers finish together.
        if m >= n {
            // Row blocks: out[i0..<i1, :] = op(a)[i0..<i1, :] · op(b).
            let block = ((m + workers - 1) / workers + 3) / 4 * 4
            let parts = (m + block - 1) / block
            Threads.parallelFor(parts) { s, e in
                for p in s..<e {
                    let i0 = p * block, rows = min(block, m - i0)
                    let ap = transA ? a + i0 : a + i0 * lda
                    product(out + i0 * ldc, ap, b, rows, n, k, transA, transB, alpha, beta, lda, ldb, ldc, bias)
                }
            }
        } else {
            // Column blocks: out[:, j0..<j1] = op(a) · op(b)[:, j0..<j1].
            let block = ((n + workers - 1) / workers + 15) / 16 * 16
            let parts = (n + block - 1) / block
            Threads.parallelFor(parts) { s, e in
                for p in s..<e {
                    let j0 = p * block, cols = min(block, n - j0)
                    let bp = transB ? b + j0 * ldb : b + j0
                    product(out + j0, a, bp, m, cols, k, transA, transB, alpha, beta, lda, ldb, ldc, bias.map { $0 + j0 })
                }
            }
        }
    }

    /// One worker's block: with a bias, `out` (m, n) is first filled with it row by row and the
    /// product accumulates onto it (beta = 1), in the same pass over the block the product makes
    /// (adding it after a beta = 0 product would cost two: OpenBLAS clears `out` in a pass of its
    /// own when beta ≠ 1).
    @usableFromInline @inline(__always)
    static func product(_ out: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                      _ m: Int, _ n: Int, _ k: Int, _ transA: Bool, _ transB: Bool, _ alpha: Float, _ beta: Float,
                      _ lda: Int, _ ldb: Int, _ ldc: Int, _ bias: UnsafePointer<Float>?) {
        if let bias {
            for r in 0..<m { (out + r * ldc).update(from: bias, count: n) }
            sgemm(out, a, b, m, n, k, transA, transB, alpha, 1, lda, ldb, ldc)
        } else {
            sgemm(out, a, b, m, n, k, transA, transB, alpha, beta, lda, ldb, ldc)
        }
    }

    @usableFromInline @inline(__always)
    static func sgemm(_ out: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                      _ m: Int, _ n: Int, _ k: Int, _ transA: Bool, _ transB: Bool, _ alpha: Float, _ beta: Float,
                      _ lda: Int, _ ldb: Int, _ ldc: Int) {
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, out, Int32(ldc))
    }

    /// Naive triple loop with the same contract as `gemm`, accumulating in Double.
    /// The algorithmic reference for tests; never used on a hot path.
    public static func gemmReference(
        out: UnsafeMutablePointer<Float>, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
        m: Int, n: Int, k: Int,
        transA: Bool = false, transB: Bool = false,
        alpha: Float = 1, beta: Float = 0,
        lda: Int? = nil, ldb: Int? = nil, ldc: Int? = nil
    ) {
        let lda = lda ?? (transA ? m : k)
        let ldb = ldb ?? (transB ? k : n)
        let ldc = ldc ?? n
        for i in 0..<m {
            for j in 0..<n {
                var acc: Double = 0
                for p in 0..<k {
                    let av = transA ? a[p * lda + i] : a[i * lda + p]
                    let bv = transB ? b[j * ldb + p] : b[p * ldb + j]
                    acc += Double(av) * Double(bv)
                }
                let prev: Float = beta == 0 ? 0 : beta * out[i * ldc + j]
                out[i * ldc + j] = Float(Double(alpha) * acc) + prev
            }
        }
    }
}

/// A Linear layer's weight W (outDim, inDim), packed once for `Gemm.linear`
/// (`nk_gemm_pack_weights`: panels of 16 output features, each (inDim, 16); the same layout on every
/// CPU path). Keeps a pointer to the unpacked weight, which must outlive it and not change: the
/// packed copy is a snapshot.
public final class PackedWeight: @unchecked Sendable {
    public let outDim: Int
    public let inDim: Int
    /// The weight it was packed from, (outDim, inDim).
    public let source: UnsafePointer<Float>
    @usableFromInline let packed: UnsafeMutablePointer<Float>
    /// Bytes of the packed copy.
    public let bytes: Int

    /// - Throws: `.outOfMemory` when the packed copy cannot be allocated.
    public init(_ weight: UnsafePointer<Float>, outDim: Int, inDim: Int) throws {
        let count = nk_gemm_packed_floats(outDim, inDim)
        guard outDim >= 1, inDim >= 1, count > 0 else {
            throw NecoError.shape("packed weight (\(outDim), \(inDim)) out of range")
        }
        self.outDim = outDim
        self.inDim = inDim
        self.source = weight
        packed = try Memory.allocate(count, of: Float.self, "packed weight (\(outDim), \(inDim))")
        bytes = count * MemoryLayout<Float>.stride
        nk_gemm_pack_weights(packed, weight, outDim, inDim)
    }

    /// Packs `source` again (after its values changed), into the same memory. `source` must hold
    /// the weight (not released pages: `ViTModel.packWeights` makes new copies instead).
    public func refresh() { nk_gemm_pack_weights(packed, source, outDim, inDim) }

    /// Writes the weight back into `source` from the packed copy (exact: packing only moves values),
    /// after its memory was released (`Memory.releasePages`).
    public func restoreSource() { nk_gemm_unpack_weights(UnsafeMutablePointer(mutating: source), packed, outDim, inDim) }

    /// The packed copy, as `Gemm.linear` reads it.
    public var panels: PackedPanels { PackedPanels(base: packed, outDim: outDim, inDim: inDim) }

    deinit { free(packed) }
}

/// A weight W (outDim, inDim) in the packed kernel's layout (panels of 16 output features, each
/// (inDim, 16)), in memory someone else owns: a `PackedWeight`'s copy, or a buffer packed just
/// before the product (`Gemm.pack`: training, whose weights change every step).
public struct PackedPanels {
    public let base: UnsafePointer<Float>
    public let outDim: Int
    public let inDim: Int

    /// `base` holds (outDim + 15) / 16 panels of (inDim, 16) floats; the first panels of a wider
    /// weight's copy are a packed weight of their own.
    public init(base: UnsafePointer<Float>, outDim: Int, inDim: Int) {
        self.base = base
        self.outDim = outDim
        self.inDim = inDim
    }
}

extension Gemm {
    /// What `linear` applies to each output as it stores it.
    public enum Epilogue: Int32, Sendable {
        case none = 0
        /// The exact (erf) GELU, the same function as `GELU.forward`.
        case gelu = 1
        /// out = residual + γ ⊙ z (z = input · Wᵀ + bias; residual + z without γ): the end of a
        /// residual branch with LayerScale, the same arithmetic as `BranchResidual.forward` with a
        /// sample scale of 1 (product and sum each rounded). Needs `residual` (`linear`'s argument).
        case residual = 2
    }

    /// Floats `pack` writes for an (outDim, inDim) weight, or nil when that is beyond any buffer.
    public static func packedCount(outDim: Int, inDim: Int) -> Int? {
        let n = nk_gemm_packed_floats(outDim, inDim)
        return outDim >= 1 && inDim >= 1 && n > 0 ? n : nil
    }

    /// Packs W (outDim, inDim) into `buffer` (`packedCount` floats) for `linear`, the panels split
    /// among the workers; with `transposed`, `weight` is Wᵀ, (inDim, outDim) row-major, so that a
    /// Linear's input gradient dX (rows, in) = dY (rows, out) · W_lin (out, in) is
    /// `linear(input: dY, weight: pack(W_lin, outDim: in, inDim: out, transposed: true))`.
    /// Packing only moves values: the product is the same as with a `PackedWeight` of W.
    public static func pack(_ weight: UnsafePointer<Float>, outDim: Int, inDim: Int, transposed: Bool = false,
                            into buffer: UnsafeMutablePointer<Float>, parallel: Bool = true) -> PackedPanels {
        let panels = (outDim + 15) / 16
        // ~16·inDim floats per panel: at least ~64 K floats per worker's share.
        let minChunk = max(1, 4096 / max(inDim, 1))
        if parallel {
            Threads.parallelFor(panels, minChunk: minChunk) { s, e in
                nk_gemm_pack_panels(buffer, weight, outDim, inDim, s, e, transposed ? 1 : 0)
            }
        } else {
            nk_gemm_pack_panels(buffer, weight, outDim, inDim, 0, panels, transposed ? 1 : 0)
        }
        return PackedPanels(base: buffer, outDim: outDim, inDim: inDim)
    }

    /// `linear` on a `PackedWeight`'s copy.
    @inlinable
    public static func linear(out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, weight: PackedWeight,
                              bias: UnsafePointer<Float>?, rows: Int, epilogue: Epilogue = .none,
                              residual: UnsafePointer<Float>? = nil, layerScale: UnsafePointer<Float>? = nil,
                              ldOut: Int? = nil, parallel: Bool = true) {
        linear(out: out, input: input, weight: weight.panels, bias: bias, rows: rows, epilogue: epilogue,
               residual: residual, layerScale: layerScale, ldOut: ldOut, parallel: parallel)
    }

    /// out (rows, outDim) = epilogue(input (rows, inDim) · Wᵀ + bias) with W packed (`PackedWeight`
    /// once, or `pack` per call): libneco's own kernel (CNecoKernels `nk_gemm_linear`) on the active
    /// CPU path.
    ///
    /// Each output element is one chain of fused multiply-adds in k order from its bias, so the
    /// result is the same for any thread count (the split only decides who computes which
    /// element). With at least two row blocks (168 rows each) per worker, chunks of rows go to
    /// whichever worker is free (`Threads.parallelDynamic`). With fewer (batch 1), each worker
    /// takes the same number of whole row tiles, and the rows left over (at most a tile per worker
    /// plus a partial one) are split into 16-column panels among all of them: equal work, each
    /// worker streaming the weight once, and reading and writing the rows the row-parallel kernels
    /// around it (LayerNorm, residual) give the same worker (at batch 1, 261 rows: 9 AVX-512
    /// tiles each, and the last 9 rows by columns).
    /// - Parameters:
    ///   - bias: (outDim) or nil.
    ///   - residual: for `.residual`, (rows, outDim) with row stride `ldOut`; it must not overlap
    ///     `out` (a long K writes partial sums to `out` before the residual is added).
    ///   - layerScale: for `.residual`, γ (outDim) or nil.
    ///   - ldOut: row stride of `out` (default outDim); `out` must not overlap `input`.
    ///   - parallel: pass `false` inside a parallel region.
    public static func linear(out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, weight: PackedPanels,
                              bias: UnsafePointer<Float>?, rows: Int, epilogue: Epilogue = .none,
                              residual: UnsafePointer<Float>? = nil, layerScale: UnsafePointer<Float>? = nil,
                              ldOut: Int? = nil, parallel: Bool = true) {
        let n = weight.outDim, k = weight.inDim, ldc = ldOut ?? n
        if rows <= 0 { return }
        precondition((epilogue == .residual) == (residual != nil), "Gemm.linear: .residual goes with a residual")
        let epi = Fused(kind: epilogue, residual: residual, gamma: layerScale)
        let workers = parallel && rows * n * k >= parallelThreshold ? Threads.count : 1
        if workers <= 1 {
            run(out, ldc, input, k, weight, bias, rows, 0, n, epi)
            return
        }
        let mr = nk_gemm_rows_per_tile()
        if rows >= 2 * workers * Int(NK_GEMM_MC_ROWS) {
            // At least two row blocks per worker (training, batched inference): chunks of
            // whole tile pairs go to whichever worker is free, so one that the OS slows down does
            // not leave the other waiting at the end (the rows' values do not depend on who
            // computes them).
            Threads.parallelDynamic(rows, grain: 2 * mr) { _, s, e in
                run(out + s * ldc, ldc, input + s * k, k, weight, bias, e - s, 0, n, epi.rows(from: s, stride: ldc))
            }
            return
        }
        // Fewer rows (batch 1): whole row tiles per worker (`own` rows each), each streaming the
        // weight once; the rows left over (fewer than `workers` + 1 tiles) are split into column
        // panels among all workers.
        let own = rows / mr / workers * mr, rest = rows - own * workers
        let panels = (n + 15) / 16, colBlock = (panels + workers - 1) / workers * 16
        Threads.parallelChunks(workers) { w, _, _ in
            if own > 0 {
                let i0 = w * own
                run(out + i0 * ldc, ldc, input + i0 * k, k, weight, bias, own, 0, n, epi.rows(from: i0, stride: ldc))
            }
            let i0 = own * workers, j0 = w * colBlock
            if rest > 0 && j0 < n {
                run(out + i0 * ldc, ldc, input + i0 * k, k, weight, bias, rest, j0, min(colBlock, n - j0),
                    epi.rows(from: i0, stride: ldc))
            }
        }
    }

    /// out (m, n) = (accumulate ? out : 0) + aᵀ · b for a (k, m) and b (k, n) row-major: a Linear's
    /// weight gradient dW (out, in) += dYᵀ (out, rows) · X (rows, in), the sum over the rows. libneco's
    /// own kernel (CNecoKernels `nk_gemm_tn`), both operands packed per block. Each output element
    /// is one chain of fused multiply-adds in row order, so the result is the same for any thread
    /// count; the longer side of `out` is split among the workers (whole 16-column panels or
    /// row tiles). When a worker's scratch cannot be allocated, OpenBLAS computes its block instead.
    /// - Parameters: lda, ldb, ldc: row strides (default m, n, n); `out` must not overlap a or b.
    public static func weightGradient(out: UnsafeMutablePointer<Float>, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                                      m: Int, n: Int, k: Int, lda: Int? = nil, ldb: Int? = nil, ldc: Int? = nil,
                                      accumulate: Bool, parallel: Bool = true) {
        if m <= 0 || n <= 0 { return }
        let lda = lda ?? m, ldb = ldb ?? n, ldc = ldc ?? n
        func block(_ i0: Int, _ rows: Int, _ j0: Int, _ cols: Int) {
            let o = out + i0 * ldc + j0, ap = a + i0, bp = b + j0
            if nk_gemm_tn(o, ldc, ap, lda, bp, ldb, rows, cols, k, accumulate ? 1 : 0) == 0 { return }
            sgemm(o, ap, bp, rows, cols, k, true, false, 1, accumulate ? 1 : 0, lda, ldb, ldc)
        }
        let workers = parallel && m * n * k >= parallelThreshold ? Threads.count : 1
        if workers <= 1 { return block(0, m, 0, n) }
        if m >= n {
            let mr = nk_gemm_rows_per_tile()
            let chunk = ((m + workers - 1) / workers + mr - 1) / mr * mr
            Threads.parallelFor((m + chunk - 1) / chunk) { s, e in
                for w in s..<e { block(w * chunk, min(chunk, m - w * chunk), 0, n) }
            }
        } else {
            let chunk = ((n + workers - 1) / workers + 15) / 16 * 16
            Threads.parallelFor((n + chunk - 1) / chunk) { s, e in
                for w in s..<e { block(0, m, w * chunk, min(chunk, n - w * chunk)) }
            }
        }
    }

    /// An epilogue with its operands: the residual (rows, n) shares `out`'s row stride.
    struct Fused {
        let kind: Epilogue
        let residual: UnsafePointer<Float>?
        let gamma: UnsafePointer<Float>?
        /// The same epilogue for the rows from `i0` on.
        func rows(from i0: Int, stride: Int) -> Fused {
            Fused(kind: kind, residual: residual.map { $0 + i0 * stride }, gamma: gamma)
        }
    }

    /// Columns [j0, j0 + cols) of rows `rows` on the calling thread (j0 a multiple of 16).
    static func run(_ out: UnsafeMutablePointer<Float>, _ ldc: Int, _ a: UnsafePointer<Float>, _ lda: Int,
                    _ w: PackedPanels, _ bias: UnsafePointer<Float>?, _ rows: Int, _ j0: Int, _ cols: Int,
                    _ epi: Fused) {
        let k = w.inDim
        nk_gemm_linear(out + j0, ldc, a, lda, w.base + j0 * k, bias.map { $0 + j0 }, rows, cols, k,
                       epi.kind.rawValue, epi.residual.map { $0 + j0 }, ldc, epi.gamma.map { $0 + j0 })
    }
}
