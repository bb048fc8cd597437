import NecoCore

/// Mean squared error between dense embeddings, a simple stand-in objective for tests and the
/// training benchmark (the NeCo objective replaces it). Reference: `torch.nn.functional.mse_loss`
/// with `reduction="mean"`.
///
///     L = (1/n) Σ_i (s_i − t_i)²            (summed in Double)
///     dS_i += (2/n) (s_i − t_i) · weight
///
/// Shapes: student, target, dStudent (n) — any dense layout, e.g. (B·N, E).
public enum DenseMSE {
    /// Returns L and adds `weight · dL/dS` into `dStudent`.
    @discardableResult
    public static func forwardBackward(dStudent: UnsafeMutablePointer<Float>?, student: UnsafePointer<Float>,
                                       target: UnsafePointer<Float>, count n: Int, weight: Float = 1) -> Double {
        precondition(n > 0, "DenseMSE needs at least one element")
        var acc = 0.0
        for i in 0..<n {
            let diff = Double(student[i]) - Double(target[i])
            acc += diff * diff
        }
        if let dStudent {
            let k = 2 / Float(n) * weight
            Threads.parallelFor(n, minChunk: 1 << 15) { s, e in
                for i in s..<e { dStudent[i] += k * (student[i] - target[i]) }
            }
        }
        return acc / Double(n)
    }

    /// The objective "student matches teacher": the mean over the inputs the teacher sees of
    /// the MSE between student and teacher embeddings of the same views.
    /// - Throws: `.invalidArgument` when no input has teacher embeddings.
    public static func studentTeacherObjective(_ ctx: LossContext) throws -> Float {
        let pairs = ctx.teacher.indices.filter { ctx.teacher[$0] != nil }
        guard !pairs.isEmpty else { throw NecoError.invalidArgument("DenseMSE: no input has teacher embeddings") }
        var total = 0.0
        let w = 1 / Float(pairs.count)
        for i in pairs {
            let s = ctx.student[i], t = ctx.teacher[i]!
            total += forwardBackward(dStudent: ctx.studentGradient[i].base, student: s.base, target: t.base,
                                     count: s.count, weight: w)
        }
        return Float(total / Double(pairs.count))
    }
}
