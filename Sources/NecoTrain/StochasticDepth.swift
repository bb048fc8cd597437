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
    public static func sample(into acts: ViTActivations, rates: [Float], rng: inout NecoRNG) {
        precondition(rates.count == acts.config.depth, "one rate per block")
        let b = acts.batch
        for (i, p) in rates.enumerated() {
            for branch in 0..<2 {
                let s = acts.branchScales(block: i, branch: branch)
                switch path(rate: p) {
                case .none:
                    s.update(repeating: 1)
                case .perSample:
                    let keep = Float(1 - Double(p))
                    let scale = Float(1 / (1 - Double(p)))
                    for j in 0..<b { s[j] = rng.uniformFloat() < keep ? scale : 0 }
                case .subset:
                    let k = max(Int(Double(b) * (1 - Double(p))), 1)
                    let perm = rng.permutation(b)
                    let scale = Float(Double(b) / Double(k))
                    s.update(repeating: 0)
                    for j in perm.prefix(k) { s[j] = scale }
                }
            }
        }
    }
}
