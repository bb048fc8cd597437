import NecoCore
import NecoImage
import XCTest

/// The training-curve chart: any finite values (a diverging loss of 1e30 included) draw without
/// trapping, non-finite points are skipped, and tick labels use the shared fixed-point text.
final class LinePlotTests: XCTestCase {
    func testFixedPointText() {
        XCTAssertEqual(FixedPoint.text(3.14159, digits: 2), "3.14")
        XCTAssertEqual(FixedPoint.text(-0.004, digits: 2), "0.00")
        XCTAssertEqual(FixedPoint.text(-2.5, digits: 0), "-3")
        XCTAssertEqual(FixedPoint.text(12, digits: 3), "12.000")
        XCTAssertEqual(FixedPoint.text(1e30, digits: 1), "\(1e30)")
        XCTAssertEqual(FixedPoint.text(.infinity, digits: 1), "inf")
    }

    /// A legend that fits stays in the title row; a long one wraps into rows under the chart, which
    /// grows by their height (its colour swatches drawn there).
    func testLegendWrapsBelowTheChart() {
        func plot(_ n: Int, _ name: String) -> RGBImage {
            LinePlot(title: "mIoU", xLabel: "step", series: (0..<n).map { i in
                LinePlot.Series(name: "\(name) \(i)", color: (200, UInt8(i * 20), 0), points: [(0, 1), (10, Double(i))])
            }).render()
        }
        let short = plot(2, "seed"), long = plot(8, "a much longer run description")
        XCTAssertEqual(short.height, 400)
        XCTAssertGreaterThan(long.height, 400)
        // The first swatch of the wrapped legend, at the left edge of the chart, under the x label.
        let y = long.height - 40 - (long.height - 400) + 36 + 2
        let p = (y * long.width + 64 + 2) * 3
        XCTAssertEqual([long.pixels[p], long.pixels[p + 1], long.pixels[p + 2]], [200, 0, 0])
    }

    func testHugeAndNonFiniteValuesDraw() {
        let plot = LinePlot(title: "loss", xLabel: "step", series: [
            LinePlot.Series(name: "loss", color: (31, 119, 180), points: [(0, 3.9), (1, 1e30), (2, .nan), (3, -1e30)]),
            LinePlot.Series(name: "eval", color: (214, 39, 40), points: [(0, 22.1), (3, .infinity)], axis: .right, markers: true),
        ])
        let img = plot.render()
        XCTAssertEqual(img.width, 720)
        XCTAssertEqual(img.height, 400)
        XCTAssertTrue(img.pixels.contains { $0 < 128 })
        // A flat series at a huge value (one point of a diverging loss).
        let flat = LinePlot(title: "loss", xLabel: "step", series: [
            LinePlot.Series(name: "loss", color: (31, 119, 180), points: [(1, 1e20)]),
        ]).render()
        XCTAssertTrue(flat.pixels.contains { $0 < 128 })
        let empty = LinePlot(title: "nothing", xLabel: "step", series: []).render()
        XCTAssertEqual(empty.width, 720)
    }
    /// `lines: false` draws the markers alone: a pixel half-way between two far-apart points is
    /// coloured with lines and white without.
    func testScatterDrawsNoLines() {
        let color: (UInt8, UInt8, UInt8) = (214, 39, 40)
        func render(lines: Bool) -> RGBImage {
            LinePlot(title: "scatter", xLabel: "x", series: [
                LinePlot.Series(name: "gain", color: color, points: [(0, 0), (10, 0), (5, 10)], markers: true, lines: lines),
            ]).render()
        }
        func count(_ img: RGBImage) -> Int {
            stride(from: 0, to: img.pixels.count, by: 3).filter {
                img.pixels[$0] == color.0 && img.pixels[$0 + 1] == color.1 && img.pixels[$0 + 2] == color.2
            }.count
        }
        let joined = render(lines: true), dots = render(lines: false)
        // Three 5×5 dots plus the 13×7 legend swatch (fill bounds are inclusive) and nothing else.
        XCTAssertEqual(count(dots), 3 * 25 + 13 * 7)
        XCTAssertGreaterThan(count(joined), count(dots) + 200)
    }
}
