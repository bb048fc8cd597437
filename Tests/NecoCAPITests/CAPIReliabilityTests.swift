import CNecoSupport
import NecoCAPI
import NecoCore
import NecoModel
import NecoTrain
import XCTest
import _NecoTestSupport

#if canImport(Glibc)
import Glibc
#endif

// Hostile checkpoints through the C ABI: metadata values far outside their meaning, an invalid
// random state with a valid checksum, edited metadata, and older files whose checksum covers the
// tensors only. A refused checkpoint must leave the trainer exactly as it was.
final class CAPIReliabilityTests: XCTestCase {
    var model: OpaquePointer?
    var trainer: OpaquePointer?
    var folder: TempFolder!

    override func setUpWithError() throws {
        var mp = NecoCAPI.neco_model_default_params()
        mp.n_heads = 4
        XCTAssertEqual(NecoCAPI.neco_model_load(fixturePath("vit/tiny_reg4.weights.safetensors"), &mp, &model), NECO_OK,
                       String(cString: neco_last_error()))
        folder = try TempFolder(prefix: "neco-reliab")
        let w: Int32 = 40, h: Int32 = 36, n = Int(w * h * 3)
        let pixels: [[UInt8]] = (0..<4).map { i in (0..<n).map { k in UInt8(truncatingIfNeeded: (k * (3 + i) + k / 120) % 253) } }
        var p = NecoCAPI.neco_train_default_params()
        p.total_steps = 5
        p.batch_size = 2
        p.global_size = 28
        p.local_size = 14
        p.roi_size = 2
        p.references = Int32(NECO_REFERENCES_QUEUE.rawValue)
        p.queue_length = 64
        p.head_hidden_dim = 32
        p.head_out_dim = 16
        p.seed = 5
        var buffers = pixels.map { px -> UnsafeMutableBufferPointer<UInt8> in
            let b = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: px.count)
            _ = b.initialize(from: px)
            return b
        }
        defer { for b in buffers { b.deallocate() }; buffers = [] }
        var ptrs: [UnsafePointer<UInt8>?] = buffers.map { UnsafePointer($0.baseAddress!) }
        var hs = [Int32](repeating: h, count: 4), ws = [Int32](repeating: w, count: 4)
        XCTAssertEqual(NecoCAPI.neco_trainer_init_images(model, &ptrs, &hs, &ws, 4, &p, &trainer), NECO_OK,
                       String(cString: neco_last_error()))
        XCTAssertEqual(NecoCAPI.neco_trainer_step(trainer, nil), NECO_OK, String(cString: neco_last_error()))
    }

    override func tearDown() {
        NecoCAPI.neco_trainer_free(trainer)
        NecoCAPI.neco_model_free(model)
        folder?.cleanup()
    }

    /// Rewrites the checkpoint at `source` to `target` with `edit` applied to its metadata, and a
    /// checksum recomputed over the result (`checksum` true), recomputed as in version 1
    /// (`legacy`), or left as it was.
    func rewrite(_ source: String, to target: String, checksum: Bool = true, legacy: Bool = false,
                 _ edit: (inout [String: String]) -> Void) throws {
        let bytes = try FileIO.readAll(source)
        let n = Int(bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        let header = try JSONValue.parse(bytes[8..<(8 + n)])
        var meta: [String: String] = [:]
        for (k, v) in header["__metadata__"]?.objectValue ?? [] { meta[k] = v.stringValue }
        edit(&meta)
        if checksum {
            meta["checksum"] = try Checkpoint.checksum(tensorsOf: source, metadata: meta, coveringMetadata: !legacy)
        }
        var members = header.objectValue ?? []
        members.removeAll { $0.0 == "__metadata__" }
        members.insert(("__metadata__", .object(meta.keys.sorted().map { ($0, .string(meta[$0]!)) })), at: 0)
        var newHeader = Array(JSONValue.object(members).serialized().utf8)
        while newHeader.count % 8 != 0 { newHeader.append(0x20) }
        var out: [UInt8] = (0..<8).map { UInt8(truncatingIfNeeded: UInt64(newHeader.count) >> (8 * UInt64($0))) }
        out += newHeader
        out += bytes[(8 + n)...]
        try FileIO.writeAtomically(target, bytes: out)
    }

    func lastError() -> String { String(cString: neco_last_error()) }

    func testCheckpointMetadataIsValidatedAndARefusedLoadChangesNothing() throws {
        let good = folder.file("good.safetensors"), before = folder.file("before.safetensors")
        let after = folder.file("after.safetensors"), bad = folder.file("bad.safetensors")
        XCTAssertEqual(NecoCAPI.neco_trainer_save_checkpoint(trainer, good), NECO_OK, lastError())
        // Move the trainer on, so that a load that half-applied would show.
        XCTAssertEqual(NecoCAPI.neco_trainer_step(trainer, nil), NECO_OK, lastError())
        XCTAssertEqual(NecoCAPI.neco_trainer_save_checkpoint(trainer, before), NECO_OK, lastError())
        let edits: [(String, (inout [String: String]) -> Void)] = [
            ("adamw_step near Int64.max", { $0["adamw_step"] = String(Int64.max - 1) }),
            ("step near Int64.max", { $0["step"] = String(Int64.max - 1) }),
            ("step beyond total", { $0["step"] = "6" }),
            ("negative step", { $0["step"] = "-1" }),
            ("loader position near Int64.max", { $0["neco.loader_position"] = String(Int64.max - 7) }),
            ("loader epoch near Int64.max", { $0["neco.loader_epoch"] = String(Int64.max - 7) }),
            ("loader skipped near Int64.max", { $0["neco.loader_skipped"] = String(Int64.max) }),
            ("all-zero reference rng", { $0["neco.reference_rng"] = "0,0,0,0" }),
            ("reference rng with 5 words", { $0["neco.reference_rng"] = "1,2,3,4,5" }),
            ("all-zero trainer rng", { $0["rng_state"] = "0,0,0,0" }),
            ("queue fill beyond the queue", { $0["neco.queue_filled"] = "65,0" }),
        ]
        for (what, edit) in edits {
            try rewrite(good, to: bad, edit)
            let st = NecoCAPI.neco_trainer_load_checkpoint(trainer, bad)
            XCTAssertEqual(st, NECO_ERR_FORMAT, "\(what): \(lastError())")
            XCTAssertEqual(NecoCAPI.neco_trainer_step_count(trainer), 2, what)
            XCTAssertEqual(NecoCAPI.neco_trainer_save_checkpoint(trainer, after), NECO_OK, lastError())
            XCTAssertEqual(try FileIO.readAll(after), try FileIO.readAll(before), "\(what): the refused load changed the trainer")
        }
        // Metadata edited without a new checksum: the checksum covers the metadata.
        try rewrite(good, to: bad, checksum: false) { $0["neco.loader_position"] = "1" }
        XCTAssertEqual(NecoCAPI.neco_trainer_load_checkpoint(trainer, bad), NECO_ERR_FORMAT)
        XCTAssertTrue(lastError().contains("checksum"), lastError())
        // The untouched checkpoint loads, and the trainer continues from it.
        XCTAssertEqual(NecoCAPI.neco_trainer_load_checkpoint(trainer, good), NECO_OK, lastError())
        XCTAssertEqual(NecoCAPI.neco_trainer_step_count(trainer), 1)
        XCTAssertEqual(NecoCAPI.neco_trainer_step(trainer, nil), NECO_OK, lastError())
        XCTAssertEqual(NecoCAPI.neco_trainer_save_checkpoint(trainer, after), NECO_OK, lastError())
        XCTAssertEqual(try FileIO.readAll(after), try FileIO.readAll(before), "resumed step differs")
    }

    func testVersion1CheckpointsWithTensorOnlyChecksumsStillLoad() throws {
        let good = folder.file("good.safetensors"), old = folder.file("old.safetensors")
        XCTAssertEqual(NecoCAPI.neco_trainer_save_checkpoint(trainer, good), NECO_OK, lastError())
        try rewrite(good, to: old, legacy: true) { $0["version"] = Checkpoint.legacyVersion }
        XCTAssertEqual(NecoCAPI.neco_trainer_load_checkpoint(trainer, old), NECO_OK, lastError())
        // Their metadata values are still checked.
        try rewrite(good, to: old, legacy: true) {
            $0["version"] = Checkpoint.legacyVersion
            $0["adamw_step"] = String(Int64.max)
        }
        XCTAssertEqual(NecoCAPI.neco_trainer_load_checkpoint(trainer, old), NECO_ERR_FORMAT)
        // A version-2 file whose checksum covers only the tensors is corrupt.
        try rewrite(good, to: old, legacy: true) { _ in }
        XCTAssertEqual(NecoCAPI.neco_trainer_load_checkpoint(trainer, old), NECO_ERR_FORMAT)
    }
}
