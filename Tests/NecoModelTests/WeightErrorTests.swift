import Foundation
import Neco
import NecoCore
import NecoModel
import XCTest
import _NecoTestSupport

/// Bad weights give one clear error naming the file and the problem; nothing crashes.
final class WeightErrorTests: XCTestCase {
    var tmp: String!

    override func setUpWithError() throws {
        tmp = NSTemporaryDirectory() + "neco-weights-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: tmp) }

    func expectError(_ kind: NecoError.Kind, containing parts: [String], file: StaticString = #filePath, line: UInt = #line,
                     _ body: () throws -> Void) {
        do {
            try body()
            XCTFail("no error thrown", file: file, line: line)
        } catch let e as NecoError {
            XCTAssertEqual(e.kind, kind, "\(e.message)", file: file, line: line)
            for p in parts { XCTAssertTrue(e.message.contains(p), "'\(e.message)' lacks '\(p)'", file: file, line: line) }
        } catch {
            XCTFail("unexpected error type \(error)", file: file, line: line)
        }
    }

    /// Copies the tiny timm weights into a writer, letting the test edit them.
    func rewrite(_ name: String, edit: (inout [(String, [Int], [Float])]) -> Void) throws -> String {
        let src = try SafetensorsFile(path: fixturePath("vit/tiny_reg4.weights.safetensors"))
        var tensors = try src.names.map { ($0, src.info($0)!.shape, try src.floats($0)) }
        edit(&tensors)
        var w = SafetensorsWriter()
        for (n, s, d) in tensors { try w.add(n, shape: s, floats: d) }
        let path = tmp + "/" + name
        try w.write(to: path)
        return path
    }

    func testMissingFile() {
        expectError(.io, containing: ["/nonexistent/model.safetensors"]) {
            _ = try WeightLoader.load(path: "/nonexistent/model.safetensors")
        }
    }

    func testTruncatedFile() throws {
        let bytes = try FileIO.readAll(fixturePath("vit/tiny_reg4.weights.safetensors"))
        let path = tmp + "/truncated.safetensors"
        try FileIO.writeAtomically(path, bytes: Array(bytes.prefix(bytes.count - 1000)))
        expectError(.format, containing: [path, "truncated"]) { _ = try WeightLoader.load(path: path) }
    }

    func testBadHeader() throws {
        let path = tmp + "/bad.safetensors"
        var bytes: [UInt8] = [12, 0, 0, 0, 0, 0, 0, 0]
        bytes += Array("{not json!!}".utf8)
        try FileIO.writeAtomically(path, bytes: bytes)
        expectError(.format, containing: [path]) { _ = try WeightLoader.load(path: path) }
        let notST = tmp + "/photo.safetensors"
        try FileIO.writeAtomically(notST, bytes: Array("\u{89}PNG\r\n\u{1a}\n....".utf8))
        expectError(.format, containing: [notST]) { _ = try WeightLoader.load(path: notST) }
    }

    func testWrongDtype() throws {
        let src = try SafetensorsFile(path: fixturePath("vit/tiny_reg4.weights.safetensors"))
        var w = SafetensorsWriter()
        for n in src.names {
            let s = src.info(n)!.shape
            if n == "norm.bias" { try w.addInt64(n, shape: s, ints: [Int64](repeating: 0, count: s.reduce(1, *))) }
            else { try w.add(n, shape: s, floats: try src.floats(n)) }
        }
        let path = tmp + "/int.safetensors"
        try w.write(to: path)
        expectError(.format, containing: [path, "norm.bias", "I64"]) { _ = try WeightLoader.load(path: path, options: LoadOptions(heads: 4)) }
    }

    func testMissingUnexpectedAndWrongShapeKeysAreListedTogether() throws {
        let path = try rewrite("edited.safetensors") { t in
            t.removeAll { $0.0 == "blocks.1.mlp.fc2.bias" }
            t.append(("head.weight", [10, 32], [Float](repeating: 0, count: 320)))
            if let i = t.firstIndex(where: { $0.0 == "blocks.0.attn.proj.weight" }) { t[i] = (t[i].0, [16, 64], t[i].2) }
        }
        expectError(.format, containing: [path, "missing keys: blocks.1.mlp.fc2.bias", "unexpected keys: head.weight",
                                          "wrong shapes: blocks.0.attn.proj.weight"]) {
            _ = try WeightLoader.load(path: path, options: LoadOptions(heads: 4))
        }
    }

    func testConfigThatDoesNotFit() {
        expectError(.shape, containing: ["vitb14", "embed dim 32 (expected 768)", "depth 2 (expected 12)"]) {
            _ = try WeightLoader.load(path: fixturePath("vit/tiny_reg4.weights.safetensors"),
                                      options: LoadOptions(heads: 4, expect: ViTConfig.preset("vitb14", registers: 4)!))
        }
        expectError(.shape, containing: ["asked for 2 register tokens", "4"]) {
            _ = try WeightLoader.load(path: fixturePath("vit/tiny_reg4.weights.safetensors"), options: LoadOptions(heads: 4, registers: 2))
        }
        expectError(.invalidArgument, containing: ["not divisible by 5 heads"]) {
            _ = try WeightLoader.load(path: fixturePath("vit/tiny_reg4.weights.safetensors"), options: LoadOptions(heads: 5))
        }
    }

    /// Degenerate shapes that once reached an index or a NaN-to-Int conversion in the loader.
    func testDegenerateShapes() throws {
        let scalarFC = try rewrite("scalar.safetensors") { t in
            if let i = t.firstIndex(where: { $0.0 == "blocks.0.mlp.fc1.weight" }) { t[i] = (t[i].0, [], [0]) }
        }
        expectError(.format, containing: [scalarFC, "blocks.0.mlp.fc1.weight", "no scalar or empty tensors"]) {
            _ = try WeightLoader.load(path: scalarFC, options: LoadOptions(heads: 4))
        }
        let emptyPos = try rewrite("emptypos.safetensors") { t in
            if let i = t.firstIndex(where: { $0.0 == "pos_embed" }) { t[i] = (t[i].0, [1, 0, 32], []) }
        }
        expectError(.format, containing: [emptyPos, "pos_embed"]) { _ = try WeightLoader.load(path: emptyPos, options: LoadOptions(heads: 4)) }
    }

    func testNonFiniteWeights() throws {
        let path = try rewrite("nan.safetensors") { t in
            if let i = t.firstIndex(where: { $0.0 == "blocks.0.ls1.gamma" }) { t[i].2[3] = .nan }
        }
        expectError(.format, containing: [path, "blocks.0.ls1.gamma", "non-finite"]) {
            _ = try WeightLoader.load(path: path, options: LoadOptions(heads: 4))
        }
    }

    /// NeCo's "XR" setting: register weights loaded into a model without registers.
    func testDroppingRegisters() throws {
        let m = try WeightLoader.load(path: fixturePath("vit/tiny_reg4.weights.safetensors"), options: LoadOptions(heads: 4, registers: 0))
        XCTAssertEqual(m.config.registers, 0)
        XCTAssertEqual(m.tokenCount(height: 70, width: 70), 26)
    }

    func testBadInputSizes() throws {
        let m = try WeightLoader.load(path: fixturePath("vit/tiny_reg4.weights.safetensors"), options: LoadOptions(heads: 4))
        var out = [Float](repeating: 0, count: 4096)
        let img = [Float](repeating: 0, count: 3 * 20 * 20)
        for (h, w, msg) in [(20, 20, "not a multiple of the patch size 14"), (7, 14, "smaller than one 14×14 patch")] {
            expectError(.shape, containing: [msg]) {
                try out.withUnsafeMutableBufferPointer { try m.forward(out: $0.baseAddress!, images: img, batch: 1, height: h, width: w) }
            }
        }
    }
}
