import CNecoSupport
import Foundation
import Neco
import NecoCAPI
import NecoCore
import NecoEval
import NecoImage
import NecoModel
import NecoTrain
import XCTest
import _NecoTestSupport

/// The three front doors give the same numbers, bit for bit, because they call the same Swift
/// code: the CLI (`neco`, a separate process), the Swift API, and the C ABI (its `@_cdecl` entry
/// points with C structs). Tiny model; an extraction, the in-context protocol on the VOC scene of
/// the benchmark, and one NeCo step on the sample photos (the last two skip without
/// scripts/setup.sh's data).
final class ParityTests: XCTestCase {
    var tmp: TempFolder!
    override func setUpWithError() throws { tmp = try TempFolder(prefix: "neco-parity") }
    override func tearDown() { tmp.cleanup() }

    func cli(_ args: [String]) throws -> String {
        let exe = productsDirectory().appendingPathComponent("neco").path
        guard FileManager.default.isExecutableFile(atPath: exe) else { throw XCTSkip("neco not built at \(exe)") }
        let (rc, out) = try runTool(exe, args)
        XCTAssertEqual(rc, 0, out)
        return out
    }

    func swiftTiny() throws -> ViTModel { try WeightLoader.load(path: tinyModel, options: LoadOptions(heads: 4)) }

    func testExtraction() throws {
        let image = fixturePath("image/rgb.png")
        // CLI: a stacked (1, 3, 4, 32) .npy.
        let npy = tmp.file("f.npy")
        _ = try cli(["extract", "--model", tinyModel, "--heads", "4", image, "--size", "42x56", "--stack", "--l2", "--out", npy])
        let bytes = try FileIO.readAll(npy)
        let headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
        let cliFloats: [Float] = bytes[(10 + headerLength)...].withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }

        // Swift.
        let f = try FeatureExtractor(model: try swiftTiny())
            .extract(path: image, options: ExtractOptions(resize: .stretch(height: 42, width: 56), l2Normalize: true))

        // C.
        let m = try loadTiny()
        defer { NecoCAPI.neco_model_free(m) }
        var img: OpaquePointer?
        XCTAssertEqual(image.withCString { NecoCAPI.neco_image_load($0, &img) }, NECO_OK, lastError())
        defer { NecoCAPI.neco_image_free(img) }
        var p = NecoCAPI.neco_extract_default_params()
        p.height = 42
        p.width = 56
        p.l2_normalize = true
        var cFloats = [Float](repeating: .nan, count: 3 * 4 * 32)
        let st = cFloats.withUnsafeMutableBufferPointer { b -> neco_status in
            var out = neco_feature_buffers(patches_capacity: b.count, cls_capacity: 0, registers_capacity: 0,
                                           patches: b.baseAddress, cls: nil, registers: nil)
            return NecoCAPI.neco_extract_image(m, img, &p, &out)
        }
        XCTAssertEqual(st, NECO_OK, lastError())

        XCTAssertEqual(f.patches.count, 3 * 4 * 32)
        XCTAssertEqual(cliFloats, f.patches, "CLI vs Swift")
        XCTAssertEqual(cFloats, f.patches, "C vs Swift")
    }

    func testInContextEvaluation() throws {
        let bench = necoCache + "/bench/voc"
        guard FileIO.isDirectory(bench) else { throw XCTSkip("\(bench) missing: run scripts/setup.sh") }
        // CLI: the EVAL line carries the exact mIoU.
        let out = try cli(["eval", "--model", tinyModel, "--heads", "4", "--bench", "incontext", "--data", bench, "--size", "112"])
        guard let field = out.split(whereSeparator: { $0 == " " || $0 == "\n" }).first(where: { $0.hasPrefix("miou_exact=") }),
              let cliMIoU = Double(field.dropFirst("miou_exact=".count)) else {
            return XCTFail("no miou_exact in: \(out)")
        }

        // Swift.
        let b = try Benchmark(path: bench)
        let cache = try FeatureCache(model: try swiftTiny(), bench: b, size: 112, batch: 8)
        let r = try InContextProtocol().evaluate(cache, train: b.train, val: b.val, classes: b.classes.count)

        // C.
        let m = try loadTiny()
        defer { NecoCAPI.neco_model_free(m) }
        var p = NecoCAPI.neco_eval_default_params()
        p.size = 112
        var res = neco_eval_result()
        XCTAssertEqual(bench.withCString { NecoCAPI.neco_eval_incontext(m, $0, &p, &res, nil, 0) }, NECO_OK, lastError())

        XCTAssertEqual(cliMIoU, r.score.mIoU, "CLI vs Swift")
        XCTAssertEqual(res.miou, r.score.mIoU, "C vs Swift")
        XCTAssertEqual(res.pixel_accuracy, r.score.pixelAccuracy)
        XCTAssertEqual(Int(res.memory_patches), r.memoryPatches)
    }

    func testTrainingStep() throws {
        let photos = necoCache + "/photos"
        guard FileIO.isDirectory(photos) else { throw XCTSkip("\(photos) missing: run scripts/setup.sh") }
        // CLI: one step; log.csv holds the loss as Swift prints a Float (round-trip exact).
        let run = tmp.file("run")
        _ = try cli(["train", "--model", tinyModel, "--heads", "4", "--data", photos, "--out", run, "--steps", "1", "--batch", "2",
                     "--global-size", "28", "--local-size", "14", "--roi-size", "2", "--references", "batch", "--seed", "5",
                     "--quiet"])
        let csv = String(decoding: try FileIO.readAll(run + "/log.csv"), as: UTF8.self).split(separator: "\n")
        XCTAssertEqual(csv.count, 2)
        let columns = csv[0].split(separator: ","), values = csv[1].split(separator: ",")
        guard let li = columns.firstIndex(of: "loss"), let cliLoss = Float(values[li]) else { return XCTFail("no loss in \(csv)") }

        // Swift, configured as the C defaults and the CLI defaults agree on.
        var config = NeCoRunConfig(totalSteps: 1)
        config.batchSize = 2
        config.objective.crops.globalSize = 28
        config.objective.crops.localSize = 14
        config.objective.roiSize = 2
        config.objective.references = .batch
        config.trainer.seed = 5
        config.log = .none
        let model = try swiftTiny()
        config.objective.patchSize = model.config.patchSize
        let swiftRun = try NeCoRun(model: model, images: .folder(try ImageFolder(root: photos)), config: config, directory: nil)
        let swiftLoss = try swiftRun.step().loss

        // C.
        let m = try loadTiny()
        defer { NecoCAPI.neco_model_free(m) }
        var p = NecoCAPI.neco_train_default_params()
        p.total_steps = 1
        p.batch_size = 2
        p.global_size = 28
        p.local_size = 14
        p.roi_size = 2
        p.references = Int32(NECO_REFERENCES_BATCH.rawValue)
        p.seed = 5
        var tr: OpaquePointer?
        XCTAssertEqual(photos.withCString { NecoCAPI.neco_trainer_init_folder(m, $0, &p, &tr) }, NECO_OK, lastError())
        defer { NecoCAPI.neco_trainer_free(tr) }
        var progress = neco_train_progress()
        XCTAssertEqual(NecoCAPI.neco_trainer_step(tr, &progress), NECO_OK, lastError())

        XCTAssertTrue(swiftLoss.isFinite && swiftLoss > 0)
        XCTAssertEqual(cliLoss, swiftLoss, "CLI vs Swift")
        XCTAssertEqual(progress.loss, swiftLoss, "C vs Swift")
    }
}
