import ArgumentParser
import Neco
import NecoCore
import NecoModel

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Inference throughput: images/s, GFLOP/s and peak RSS of the forward pass.",
        discussion: "Without --model it builds ViT-S/14 with 4 registers and random weights (the cost equals trained weights). scripts/bench.sh runs this next to PyTorch and prints the ratio.")
    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Batch sizes, comma-separated.") var batches: String = "1,8"
    @Option(help: "Input size S or HxW.") var size: String = "224"
    @Option(help: "Timed repetitions per batch size (median reported).") var repeats: Int = 5

    func run() throws {
        let model: ViTModel
        if modelOptions.model != nil {
            model = try modelOptions.load()
        } else {
            try modelOptions.applyProcessSettings()
            let params = try ViTParameters(config: .dinov2Small(registers: 4))
            var state: UInt64 = 42
            for i in 0..<params.count {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                params.slab.base[i] = (Float(state >> 40) / Float(1 << 24) - 0.5) * 0.04
            }
            model = ViTModel(params: params, source: "random", scheme: .meta)
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
        print("batch   img/s   ms/batch   GFLOP/s   peak RSS MiB")
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
            var times: [Double] = []
            for _ in 0..<repeats {
                let t0 = monotonicSeconds()
                try input.withUnsafeBufferPointer { ip in
                    try out.withUnsafeMutableBufferPointer { op in
                        try model.forward(out: op.baseAddress!, images: ip.baseAddress!, batch: b, height: h, width: w)
                    }
                }
                times.append(monotonicSeconds() - t0)
            }
            let med = times.sorted()[times.count / 2]
            let ips = Double(b) / med
            let pad = { (s: String, n: Int) in s + String(repeating: " ", count: max(1, n - s.count)) }
            print(pad("\(b)", 8) + pad(fmt(ips, 2), 8) + pad(fmt(med * 1000, 1), 11) + pad(fmt(ips * flopsPerImage / 1e9, 1), 10)
                  + fmt(peakRSSMiB(), 0))
            print("BENCH batch=\(b) img_per_s=\(fmt(ips, 3)) ms_per_batch=\(fmt(med * 1000, 1)) gflops=\(fmt(ips * flopsPerImage / 1e9, 1)) peak_rss_mib=\(fmt(peakRSSMiB(), 0))")
        }
    }
}
