import ArgumentParser
import NecoCore
import NecoImage
import NecoTrain

/// Curves of several runs in one picture: the evaluations (`eval.csv`) of each run folder
/// against step, e.g. two seeds of a recipe.
struct Plot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw the evaluation curves (eval.csv) of several training runs in one PNG.",
        discussion: """
            Each RUN is a run folder (or an eval.csv file); --label names it in the legend (default: the folder name).
            With --scatter, each argument is instead a CSV file of series,x,y rows (a header row is skipped), drawn as
            dots, one colour per series name (e.g. mIoU gains against RankMe for several runs).
            """)
    @Argument(help: "Run folders or eval.csv files (with --scatter: series,x,y CSV files).") var runs: [String]
    @Flag(help: "Scatter plot of series,x,y CSV rows instead of evaluation curves.") var scatter = false
    @Option(help: "The eval.csv metric to draw (default: each file's first, the one that chose the best student; e.g. rankme).")
    var metric: String?
    @Option(help: "Label of the x axis.") var xLabel: String = "step"
    @Option(help: "Legend names, one per run, in order.") var label: [String] = []
    @Option(help: "Title of the picture.") var title: String = "in-context mIoU against training step"
    @Option(help: "Output PNG.") var out: String

    static let palette: [(UInt8, UInt8, UInt8)] = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14),
                                                     (148, 103, 189), (140, 86, 75), (227, 119, 194), (127, 127, 127)]

    func run() throws {
        guard !runs.isEmpty else { throw NecoError.invalidArgument("give at least one run folder") }
        if scatter { return try drawScatter() }
        guard label.isEmpty || label.count == runs.count else {
            throw NecoError.invalidArgument("give one --label per run (\(runs.count)) or none")
        }
        var series: [LinePlot.Series] = []
        for (i, r) in runs.enumerated() {
            let path = r.hasSuffix(".csv") ? r : r + "/eval.csv"
            let text = String(decoding: try FileIO.readAll(path), as: UTF8.self)
            let rows = NeCoRun.evaluationRows(text).filter { $0.value.isFinite }
            let wanted = metric ?? rows.first?.metric
            let points = rows.filter { $0.metric == wanted }.map { (Double($0.step), $0.value) }
            guard !points.isEmpty else {
                throw NecoError.format("\(path): no evaluations" + (metric.map { " of '\($0)'" } ?? "") + " (step,metric,value rows)")
            }
            let name = label.isEmpty ? String(r.split(separator: "/").last ?? Substring(r)) : label[i]
            series.append(LinePlot.Series(name: name, color: Self.palette[i % Self.palette.count],
                                          points: points.sorted { $0.0 < $1.0 }, markers: true))
        }
        try PNGWriter.write(LinePlot(title: title, xLabel: xLabel, series: series).render(), to: out)
        print("wrote \(out)")
    }

    /// Dots of series,x,y rows, one colour per series (in order of first appearance).
    func drawScatter() throws {
        var names: [String] = []
        var points: [String: [(Double, Double)]] = [:]
        for path in runs {
            let text = String(decoding: try FileIO.readAll(path), as: UTF8.self)
            for (i, line) in text.split(separator: "\n").enumerated() {
                let f = line.split(separator: ",", omittingEmptySubsequences: false).map { String($0) }
                guard f.count == 3, let x = Double(f[1]), let y = Double(f[2]) else {
                    if i == 0 { continue }  // the header
                    throw NecoError.format("\(path): line \(i + 1) is not a series,x,y row: '\(line)'")
                }
                if points[f[0]] == nil { names.append(f[0]) }
                points[f[0], default: []].append((x, y))
            }
        }
        guard !names.isEmpty else { throw NecoError.format("no series,x,y rows in \(runs.joined(separator: ", "))") }
        let series = names.enumerated().map { i, n in
            LinePlot.Series(name: n, color: Self.palette[i % Self.palette.count], points: points[n] ?? [], markers: true, lines: false)
        }
        try PNGWriter.write(LinePlot(title: title, xLabel: xLabel, series: series).render(), to: out)
        print("wrote \(out)")
    }
}
