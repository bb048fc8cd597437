import CNecoKernels
import NecoCore

/// Gating of Meta's fused SwiGLU feed-forward (DINOv2 g/14):
///     x1, x2 = split(w12(x), 2);  hidden = silu(x1) · x2,  silu(a) = a · σ(a)
/// Shapes: gates (rows, 2H) with x1 = columns 0..<H, x2 = H..<2H; hidden (rows, H).
/// Backward accumulates into dGates. Arithmetic in CNecoKernels (σ through its exp).
public enum SwiGLU {
    public static func forward(hidden: UnsafeMutablePointer<Float>, gates: UnsafePointer<Float>, rows: Int, width h: Int) {
        Threads.parallelFor(rows, minChunk: 16) { s, e in
            nk_swiglu_rows(hidden + s * h, gates + s * 2 * h, e - s, h)
        }
    }

    public static func backward(dGates: UnsafeMutablePointer<Float>, dHidden: UnsafePointer<Float>,
                                gates: UnsafePointer<Float>, rows: Int, width h: Int) {
        Threads.parallelFor(rows, minChunk: 16) { s, e in
            nk_swiglu_backward_rows(dGates + s * 2 * h, dHidden + s * h, gates + s * 2 * h, e - s, h)
        }
    }
}
