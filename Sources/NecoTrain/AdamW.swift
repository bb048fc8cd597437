import NecoCore
import NecoModel

#if canImport(Glibc)
import Glibc
#endif

/// Parameter groups of NECO-SPEC §5.1, in this order (the numbering is the spec's).
public enum ParamGroup: Int, Sendable, CaseIterable {
    /// Backbone tensors with ≥ 2 dims, not biases (weights, pos_embed, cls, registers): lr_backbone, scheduled wd.
    case backboneDecay = 0
    /// Backbone biases and 1-D tensors (LayerNorm, LayerScale): lr_backbone, no wd.
    case backboneNoDecay = 1
    /// Head weights: lr_head, scheduled wd.
    case headDecay = 2
    /// Head biases: lr_head, no wd.
    case headNoDecay = 3

    public var decays: Bool { self == .backboneDecay || self == .headDecay }
    public var isHead: Bool { self == .headDecay || self == .headNoDecay }
}

/// A contiguous run of trainable parameters of one group: `count` floats at `params` in the
/// model's own slab, and at `offset` in the flat gradient / moment slabs.
public struct ParamSegment: @unchecked Sendable {
    public let params: UnsafeMutablePointer<Float>
    public let offset: Int
    public let count: Int
    public let group: ParamGroup

    public init(params: UnsafeMutablePointer<Float>, offset: Int, count: Int, group: ParamGroup) {
        self.params = params
        self.offset = offset
        self.count = count
        self.group = group
    }
}

/// AdamW with decoupled weight decay, as `torch.optim.AdamW` (single-tensor path, amsgrad off).
/// Reference: https://pytorch.org/docs/stable/generated/torch.optim.AdamW.html
///
/// Per step t = 1, 2, … and parameter θ with gradient g, for its group's lr and wd:
///
///     θ ← θ · (1 − lr·wd)
///     m ← m + (1 − β1)(g − m)                  (torch's lerp)
///     v ← v·β2 + ((1 − β2)·g)·g
///     θ ← θ − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε)
///
/// Scalars are computed in Double and rounded to Float once, the element arithmetic is Float in
/// PyTorch's order. The first and second moments live in two slabs with the layout of the flat
/// gradient slab; the update is one loop over the trainable segments (frozen parameters have no
/// segment and are never touched: no decay, no moment update).
public final class AdamW: @unchecked Sendable {
    public var beta1: Double
    public var beta2: Double
    public var eps: Double
    /// First moments (same layout as the gradient slab).
    public let m: FloatSlab
    /// Second moments.
    public let v: FloatSlab
    /// Number of updates applied so far (PyTorch's per-parameter `step`).
    public internal(set) var stepCount: Int = 0

    public init(count: Int, beta1: Double = 0.9, beta2: Double = 0.999, eps: Double = 1e-8) throws {
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        m = try FloatSlab(count: count)
        v = try FloatSlab(count: count)
    }

    /// Applies one update. `lr` and `weightDecay` are indexed by `ParamGroup.rawValue`.
    public func update(segments: [ParamSegment], grads: UnsafePointer<Float>, lr: [Double], weightDecay: [Double]) {
        precondition(lr.count == 4 && weightDecay.count == 4, "AdamW.update needs one lr and wd per group")
        stepCount += 1
        let t = Double(stepCount)
        let bc1 = 1 - pow(beta1, t), bc2 = 1 - pow(beta2, t)
        let oneMinusB1 = Float(1 - beta1)
        let b2 = Float(beta2), oneMinusB2 = Float(1 - beta2)
        let bc2Sqrt = Float(bc2.squareRoot()), epsF = Float(eps)
        let mBase = m.base, vBase = v.base
        for seg in segments {
            let g = seg.group.rawValue
            let decay = Float(1 - lr[g] * weightDecay[g])
            let negStep = Float(-(lr[g] / bc1))
            let p = seg.params, gr = grads + seg.offset, mm = mBase + seg.offset, vv = vBase + seg.offset
            Threads.parallelFor(seg.count, minChunk: 1 << 14) { s, e in
                for i in s..<e {
                    let gi = gr[i]
                    var pi = p[i] * decay
                    let mi = mm[i] + oneMinusB1 * (gi - mm[i])
                    let vi = vv[i] * b2 + oneMinusB2 * gi * gi
                    mm[i] = mi
                    vv[i] = vi
                    let denom = vi.squareRoot() / bc2Sqrt + epsF
                    pi = pi + negStep * mi / denom
                    p[i] = pi
                }
            }
        }
    }
}
