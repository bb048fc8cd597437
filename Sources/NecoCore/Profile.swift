/// Time per kernel class of the forward (`neco bench --profile`) and of training's backward
/// (`neco train-bench --profile`).
///
/// Off by default: then each probe costs one branch. When on, `measure` adds the wall time of its
/// body to its class (`Attention.forward` adds its own). Process-global and not thread-safe:
/// profile one forward at a time.
public enum Profile {
    public enum Kind: Int, CaseIterable, Sendable {
        case patchEmbed, gemmQKV, gemmProj, gemmFC1, gemmFC2, attention,
             layerNorm, activation, residual, copies,
             backwardLinear, backwardAttention, backwardRecompute, backwardElementwise, backwardEmbedding

        public var label: String {
            switch self {
            case .patchEmbed: "patch embed (im2col + GEMM)"
            case .gemmQKV: "GEMM qkv"
            case .gemmProj: "GEMM attn.proj"
            case .gemmFC1: "GEMM mlp.fc1"
            case .gemmFC2: "GEMM mlp.fc2"
            case .attention: "attention (q·kᵀ, softmax, P·v)"
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

    public static func reset() {
        for i in wall.indices { wall[i] = 0 }
    }

    @inlinable @inline(__always)
    public static func measure<T>(_ kind: Kind, _ body: () throws -> T) rethrows -> T {
        guard enabled else { return try body() }
        let t0 = monotonicSeconds()
        defer { add(kind, monotonicSeconds() - t0) }
        return try body()
    }

    @usableFromInline static func add(_ kind: Kind, _ seconds: Double) { wall[kind.rawValue] += seconds }

    /// Seconds per class since `reset()`.
    public static func report() -> [(Kind, Double)] { Kind.allCases.map { ($0, wall[$0.rawValue]) } }
}
