import Foundation
import XCTest
import _NecoTestSupport

/// The `neco` executable end to end: real work on the default model, and one-line errors with a
/// non-zero exit status on bad input.
final class CLITests: XCTestCase {
    func runTool(_ args: [String]) throws -> (Int32, String, String) {
        var products = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for b in Bundle.allBundles where b.bundlePath.hasSuffix(".xctest") { products = b.bundleURL.deletingLastPathComponent() }
        let exe = products.appendingPathComponent("neco").path
        guard FileManager.default.isExecutableFile(atPath: exe) else {
            throw NSError(domain: "CLITests", code: 1, userInfo: [NSLocalizedDescriptionKey: "neco executable not built at \(exe)"])
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    var tmp: String!
    override func setUpWithError() throws {
        tmp = NSTemporaryDirectory() + "neco-cli-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: tmp) }

    func assertOneLineError(_ args: [String], contains: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let (rc, out, err) = try runTool(args)
        XCTAssertNotEqual(rc, 0, "expected failure for \(args)", file: file, line: line)
        let msg = (err + out).trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertTrue(msg.contains(contains), "'\(msg)' lacks '\(contains)'", file: file, line: line)
        XCTAssertFalse(msg.contains("Fatal error") || msg.contains("Stack dump"), "crashed: \(msg)", file: file, line: line)
        XCTAssertLessThanOrEqual(msg.split(separator: "\n").count, 2, "not a one-line error: \(msg)", file: file, line: line)
    }

    func testInfoOnTinyModel() throws {
        let (rc, out, _) = try runTool(["info", "--model", fixturePath("vit/tiny_reg4.weights.safetensors"), "--heads", "4"])
        XCTAssertEqual(rc, 0)
        XCTAssertTrue(out.contains("scheme       timm"), out)
        XCTAssertTrue(out.contains("registers    4"), out)
    }

    func testExtractWritesNpy() throws {
        let img = fixturePath("image/rgb.png")
        let outFile = tmp + "/f.npy"
        let (rc, out, err) = try runTool(["extract", "--model", fixturePath("vit/tiny_reg4.weights.safetensors"), "--heads", "4",
                                          img, img, "--size", "42x56", "--stack", "--out", outFile])
        XCTAssertEqual(rc, 0, err)
        XCTAssertTrue(out.contains("[2, 3, 4, 32]"), out)
        let data = try Data(contentsOf: URL(fileURLWithPath: outFile))
        XCTAssertEqual(Array(data.prefix(6)), [0x93] + Array("NUMPY".utf8))
        // Header (128 bytes incl. magic) + 2·3·4·32 floats.
        XCTAssertEqual(data.count, 128 + 2 * 3 * 4 * 32 * 4)
    }

    /// `--model DIR` loads DIR/checkpoint.safetensors (a training run's folder); a folder without
    /// one is a one-line error naming the file it looked for.
    func testModelDirectoryLoadsItsCheckpoint() throws {
        let run = tmp + "/run"
        try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: fixturePath("vit/tiny_reg4.weights.safetensors"),
                                         toPath: run + "/checkpoint.safetensors")
        let (rc, out, err) = try runTool(["info", "--model", run, "--heads", "4"])
        XCTAssertEqual(rc, 0, err)
        XCTAssertTrue(out.contains("model        \(run)/checkpoint.safetensors"), out)
        XCTAssertTrue(out.contains("registers    4"), out)
        try assertOneLineError(["info", "--model", tmp], contains: "without a checkpoint.safetensors")
    }

    /// `neco plot` draws the eval.csv curves of several runs; bad runs give one-line errors.
    func testPlotDrawsRunCurves() throws {
        for (run, rows) in [("a", "0,incontext_miou,22.1\n0,rankme,177.0\n10,incontext_miou,23.4\n10,rankme,170.5\n20,incontext_miou,23.9\n"),
                            ("b", "0,incontext_miou,22.1\n10,incontext_miou,22.8\n")] {
            try FileManager.default.createDirectory(atPath: tmp + "/" + run, withIntermediateDirectories: true)
            try ("step,metric,value\n" + rows).write(toFile: tmp + "/\(run)/eval.csv", atomically: true, encoding: .utf8)
        }
        let out = tmp + "/curves.png"
        let (rc, stdout, stderr) = try runTool(["plot", tmp + "/a", tmp + "/b", "--label", "seed 0", "--label", "seed 1", "--out", out])
        XCTAssertEqual(rc, 0, stdout + stderr)
        let png = try Data(contentsOf: URL(fileURLWithPath: out))
        XCTAssertEqual(Array(png.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        try assertOneLineError(["plot", tmp + "/a", "--label", "x", "--label", "y", "--out", out], contains: "one --label per run")
        // --metric picks a monitor's rows; a metric a file lacks is named.
        XCTAssertEqual(try runTool(["plot", tmp + "/a", "--metric", "rankme", "--out", tmp + "/rank.png"]).0, 0)
        try assertOneLineError(["plot", tmp + "/b", "--metric", "rankme", "--out", out], contains: "no evaluations of 'rankme'")
        try assertOneLineError(["plot", tmp + "/missing", "--out", out], contains: "missing/eval.csv")
        // --scatter: series,x,y rows (header skipped), dots per series; a malformed row is named.
        try "series,x,y\nin-context,177,0\nin-context,128,2.6\nlinear,128,-5.7\n".write(toFile: tmp + "/pts.csv", atomically: true, encoding: .utf8)
        let (rc2, out2, err2) = try runTool(["plot", "--scatter", tmp + "/pts.csv", "--x-label", "RankMe", "--out", tmp + "/scatter.png"])
        XCTAssertEqual(rc2, 0, out2 + err2)
        XCTAssertEqual(Array(try Data(contentsOf: URL(fileURLWithPath: tmp + "/scatter.png")).prefix(4)), [0x89, 0x50, 0x4E, 0x47])
        try "series,x,y\nlinear,oops,1\n".write(toFile: tmp + "/bad.csv", atomically: true, encoding: .utf8)
        try assertOneLineError(["plot", "--scatter", tmp + "/bad.csv", "--out", tmp + "/s.png"], contains: "line 2 is not a series,x,y row")
    }

    func testBadInputsGiveOneLineErrors() throws {
        let tiny = ["--model", fixturePath("vit/tiny_reg4.weights.safetensors"), "--heads", "4"]
        try assertOneLineError(["info", "--model", "/nonexistent.safetensors"], contains: "/nonexistent.safetensors")
        try assertOneLineError(["extract"] + tiny + ["/nonexistent.png", "--out", tmp + "/x.npy"], contains: "/nonexistent.png")
        let junk = tmp + "/junk.jpg"
        try Data((0..<100).map { UInt8($0 * 7 % 256) }).write(to: URL(fileURLWithPath: junk))
        try assertOneLineError(["extract"] + tiny + [junk, "--out", tmp + "/x.npy"], contains: "junk.jpg")
        try assertOneLineError(["extract"] + tiny + [fixturePath("image/rgb.png"), "--size", "50", "--out", tmp + "/x.npy"],
                               contains: "multiple of the patch size")
        try assertOneLineError(["info", "--model", fixturePath("vit/tiny_reg4.weights.safetensors"), "--pos-rule", "nearest"],
                               contains: "unknown --pos-rule")
        try assertOneLineError(["info", "--model", fixturePath("vit/tiny_reg4.weights.safetensors"), "--config", "vitb14"],
                               contains: "does not fit the weights")
        try assertOneLineError(["train"] + tiny + ["--data", fixturePath("image"), "--out", tmp + "/run-qc", "--queue-counter", "both"],
                               contains: "--queue-counter must be shared or per-queue")
        try assertOneLineError(["eval", "--bench", "ranks"], contains: "unknown --bench 'ranks'")
        let train = ["train"] + tiny + ["--data", fixturePath("image"), "--out", tmp + "/run-mem"]
        try assertOneLineError(train + ["--recompute-ffn", "--recompute-ffn-blocks", "2"], contains: "not both")
        try assertOneLineError(train + ["--recompute-ffn-blocks=-1"], contains: "must not be negative")
        try assertOneLineError(train + ["--memory-limit", "0"], contains: "--memory-limit 0 MiB is out of range")
        try assertOneLineError(["train-bench", "--memory-limit", "99999999999"], contains: "out of range")
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp + "/run-mem"), "refused before the run folder is made")
    }
}
