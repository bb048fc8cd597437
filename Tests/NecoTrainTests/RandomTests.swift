import NecoCore
import XCTest
import NecoTrain

final class RandomTests: XCTestCase {
    func testSameSeedSameStream() {
        var a = NecoRNG(seed: 42, stream: 1), b = NecoRNG(seed: 42, stream: 1), c = NecoRNG(seed: 42, stream: 2)
        let xa = (0..<100).map { _ in a.next() }
        XCTAssertEqual(xa, (0..<100).map { _ in b.next() })
        XCTAssertNotEqual(xa, (0..<100).map { _ in c.next() })
    }

    func testStateRoundTrip() throws {
        var a = NecoRNG(seed: 7)
        for _ in 0..<13 { _ = a.next() }
        var b = try NecoRNG(state: a.words)
        XCTAssertEqual((0..<50).map { _ in a.next() }, (0..<50).map { _ in b.next() })
        XCTAssertThrowsError(try NecoRNG(state: [0, 0, 0, 0]))
        XCTAssertThrowsError(try NecoRNG(state: [1, 2, 3]))
    }

    func testRangesAndPermutation() {
        var r = NecoRNG(seed: 3)
        var sum = 0.0
        for _ in 0..<20000 {
            let u = r.uniformFloat()
            XCTAssert(u >= 0 && u < 1)
            sum += Double(u)
            let k = r.bounded(7)
            XCTAssert(k >= 0 && k < 7)
        }
        XCTAssertEqual(sum / 20000, 0.5, accuracy: 0.01)
        for n in [1, 2, 5, 49] {
            XCTAssertEqual(r.permutation(n).sorted(), Array(0..<n))
        }
        var m = 0.0, v = 0.0
        for _ in 0..<20000 { let x = Double(r.truncatedNormal(std: 0.02, low: -2, high: 2)); m += x; v += x * x }
        XCTAssertEqual(m / 20000, 0, accuracy: 0.001)
        XCTAssertEqual((v / 20000).squareRoot(), 0.02, accuracy: 0.001)
        for _ in 0..<1000 {
            let x = r.truncatedNormal(std: 1, low: -0.5, high: 0.5)
            XCTAssert(x >= -0.5 && x <= 0.5)
        }
    }
}
