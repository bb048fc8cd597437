import NecoCore
import NecoModel
import NecoTrain
import XCTest
import _NecoTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// A training checkpoint loads anywhere a model loads: `WeightLoader.load(path:)` (so the CLI's
/// `--model`, `neco eval`, the C ABI's `neco_model_load`) gives the checkpoint's student backbone,
/// with the heads, position rule, name and LayerNorm ε recorded in its `model` metadata.
final class CheckpointLoadTests: XCTestCase {
    func tmpPath(_ name: String) -> String {
        let dir = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        return "\(dir)/neco-ckpt-load-\(getpid())-\(name)"
    }

    /// A tiny trainer whose student differs from every loader default: 2 heads for D = 8 (the
    /// default would be max(1, 8/64) = 1), 2 registers with the `.bicubic` rule (a Meta-keyed
    /// file with registers would get `.antialias`), ε = 1e-5 (the default is 1e-6). Its teacher is
    /// pushed away from the student so that picking the wrong backbone cannot go unnoticed.
    func makeTrainer() throws -> Trainer {
        var arch = TinyModels.reg(rule: .bicubic, depth: 2)
        arch.layerNormEps = 1e-5
        var c = TrainerConfig(totalSteps: 4)
        c.headHiddenDim = 12
        c.headOutDim = 6
        c.headLayers = 3
        let t = try Trainer(student: try TinyModels.model(arch, seed: 23), config: c)
        let teacher = try XCTUnwrap(t.teacher).params.slab
        for i in 0..<teacher.count { teacher.base[i] += 0.25 }
        return t
    }

    /// Final-LayerNorm tokens of `model` on a fixed 12×16 input (a 3×4 grid: the 3×3 position
    /// table is resampled, so the rule matters).
    func tokens(_ model: ViTModel) throws -> [Float] {
        let h = 12, w = 16
        let x = (0..<(3 * h * w)).map { Float(sin(0.21 * Double($0))) }
        var out = [Float](repeating: 0, count: model.tokenCount(height: h, width: w) * model.config.embedDim)
        try out.withUnsafeMutableBufferPointer { o in
            try x.withUnsafeBufferPointer { try model.forward(out: o.baseAddress!, images: $0.baseAddress!, batch: 1, height: h, width: w) }
        }
        return out
    }

    func testCheckpointLoadsAsItsStudent() throws {
        let path = tmpPath("student.safetensors"), export = tmpPath("export.safetensors")
        defer { unlink(path); unlink(export) }
        let t = try makeTrainer()
        try Checkpoint.save(t, to: path)
        let file = try SafetensorsFile(path: path)
        XCTAssertEqual(file.metadata["format"], Checkpoint.format)
        XCTAssert(file.names.contains("teacher.blocks.1.attn.qkv.weight"))
        XCTAssert(file.names.contains(Checkpoint.secondMomentKey))

        let m = try WeightLoader.load(path: path)
        // Bit for bit the student, not the teacher.
        XCTAssertEqual(Array(m.params.slab.buffer), Array(t.student.params.slab.buffer))
        XCTAssertNotEqual(Array(m.params.slab.buffer), Array(try XCTUnwrap(t.teacher).params.slab.buffer))
        // The whole architecture, from the tensors and the recorded config.
        XCTAssertEqual(m.config, t.student.config)
        XCTAssertEqual(m.config.registers, 2)
        XCTAssertEqual(m.config.heads, 2)
        XCTAssertEqual(m.config.posEmbedRule, .bicubic)
        XCTAssertEqual(m.config.layerNormEps, 1e-5)
        XCTAssertEqual(m.config.name, "tiny_reg")
        XCTAssertEqual(m.scheme, .meta)
        // Same weights and architecture, so the same forward pass, resampling included (both
        // unpacked, so both run the same GEMMs: the trainer unpacked its student).
        XCTAssertFalse(t.student.weightsArePacked)
        m.unpackWeights()
        XCTAssertEqual(try tokens(m), try tokens(t.student))

        // The exported student loads the same way and is the same model.
        try Checkpoint.exportModel(t, to: export)
        let e = try WeightLoader.load(path: export)
        XCTAssertEqual(e.config, t.student.config)
        XCTAssertEqual(Array(e.params.slab.buffer), Array(m.params.slab.buffer))
        // `Checkpoint.loadModel` reads the student through the same loader: the same weights and
        // the whole recorded architecture.
        let viaCheckpoint = try Checkpoint.loadModel(path: path)
        XCTAssertEqual(Array(viaCheckpoint.params.slab.buffer), Array(m.params.slab.buffer))
        XCTAssertEqual(viaCheckpoint.config.posEmbedRule, m.config.posEmbedRule)
        XCTAssertEqual(viaCheckpoint.config.heads, m.config.heads)
        XCTAssertEqual(viaCheckpoint.config, t.student.config)
    }

    /// A NeCo run's checkpoint also stores its reference queues, named in the `extra_tensors`
    /// metadata: the loader skips them. An unlisted stray tensor is still an error.
    func testExtraTensorsOfARunAreSkipped() throws {
        let path = tmpPath("extra.safetensors"), bad = tmpPath("stray.safetensors")
        defer { unlink(path); unlink(bad) }
        let t = try makeTrainer()
        var queue = (0..<(2 * 3 * 4)).map { Float($0) * 0.1 }  // (nG, L, E) = (2, 3, 4)
        try queue.withUnsafeMutableBufferPointer { q in
            try Checkpoint.save(t, to: path, extraTensors: [Checkpoint.ExtraTensor(name: NeCoRun.queueTensor, shape: [2, 3, 4],
                                                                                   base: q.baseAddress!)])
        }
        let file = try SafetensorsFile(path: path)
        XCTAssertEqual(file.metadata["extra_tensors"], NeCoRun.queueTensor)
        let m = try WeightLoader.load(path: path)
        XCTAssertEqual(Array(m.params.slab.buffer), Array(t.student.params.slab.buffer))
        XCTAssertEqual(m.config, t.student.config)

        var w = SafetensorsWriter()
        for n in file.names { try w.add(n, shape: file.info(n)!.shape, floats: try file.floats(n)) }
        w.metadata = file.metadata
        w.metadata["extra_tensors"] = nil
        try w.write(to: bad)
        XCTAssertThrowsError(try WeightLoader.load(path: bad)) {
            XCTAssertEqual(($0 as? NecoError)?.kind, .format)
            XCTAssertTrue(($0 as? NecoError)?.message.contains("unexpected keys: \(NeCoRun.queueTensor)") ?? false, "\($0)")
        }
    }

    /// Explicit options win over the recorded config: another rule, other heads, no registers (XR).
    func testOptionsOverrideTheRecordedConfig() throws {
        let path = tmpPath("override.safetensors")
        defer { unlink(path) }
        let t = try makeTrainer()
        try Checkpoint.save(t, to: path)
        let m = try WeightLoader.load(path: path, options: LoadOptions(heads: 4, registers: 0, posEmbedRule: .neco))
        XCTAssertEqual(m.config.posEmbedRule, .neco)
        XCTAssertEqual(m.config.heads, 4)
        XCTAssertEqual(m.config.registers, 0)
        XCTAssertEqual(m.params.count, t.student.params.count - 2 * 8)  // the (1, 2, 8) register tokens dropped
        XCTAssertNotEqual(try tokens(m), try tokens(t.student))
        XCTAssertThrowsError(try WeightLoader.load(path: path, options: LoadOptions(registers: 3))) {
            XCTAssertEqual(($0 as? NecoError)?.kind, .shape)
        }
    }

    /// A libneco file whose recorded config contradicts its tensors, or names an unknown rule,
    /// fails with a format error naming the key.
    func testInconsistentMetadataIsAnError() throws {
        let path = tmpPath("ok.safetensors"), bad = tmpPath("bad.safetensors")
        defer { unlink(path); unlink(bad) }
        let t = try makeTrainer()
        try Checkpoint.exportModel(t, to: path)
        let file = try SafetensorsFile(path: path)
        let model = try JSONValue.parse(try XCTUnwrap(file.metadata["model"]))
        func rewrite(_ key: String, _ value: JSONValue) throws {
            var w = SafetensorsWriter()
            for n in file.names { try w.add(n, shape: file.info(n)!.shape, floats: try file.floats(n)) }
            w.metadata = file.metadata
            w.metadata["model"] = JSONValue.object((model.objectValue ?? []).map { ($0.0, $0.0 == key ? value : $0.1) }).serialized()
            try w.write(to: bad)
        }
        func expectFormat(_ needle: String, line: UInt = #line) {
            XCTAssertThrowsError(try WeightLoader.load(path: bad), line: line) { e in
                let err = e as? NecoError
                XCTAssertEqual(err?.kind, .format, line: line)
                XCTAssertTrue(err?.message.contains(needle) ?? false, "\(String(describing: err?.message)) lacks '\(needle)'", line: line)
            }
        }
        try rewrite("depth", .number(3))
        expectFormat("depth 3 (weights: 2)")
        try rewrite("registers", .number(0))
        expectFormat("registers 0 (weights: 2)")
        try rewrite("pos_embed_rule", .string("nearest"))
        expectFormat("pos_embed_rule")
        try rewrite("heads", .string("two"))
        expectFormat("heads")
        // Unchanged, it loads.
        try rewrite("name", .string("renamed"))
        XCTAssertEqual(try WeightLoader.load(path: bad).config.name, "renamed")
    }
}
