#if canImport(Glibc)
import Glibc
#endif

/// Small POSIX file helpers (no Foundation in library code). Paths go to the system through
/// `Path.withCString`, so names that are not UTF-8 keep their bytes.
public enum FileIO {
    /// Opens an existing regular file for reading and returns its descriptor and size.
    /// The file is opened with `O_NONBLOCK` and checked with `fstat` before anything is read, so
    /// a FIFO, a device or a socket is refused at once instead of blocking in `open` or `read`.
    /// - Throws: `.io` naming the path: missing, no permission, a folder, not a regular file.
    public static func openRegular(_ path: String) throws -> (fd: Int32, size: Int) {
        let fd = Path.withCString(path) { Glibc.open($0, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY) }
        guard fd >= 0 else { throw NecoError.io("\(path): \(errnoString())") }
        var st = stat()
        guard fstat(fd, &st) == 0 else { let r = errnoString(); close(fd); throw NecoError.io("\(path): \(r)") }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw NecoError.io("\(path): not a regular file (\(kind(st.st_mode)))")
        }
        // Regular files ignore O_NONBLOCK; clear it anyway so that reads behave as usual.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        return (fd, Int(st.st_size))
    }

    static func kind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: return "a folder"
        case S_IFIFO: return "a FIFO"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFSOCK: return "a socket"
        default: return "mode \(String(mode, radix: 8))"
        }
    }

    /// Reads a whole regular file. Throws `.io` with the path and the system's reason, and
    /// `.outOfMemory` when the process cannot hold the file.
    public static func readAll(_ path: String) throws -> [UInt8] {
        let (fd, size) = try openRegular(path)
        defer { close(fd) }
        var out = try Memory.zeros(size, of: UInt8.self, "\(path): reading a file of \(size) bytes")
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
        let tmp = path + temporarySuffix + "\(getpid())"
        let fd = Path.withCString(tmp) { Glibc.open($0, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) }
        guard fd >= 0 else { throw NecoError.io("\(path): cannot create: \(errnoString())") }
        var ok = false
        defer {
            if !ok { close(fd); remove(tmp) }
        }
        try body(fd)
        guard fsync(fd) == 0 else { throw NecoError.io("\(path): fsync failed: \(errnoString())") }
        guard close(fd) == 0 else { remove(tmp); ok = true; throw NecoError.io("\(path): close failed: \(errnoString())") }
        ok = true
        guard Path.withCString(tmp, { t in Path.withCString(path) { rename(t, $0) } }) == 0 else {
            let reason = errnoString()
            remove(tmp)
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

    /// The suffix of `writeAtomically`'s temporary files, followed by the writer's process id.
    public static let temporarySuffix = ".tmp-"

    /// Removes `path.tmp-<pid>` files that `writeAtomically(path)` left behind when its process
    /// was killed: those whose process no longer exists (or is this process, which is not
    /// writing `path` now). Returns the names removed.
    @discardableResult
    public static func removeStaleTemporaries(of path: String) -> [String] {
        let slash = path.lastIndex(of: "/")
        let dir = slash.map { String(path[..<$0]) } ?? "."
        let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
        let prefix = base + temporarySuffix
        var removed: [String] = []
        guard let d = Path.withCString(dir.isEmpty ? "/" : dir, { opendir($0) }) else { return [] }
        defer { closedir(d) }
        while let e = readdir(d) {
            let name = entryName(e)
            guard name.hasPrefix(prefix), let pid = Int32(name.dropFirst(prefix.count)), pid > 0 else { continue }
            if pid == getpid() || (kill(pid, 0) != 0 && errno == ESRCH) {
                let full = (dir.isEmpty ? "" : dir) + "/" + name
                if remove(full) { removed.append(full) }
            }
        }
        return removed
    }

    /// unlink(2) through `Path`; true when the file was removed.
    @discardableResult
    public static func remove(_ path: String) -> Bool {
        Path.withCString(path) { unlink($0) } == 0
    }

    /// open(2) through `Path`.
    public static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0) -> Int32 {
        Path.withCString(path) { Glibc.open($0, flags, mode) }
    }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return Path.withCString(path) { stat($0, &st) } == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return Path.withCString(path) { stat($0, &st) } == 0
    }

    /// The name of a directory entry, its bytes kept (see `Path`).
    public static func entryName(_ e: UnsafeMutablePointer<dirent>) -> String {
        withUnsafePointer(to: e.pointee.d_name) {
            $0.withMemoryRebound(to: CChar.self, capacity: 256) { Path.string(cString: $0) }
        }
    }

    /// Creates the folder `path` and any missing parents (`mkdir -p`).
    /// - Throws: `.invalidArgument` for an empty path; `.io` naming the first folder that cannot
    ///   be created (or a file standing where a folder should be).
    public static func makeDirectories(_ path: String) throws {
        guard !path.isEmpty else { throw NecoError.invalidArgument("empty folder path") }
        var current = path.hasPrefix("/") ? "/" : ""
        for part in path.split(separator: "/") {
            current += (current.isEmpty || current.hasSuffix("/") ? "" : "/") + part
            if !isDirectory(current) && Path.withCString(current, { mkdir($0, 0o755) }) != 0 && !isDirectory(current) {
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
        guard let d = Path.withCString(dir, { opendir($0) }) else { throw NecoError.io("\(dir): \(errnoString())") }
        defer { closedir(d) }
        while let e = readdir(d) {
            let name = entryName(e)
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
