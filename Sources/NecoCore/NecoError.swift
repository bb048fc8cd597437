/// The one error type of libneco. Every fallible library call throws it; the C ABI maps `kind` to a
/// `neco_status` code and `message` to `neco_last_error()`.
public struct NecoError: Error, CustomStringConvertible, Sendable, Equatable {
    /// Error classes. Raw values equal the C header's `neco_status` codes; append only.
    public enum Kind: Int32, Sendable {
        case invalidArgument = -1  // a value out of range, an unknown option
        case io = -2               // a file could not be opened, read or written
        case format = -3           // a file is corrupt, truncated or of the wrong kind
        case shape = -4            // tensor shapes or sizes do not fit together
        case outOfMemory = -5      // an allocation failed or a size is beyond the limits
        case aborted = -6          // a callback asked to stop
        case `internal` = -7       // a bug in libneco
        case diverged = -8         // training diverged: a non-finite loss or gradient
        case data = -9             // unusable training data (no images, too few readable ones)
        case version = -10         // a C params struct of an unknown size (neco.h's struct_size)
        case distributed = -11     // the ranks of an MPI job disagree, or one stopped answering
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    /// The message on one line: control characters and bytes that are not UTF-8 escaped (`Path.display`).
    public var description: String { Path.display(message) }

    public static func invalidArgument(_ m: String) -> NecoError { NecoError(.invalidArgument, m) }
    public static func io(_ m: String) -> NecoError { NecoError(.io, m) }
    public static func format(_ m: String) -> NecoError { NecoError(.format, m) }
    public static func shape(_ m: String) -> NecoError { NecoError(.shape, m) }
}
