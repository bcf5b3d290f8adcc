/// Decides whether the master may tell systemd's watchdog that the service is healthy.
///
/// systemd's watchdog is for what the master cannot fix. Replacing a hung worker is the master's job (it kills it at
/// the heartbeat timeout, serves its queue elsewhere and starts another), so one stale worker never withholds the
/// ping: under the shipped `WatchdogSec=10s` that restarted every worker, and lost every request in flight on the
/// healthy ones, for one worker the master was about to replace. The ping is withheld for two things only:
/// - the master's own loop is stuck: the master asks once per half watchdog interval from that loop, so a stuck loop
///   asks nothing and sends nothing;
/// - no worker has been able to serve for longer than ``recoveryBound``, the longest the master can take to bring one
///   back by itself (see ``recoveryBound(_:)``). Past it, the master has shown it cannot heal the service.
///
/// A worker is *able to serve* while it is ready (or draining) and its last heartbeat is at most ``staleAfter`` old.
/// The outage is measured from the last heartbeat of the last worker that could serve, the same clock the master's
/// heartbeat timeout runs on. A master that is starting counts from its start (systemd arms the watchdog only after
/// `READY=1`; until then `TimeoutStartSec=` watches the start). A master that is stopping always pings: its workers
/// leave on purpose, and the stop has deadlines of its own (`--drain-timeout`, then `TimeoutStopSec=`, extended only
/// while the drain makes progress).
///
/// A plain value with an injected clock (monotonic nanoseconds); it does no I/O.
package struct WatchdogPolicy {
    /// What the policy needs to know of one worker.
    package struct Worker: Equatable {
        /// Ready or draining: the scheduler may send it connections, or it finishes the ones it has.
        package var serving: Bool
        /// Monotonic nanoseconds.
        package var lastHeartbeat: UInt64

        package init(serving: Bool, lastHeartbeat: UInt64) {
            self.serving = serving
            self.lastHeartbeat = lastHeartbeat
        }
    }

    package enum Verdict: Equatable {
        case ping
        /// Withhold the ping: no worker has been able to serve for `outage`, longer than ``recoveryBound``.
        case withhold(outage: Duration)
    }

    /// How long a serving worker may be silent and still count as able to serve.
    package let staleAfter: Duration
    /// How long the service may go without a worker able to serve before systemd should restart it.
    package let recoveryBound: Duration
    /// The last moment some worker was able to serve (or the master started), in monotonic nanoseconds.
    private(set) var lastServed: UInt64

    /// Creates a policy.
    /// - Parameters:
    ///   - staleAfter: How long a serving worker may be silent and still count as able to serve.
    ///   - recoveryBound: How long no worker may be able to serve before the ping is withheld.
    ///   - start: When the master started (monotonic nanoseconds): the outage clock's origin until a worker serves.
    package init(staleAfter: Duration, recoveryBound: Duration, start: UInt64) {
        self.staleAfter = staleAfter
        self.recoveryBound = recoveryBound
        self.lastServed = start
    }

    /// The policy for the master's own settings: a worker that missed two heartbeats (and a little) no longer counts as
    /// able to serve, and the bound is ``recoveryBound(_:)``.
    /// - Parameters:
    ///   - configuration: The master's configuration.
    ///   - start: When the master started (monotonic nanoseconds).
    package init(configuration: Configuration, start: UInt64) {
        self.init(
            staleAfter: configuration.heartbeatInterval * 2 + .milliseconds(500),
            recoveryBound: Self.recoveryBound(SupervisorMachine.Settings(configuration)), start: start)
    }

    /// The longest the master may take to have a worker serving again after the last one stopped, without help.
    ///
    /// Counted from the last worker's last heartbeat, one replacement round at its slowest:
    /// - `heartbeatTimeout`: until the master counts the silent worker as hung;
    /// - `checkInterval`: health is checked at that pace, so the kill may come that much later;
    /// - `restart.maxDelay`: the replacement's backoff (zero after a healthy uptime; jitter only shortens it);
    /// - `readyTimeout`: the replacement's start-up; one that is not ready by then is killed and the round begins
    ///   again, so one round is all the master can promise;
    /// - one second of margin for reaping the killed process, spawning the next and timers on a loaded machine.
    ///
    /// With the defaults: 10 s + 0.25 s + 10 s + 30 s + 1 s = 51.25 s. It does not depend on `WatchdogSec=`, which
    /// bounds only how long the master's own loop may stall.
    /// - Parameter settings: The supervisor's timing rules.
    /// - Returns: The bound.
    package static func recoveryBound(_ settings: SupervisorMachine.Settings) -> Duration {
        let nanoseconds =
            settings.heartbeatTimeout &+ settings.checkInterval &+ UInt64(max(settings.restart.maxDelay.nanoseconds, 0))
            &+ settings.readyTimeout &+ 1_000_000_000
        return .nanoseconds(Int64(clamping: nanoseconds))
    }

    /// Brings the memory of the last moment a worker could serve up to date.
    ///
    /// The master calls it at every health check, before a hung worker may be killed (and leave the list), so the
    /// outage runs from that worker's last heartbeat and not from the last ping; a worker that crashes between two
    /// checks costs at most one check interval, which the bound's margin covers.
    /// - Parameters:
    ///   - now: Monotonic nanoseconds.
    ///   - workers: Every worker with a process.
    package mutating func observe(now: UInt64, workers: [Worker]) {
        let stale = UInt64(max(staleAfter.nanoseconds, 0))
        for worker in workers where worker.serving {
            if now <= worker.lastHeartbeat || now - worker.lastHeartbeat <= stale {
                lastServed = max(lastServed, now)
            } else {
                lastServed = max(lastServed, worker.lastHeartbeat)
            }
        }
    }

    /// The verdict at `now` (after ``observe(now:workers:)`` with the same workers).
    /// - Parameters:
    ///   - now: Monotonic nanoseconds.
    ///   - workers: Every worker with a process.
    ///   - stopping: The master is stopping (or has halted): its workers leave on purpose.
    /// - Returns: ``Verdict/ping``, or ``Verdict/withhold(outage:)`` with how long no worker has been able to serve.
    package mutating func verdict(now: UInt64, workers: [Worker], stopping: Bool = false) -> Verdict {
        observe(now: now, workers: workers)
        let outage = now > lastServed ? now - lastServed : 0
        guard !stopping, outage > UInt64(max(recoveryBound.nanoseconds, 0)) else { return .ping }
        return .withhold(outage: .nanoseconds(Int64(clamping: outage)))
    }
}
