import NecoCore

/// The teacher's exponential moving average of the student (NECO-SPEC §2.6):
///
///     θ_t ← m · θ_t + (1 − m) · θ_s
///
/// over every parameter (backbone and head), with m from the momentum schedule (0.9995 → 1).
/// Float arithmetic in PyTorch's order (`param_k.mul_(m).add_((1 - m) * param_q)`): m and 1 − m
/// are computed in Double and rounded once.
///
/// Timing: NeCo runs it inside `training_step`, after the loss and before the optimiser update,
/// so the teacher averages the student weights that produced this step's loss; `Trainer` calls it
/// after backward and before AdamW, which is the same.
public enum EMA {
    /// teacher (count) ← m · teacher + (1 − m) · student (count).
    public static func update(teacher: UnsafeMutablePointer<Float>, student: UnsafePointer<Float>, count: Int,
                              momentum: Double) {
        let m = Float(momentum), w = Float(1 - momentum)
        Threads.parallelFor(count, minChunk: 1 << 15) { s, e in
            for i in s..<e { teacher[i] = teacher[i] * m + w * student[i] }
        }
    }
}
