import NecoCore

#if canImport(Glibc)
import Glibc
#endif

/// Throughput of `PatchIndex.search` next to the raw GEMM it is built on (the issue's target:
/// the similarity part at ≥ 80 % of sgemm speed, the top-k selection adding ≤ 20 %).
///
/// Letters: M bank rows, Q queries, D dim, k neighbours. One search costs 2·Q·M·D flops of GEMM.
///
/// Three timings, on the same random (M, D) bank and (Q, D) queries (passes 2 and 3 alternate
/// over `rounds` slices of the queries, so that both see the same machine load):
/// 1. **sgemm**: one large `Gemm.gemm` product (2048 × 8192 × D), the best of three: what the BLAS
///    reaches at this inner dimension, the ceiling for the rest;
/// 2. **similarity**: the search's own tiling (query tile × bank tile, queries normalised per
///    tile) with the GEMMs only, over the whole bank, no selection;
/// 3. **search**: `PatchIndex.search` itself (tiles + per-row heap top-k + final sort), with the
///    same tiles as pass 2.
///
/// The bank is the index's (M·D floats) plus a copy for pass 2, so the memory is 2·M·D·4 bytes
/// (3 GiB for 1M × 384) plus O(tile) scratch; nothing grows with Q.
public struct PatchIndexThroughput: Sendable {
    public var bankRows: Int
    public var queries: Int
    public var dim: Int
    public var k: Int
    public var threads: Int
    public var sgemmGFlops: Double
    public var similaritySeconds: Double
    public var searchSeconds: Double
    public var buildSeconds: Double
    /// Tiles of the GEMM-only pass.
    public var queryTile: Int
    public var bankTile: Int
    /// Median over the rounds of search / similarity − 1 (robust to load drift).
    public var medianTopKOverhead: Double

    /// 2·Q·M·D.
    public var flops: Double { 2 * Double(queries) * Double(bankRows) * Double(dim) }
    public var similarityGFlops: Double { flops / similaritySeconds / 1e9 }
    public var searchGFlops: Double { flops / searchSeconds / 1e9 }
    /// similarity GFLOP/s ÷ sgemm GFLOP/s.
    public var similarityFraction: Double { similarityGFlops / sgemmGFlops }
    /// Extra time of the full search over the GEMM-only pass: search / similarity − 1.
    public var topKOverhead: Double { searchSeconds / similaritySeconds - 1 }
    /// Queries per second of the full search.
    public var queriesPerSecond: Double { Double(queries) / searchSeconds }

    /// Runs the three passes. `progress` receives one line per phase.
    ///
    /// - Throws: `.invalidArgument` for sizes below 1 or k > M; `.outOfMemory` when the bank does
    ///   not fit.
    /// - Parameters:
    ///   - queryTile, bankTile: tile sizes of both passes (default: the search's own,
    ///     `PatchIndex.queryTile` × `PatchIndex.bankTile`), to measure what other tiles would give.
    public static func measure(bankRows m: Int, queries q: Int, dim d: Int, k: Int, seed: UInt64 = 7,
                               queryTile: Int? = nil, bankTile: Int? = nil, rounds: Int = 5,
                               progress: ((String) -> Void)? = nil) throws -> PatchIndexThroughput {
        guard m >= 1, q >= 1, d >= 1, k >= 1, k <= m, rounds >= 1 else {
            throw NecoError.invalidArgument("index bench needs bank, queries, dim ≥ 1 and 1 ≤ k ≤ bank (got \(m), \(q), \(d), \(k))")
        }
        let (floats, o) = m.multipliedReportingOverflow(by: d)
        guard !o, floats <= PatchIndex.maxBankFloats else {
            throw NecoError(.outOfMemory, "a bank of \(m) × \(d) exceeds \(PatchIndex.maxBankFloats) floats")
        }
        // 1. Raw sgemm reference.
        let sgemm = try referenceGFlops(dim: d)
        progress?("sgemm 2048x8192x\(d): \(Int(sgemm.rounded())) GFLOP/s")

        // The bank (own copy, normalised, for pass 2) and the index built from it.
        let t0 = monotonicSeconds()
        let bank = try Scratch<Float>(m * d)
        fillUniform(bank.base, count: m * d, seed: seed)
        let index = try PatchIndex(dim: d)
        let chunk = 65_536
        var r0 = 0
        while r0 < m {
            let n = min(chunk, m - r0)
            try index.add(bank.base + r0 * d, rows: n)
            r0 += n
        }
        PatchIndex.normalizeRows(bank.base, rows: m, dim: d)
        let queries = try Scratch<Float>(q * d)
        fillUniform(queries.base, count: q * d, seed: seed &+ 1)
        let build = monotonicSeconds() - t0
        progress?("built a \(m) x \(d) bank (\((m * d * 4) >> 20) MiB) and \(q) queries in \(Int(build.rounded())) s")

        // 2 and 3, alternating over `rounds` slices of the queries, so that both passes see the
        // same machine load (other processes on a shared machine drift over minutes).
        let qTile = max(1, min(queryTile ?? PatchIndex.queryTile, q, PatchIndex.heapBudget / k))
        let bTile = max(1, min(bankTile ?? PatchIndex.bankTile, m))
        let qs = try Scratch<Float>(qTile * d), tile = try Scratch<Float>(qTile * bTile)
        let slice = (q + rounds - 1) / max(rounds, 1)
        let outIdx = try Scratch<Int64>(slice * k), outSim = try Scratch<Float>(slice * k)
        var sink: Float = 0
        var sim = 0.0, search = 0.0
        var ratios: [Double] = []
        var s0 = 0
        while s0 < q {
            let sq = min(slice, q - s0)
            // 2. Similarity GEMMs only, with the search's tiles.
            let t1 = monotonicSeconds()
            var q0 = s0
            while q0 < s0 + sq {
                let mq = min(qTile, s0 + sq - q0)
                qs.base.update(from: queries.base + q0 * d, count: mq * d)
                PatchIndex.normalizeRows(qs.base, rows: mq, dim: d)
                var b0 = 0
                while b0 < m {
                    let nb = min(bTile, m - b0)
                    Gemm.gemm(out: tile.base, a: qs.base, b: bank.base + b0 * d, m: mq, n: nb, k: d, transB: true)
                    sink += tile.base[0]
                    b0 += nb
                }
                q0 += mq
            }
            let ts = monotonicSeconds() - t1
            // 3. The real search.
            let t2 = monotonicSeconds()
            try index.search(queries: queries.base + s0 * d, rows: sq, k: k, indices: outIdx.base, similarities: outSim.base,
                             labels: nil, queryTile: qTile, bankTile: bTile)
            let tk = monotonicSeconds() - t2
            sim += ts
            search += tk
            ratios.append(tk / ts - 1)
            progress?("queries \(s0)..<\(s0 + sq): GEMMs \(fmt(ts)) s (\(Int((2 * Double(sq) * Double(m) * Double(d) / ts / 1e9).rounded())) GFLOP/s), search \(fmt(tk)) s, top-k overhead \(Int((100 * (tk / ts - 1)).rounded())) %\(sink.isFinite ? "" : " (bad checksum)")")
            s0 += sq
        }
        ratios.sort()
        return PatchIndexThroughput(bankRows: m, queries: q, dim: d, k: k, threads: Threads.count, sgemmGFlops: sgemm,
                                    similaritySeconds: sim, searchSeconds: search, buildSeconds: build,
                                    queryTile: qTile, bankTile: bTile, medianTopKOverhead: ratios[ratios.count / 2])
    }

    /// GFLOP/s of one 2048 × 8192 × `dim` product through `Gemm.gemm`, the best of three.
    public static func referenceGFlops(dim d: Int) throws -> Double {
        let mm = 2048, nn = 8192
        let a = try Scratch<Float>(mm * d), b = try Scratch<Float>(nn * d), c = try Scratch<Float>(mm * nn)
        fillUniform(a.base, count: mm * d, seed: 11)
        fillUniform(b.base, count: nn * d, seed: 12)
        Gemm.gemm(out: c.base, a: a.base, b: b.base, m: mm, n: nn, k: d, transB: true)  // warm-up
        var best = Double.infinity
        for _ in 0..<3 {
            let t = monotonicSeconds()
            Gemm.gemm(out: c.base, a: a.base, b: b.base, m: mm, n: nn, k: d, transB: true)
            best = min(best, monotonicSeconds() - t)
        }
        return 2 * Double(mm) * Double(nn) * Double(d) / best / 1e9
    }

    /// Uniform values in [−0.5, 0.5) from a per-chunk LCG (parallel, deterministic).
    static func fillUniform(_ p: UnsafeMutablePointer<Float>, count n: Int, seed: UInt64) {
        let chunk = 1 << 20
        let parts = (n + chunk - 1) / chunk
        Threads.parallelFor(parts) { s, e in
            for part in s..<e {
                var state = seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(part) &* 0xD1B5_4A32_D192_ED03
                let lo = part * chunk, hi = min(n, lo + chunk)
                for i in lo..<hi {
                    state = state &* 6364136223846793005 &+ 1442695040888963407
                    p[i] = Float(state >> 40) * 0x1p-24 - 0.5
                }
            }
        }
    }

    static func fmt(_ v: Double) -> String {
        let r = (v * 100).rounded() / 100
        return "\(r)"
    }
}
