/// When the built-in engine's loop gives the CPU up by itself (issue 23).
///
/// A worker under a steady keep-alive load never has to block: `epoll_wait` always finds requests ready, and the loop
/// would run until the scheduler preempts it at the end of its slice (about 3 ms), while every connection of another
/// worker on that CPU waits. So once the loop has run ``yieldAfter`` without resting (blocking in `epoll_wait`, or a
/// yield), and has answered a request on a kept-alive connection meanwhile, it yields (`sched_yield`), except after an
/// iteration that adopted connections: yielding to the master there only makes it accept in smaller bursts, at more
/// CPU each. (Widening that exception to 100 µs after such an iteration saved CPU pinned but lengthened round-robin's
/// unpinned close p99 in two runs of three: BENCHMARKS.md, "Tail latency", third part.)
///
/// A loop that answers only new connections (a load of one request per connection) never yields: what keeps it from
/// blocking is the connections the master or the listener hands it, not connections of its own that keep sending,
/// and its yields there (490 to 620 a second per worker under the benchmark's close load) only sent it to the back of
/// the queue, behind the master it waits for (BENCHMARKS.md, "Tail latency", sixteenth part).
///
/// Times are monotonic nanoseconds. The loop reports each iteration with
/// ``iterationEnded(blocked:woke:end:adopted:answeredKeptAlive:)``, yields when it answers true, and then calls
/// ``yielded(at:)``.
struct LoopRest {
    /// How long the loop may run without resting before it yields; 0 never yields.
    let yieldAfter: UInt64
    /// A wait longer than this blocked (the worker gave the CPU up); a shorter one found events ready.
    static var blockedWait: UInt64 { 20_000 }
    /// When the loop last rested.
    private(set) var lastRest: UInt64 = 0
    /// Whether the loop answered a request on a kept-alive connection since it last rested.
    private(set) var keptAliveSinceRest = false

    init(yieldAfter: UInt64) {
        self.yieldAfter = yieldAfter
    }

    /// Whether a wait from `waitStart` that returned at `woke` with `count` events blocked.
    static func blocked(waitStart: UInt64, woke: UInt64, count: Int) -> Bool {
        count == 0 || woke &- waitStart > blockedWait
    }

    /// An iteration whose wait returned at `woke` (having `blocked` or not; see ``blocked(waitStart:woke:count:)``)
    /// and whose work ended at `end`, having `adopted` connections or not, and having answered a request on a
    /// connection that had been answered before (`answeredKeptAlive`) or not.
    /// - Returns: Whether the loop should yield now.
    mutating func iterationEnded(
        blocked: Bool, woke: UInt64, end: UInt64, adopted: Bool, answeredKeptAlive: Bool
    ) -> Bool {
        if blocked {
            // This iteration's work came after the rest.
            lastRest = woke
            keptAliveSinceRest = answeredKeptAlive
            return false
        }
        keptAliveSinceRest = keptAliveSinceRest || answeredKeptAlive
        return yieldAfter > 0 && !adopted && keptAliveSinceRest && end &- lastRest > yieldAfter
    }

    /// The loop yielded; it was back at `time`.
    mutating func yielded(at time: UInt64) {
        lastRest = time
        keptAliveSinceRest = false
    }
}
