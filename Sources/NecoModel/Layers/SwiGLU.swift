import NecoCore

/// Gating of Meta's fused SwiGLU feed-forward (DINOv2 g/14):
///     x1, x2 = split(w12(x), 2);  hidden = silu(x1) · x2,  silu(a) = a · σ(a)
/// Shapes: gates (rows, 2H) with x1 = columns 0..<H, x2 = H..<2H; hidden (rows, H).
/// Backward accumulates into dGates.
public enum SwiGLU {
    public static func forward(hidden: UnsafeMutablePointer<Float>, gates: UnsafePointer<Float>, rows: Int, width h: Int) {
        Threads.parallelFor(rows, minChunk: 16) { s, e in
            for r in s..<e {
                let g = gates + r * 2 * h, out = hidden + r * h
                for i in 0..<h {
                    let a = g[i]
                    out[i] = a / (1 + FastMath.exp(-a)) * g[h + i]
                }
            }
        }
    }

    public static func backward(dGates: UnsafeMutablePointer<Float>, dHidden: UnsafePointer<Float>,
                                gates: UnsafePointer<Float>, rows: Int, width h: Int) {
        Threads.parallelFor(rows, minChunk: 16) { s, e in
            for r in s..<e {
                let g = gates + r * 2 * h, dg = dGates + r * 2 * h, dy = dHidden + r * h
                for i in 0..<h {
                    let a = g[i], b = g[h + i]
                    let sig = 1 / (1 + FastMath.exp(-a))
                    let silu = a * sig
                    dg[i] += dy[i] * b * (sig + a * sig * (1 - sig))
                    dg[h + i] += dy[i] * silu
                }
            }
        }
    }
}
