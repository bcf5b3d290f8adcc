/// While a stop drains, whether to ask systemd to wait longer than `TimeoutStopSec=`: only while the drain makes
/// progress (fewer workers or open connections than at the last look), and only up to the master's own deadline.
/// A plain value; the master asks it once a second during a stop.
package struct StopExtension {
    private var lastMarker = Int.max

    package init() {}

    /// - Parameters:
    ///   - marker: Workers still running plus connections they hold open.
    ///   - deadline: The drain deadline (monotonic nanoseconds).
    ///   - now: Monotonic nanoseconds.
    /// - Returns: The `EXTEND_TIMEOUT_USEC=` value to send (to the deadline plus a 5 s margin), or nil.
    package mutating func extendedTimeout(marker: Int, deadline: UInt64, now: UInt64) -> UInt64? {
        defer { lastMarker = marker }
        guard marker < lastMarker, deadline > now else { return nil }
        return (deadline - now) / 1000 + 5_000_000
    }
}

/// What the master does when `accept` fails: out of descriptors or memory, it pauses accepting for a moment and lets
/// the kernel's backlog hold the connections (epoll would report the listener again at once); any other failure
/// concerns one connection only.
package enum AcceptBackoff {
    /// How long accepting pauses.
    package static let pause: UInt64 = 100_000_000

    /// When accepting resumes after a failure with `code` (an `errno` value) at `now`; nil: go on at once.
    package static func resume(after code: Int32, now: UInt64) -> UInt64? {
        WorkerRuntime.isResourcePressure(code) ? now &+ pause : nil
    }
}
