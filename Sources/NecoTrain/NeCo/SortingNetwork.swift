import NecoCore

// Differentiable sorting networks, a comparator-list port of diffsort 0.2.0 (Petersen et al.,
// `diffsort/networks.py` and `diffsort/functional.py`), NECO-SPEC §4.5, pitfalls P1–P5.
//
// Dimension letters: n the number of values sorted per row (NeCo: 49 references), S the padded
// inner stride of the wire buffers (n rounded up to a multiple of 8; the padding stays zero),
// K the number of real comparators (483 for bitonic n = 49), R the number of rows.
//
// Gradient convention: every `backward` accumulates (`+=`) into its input gradient, except the
// per-row kernels, which write (`=`) their documented outputs exactly once.

/// Which comparator network sorts the rows.
public enum SortingNetworkKind: String, Sendable, Codable, CaseIterable {
    /// Bitonic network, padded to the next power of two with virtual wires placed *before* the
    /// real ones (`diffsort.networks.bitonic_network`): k(k+1)/2 layers, k = ⌈log₂ n⌉.
    case bitonic
    /// Odd-even transposition network (`odd_even_network`): n layers of neighbour comparators.
    case oddEven = "odd_even"
}

/// One relaxed comparator in input-index form: it reads wires `a` and `b`,
/// α = relax(s·(x[b] − x[a])), writes the soft minimum to `lo` and the soft maximum to `hi`
/// ({lo, hi} = {a, b}; `lo == b` is Appendix A's "r", reversed).
public struct SortingComparator: Sendable, Equatable {
    public var a: Int32
    public var b: Int32
    public var lo: Int32
    public var hi: Int32
    public var reversed: Bool { lo == b }
    public init(a: Int, b: Int, reversed: Bool) {
        self.a = Int32(a)
        self.b = Int32(b)
        self.lo = Int32(reversed ? b : a)
        self.hi = Int32(reversed ? a : b)
    }
}

/// The comparator list of a sorting network over `size` wires.
///
/// Only real comparators are kept. diffsort's identity comparators (a comparator that touches one
/// virtual wire in the padded bitonic network, or an unpaired end wire of the odd-even network)
/// compute `0.5·(α·x + (1−α)·x) + 0.5·((1−α)·x + α·x)` with α = relax(0) = ½, which is `x` exactly
/// in floating point, and contribute no gradient; comparators between two virtual wires are
/// dropped (NECO-SPEC P1, P5). Comparators of one layer touch disjoint wires, so applying them in
/// list order, in place, equals diffsort's layer-parallel evaluation.
public struct SortingNetwork: Sendable, Equatable {
    public let kind: SortingNetworkKind
    /// n, the number of wires (values per row).
    public let size: Int
    /// Real comparators per layer, in diffsort's order.
    public let layers: [[SortingComparator]]
    /// All real comparators in evaluation order (layers concatenated).
    public let comparators: [SortingComparator]
    /// Per comparator, the input indices i where X[i, a] or X[i, b] can be non-zero after it: the
    /// hull of the two wires' supports (X starts as I and a comparator's outputs are supported on
    /// the union of its inputs' supports). Forward and backward loops run over this range only,
    /// rounded out to multiples of 8: about half the work of full rows for bitonic n = 49, whose
    /// first 15 layers mix wires within groups of at most 32.
    public let supports: [Range<Int>]

    /// Builds the network. - Throws: `.invalidArgument` when `size < 2` or `size > 65536`.
    public init(kind: SortingNetworkKind, size n: Int) throws {
        guard n >= 2, n <= 65536 else {
            throw NecoError.invalidArgument("sorting network size \(n) is out of range (needs 2...65536 values)")
        }
        self.kind = kind
        size = n
        var layers: [[SortingComparator]] = []
        switch kind {
        case .bitonic:
            // k = ceil(log2 n), M = 2^k wires, the first p = M − n are virtual; wire w carries input w − p.
            var k = 0
            while (1 << k) < n { k += 1 }
            let wires = 1 << k, p = wires - n
            for block in 0..<k {
                for layer in 0...block {
                    let m = 1 << (block - layer)
                    var list: [SortingComparator] = []
                    var base = 0
                    while base < wires {
                        for j in 0..<m {
                            let a = base + j, b = a + m
                            // Both virtual: dropped. One virtual: identity. Both real: a comparator.
                            if a >= p && b >= p {
                                let reversed = (a >> (block + 1)) & 1 == 1
                                list.append(SortingComparator(a: a - p, b: b - p, reversed: reversed))
                            }
                        }
                        base += 2 * m
                    }
                    layers.append(list)
                }
            }
        case .oddEven:
            for layer in 0..<n {
                var list: [SortingComparator] = []
                var i = layer % 2
                while i < n - 1 {
                    list.append(SortingComparator(a: i, b: i + 1, reversed: false))
                    i += 2
                }
                layers.append(list)
            }
        }
        self.layers = layers
        comparators = layers.flatMap { $0 }
        var wire = (0..<n).map { $0..<($0 + 1) }
        var supports: [Range<Int>] = []
        for c in comparators {
            let a = Int(c.a), b = Int(c.b)
            let hull = min(wire[a].lowerBound, wire[b].lowerBound)..<max(wire[a].upperBound, wire[b].upperBound)
            wire[a] = hull
            wire[b] = hull
            supports.append(hull)
        }
        self.supports = supports
    }
}

/// The relaxation of a comparator: how the mixing weight α ∈ [0, 1] depends on the difference
/// v = x[b] − x[a] at steepness s (diffsort `execute_sort`, `distribution=`).
///
/// ```
/// cauchy        α = atan(s·v)/π + ½                         (diffsort's and NeCo's default)
/// logistic      α = σ(v·s)
/// logistic_phi  α = σ(v·s / (|v| + 1e−10)^λ)                 (λ = art_lambda, default 0.25)
/// gaussian      α = ½ + ½·erf(v / (1/s) / √2)               (Φ(s·v))
/// reciprocal    α = ½·(s·v / (2 + |s·v|) + 1)
/// optimal       α = clamp(z, −¼, ¼) + ½ + sign_{|z|>¼}(z)·(¼ − 1/(16(|z| + 1e−10))),  z = s·v
/// ```
/// The factor order of each formula follows diffsort's PyTorch expression, so Float results
/// match diffsort's float32 ones up to libm rounding of atan/exp/erf.
public enum Relaxation: String, Sendable, Codable, CaseIterable {
    case cauchy
    case logistic
    case logisticPhi = "logistic_phi"
    case gaussian
    case reciprocal
    case optimal
}

/// Relaxation constants converted once into the kernel's element type.
@usableFromInline
struct _RelaxParams<T: NeCoScalar> {
    @usableFromInline let kind: Relaxation
    @usableFromInline let s: T           // steepness
    @usableFromInline let invPi: T       // 1/π (Python double, then cast like a tensor scalar)
    @usableFromInline let lambda: T      // art_lambda
    @usableFromInline let sigma: T       // gaussian: 1/s
    @usableFromInline let invSqrt2: T
    @usableFromInline let sqrt2: T
    @usableFromInline let gaussNorm: T   // s / sqrt(2π)
    @usableFromInline let tiny: T        // 1e-10

    @usableFromInline init(kind: Relaxation, steepness: Double, artLambda: Double) {
        self.kind = kind
        s = T(necoParameter: steepness)
        invPi = T(necoParameter: 1 / Double.pi)
        lambda = T(necoParameter: artLambda)
        sigma = T(necoParameter: 1 / steepness)
        invSqrt2 = T(necoParameter: 1 / 2.0.squareRoot())
        sqrt2 = T(necoParameter: 2.0.squareRoot())
        gaussNorm = T(necoParameter: steepness / (2 * Double.pi).squareRoot())
        tiny = T(necoParameter: 1e-10)
    }

    /// (α, dα/dv) for v = x[b] − x[a].
    @inlinable @inline(__always)
    func alpha(_ v: T) -> (T, T) {
        switch kind {
        case .cauchy:
            let z = s * v
            let a = invPi * T.necoAtan(z) + T(0.5)
            return (a, s * invPi / (1 + z * z))
        case .logistic:
            let a = 1 / (1 + T.necoExp(-(v * s)))
            return (a, s * a * (1 - a))
        case .logisticPhi:
            let u = abs(v) + tiny
            let p = T.necoPow(u, lambda)
            let a = 1 / (1 + T.necoExp(-((v * s) / p)))
            // dz/dv = (s/p)·(1 − λ·|v|/u)  (d|v|/dv = sign(v), 0 at v = 0 as in PyTorch)
            return (a, a * (1 - a) * (s / p) * (1 - lambda * abs(v) / u))
        case .gaussian:
            let z = v / sigma / sqrt2
            let a = T(0.5) + T(0.5) * T.necoErf(z)
            let t = v / sigma
            return (a, gaussNorm * T.necoExp(T(-0.5) * t * t))
        case .reciprocal:
            let z = s * v
            let d = 2 + abs(z)
            return (T(0.5) * (z / d + 1), s / (d * d))
        case .optimal:
            let z = s * v
            let q = T(0.25)
            let clamped = min(max(z, -q), q)
            var a = clamped + T(0.5)
            var d: T = abs(z) <= q ? s : 0
            if z > q || z < -q {
                let sign: T = z > q ? 1 : -1
                let u = abs(z) + tiny
                a += sign * (q - 1 / T(16) / u)
                d += s / (16 * u * u)
            }
            return (a, d)
        }
    }
}

/// A differentiable sorting network with its relaxation: maps a row x (n) to the soft-sorted
/// values and the soft permutation matrix X (n × n), NECO-SPEC §4.5.
///
/// Concretely (diffsort `execute_sort`, one comparator (a, b → lo, hi) at a time, in place):
/// ```
/// x ← row ; X ← I
/// α = relax(s·(x[b] − x[a]))
/// x'[lo] = α·x[a] + (1−α)·x[b]          x'[hi] = (1−α)·x[a] + α·x[b]
/// X'[:,lo] = α·X[:,a] + (1−α)·X[:,b]    X'[:,hi] = (1−α)·X[:,a] + α·X[:,b]
/// ```
/// Orientation (P2): `X[i, j]` is the weight with which input i lands at ascending rank j, so
/// the soft-sorted values are `xᵀ·X`. Internally the kernels keep Xᵀ ("wires"): wire j is a
/// contiguous row of S values, `wires[j·S + i] = X[i, j]`, so a comparator mixes two contiguous
/// rows.
///
/// Backward (the adjoint of each comparator, in reverse order; Ḡ = ∂L/∂X', ḡ = ∂L/∂x'):
/// ```
/// gα = Σ_i (X[i,a] − X[i,b])·(Ḡ[i,lo] − Ḡ[i,hi]) + (x[a] − x[b])·(ḡ[lo] − ḡ[hi])
/// Ḡ[:,a] = α·Ḡ[:,lo] + (1−α)·Ḡ[:,hi]     Ḡ[:,b] = (1−α)·Ḡ[:,lo] + α·Ḡ[:,hi]
/// ḡ[a] = α·ḡ[lo] + (1−α)·ḡ[hi] − gα·α'(v)     ḡ[b] = (1−α)·ḡ[lo] + α·ḡ[hi] + gα·α'(v)
/// ```
/// Saved for backward per row (the "tape", `tapeCount` values): per comparator α, α'(v),
/// x[a] − x[b] and the column difference X[:,a] − X[:,b] (S values). That is 483·59 floats
/// ≈ 114 KB for bitonic n = 49, small enough to keep per worker; the batched `backward`
/// recomputes the forward of each row into it (NECO-SPEC §4.8: recompute instead of storing
/// 21 layers of X per row).
///
/// ### References
/// https://github.com/Felix-Petersen/diffsort (v0.2.0), Petersen et al., "Monotonic Differentiable
/// Sorting Networks", ICLR 2022.
///
/// - Complexity: forward ≤ 4·K·S multiply-adds per row (K = 483, S = 56 for n = 49) plus K
///   relaxations (atan for Cauchy); the loops only cover each comparator's support (see
///   `SortingNetwork.supports`), about half of that for bitonic. Backward about twice the forward.
///   Measured (release, 2 threads, bitonic n = 49, B·49 = 3136 rows): forward 13 µs/row; teacher
///   forward + student forward/backward + cross-entropy 43 µs/row.
public struct SoftSort: Sendable, Equatable {
    public let network: SortingNetwork
    public let relaxation: Relaxation
    /// s > 0 (NeCo: 100 for teacher and student).
    public let steepness: Double
    /// λ of `logistic_phi` (diffsort's `art_lambda`, default 0.25; unused by the others).
    public let artLambda: Double
    /// S, the padded wire length: n rounded up to a multiple of 8.
    public let stride: Int
    /// Per comparator, `network.supports` rounded out to multiples of 8 (start, end) within S.
    let spans: [Int32]

    /// - Throws: `.invalidArgument` unless `steepness` is finite and > 0 and `artLambda` finite.
    public init(network: SortingNetwork, relaxation: Relaxation = .cauchy, steepness: Double, artLambda: Double = 0.25) throws {
        guard steepness.isFinite, steepness > 0 else {
            throw NecoError.invalidArgument("sorting steepness must be finite and > 0 (got \(steepness))")
        }
        guard artLambda.isFinite else { throw NecoError.invalidArgument("art_lambda must be finite") }
        self.network = network
        self.relaxation = relaxation
        self.steepness = steepness
        self.artLambda = artLambda
        let st = (network.size + 7) / 8 * 8
        stride = st
        spans = network.supports.flatMap { r in [Int32(r.lowerBound / 8 * 8), Int32(min(st, (r.upperBound + 7) / 8 * 8))] }
    }

    public static func == (a: SoftSort, b: SoftSort) -> Bool {
        a.network == b.network && a.relaxation == b.relaxation && a.steepness == b.steepness && a.artLambda == b.artLambda
    }

    /// Convenience: builds the network too.
    public init(kind: SortingNetworkKind, size: Int, relaxation: Relaxation = .cauchy, steepness: Double,
                artLambda: Double = 0.25) throws {
        try self.init(network: try SortingNetwork(kind: kind, size: size), relaxation: relaxation,
                      steepness: steepness, artLambda: artLambda)
    }

    /// n.
    public var size: Int { network.size }
    /// Values of one wire buffer, n·S.
    public var wiresCount: Int { network.size * stride }
    /// Values of one row's tape, K·(3 + S).
    public var tapeCount: Int { network.comparators.count * (3 + stride) }

    // MARK: - One row

    /// Forward of one row.
    ///
    /// - Parameters:
    ///   - values: (n) the row on entry, the soft-sorted values (ascending) on return.
    ///   - wires: (n, S) written with Xᵀ (padding columns zero).
    ///   - tape: (tapeCount) or nil; filled with what `backwardRow` needs.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func forwardRow<T: NeCoScalar>(values x: UnsafeMutablePointer<T>, wires w: UnsafeMutablePointer<T>,
                                          tape: UnsafeMutablePointer<T>?) {
        let n = network.size, st = stride
        let rp = _RelaxParams<T>(kind: relaxation, steepness: steepness, artLambda: artLambda)
        w.update(repeating: 0, count: n * st)
        for j in 0..<n { w[j * st + j] = 1 }
        let nc = network.comparators.count
        let tAlpha = tape, tDAlpha = tape.map { $0 + nc }, tDx = tape.map { $0 + 2 * nc }
        let tDW = tape.map { $0 + 3 * nc }
        network.comparators.withUnsafeBufferPointer { comps in
          spans.withUnsafeBufferPointer { sp in
            for k in 0..<nc {
                let c = comps[k]
                let a = Int(c.a), b = Int(c.b)
                let i0 = Int(sp[2 * k]), i1 = Int(sp[2 * k + 1])
                let va = x[a], vb = x[b]
                let (al, da) = rp.alpha(vb - va)
                let be = 1 - al
                let lo = al * va + be * vb
                let hi = be * va + al * vb
                x[Int(c.lo)] = lo
                x[Int(c.hi)] = hi
                let pa = w + a * st, pb = w + b * st
                if let tAlpha, let tDAlpha, let tDx, let tDW {
                    tAlpha[k] = al
                    tDAlpha[k] = da
                    tDx[k] = va - vb
                    let d = tDW + k * st
                    for i in i0..<i1 { d[i] = pa[i] - pb[i] }
                }
                if c.lo == c.a {
                    for i in i0..<i1 {
                        let u = pa[i], v = pb[i]
                        pa[i] = al * u + be * v
                        pb[i] = be * u + al * v
                    }
                } else {
                    for i in i0..<i1 {
                        let u = pa[i], v = pb[i]
                        pb[i] = al * u + be * v
                        pa[i] = be * u + al * v
                    }
                }
            }
          }
        }
    }

    /// Backward of one row, from the tape that `forwardRow` filled.
    ///
    /// - Parameters:
    ///   - dValues: (n) on entry ∂L/∂(soft-sorted values) (zeros when unused, as in NeCo); on
    ///     return ∂L/∂(input row) (written, not accumulated).
    ///   - dWires: (n, S) on entry ∂L/∂Xᵀ in the wire layout (padding zero); destroyed.
    ///   - tape: (tapeCount) as filled by `forwardRow`.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func backwardRow<T: NeCoScalar>(dValues gx: UnsafeMutablePointer<T>, dWires g: UnsafeMutablePointer<T>,
                                           tape: UnsafePointer<T>) {
        let st = stride
        let nc = network.comparators.count
        let tAlpha = tape, tDAlpha = tape + nc, tDx = tape + 2 * nc, tDW = tape + 3 * nc
        network.comparators.withUnsafeBufferPointer { comps in
          spans.withUnsafeBufferPointer { sp in
            var k = nc - 1
            while k >= 0 {
                let c = comps[k]
                let i0 = Int(sp[2 * k]), i1 = Int(sp[2 * k + 1])
                let al = tAlpha[k], be = 1 - al
                let lo = Int(c.lo), hi = Int(c.hi)
                let glo = g + lo * st, ghi = g + hi * st
                let d = tDW + k * st
                // gα = Σ_i (X[i,a] − X[i,b])·(Ḡ[i,lo] − Ḡ[i,hi]), eight partial sums.
                var s0: T = 0, s1: T = 0, s2: T = 0, s3: T = 0, s4: T = 0, s5: T = 0, s6: T = 0, s7: T = 0
                var i = i0
                while i < i1 {
                    s0 += d[i] * (glo[i] - ghi[i])
                    s1 += d[i + 1] * (glo[i + 1] - ghi[i + 1])
                    s2 += d[i + 2] * (glo[i + 2] - ghi[i + 2])
                    s3 += d[i + 3] * (glo[i + 3] - ghi[i + 3])
                    s4 += d[i + 4] * (glo[i + 4] - ghi[i + 4])
                    s5 += d[i + 5] * (glo[i + 5] - ghi[i + 5])
                    s6 += d[i + 6] * (glo[i + 6] - ghi[i + 6])
                    s7 += d[i + 7] * (glo[i + 7] - ghi[i + 7])
                    i += 8
                }
                let xl = gx[lo], xh = gx[hi]
                let gAlpha = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)) + tDx[k] * (xl - xh)
                // Ḡ[:,a] = α Ḡ[:,lo] + (1−α) Ḡ[:,hi];  Ḡ[:,b] = (1−α) Ḡ[:,lo] + α Ḡ[:,hi].
                // lo == a: (glo, ghi) become (Ḡ_a, Ḡ_b); lo == b: they become (Ḡ_b, Ḡ_a).
                // Only the support range: entries of Ḡ outside it are never read again (supports
                // only shrink going backwards, and the tape's column differences are 0 there).
                if c.lo == c.a {
                    for i in i0..<i1 {
                        let l = glo[i], h = ghi[i]
                        glo[i] = al * l + be * h
                        ghi[i] = be * l + al * h
                    }
                } else {
                    for i in i0..<i1 {
                        let l = glo[i], h = ghi[i]
                        ghi[i] = al * l + be * h
                        glo[i] = be * l + al * h
                    }
                }
                let gv = gAlpha * tDAlpha[k]
                let a = Int(c.a), b = Int(c.b)
                gx[a] = al * xl + be * xh - gv
                gx[b] = be * xl + al * xh + gv
                k -= 1
            }
          }
        }
    }

    // MARK: - Batches of rows

    /// Forward of `rows` rows in parallel.
    ///
    /// - Parameters:
    ///   - permutations: (R, n, n) out, X in diffsort's orientation (`X[r, i, j]`: input i → rank j).
    ///   - sorted: (R, n) out or nil, the soft-sorted values.
    ///   - input: (R, n).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func forward<T: NeCoScalar>(permutations: UnsafeMutablePointer<T>, sorted: UnsafeMutablePointer<T>?,
                                       input: UnsafePointer<T>, rows: Int) {
        precondition(rows >= 0, "SoftSort.forward: rows must be ≥ 0")
        let n = size, st = stride
        Threads.parallelChunks(rows) { _, start, end in
            let x = UnsafeMutablePointer<T>.allocate(capacity: n)
            let w = UnsafeMutablePointer<T>.allocate(capacity: n * st)
            defer { x.deallocate(); w.deallocate() }
            for r in start..<end {
                x.update(from: input + r * n, count: n)
                forwardRow(values: x, wires: w, tape: nil)
                let out = permutations + r * n * n
                for i in 0..<n { for j in 0..<n { out[i * n + j] = w[j * st + i] } }
                if let sorted { (sorted + r * n).update(from: x, count: n) }
            }
        }
    }

    /// Backward of `rows` rows in parallel: recomputes each row's forward into a per-worker tape,
    /// then runs the adjoint. Accumulates (`+=`) into `dInput`.
    ///
    /// - Parameters:
    ///   - dInput: (R, n) += ∂L/∂input.
    ///   - dPermutations: (R, n, n) ∂L/∂X in diffsort's orientation.
    ///   - dSorted: (R, n) ∂L/∂(soft-sorted values), or nil for zero (NeCo).
    ///   - input: (R, n), the forward's input.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func backward<T: NeCoScalar>(dInput: UnsafeMutablePointer<T>, dPermutations: UnsafePointer<T>,
                                        dSorted: UnsafePointer<T>?, input: UnsafePointer<T>, rows: Int) {
        precondition(rows >= 0, "SoftSort.backward: rows must be ≥ 0")
        let n = size, st = stride, tc = tapeCount
        Threads.parallelChunks(rows) { _, start, end in
            let x = UnsafeMutablePointer<T>.allocate(capacity: n)
            let w = UnsafeMutablePointer<T>.allocate(capacity: n * st)
            let tape = UnsafeMutablePointer<T>.allocate(capacity: max(tc, 1))
            defer { x.deallocate(); w.deallocate(); tape.deallocate() }
            for r in start..<end {
                x.update(from: input + r * n, count: n)
                forwardRow(values: x, wires: w, tape: tape)
                // Wires now take the role of Ḡ (wire layout); x the role of ḡ.
                let dp = dPermutations + r * n * n
                w.update(repeating: 0, count: n * st)
                for i in 0..<n { for j in 0..<n { w[j * st + i] = dp[i * n + j] } }
                if let dSorted { x.update(from: dSorted + r * n, count: n) } else { x.update(repeating: 0, count: n) }
                backwardRow(dValues: x, dWires: w, tape: tape)
                let dst = dInput + r * n
                for i in 0..<n { dst[i] += x[i] }
            }
        }
    }
}
