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
