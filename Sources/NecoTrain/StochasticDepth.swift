import NecoCore
import NecoModel

/// Stochastic depth of the student (NECO-SPEC §2.6, pitfall P13), drawn as per-sample branch
/// scales that `ViTModel.forwardTraining` applies (see `BranchResidual`).
///
/// Rates: p_i = `torch.linspace(0, rate, depth)[i]` in float32 (rate 0.1 → 0, 0.0090909, …,
/// 0.0909091, 0.10000000149). Each block draws its attention branch, then its MLP branch:
/// - p_i = 0: scale 1 for every sample.
/// - 0 < p_i ≤ 0.1 (compared in Double, as Python does): classic drop path: sample b keeps its
///   branch when `uniformFloat() < Float(1 − p_i)`, with scale `Float(1 / (1 − p_i))`, else 0.
/// - p_i > 0.1 (the last block, because float32(0.1) > 0.1): the subset path of DINOv2's
///   `drop_add_residual_stochastic_depth`: k = max(Int(B·(1 − p_i)), 1) samples, the first k of
///   `permutation(B)`, keep their branch with scale `Float(B / k)`; the others get 0.
public enum StochasticDepth {
    public enum Path: Sendable, Equatable {
        case none, perSample, subset
    }

    /// Per-block rates, as float32 `torch.linspace(0, rate, depth)` computes them
    /// (step = (end − start)/(n − 1) in float; the first half counts up from start, the second
    /// half down from end).
    public static func rates(rate: Float, depth: Int) -> [Float] {
        precondition(depth >= 1, "depth must be ≥ 1")
        if depth == 1 { return [0] }
        let start: Float = 0, end = rate
        let step = (end - start) / Float(depth - 1)
        let half = depth / 2
        return (0..<depth).map { i in i < half ? start + step * Float(i) : end - step * Float(depth - 1 - i) }
    }

    public static func path(rate p: Float) -> Path {
        if Double(p) > 0.1 { return .subset }
        if p > 0 { return .perSample }
        return .none
    }

    /// Fills every branch scale of `acts` for one forward pass, drawing from `rng` in block order
    /// (attention branch, then MLP branch).
    ///
    /// Data parallelism (`ranks` > 1): the draws are those of the global batch, `acts.batch` ×
    /// `ranks` samples in `groups` groups, each group holding every rank's images in rank order;
    /// this rank keeps the scales of its own samples. So N ranks draw exactly what one process
    /// with the whole batch draws.
    public static func sample(into acts: ViTActivations, rates: [Float], rng: inout NecoRNG,
                              rank: Int = 0, ranks: Int = 1, groups: Int = 1) {
        precondition(rates.count == acts.config.depth, "one rate per block")
        precondition(ranks >= 1 && rank >= 0 && rank < ranks && groups >= 1 && acts.batch % groups == 0,
                     "stochastic depth: bad shard")
        let local = acts.batch, global = local * ranks
        let perGroup = local / groups
        // Local sample j = c·perGroup + i is global sample c·perGroup·ranks + rank·perGroup + i.
        func globalIndex(_ j: Int) -> Int { (j / perGroup) * perGroup * ranks + rank * perGroup + j % perGroup }
        var scales = [Float](repeating: 1, count: global)
        for (i, p) in rates.enumerated() {
            for branch in 0..<2 {
                draw(into: &scales, rate: p, rng: &rng)
                let s = acts.branchScales(block: i, branch: branch)
                for j in 0..<local { s[j] = scales[ranks == 1 ? j : globalIndex(j)] }
            }
        }
    }

    /// One branch's per-sample scales for `scales.count` samples (see the type's rules).
    static func draw(into scales: inout [Float], rate p: Float, rng: inout NecoRNG) {
        let b = scales.count
        switch path(rate: p) {
        case .none:
            for j in 0..<b { scales[j] = 1 }
        case .perSample:
            let keep = Float(1 - Double(p))
            let scale = Float(1 / (1 - Double(p)))
            for j in 0..<b { scales[j] = rng.uniformFloat() < keep ? scale : 0 }
        case .subset:
            let k = max(Int(Double(b) * (1 - Double(p))), 1)
            let perm = rng.permutation(b)
            let scale = Float(Double(b) / Double(k))
            for j in 0..<b { scales[j] = 0 }
            for j in perm.prefix(k) { scales[j] = scale }
        }
    }
}
