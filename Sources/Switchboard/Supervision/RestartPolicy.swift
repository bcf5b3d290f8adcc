/// Decides when to restart a worker that exited unexpectedly, and when a crash loop must halt the master.
///
/// A plain value with an injected clock (nanoseconds) and random source, so tests drive it event by event.
/// An exit before `healthyUptime` is *early*. Consecutive early exits back off exponentially from `baseDelay` up to
/// `maxDelay`, with up to `jitter` of the delay taken off at random; a healthy exit resets the backoff. More than
/// `crashLoopLimit` early exits within `crashLoopWindow` halt the master (nil: retry forever).
public struct RestartPolicy: Sendable {
    /// The knobs of the policy.
    public struct Settings: Sendable, Equatable {
        /// Delay before the first restart after an early exit.
        public var baseDelay: Duration = .milliseconds(100)
        /// Longest delay between restarts.
        public var maxDelay: Duration = .seconds(10)
        /// A worker that ran at least this long exited healthy: no backoff.
        public var healthyUptime: Duration = .seconds(10)
        /// Early exits within ``crashLoopWindow`` that halt the master; nil retries forever.
        public var crashLoopLimit: Int? = 10
        /// Window for ``crashLoopLimit``.
        public var crashLoopWindow: Duration = .seconds(60)
        /// Fraction (0...1) of each delay that may be taken off at random.
        public var jitter: Double = 0.2

        /// Creates the default settings.
        public init() {}
    }

    /// Why a worker exited, as far as the master can tell.
    public enum ExitCause: Equatable, Sendable {
        /// It crashed or exited by itself (or the master killed it as hung or broken): counts toward the halt.
        case failed
        /// It gave up for lack of descriptors or memory (``WorkerRuntime/resourcePressureExitCode``): it backs off
        /// like a failure but never counts toward the halt, since a flood of clients must not stop the service.
        case resourcePressure
        /// SIGKILL that the master did not send (the OOM killer, an operator): restarted after the base delay,
        /// without growing the backoff and without counting toward the halt. The process did nothing wrong that a
        /// restart loop would repeat; halting would turn one bad minute into an outage.
        case killedFromOutside
    }

    /// What to do about an exit.
    public enum Decision: Equatable, Sendable {
        /// Start a replacement after the delay.
        case restart(after: Duration)
        /// Too many early exits: stop the master.
        case halt(earlyExits: Int)
    }

    public let settings: Settings
    private var consecutiveEarly = 0
    private var earlyExits: [UInt64] = []

    /// What the policy remembers of past exits (handed to a master's new image at an upgrade).
    package struct Memory: Equatable, Codable, Sendable {
        var consecutiveEarly: Int
        var earlyExits: [UInt64]
    }

    package var memory: Memory {
        get { Memory(consecutiveEarly: consecutiveEarly, earlyExits: earlyExits) }
        set {
            consecutiveEarly = newValue.consecutiveEarly
            earlyExits = newValue.earlyExits
        }
    }

    /// Creates a policy.
    /// - Parameter settings: The knobs.
    public init(settings: Settings = .init()) {
        self.settings = settings
    }

    /// Records an unexpected exit.
    /// - Parameters:
    ///   - uptime: How long the worker ran.
    ///   - now: Monotonic time in nanoseconds.
    ///   - random: A value in 0..<1 for the jitter.
    ///   - cause: Why it exited; only ``ExitCause/failed`` counts toward the crash-loop halt.
    /// - Returns: Restart after a delay, or halt.
    public mutating func workerExited(
        uptime: Duration, now: UInt64, random: Double, cause: ExitCause = .failed
    ) -> Decision {
        guard uptime < settings.healthyUptime else {
            consecutiveEarly = 0
            return .restart(after: .zero)
        }
        if cause == .killedFromOutside {
            return .restart(after: settings.baseDelay)
        }
        consecutiveEarly += 1
        if cause == .failed {
            let window = UInt64(settings.crashLoopWindow.nanoseconds)
            earlyExits.removeAll { now >= window && $0 < now - window }
            earlyExits.append(now)
            if let limit = settings.crashLoopLimit, earlyExits.count > limit {
                return .halt(earlyExits: earlyExits.count)
            }
        }
        let exponent = min(consecutiveEarly - 1, 30)
        let raw = settings.baseDelay.nanoseconds * Double(1 << exponent)
        let capped = min(raw, settings.maxDelay.nanoseconds)
        let jittered = capped * (1 - settings.jitter * min(max(random, 0), 1))
        return .restart(after: .nanoseconds(Int64(jittered)))
    }

    /// The number of early exits in a row so far.
    public var earlyExitsInARow: Int { consecutiveEarly }
}

extension Duration {
    /// The duration in nanoseconds, as a Double.
    package var nanoseconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) * 1e9 + Double(attoseconds) / 1e9
    }

    /// The duration in whole milliseconds, rounded up.
    package var milliseconds: Int {
        Int((nanoseconds / 1e6).rounded(.up))
    }
}
