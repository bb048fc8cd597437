import NecoCore

// Cosine similarities between query patches and reference patches, NECO-SPEC §4.4 and P9.
//
// Dimension letters: B images, Q queries per image (49 ROI cells), K references per image (49),
// C channels (256).
//
// Gradient convention: `backward` accumulates (`+=`) into dX and dR.

/// Dot product with eight partial sums (vectorisable; the order is fixed, so results do not
/// depend on threads).
@inlinable @inline(__always)
func _necoDot<T: NeCoScalar>(_ a: UnsafePointer<T>, _ b: UnsafePointer<T>, _ n: Int) -> T {
    var s0: T = 0, s1: T = 0, s2: T = 0, s3: T = 0, s4: T = 0, s5: T = 0, s6: T = 0, s7: T = 0
    var i = 0
    while i + 8 <= n {
        s0 += a[i] * b[i]
        s1 += a[i + 1] * b[i + 1]
        s2 += a[i + 2] * b[i + 2]
        s3 += a[i + 3] * b[i + 3]
        s4 += a[i + 4] * b[i + 4]
        s5 += a[i + 5] * b[i + 5]
        s6 += a[i + 6] * b[i + 6]
        s7 += a[i + 7] * b[i + 7]
        i += 8
    }
    while i < n {
        s0 += a[i] * b[i]
        i += 1
    }
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
}

/// Batched cosine similarity, as NeCo computes it:
/// `einsum('bqc,bkc->bqk', F.normalize(x, dim=-1), F.normalize(r, dim=-1))`.
///
/// ```
/// x̂ = x / max(‖x‖₂, ε)   r̂ = r / max(‖r‖₂, ε)   (ε = 1e-12, norms accumulated in Double)
/// sim[b, q, k] = ⟨x̂[b, q], r̂[b, k]⟩            (zero vectors give 0)
/// ```
/// Backward (F.normalize's clamp: below ε the map is x/ε, linear):
/// ```
/// dx̂[q] = Σ_k dsim[q, k]·r̂[k]
/// dx[q] += ‖x‖ > ε ? (dx̂ − x̂·⟨x̂, dx̂⟩) / ‖x‖ : dx̂ / ε          (the same for r)
/// ```
/// Saved for backward: x̂ and ‖x‖ (and r̂, ‖r‖ when dR is wanted).
///
/// ### References
/// https://pytorch.org/docs/stable/generated/torch.nn.functional.normalize.html
public enum CosineSimilarity {
    public static let eps = 1e-12

    /// out (rows, C) ← rows / max(‖row‖, ε); norms (rows) ← ‖row‖.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func normalize<T: NeCoScalar>(out: UnsafeMutablePointer<T>, norms: UnsafeMutablePointer<T>,
                                               input: UnsafePointer<T>, rows: Int, channels c: Int) {
        let eps = T(necoParameter: eps)
        for r in 0..<rows {
            let x = input + r * c, y = out + r * c
            var acc = 0.0
            for i in 0..<c { acc += Double(x[i]) * Double(x[i]) }
            let n = T(acc.squareRoot())
            let d = max(n, eps)
            for i in 0..<c { y[i] = x[i] / d }
            norms[r] = n
        }
    }

    /// sim (B, Q, K) ← cosine similarities; xHat (B, Q, C), xNorm (B, Q), rHat (B, K, C),
    /// rNorm (B, K) ← the normalised inputs and norms (kept for backward).
    /// x: (B, Q, C), r: (B, K, C).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func forward<T: NeCoScalar>(sim: UnsafeMutablePointer<T>, xHat: UnsafeMutablePointer<T>,
                                             xNorm: UnsafeMutablePointer<T>, rHat: UnsafeMutablePointer<T>,
                                             rNorm: UnsafeMutablePointer<T>, x: UnsafePointer<T>, r: UnsafePointer<T>,
                                             batch: Int, queries: Int, keys: Int, channels c: Int) {
        precondition(batch >= 0 && queries >= 0 && keys >= 0 && c >= 1, "CosineSimilarity.forward: bad dims")
        Threads.parallelFor(batch) { b0, b1 in
            for b in b0..<b1 {
                normalize(out: xHat + b * queries * c, norms: xNorm + b * queries,
                          input: x + b * queries * c, rows: queries, channels: c)
                normalize(out: rHat + b * keys * c, norms: rNorm + b * keys,
                          input: r + b * keys * c, rows: keys, channels: c)
                for q in 0..<queries {
                    let xq = UnsafePointer(xHat + (b * queries + q) * c)
                    let dst = sim + (b * queries + q) * keys
                    for k in 0..<keys { dst[k] = _necoDot(xq, UnsafePointer(rHat + (b * keys + k) * c), c) }
                }
            }
        }
    }

    /// dX (B, Q, C) += ∂L/∂x and, when given, dR (B, K, C) += ∂L/∂r, from dSim (B, Q, K) and the
    /// forward's saved xHat, xNorm, rHat, rNorm.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func backward<T: NeCoScalar>(dX: UnsafeMutablePointer<T>?, dR: UnsafeMutablePointer<T>?,
                                              dSim: UnsafePointer<T>, xHat: UnsafePointer<T>, xNorm: UnsafePointer<T>,
                                              rHat: UnsafePointer<T>, rNorm: UnsafePointer<T>,
                                              batch: Int, queries: Int, keys: Int, channels c: Int) {
        let eps = T(necoParameter: eps)
        Threads.parallelChunks(batch) { _, b0, b1 in
            let tmp = UnsafeMutablePointer<T>.allocate(capacity: c)
            defer { tmp.deallocate() }
            /// dst += d(normalised)/d(raw) applied to tmp (= ∂L/∂ĥ) for one row.
            func unnormalize(_ dst: UnsafeMutablePointer<T>, _ hat: UnsafePointer<T>, _ norm: T) {
                if norm > eps {
                    let proj = _necoDot(hat, UnsafePointer(tmp), c)
                    for i in 0..<c { dst[i] += (tmp[i] - hat[i] * proj) / norm }
                } else {
                    for i in 0..<c { dst[i] += tmp[i] / eps }
                }
            }
            for b in b0..<b1 {
                if let dX {
                    for q in 0..<queries {
                        tmp.update(repeating: 0, count: c)
                        let g = dSim + (b * queries + q) * keys
                        for k in 0..<keys {
                            let gk = g[k]
                            if gk == 0 { continue }
                            let rk = rHat + (b * keys + k) * c
                            for i in 0..<c { tmp[i] += gk * rk[i] }
                        }
                        let row = b * queries + q
                        unnormalize(dX + row * c, xHat + row * c, xNorm[row])
                    }
                }
                if let dR {
                    for k in 0..<keys {
                        tmp.update(repeating: 0, count: c)
                        for q in 0..<queries {
                            let gq = dSim[(b * queries + q) * keys + k]
                            if gq == 0 { continue }
                            let xq = xHat + (b * queries + q) * c
                            for i in 0..<c { tmp[i] += gq * xq[i] }
                        }
                        let row = b * keys + k
                        unnormalize(dR + row * c, rHat + row * c, rNorm[row])
                    }
                }
            }
        }
    }
}
