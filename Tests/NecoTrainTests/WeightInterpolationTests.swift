import NecoCore
import NecoModel
import NecoTrain
import Foundation
import XCTest
import _NecoTestSupport

/// θ = (1 − α)·base + α·tuned, written as a plain model file that loads back.
final class WeightInterpolationTests: XCTestCase {
    func testEndpointsMidpointAndErrors() throws {
        let base = try TinyModels.model(TinyModels.reg(depth: 2), seed: 3)
        let tuned = try TinyModels.model(TinyModels.reg(depth: 2), seed: 4)
        // Every parameter tensor, concatenated (the slab may hold alignment gaps).
        func values(_ m: ViTModel) -> [Float] {
            m.params.layout.specs.flatMap { Array(UnsafeBufferPointer(start: m.params[$0.offset], count: $0.count)) }
        }
        let b = values(base), t = values(tuned)
        XCTAssertEqual(values(try WeightInterpolation.interpolate(base: base, tuned: tuned, alpha: 0)), b)
        XCTAssertEqual(values(try WeightInterpolation.interpolate(base: base, tuned: tuned, alpha: 1)), t)
        let mid = values(try WeightInterpolation.interpolate(base: base, tuned: tuned, alpha: 0.25))
        // (The compiler may fuse the multiply-add on either side: a float rounding apart.)
        _ = assertClose(mid, zip(b, t).map { 0.75 * $0 + 0.25 * $1 }, rtol: 0, atol: 1e-6, "midpoint")
        XCTAssertEqual(values(base), b, "the inputs are not changed")

        for bad in [-0.1, 1.5, Double.nan] {
            XCTAssertThrowsError(try WeightInterpolation.interpolate(base: base, tuned: tuned, alpha: bad))
        }
        let deeper = try TinyModels.model(TinyModels.reg(depth: 3), seed: 4)
        XCTAssertThrowsError(try WeightInterpolation.interpolate(base: base, tuned: deeper, alpha: 0.5)) { e in
            XCTAssertEqual((e as? NecoError)?.kind, .shape)
        }

        // A plain model file that loads back bit for bit.
        let path = NSTemporaryDirectory() + "neco-interp-\(getpid()).safetensors"
        defer { unlink(path) }
        let m = try WeightInterpolation.interpolate(base: base, tuned: tuned, alpha: 0.25)
        try Checkpoint.exportModel(m, to: path, metadata: ["which": "interpolated"])
        let back = try WeightLoader.load(path: path, options: LoadOptions(heads: base.config.heads))
        XCTAssertEqual(values(back), mid)
    }
}
