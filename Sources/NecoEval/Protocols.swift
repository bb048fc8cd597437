import Neco
import NecoCore
import NecoImage
import NecoModel

// The three frozen-feature protocols of NECO-SPEC §6 on a benchmark folder (Benchmark), with
// their constants, the feature cache they share and the randomly initialised floor model. The
// CLI (`neco eval`, `neco segment`) and the C ABI (neco_eval_incontext) call these.

/// Constants of the evaluation protocols.
public enum EvalConstants {
    /// Hummingbird's normalisation std (P22: the last value is 0.255, sic); the in-context
    /// protocol extracts with it, the linear and clustering protocols with ImageNet's.
    public static let hummingbirdStd: (Float, Float, Float) = (0.229, 0.224, 0.255)
}

/// A randomly initialised ViT, as DINOv2 initialises it for training: linear weights, position
/// embedding and registers ~ N(0, 0.02²) (timm `trunc_normal_(std=.02)`, bounds ±2 never hit),
/// biases 0, the patch projection with PyTorch's Conv2d default U(±1/√(C·P²)), LayerNorm 1 / 0,
/// LayerScale 1e-5 (DINOv2's `layerscale` training setting), CLS ~ N(0, 1e-12). The floor of the
/// evaluations (`neco eval --random-init`).
public enum RandomViT {
    public static func make(config: ViTConfig, seed: UInt64, layerScale: Float = 1e-5) throws -> ViTModel {
        let params = try ViTParameters(config: config)
        var rng = NecoRNG(seed: seed)
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
public struct SplitFeatures: Sendable {
    public var features: [Float]       // (I, h, w, D)
    public var labels: [LabelMap]      // I maps of S×S
    public var names: [String]
    public var images: Int
    public var gridHeight: Int
    public var gridWidth: Int
    public var dim: Int
    public func of(_ i: Int) -> ArraySlice<Float> {
        let n = gridHeight * gridWidth * dim
        return features[(i * n)..<((i + 1) * n)]
    }
}

/// Extraction with a per-(split, normalisation) cache: the protocols share features.
public final class FeatureCache {
    public let extractor: FeatureExtractor
    public let bench: Benchmark
    /// Square model input side S.
    public let size: Int
    /// Images per forward pass.
    public let batch: Int
    /// Called with (split, images done, images in all, images per second) after every batch.
    public var progress: ((String, Int, Int, Double) -> Void)?
    var cache: [String: SplitFeatures] = [:]

    /// - Throws: `.invalidArgument` for a batch outside 1...256 or a size the model cannot take.
    public init(model: ViTModel, bench: Benchmark, size: Int, batch: Int) throws {
        guard batch >= 1 && batch <= 256 else { throw NecoError.invalidArgument("batch \(batch) must be in 1...256") }
        guard size >= 1, size % model.config.patchSize == 0 else {
            throw NecoError.invalidArgument("size \(size) is not a multiple of the patch size \(model.config.patchSize)")
        }
        try model.validateInput(height: size, width: size)
        extractor = FeatureExtractor(model: model)
        self.bench = bench
        self.size = size
        self.batch = batch
    }

    /// - Parameter augmentation: with `epoch`, one pass of Hummingbird's memory augmentation
    ///   (each image's own random stream from (seed 0, epoch, index)); nil = the images as they are.
    public func features(_ samples: [Benchmark.Sample], split: String, hummingbird: Bool,
                         augmentation: MemoryAugmentation? = nil, epoch: Int = 0) throws -> SplitFeatures {
        let key = split + (hummingbird ? "/hbird" : "/imagenet") + (augmentation.map { _ in "/aug\(epoch)" } ?? "")
        if let f = cache[key] { return f }
        let std = hummingbird ? EvalConstants.hummingbirdStd : Preprocess.imageNetStd
        let mode = ResizeMode.stretch(height: size, width: size)
        var feats: [Float] = []
        var labels: [LabelMap] = []
        var gh = 0, gw = 0, dim = 0
        let t0 = monotonicSeconds()
        var start = 0
        while start < samples.count {
            let chunk = Array(samples[start..<min(samples.count, start + batch)])
            var data: [Float] = []
            for (j, s) in chunk.enumerated() {
                var (img, lab) = try bench.load(s)
                if let augmentation {
                    var rng = MemoryAugmentation.rng(seed: 0, epoch: epoch, index: start + j)
                    (img, lab) = try augmentation.apply(image: img, labels: lab, rng: &rng)
                }
                data += try Preprocess.tensor(img, mode: mode, std: std).data
                labels.append(lab.resizedNearest(width: size, height: size, rule: .pil))
            }
            let f = try data.withUnsafeBufferPointer {
                try extractor.extract(tensor: $0.baseAddress!, batch: chunk.count, height: size, width: size)
            }
            gh = f.gridHeight; gw = f.gridWidth; dim = f.dim
            feats += f.patches
            start += chunk.count
            progress?(split, start, samples.count, Double(start) / max(monotonicSeconds() - t0, 1e-9))
        }
        let out = SplitFeatures(features: feats, labels: labels, names: samples.map(\.name), images: samples.count,
                                gridHeight: gh, gridWidth: gw, dim: dim)
        cache[key] = out
        return out
    }
}

/// In-context segmentation (Hummingbird, NECO-SPEC §6.1): a memory of all training patches with
/// soft labels, k nearest neighbours voting with softmax(cos / τ), bilinear upsampling of the
/// scores to S×S, arg-max, Hungarian matching, mIoU.
public struct InContextProtocol: Sendable {
    public var k = 30
    public var temperature: Float = 0.02
    /// Hummingbird memory_size in patches: each training image keeps size / images patches,
    /// rare classes first; 0 = every patch.
    public var memorySize = 0
    /// Hummingbird's memory augmentation (`.none`: each training image once, un-augmented).
    public var augmentation = MemoryAugmentation.none
    public init() {}

    public struct Result: Sendable {
        public var score: SegmentationScore
        public var memoryPatches: Int
        /// The predicted class maps (S×S, row-major) of the first `predictions` validation images.
        public var predictions: [[Int32]] = []
    }

    /// The memory: every training image (or `augmentation.epochs` augmented passes over them).
    public func memory(_ cache: FeatureCache, _ train: [Benchmark.Sample], classes: Int) throws -> SegmentationMemory {
        guard memorySize >= 0 else { throw NecoError.invalidArgument("memory size \(memorySize) must be ≥ 0") }
        try augmentation.validate()
        let passes = max(augmentation.epochs, 1)
        let patch = cache.extractor.model.config.patchSize
        var memory: SegmentationMemory? = nil
        let perImage = memorySize > 0 ? max(1, memorySize / (train.count * passes)) : Int.max
        var rng = NecoRNG(seed: 0)
        for e in 0..<passes {
            let tr = try cache.features(train, split: "train", hummingbird: true,
                                        augmentation: augmentation.epochs > 0 ? augmentation : nil, epoch: e)
            let m = try memory ?? SegmentationMemory(dim: tr.dim, classes: classes)
            memory = m
            for i in 0..<tr.images {
                try m.add(features: tr.of(i), gridHeight: tr.gridHeight, gridWidth: tr.gridWidth, labels: tr.labels[i],
                          patch: patch, keep: perImage, rng: &rng)
            }
        }
        guard let memory else { throw NecoError(.data, "in-context evaluation needs training images") }
        return memory
    }

    /// - Parameter predictions: keep the predicted class maps of this many validation images.
    public func evaluate(_ cache: FeatureCache, train: [Benchmark.Sample], val: [Benchmark.Sample], classes: Int,
                         predictions: Int = 0) throws -> Result {
        guard !train.isEmpty, !val.isEmpty else { throw NecoError(.data, "in-context evaluation needs training and validation images") }
        let memory = try memory(cache, train, classes: classes)
        let va = try cache.features(val, split: "val", hummingbird: true)
        let scores = try memory.predict(va.features, k: k, temperature: temperature)
        let hw = va.gridHeight * va.gridWidth
        let plan = BilinearPlan(inHeight: va.gridHeight, inWidth: va.gridWidth, outHeight: cache.size, outWidth: cache.size)
        var cm = try ConfusionMatrix(gtClasses: classes, predClasses: classes)
        var kept: [[Int32]] = []
        for i in 0..<va.images {
            let pred = plan.argmax(Array(scores[(i * hw * classes)..<((i + 1) * hw * classes)]), channels: classes)
            try cm.add(gt: va.labels[i].labels, pred: pred)
            if i < predictions { kept.append(pred) }
        }
        return Result(score: Matching.hungarian.score(cm), memoryPatches: memory.count, predictions: kept)
    }
}

/// Linear probe (NECO-SPEC §6.2): a 1×1 conv on frozen features trained with SGD, cross-entropy
/// on 100×100 masks; mIoU without matching.
public struct LinearProtocol: Sendable {
    public var options = LinearProbe.Options()
    public init() {}

    public struct Result: Sendable {
        public var score: SegmentationScore
        public var losses: [Double]
    }

    public func evaluate(_ cache: FeatureCache, train: [Benchmark.Sample], val: [Benchmark.Sample], classes: Int,
                         epochDone: ((Int, Double) -> Void)? = nil) throws -> Result {
        let tr = try cache.features(train, split: "train", hummingbird: false)
        let va = try cache.features(val, split: "val", hummingbird: false)
        let probe = try LinearProbe(dim: tr.dim, classes: classes, seed: 0)
        let losses = try probe.train(features: tr.features, images: tr.images, gridHeight: tr.gridHeight, gridWidth: tr.gridWidth,
                                     labels: tr.labels, options: options, progress: epochDone)
        var cm = try ConfusionMatrix(gtClasses: classes, predClasses: classes)
        for i in 0..<va.images {
            let pred = try probe.predict(va.of(i), gridHeight: va.gridHeight, gridWidth: va.gridWidth,
                                         outHeight: cache.size, outWidth: cache.size)
            try cm.add(gt: va.labels[i].labels, pred: pred)
        }
        return Result(score: Matching.identity.score(cm), losses: losses)
    }
}

/// Overclustering (NECO-SPEC §6.3): standardise, PCA 50, k-means for each K and seed; K = classes
/// with Hungarian matching, K > classes many-to-one by precision; mean over seeds.
public struct ClusterProtocol: Sendable {
    public var options = Overcluster.Options()
    public init() {}

    /// The protocol's cluster counts (classes, 300, 500) without those above the number of
    /// validation patches (k-means needs at least K points), and the ones left out.
    public static func clusterCounts(classes: Int, patches: Int) -> (kept: [Int], leftOut: [Int]) {
        let all = Overcluster.defaultClusterCounts(classes: classes)
        return (all.filter { $0 <= patches }, all.filter { $0 > patches })
    }

    public func evaluate(_ cache: FeatureCache, val: [Benchmark.Sample], classes: Int, clusters: [Int],
                         clusterDone: ((Int, Double) -> Void)? = nil) throws -> (prepared: Overcluster.Prepared, results: [Overcluster.Result]) {
        guard !options.seeds.isEmpty else { throw NecoError.invalidArgument("clustering needs at least one seed") }
        let va = try cache.features(val, split: "val", hummingbird: false)
        let prepared = try Overcluster.prepare(features: va.features, images: va.images, gridHeight: va.gridHeight,
                                               gridWidth: va.gridWidth, dim: va.dim)
        var results: [Overcluster.Result] = []
        for kk in clusters {
            let t0 = monotonicSeconds()
            results.append(try Overcluster.evaluate(prepared, labels: va.labels, classes: classes, clusters: kk, options: options))
            clusterDone?(kk, monotonicSeconds() - t0)
        }
        return (prepared, results)
    }
}
