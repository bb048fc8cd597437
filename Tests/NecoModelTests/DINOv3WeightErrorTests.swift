import NecoCore
import NecoModel
import XCTest
import _NecoTestSupport

/// Bad DINOv3 checkpoints give one clear error (never a trap): the tiny Meta fixture with one
/// thing broken at a time, through the same loader the C ABI uses.
final class DINOv3WeightErrorTests: XCTestCase {
    func metaTensors() throws -> [(name: String, shape: [Int], data: [Float])] {
        let f = try SafetensorsFile(path: fixturePath("dinov3/tiny_mlp.meta.weights.safetensors"))
        return try f.names.map { n in (n, f.info(n)!.shape, try f.floats(n)) }
    }

    func load(_ t: [(name: String, shape: [Int], data: [Float])], heads: Int? = 2) throws -> ViTModel {
        try WeightLoader.load(source: DictionaryTensorSource(t), options: LoadOptions(heads: heads))
    }

    func expect(_ kind: NecoError.Kind, _ part: String, _ t: [(name: String, shape: [Int], data: [Float])],
                heads: Int? = 2, file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try load(t, heads: heads)
            XCTFail("no error", file: file, line: line)
        } catch let e as NecoError {
            XCTAssertEqual(e.kind, kind, e.message, file: file, line: line)
            XCTAssertTrue(e.message.contains(part), "'\(e.message)' lacks '\(part)'", file: file, line: line)
        } catch { XCTFail("\(error)", file: file, line: line) }
    }

    func testBrokenMetaFiles() throws {
        let good = try metaTensors()
        XCTAssertNoThrow(try load(good))
        func edit(_ name: String, _ f: (inout (name: String, shape: [Int], data: [Float])) -> Void) -> [(name: String, shape: [Int], data: [Float])] {
            var t = good
            let i = t.firstIndex { $0.name == name }!
            f(&t[i])
            return t
        }
        // Periods that follow no base-100 schedule, or of the wrong length.
        expect(.format, "do not follow base 100", edit("rope_embed.periods") { $0.data[1] *= 1.5 })
        expect(.format, "rope_embed.periods", edit("rope_embed.periods") { $0.shape = [3]; $0.data.removeLast() })
        // A bias mask that is not 1 | 0 | 1.
        expect(.format, "key-bias mask", edit("blocks.1.attn.qkv.bias_mask") { $0.data[40] = 1 })
        // Missing and unexpected keys are listed together.
        var t = good.filter { $0.name != "blocks.0.ls2.gamma" }
        t.append(("blocks.0.extra.weight", [2], [0, 0]))
        expect(.format, "missing keys: blocks.0.ls2.gamma", t)
        expect(.format, "unexpected keys: blocks.0.extra.weight", t)
        // Heads that leave a head width not divisible by 4 (RoPE needs E/4 periods).
        expect(.shape, "head width must be a multiple of 4", good, heads: 16)
        // Non-finite weights.
        expect(.format, "non-finite", edit("blocks.0.attn.proj.weight") { $0.data[3] = .nan })
        // Asking to drop the registers is refused (DINOv3 needs its 4 storage tokens).
        XCTAssertThrowsError(try WeightLoader.load(source: DictionaryTensorSource(good), options: LoadOptions(heads: 2, registers: 0)))
    }
}
