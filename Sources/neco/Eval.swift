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

/// Extraction progress of the shared feature cache, on stderr.
func reportProgress(_ cache: FeatureCache) {
    cache.progress = { split, done, all, rate in
        writeStderr("\r  features \(split) [\(done)/\(all)] \(fmt(rate, 1)) img/s" + (done == all ? "\n" : ""))
    }
}

/// One line of the results: a protocol setting and its per-class IoU.
struct EvalRow {
    var protocolName: String
    var setting: String
    var perClass: [Double]
    var mIoU: Double
    var extra: String = ""
    /// In-context: predicted class maps of the first validation images (for --compare-picture).
    var predictions: [[Int32]] = []
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
              rank       RankMe (Garrido et al. 2023): effective rank of the validation patch features,
                         exp(entropy of the normalised singular values); no labels. It falls when the
                         features collapse onto fewer directions (docs/EXPERIMENTS.md).
            The benchmark folder comes from scripts/build_benchmark.py (run by scripts/setup.sh):
            $NECO_CACHE/bench/synth (photo cut-outs on photos) and $NECO_CACHE/bench/voc (the real VOC scene).
            """)
    @OptionGroup var evalModel: EvalModelOptions
    @Option(help: "Protocol: incontext, linear, cluster, rank (RankMe, the effective rank of the validation patch features) or all.") var bench: String = "all"
    @Option(help: "Benchmark folder (default $NECO_CACHE/bench/synth).") var data: String?
    @Option(help: "Square model input side in pixels (a multiple of the patch size).") var size: Int = 224
    @Option(help: "Images per forward pass.") var batch: Int = 8
    @Option(help: "Use at most this many training images (0 = all).") var maxTrain: Int = 0
    @Option(help: "Use at most this many validation images (0 = all).") var maxVal: Int = 0
    @Option(help: "In-context: neighbours k.") var k: Int = 30
    @Option(help: "In-context: softmax temperature.") var temperature: Float = 0.02
    @Option(help: "In-context: memory size in patches (Hummingbird memory_size: each training image keeps size / images patches, rare classes first); 0 = every patch.")
    var memorySize: Int = 0
    @Option(help: "In-context: passes of Hummingbird's memory augmentation over the training images (colour jitter + random resized crop; the protocol uses 1-2); 0 = the un-augmented memory.")
    var augmentEpochs: Int = 0
    @Option(help: "With --compare: write a picture of in-context segmentations, picture | A | B | ground truth, for the first --picture-count validation images.")
    var comparePicture: String?
    @Option(help: "Validation images in --compare-picture.") var pictureCount: Int = 4
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
        case "all": protocols = ["incontext", "linear", "cluster", "rank"]
        case "incontext", "linear", "cluster", "rank": protocols = [bench]
        default: throw NecoError.invalidArgument("unknown --bench '\(bench)' (use incontext, linear, cluster, rank or all)")
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
        var ranks: [(value: Double, patches: Int)] = []
        for (mi, model) in models.enumerated() {
            print("model \(mi == 0 ? "A" : "B")    \(model.config.name), \(model.source)")
            let cache = try FeatureCache(model: model, bench: benchmark, size: size, batch: batch)
            reportProgress(cache)
            var rows: [EvalRow] = []
            for p in protocols {
                let t0 = monotonicSeconds()
                switch p {
                case "incontext": rows.append(try inContext(cache, train, val, classes: benchmark.classes.count))
                case "linear": rows.append(try linear(cache, train, val, classes: benchmark.classes.count))
                case "rank": ranks.append(try RankMe.ofSplit(cache, val))
                default: rows += try cluster(cache, val, classes: benchmark.classes.count, kList: kList)
                }
                writeStderr("  \(p): \(fmt(monotonicSeconds() - t0, 1)) s\n")
            }
            results.append(rows)
        }
        if results.contains(where: { !$0.isEmpty }) { printTable(results, classes: benchmark.classes, models: models) }
        if !ranks.isEmpty {
            // Effective rank of the validation patch features (label-free; falls with dimensional collapse).
            print("RankMe of the \(ranks[0].patches) validation patch features (effective rank, at most \(models[0].config.embedDim)): "
                  + ranks.enumerated().map { "\($0.offset == 0 ? "A" : "B") \(fmt($0.element.value, 2))" }.joined(separator: ", "))
            for (mi, r) in ranks.enumerated() {
                print("RANKME model=\(mi == 0 ? "A" : "B") weights=\(Self.weightsName(models[mi])) value=\(fmt(r.value, 2)) exact=\(r.value) patches=\(r.patches)")
            }
        }
        if let path = comparePicture {
            let preds = results.map { rows in rows.first { $0.protocolName == "in-context" }?.predictions ?? [] }
            guard preds.count == 2, !preds[0].isEmpty else {
                throw NecoError.invalidArgument("--compare-picture needs --compare and the in-context protocol")
            }
            var panels: [RGBImage] = []
            for i in 0..<min(preds[0].count, preds[1].count) {
                let (img, lab) = try benchmark.load(val[i])
                let shown = try Preprocess.apply(img, mode: .stretch(height: size, width: size))
                panels.append(try Pictures.comparison(image: shown, predictions: [preds[0][i], preds[1][i]],
                                                      groundTruth: lab.resizedNearest(width: size, height: size, rule: .pil),
                                                      classes: benchmark.classes.count))
            }
            try PNGWriter.write(Pictures.column(panels + [Pictures.legend(classes: benchmark.classes.count)]), to: path)
            print("wrote \(path): picture | A | B | ground truth, in-context predictions of \(panels.count) validation images")
        }
    }

    /// `--clusters`, or the protocol's counts without those above the number of validation
    /// patches (k-means needs at least K points; a small benchmark such as `voc` has 256).
    func clusterCounts(classes: Int, patches: Int) throws -> [Int] {
        guard let clusters else {
            let (kept, leftOut) = ClusterProtocol.clusterCounts(classes: classes, patches: patches)
            if !leftOut.isEmpty {
                writeStderr("  cluster: K = \(leftOut.map(String.init).joined(separator: ", ")) left out: only \(patches) validation patches\n")
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
        var p = InContextProtocol()
        p.k = k
        p.temperature = temperature
        p.memorySize = memorySize
        p.augmentation = MemoryAugmentation(epochs: augmentEpochs)
        let r = try p.evaluate(cache, train: train, val: val, classes: classes,
                               predictions: comparePicture == nil ? 0 : max(0, pictureCount))
        let aug = augmentEpochs > 0 ? ", memory augmentation ×\(augmentEpochs)" : ""
        return EvalRow(protocolName: "in-context", setting: "k=\(k), T=\(temperature), memory \(r.memoryPatches) patches\(aug)",
                       perClass: r.score.perClass, mIoU: r.score.mIoU, extra: "pixel acc \(fmt(100 * r.score.pixelAccuracy, 1))",
                       predictions: r.predictions)
    }

    func linear(_ cache: FeatureCache, _ train: [Benchmark.Sample], _ val: [Benchmark.Sample], classes: Int) throws -> EvalRow {
        var p = LinearProtocol()
        p.options.epochs = epochs
        p.options.batchSize = probeBatch
        p.options.learningRate = lr
        p.options.stepEpoch = max(1, epochs * 4 / 5)
        let o = p.options
        let r = try p.evaluate(cache, train: train, val: val, classes: classes) { e, l in
            writeStderr("\r  linear probe epoch \(e + 1)/\(o.epochs) loss \(fmt(l, 4))" + (e + 1 == o.epochs ? "\n" : ""))
        }
        return EvalRow(protocolName: "linear", setting: "\(o.epochs) epochs, batch \(o.batchSize), lr \(o.learningRate)",
                       perClass: r.score.perClass, mIoU: r.score.mIoU,
                       extra: "final train loss \(fmt(r.losses.last ?? 0, 3)), pixel acc \(fmt(100 * r.score.pixelAccuracy, 1))")
    }

    func cluster(_ cache: FeatureCache, _ val: [Benchmark.Sample], classes: Int, kList: [Int]) throws -> [EvalRow] {
        guard seeds >= 1 else { throw NecoError.invalidArgument("--seeds must be ≥ 1") }
        var p = ClusterProtocol()
        p.options.iterations = iterations
        p.options.redo = redo
        p.options.seeds = (0..<seeds).map { UInt64($0) }
        let (prepared, results) = try p.evaluate(cache, val: val, classes: classes, clusters: kList) { kk, seconds in
            writeStderr("  cluster K=\(kk): \(fmt(seconds, 1)) s\n")
        }
        return results.map { r in
            EvalRow(protocolName: "cluster", setting: "K=\(r.clusters) (\(r.matching == .hungarian ? "Hungarian" : "many-to-one")), \(seeds) seeds",
                    perClass: r.perClassMean, mIoU: r.mIoU,
                    extra: "± \(fmt(100 * r.mIoUStd, 1)) over seeds, PCA \(prepared.dim) keeps \(fmt(100 * prepared.explainedVariance, 1)) % of the variance")
        }
    }

    /// The `weights=` field of the EVAL and RANKME lines: the file name, or "random".
    static func weightsName(_ model: ViTModel) -> String {
        model.source.hasPrefix("random") ? "random" : String(model.source.split(separator: "/").last ?? "")
    }

    func printTable(_ results: [[EvalRow]], classes: [String], models: [ViTModel]) {
        func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? s : String(repeating: " ", count: n - s.count) + s }
        print("")
        var header = column("protocol", 12) + column("setting", 44) + lpad("mIoU A", 8)
        if results.count > 1 { header += lpad("mIoU B", 8) + lpad("B - A", 8) }
        print(header)
        for (i, row) in results[0].enumerated() {
            var line = column(row.protocolName, 12) + column(row.setting, 44) + lpad(fmt(100 * row.mIoU, 1), 8)
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
                print(column("class", 18) + rows.map { lpad($0.protocolName == "cluster" ? String($0.setting.split(separator: " ").first ?? "") : $0.protocolName, 12) }.joined())
                for (c, name) in classes.enumerated() {
                    print(column(name, 18) + rows.map { lpad(fmt(100 * $0.perClass[c], 1), 12) }.joined())
                }
            }
        }
        print("")
        for (mi, rows) in results.enumerated() {
            for row in rows {
                let key = row.protocolName == "cluster" ? "cluster_" + (row.setting.split(separator: " ").first.map(String.init) ?? "") : row.protocolName
                print("EVAL model=\(mi == 0 ? "A" : "B") arch=\(models[mi].config.name) weights=\(Self.weightsName(models[mi])) bench=\(key) miou=\(fmt(100 * row.mIoU, 2)) miou_exact=\(row.mIoU)")
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
