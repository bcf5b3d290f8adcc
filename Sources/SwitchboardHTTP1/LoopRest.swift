/// When the built-in engine's loop gives the CPU up by itself (issue 23).
///
/// A worker under a steady keep-alive load never has to block: `epoll_wait` always finds requests ready, and the loop
/// would run until the scheduler preempts it at the end of its slice (about 3 ms), while every connection of another
/// worker on that CPU waits. So once the loop has run ``yieldAfter`` without resting (blocking in `epoll_wait`, or a
/// yield), it yields (`sched_yield`), except after an iteration that adopted connections: yielding to the master
/// there only makes it accept in smaller bursts, at more CPU each. (Widening that exception to 100 µs after such an
/// iteration saved CPU pinned but lengthened round-robin's unpinned close p99 in two runs of three: BENCHMARKS.md,
/// "Tail latency", third part.)
///
/// Times are monotonic nanoseconds. The loop reports each iteration with ``iterationEnded(blocked:woke:end:adopted:)``,
/// yields when it answers true, and then calls ``yielded(at:)``.
struct LoopRest {
    /// How long the loop may run without resting before it yields; 0 never yields.
    let yieldAfter: UInt64
    /// A wait longer than this blocked (the worker gave the CPU up); a shorter one found events ready.
    static var blockedWait: UInt64 { 20_000 }
    /// When the loop last rested.
    private(set) var lastRest: UInt64 = 0

    init(yieldAfter: UInt64) {
        self.yieldAfter = yieldAfter
    }

    /// Whether a wait from `waitStart` that returned at `woke` with `count` events blocked.
    static func blocked(waitStart: UInt64, woke: UInt64, count: Int) -> Bool {
        count == 0 || woke &- waitStart > blockedWait
    }

    /// An iteration whose wait returned at `woke` (having `blocked` or not; see ``blocked(waitStart:woke:count:)``)
    /// and whose work ended at `end`, having `adopted` connections or not.
    /// - Returns: Whether the loop should yield now.
    mutating func iterationEnded(blocked: Bool, woke: UInt64, end: UInt64, adopted: Bool) -> Bool {
        if blocked {
            lastRest = woke
            return false
        }
        return yieldAfter > 0 && !adopted && end &- lastRest > yieldAfter
    }

    /// The loop yielded; it was back at `time`.
    mutating func yielded(at time: UInt64) {
        lastRest = time
    }
}
