#if canImport(Glibc)
import Glibc
#endif

/// Small POSIX file helpers (no Foundation in library code).
public enum FileIO {
    /// Reads a whole file. Throws `.io` with the path and the system's reason.
    public static func readAll(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw NecoError.io("\(path): \(errnoString())") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw NecoError.io("\(path): \(errnoString())") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw NecoError.io("\(path): not a regular file") }
        let size = Int(st.st_size)
        var out = [UInt8](repeating: 0, count: size)
        var done = 0
        while done < size {
            let n = out.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, size - done) }
            if n < 0 {
                if errno == EINTR { continue }
                throw NecoError.io("\(path): \(errnoString())")
            }
            if n == 0 { break }
            done += n
        }
        guard done == size else { throw NecoError.io("\(path): short read (\(done) of \(size) bytes)") }
        return out
    }

    /// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, rename.
    /// On any failure the temporary file is removed and `path` is left as it was.
    public static func writeAtomically(_ path: String, _ body: (Int32) throws -> Void) throws {
        let tmp = path + ".tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw NecoError.io("\(path): cannot create: \(errnoString())") }
        var ok = false
        defer {
            if !ok { close(fd); unlink(tmp) }
        }
        try body(fd)
        guard fsync(fd) == 0 else { throw NecoError.io("\(path): fsync failed: \(errnoString())") }
        guard close(fd) == 0 else { unlink(tmp); ok = true; throw NecoError.io("\(path): close failed: \(errnoString())") }
        ok = true
        guard rename(tmp, path) == 0 else {
            let reason = errnoString()
            unlink(tmp)
            throw NecoError.io("\(path): rename failed: \(reason)")
        }
    }

    /// Writes all of `bytes` to an open descriptor.
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        var done = 0
        while done < bytes.count {
            let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw NecoError.io("\(path): write failed: \(errnoString())")
            }
            done += n
        }
    }

    public static func writeAtomically(_ path: String, bytes: [UInt8]) throws {
        try writeAtomically(path) { fd in
            try bytes.withUnsafeBytes { try writeAll(fd, $0, path: path) }
        }
    }

    public static func errnoString() -> String {
        guard let s = strerror(errno) else { return "errno \(errno)" }
        return String(cString: s)
    }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    /// Creates the folder `path` and any missing parents (`mkdir -p`).
    /// - Throws: `.invalidArgument` for an empty path; `.io` naming the first folder that cannot
    ///   be created (or a file standing where a folder should be).
    public static func makeDirectories(_ path: String) throws {
        guard !path.isEmpty else { throw NecoError.invalidArgument("empty folder path") }
        var current = path.hasPrefix("/") ? "/" : ""
        for part in path.split(separator: "/") {
            current += (current.isEmpty || current.hasSuffix("/") ? "" : "/") + part
            if !isDirectory(current) && mkdir(current, 0o755) != 0 && !isDirectory(current) {
                throw NecoError.io("\(current): cannot create folder: \(errnoString())")
            }
        }
    }

    /// Lists regular files under `dir`, recursively, sorted, keeping those whose lowercased
    /// extension is in `extensions`.
    public static func listFiles(_ dir: String, extensions: Set<String>) throws -> [String] {
        var result: [String] = []
        try walk(dir, extensions, &result)
        return result.sorted()
    }

    private static func walk(_ dir: String, _ exts: Set<String>, _ out: inout [String]) throws {
        guard let d = opendir(dir) else { throw NecoError.io("\(dir): \(errnoString())") }
        defer { closedir(d) }
        while let e = readdir(d) {
            let name = withUnsafePointer(to: e.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name == "." || name == ".." { continue }
            let path = dir.hasSuffix("/") ? dir + name : dir + "/" + name
            if isDirectory(path) {
                try walk(path, exts, &out)
            } else if let dot = name.lastIndex(of: "."), exts.contains(String(name[name.index(after: dot)...]).lowercased()) {
                out.append(path)
            }
        }
    }
}
