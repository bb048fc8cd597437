import ArgumentParser
import Neco
import NecoCore
import NecoImage
import NecoModel

#if canImport(Glibc)
import Glibc
#endif

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The main job: dense features of the sample photos, their PCA pictures, and a report.")
    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Folder of photos (default: the sample photos from the setup step).") var photos: String?
    @Option(help: "Longest side of the model input; each side is rounded to a multiple of the patch size.") var size: Int = 448
    @Option(help: "Output folder for the pictures.") var out: String = "out/demo"

    func run() throws {
        let model = try modelOptions.load()
        let c = model.config
        let dir = photos ?? DefaultModel.photosDirectory
        guard FileIO.isDirectory(dir) else { throw NecoError.io("\(dir): no such folder (run scripts/setup.sh)") }
        let files = try FileIO.listFiles(dir, extensions: ["jpg", "jpeg", "png"])
        guard !files.isEmpty else { throw NecoError.invalidArgument("\(dir): no JPEG or PNG photos") }
        try FileIO.makeDirectories(out)
        print("model  \(model.source)")
        print("       \(c.name), \(model.parameterCount) parameters, scheme \(model.scheme.rawValue), pos rule \(c.posEmbedRule.rawValue), \(Threads.count) threads")
        print("")
        print("image                 input     grid    ms    |f| mean  self-sim  picture")
        let extractor = FeatureExtractor(model: model)
        var totalTime = 0.0
        for path in files {
            let img = try ImageDecoder.load(path: path)
            let mode = ResizeMode.fitMultiple(maxSide: size, multiple: c.patchSize)
            let t0 = monotonicSeconds()
            let f = try extractor.extract(images: [img], options: ExtractOptions(resize: mode))
            let dt = monotonicSeconds() - t0
            totalTime += dt
            let patches = f.patches(of: 0)
            // Mean feature norm, and how similar neighbouring patches are (cosine, right neighbour).
            var normSum = 0.0, simSum = 0.0, simCount = 0
            var unit = Array(patches)
            for i in 0..<f.patchesPerImage {
                var s: Float = 0
                for k in 0..<f.dim { s += unit[i * f.dim + k] * unit[i * f.dim + k] }
                normSum += Double(s.squareRoot())
            }
            Normalize.l2Rows(&unit, dim: f.dim)
            for y in 0..<f.gridHeight {
                for x in 0..<(f.gridWidth - 1) {
                    let a = (y * f.gridWidth + x) * f.dim, b = a + f.dim
                    var s: Float = 0
                    for k in 0..<f.dim { s += unit[a + k] * unit[b + k] }
                    simSum += Double(s); simCount += 1
                }
            }
            let shown = try Preprocess.apply(img, mode: mode)
            let pic = try PCA.picture(image: shown, features: patches, gridHeight: f.gridHeight, gridWidth: f.gridWidth, dim: f.dim)
            var name = String(path.split(separator: "/").last ?? "image")
            if let dot = name.lastIndex(of: ".") { name = String(name[..<dot]) }
            let picPath = out + "/" + name + "_pca.png"
            try PNGWriter.write(pic, to: picPath)
            print(column(name, 22) + column("\(f.inputHeight)x\(f.inputWidth)", 10) + column("\(f.gridHeight)x\(f.gridWidth)", 8)
                  + column(fmt(dt * 1000, 0), 6) + column(fmt(normSum / Double(f.patchesPerImage), 2), 10)
                  + column(fmt(simSum / Double(max(simCount, 1)), 3), 9) + picPath)
        }
        print("")
        print("\(files.count) images in \(fmt(totalTime, 2)) s (\(fmt(Double(files.count) / totalTime, 2)) img/s), peak RSS \(fmt(peakRSSMiB(), 0)) MiB")
    }
}
