import CNecoSupport
import Neco
import NecoCore

// Version, errors, logging and threads: the process-level part of neco.h.

@_cdecl("neco_api_version")
public func neco_api_version() -> Int32 { NECO_API_VERSION }

@_cdecl("neco_version")
public func neco_version() -> UnsafePointer<CChar> { neco_support_version() }

@_cdecl("neco_status_str")
public func neco_status_str(_ status: neco_status) -> UnsafePointer<CChar> {
    neco_support_status_str(status.rawValue)
}

@_cdecl("neco_last_error")
public func neco_last_error() -> UnsafePointer<CChar> { neco_support_last_error() }

@_cdecl("neco_log_set")
public func neco_log_set(_ callback: neco_log_callback?, _ userData: UnsafeMutableRawPointer?) {
    neco_support_log_set(callback, userData)
}

@_cdecl("neco_set_n_threads")
public func neco_set_n_threads(_ n: Int32) -> neco_status {
    guarded("neco_set_n_threads") {
        guard n >= 0, n <= 256 else {
            throw NecoError.invalidArgument("n_threads = \(n) out of range 0...256 (0 = number of processors)")
        }
        Threads.setCount(n == 0 ? min(Threads.processorCount, 256) : Int(n))
    }
}

@_cdecl("neco_default_model_path")
public func neco_default_model_path() -> UnsafePointer<CChar> {
    neco_support_set_path(DefaultModel.path)
}

@_cdecl("neco_get_n_threads")
public func neco_get_n_threads() -> Int32 { Int32(clamping: Threads.count) }
