#if canImport(Glibc)
import Glibc
#endif

/// Environment variables, read once per call (not cached: tests and launchers set them).
public enum Environment {
    /// The variable's value, or nil when it is unset or empty.
    public static func value(_ name: String) -> String? {
        guard let p = getenv(name), p.pointee != 0 else { return nil }
        return String(cString: p)
    }
}
