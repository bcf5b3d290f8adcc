import Switchboard

/// What one worker loop did, for finding where its tail latency comes from (issue 23): how long each iteration ran
/// between two `epoll_wait` calls, how many events each wait returned, and how long the waits blocked. Off unless the
/// worker's environment has `SWITCHBOARD_LOOP_STATS` (the benchmark's evidence script sets it); one line at exit.
struct LoopStats {
    /// Iterations by how long they ran: bucket `i` holds those of `2^(i-1)` to `2^i` µs (0: under 1 µs).
    private(set) var runMicroseconds = [UInt64](repeating: 0, count: 24)
    /// Waits by how many events they returned: bucket `i` holds `2^(i-1)` to `2^i - 1` events (0: none).
    private(set) var events = [UInt64](repeating: 0, count: 10)
    /// Waits that blocked (``LoopRest/blockedWait``): the worker gave the CPU up by itself.
    private(set) var waitsThatBlocked: UInt64 = 0
    private(set) var iterations: UInt64 = 0
    /// Times the loop yielded the CPU (``LoopRest``).
    private(set) var yields: UInt64 = 0
    private(set) var longestRun: UInt64 = 0
    private(set) var runTotal: UInt64 = 0
    private(set) var blockedTotal: UInt64 = 0

    static let enabled: Bool = Syscalls.environment(WorkerRuntime.loopStatsVariable) != nil

    static func bucket(_ value: UInt64, limit: Int) -> Int {
        guard value > 0 else { return 0 }
        return min(64 - value.leadingZeroBitCount, limit - 1)
    }

    mutating func yielded() { yields &+= 1 }

    /// Times the loop yielded before a wait (``LoopRest/wait(timeout:yieldingFirst:poll:yield:)``), and of those the
    /// waits that still blocked once the CPU came back (the others found their events without a wake-up).
    private(set) var yieldsBeforeWaiting: UInt64 = 0
    private(set) var blockedAfterYielding: UInt64 = 0

    mutating func yieldedBeforeWaiting(blockedAfter: Bool) {
        yieldsBeforeWaiting &+= 1
        if blockedAfter { blockedAfterYielding &+= 1 }
    }

    /// An iteration ran `run` ns after a wait that took `waited` ns, `blocked` or not, and returned `count` events.
    mutating func record(run: UInt64, waited: UInt64, blocked: Bool, count: Int) {
        iterations &+= 1
        runMicroseconds[Self.bucket(run / 1000, limit: runMicroseconds.count)] &+= 1
        events[Self.bucket(UInt64(count), limit: events.count)] &+= 1
        if blocked { waitsThatBlocked &+= 1 }
        longestRun = max(longestRun, run)
        runTotal &+= run
        blockedTotal &+= waited
    }

    /// One line: `loop-stats iterations=… blocked=… yields=… yields_before_waiting=… blocked_after=…
    /// run_us_log2=[…] events_log2=[…] longest_run_us=… run_ms=… blocked_ms=…`.
    var line: String {
        func list(_ values: [UInt64]) -> String {
            let last = values.lastIndex { $0 > 0 } ?? 0
            return "[" + values[...last].map(String.init).joined(separator: ",") + "]"
        }
        return "loop-stats iterations=\(iterations) blocked=\(waitsThatBlocked) yields=\(yields) "
            + "yields_before_waiting=\(yieldsBeforeWaiting) blocked_after=\(blockedAfterYielding) "
            + "run_us_log2=\(list(runMicroseconds)) "
            + "events_log2=\(list(events)) longest_run_us=\(longestRun / 1000) run_ms=\(runTotal / 1_000_000) "
            + "blocked_ms=\(blockedTotal / 1_000_000)"
    }
}
