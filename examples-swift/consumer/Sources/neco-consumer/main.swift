// neco-consumer MODEL OUT_DIR: an extraction, one NeCo training step and an ONNX export through the
// Swift library products, as a package that depends on libneco would call them.
import Neco
import NecoEval
import NecoImage
import NecoModel
import NecoONNX
import NecoTrain

#if canImport(Glibc)
import Glibc
#endif

func fail(_ message: String) -> Never {
    print("neco-consumer: \(message)")
    exit(1)
}

let args = CommandLine.arguments
guard args.count == 3 else { fail("usage: neco-consumer MODEL OUT_DIR") }
let (modelPath, outDir) = (args[1], args[2])

do {
    // The tiny test model has 4 heads of width 8; real DINOv2 checkpoints need no options.
    let model = try WeightLoader.load(path: modelPath, options: LoadOptions(heads: 4))
    let p = model.config.patchSize

    // 1. Extraction: a synthetic 3-patch-square picture, L2-normalised patch features.
    let side = 3 * p
    let pixels = (0..<(side * side * 3)).map { UInt8(truncatingIfNeeded: $0 * 7 + $0 / 11) }
    let image = RGBImage(width: side, height: side, pixels: pixels)
    let extractor = FeatureExtractor(model: model)
    let features = try extractor.extract(images: [image],
                                         options: ExtractOptions(resize: .stretch(height: side, width: side), l2Normalize: true))
    guard features.gridHeight == 3, features.gridWidth == 3, features.patches.allSatisfy(\.isFinite) else {
        fail("unexpected extraction: \(features.gridHeight)×\(features.gridWidth)")
    }
    // Nearest patch of patch 0 among the picture's own patches (NecoEval): itself.
    let index = try PatchIndex(dim: features.dim)
    try index.add(features.patches)
    let hit = try index.search(Array(features.patches(of: 0).prefix(features.dim)), k: 1)
    guard hit.indices.first == 0 else { fail("patch 0's nearest neighbour is \(hit.indices)") }
    print("extraction: \(features.gridHeight)×\(features.gridWidth)×\(features.dim)")

    // 2. One NeCo step on two small pictures (crops of 2 and 1 patches, batch references).
    var config = NeCoRunConfig(totalSteps: 1)
    config.batchSize = 2
    config.log = .none
    config.objective.patchSize = p
    config.objective.crops.globalSize = 2 * p
    config.objective.crops.localSize = p
    config.objective.roiSize = 2
    config.objective.references = .batch
    let images = TrainingImages.memory([image, RGBImage(width: side, height: side, pixels: pixels.reversed())])
    let run = try NeCoRun(model: try model.copy(), images: images, config: config, directory: nil)
    let info = try run.step()
    guard info.loss.isFinite else { fail("loss \(info.loss)") }
    print("training step: loss \(info.loss)")

    // 3. ONNX export of the trained student.
    let onnx = outDir + "/consumer.onnx"
    let report = try ONNXExporter.export(model: run.trainer.student, to: onnx)
    print("export: \(onnx) (\(report.fileBytes) bytes)")
    print("SWIFT CONSUMER OK")
} catch {
    fail("\(error)")
}
