#if canImport(Glibc)
import Glibc
#endif

/// Times libneco's own packed-weight GEMM (`Gemm.linear`) against OpenBLAS (`Gemm.gemm` with the
/// bias, as `Linear.forward` calls it) on Linear shapes, interleaved: for each shape and repetition
/// OpenBLAS runs, then the own kernel on weights packed once, then the own kernel with the packing
/// counted (`Gemm.pack` per call, as training and unpacked models run it). `neco bench --gemm` prints it.
public enum GemmBenchmark {
    /// One Linear: out (rows, outDim) = x (rows, inDim) · Wᵀ + b.
    public struct Shape: Sendable {
        public let name: String
        public let rows: Int, outDim: Int, inDim: Int
        public init(name: String, rows: Int, outDim: Int, inDim: Int) {
            self.name = name
            self.rows = rows
            self.outDim = outDim
            self.inDim = inDim
        }
        /// Multiply-adds × 2.
        public var flops: Double { 2 * Double(rows) * Double(outDim) * Double(inDim) }
    }

    /// Best-of-repeats seconds per product.
    public struct Timing: Sendable {
        public let shape: Shape
        public let openBLAS: Double
        /// Weights packed once beforehand.
        public let packedOnce: Double
        /// Packing the weights plus the product.
        public let packedPerCall: Double
        /// The largest |own − OpenBLAS| over the output (a sanity check, not a tolerance).
        public let maxDifference: Float
    }

    /// Random inputs in [-1, 1) from a fixed seed (`NecoRNG`); `Threads.count` workers for every engine.
    /// - Throws: `.outOfMemory`.
    public static func run(_ shapes: [Shape], repeats: Int) throws -> [Timing] {
        var results: [Timing] = []
        for s in shapes {
            let x = try Memory.allocate(s.rows * s.inDim, of: Float.self, "benchmark input")
            let w = try Memory.allocate(s.outDim * s.inDim, of: Float.self, "benchmark weight")
            let bias = try Memory.allocate(s.outDim, of: Float.self, "benchmark bias")
            let outBLAS = try Memory.allocate(s.rows * s.outDim, of: Float.self, "benchmark output")
            let outOwn = try Memory.allocate(s.rows * s.outDim, of: Float.self, "benchmark output")
            defer { free(x); free(w); free(bias); free(outBLAS); free(outOwn) }
            var rng = NecoRNG(seed: 42)
            func fill(_ p: UnsafeMutablePointer<Float>, _ n: Int) {
                for i in 0..<n { p[i] = rng.uniform(-1, 1) }
            }
            fill(x, s.rows * s.inDim)
            fill(w, s.outDim * s.inDim)
            fill(bias, s.outDim)
            let packed = try PackedWeight(w, outDim: s.outDim, inDim: s.inDim)
            let buffer = try Memory.allocate(packed.bytes / MemoryLayout<Float>.stride, of: Float.self, "benchmark packing buffer")
            defer { free(buffer) }
            var best = (Double.infinity, Double.infinity, Double.infinity)
            // One untimed round warms caches and the threads' scratch.
            for r in 0...repeats {
                var t0 = monotonicSeconds()
                Gemm.gemm(out: outBLAS, a: x, b: w, m: s.rows, n: s.outDim, k: s.inDim, transB: true, bias: bias)
                var t1 = monotonicSeconds()
                if r > 0 { best.0 = min(best.0, t1 - t0) }
                t0 = monotonicSeconds()
                Gemm.linear(out: outOwn, input: x, weight: packed, bias: bias, rows: s.rows)
                t1 = monotonicSeconds()
                if r > 0 { best.1 = min(best.1, t1 - t0) }
                t0 = monotonicSeconds()
                let perCall = Gemm.pack(w, outDim: s.outDim, inDim: s.inDim, into: buffer)
                Gemm.linear(out: outOwn, input: x, weight: perCall, bias: bias, rows: s.rows)
                t1 = monotonicSeconds()
                if r > 0 { best.2 = min(best.2, t1 - t0) }
            }
            var diff: Float = 0
            for i in 0..<(s.rows * s.outDim) { diff = max(diff, abs(outOwn[i] - outBLAS[i])) }
            results.append(Timing(shape: s, openBLAS: best.0, packedOnce: best.1, packedPerCall: best.2,
                                  maxDifference: diff))
        }
        return results
    }
}
