import CNecoSupport
import NecoCore

#if canImport(Glibc)
import Glibc
#endif

// The C boundary: every `@_cdecl` entry point runs its body through `guarded`, so that no Swift
// error escapes and every failure becomes a `neco_status` plus a thread-local message. Nothing in
// this module may trap on caller input: no `!` on caller data, no unchecked arithmetic on caller
// sizes, no call into a kernel whose preconditions have not been checked first.

/// Runs `body`; NECO_OK and an empty message on success, otherwise the error's code and
/// "`function`: message" (also logged at debug level).
@inline(__always)
func guarded(_ function: StaticString, _ body: () throws -> Void) -> neco_status {
    do {
        try body()
        neco_support_set_error(nil)
        return NECO_OK
    } catch let e as NecoError {
        return fail(function, e.kind.rawValue, e.message)
    } catch {
        return fail(function, NecoError.Kind.internal.rawValue, "\(error)")
    }
}

/// Records a failure of `function` and returns its status.
func fail(_ function: StaticString, _ code: Int32, _ message: String) -> neco_status {
    let text = "\(function): \(Path.display(message))"
    neco_support_set_error(text)
    neco_support_log(Int32(NECO_LOG_DEBUG.rawValue), text)
    return neco_status(rawValue: code)
}

/// Records a failure of a function that returns a value rather than a status (getters).
func note(_ function: StaticString, _ message: String) {
    _ = fail(function, NecoError.Kind.invalidArgument.rawValue, message)
}

func log(_ level: neco_log_level, _ message: String) {
    neco_support_log(Int32(level.rawValue), Path.display(message))
}

// MARK: - Handles

/// Base class of every object behind an opaque C handle. `unbox` checks the dynamic type, so a
/// handle of the wrong kind (a neco_image passed as a neco_model) is an error, not corruption.
class Handle {
    class var cName: String { "handle" }
}

/// Hands a retained object to C.
func box(_ h: Handle) -> OpaquePointer {
    OpaquePointer(Unmanaged.passRetained(h).toOpaque())
}

/// The object behind a handle, checked to be a `T`.
func unbox<T: Handle>(_ p: OpaquePointer?, _ argument: String, as: T.Type = T.self) throws -> T {
    guard let p else { throw NecoError.invalidArgument("\(argument) is NULL") }
    let h = Unmanaged<Handle>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
    guard let t = h as? T else {
        throw NecoError.invalidArgument("\(argument) is not a \(T.cName) (it is a \(type(of: h).cName))")
    }
    return t
}

/// Releases a handle of type `T`; NULL is a no-op, a handle of another type is refused.
func release<T: Handle>(_ p: OpaquePointer?, _ function: StaticString, as: T.Type) {
    guard let p else { return }
    let um = Unmanaged<Handle>.fromOpaque(UnsafeRawPointer(p))
    guard um.takeUnretainedValue() is T else {
        note(function, "argument is not a \(T.cName) (it is a \(type(of: um.takeUnretainedValue()).cName)); not freed")
        return
    }
    um.release()
}

/// Clears a handle out-parameter and checks that it is not NULL.
func clearOut(_ out: UnsafeMutablePointer<OpaquePointer?>?, _ argument: String) throws -> UnsafeMutablePointer<OpaquePointer?> {
    guard let out else { throw NecoError.invalidArgument("\(argument) is NULL") }
    out.pointee = nil
    return out
}

// MARK: - Arguments

/// A NUL-terminated argument string of at most `maxBytes` bytes (strnlen-bounded). Its bytes are
/// kept exactly (`Path`), so a file name that is not UTF-8 reaches `open` unchanged.
func cString(_ p: UnsafePointer<CChar>?, _ argument: String, maxBytes: Int = 4096) throws -> String {
    guard let p else { throw NecoError.invalidArgument("\(argument) is NULL") }
    let n = strnlen(p, maxBytes + 1)
    guard n <= maxBytes else { throw NecoError.invalidArgument("\(argument) is longer than \(maxBytes) bytes") }
    guard n > 0 else { throw NecoError.invalidArgument("\(argument) is empty") }
    return UnsafeRawPointer(p).withMemoryRebound(to: UInt8.self, capacity: n) {
        Path.string(UnsafeBufferPointer(start: $0, count: n))
    }
}

/// a · b · …, or a `.outOfMemory` error on overflow or beyond `limit`.
func checkedProduct(_ factors: [Int], limit: Int = Int.max, _ what: @autoclosure () -> String) throws -> Int {
    var p = 1
    for f in factors {
        guard f >= 0 else { throw NecoError.invalidArgument("\(what()): negative size \(f)") }
        let (r, o) = p.multipliedReportingOverflow(by: f)
        guard !o else { throw NecoError(.outOfMemory, "\(what()): size overflows") }
        p = r
    }
    guard p <= limit else { throw NecoError(.outOfMemory, "\(what()): \(p) elements exceed the limit of \(limit)") }
    return p
}

/// The caller's params struct, or `defaults` for NULL. The struct's leading `struct_size` says how
/// much of it the caller's header declares: only that many bytes are read, and the fields beyond
/// keep their defaults (an older, smaller struct). A size of 0, beyond this library's struct (a
/// newer header) or not at a field boundary is a `.version` error.
func readParams<T>(_ p: UnsafePointer<T>?, _ kind: Int32, _ defaults: T, _ type: String) throws -> T {
    guard let p else { return defaults }
    let size = UnsafeRawPointer(p).load(as: Int.self)  // size_t struct_size, the first field of every params struct
    let fix = "initialise it with \(type.dropLast("_params".count))_default_params()"
    switch neco_support_params_size(kind, size) {
    case 0: break
    case 1: throw NecoError(.version, "params->struct_size = \(UInt(bitPattern: size)) is too small: \(fix)")
    case 2: throw NecoError(.version, "params->struct_size = \(UInt(bitPattern: size)) is larger than this library's \(type) "
                                 + "(\(MemoryLayout<T>.size) bytes): the caller was built with a newer neco.h than libneco \(String(cString: neco_support_version()))")
    default: throw NecoError(.version, "params->struct_size = \(size) is not the size of any version of \(type): \(fix)")
    }
    var out = defaults
    withUnsafeMutableBytes(of: &out) { $0.copyMemory(from: UnsafeRawBufferPointer(start: UnsafeRawPointer(p), count: size)) }
    return out
}

/// A caller's capacity (size_t, imported as Int): values at or beyond 2^63 are refused.
func capacity(_ c: Int, _ argument: String) throws -> Int {
    guard c >= 0 else { throw NecoError.invalidArgument("\(argument) \(UInt(bitPattern: c)) is beyond 2^63") }
    return c
}
