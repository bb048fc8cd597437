import CNecoSupport
import NecoCAPI
import NecoCore
import NecoTrain
import XCTest
import _NecoTestSupport

#if canImport(Glibc)
import Glibc
#endif

// The "Training" section of neco.h called from Swift: params mapping, a short run with a callback,
// checkpoints through the C names, and the models a trainer hands out.
final class CAPITrainTests: XCTestCase {
    var model: OpaquePointer?
    var pixels: [[UInt8]] = []
    let width: Int32 = 40, height: Int32 = 36

    override func setUpWithError() throws {
        var mp = NecoCAPI.neco_model_default_params()
        mp.n_heads = 4
        XCTAssertEqual(NecoCAPI.neco_model_load(fixturePath("vit/tiny_reg4.weights.safetensors"), &mp, &model), NECO_OK,
                       String(cString: neco_last_error()))
        let n = Int(width * height * 3)
        pixels = (0..<4).map { (i: Int) -> [UInt8] in
            (0..<n).map { (k: Int) -> UInt8 in UInt8(truncatingIfNeeded: (k * (3 + i) + k / 120) % 253) }
        }
    }

    override func tearDown() {
        NecoCAPI.neco_model_free(model)
    }

    /// Crops of 2 and 1 patches, a 2×2 ROI grid, batch references: a complete NeCo step in ms.
    func params(steps: Int64) -> neco_train_params {
        var p = NecoCAPI.neco_train_default_params()
        p.total_steps = steps
        p.batch_size = 2
        p.global_size = 28
        p.local_size = 14
        p.roi_size = 2
        p.references = Int32(NECO_REFERENCES_BATCH.rawValue)
        p.seed = 5
        return p
    }

    func trainer(_ p: neco_train_params) -> (neco_status, OpaquePointer?) {
        var out: OpaquePointer?
        var ptrs: [UnsafePointer<UInt8>?] = []
        var keep: [UnsafeMutableBufferPointer<UInt8>] = []
        for px in pixels {
            let b = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: px.count)
            _ = b.initialize(from: px)
            keep.append(b)
            ptrs.append(UnsafePointer(b.baseAddress!))
        }
        defer { for b in keep { b.deallocate() } }  // the trainer copies the pixels
        var hs = [Int32](repeating: height, count: 4), ws = [Int32](repeating: width, count: 4)
        var params = p
        let st = NecoCAPI.neco_trainer_init_images(model, &ptrs, &hs, &ws, 4, &params, &out)
        return (st, out)
    }

    func testRunCheckpointAndModels() throws {
        let (st, tr) = trainer(params(steps: 5))
        XCTAssertEqual(st, NECO_OK, String(cString: neco_last_error()))
        defer { NecoCAPI.neco_trainer_free(tr) }
        // Two steps through the callback, which records the losses.
        final class Seen { var losses: [Float] = []; var steps: [Int64] = [] }
        let seen = Seen()
        let callback: @convention(c) (UnsafePointer<neco_train_progress>?, UnsafeMutableRawPointer?) -> Bool = { p, user in
            let s = Unmanaged<Seen>.fromOpaque(user!).takeUnretainedValue()
            s.losses.append(p!.pointee.loss)
            s.steps.append(p!.pointee.step)
            return true  // continue
        }
        XCTAssertEqual(NecoCAPI.neco_trainer_run(tr, 2, callback, Unmanaged.passUnretained(seen).toOpaque()), NECO_OK)
        XCTAssertEqual(seen.steps, [1, 2])
        XCTAssertTrue(seen.losses.allSatisfy { $0.isFinite && $0 > 0 })
        XCTAssertEqual(NecoCAPI.neco_trainer_step_count(tr), 2)

        // Save, step on, load: the next step repeats exactly.
        let path = (getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp") + "/neco-capi-train-\(getpid()).safetensors"
        defer { unlink(path) }
        XCTAssertEqual(NecoCAPI.neco_trainer_save_checkpoint(tr, path), NECO_OK)
        var a = neco_train_progress(), b = neco_train_progress()
        XCTAssertEqual(NecoCAPI.neco_trainer_step(tr, &a), NECO_OK)
        XCTAssertEqual(NecoCAPI.neco_trainer_load_checkpoint(tr, path), NECO_OK)
        XCTAssertEqual(NecoCAPI.neco_trainer_step_count(tr), 2)
        XCTAssertEqual(NecoCAPI.neco_trainer_step(tr, &b), NECO_OK)
        XCTAssertEqual(a.loss.bitPattern, b.loss.bitPattern)
        XCTAssertEqual(a.step, 3)
        XCTAssertEqual(a.total_steps, 5)
        XCTAssertGreaterThan(a.step_seconds, 0)

        // The student as a model: a copy with the architecture of the input model.
        var student: OpaquePointer?
        XCTAssertEqual(NecoCAPI.neco_trainer_get_model(tr, false, &student), NECO_OK)
        XCTAssertEqual(NecoCAPI.neco_model_embed_dim(student), 32)
        XCTAssertEqual(NecoCAPI.neco_model_n_registers(student), 4)
        XCTAssertEqual(NecoCAPI.neco_model_n_params(student), NecoCAPI.neco_model_n_params(model))
        NecoCAPI.neco_model_free(student)

        // The checkpoint's student loads as a model too.
        var loaded: OpaquePointer?
        var mp = NecoCAPI.neco_model_default_params()
        mp.n_heads = 4
        XCTAssertEqual(NecoCAPI.neco_model_load(path, &mp, &loaded), NECO_OK, String(cString: neco_last_error()))
        NecoCAPI.neco_model_free(loaded)

        // A callback that stops: NECO_ERR_ABORTED after one step.
        let stop: @convention(c) (UnsafePointer<neco_train_progress>?, UnsafeMutableRawPointer?) -> Bool = { _, _ in false }
        XCTAssertEqual(NecoCAPI.neco_trainer_run(tr, 0, stop, nil), NECO_ERR_ABORTED)
        XCTAssertTrue(String(cString: neco_last_error()).contains("stopped by the callback (it returned false) after step 4"))
        XCTAssertEqual(NecoCAPI.neco_trainer_step_count(tr), 4)
    }

    func testParamsAreChecked() throws {
        let d = NecoCAPI.neco_train_default_params()
        XCTAssertEqual(d.total_steps, 100)
        XCTAssertEqual(d.global_size, 224)
        XCTAssertEqual(d.local_size, 98)
        XCTAssertEqual(d.steepness, 100)
        var p = params(steps: 3)
        p.global_size = 30
        var (st, tr) = trainer(p)
        XCTAssertEqual(st, NECO_ERR_INVALID_ARG)
        XCTAssertNil(tr)
        XCTAssertTrue(String(cString: neco_last_error()).contains("multiple of the patch size 14"), String(cString: neco_last_error()))
        p = params(steps: 3)
        p.relaxation = Int32(NECO_RELAX_LOGISTIC.rawValue)
        (st, tr) = trainer(p)
        XCTAssertEqual(st, NECO_OK)
        // logistic at steepness 100 underflows without a floor: the step fails with the hint and
        // changes nothing.
        var out = neco_train_progress()
        let s = NecoCAPI.neco_trainer_step(tr, &out)
        if s != NECO_OK {
            XCTAssertEqual(s, NECO_ERR_INTERNAL)
            XCTAssertTrue(String(cString: neco_last_error()).contains("log floor"), String(cString: neco_last_error()))
            XCTAssertEqual(NecoCAPI.neco_trainer_step_count(tr), 0)
        }
        NecoCAPI.neco_trainer_free(tr)
        p.log_floor = 1e-30
        (st, tr) = trainer(p)
        XCTAssertEqual(st, NECO_OK)
        XCTAssertEqual(NecoCAPI.neco_trainer_step(tr, &out), NECO_OK, String(cString: neco_last_error()))
        XCTAssertTrue(out.loss.isFinite)
        NecoCAPI.neco_trainer_free(tr)
    }

    /// memory_limit_mib and recompute_ffn_blocks: checked, applied to the trainer, a limit too
    /// small for any recompute count fails the step with NECO_ERR_OOM and changes nothing, and
    /// the recompute count changes no number; an older header's struct_size reads both as 0.
    func testMemoryParams() throws {
        var p = params(steps: 3)
        for (limit, blocks) in [(Int64(-1), Int32(0)), (Int64(1) << 31, 0), (0, -1), (0, 5000)] {
            p.memory_limit_mib = limit
            p.recompute_ffn_blocks = blocks
            let (st, tr) = trainer(p)
            XCTAssertEqual(st, NECO_ERR_INVALID_ARG, "\(limit) \(blocks)")
            XCTAssertNil(tr)
        }
        var st = NECO_OK, tr: OpaquePointer?
        var out = neco_train_progress()
        var losses: [Float] = []
        for (blocks, limit): (Int32, Int64) in [(0, 0), (1, 0), (100, 0), (0, 4096)] {
            p = params(steps: 3)
            p.recompute_ffn_blocks = blocks
            p.memory_limit_mib = limit
            (st, tr) = trainer(p)
            XCTAssertEqual(st, NECO_OK)
            XCTAssertEqual(NecoCAPI.neco_trainer_step(tr, &out), NECO_OK, String(cString: neco_last_error()))
            losses.append(out.loss)
            NecoCAPI.neco_trainer_free(tr)
        }
        XCTAssertEqual(losses[1], losses[0])
        XCTAssertEqual(losses[2], losses[0])
        XCTAssertEqual(losses[3], losses[0])
        // A limit below the weights alone.
        p = params(steps: 3)
        p.memory_limit_mib = 1
        p.head_hidden_dim = 512  // the head's weights and moments alone take more than 1 MiB
        (st, tr) = trainer(p)
        XCTAssertEqual(st, NECO_OK)
        XCTAssertEqual(NecoCAPI.neco_trainer_step(tr, &out), NECO_ERR_OOM)
        XCTAssertTrue(String(cString: neco_last_error()).contains("memory limit"), String(cString: neco_last_error()))
        XCTAssertEqual(NecoCAPI.neco_trainer_step_count(tr), 0)
        NecoCAPI.neco_trainer_free(tr)
        // An older header: struct_size ending at head_only_steps.
        p = params(steps: 3)
        p.memory_limit_mib = 99_999_999_999  // beyond the caller's struct: never read
        p.struct_size = MemoryLayout<neco_train_params>.offset(of: \.memory_limit_mib)!
        (st, tr) = trainer(p)
        XCTAssertEqual(st, NECO_OK, String(cString: neco_last_error()))
        XCTAssertEqual(NecoCAPI.neco_trainer_step(tr, &out), NECO_OK, String(cString: neco_last_error()))
        NecoCAPI.neco_trainer_free(tr)
    }
}
