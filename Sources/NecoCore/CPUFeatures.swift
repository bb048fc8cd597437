import CNecoKernels

/// Which kernel path runs: chosen once at run time from the CPU (CPUID and the OS's saved register
/// state on x86-64), never at build time, so one binary runs on every x86-64 or arm64 machine.
///
/// Paths: `.portable` (the architecture's baseline: SSE2 on x86-64, NEON on arm64), `.avx2`
/// (AVX2 + FMA), `.avx512` (AVX-512F/DQ/BW/VL). The best supported path is the default. The
/// environment variable `NECO_CPU=portable|avx2|avx512` forces a path at start-up; a path this CPU
/// lacks, or an unknown name, falls back to the best supported path below it and prints one
/// warning line on stderr (also in `note`), so the library never dies with SIGILL.
///
/// The paths compute the same formulas; results differ only by float rounding (fused
/// multiply-adds, lane counts of reductions). OpenBLAS picks its own GEMM kernels by CPU.
public enum CPUFeatures {
    public enum Path: Int, CaseIterable, Sendable {
        case portable = 0, avx2 = 1, avx512 = 2

        /// "portable" ("neon" on arm64), "avx2", "avx512".
        public var name: String { String(cString: nk_cpu_path_name(Int32(rawValue))) }

        /// Parses a path name as NECO_CPU spells it.
        public init?(name: String) {
            switch name {
            case "portable", "neon": self = .portable
            case "avx2": self = .avx2
            case "avx512": self = .avx512
            default: return nil
            }
        }
    }

    /// The active path.
    public static var path: Path { Path(rawValue: Int(nk_cpu_path())) ?? .portable }
    /// The best path this machine supports.
    public static var best: Path { Path(rawValue: Int(nk_cpu_best())) ?? .portable }
    /// The paths this machine supports, portable first.
    public static var available: [Path] { Path.allCases.filter { nk_cpu_supported(Int32($0.rawValue)) != 0 } }
    /// The warning about NECO_CPU given at start-up, or "".
    public static var note: String { String(cString: nk_cpu_note()) }

    /// Switches the active path (tests, benchmarks). Process-global and not thread-safe against
    /// kernels running at the same time (like `Threads.setCount`).
    /// - Throws: `.invalidArgument` when this CPU does not support `path`.
    public static func setPath(_ path: Path) throws {
        guard nk_cpu_set_path(Int32(path.rawValue)) == 0 else {
            throw NecoError.invalidArgument("CPU path \(path.name) is not supported by this CPU "
                                            + "(available: \(available.map(\.name).joined(separator: ", ")))")
        }
    }

    /// Measured peak of fused multiply-adds: `Threads.count` workers each run independent FMA chains on
    /// the widest registers of the best supported path for about `seconds`; their total in GFLOP/s
    /// (2 FLOPs per lane per FMA), the best of `trials` such runs (other load only ever slows a run
    /// down, so the fastest is the machine's peak; one run that met a slow spell would make every
    /// "% of peak" too high). The reference for "% of peak" in the benchmarks.
    public static func measurePeakGFLOPS(seconds: Double = 0.1, trials: Int = 5) -> Double {
        let path = Int32(best.rawValue)
        // Calibrate on one thread: iterations for about `seconds`.
        var iters = 1 << 16
        while true {
            let t0 = monotonicSeconds()
            _ = nk_fma_probe(path, iters)
            if monotonicSeconds() - t0 > 0.02 || iters > 1 << 30 { break }
            iters *= 2
        }
        let t1 = monotonicSeconds()
        _ = nk_fma_probe(path, iters)
        let per = monotonicSeconds() - t1
        let n = max(1, Int(Double(iters) * seconds / max(per, 1e-6)))
        let workers = Threads.count
        let flops = UnsafeMutablePointer<Double>.allocate(capacity: workers)
        defer { flops.deallocate() }
        var peak = 0.0
        for _ in 0..<max(1, trials) {
            flops.initialize(repeating: 0, count: workers)
            let t0 = monotonicSeconds()
            Threads.parallelFor(workers) { s, e in
                for i in s..<e { flops[i] = nk_fma_probe(path, n) }
            }
            let dt = monotonicSeconds() - t0
            var total = 0.0
            for i in 0..<workers { total += flops[i] }
            peak = max(peak, total / dt / 1e9)
        }
        return peak
    }
}
