/// Time per kernel class of the forward (`neco bench --profile`) and of training's backward
/// (`neco train-bench --profile`).
///
/// Off by default: then each probe costs one branch. When on, `measure` adds the wall time of its
/// body to its class, and `Attention.forward` adds its workers' thread time per phase (scores
/// GEMM, softmax, values GEMM) to per-worker slots; `report` splits the attention's wall time in
/// proportion to those. Process-global and not thread-safe: profile one forward at a time.
public enum Profile {
    public enum Kind: Int, CaseIterable, Sendable {
        case patchEmbed, gemmQKV, gemmProj, gemmFC1, gemmFC2, attnScores, attnSoftmax, attnValues,
             layerNorm, activation, residual, copies,
             backwardLinear, backwardAttention, backwardRecompute, backwardElementwise, backwardEmbedding

        public var label: String {
            switch self {
            case .patchEmbed: "patch embed (im2col + GEMM)"
            case .gemmQKV: "GEMM qkv"
            case .gemmProj: "GEMM attn.proj"
            case .gemmFC1: "GEMM mlp.fc1"
            case .gemmFC2: "GEMM mlp.fc2"
            case .attnScores: "attention GEMM q·kᵀ"
            case .attnSoftmax: "attention softmax"
            case .attnValues: "attention GEMM P·v"
            case .layerNorm: "LayerNorm"
            case .activation: "GELU (SwiGLU)"
            case .residual: "LayerScale + residual"
            case .copies: "tokens, positions, copies"
            case .backwardLinear: "backward GEMMs dX, dW (Linear)"
            case .backwardAttention: "backward attention (P recomputed)"
            case .backwardRecompute: "backward recompute LN, GELU, fc1"
            case .backwardElementwise: "backward LN, GELU, residual, sums"
            case .backwardEmbedding: "backward patch embedding"
            }
        }
    }

    nonisolated(unsafe) public static var enabled = false
    nonisolated(unsafe) static var wall = [Double](repeating: 0, count: Kind.allCases.count)
    nonisolated(unsafe) static var attentionWall = 0.0
    static let slots = 256
    /// Thread seconds of the attention phases, [worker slot][phase 0..<3].
    nonisolated(unsafe) static var attentionThread = UnsafeMutablePointer<Double>.allocate(capacity: 256 * 3)

    public static func reset() {
        for i in wall.indices { wall[i] = 0 }
        attentionWall = 0
        attentionThread.initialize(repeating: 0, count: slots * 3)
    }

    @inlinable @inline(__always)
    public static func measure<T>(_ kind: Kind, _ body: () throws -> T) rethrows -> T {
        guard enabled else { return try body() }
        let t0 = monotonicSeconds()
        defer { add(kind, monotonicSeconds() - t0) }
        return try body()
    }

    @usableFromInline static func add(_ kind: Kind, _ seconds: Double) { wall[kind.rawValue] += seconds }

    /// Attention's wall time (the whole call).
    @usableFromInline static func addAttention(_ seconds: Double) { attentionWall += seconds }

    /// One worker's time in an attention phase (0 scores, 1 softmax, 2 values).
    @usableFromInline static func addAttentionPhase(slot: Int, phase: Int, _ seconds: Double) {
        if slot < slots { attentionThread[slot * 3 + phase] += seconds }
    }

    /// Seconds per class since `reset()`, attention split by its workers' phase times.
    public static func report() -> [(Kind, Double)] {
        var out = wall
        var phase = [0.0, 0.0, 0.0]
        for s in 0..<slots { for p in 0..<3 { phase[p] += attentionThread[s * 3 + p] } }
        let total = phase.reduce(0, +)
        if total > 0 {
            out[Kind.attnScores.rawValue] += attentionWall * phase[0] / total
            out[Kind.attnSoftmax.rawValue] += attentionWall * phase[1] / total
            out[Kind.attnValues.rawValue] += attentionWall * phase[2] / total
        }
        return Kind.allCases.map { ($0, out[$0.rawValue]) }
    }
}
