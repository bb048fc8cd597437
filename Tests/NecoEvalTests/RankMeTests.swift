import XCTest
import NecoCore
import NecoEval
import _NecoTestSupport

/// RankMe against PyTorch's SVD (scripts/reference/make_rankme_fixture.py) and against spectra
/// whose effective rank is known exactly.
final class RankMeTests: XCTestCase {
    /// libneco takes the singular values from the Gram matrix's eigenvalues (Double); the fixture
    /// from `torch.linalg.svdvals` in float64. Both start from the same float32 matrix, so only
    /// the Double rounding of the two routes differs: a zero singular value comes out of the Gram
    /// route as √(1e-16·λ_max) ≈ 1e-8·σ_max instead of ~1e-16·σ_max, which moves its ε-sized
    /// entropy term by ~1e-8 relative per value.
    static let fixtureTolerance = 1e-6

    func testMatchesTheReferenceSVD() throws {
        let fx = try Fixture("eval/rankme.safetensors")
        for name in ["spread", "rank3", "wide", "collapsed"] {
            let z = try fx.floats(name), shape = fx.shape(name)
            let want = try XCTUnwrap(Double(fx.metadata[name] ?? ""), name)
            let got = try z.withUnsafeBufferPointer { try RankMe.score($0.baseAddress!, rows: shape[0], dim: shape[1]) }
            XCTAssertEqual(got, want, accuracy: Self.fixtureTolerance * want, name)
        }
    }

    func testKnownSpectra() throws {
        // D equal singular values: exactly D, up to the ε terms (p = 1/D + ε each).
        for d in [1, 2, 7, 64] {
            let sigma = [Double](repeating: 3, count: d)
            let p = 1 / Double(d) + RankMe.epsilon
            XCTAssertEqual(try RankMe.score(singularValues: sigma), exp(-Double(d) * p * log(p)), accuracy: 1e-12)
            XCTAssertEqual(try RankMe.score(singularValues: sigma), Double(d), accuracy: 1e-4 * Double(d))
        }
        // An orthogonal design: rows e_i scaled by s_i have singular values s_i (a permutation of rows).
        let s: [Float] = [4, 2, 1, 1, 0.5]
        var z = [Float](repeating: 0, count: 6 * 5)  // one all-zero row
        for i in 0..<5 { z[i * 5 + (i * 2) % 5] = s[i] }
        let fromMatrix = try z.withUnsafeBufferPointer { try RankMe.score($0.baseAddress!, rows: 6, dim: 5) }
        XCTAssertEqual(fromMatrix, try RankMe.score(singularValues: s.map(Double.init)), accuracy: 1e-12)
        // Scale does not matter.
        let scaled = z.map { $0 * 1000 }
        XCTAssertEqual(try scaled.withUnsafeBufferPointer { try RankMe.score($0.baseAddress!, rows: 6, dim: 5) }, fromMatrix,
                       accuracy: 1e-9)
    }

    func testBadInput() throws {
        let zeros = [Float](repeating: 0, count: 12)
        XCTAssertThrowsError(try zeros.withUnsafeBufferPointer { try RankMe.score($0.baseAddress!, rows: 3, dim: 4) })
        XCTAssertThrowsError(try zeros.withUnsafeBufferPointer { try RankMe.score($0.baseAddress!, rows: 0, dim: 4) })
        XCTAssertThrowsError(try RankMe.score(singularValues: []))
        XCTAssertThrowsError(try RankMe.score(singularValues: [1, .nan]))
    }
}
