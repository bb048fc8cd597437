import Foundation
import NecoImage
import XCTest
import _NecoTestSupport

/// `neco train` end to end on the tiny fixture model: a run, its files, resume, one-line errors.
extension CLITests {
    /// Four small PNGs and one undecodable file in a fresh folder under `tmp`.
    func makeTrainingFolder() throws -> String {
        let dir = tmp + "/photos"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for i in 0..<4 {
            let w = 90 + 10 * i, h = 80
            let px = (0..<(w * h * 3)).map { k in UInt8(truncatingIfNeeded: (k * (7 + i)) % 251 + (k / (3 * w)) % 3) }
            try PNGWriter.write(RGBImage(width: w, height: h, pixels: px), to: "\(dir)/p\(i).png")
        }
        try Data("not a png".utf8).write(to: URL(fileURLWithPath: dir + "/broken.png"))
        return dir
    }

    var tinyTrainArgs: [String] {
        ["--model", fixturePath("vit/tiny_reg4.weights.safetensors"), "--heads", "4", "--batch", "2", "--global-size", "56",
         "--local-size", "28", "--roi-size", "3", "--references", "batch", "--quiet"]
    }

    func testTrainRunResumeAndErrors() throws {
        let data = try makeTrainingFolder()
        let run = tmp + "/run"
        let (rc, out, err) = try runTool(["train", "--data", data, "--out", run, "--steps", "4", "--checkpoint-every", "2"]
                                         + tinyTrainArgs)
        XCTAssertEqual(rc, 0, out + err)
        XCTAssertTrue(out.contains("step 4/4 loss"), out)
        XCTAssertTrue(out.contains("loss curve"), out)
        XCTAssertTrue(out.contains("finished 4 steps"), out)
        XCTAssertTrue(err.contains("skipping") && err.contains("broken.png"), "unreadable images are skipped with a warning: \(err)")
        for f in ["run.json", "checkpoint.safetensors", "student.safetensors", "teacher.safetensors", "log.csv"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/" + f), f)
        }
        let log = try String(contentsOfFile: run + "/log.csv", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(log.count, 5, "header + 4 steps")
        XCTAssertTrue(log[0].hasPrefix("step,epoch,loss,lr_backbone"))
        // The trained student is a model everywhere.
        let (irc, info, _) = try runTool(["info", "--model", run + "/student.safetensors", "--heads", "4"])
        XCTAssertEqual(irc, 0)
        XCTAssertTrue(info.contains("registers    4"), info)
        // Resuming a finished run does nothing.
        let (rrc, rout, _) = try runTool(["train", "--resume", run])
        XCTAssertEqual(rrc, 0)
        XCTAssertTrue(rout.contains("already finished"), rout)

        // One-line errors.
        let empty = tmp + "/empty"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        try assertOneLineError(["train", "--data", empty, "--out", tmp + "/r1"] + tinyTrainArgs, contains: "holds no .jpg")
        try assertOneLineError(["train", "--data", data, "--out", tmp + "/r2", "--global-size", "57"] + tinyTrainArgs.filter { $0 != "56" && $0 != "--global-size" },
                               contains: "multiple of the patch size 14")
        try assertOneLineError(["train", "--data", data, "--out", tmp + "/r3", "--steepness", "0"] + tinyTrainArgs,
                               contains: "steepness")
        try assertOneLineError(["train", "--data", data, "--out", tmp + "/r4", "--roi-size", "1"] + tinyTrainArgs.filter { $0 != "3" && $0 != "--roi-size" },
                               contains: "too small")
        try assertOneLineError(["train", "--data", data, "--out", run] + tinyTrainArgs, contains: "already holds a run")
        try assertOneLineError(["train", "--resume", tmp + "/nothing"], contains: "no checkpoint.safetensors")
        try assertOneLineError(["train", "--resume", run, "--steps", "9", "--lr-head", "1"],
                               contains: "drop --steps/--epochs, optimisation options")
        try assertOneLineError(["train", "--out", tmp + "/r5"], contains: "--data DIR is required")
        try assertOneLineError(["train", "--data", data, "--out", tmp + "/r6", "--relaxation", "fuzzy"] + tinyTrainArgs,
                               contains: "unknown --relaxation")
    }
}
