import Neco
import NecoCore
import NecoImage
import NecoModel
import XCTest
import _NecoTestSupport

/// The Swift API: extraction options, upsampling, PCA and .npy output.
final class FeaturesTests: XCTestCase {
    func tiny() throws -> FeatureExtractor {
        FeatureExtractor(model: try WeightLoader.load(path: fixturePath("vit/tiny_reg4.weights.safetensors"),
                                                      options: LoadOptions(heads: 4)))
    }

    /// Bilinear upsampling vs `F.interpolate(mode="bilinear", align_corners=False)`.
    func testUpsampleMatchesTorch() throws {
        let fx = try Fixture("kernels/upsample.safetensors")
        let x = try fx.floats("x")
        for (h, w) in [(70, 98), (11, 13), (5, 7), (32, 17)] {
            let up = Normalize.upsampleBilinear(x[...], height: 5, width: 7, dim: 6, outHeight: h, outWidth: w)
            // Four-tap blends of values ~2: a few float ulps of summation-order difference.
            assertClose(up, try fx.floats("up_\(h)x\(w)"), rtol: 0, atol: 2e-6, "upsample \(h)x\(w)")
        }
    }

    func testExtractSplitsTokensAndNormalises() throws {
        let ex = try tiny()
        let fx = try Fixture("vit/tiny_reg4.fixture.safetensors")
        let x = try fx.floats("x")
        let f = try x.withUnsafeBufferPointer {
            try ex.extract(tensor: $0.baseAddress!, batch: 2, height: 70, width: 70, upsampleToPixels: true)
        }
        let norm = try fx.floats("norm")  // (2, 30, 32): CLS, 4 registers, 25 patches
        XCTAssertEqual(f.gridHeight, 5); XCTAssertEqual(f.gridWidth, 5); XCTAssertEqual(f.registers, 4)
        for b in 0..<2 {
            assertClose(f.cls[(b * 32)..<((b + 1) * 32)], norm[(b * 30 * 32)..<(b * 30 * 32 + 32)], rtol: 0, atol: 2e-5, "cls")
            assertClose(f.registerTokens[(b * 128)..<((b + 1) * 128)], norm[(b * 960 + 32)..<(b * 960 + 160)], rtol: 0, atol: 2e-5, "registers")
            assertClose(f.patches(of: b), norm[(b * 960 + 160)..<((b + 1) * 960)], rtol: 0, atol: 2e-5, "patches")
        }
        XCTAssertEqual(f.pixels.count, 2 * 70 * 70 * 32)
        // A pixel at the centre of patch (2, 3) equals that patch's feature (bilinear weights 1 there).
        let centre = (2 * 14 + 7) * 70 + (3 * 14 + 7)
        let p = Array(f.pixels[(centre * 32)..<(centre * 32 + 32)])
        let expect = Array(f.patches(of: 0)[((2 * 5 + 3) * 32)..<((2 * 5 + 3) * 32 + 32)])
        // Half-pixel centres: pixel 35 maps to source 35.5/14 − 0.5 = 2.036, so allow the small blend.
        assertClose(p, expect, rtol: 0, atol: 0.5, "pixel near patch centre")

        let l2 = try x.withUnsafeBufferPointer { try ex.extract(tensor: $0.baseAddress!, batch: 2, height: 70, width: 70, l2Normalize: true) }
        for i in 0..<50 {
            var s: Float = 0
            for k in 0..<32 { s += l2.patches[i * 32 + k] * l2.patches[i * 32 + k] }
            XCTAssertEqual(s, 1, accuracy: 1e-5)
        }
    }

    func testExtractFromImagesEqualsPreprocessedTensor() throws {
        let ex = try tiny()
        let img = try ImageDecoder.load(path: fixturePath("image/rgb.png"))
        let mode = ResizeMode.stretch(height: 42, width: 56)
        let f = try ex.extract(images: [img, img], options: ExtractOptions(resize: mode))
        let t = try Preprocess.tensor(img, mode: mode)
        let g = try t.data.withUnsafeBufferPointer { try ex.extract(tensor: $0.baseAddress!, batch: 1, height: 42, width: 56) }
        // Batch 2 vs batch 1 split the GEMMs differently: equal up to float summation order.
        assertClose(Array(f.patches(of: 0)), g.patches, rtol: 0, atol: 1e-5, "image 0 of a batch of 2")
        assertClose(Array(f.patches(of: 1)), g.patches, rtol: 0, atol: 1e-5, "image 1 of a batch of 2")
        XCTAssertThrowsError(try ex.extract(images: [])) { XCTAssertEqual(($0 as? NecoError)?.kind, .invalidArgument) }
        XCTAssertThrowsError(try ex.extract(images: [img], options: ExtractOptions(resize: .stretch(height: 50, width: 56)))) {
            XCTAssertEqual(($0 as? NecoError)?.kind, .shape)
        }
    }

    /// PCA finds planted directions in order of variance.
    func testPCARecoversPlantedComponents() throws {
        var rng = TestRNG(seed: 5)
        let rows = 2000, dim = 16
        var x = [Float](repeating: 0, count: rows * dim)
        for r in 0..<rows {
            let a = rng.uniform() * 10, b = rng.uniform() * 5, c = rng.uniform() * 2
            x[r * dim + 3] = a; x[r * dim + 7] = b; x[r * dim + 11] = c
            for k in 0..<dim { x[r * dim + k] += rng.uniform() * 0.01 + 1 }
        }
        let p = try PCA.project(x[...], rows: rows, dim: dim, k: 3)
        for j in 0..<3 {
            let src = [3, 7, 11][j]
            var mean = 0.0
            for r in 0..<rows { mean += Double(x[r * dim + src]) / Double(rows) }
            var dot = 0.0, n1 = 0.0, n2 = 0.0
            for r in 0..<rows {
                let u = Double(p[r * 3 + j]), v = Double(x[r * dim + src]) - mean
                dot += u * v; n1 += u * u; n2 += v * v
            }
            // The planted columns are only uncorrelated up to sampling noise (~1/√rows), so the principal
            // axes are rotated slightly away from them.
            XCTAssertGreaterThan(abs(dot) / (n1.squareRoot() * n2.squareRoot()), 0.99, "component \(j)")
        }
    }

    func testNpyHeader() {
        let bytes = [Float](repeating: 1, count: 6).withUnsafeBufferPointer { Npy.encode(shape: [2, 3], data: $0) }
        XCTAssertEqual(Array(bytes.prefix(8)), [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0])
        let headerLen = Int(bytes[8]) | Int(bytes[9]) << 8
        XCTAssertEqual((10 + headerLen) % 64, 0)
        let header = String(decoding: bytes[10..<(10 + headerLen)], as: UTF8.self)
        XCTAssertTrue(header.hasPrefix("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"), header)
        XCTAssertEqual(bytes.count, 10 + headerLen + 24)
    }
}
