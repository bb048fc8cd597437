import NecoCore

/// A small line chart rendered to an RGB image (training curves: loss and mIoU against step).
/// Up to two y axes: series on the left axis share its range, series on the right axis share
/// theirs. Text uses a built-in 5×7 pixel font (digits, lower-case letters, a few capitals and
/// signs); characters outside it are drawn as blanks.
public struct LinePlot: Sendable {
    public enum Axis: Sendable { case left, right }

    public struct Series: Sendable {
        public var name: String
        public var color: (UInt8, UInt8, UInt8)
        /// (x, y) points, drawn in order; non-finite points are skipped.
        public var points: [(Double, Double)]
        public var axis: Axis
        /// Also mark every point with a dot (for sparse series such as evaluations).
        public var markers: Bool
        /// Join the points with lines; false with `markers` draws a scatter plot.
        public var lines: Bool

        public init(name: String, color: (UInt8, UInt8, UInt8), points: [(Double, Double)], axis: Axis = .left,
                    markers: Bool = false, lines: Bool = true) {
            self.name = name
            self.color = color
            self.points = points
            self.axis = axis
            self.markers = markers
            self.lines = lines
        }
    }

    public var title: String
    public var xLabel: String
    public var series: [Series]
    public var width = 720
    public var height = 400

    public init(title: String, xLabel: String, series: [Series]) {
        self.title = title
        self.xLabel = xLabel
        self.series = series
    }

    /// The chart as an image (white background).
    public func render() -> RGBImage {
        // The legend goes in the title row when it fits there, else in rows below the chart.
        let hasLeft = series.contains { $0.axis == .left }
        let labels = series.map { $0.name + ($0.axis == .right && hasLeft ? " (right)" : "") }
        let entryWidths = labels.map { 6 * $0.count + 22 }
        let w = max(width, 160)
        let inline = entryWidths.reduce(0, +) <= (w - 64) - (64 + 6 * title.count + 16)
        var legendRows: [[Int]] = []
        if !inline {
            var row: [Int] = [], used = 0
            for (i, ew) in entryWidths.enumerated() {
                if !row.isEmpty && used + ew > w - 2 * 64 { legendRows.append(row); row = []; used = 0 }
                row.append(i)
                used += ew
            }
            if !row.isEmpty { legendRows.append(row) }
        }
        let legendHeight = inline ? 0 : legendRows.count * 14 + 8
        var canvas = Canvas(width: w, height: max(height, 120) + legendHeight)
        let left = 64, right = canvas.width - 64, top = 36, bottom = canvas.height - 40 - legendHeight
        // Ranges.
        func range(_ pts: [(Double, Double)], _ key: (Double, Double) -> Double) -> (Double, Double)? {
            let v = pts.map { key($0.0, $0.1) }.filter { $0.isFinite }
            guard let lo = v.min(), let hi = v.max() else { return nil }
            // A flat series gets a span of its own scale (±0.5 would vanish next to 1e20).
            if hi - lo <= 1e-12 * max(1, abs(lo)) {
                let pad = max(0.5, abs(lo) * 0.05)
                return (lo - pad, hi + pad)
            }
            let pad = (hi - lo) * 0.05
            return (lo - pad, hi + pad)
        }
        let all = series.flatMap { $0.points }
        let xr = range(all) { x, _ in x } ?? (0, 1)
        let yl = range(series.filter { $0.axis == .left }.flatMap { $0.points }) { _, y in y }
        let yr = range(series.filter { $0.axis == .right }.flatMap { $0.points }) { _, y in y }
        // Pixel offsets are clamped to ±10⁶ (drawing clips), and a non-finite offset becomes 0, so
        // no value can make the Double → Int conversion trap.
        func pixel(_ t: Double) -> Int { t.isFinite ? Int(min(max(t, -1e6), 1e6).rounded()) : 0 }
        func px(_ x: Double) -> Int { left + pixel((x - xr.0) / (xr.1 - xr.0) * Double(right - left)) }
        func py(_ y: Double, _ r: (Double, Double)) -> Int { bottom - pixel((y - r.0) / (r.1 - r.0) * Double(bottom - top)) }
        // Frame, grid and ticks.
        let grid: (UInt8, UInt8, UInt8) = (225, 225, 225), ink: (UInt8, UInt8, UInt8) = (40, 40, 40)
        for i in 0...4 {
            let y = top + i * (bottom - top) / 4
            canvas.line(left, y, right, y, grid)
            if let yl {
                let v = yl.1 - Double(i) * (yl.1 - yl.0) / 4
                let s = Self.tick(v, span: yl.1 - yl.0)
                canvas.text(s, x: left - 6 - 6 * s.count, y: y - 3, ink)
            }
            if let yr {
                let v = yr.1 - Double(i) * (yr.1 - yr.0) / 4
                canvas.text(Self.tick(v, span: yr.1 - yr.0), x: right + 6, y: y - 3, ink)
            }
        }
        for i in 0...5 {
            let x = left + i * (right - left) / 5
            canvas.line(x, top, x, bottom, grid)
            let s = Self.tick(xr.0 + Double(i) * (xr.1 - xr.0) / 5, span: xr.1 - xr.0)
            canvas.text(s, x: x - 3 * s.count, y: bottom + 6, ink)
        }
        canvas.rect(left, top, right, bottom, ink)
        canvas.text(title, x: left, y: 12, ink)
        canvas.text(xLabel, x: (left + right) / 2 - 3 * xLabel.count, y: bottom + 20, ink)
        // Legend: right-aligned in the title row, or left-aligned rows under the x label.
        if inline {
            var lx = right
            for i in series.indices.reversed() {
                lx -= entryWidths[i]
                canvas.fill(lx, 12, lx + 12, 18, series[i].color)
                canvas.text(labels[i], x: lx + 16, y: 12, ink)
            }
        } else {
            for (r, row) in legendRows.enumerated() {
                var lx = left
                let y = bottom + 36 + r * 14
                for i in row {
                    canvas.fill(lx, y, lx + 12, y + 6, series[i].color)
                    canvas.text(labels[i], x: lx + 16, y: y, ink)
                    lx += entryWidths[i]
                }
            }
        }
        // Series.
        for s in series {
            guard let r = s.axis == .left ? yl : yr else { continue }
            var last: (Int, Int)? = nil
            for (x, y) in s.points where x.isFinite && y.isFinite {
                let p = (px(x), py(y, r))
                if s.lines, let l = last { canvas.line(l.0, l.1, p.0, p.1, s.color, thick: true) }
                if s.markers { canvas.fill(p.0 - 2, p.1 - 2, p.0 + 2, p.1 + 2, s.color) }
                last = p
            }
        }
        return RGBImage(width: canvas.width, height: canvas.height, pixels: canvas.pixels)
    }

    /// A short tick label: integers when the span is large, else up to 3 decimals.
    static func tick(_ v: Double, span: Double) -> String {
        FixedPoint.text(v, digits: span >= 20 ? 0 : span >= 2 ? 1 : span >= 0.2 ? 2 : 3)
    }

    /// RGB pixels with clipped drawing.
    struct Canvas {
        let width: Int, height: Int
        var pixels: [UInt8]

        init(width: Int, height: Int) {
            self.width = width
            self.height = height
            pixels = [UInt8](repeating: 255, count: width * height * 3)
        }

        mutating func set(_ x: Int, _ y: Int, _ c: (UInt8, UInt8, UInt8)) {
            guard x >= 0, y >= 0, x < width, y < height else { return }
            let o = (y * width + x) * 3
            pixels[o] = c.0
            pixels[o + 1] = c.1
            pixels[o + 2] = c.2
        }

        mutating func fill(_ x0: Int, _ y0: Int, _ x1: Int, _ y1: Int, _ c: (UInt8, UInt8, UInt8)) {
            for y in min(y0, y1)...max(y0, y1) { for x in min(x0, x1)...max(x0, x1) { set(x, y, c) } }
        }

        mutating func rect(_ x0: Int, _ y0: Int, _ x1: Int, _ y1: Int, _ c: (UInt8, UInt8, UInt8)) {
            line(x0, y0, x1, y0, c); line(x0, y1, x1, y1, c); line(x0, y0, x0, y1, c); line(x1, y0, x1, y1, c)
        }

        /// Bresenham; `thick` draws a 2-pixel line.
        mutating func line(_ x0: Int, _ y0: Int, _ x1: Int, _ y1: Int, _ c: (UInt8, UInt8, UInt8), thick: Bool = false) {
            var x = x0, y = y0
            let dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1
            var err = dx + dy
            while true {
                set(x, y, c)
                if thick { set(x + 1, y, c); set(x, y + 1, c) }
                if x == x1 && y == y1 { break }
                let e2 = 2 * err
                if e2 >= dy { err += dy; x += sx }
                if e2 <= dx { err += dx; y += sy }
            }
        }

        mutating func text(_ s: String, x: Int, y: Int, _ c: (UInt8, UInt8, UInt8)) {
            var cx = x
            for ch in s {
                if let rows = Font5x7.glyphs[ch] {
                    for (r, bits) in rows.enumerated() {
                        for col in 0..<5 where bits & (0x10 >> col) != 0 { set(cx + col, y + r, c) }
                    }
                }
                cx += 6
            }
        }
    }
}

/// A 5×7 pixel font: each glyph is 7 rows of 5 bits (bit 4 = leftmost column).
enum Font5x7 {
    static let glyphs: [Character: [UInt8]] = [
        "0": [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E], "1": [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        "2": [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F], "3": [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        "4": [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02], "5": [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        "6": [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E], "7": [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        "8": [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E], "9": [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        ".": [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C], "-": [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        "+": [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00], "%": [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        "(": [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02], ")": [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        ",": [0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08], ":": [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        "=": [0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00], "/": [0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00],
        "_": [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F], " ": [0, 0, 0, 0, 0, 0, 0],
        "a": [0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F], "b": [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E],
        "c": [0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E], "d": [0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F],
        "e": [0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E], "f": [0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08],
        "g": [0x00, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x0E], "h": [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11],
        "i": [0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E], "j": [0x02, 0x00, 0x06, 0x02, 0x02, 0x12, 0x0C],
        "k": [0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12], "l": [0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        "m": [0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11], "n": [0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11],
        "o": [0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E], "p": [0x00, 0x00, 0x1E, 0x11, 0x1E, 0x10, 0x10],
        "q": [0x00, 0x00, 0x0D, 0x13, 0x0F, 0x01, 0x01], "r": [0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10],
        "s": [0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E], "t": [0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06],
        "u": [0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D], "v": [0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04],
        "w": [0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A], "x": [0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11],
        "y": [0x00, 0x00, 0x11, 0x11, 0x0F, 0x01, 0x0E], "z": [0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F],
        "A": [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11], "B": [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        "C": [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E], "D": [0x1E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1E],
        "E": [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F], "G": [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        "I": [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E], "L": [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        "N": [0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x11], "O": [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        "P": [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10], "R": [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        "S": [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E], "T": [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        "U": [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E], "V": [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
    ]
}
