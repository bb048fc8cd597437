import ArgumentParser
import NecoCore
import NecoImage

/// Curves of several runs in one picture: the evaluations (`eval.csv`) of each run folder
/// against step, e.g. two seeds of a recipe.
struct Plot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw the evaluation curves (eval.csv) of several training runs in one PNG.",
        discussion: "Each RUN is a run folder (or an eval.csv file); --label names it in the legend (default: the folder name).")
    @Argument(help: "Run folders or eval.csv files.") var runs: [String]
    @Option(help: "Legend names, one per run, in order.") var label: [String] = []
    @Option(help: "Title of the picture.") var title: String = "in-context mIoU against training step"
    @Option(help: "Output PNG.") var out: String

    static let palette: [(UInt8, UInt8, UInt8)] = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14),
                                                     (148, 103, 189), (140, 86, 75), (227, 119, 194), (127, 127, 127)]

    func run() throws {
        guard !runs.isEmpty else { throw NecoError.invalidArgument("give at least one run folder") }
        guard label.isEmpty || label.count == runs.count else {
            throw NecoError.invalidArgument("give one --label per run (\(runs.count)) or none")
        }
        var series: [LinePlot.Series] = []
        for (i, r) in runs.enumerated() {
            let path = r.hasSuffix(".csv") ? r : r + "/eval.csv"
            let text = String(decoding: try FileIO.readAll(path), as: UTF8.self)
            var points: [(Double, Double)] = []
            for line in text.split(separator: "\n").dropFirst() {
                let f = line.split(separator: ",")
                guard f.count == 3, let step = Double(f[0]), let v = Double(f[2]), v.isFinite else { continue }
                points.append((step, v))
            }
            guard !points.isEmpty else { throw NecoError.format("\(path): no evaluations (step,metric,value rows)") }
            let name = label.isEmpty ? String(r.split(separator: "/").last ?? Substring(r)) : label[i]
            series.append(LinePlot.Series(name: name, color: Self.palette[i % Self.palette.count],
                                          points: points.sorted { $0.0 < $1.0 }, markers: true))
        }
        try PNGWriter.write(LinePlot(title: title, xLabel: "step", series: series).render(), to: out)
        print("wrote \(out)")
    }
}
