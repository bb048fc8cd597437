import NecoCore
import NecoModel

/// Weight-space interpolation between a model and a post-pretrained copy of it (as WiSE-FT does
/// for fine-tuned models): θ = (1 − α)·θ_base + α·θ_tuned, parameter by parameter. α = 0 gives
/// the base, 1 the tuned model; values in between trade what post-pretraining gained on one
/// measure (NeCo: neighbour consistency, in-context segmentation) against what the base did better
/// on another (docs/EXPERIMENTS.md measures both).
public enum WeightInterpolation {
    /// - Throws: `.shape` when the two models differ in architecture; `.invalidArgument` for α
    ///   outside [0, 1] or not finite.
    public static func interpolate(base: ViTModel, tuned: ViTModel, alpha: Double) throws -> ViTModel {
        guard alpha.isFinite, alpha >= 0, alpha <= 1 else {
            throw NecoError.invalidArgument("interpolation weight \(alpha) must be in [0, 1]")
        }
        guard base.config == tuned.config, base.params.count == tuned.params.count else {
            throw NecoError.shape("cannot interpolate \(base.config.name) (\(base.params.count) parameters) with "
                                  + "\(tuned.config.name) (\(tuned.params.count)): the architectures differ")
        }
        let out = try base.copy(source: "\(1 - alpha)·\(base.source) + \(alpha)·\(tuned.source)")
        // (1 − α)·base + α·tuned: the endpoints come out exactly (α = 1 gives the tuned bits).
        let a = Float(alpha), b = 1 - a
        for spec in out.params.layout.specs {
            let dst = out.params[spec.offset], src = UnsafePointer(tuned.params[spec.offset])
            Threads.parallelFor(spec.count, minChunk: 1 << 16) { s, e in
                for i in s..<e { dst[i] = b * dst[i] + a * src[i] }
            }
        }
        out.prepareForInference()
        return out
    }
}
