import CNecoMPI
#if canImport(Glibc)
import Glibc
#endif

/// A group of cooperating processes ("ranks") that run one job: data-parallel training, sharded
/// extraction. `SingleProcess` is the group of one (every collective is a copy or nothing);
/// `MPICommunicator` is an MPI job's `MPI_COMM_WORLD` (docs/DISTRIBUTED.md).
///
/// Every collective must be called by every rank, in the same order, with the same sizes. Each
/// returns the same bits on every rank. A rank that dies or stops answering turns into a thrown
/// `.distributed` error on the others after `timeout` seconds, never a hang.
public protocol Communicator: AnyObject, Sendable {
    /// This process's index, 0..<size. Rank 0 writes files and prints.
    var rank: Int { get }
    /// Number of ranks (1 for `SingleProcess`).
    var size: Int { get }
    /// Seconds a collective waits for the other ranks before it throws (nil: forever).
    var timeout: Double? { get }

    /// values (count) ← Σ over ranks, in place.
    func sum(_ values: UnsafeMutablePointer<Float>, count: Int) throws
    func sum(_ values: UnsafeMutablePointer<Double>, count: Int) throws
    /// recv (size × bytes) ← every rank's `bytes` bytes of `send`, rank-major.
    func gather(_ send: UnsafeRawPointer, bytes: Int, into recv: UnsafeMutableRawPointer) throws
    /// `bytes` bytes of `buffer` from rank `root` to every rank.
    func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) throws
    /// Waits for every rank; `timeout` nil waits forever (e.g. while rank 0 evaluates).
    func barrier(timeout: Double?) throws
}

extension Communicator {
    public var isRoot: Bool { rank == 0 }

    /// Every rank's byte string (of any length), in rank order.
    public func gather(bytes: [UInt8]) throws -> [[UInt8]] {
        var count = Int64(bytes.count)
        var counts = [Int64](repeating: 0, count: size)
        try counts.withUnsafeMutableBytes { try gather(&count, bytes: 8, into: $0.baseAddress!) }
        let width = Int(counts.max() ?? 0)
        var padded = bytes + [UInt8](repeating: 0, count: width - bytes.count)
        var all = [UInt8](repeating: 0, count: width * size)
        if width > 0 {
            try padded.withUnsafeMutableBytes { p in
                try all.withUnsafeMutableBytes { try gather(p.baseAddress!, bytes: width, into: $0.baseAddress!) }
            }
        }
        return (0..<size).map { r in Array(all[(r * width)..<(r * width + Int(counts[r]))]) }
    }

    /// Every rank's string, in rank order.
    public func gather(text: String) throws -> [String] {
        try gather(bytes: Array(text.utf8)).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Runs `body` on every rank and agrees on its outcome, so that a failure on one rank stops
    /// all of them with the same message instead of leaving the others waiting:
    /// - every rank throws the same error (kind and message): every rank rethrows it unchanged;
    /// - otherwise a rank that throws makes every rank throw its error kind with the message
    ///   "<what>: rank r of N failed: <its message>" (the lowest failing rank's);
    /// - `body` returns a fingerprint (a config, a checksum, a file list) that must be equal on
    ///   every rank: a rank whose fingerprint differs from rank 0's makes every rank throw
    ///   `.distributed` naming `what`, the rank and both values.
    /// - Returns: `body`'s result on this rank.
    @discardableResult
    public func agree<T>(_ what: String, _ body: () throws -> (T, fingerprint: String)) throws -> T {
        var mine: Result<(T, fingerprint: String), Error>
        do { mine = .success(try body()) } catch { mine = .failure(error) }
        if size == 1 {
            return try mine.get().0
        }
        let report: String
        switch mine {
        case .success(let v): report = "ok\u{0}" + v.fingerprint
        case .failure(let e): report = "error\u{0}" + ((e as? NecoError).map { String($0.kind.rawValue) + "\u{0}" + $0.message }
                                                           ?? "\(NecoError.Kind.internal.rawValue)\u{0}\(e)")
        }
        let all = try gather(text: report)
        // Every rank failed the same way (a bad argument given to all of them): that error, as is.
        if all.allSatisfy({ $0 == all[0] }), all[0].hasPrefix("error\u{0}"), case .failure(let e) = mine {
            throw e
        }
        for (r, text) in all.enumerated() where text.hasPrefix("error\u{0}") {
            let parts = text.split(separator: "\u{0}", maxSplits: 2, omittingEmptySubsequences: false)
            let message = parts.count > 2 ? String(parts[2]) : text
            let kind = parts.count > 2 ? Int32(parts[1]).flatMap(NecoError.Kind.init(rawValue:)) : nil
            throw NecoError(kind ?? .distributed, "\(what): rank \(r) of \(size) failed: \(message)")
        }
        let reference = all[0].dropFirst(3)
        for (r, text) in all.enumerated() where text.dropFirst(3) != reference {
            throw NecoError(.distributed, "\(what) differs between ranks: rank \(r) has \(clipped(text.dropFirst(3))), "
                                          + "rank 0 has \(clipped(reference))")
        }
        return try mine.get().0
    }

    private func clipped(_ s: Substring) -> String {
        s.count > 160 ? "'" + s.prefix(160) + "…'" : "'" + s + "'"
    }
}

/// The group of one process: every collective is the identity.
public final class SingleProcess: Communicator {
    public static let shared = SingleProcess()
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public var timeout: Double? { nil }
    public func sum(_ values: UnsafeMutablePointer<Float>, count: Int) throws {}
    public func sum(_ values: UnsafeMutablePointer<Double>, count: Int) throws {}
    public func gather(_ send: UnsafeRawPointer, bytes: Int, into recv: UnsafeMutableRawPointer) throws {
        if bytes > 0 { recv.copyMemory(from: send, byteCount: bytes) }
    }
    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) throws {}
    public func barrier(timeout: Double?) throws {}
}

/// `MPI_COMM_WORLD` of an MPI job, bound at run time (Open MPI's libmpi.so.40; libneco does not
/// link against MPI, see CNecoMPI). Collectives are non-blocking MPI calls polled against
/// `timeout`.
public final class MPICommunicator: Communicator, @unchecked Sendable {
    public let rank: Int
    public let size: Int
    public let timeout: Double?

    /// The default collective timeout in seconds (NECO_MPI_TIMEOUT overrides it; 0 = forever).
    /// Long enough for the slowest single step of a large model on one CPU, short enough that a
    /// job whose rank died without its launcher noticing ends the same hour.
    public static let defaultTimeout = 600.0

    /// Whether this process was started by an MPI launcher: Open MPI's mpirun
    /// (OMPI_COMM_WORLD_SIZE) or a PMIx/PMI launcher such as Slurm's srun (PMIX_RANK, PMI_SIZE).
    /// NECO_MPI=0 says no, NECO_MPI=1 yes.
    public static var launched: Bool {
        if let forced = Environment.value("NECO_MPI") { return forced != "0" }
        return ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"].contains { Environment.value($0) != nil }
    }

    nonisolated(unsafe) private static var world: MPICommunicator?

    /// The job's communicator when the process runs under an MPI launcher (MPI is initialised on
    /// the first call), else `SingleProcess.shared`.
    /// - Throws: `.distributed` when the launcher is there but MPI cannot start (no Open MPI
    ///   library: Debian's openmpi-bin; NECO_MPI_LIB names another), or NECO_MPI_TIMEOUT is bad.
    public static func fromEnvironment() throws -> Communicator {
        guard launched else { return SingleProcess.shared }
        if let w = world { return w }
        var timeout: Double? = defaultTimeout
        if let text = Environment.value("NECO_MPI_TIMEOUT") {
            guard let t = Double(text), t.isFinite, t >= 0 else {
                throw NecoError(.distributed, "NECO_MPI_TIMEOUT '\(text)' is not a number of seconds ≥ 0")
            }
            timeout = t == 0 ? nil : t
        }
        var err = [CChar](repeating: 0, count: 512)
        let rc = neco_mpi_open(Environment.value("NECO_MPI_LIB"), &err, err.count)
        guard rc == 0 else { throw NecoError(.distributed, Self.text(err)) }
        let w = MPICommunicator(rank: Int(neco_mpi_rank()), size: Int(neco_mpi_size()), timeout: timeout)
        world = w
        return w
    }

    private init(rank: Int, size: Int, timeout: Double?) {
        self.rank = rank
        self.size = size
        self.timeout = timeout
    }

    /// The NUL-terminated message in `buffer`.
    static func text(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private func check(_ body: (UnsafeMutablePointer<CChar>, Int) -> Int32) throws {
        var err = [CChar](repeating: 0, count: 512)
        let rc = err.withUnsafeMutableBufferPointer { body($0.baseAddress!, $0.count) }
        if rc != 0 { throw NecoError(.distributed, Self.text(err)) }
    }

    public func sum(_ values: UnsafeMutablePointer<Float>, count: Int) throws {
        try check { neco_mpi_allreduce_sum(values, Int64(count), Int32(NECO_MPI_F32), timeout ?? 0, $0, $1) }
    }

    public func sum(_ values: UnsafeMutablePointer<Double>, count: Int) throws {
        try check { neco_mpi_allreduce_sum(values, Int64(count), Int32(NECO_MPI_F64), timeout ?? 0, $0, $1) }
    }

    public func gather(_ send: UnsafeRawPointer, bytes: Int, into recv: UnsafeMutableRawPointer) throws {
        try check { neco_mpi_allgather(send, recv, Int64(bytes), timeout ?? 0, $0, $1) }
    }

    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) throws {
        try check { neco_mpi_broadcast(buffer, Int64(bytes), Int32(root), timeout ?? 0, $0, $1) }
    }

    public func barrier(timeout t: Double?) throws {
        try check { neco_mpi_barrier(t ?? 0, $0, $1) }
    }

    /// Stops every rank of the job (MPI_Abort): for a process that cannot go on after a
    /// collective failed (the others may be inside another collective).
    public func abort(code: Int32) -> Never {
        neco_mpi_abort(code)
        exit(code)
    }

    /// Ends MPI in this process (call once, at exit, on every rank).
    public static func finalize() {
        neco_mpi_finalize()
    }
}
