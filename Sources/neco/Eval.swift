import ArgumentParser
import Neco
import NecoCore
import NecoEval
import NecoImage
import NecoModel

#if canImport(Glibc)
import Glibc
#endif

// `neco eval`: the three frozen-feature protocols of NECO-SPEC §6 on a benchmark folder
// (scripts/build_benchmark.py), and `neco bench-index`: patch-index throughput.

/// Hummingbird's normalisation std (P22: the last value is 0.255, sic).
let hummingbirdStd: (Float, Float, Float) = (0.229, 0.224, 0.255)

/// Models for the evaluations: a file (plain backbone, libneco training checkpoint or exported
/// model) or a run directory (its checkpoint.safetensors), the default model, or a randomly
/// initialised one. Files load through `ModelOptions.load` → `WeightLoader.load(path:)`, which
/// takes a checkpoint's student backbone with its recorded heads and position rule.
struct EvalModelOptions: ParsableArguments {
    @OptionGroup var modelOptions: ModelOptions
    @Flag(help: "Use a randomly initialised model of --config (default vits14) instead of weights: the floor.")
    var randomInit = false
    @Option(help: "Seed of --random-init.") var initSeed: UInt64 = 0
    @Option(help: "A second model (file) to compare with: both are evaluated and the difference printed.")
    var compare: String?

    func models() throws -> [ViTModel] {
        var out = [try primary()]
        if let c = compare {
            var o = modelOptions
            o.model = c
            out.append(try o.load())
        }
        return out
    }

    func primary() throws -> ViTModel {
        if randomInit {
            guard modelOptions.model == nil else { throw NecoError.invalidArgument("give either --model or --random-init") }
            try modelOptions.applyProcessSettings()
            let name = modelOptions.config ?? "vits14"
            guard let c = ViTConfig.preset(name, registers: modelOptions.registers ?? 0) else {
                throw NecoError.invalidArgument("unknown --config '\(name)' (use \(ViTConfig.presetNames.joined(separator: ", ")))")
            }
            return try RandomViT.make(config: c, seed: initSeed)
        }
        return try modelOptions.load()
    }
}

/// A randomly initialised ViT, as DINOv2 initialises it for training: linear weights, position
/// embedding and registers ~ N(0, 0.02²) (timm `trunc_normal_(std=.02)`, bounds ±2 never hit),
/// biases 0, the patch projection with PyTorch's Conv2d default U(±1/√(C·P²)), LayerNorm 1 / 0,
/// LayerScale 1e-5 (DINOv2's `layerscale` training setting), CLS ~ N(0, 1e-12).
enum RandomViT {
    static func make(config: ViTConfig, seed: UInt64, layerScale: Float = 1e-5) throws -> ViTModel {
        let params = try ViTParameters(config: config)
        var rng = EvalRNG(seed: seed)
        let fanIn = Float(config.inChannels * config.patchSize * config.patchSize)
        for spec in params.layout.specs {
            let p = params.slab.base + spec.offset
            let n = spec.count
            let name = spec.name
            if name.hasPrefix("patch_embed.proj.") {
                let bound = 1 / fanIn.squareRoot()
                for i in 0..<n { p[i] = rng.uniform(-bound, bound) }
            } else if name.hasSuffix(".gamma") {
                for i in 0..<n { p[i] = layerScale }
            } else if name == "cls_token" {
                for i in 0..<n { p[i] = Float(rng.normal() * 1e-6) }
            } else if name.hasSuffix(".bias") {
                for i in 0..<n { p[i] = 0 }
            } else if spec.shape.count == 1 {  // LayerNorm weights
                for i in 0..<n { p[i] = 1 }
            } else {                            // linear weights, pos_embed, register tokens
                for i in 0..<n { p[i] = Float(rng.normal() * 0.02) }
            }
        }
        return ViTModel(params: params, source: "random init (seed \(seed))", scheme: .meta)
    }
}

/// Features of benchmark images at S×S with their label maps resized (nearest) to S×S.
struct SplitFeatures {
    var features: [Float]       // (I, h, w, D)
    var labels: [LabelMap]      // I maps of S×S
    var names: [String]
    var images: Int
    var gridHeight: Int
    var gridWidth: Int
    var dim: Int
    func of(_ i: Int) -> ArraySlice<Float> {
        let n = gridHeight * gridWidth * dim
        return features[(i * n)..<((i + 1) * n)]
    }
}

/// Extraction with a per-(split, normalisation) cache: the protocols share features.
final class FeatureCache {
    let extractor: FeatureExtractor
    let bench: Benchmark
    let size: Int
    let batch: Int
    var cache: [String: SplitFeatures] = [:]

    init(model: ViTModel, bench: Benchmark, size: Int, batch: Int) {
        extractor = FeatureExtractor(model: model)
        self.bench = bench
        self.size = size
        self.batch = batch
    }

    func features(_ samples: [Benchmark.Sample], split: String, hummingbird: Bool) throws -> SplitFeatures {
        let key = split + (hummingbird ? "/hbird" : "/imagenet")
        if let f = cache[key] { return f }
        let std = hummingbird ? hummingbirdStd : Preprocess.imageNetStd
        let mode = ResizeMode.stretch(height: size, width: size)
        var feats: [Float] = []
        var labels: [LabelMap] = []
        var gh = 0, gw = 0, dim = 0
        let t0 = monotonicSeconds()
        var start = 0
        while start < samples.count {
            let chunk = Array(samples[start..<min(samples.count, start + batch)])
            var data: [Float] = []
            for s in chunk {
                let (img, lab) = try bench.load(s)
                data += try Preprocess.tensor(img, mode: mode, std: std).data
                labels.append(lab.resizedNearest(width: size, height: size, rule: .pil))
            }
            let f = try data.withUnsafeBufferPointer {
                try extractor.extract(tensor: $0.baseAddress!, batch: chunk.count, height: size, width: size)
            }
            gh = f.gridHeight; gw = f.gridWidth; dim = f.dim
            feats += f.patches
            start += chunk.count
            writeStderr("\r  features \(split) [\(start)/\(samples.count)] \(fmt(Double(start) / max(monotonicSeconds() - t0, 1e-9), 1)) img/s")
        }
        writeStderr("\n")
        let out = SplitFeatures(features: feats, labels: labels, names: samples.map(\.name), images: samples.count,
                                gridHeight: gh, gridWidth: gw, dim: dim)
        cache[key] = out
        return out
    }
}

/// One line of the results: a protocol setting and its per-class IoU.
struct EvalRow {
    var protocolName: String
    var setting: String
    var perClass: [Double]
    var mIoU: Double
    var extra: String = ""
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate frozen dense features: in-context segmentation, linear probe, overclustering (mIoU).",
        discussion: """
            Protocols (NECO-SPEC §6, scaled for a CPU; docs/EVAL.md lists every difference):
              incontext  Hummingbird: memory of all training patches with soft labels, k = 30 neighbours,
                         softmax(cos / 0.02) vote, bilinear upsampling, Hungarian matching, mIoU.
              linear     1x1 conv probe on frozen features, SGD (lr 0.01, momentum 0.9, wd 1e-4,
                         25 epochs, step x0.1 at 20), CE on 100x100 masks; mIoU without matching.
              cluster    standardise, PCA 50, k-means (100 iterations, 5 restarts) for each K and seed;
                         K = classes: Hungarian; K > classes: many-to-one by precision; mean over seeds.
            The benchmark folder comes from scripts/build_benchmark.py (run by scripts/setup.sh):
            $NECO_CACHE/bench/synth (photo cut-outs on photos) and $NECO_CACHE/bench/voc (the real VOC scene).
            """)
    @OptionGroup var evalModel: EvalModelOptions
    @Option(help: "Protocol: incontext, linear, cluster or all.") var bench: String = "all"
    @Option(help: "Benchmark folder (default $NECO_CACHE/bench/synth).") var data: String?
    @Option(help: "Square model input side in pixels (a multiple of the patch size).") var size: Int = 224
    @Option(help: "Images per forward pass.") var batch: Int = 8
    @Option(help: "Use at most this many training images (0 = all).") var maxTrain: Int = 0
    @Option(help: "Use at most this many validation images (0 = all).") var maxVal: Int = 0
    @Option(help: "In-context: neighbours k.") var k: Int = 30
    @Option(help: "In-context: softmax temperature.") var temperature: Float = 0.02
    @Option(help: "In-context: memory size in patches (Hummingbird memory_size: each training image keeps size / images patches, rare classes first); 0 = every patch.")
    var memorySize: Int = 0
    @Option(help: "Linear probe: epochs.") var epochs: Int = 25
    @Option(help: "Linear probe: images per SGD step.") var probeBatch: Int = 8
    @Option(help: "Linear probe: learning rate.") var lr: Float = 0.01
    @Option(help: "Clustering: cluster counts, comma-separated; 'gt' = the number of classes. Default gt,300,500 (NECO-SPEC §6.3), leaving out counts above the number of validation patches.")
    var clusters: String?
    @Option(help: "Clustering: number of seeds (0, 1, ...).") var seeds: Int = 5
    @Option(help: "Clustering: k-means iterations.") var iterations: Int = 100
    @Option(help: "Clustering: k-means restarts per seed (best objective kept).") var redo: Int = 5
    @Flag(help: "Print per-class IoU.") var perClass = false

    func run() throws {
        let protocols: [String]
        switch bench {
        case "all": protocols = ["incontext", "linear", "cluster"]
        case "incontext", "linear", "cluster": protocols = [bench]
        default: throw NecoError.invalidArgument("unknown --bench '\(bench)' (use incontext, linear, cluster or all)")
        }
        guard batch >= 1 && batch <= 256 else { throw NecoError.invalidArgument("--batch must be in 1...256") }
        guard maxTrain >= 0, maxVal >= 0 else { throw NecoError.invalidArgument("--max-train / --max-val must be ≥ 0") }
        let root = data ?? Benchmark.defaultDirectory + "/synth"
        let benchmark = try Benchmark(path: root)
        let train = maxTrain > 0 ? Array(benchmark.train.prefix(maxTrain)) : benchmark.train
        let val = maxVal > 0 ? Array(benchmark.val.prefix(maxVal)) : benchmark.val
        let models = try evalModel.models()
        for m in models {
            guard size % m.config.patchSize == 0 else {
                throw NecoError.invalidArgument("--size \(size) is not a multiple of the patch size \(m.config.patchSize)")
            }
            try m.validateInput(height: size, width: size)
        }
        let valPatches = models.map { val.count * (size / $0.config.patchSize) * (size / $0.config.patchSize) }.min() ?? 0
        let kList = try clusterCounts(classes: benchmark.classes.count, patches: valPatches)

        print("benchmark  \(root)")
        print("           \(benchmark.classes.count) classes: \(benchmark.classes.joined(separator: ", "))")
        print("           train \(train.count), val \(val.count) images; input \(size)x\(size), \(Threads.count) threads")
        var results: [[EvalRow]] = []
        for (mi, model) in models.enumerated() {
            print("model \(mi == 0 ? "A" : "B")    \(model.config.name), \(model.source)")
            let cache = FeatureCache(model: model, bench: benchmark, size: size, batch: batch)
            var rows: [EvalRow] = []
            for p in protocols {
                let t0 = monotonicSeconds()
                switch p {
                case "incontext": rows.append(try inContext(cache, train, val, classes: benchmark.classes.count))
                case "linear": rows.append(try linear(cache, train, val, classes: benchmark.classes.count))
                default: rows += try cluster(cache, val, classes: benchmark.classes.count, kList: kList)
                }
                writeStderr("  \(p): \(fmt(monotonicSeconds() - t0, 1)) s\n")
            }
            results.append(rows)
        }
        printTable(results, classes: benchmark.classes, models: models)
    }

    /// `--clusters`, or the protocol's counts without those above the number of validation
    /// patches (k-means needs at least K points; a small benchmark such as `voc` has 256).
    func clusterCounts(classes: Int, patches: Int) throws -> [Int] {
        guard let clusters else {
            let all = Overcluster.defaultClusterCounts(classes: classes)
            let kept = all.filter { $0 <= patches }
            if kept.count < all.count {
                writeStderr("  cluster: K = \(all.filter { $0 > patches }.map(String.init).joined(separator: ", ")) left out: only \(patches) validation patches\n")
            }
            return kept
        }
        return try clusters.split(separator: ",").map { s -> Int in
            if s == "gt" { return classes }
            guard let v = Int(s), v >= 1 else { throw NecoError.invalidArgument("bad cluster count '\(s)' in --clusters") }
            return v
        }
    }

    func inContext(_ cache: FeatureCache, _ train: [Benchmark.Sample], _ val: [Benchmark.Sample], classes: Int) throws -> EvalRow {
        let tr = try cache.features(train, split: "train", hummingbird: true)
        let va = try cache.features(val, split: "val", hummingbird: true)
        let patch = cache.extractor.model.config.patchSize
        guard memorySize >= 0 else { throw NecoError.invalidArgument("--memory-size must be ≥ 0") }
        let memory = try SegmentationMemory(dim: tr.dim, classes: classes)
        let perImage = memorySize > 0 ? max(1, memorySize / tr.images) : Int.max
        var rng = EvalRNG(seed: 0)
        for i in 0..<tr.images {
            try memory.add(features: tr.of(i), gridHeight: tr.gridHeight, gridWidth: tr.gridWidth, labels: tr.labels[i],
                           patch: patch, keep: perImage, rng: &rng)
        }
        let scores = try memory.predict(va.features, k: k, temperature: temperature)
        let hw = va.gridHeight * va.gridWidth
        let plan = BilinearPlan(inHeight: va.gridHeight, inWidth: va.gridWidth, outHeight: size, outWidth: size)
        var cm = try ConfusionMatrix(gtClasses: classes, predClasses: classes)
        for i in 0..<va.images {
            let pred = plan.argmax(Array(scores[(i * hw * classes)..<((i + 1) * hw * classes)]), channels: classes)
            try cm.add(gt: va.labels[i].labels, pred: pred)
        }
        let s = Matching.hungarian.score(cm)
        return EvalRow(protocolName: "in-context", setting: "k=\(k), T=\(temperature), memory \(memory.count) patches",
                       perClass: s.perClass, mIoU: s.mIoU, extra: "pixel acc \(fmt(100 * s.pixelAccuracy, 1))")
    }

    func linear(_ cache: FeatureCache, _ train: [Benchmark.Sample], _ val: [Benchmark.Sample], classes: Int) throws -> EvalRow {
        let tr = try cache.features(train, split: "train", hummingbird: false)
        let va = try cache.features(val, split: "val", hummingbird: false)
        var o = LinearProbe.Options()
        o.epochs = epochs
        o.batchSize = probeBatch
        o.learningRate = lr
        o.stepEpoch = max(1, epochs * 4 / 5)
        let probe = try LinearProbe(dim: tr.dim, classes: classes, seed: 0)
        let losses = try probe.train(features: tr.features, images: tr.images, gridHeight: tr.gridHeight, gridWidth: tr.gridWidth,
                                     labels: tr.labels, options: o) { e, l in
            writeStderr("\r  linear probe epoch \(e + 1)/\(o.epochs) loss \(fmt(l, 4))")
        }
        writeStderr("\n")
        var cm = try ConfusionMatrix(gtClasses: classes, predClasses: classes)
        for i in 0..<va.images {
            let pred = try probe.predict(va.of(i), gridHeight: va.gridHeight, gridWidth: va.gridWidth, outHeight: size, outWidth: size)
            try cm.add(gt: va.labels[i].labels, pred: pred)
        }
        let s = Matching.identity.score(cm)
        return EvalRow(protocolName: "linear", setting: "\(o.epochs) epochs, batch \(o.batchSize), lr \(o.learningRate)",
                       perClass: s.perClass, mIoU: s.mIoU,
                       extra: "final train loss \(fmt(losses.last ?? 0, 3)), pixel acc \(fmt(100 * s.pixelAccuracy, 1))")
    }

    func cluster(_ cache: FeatureCache, _ val: [Benchmark.Sample], classes: Int, kList: [Int]) throws -> [EvalRow] {
        guard seeds >= 1 else { throw NecoError.invalidArgument("--seeds must be ≥ 1") }
        let va = try cache.features(val, split: "val", hummingbird: false)
        let prepared = try Overcluster.prepare(features: va.features, images: va.images, gridHeight: va.gridHeight,
                                               gridWidth: va.gridWidth, dim: va.dim)
        var o = Overcluster.Options()
        o.iterations = iterations
        o.redo = redo
        o.seeds = (0..<seeds).map { UInt64($0) }
        var rows: [EvalRow] = []
        for kk in kList {
            let t0 = monotonicSeconds()
            let r = try Overcluster.evaluate(prepared, labels: va.labels, classes: classes, clusters: kk, options: o)
            writeStderr("  cluster K=\(kk): \(fmt(monotonicSeconds() - t0, 1)) s\n")
            rows.append(EvalRow(protocolName: "cluster", setting: "K=\(kk) (\(r.matching == .hungarian ? "Hungarian" : "many-to-one")), \(seeds) seeds",
                                perClass: r.perClassMean, mIoU: r.mIoU,
                                extra: "± \(fmt(100 * r.mIoUStd, 1)) over seeds, PCA \(prepared.dim) keeps \(fmt(100 * prepared.explainedVariance, 1)) % of the variance"))
        }
        return rows
    }

    func printTable(_ results: [[EvalRow]], classes: [String], models: [ViTModel]) {
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }
        func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? s : String(repeating: " ", count: n - s.count) + s }
        print("")
        var header = pad("protocol", 12) + pad("setting", 44) + lpad("mIoU A", 8)
        if results.count > 1 { header += lpad("mIoU B", 8) + lpad("B - A", 8) }
        print(header)
        for (i, row) in results[0].enumerated() {
            var line = pad(row.protocolName, 12) + pad(row.setting, 44) + lpad(fmt(100 * row.mIoU, 1), 8)
            if results.count > 1 {
                let b = results[1][i]
                line += lpad(fmt(100 * b.mIoU, 1), 8) + lpad((b.mIoU >= row.mIoU ? "+" : "") + fmt(100 * (b.mIoU - row.mIoU), 1), 8)
            }
            print(line)
        }
        for (mi, rows) in results.enumerated() {
            for row in rows {
                if !row.extra.isEmpty { print("  \(mi == 0 ? "A" : "B") \(row.protocolName) \(row.setting.split(separator: ",").first ?? ""): \(row.extra)") }
            }
        }
        if perClass {
            for (mi, rows) in results.enumerated() {
                print("")
                print("per-class IoU, model \(mi == 0 ? "A" : "B")")
                print(pad("class", 18) + rows.map { lpad($0.protocolName == "cluster" ? String($0.setting.split(separator: " ").first ?? "") : $0.protocolName, 12) }.joined())
                for (c, name) in classes.enumerated() {
                    print(pad(name, 18) + rows.map { lpad(fmt(100 * $0.perClass[c], 1), 12) }.joined())
                }
            }
        }
        print("")
        for (mi, rows) in results.enumerated() {
            for row in rows {
                let key = row.protocolName == "cluster" ? "cluster_" + (row.setting.split(separator: " ").first.map(String.init) ?? "") : row.protocolName
                let weights = models[mi].source.hasPrefix("random") ? "random" : String(models[mi].source.split(separator: "/").last ?? "")
                print("EVAL model=\(mi == 0 ? "A" : "B") arch=\(models[mi].config.name) weights=\(weights) bench=\(key) miou=\(fmt(100 * row.mIoU, 2))")
            }
        }
    }
}

struct IndexBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-index",
        abstract: "Patch-index throughput: similarity GEMM vs raw sgemm GFLOP/s and the top-k overhead.",
        discussion: "Random unit rows; the bank is held twice (the index and a copy for the GEMM-only pass): 2 x bank x dim x 4 bytes.")
    @Option(help: "Bank rows M.") var bank: Int = 1_000_000
    @Option(help: "Query rows Q.") var queries: Int = 10_000
    @Option(help: "Feature dim D.") var dim: Int = 384
    @Option(help: "Neighbours k.") var k: Int = 30
    @Option(help: "Threads (default: all cores).") var threads: Int?
    @Option(help: "Query rows per tile, both passes (default: the index's own, 1024).") var queryTile: Int?
    @Option(help: "Bank rows per tile, both passes (default: the index's own, 4096).") var bankTile: Int?
    @Option(help: "Slices of the queries; the GEMM-only pass and the search alternate over them.") var rounds: Int = 5

    func run() throws {
        if let t = threads {
            guard t >= 1 && t <= 256 else { throw NecoError.invalidArgument("--threads must be in 1...256") }
            Threads.setCount(t)
        }
        print("bank \(bank) x \(dim), \(queries) queries, k = \(k), \(Threads.count) threads")
        let r = try PatchIndexThroughput.measure(bankRows: bank, queries: queries, dim: dim, k: k, queryTile: queryTile,
                                                bankTile: bankTile, rounds: rounds) { print("  " + $0) }
        print("")
        print("sgemm (2048x8192x\(dim))     \(fmt(r.sgemmGFlops, 1)) GFLOP/s")
        print("similarity GEMMs (\(r.queryTile)x\(r.bankTile) tiles) \(fmt(r.similarityGFlops, 1)) GFLOP/s = \(fmt(100 * r.similarityFraction, 1)) % of sgemm  (\(fmt(r.similaritySeconds, 2)) s)")
        print("search with top-\(k)         \(fmt(r.searchGFlops, 1)) GFLOP/s, \(fmt(r.searchSeconds, 2)) s, \(fmt(r.queriesPerSecond, 0)) queries/s")
        print("top-k overhead              \(fmt(100 * r.topKOverhead, 1)) % over the GEMMs alone (median of the \(rounds) rounds \(fmt(100 * r.medianTopKOverhead, 1)) %)")
        print("peak RSS                    \(fmt(peakRSSMiB(), 0)) MiB")
        print("BENCH_INDEX bank=\(bank) queries=\(queries) dim=\(dim) k=\(k) threads=\(r.threads) sgemm_gflops=\(fmt(r.sgemmGFlops, 1)) sim_gflops=\(fmt(r.similarityGFlops, 1)) sim_fraction=\(fmt(r.similarityFraction, 3)) search_s=\(fmt(r.searchSeconds, 2)) topk_overhead=\(fmt(r.topKOverhead, 3)) topk_overhead_median=\(fmt(r.medianTopKOverhead, 3))")
    }
}
