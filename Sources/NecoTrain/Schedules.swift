#if canImport(Glibc)
import Glibc
#endif

/// A per-step cosine schedule with an optional linear warmup, evaluated in Double.
///
/// For step t of T total steps and W warmup steps (NECO-SPEC §5.2; the same formula as NeCo's
/// and DINO's `cosine_scheduler`):
///
///     t < W:   warmupStart + (start − warmupStart) · t / (W − 1)         (numpy linspace; W = 1 gives warmupStart)
///     t ≥ W:   end + ½ (start − end) (1 + cos(π (t − W) / (T − W)))
///     t ≥ T:   end
///
/// Without warmup this is PyTorch's `CosineAnnealingLR` closed form with `eta_min = end`
/// (`lr_t = ½ · lr_0 · (1 + cos(π t / T))` for end = 0), the weight-decay schedule
/// (start 0.04, end 0.5) and the teacher-momentum schedule (start 0.9995, end 1).
public struct CosineSchedule: Sendable, Equatable {
    public var start: Double
    public var end: Double
    /// T: the number of optimisation steps of the whole run (≥ 1).
    public var totalSteps: Int
    /// W: linear warmup steps (0 = none), < T.
    public var warmupSteps: Int
    /// The value at step 0 when there is a warmup.
    public var warmupStart: Double

    public init(start: Double, end: Double, totalSteps: Int, warmupSteps: Int = 0, warmupStart: Double = 0) {
        self.start = start
        self.end = end
        self.totalSteps = totalSteps
        self.warmupSteps = warmupSteps
        self.warmupStart = warmupStart
    }

    public func value(at step: Int) -> Double {
        precondition(step >= 0, "schedule step must be ≥ 0")
        if step < warmupSteps {
            if warmupSteps == 1 { return warmupStart }
            if step == warmupSteps - 1 { return start }  // numpy.linspace sets the endpoint exactly
            return warmupStart + (start - warmupStart) / Double(warmupSteps - 1) * Double(step)
        }
        let span = totalSteps - warmupSteps
        let t = step - warmupSteps
        if span <= 0 || t >= span { return end }
        return end + 0.5 * (start - end) * (1 + cos(Double.pi * Double(t) / Double(span)))
    }
}

/// The four schedules of a NeCo run, all driven by the optimisation step (NECO-SPEC §5.2, §2.6).
public struct TrainingSchedules: Sendable, Equatable {
    public var lrBackbone: CosineSchedule
    public var lrHead: CosineSchedule
    /// Applied to the decaying groups (backbone and head weights); the others use 0.
    public var weightDecay: CosineSchedule
    /// Teacher EMA momentum m_t.
    public var momentum: CosineSchedule
    /// The backbone's learning rate is 0 before this step (`TrainerConfig.headOnlySteps`).
    public var headOnlySteps: Int

    public init(config c: TrainerConfig) {
        lrBackbone = CosineSchedule(start: c.lrBackbone, end: c.finalLR, totalSteps: c.totalSteps,
                                    warmupSteps: c.warmupSteps, warmupStart: 0)
        lrHead = CosineSchedule(start: c.lrHead, end: c.finalLR, totalSteps: c.totalSteps,
                                warmupSteps: c.warmupSteps, warmupStart: 0)
        weightDecay = CosineSchedule(start: c.weightDecayStart, end: c.weightDecayEnd, totalSteps: c.totalSteps)
        momentum = CosineSchedule(start: c.momentumStart, end: c.momentumEnd, totalSteps: c.totalSteps)
        headOnlySteps = c.headOnlySteps
    }

    /// (lr backbone, lr head, weight decay, momentum) at `step`.
    public func values(at step: Int) -> (lrBackbone: Double, lrHead: Double, weightDecay: Double, momentum: Double) {
        (step < headOnlySteps ? 0 : lrBackbone.value(at: step), lrHead.value(at: step), weightDecay.value(at: step),
         momentum.value(at: step))
    }
}
