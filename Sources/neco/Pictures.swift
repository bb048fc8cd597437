import ArgumentParser
import Neco
import NecoCore
import NecoEval
import NecoImage
import NecoModel

// Picture subcommands: in-context segmentation overlays and nearest-patch retrieval.

struct Segment: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "In-context segmentation pictures: picture | prediction | ground truth, for benchmark images.",
        discussion: "The memory is every training image of the benchmark (Hummingbird protocol, as `neco eval --bench incontext`); each picture is a validation image with the prediction and the ground truth tinted in the VOC colours, and the class colour legend under it.")
    @OptionGroup var evalModel: EvalModelOptions
    @Option(help: "Benchmark folder (default $NECO_CACHE/bench/synth).") var data: String?
    @Option(help: "Square model input side in pixels.") var size: Int = 224
    @Option(help: "Validation images to draw (the first N).") var count: Int = 4
    @Option(help: "Use at most this many training images (0 = all).") var maxTrain: Int = 0
    @Option(help: "Neighbours k.") var k: Int = 30
    @Option(help: "Softmax temperature.") var temperature: Float = 0.02
    @Option(help: "Output folder.") var out: String = "out/segment"

    func run() throws {
        guard count >= 1 else { throw NecoError.invalidArgument("--count must be ≥ 1") }
        let model = try evalModel.primary()
        let root = data ?? Benchmark.defaultDirectory + "/synth"
        let bench = try Benchmark(path: root)
        let classes = bench.classes.count
        let patch = model.config.patchSize
        guard size % patch == 0 else { throw NecoError.invalidArgument("--size \(size) is not a multiple of the patch size \(patch)") }
        let cache = try FeatureCache(model: model, bench: bench, size: size, batch: 8)
        reportProgress(cache)
        let train = maxTrain > 0 ? Array(bench.train.prefix(maxTrain)) : bench.train
        let val = Array(bench.val.prefix(count))
        let tr = try cache.features(train, split: "train", hummingbird: true)
        let va = try cache.features(val, split: "val", hummingbird: true)
        let memory = try SegmentationMemory(dim: tr.dim, classes: classes)
        for i in 0..<tr.images {
            try memory.add(features: tr.of(i), gridHeight: tr.gridHeight, gridWidth: tr.gridWidth, labels: tr.labels[i], patch: patch)
        }
        try FileIO.makeDirectories(out)
        let plan = BilinearPlan(inHeight: va.gridHeight, inWidth: va.gridWidth, outHeight: size, outWidth: size)
        var total = try ConfusionMatrix(gtClasses: classes, predClasses: classes)
        var panels: [(String, [Int32], Int)] = []
        for i in 0..<va.images {
            let scores = try memory.predict(Array(va.of(i)), k: k, temperature: temperature)
            let pred = plan.argmax(scores, channels: classes)
            try total.add(gt: va.labels[i].labels, pred: pred)
            panels.append((val[i].name, pred, i))
        }
        // Pictures show the raw predicted classes (no matching), which is what a user gets.
        var sheet: [RGBImage] = []
        for (name, pred, i) in panels {
            let shown = try Preprocess.apply(try ImageDecoder.load(path: val[i].imagePath), mode: .stretch(height: size, width: size))
            let pic = try Pictures.segmentation(image: shown, prediction: pred, groundTruth: va.labels[i], classes: classes)
            let path = out + "/" + name + "_segment.png"
            try PNGWriter.write(pic, to: path)
            sheet.append(pic)
            var one = try ConfusionMatrix(gtClasses: classes, predClasses: classes)
            try one.add(gt: va.labels[i].labels, pred: pred)
            print("wrote \(path)  (mIoU of this image, present classes: \(fmt(100 * Matching.identity.score(one).mIoUPresent, 1)))")
        }
        if sheet.count > 1 {
            try PNGWriter.write(Pictures.column(sheet), to: out + "/sheet.png")
            print("wrote \(out)/sheet.png (all of them)")
        }
        print("colours: " + (0..<classes).map { c -> String in
            let (r, g, b) = Pictures.color(c)
            return "\(bench.classes[c]) (\(r),\(g),\(b))"
        }.joined(separator: ", ") + "; white = ignore")
        print("mIoU over these \(va.images) images (Hungarian): \(fmt(100 * Matching.hungarian.score(total).mIoU, 1))")
    }
}

struct Neighbors: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Nearest-patch retrieval picture: a query patch marked, and its best matches in other images.",
        discussion: "Each gallery picture is shown with the cosine similarity of every patch to the query patch (dark = low, yellow = high) and its top matches outlined in cyan. The query patch is outlined in red.")
    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Query image.") var query: String
    @Option(help: "Query point 'x,y' in pixels of the query image as given (default: its centre).") var at: String?
    @Option(parsing: .upToNextOption, help: "Gallery images (default: the sample photos of the setup step).") var gallery: [String] = []
    @Option(help: "Square model input side in pixels.") var size: Int = 224
    @Option(help: "Matches outlined per gallery image.") var k: Int = 5
    @Option(help: "Output PNG.") var out: String

    func run() throws {
        guard k >= 1 else { throw NecoError.invalidArgument("-k must be ≥ 1") }
        let model = try modelOptions.load()
        let patch = model.config.patchSize
        guard size % patch == 0 else { throw NecoError.invalidArgument("--size \(size) is not a multiple of the patch size \(patch)") }
        var files = gallery
        if files.isEmpty {
            files = try FileIO.listFiles(DefaultModel.photosDirectory, extensions: ["jpg", "jpeg", "png"]).filter { $0 != query }
        }
        guard !files.isEmpty else { throw NecoError.invalidArgument("no gallery images (give --gallery)") }
        let mode = ResizeMode.stretch(height: size, width: size)
        let extractor = FeatureExtractor(model: model)
        let qImg = try ImageDecoder.load(path: query)
        var px = qImg.width / 2, py = qImg.height / 2
        if let at {
            let parts = at.split(separator: ",").compactMap { Int($0) }
            guard parts.count == 2, parts[0] >= 0, parts[0] < qImg.width, parts[1] >= 0, parts[1] < qImg.height else {
                throw NecoError.invalidArgument("--at '\(at)' must be x,y inside the \(qImg.width)x\(qImg.height) query")
            }
            (px, py) = (parts[0], parts[1])
        }
        let g = size / patch
        let qx = min(px * size / qImg.width / patch, g - 1), qy = min(py * size / qImg.height / patch, g - 1)
        let qf = try extractor.extract(images: [qImg], options: ExtractOptions(resize: mode, l2Normalize: true))
        let d = qf.dim
        let qRow = Array(qf.patches[((qy * g + qx) * d)..<((qy * g + qx + 1) * d)])
        var qShown = try Preprocess.apply(qImg, mode: mode)
        // Self-similarity of the query picture, then the query patch in red.
        let selfSims = (0..<(g * g)).map { p in (0..<d).reduce(Float(0)) { $0 + qf.patches[p * d + $1] * qRow[$1] } }
        qShown = try Pictures.similarity(qShown, values: selfSims, gridHeight: g, gridWidth: g, patch: patch, low: 0, high: 1)
        Pictures.rectangle(&qShown, x: qx * patch, y: qy * patch, width: patch, height: patch, color: (255, 0, 0), thickness: 3)
        var tiles = [qShown]
        print("query \(query) patch (\(qx), \(qy)) of \(g)x\(g)")
        for f in files {
            let img = try ImageDecoder.load(path: f)
            let feats = try extractor.extract(images: [img], options: ExtractOptions(resize: mode, l2Normalize: true))
            let index = try PatchIndex(dim: d)
            try index.add(feats.patches)
            let kk = min(k, index.count)
            let (idx, sims, _) = try index.search(qRow, k: kk)
            let all = (0..<(g * g)).map { p in (0..<d).reduce(Float(0)) { $0 + feats.patches[p * d + $1] * qRow[$1] } }
            let shown = try Preprocess.apply(img, mode: mode)
            tiles.append(try Pictures.similarity(shown, values: all, gridHeight: g, gridWidth: g, patch: patch, low: 0, high: 1,
                                                 outlined: idx.map { Int($0) }))
            let name = String(f.split(separator: "/").last ?? "")
            print("  \(name): best cos \(fmt(Double(sims[0]), 3)) at patch (\(Int(idx[0]) % g), \(Int(idx[0]) / g))")
        }
        // At most 4 tiles per row.
        var rows: [RGBImage] = []
        var i = 0
        while i < tiles.count {
            rows.append(Pictures.row(Array(tiles[i..<min(tiles.count, i + 4)])))
            i += 4
        }
        let pic = Pictures.column(rows)
        try PNGWriter.write(pic, to: out)
        print("wrote \(out) (\(pic.width)x\(pic.height))")
    }
}
