import CNecoSupport
import Neco
import NecoCAPI
import NecoCore
import NecoEval
import NecoImage
import NecoModel
import XCTest
import _NecoTestSupport

/// DINOv3 through the C ABI: loading (family, 16-px patches), the expected-preset check,
/// extraction equal to the Swift forward, the patch index, and a trainer on 16-px crops.
final class CAPIDINOv3Tests: XCTestCase {
    let path = fixturePath("dinov3/tiny_mlp.meta.weights.safetensors")

    func load(_ mp: inout neco_model_params) -> (neco_status, OpaquePointer?) {
        var m: OpaquePointer? = nil
        let st = path.withCString { NecoCAPI.neco_model_load($0, &mp, &m) }
        return (st, m)
    }

    func testLoadExtractIndexAndTrain() throws {
        var mp = NecoCAPI.neco_model_default_params()
        mp.n_heads = 2
        mp.image_height = 64
        mp.image_width = 96
        let (st, loaded) = load(&mp)
        XCTAssertEqual(st, NECO_OK, lastError())
        let m = try XCTUnwrap(loaded)
        defer { NecoCAPI.neco_model_free(m) }
        XCTAssertEqual(NecoCAPI.neco_model_family(m), Int32(NECO_FAMILY_DINOV3.rawValue))
        XCTAssertEqual(NecoCAPI.neco_model_patch_size(m), 16)
        XCTAssertEqual(NecoCAPI.neco_model_n_registers(m), 4)
        XCTAssertEqual(NecoCAPI.neco_model_n_heads(m), 2)

        // Extraction at 64×96 (4×6 patches) equals the Swift forward's final patch tokens.
        let h = 50, w = 70
        let pixels = (0..<(h * w * 3)).map { UInt8(($0 * 29) % 251) }
        let swiftModel = try WeightLoader.load(path: path, options: LoadOptions(heads: 2))
        let t = try Preprocess.tensor(RGBImage(width: w, height: h, pixels: pixels), mode: .stretch(height: 64, width: 96))
        let f = try t.data.withUnsafeBufferPointer {
            try FeatureExtractor(model: swiftModel).extract(tensor: $0.baseAddress!, batch: 1, height: 64, width: 96)
        }
        var params = NecoCAPI.neco_extract_default_params()
        var patches = [Float](repeating: .nan, count: 24 * 32)
        let est = patches.withUnsafeMutableBufferPointer { dp -> neco_status in
            var out = neco_feature_buffers(patches_capacity: dp.count, cls_capacity: 0, registers_capacity: 0,
                                           patches: dp.baseAddress, cls: nil, registers: nil)
            return pixels.withUnsafeBufferPointer { NecoCAPI.neco_extract_rgb(m, $0.baseAddress, Int32(h), Int32(w), &params, &out) }
        }
        XCTAssertEqual(est, NECO_OK, lastError())
        XCTAssertEqual(patches, f.patches)

        // Index: every patch is its own nearest neighbour.
        var ix: OpaquePointer? = nil
        XCTAssertEqual(NecoCAPI.neco_index_init(32, &ix), NECO_OK)
        defer { NecoCAPI.neco_index_free(ix) }
        var normed = patches
        Normalize.l2Rows(&normed, dim: 32)
        XCTAssertEqual(NecoCAPI.neco_index_add(ix, normed, 24, nil), NECO_OK, lastError())
        var idx = [Int64](repeating: -1, count: 24), sims = [Float](repeating: 0, count: 24)
        XCTAssertEqual(NecoCAPI.neco_index_search(ix, normed, 24, 1, &idx, &sims, nil, 24), NECO_OK, lastError())
        XCTAssertEqual(idx, (0..<24).map { Int64($0) })

        // A trainer on 16-px crops (global 64, local 32): two steps with a finite loss.
        var tp = NecoCAPI.neco_train_default_params()
        tp.total_steps = 2
        tp.batch_size = 2
        tp.global_size = 64
        tp.local_size = 32
        tp.roi_size = 3
        tp.references = Int32(NECO_REFERENCES_BATCH.rawValue)
        let buffers = (0..<4).map { i -> UnsafeMutableBufferPointer<UInt8> in
            let b = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: 48 * 56 * 3)
            for k in 0..<b.count { b[k] = UInt8(truncatingIfNeeded: (k * (5 + i) + k / 97) % 253) }
            return b
        }
        defer { for b in buffers { b.deallocate() } }
        var ptrs: [UnsafePointer<UInt8>?] = buffers.map { UnsafePointer($0.baseAddress!) }
        var hs = [Int32](repeating: 48, count: 4), ws = [Int32](repeating: 56, count: 4)
        var trainer: OpaquePointer? = nil
        let tst = NecoCAPI.neco_trainer_init_images(m, &ptrs, &hs, &ws, 4, &tp, &trainer)
        XCTAssertEqual(tst, NECO_OK, lastError())
        defer { NecoCAPI.neco_trainer_free(trainer) }
        var progress = neco_train_progress()
        XCTAssertEqual(NecoCAPI.neco_trainer_step(trainer, &progress), NECO_OK, lastError())
        XCTAssertTrue(progress.loss.isFinite && progress.loss > 0)
        var student: OpaquePointer? = nil
        XCTAssertEqual(NecoCAPI.neco_trainer_get_model(trainer, false, &student), NECO_OK, lastError())
        XCTAssertEqual(NecoCAPI.neco_model_family(student), Int32(NECO_FAMILY_DINOV3.rawValue))
        NecoCAPI.neco_model_free(student)

        // Crops off the 16-px grid are refused with a clear message.
        tp.local_size = 28
        var bad: OpaquePointer? = nil
        let bst = NecoCAPI.neco_trainer_init_images(m, &ptrs, &hs, &ws, 4, &tp, &bad)
        XCTAssertEqual(bst, NECO_ERR_INVALID_ARG)
        XCTAssertTrue(lastError().contains("multiple of the patch size 16"), lastError())
    }

    func testExpectedPresetAndFamilyOfNull() {
        var mp = NecoCAPI.neco_model_default_params()
        mp.n_heads = 2
        let (st, m) = "dinov3_vits16".withCString { name -> (neco_status, OpaquePointer?) in
            mp.expect_arch = name
            return load(&mp)
        }
        XCTAssertEqual(st, NECO_ERR_SHAPE)
        XCTAssertNil(m)
        XCTAssertTrue(lastError().contains("config dinov3_vits16 does not fit"), lastError())
        XCTAssertEqual(NecoCAPI.neco_model_family(nil), 0)
    }
}
