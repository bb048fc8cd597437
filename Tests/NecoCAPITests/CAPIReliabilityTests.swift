import CNecoSupport
import NecoCAPI
import NecoCore
import NecoImage
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

/// Paths as bytes, one-line messages, non-finite input, label limits and stale temporaries.
final class CAPIHostileInputTests: XCTestCase {
    var folder: TempFolder!
    override func setUpWithError() throws { folder = try TempFolder(prefix: "neco-hostile") }
    override func tearDown() { folder?.cleanup() }

    func lastError() -> String { String(cString: neco_last_error()) }

    /// `folder/` followed by `name`'s raw bytes, as a C string.
    func cPath(_ name: [UInt8]) -> [CChar] {
        (Array(folder.path.utf8) + [UInt8(ascii: "/")] + name + [0]).map { CChar(bitPattern: $0) }
    }

    /// Names of the folder's entries as raw bytes.
    func entries(_ dir: String) -> [[UInt8]] {
        guard let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        var out: [[UInt8]] = []
        while let e = readdir(d) {
            let name = withUnsafePointer(to: e.pointee.d_name) {
                $0.withMemoryRebound(to: UInt8.self, capacity: 256) { Array(UnsafeBufferPointer(start: $0, count: strlen(UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)))) }
            }
            if name != [46] && name != [46, 46] { out.append(name) }
        }
        return out.sorted { $0.lexicographicallyPrecedes($1) }
    }

    func testPathsThatAreNotUTF8KeepTheirBytes() throws {
        // Path round trip over every byte string shape: invalid bytes, valid UTF-8, and valid
        // UTF-8 of the escape range itself.
        for bytes: [UInt8] in [[0x6D, 0xFF, 0xFE], [0xC3, 0xA9], [0xF4, 0x8F, 0xBE, 0x80], [0xE9, 0x2F, 0x41], [0xC3], []] {
            XCTAssertEqual(Path.bytes(Path.string(bytes)), bytes)
        }
        XCTAssertEqual(Path.display(Path.string([0x61, 0xFF, 0x0A, 0x62])), "a\\xff\\nb")
        // A model file named m\xff\xfe.safetensors loads.
        let modelBytes = try FileIO.readAll(fixturePath("vit/tiny_reg4.weights.safetensors"))
        let name: [UInt8] = [0x6D, 0xFF, 0xFE] + Array(".safetensors".utf8)
        try FileIO.writeAtomically(Path.string(Array(folder.path.utf8) + [0x2F] + name), bytes: modelBytes)
        XCTAssertTrue(entries(folder.path).contains(name))
        var mp = NecoCAPI.neco_model_default_params()
        mp.n_heads = 4
        var model: OpaquePointer?
        XCTAssertEqual(NecoCAPI.neco_model_load(cPath(name), &mp, &model), NECO_OK, lastError())
        defer { NecoCAPI.neco_model_free(model) }
        // A missing one is reported with the bytes escaped, on one line.
        var none: OpaquePointer?
        XCTAssertEqual(NecoCAPI.neco_model_load(cPath([0x78, 0xFF, 0x0A, 0x79]), &mp, &none), NECO_ERR_IO)
        XCTAssertTrue(lastError().contains("x\\xff\\ny"), lastError())
        XCTAssertFalse(lastError().contains("\n"), lastError())
        // Export to a name with a \xff byte writes that exact name.
        let onnx: [UInt8] = [0x65, 0xFF] + Array(".onnx".utf8)
        XCTAssertEqual(NecoCAPI.neco_export_onnx(model, cPath(onnx), nil), NECO_OK, lastError())
        XCTAssertTrue(entries(folder.path).contains(onnx), "\(entries(folder.path))")
        // A training folder whose images have Latin-1 names.
        let images = folder.file("imgs")
        XCTAssertEqual(mkdir(images, 0o755), 0)
        for (i, base) in [[UInt8]]([[0x63, 0x61, 0x66, 0xE9], [0xFC, 0x62, 0x65, 0x72], [0xE5, 0x6C]]).enumerated() {
            let px = (0..<(40 * 36 * 3)).map { UInt8(truncatingIfNeeded: $0 * (i + 3) + $0 / 97) }
            let png = try PNGWriter.encode(RGBImage(width: 40, height: 36, pixels: px))
            try FileIO.writeAtomically(Path.string(Array(images.utf8) + [0x2F] + base + Array(".png".utf8)), bytes: png)
        }
        var p = NecoCAPI.neco_train_default_params()
        p.total_steps = 1
        p.batch_size = 2
        p.global_size = 28
        p.local_size = 14
        p.roi_size = 2
        p.references = Int32(NECO_REFERENCES_BATCH.rawValue)
        var trainer: OpaquePointer?
        XCTAssertEqual(NecoCAPI.neco_trainer_init_folder(model, images, &p, &trainer), NECO_OK, lastError())
        defer { NecoCAPI.neco_trainer_free(trainer) }
        var progress = neco_train_progress()
        XCTAssertEqual(NecoCAPI.neco_trainer_step(trainer, &progress), NECO_OK, lastError())
        XCTAssertEqual(progress.skipped_images, 0)
    }

    func testNonFiniteInputAndOverflowingInputAreRefused() throws {
        var mp = NecoCAPI.neco_model_default_params()
        mp.n_heads = 4
        var model: OpaquePointer?
        XCTAssertEqual(NecoCAPI.neco_model_load(fixturePath("vit/tiny_reg4.weights.safetensors"), &mp, &model), NECO_OK)
        defer { NecoCAPI.neco_model_free(model) }
        let n = 3 * 28 * 28
        var out = [Float](repeating: 0, count: 4 * 32)
        func run(_ input: [Float]) -> neco_status {
            input.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    var b = neco_feature_buffers()
                    b.patches_capacity = dst.count
                    b.patches = dst.baseAddress
                    var ep = NecoCAPI.neco_extract_default_params()
                    return NecoCAPI.neco_extract_nchw(model, src.baseAddress, 1, 28, 28, &ep, &b)
                }
            }
        }
        let ok = (0..<n).map { Float($0 % 17) / 8 - 1 }
        XCTAssertEqual(run(ok), NECO_OK, lastError())
        XCTAssertTrue(out.allSatisfy { $0.isFinite })
        for bad in [Float.nan, .infinity, -.infinity] {
            var x = ok
            x[n - 5] = bad
            XCTAssertEqual(run(x), NECO_ERR_INVALID_ARG, "\(bad)")
            XCTAssertTrue(lastError().contains("not finite"), lastError())
        }
        // Finite but so large that the forward overflows.
        // Finite but far outside normalised pixels: from about 1e19 the LayerNorm variance
        // overflows and the features silently become the LayerNorm bias, so such input is refused.
        for s: Float in [1e7, 1e19, 1e30, 3e38] {
            XCTAssertEqual(run(ok.map { $0 * s }), NECO_ERR_INVALID_ARG, "scale \(s): \(lastError())")
            XCTAssertTrue(lastError().contains("beyond ±1000000"), lastError())
        }
        XCTAssertEqual(run(ok.map { $0 * 1e5 }), NECO_OK, lastError())
        XCTAssertTrue(out.allSatisfy { $0.isFinite })
    }

    func testHugeLabelWithoutClassCountIsRefused() throws {
        var index: OpaquePointer?
        XCTAssertEqual(NecoCAPI.neco_index_init(4, &index), NECO_OK)
        defer { NecoCAPI.neco_index_free(index) }
        var rows: [Float] = [1, 0, 0, 0, 0, 1, 0, 0]
        var labels: [Int32] = [1 << 30, 0]
        XCTAssertEqual(NecoCAPI.neco_index_add(index, &rows, 2, &labels), NECO_OK)
        var pp = NecoCAPI.neco_predict_default_params()
        pp.k = 1
        var outLabels = [Int32](repeating: 0, count: 1)
        XCTAssertEqual(NecoCAPI.neco_index_predict(index, &rows, 1, &pp, nil, 0, &outLabels, 1), NECO_ERR_INVALID_ARG)
        XCTAssertTrue(lastError().contains("at most 65536"), lastError())
    }

    func testStaleTemporariesOfKilledWritersAreRemoved() throws {
        // A process that has exited: its pid is free.
        var pid: pid_t = 0
        var argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
        defer { free(argv[0]) }
        XCTAssertEqual(posix_spawn(&pid, "/bin/true", nil, nil, &argv, nil), 0)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        let dead = folder.file("checkpoint.safetensors.tmp-\(pid)")
        let live = folder.file("checkpoint.safetensors.tmp-1")   // init: alive
        let other = folder.file("notes.txt.tmp-\(pid)")          // not a run file
        for f in [dead, live, other] { try FileIO.writeAtomically(f, bytes: [1, 2, 3]) }
        XCTAssertEqual(NeCoRun.removeStaleTemporaries(folder.path), [dead])
        XCTAssertFalse(FileIO.exists(dead))
        XCTAssertTrue(FileIO.exists(live))
        XCTAssertTrue(FileIO.exists(other))
    }
}
