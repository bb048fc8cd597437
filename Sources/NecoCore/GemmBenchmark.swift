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

    /// Best-of-repeats seconds per backward product of one Linear shape: the input gradient
    /// dX (rows, in) = dY · W and the weight gradient dW (out, in) += dYᵀ · X.
    public struct BackwardTiming: Sendable {
        public let shape: Shape
        /// OpenBLAS, and the own kernel with W packed transposed per call (`Linear.inputGradient`).
        public let inputBLAS: Double, inputOwn: Double
        /// OpenBLAS (`transA`), and the own kernel (`Gemm.weightGradient`).
        public let weightBLAS: Double, weightOwn: Double
    }

    /// Times the two backward products of each shape, OpenBLAS and the own kernel interleaved per
    /// repetition (one untimed round first); `Threads.count` workers for both.
    /// - Throws: `.outOfMemory`.
    public static func runBackward(_ shapes: [Shape], repeats: Int) throws -> [BackwardTiming] {
        var results: [BackwardTiming] = []
        for s in shapes {
            let x = try Memory.allocate(s.rows * s.inDim, of: Float.self, "benchmark input")
            let dy = try Memory.allocate(s.rows * s.outDim, of: Float.self, "benchmark output gradient")
            let w = try Memory.allocate(s.outDim * s.inDim, of: Float.self, "benchmark weight")
            let dx = try Memory.allocate(s.rows * s.inDim, of: Float.self, "benchmark input gradient")
            let dw = try Memory.allocate(s.outDim * s.inDim, of: Float.self, "benchmark weight gradient")
            let pack = try Memory.allocate(Gemm.packedCount(outDim: s.inDim, inDim: s.outDim) ?? 1, of: Float.self,
                                           "benchmark packing buffer")
            defer { free(x); free(dy); free(w); free(dx); free(dw); free(pack) }
            var rng = NecoRNG(seed: 43)
            for (p, n) in [(x, s.rows * s.inDim), (dy, s.rows * s.outDim), (w, s.outDim * s.inDim)] {
                for i in 0..<n { p[i] = rng.uniform(-1, 1) }
            }
            dw.update(repeating: 0, count: s.outDim * s.inDim)
            var best = [Double](repeating: .infinity, count: 4)
            for r in 0...repeats {
                let runs: [() -> Void] = [
                    { Gemm.gemm(out: dx, a: dy, b: w, m: s.rows, n: s.inDim, k: s.outDim) },
                    { Linear.inputGradient(dx, dOut: dy, weight: w, rows: s.rows, inDim: s.inDim, outDim: s.outDim, pack: pack) },
                    { Gemm.gemm(out: dw, a: dy, b: x, m: s.outDim, n: s.inDim, k: s.rows, transA: true, beta: 1) },
                    { Gemm.weightGradient(out: dw, a: dy, b: x, m: s.outDim, n: s.inDim, k: s.rows, accumulate: true) },
                ]
                for (i, run) in runs.enumerated() {
                    let t0 = monotonicSeconds()
                    run()
                    if r > 0 { best[i] = min(best[i], monotonicSeconds() - t0) }
                }
            }
            results.append(BackwardTiming(shape: s, inputBLAS: best[0], inputOwn: best[1], weightBLAS: best[2], weightOwn: best[3]))
        }
        return results
    }
}
