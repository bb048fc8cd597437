import NecoCore
import NecoEval
import XCTest

/// Confusion matrix, IoU, the three matchings, and the Hungarian solver, on tiny hand-made label
/// maps whose answers are worked out by hand in the comments.
final class MetricsTests: XCTestCase {
    func confusion(gt: [UInt8], pred: [Int32], g: Int, k: Int) throws -> ConfusionMatrix {
        var cm = try ConfusionMatrix(gtClasses: g, predClasses: k)
        try cm.add(gt: gt, pred: pred)
        return cm
    }

    /// 4×4 maps, 2 classes.
    ///     gt          pred
    ///     0 0 1 1     0 0 1 1
    ///     0 0 1 1     0 1 1 1
    ///     0 0 0 0     0 0 0 0
    ///     0 0 0 0     0 0 0 1
    /// class 0: TP 10, FP 0, FN 2 → 10/12; class 1: TP 4, FP 2, FN 0 → 4/6. mIoU = (5/6 + 2/3)/2 = 0.75.
    func testIdentityIoUByHand() throws {
        let gt: [UInt8] = [0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
        let pred: [Int32] = [0, 0, 1, 1, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1]
        let cm = try confusion(gt: gt, pred: pred, g: 2, k: 2)
        XCTAssertEqual(cm.counts, [10, 2, 0, 4])
        let s = Matching.identity.score(cm)
        XCTAssertEqual(s.perClass[0], 10.0 / 12.0, accuracy: 1e-12)
        XCTAssertEqual(s.perClass[1], 4.0 / 6.0, accuracy: 1e-12)
        XCTAssertEqual(s.mIoU, 0.75, accuracy: 1e-12)
        XCTAssertEqual(s.pixelAccuracy, 14.0 / 16.0, accuracy: 1e-12)
    }

    /// Ignore pixels (255) are dropped from every count.
    func testIgnoreLabel() throws {
        let gt: [UInt8] = [0, 255, 1, 255]
        let pred: [Int32] = [0, 1, 1, 0]
        let cm = try confusion(gt: gt, pred: pred, g: 2, k: 2)
        XCTAssertEqual(cm.total, 2)
        XCTAssertEqual(Matching.identity.score(cm).mIoU, 1, accuracy: 1e-12)
    }

    /// A class absent from the ground truth and never predicted counts as IoU 0 in the mean
    /// over all classes (P23), but not in `mIoUPresent`.
    func testAbsentClassCountsAsZero() throws {
        let cm = try confusion(gt: [0, 0, 1, 1], pred: [0, 0, 1, 1], g: 3, k: 3)
        let s = Matching.identity.score(cm)
        XCTAssertEqual(s.perClass, [1, 1, 0])
        XCTAssertEqual(s.mIoU, 2.0 / 3.0, accuracy: 1e-12)
        XCTAssertEqual(s.mIoUPresent, 1, accuracy: 1e-12)
        XCTAssertEqual(s.present, [true, true, false])
    }

    /// Hungarian matching undoes a permutation of the predicted labels.
    func testHungarianUndoesPermutation() throws {
        let gt: [UInt8] = [0, 0, 1, 1, 2, 2, 2, 0]
        let perm: [Int32] = [2, 0, 1]  // class c is predicted as perm[c]
        let pred = gt.map { perm[Int($0)] }
        let cm = try confusion(gt: gt, pred: pred, g: 3, k: 3)
        XCTAssertEqual(Matching.identity.score(cm).mIoU, 0, accuracy: 1e-12)
        let s = Matching.hungarian.score(cm)
        XCTAssertEqual(s.mIoU, 1, accuracy: 1e-12)
        XCTAssertEqual(s.mapping, [1, 2, 0])  // label 0 ↔ class 1, label 1 ↔ class 2, label 2 ↔ class 0
    }

    /// Hungarian maximises the summed IoU, not per-class greed.
    ///     gt   = 0 0 0 0 1 1
    ///     pred = 0 0 0 1 1 1
    /// IoU(0,0) = 3/4, IoU(1,1) = 2/3 (sum 17/12); IoU(0,1) = 1/6, IoU(1,0) = 0 (sum 1/6): identity wins.
    func testHungarianMaximisesSum() throws {
        let cm = try confusion(gt: [0, 0, 0, 0, 1, 1], pred: [0, 0, 0, 1, 1, 1], g: 2, k: 2)
        let s = Matching.hungarian.score(cm)
        XCTAssertEqual(s.mapping, [0, 1])
        XCTAssertEqual(s.mIoU, (0.75 + 2.0 / 3.0) / 2, accuracy: 1e-12)
    }

    /// More predicted labels than classes (Hungarian): unmatched labels count as misses.
    func testHungarianRectangular() throws {
        // 3 labels, 2 classes: label 2 is a small extra cluster inside class 1.
        let gt: [UInt8] = [0, 0, 0, 1, 1, 1]
        let pred: [Int32] = [1, 1, 1, 0, 0, 2]
        let cm = try confusion(gt: gt, pred: pred, g: 2, k: 3)
        let s = Matching.hungarian.score(cm)
        XCTAssertEqual(s.mapping, [1, 0, -1])
        // class 0: TP 3 → 1; class 1: TP 2, FN 1 → 2/3.
        XCTAssertEqual(s.perClass[0], 1, accuracy: 1e-12)
        XCTAssertEqual(s.perClass[1], 2.0 / 3.0, accuracy: 1e-12)
    }

    /// Many-to-one by precision: every cluster goes to the class holding most of its pixels.
    ///     gt   = 0 0 0 0 1 1 1 1 2 2
    ///     pred = 0 0 1 1 2 2 2 3 3 3       (cluster 3: 1 pixel of class 1, 2 of class 2 → class 2)
    /// class 0: clusters {0,1} → TP 4 → IoU 1; class 1: cluster {2} → TP 3, FN 1 → 3/4;
    /// class 2: cluster {3} → TP 2, FP 1 → 2/3.
    func testManyToOne() throws {
        let gt: [UInt8] = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
        let pred: [Int32] = [0, 0, 1, 1, 2, 2, 2, 3, 3, 3]
        let cm = try confusion(gt: gt, pred: pred, g: 3, k: 4)
        let s = Matching.manyToOne.score(cm)
        XCTAssertEqual(s.mapping, [0, 0, 1, 2])
        XCTAssertEqual(s.perClass[0], 1, accuracy: 1e-12)
        XCTAssertEqual(s.perClass[1], 0.75, accuracy: 1e-12)
        XCTAssertEqual(s.perClass[2], 2.0 / 3.0, accuracy: 1e-12)
        XCTAssertEqual(s.mIoU, (1 + 0.75 + 2.0 / 3.0) / 3, accuracy: 1e-12)
    }

    func testAccumulatesOverImages() throws {
        var a = try confusion(gt: [0, 1], pred: [0, 1], g: 2, k: 2)
        let b = try confusion(gt: [1, 1], pred: [0, 1], g: 2, k: 2)
        try a.add(b)
        XCTAssertEqual(a.counts, [1, 0, 1, 2])
    }

    func testBadInput() throws {
        var cm = try ConfusionMatrix(gtClasses: 2, predClasses: 2)
        XCTAssertThrowsError(try cm.add(gt: [UInt8](repeating: 0, count: 4), pred: [Int32](repeating: 0, count: 3))) {
            XCTAssertEqual(($0 as? NecoError)?.kind, .shape)
        }
        XCTAssertThrowsError(try cm.add(gt: [UInt8]([0, 7]), pred: [Int32]([0, 0]))) {
            XCTAssertEqual(($0 as? NecoError)?.kind, .invalidArgument)
        }
        XCTAssertThrowsError(try cm.add(gt: [UInt8]([0, 1]), pred: [Int32]([0, 2]))) {
            XCTAssertEqual(($0 as? NecoError)?.kind, .invalidArgument)
        }
        XCTAssertEqual(cm.total, 0, "a refused label map leaves the matrix unchanged")
        XCTAssertThrowsError(try ConfusionMatrix(gtClasses: 0, predClasses: 2))
        XCTAssertThrowsError(try cm.score(mapping: [0])) { XCTAssertEqual(($0 as? NecoError)?.kind, .shape) }
    }

    // MARK: Hungarian solver

    /// The textbook 3×3 example: optimum 5 (rows → cols 1, 0, 2: 1 + 2 + 2).
    func testHungarianKnownMatrix() {
        let cost: [Double] = [4, 1, 3,
                              2, 0, 5,
                              3, 2, 2]
        let a = Hungarian.solve(cost: cost, rows: 3, cols: 3)
        XCTAssertEqual(a, [1, 0, 2])
    }

    /// Random square and rectangular matrices against brute force over all assignments.
    func testHungarianAgainstBruteForce() {
        var rng = NecoRNG(seed: 3)
        for (n, m) in [(1, 1), (2, 2), (3, 5), (4, 4), (5, 5), (4, 7), (6, 6)] {
            for _ in 0..<20 {
                let cost = (0..<(n * m)).map { _ in Double(rng.bounded(20)) - 5 }
                let a = Hungarian.solve(cost: cost, rows: n, cols: m)
                XCTAssertEqual(Set(a).count, n, "assignment must be injective")
                let got = (0..<n).reduce(0.0) { $0 + cost[$1 * m + a[$1]] }
                XCTAssertEqual(got, bruteForce(cost, n, m), accuracy: 1e-9, "\(n)×\(m)")
            }
        }
    }

    func bruteForce(_ cost: [Double], _ n: Int, _ m: Int) -> Double {
        var best = Double.infinity
        var used = [Bool](repeating: false, count: m)
        func go(_ r: Int, _ acc: Double) {
            if r == n { best = min(best, acc); return }
            for c in 0..<m where !used[c] {
                used[c] = true
                go(r + 1, acc + cost[r * m + c])
                used[c] = false
            }
        }
        go(0, 0)
        return best
    }
}
