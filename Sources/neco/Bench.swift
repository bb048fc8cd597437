import ArgumentParser
import Neco
import NecoCore
import NecoModel

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Inference throughput: images/s, GFLOP/s and peak RSS of the forward pass.",
        discussion: "Without --model it builds ViT-S/14 with 4 registers (or the --config preset, e.g. dinov3_vits16) with random weights (the cost equals trained weights). scripts/bench.sh runs this next to PyTorch and prints the ratio.")
    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Batch sizes, comma-separated.") var batches: String = "1,8"
    @Option(help: "Input size S or HxW.") var size: String = "224"
    @Option(help: "Timed repetitions per batch size (median reported).") var repeats: Int = 5
    @Flag(help: "Also print the time per kernel class (GEMM by layer, attention, LayerNorm, GELU, copies).")
    var profile = false
    @Flag(help: "Skip the peak-FMA probe (about 0.5 s).") var noPeak = false
    @Flag(help: "Instead of the forward: time libneco's own packed-weight GEMM against OpenBLAS on the model's four Linear shapes at each batch size (interleaved, best of --repeats).")
    var gemm = false

    func run() throws {
        let model: ViTModel
        if modelOptions.model != nil {
            model = try modelOptions.load()
        } else {
            try modelOptions.applyProcessSettings()
            var config = ViTConfig.dinov2Small(registers: 4)
            if let name = modelOptions.config {
                guard let c = ViTConfig.preset(name, registers: modelOptions.registers ?? 0) else {
                    throw NecoError.invalidArgument("unknown --config '\(name)' (use \(ViTConfig.presetNames.joined(separator: ", ")))")
                }
                config = c
            }
            var rng = NecoRNG(seed: 42)
            model = try randomBenchmarkModel(config: config, rng: &rng)
            model.prepareForInference()
        }
        let (h, w) = try parseSize(size)
        try model.validateInput(height: h, width: w)
        guard repeats >= 1 else { throw NecoError.invalidArgument("--repeats must be ≥ 1") }
        let bs = try batches.split(separator: ",").map { s -> Int in
            guard let b = Int(s), b >= 1, b <= 256 else { throw NecoError.invalidArgument("bad batch size '\(s)'") }
            return b
        }
        let flopsPerImage = model.flops(height: h, width: w)
        print("model \(model.config.name) (\(model.source)), input \(h)x\(w), \(Threads.count) threads, \(fmt(flopsPerImage / 1e9, 2)) GFLOP/img")
        print("cpu path \(cpuPathDescription())")
        // The machine's measured FMA peak on these threads: the reference for "% of peak".
        let peak = noPeak ? 0 : CPUFeatures.measurePeakGFLOPS()
        if !noPeak {
            print("measured FMA peak \(fmt(peak, 1)) GFLOP/s on \(Threads.count) threads")
            print("PEAK gflops=\(fmt(peak, 1)) threads=\(Threads.count) path=\(CPUFeatures.best.name)")
        }
        if gemm {
            try runGemm(model: model, batches: bs, height: h, width: w, peak: peak)
            return
        }
        print("batch   img/s   ms/batch   GFLOP/s   % peak   CPU s/img   peak RSS MiB")
        for b in bs {
            let t = model.tokenCount(height: h, width: w)
            var input = [Float](repeating: 0, count: b * 3 * h * w)
            for i in 0..<input.count { input[i] = Float((i * 7919) % 1000) / 500 - 1 }
            var out = [Float](repeating: 0, count: b * t * model.config.embedDim)
            try input.withUnsafeBufferPointer { ip in
                try out.withUnsafeMutableBufferPointer { op in
                    try model.forward(out: op.baseAddress!, images: ip.baseAddress!, batch: b, height: h, width: w)
                }
            }
            var times: [Double] = [], cpu: [Double] = []
            for _ in 0..<repeats {
                let t0 = monotonicSeconds(), c0 = processCPUSeconds()
                try input.withUnsafeBufferPointer { ip in
                    try out.withUnsafeMutableBufferPointer { op in
                        try model.forward(out: op.baseAddress!, images: ip.baseAddress!, batch: b, height: h, width: w)
                    }
                }
                times.append(monotonicSeconds() - t0)
                cpu.append(processCPUSeconds() - c0)
            }
            let med = times.sorted()[times.count / 2]
            let cpuPerImage = cpu.sorted()[cpu.count / 2] / Double(b)
            let ips = Double(b) / med
            let gflops = ips * flopsPerImage / 1e9
            let pct = peak > 0 ? 100 * gflops / peak : 0
            print(column("\(b)", 8) + column(fmt(ips, 2), 8) + column(fmt(med * 1000, 1), 11) + column(fmt(gflops, 1), 10)
                  + column(fmt(pct, 1), 9) + column(fmt(cpuPerImage, 3), 12) + fmt(peakRSSMiB(), 0))
            print("BENCH batch=\(b) img_per_s=\(fmt(ips, 3)) ms_per_batch=\(fmt(med * 1000, 1)) gflops=\(fmt(gflops, 1)) "
                  + "pct_peak=\(fmt(pct, 1)) cpu_s_per_img=\(fmt(cpuPerImage, 4)) peak_rss_mib=\(fmt(peakRSSMiB(), 0))")
            if profile {
                Profile.reset()
                Profile.enabled = true
                var total = 0.0
                for _ in 0..<repeats {
                    let t0 = monotonicSeconds()
                    try input.withUnsafeBufferPointer { ip in
                        try out.withUnsafeMutableBufferPointer { op in
                            try model.forward(out: op.baseAddress!, images: ip.baseAddress!, batch: b, height: h, width: w)
                        }
                    }
                    total += monotonicSeconds() - t0
                }
                Profile.enabled = false
                print("  profile, batch \(b) (wall time per forward, mean of \(repeats); a GEMM row includes its bias fill):")
                printProfile(total: total, runs: repeats, other: "other (dispatch, gaps)",
                             flops: model.flopsByKind(height: h, width: w).mapValues { $0 * Double(b) }, peak: peak)
            }
        }
    }

    /// `--gemm`: the Linear shapes of one forward at each batch size, own kernel against OpenBLAS.
    func runGemm(model: ViTModel, batches: [Int], height: Int, width: Int, peak: Double) throws {
        let c = model.config, d = c.embedDim
        let f = c.ffn == .swiglu ? 2 * c.mlpHidden : c.mlpHidden
        print("GEMM GFLOP/s, best of \(repeats) (own/BLAS = own kernel, weights packed once, over OpenBLAS; "
              + "the dX and dW rows are training's backward products, the own kernel packing per call)")
        print(column("layer", 12) + column("rows x out x in", 20) + column("OpenBLAS", 10) + column("own", 10)
              + column("own+pack", 10) + column("own/BLAS", 10) + "% peak (own)")
        for b in batches {
            let rows = b * model.tokenCount(height: height, width: width)
            let shapes = [GemmBenchmark.Shape(name: "qkv", rows: rows, outDim: 3 * d, inDim: d),
                          .init(name: "attn.proj", rows: rows, outDim: d, inDim: d),
                          .init(name: "mlp.fc1", rows: rows, outDim: f, inDim: d),
                          .init(name: "mlp.fc2", rows: rows, outDim: d, inDim: c.mlpHidden)]
            for t in try GemmBenchmark.run(shapes, repeats: repeats) {
                let s = t.shape
                let blas = s.flops / t.openBLAS / 1e9, own = s.flops / t.packedOnce / 1e9
                let perCall = s.flops / t.packedPerCall / 1e9
                print(column(s.name, 12) + column("\(s.rows)x\(s.outDim)x\(s.inDim)", 20) + column(fmt(blas, 1), 10)
                      + column(fmt(own, 1), 10) + column(fmt(perCall, 1), 10) + column(fmt(own / blas, 3), 10)
                      + (peak > 0 ? fmt(100 * own / peak, 1) : "-"))
                print("GEMM layer=\(s.name) batch=\(b) rows=\(s.rows) out=\(s.outDim) in=\(s.inDim) blas_gflops=\(fmt(blas, 1)) "
                      + "own_gflops=\(fmt(own, 1)) own_pack_gflops=\(fmt(perCall, 1)) ratio=\(fmt(own / blas, 3)) "
                      + "max_diff=\(t.maxDifference)")
            }
            // Training's backward products of the same shapes (the own kernel packs per call).
            for t in try GemmBenchmark.runBackward(shapes, repeats: repeats) {
                let s = t.shape
                for (what, blasTime, ownTime) in [("dX", t.inputBLAS, t.inputOwn), ("dW", t.weightBLAS, t.weightOwn)] {
                    let blas = s.flops / blasTime / 1e9, own = s.flops / ownTime / 1e9
                    print(column("\(s.name) \(what)", 12) + column("\(s.rows)x\(s.outDim)x\(s.inDim)", 20) + column(fmt(blas, 1), 10)
                          + column("-", 10) + column(fmt(own, 1), 10) + column(fmt(own / blas, 3), 10)
                          + (peak > 0 ? fmt(100 * own / peak, 1) : "-"))
                    print("GEMM layer=\(s.name) product=\(what) batch=\(b) rows=\(s.rows) out=\(s.outDim) in=\(s.inDim) "
                          + "blas_gflops=\(fmt(blas, 1)) own_pack_gflops=\(fmt(own, 1)) ratio=\(fmt(own / blas, 3))")
                }
            }
        }
    }
}

/// A model of `config` with every weight uniform in ±0.02 from `rng` (the qkv bias masked where
/// the model fixes it at zero): the random weights of `bench` and `train-bench`, whose cost
/// equals trained weights'.
func randomBenchmarkModel(config: ViTConfig, rng: inout NecoRNG) throws -> ViTModel {
    let params = try ViTParameters(config: config)
    for i in 0..<params.count { params.slab.base[i] = rng.uniform(-0.02, 0.02) }
    for blk in params.layout.blocks { RoPE.maskBias(params[blk.qkvB], mode: config.qkvBias, dim: config.embedDim) }
    return ViTModel(params: params, source: "random", scheme: .meta)
}

/// The rows of `Profile.report()` that took time, largest first, per run (in ms) and as shares of
/// `total` seconds over `runs` runs, then what no class accounts for as `other`. Classes with
/// known multiply-adds (`flops`, per run) also get GFLOP/s and, with a measured `peak`, % of it.
func printProfile(total: Double, runs: Int, other: String, flops: [Profile.Kind: Double] = [:], peak: Double = 0) {
    let rows = Profile.report().filter { $0.1 > 0 }
    let accounted = rows.reduce(0) { $0 + $1.1 }
    for (kind, sec) in rows.sorted(by: { $0.1 > $1.1 }) {
        var line = "    " + column(kind.label, 36) + column(fmt(sec / Double(runs) * 1000, 2) + " ms", 12)
            + column(fmt(100 * sec / total, 1) + " %", 9)
        if let f = flops[kind] {
            let rate = f * Double(runs) / sec / 1e9
            line += column(fmt(rate, 1) + " GFLOP/s", 16) + (peak > 0 ? fmt(100 * rate / peak, 1) + " % of peak" : "")
        }
        while line.hasSuffix(" ") { line.removeLast() }
        print(line)
    }
    print("    " + column(other, 36) + column(fmt((total - accounted) / Double(runs) * 1000, 2) + " ms", 12)
          + fmt(100 * (total - accounted) / total, 1) + " %")
}
