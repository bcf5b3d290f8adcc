import CSwitchboardSystemd

#if canImport(Glibc)
import Glibc
#endif

/// Thin wrappers over libsystemd's daemon API. Every call is a no-op when the process was not started by systemd
/// (no `NOTIFY_SOCKET`, no `LISTEN_FDS`, no `WATCHDOG_USEC`).
package enum Systemd {
    /// Sends `state` (newline-separated `KEY=value` assignments) to the service manager.
    /// - Returns: true when it was sent; false without `NOTIFY_SOCKET` or on failure.
    @discardableResult
    package static func notify(_ state: String) -> Bool {
        unsafe sd_notify(0, state) > 0
    }

    /// Sends `state` together with `fd` (for `FDSTORE=1`).
    @discardableResult
    package static func notify(_ state: String, descriptor fd: CInt) -> Bool {
        var fds = [fd]
        return unsafe fds.withUnsafeMutableBufferPointer { buffer in
            unsafe sd_pid_notify_with_fds(0, 0, state, buffer.baseAddress, 1) > 0
        }
    }

    /// The watchdog interval set for this process (`WATCHDOG_USEC` with a matching `WATCHDOG_PID`), or nil.
    package static func watchdogInterval() -> Duration? {
        var usec: UInt64 = 0
        guard unsafe sd_watchdog_enabled(0, &usec) > 0, usec > 0 else { return nil }
        return .microseconds(Int64(usec))
    }

    /// The descriptors passed by socket activation or the fd store (3, 4, …) with their names. Clears the
    /// `LISTEN_*` variables so workers do not see them, and sets close-on-exec on every passed descriptor.
    package static func listenDescriptors() -> [(fd: CInt, name: String)] {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = nil
        let count = unsafe sd_listen_fds_with_names(1, &names)
        guard count > 0 else { return [] }
        defer {
            if let names = unsafe names {
                for index in 0..<Int(count) { unsafe free(names[index]) }
                unsafe free(names)
            }
        }
        return (0..<Int(count)).map { index in
            let name = unsafe names.flatMap { unsafe $0[index] }.map { unsafe String(cString: $0) } ?? "unknown"
            return (CInt(SD_LISTEN_FDS_START) + CInt(index), name)
        }
    }

    /// Whether `fd` is a listening stream socket.
    package static func isListeningStreamSocket(_ fd: CInt) -> Bool {
        sd_is_socket(fd, AF_UNSPEC, CInt(SOCK_STREAM.rawValue), 1) > 0
    }
}
