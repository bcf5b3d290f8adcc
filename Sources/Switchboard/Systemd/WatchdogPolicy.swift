/// Decides whether the master may tell systemd's watchdog that the service is healthy.
///
/// A plain value with an injected clock. The master asks once per half watchdog interval, from its own loop (so a
/// stuck loop sends nothing). It may ping only while every ready or draining worker has sent a heartbeat within
/// `staleAfter`; a hung worker withholds the ping until the master has replaced it, so systemd restarts a service that
/// cannot heal itself in time.
package struct WatchdogPolicy {
    package struct Worker: Equatable {
        package var id: Int
        package var pid: Int32
        package var serving: Bool
        package var lastHeartbeat: UInt64

        package init(id: Int, pid: Int32, serving: Bool, lastHeartbeat: UInt64) {
            self.id = id
            self.pid = pid
            self.serving = serving
            self.lastHeartbeat = lastHeartbeat
        }
    }

    package enum Verdict: Equatable {
        case ping
        /// Withhold the ping: this worker has been silent for `silentFor`.
        case withhold(worker: Worker, silentFor: Duration)
    }

    /// How long a serving worker may be silent before the service counts as unhealthy.
    package let staleAfter: Duration

    package init(staleAfter: Duration) {
        self.staleAfter = staleAfter
    }

    /// The verdict for `workers` at `now` (monotonic nanoseconds).
    package func verdict(now: UInt64, workers: [Worker]) -> Verdict {
        let limit = UInt64(staleAfter.nanoseconds)
        var worst: (Worker, UInt64)?
        for worker in workers where worker.serving && now > worker.lastHeartbeat {
            let silent = now - worker.lastHeartbeat
            if silent > limit && silent > (worst?.1 ?? 0) { worst = (worker, silent) }
        }
        guard let (worker, silent) = worst else { return .ping }
        return .withhold(worker: worker, silentFor: .nanoseconds(Int64(silent)))
    }
}
