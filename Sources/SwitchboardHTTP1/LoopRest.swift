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
/// Where workers outnumber the CPUs they may run on, two of them take turns on one CPU. Under a keep-alive load the
/// one with nothing left to do blocked, and the kernel woke it (an interrupt to its CPU, and in a virtual machine an
/// exit to the host) a few requests later, when the load generator's next requests came: one sleep and one wake-up
/// for every few requests. So there, when it has answered a kept-alive request since it last rested, the loop first
/// looks without waiting and, finding nothing, yields before it waits (``wait(timeout:yieldingFirst:poll:yield:)``):
/// a sibling with work runs meanwhile, and by the time the CPU comes back the next requests are there, without a
/// wake-up. Not with a CPU of its own: there whatever else runs on it (another service, a load generator) is not a
/// sibling, and yielding put the worker behind it (keep-alive p99 1.7 to 1.8 times as long, BENCHMARKS.md, "Tail
/// latency", seventeenth part). Not under a load of new connections either: there a yield only sent it behind the
/// master (close p99 1.14 times, the same part).
///
/// How many times it yields before it waits adapts (``yieldBudget``): up to ``maxYieldsBeforeWaiting`` while yielding
/// keeps finding the next requests, one after a wait that blocked anyway. A worker that slept still made its load
/// generator pay for the wake-up (the sleeping worker is woken from the writer's CPU): yielding up to four times
/// instead of once gave 1.033 times the pinned keep-alive req/s at 0.89 times the p99, which one yield only had left
/// 0.977 of the filing build's. Where the next request is a round trip away (one connection, or a light load), every
/// wait blocks anyway, the budget stays at one, and the worker spends what it spent before
/// (BENCHMARKS.md, "Tail latency", twenty-fourth part).
///
/// Times are monotonic nanoseconds. The loop reports each iteration with
/// ``iterationEnded(blocked:woke:end:adopted:answeredKeptAlive:)``, yields when it answers true, and then calls
/// ``yielded(at:)``; before each wait it asks ``yieldsBeforeWaiting(timeout:)``.
struct LoopRest {
    /// How long the loop may run without resting before it yields; 0 never yields.
    let yieldAfter: UInt64
    /// Whether the loop yields before a wait that would block, having answered a kept-alive request since it last
    /// rested: set where workers outnumber the CPUs they may run on.
    let yieldBeforeWaiting: Bool
    /// A wait longer than this blocked (the worker gave the CPU up); a shorter one found events ready.
    static var blockedWait: UInt64 { 20_000 }
    /// When the loop last rested.
    private(set) var lastRest: UInt64 = 0
    /// Whether the loop answered a request on a kept-alive connection since it last rested.
    private(set) var keptAliveSinceRest = false
    /// The most yields before a wait (``wait(timeout:yieldingFirst:yields:poll:yield:)``) while they find events.
    let maxYieldsBeforeWaiting: Int
    /// How many times the next wait that yields first may yield while nothing is ready: ``maxYieldsBeforeWaiting``
    /// after such a wait found events without blocking, 1 after one that blocked anyway
    /// (``waitedAfterYielding(blocked:)``).
    private(set) var yieldBudget = 1
    /// The default of ``maxYieldsBeforeWaiting``.
    static var defaultMaxYieldsBeforeWaiting: Int { 4 }

    init(
        yieldAfter: UInt64, yieldBeforeWaiting: Bool = false,
        maxYieldsBeforeWaiting: Int = defaultMaxYieldsBeforeWaiting
    ) {
        self.yieldAfter = yieldAfter
        self.yieldBeforeWaiting = yieldBeforeWaiting
        self.maxYieldsBeforeWaiting = max(maxYieldsBeforeWaiting, 1)
    }

    /// Whether the next wait, of `timeout` ms, is to yield first (``wait(timeout:yieldingFirst:yields:poll:yield:)``).
    func yieldsBeforeWaiting(timeout: Int) -> Bool {
        yieldBeforeWaiting && keptAliveSinceRest && timeout != 0
    }

    /// Waits for events with `poll` (a timeout in ms, -1 for none; returns how many came). Yielding first, it polls
    /// without waiting and, only while that finds nothing, calls `yield`, up to `yields` times (at least once); then
    /// it polls with `timeout`. A yield is a rest: the loop then calls ``yielded(at:)`` with the time it came back,
    /// and ``waitedAfterYielding(blocked:)``.
    /// - Returns: The events' count.
    static func wait<Failure: Error>(
        timeout: Int, yieldingFirst: Bool, yields: Int = 1, poll: (Int) throws(Failure) -> Int, yield: () -> Void
    ) throws(Failure) -> Int {
        guard yieldingFirst else { return try poll(timeout) }
        for _ in 0..<max(yields, 1) {
            let ready = try poll(0)
            guard ready != 0 else {
                yield()
                continue
            }
            return ready
        }
        return try poll(timeout)
    }

    /// A wait that yielded first ended: having `blocked` (see ``blocked(waitStart:woke:count:)``, from the end of its
    /// last yield), or having found events. Sets the next such wait's ``yieldBudget``.
    mutating func waitedAfterYielding(blocked: Bool) {
        yieldBudget = blocked ? 1 : maxYieldsBeforeWaiting
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
