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
