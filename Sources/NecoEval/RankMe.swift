import NecoCore

#if canImport(Glibc)
import Glibc
#endif

/// RankMe (Garrido et al., "RankMe: Assessing the downstream performance of pretrained
/// self-supervised representations by their rank", ICML 2023): the effective rank of a set of
/// embeddings, a label-free measure of dimensional collapse. `neco eval` reports it for the patch
/// features of the validation images; docs/EXPERIMENTS.md relates it to NeCo's linear-probe loss.
///
/// Letters: N embeddings (here patches), D feature dim.
///
///     σ (min(N, D))  = singular values of Z (N, D)          (no centring, as RankMe)
///     p_k            = σ_k / Σ_j σ_j + ε                     (ε = 1e-7, RankMe's)
///     RankMe         = exp(−Σ_k p_k · log p_k)               in [1, min(N, D)] (up to ε)
///
/// D equal singular values give D; one non-zero value gives 1 (plus ε terms).
public enum RankMe {
    /// RankMe's ε inside the entropy (the reference implementation's default).
    public static let epsilon = 1e-7

    /// RankMe of z (rows, dim).
    /// - Throws: `.invalidArgument` for no rows or columns, `.data` when every value is 0.
    public static func score(_ z: UnsafePointer<Float>, rows: Int, dim: Int) throws -> Double {
        var sigma = try PrincipalComponents.singularValues(z, rows: rows, dim: dim)
        if rows < dim { sigma = Array(sigma.prefix(rows)) }  // the Gram matrix adds dim − rows zeros
        return try score(singularValues: sigma)
    }

    /// RankMe from singular values (any order).
    public static func score(singularValues sigma: [Double]) throws -> Double {
        let total = sigma.reduce(0, +)
        guard total > 0, total.isFinite else {
            throw NecoError(.data, "RankMe of features that are all zero (or not finite)")
        }
        var entropy = 0.0
        for s in sigma {
            let p = s / total + epsilon
            entropy -= p * log(p)
        }
        return exp(entropy)
    }
}

extension RankMe {
    /// RankMe of the patch features of `val` (every patch of every image, ImageNet normalisation
    /// as the linear and clustering protocols; shared with them through `cache`).
    /// - Returns: the value and the number of patches it was computed on.
    public static func ofSplit(_ cache: FeatureCache, _ val: [Benchmark.Sample], split: String = "val") throws -> (value: Double, patches: Int) {
        guard !val.isEmpty else { throw NecoError(.data, "RankMe needs validation images") }
        let f = try cache.features(val, split: split, hummingbird: false)
        let rows = f.images * f.gridHeight * f.gridWidth
        let value = try f.features.withUnsafeBufferPointer { try score($0.baseAddress!, rows: rows, dim: f.dim) }
        return (value, rows)
    }
}
