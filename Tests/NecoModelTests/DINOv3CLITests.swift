import Foundation
import NecoImage
import XCTest
import _NecoTestSupport

/// `neco train`, `neco info` and `neco eval` on a tiny random DINOv3 file (16-px patches, RoPE).
extension CLITests {
    var dinov3Model: String { fixturePath("dinov3/tiny_mlp.meta.weights.safetensors") }

    /// A two-class benchmark folder (scripts/build_benchmark.py layout) of 64×64 images.
    func writeBenchmark() throws -> String {
        let root = tmp + "/bench"
        for split in ["train", "val"] {
            for sub in ["images", "labels"] {
                try FileManager.default.createDirectory(atPath: "\(root)/\(split)/\(sub)", withIntermediateDirectories: true)
            }
            for i in 0..<3 {
                var img = RGBImage(width: 64, height: 64), lab = RGBImage(width: 64, height: 64)
                for y in 0..<64 {
                    for x in 0..<64 {
                        let inside = (x - 20 - 4 * i) * (x - 20 - 4 * i) + (y - 30) * (y - 30) < 300
                        for c in 0..<3 {
                            img.pixels[(y * 64 + x) * 3 + c] = UInt8(inside ? 200 - 30 * c : 40 + (x * 3 + y + c * 50) % 90)
                            lab.pixels[(y * 64 + x) * 3 + c] = inside ? 1 : 0
                        }
                    }
                }
                try PNGWriter.write(img, to: "\(root)/\(split)/images/\(split)\(i).png")
                try PNGWriter.write(lab, to: "\(root)/\(split)/labels/\(split)\(i).png")
            }
        }
        try Data("background\nthing\n".utf8).write(to: URL(fileURLWithPath: root + "/classes.txt"))
        return root
    }

    func testDINOv3TrainResumeInfoAndEval() throws {
        let (irc, info, ierr) = try runTool(["info", "--model", dinov3Model, "--heads", "2"])
        XCTAssertEqual(irc, 0, ierr)
        XCTAssertTrue(info.contains("dinov3"), info)
        XCTAssertTrue(info.contains("RoPE"), info)

        let data = try makeTrainingFolder()
        let run = tmp + "/run3"
        let args = ["--model", dinov3Model, "--heads", "2", "--batch", "2", "--global-size", "64", "--local-size", "32",
                    "--roi-size", "3", "--references", "batch", "--rope-rescale", "2", "--quiet"]
        let (rc, out, err) = try runTool(["train", "--data", data, "--out", run, "--steps", "3", "--checkpoint-every", "2"] + args)
        XCTAssertEqual(rc, 0, out + err)
        XCTAssertTrue(out.contains("step 3/3 loss"), out)
        for f in ["run.json", "checkpoint.safetensors", "student.safetensors", "teacher.safetensors", "log.csv"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/" + f), f)
        }
        let (src, sinfo, _) = try runTool(["info", "--model", run + "/student.safetensors"])
        XCTAssertEqual(src, 0)
        XCTAssertTrue(sinfo.contains("RoPE") && sinfo.contains("registers    4"), sinfo)
        let (rrc, rout, _) = try runTool(["train", "--resume", run])
        XCTAssertEqual(rrc, 0)
        XCTAssertTrue(rout.contains("already finished"), rout)

        // Crops must be multiples of 16; RoPE options need a RoPE model.
        try assertOneLineError(["train", "--data", data, "--out", tmp + "/r7", "--global-size", "56"]
                               + args.filter { $0 != "64" && $0 != "--global-size" }, contains: "multiple of the patch size 16")
        try assertOneLineError(["train", "--data", data, "--out", tmp + "/r8", "--rope-rescale", "2"] + tinyTrainArgs,
                               contains: "need a RoPE (DINOv3) model")

        // Evaluation of the trained student on a tiny benchmark.
        let bench = try writeBenchmark()
        let (erc, eout, eerr) = try runTool(["eval", "--model", run + "/student.safetensors", "--data", bench, "--size", "64",
                                             "--bench", "incontext", "--k", "3"])
        XCTAssertEqual(erc, 0, eout + eerr)
        XCTAssertTrue(eout.lowercased().contains("miou"), eout)
    }
}
