import NecoCore
import NecoImage

/// Dense features of many images, one `.npy` per image in an output folder: the work behind
/// `neco extract … --out DIR`, resumable and shardable over the ranks of an MPI job.
///
/// * Inputs are files and folders; folders are walked recursively for JPEG/PNG files, in sorted
///   order. Each image's output is `<stem>.npy`, with `_2`, `_3`, … appended to repeated stems in
///   input order, so every rank computes the same names.
/// * Files are written atomically, so an output that exists is complete: `skipExisting` (resume)
///   leaves it alone.
/// * With N ranks, rank r takes images r, r + N, r + 2N, … (round robin balances folders whose
///   image sizes drift); ranks share nothing until the end, where the counts are summed.
public struct FolderExtraction: Sendable {
    /// Input images, in order.
    public let files: [String]
    /// Output file name (no folder) of each input, same order.
    public let names: [String]

    /// - Throws: `.invalidArgument` for no images or a folder without JPEG/PNG files; `.io` for a
    ///   folder that cannot be read.
    public init(inputs: [String]) throws {
        var found: [String] = []
        for i in inputs {
            if FileIO.isDirectory(i) {
                let list = try FileIO.listFiles(i, extensions: ["jpg", "jpeg", "png"])
                guard !list.isEmpty else { throw NecoError.invalidArgument("\(i): no JPEG or PNG files") }
                found += list
            } else {
                found.append(i)
            }
        }
        guard !found.isEmpty else { throw NecoError.invalidArgument("no images given") }
        files = found
        names = Self.outputNames(found)
    }

    /// `<stem>.npy` per path, `<stem>_k.npy` for the k-th repeat of a stem.
    public static func outputNames(_ paths: [String]) -> [String] {
        var used = Set<String>()
        return paths.map { path in
            var stem = String(path.split(separator: "/").last ?? "image")
            if let dot = stem.lastIndex(of: "."), dot != stem.startIndex { stem = String(stem[..<dot]) }
            var unique = stem, k = 1
            while used.contains(unique) { k += 1; unique = "\(stem)_\(k)" }
            used.insert(unique)
            return unique + ".npy"
        }
    }

    /// What a run did, summed over the ranks.
    public struct Summary: Sendable, Equatable {
        public var written = 0
        /// Outputs that existed already (resume).
        public var existing = 0
        /// (h, w, D) of the arrays written by rank 0 (empty when it wrote none).
        public var shape: [Int] = []
    }

    /// Extracts this rank's share of the images into `folder` (created when missing).
    /// - Parameters:
    ///   - batch: images per forward pass.
    ///   - skipExisting: leave outputs that exist (complete, as writes are atomic).
    ///   - progress: called on this rank after every batch with (images done, this rank's images).
    /// - Throws: decode and write errors (the outputs written so far stay, so a rerun with
    ///   `skipExisting` continues); `.distributed` when the ranks cannot sum their counts.
    public func run(extractor: FeatureExtractor, options: ExtractOptions, folder: String, batch: Int,
                    skipExisting: Bool = true, communicator comm: Communicator = SingleProcess.shared,
                    progress: (Int, Int) -> Void = { _, _ in }) throws -> Summary {
        guard batch >= 1 && batch <= 256 else { throw NecoError.invalidArgument("batch must be in 1...256") }
        try FileIO.makeDirectories(folder)
        let dir = folder.hasSuffix("/") ? folder : folder + "/"
        let mine = Array(stride(from: comm.rank, to: files.count, by: comm.size))
        var todo: [Int] = []
        var summary = Summary()
        for i in mine {
            if skipExisting && FileIO.exists(dir + names[i]) { summary.existing += 1 } else { todo.append(i) }
        }
        progress(summary.existing, mine.count)
        var start = 0
        while start < todo.count {
            let chunk = Array(todo[start..<min(todo.count, start + batch)])
            let images = try chunk.map { try ImageDecoder.load(path: files[$0]) }
            let f = try extractor.extract(images: images, options: options)
            summary.shape = [f.gridHeight, f.gridWidth, f.dim]
            for (k, i) in chunk.enumerated() {
                try Npy.write(dir + names[i], shape: summary.shape, data: Array(f.patches(of: k)))
            }
            summary.written += chunk.count
            start += chunk.count
            progress(summary.existing + start, mine.count)
        }
        if comm.size > 1 {
            // Ranks finish at different times; the wait for the slowest is not a failure.
            var counts = [Double(summary.written), Double(summary.existing)]
            try comm.barrier(timeout: nil)
            try counts.withUnsafeMutableBufferPointer { try comm.sum($0.baseAddress!, count: 2) }
            summary.written = Int(counts[0])
            summary.existing = Int(counts[1])
        }
        return summary
    }
}
