/// When a worker is recycled against leaks and bloat: after `--max-requests` requests, once its unique memory (USS)
/// stays over `--max-worker-memory`, or after `--max-lifetime`. A plain value; the master asks it and, when it names
/// a reason, sends the machine ``SupervisorMachine/Event/recycle(slot:reason:now:)`` (a one-worker rolling reload).
///
/// What users of gunicorn, uWSGI, pm2 and puma_worker_killer ran into, and how this avoids it:
/// - every worker recycling at once: each worker's request and lifetime limits are staggered by its slot (up to
///   7/32 more) plus a random part (up to 1/32 more), and the machine runs one recycle at a time;
/// - the wrong worker killed for shared pages: memory is the worker's unique set (private clean + private dirty),
///   not its RSS, and it must be over the limit in two samples in a row;
/// - a worker killed with requests in flight: a recycle drains it after its replacement is ready;
/// - a limit below the baseline recycling after every request: a worker over its memory limit within
///   `--min-uptime` of its start is not recycled, and that is said once.
package struct RecyclePolicy: Sendable, Equatable {
    /// Requests a worker serves before it is recycled; 0: no limit.
    package var maxRequests: UInt64 = 0
    /// Unique memory (bytes) a worker may keep; 0: no limit.
    package var maxMemory: UInt64 = 0
    /// How long (nanoseconds) a worker serves before it is recycled; 0: no limit.
    package var maxLifetime: UInt64 = 0
    /// A worker over its memory limit this soon (nanoseconds) after its start is below the limit's baseline.
    package var minUptime: UInt64 = 5_000_000_000

    package init(maxRequests: UInt64 = 0, maxMemory: UInt64 = 0, maxLifetime: UInt64 = 0, minUptime: UInt64 = 5_000_000_000) {
        self.maxRequests = maxRequests
        self.maxMemory = maxMemory
        self.maxLifetime = maxLifetime
        self.minUptime = minUptime
    }

    /// Whether any limit is set.
    package var isEnabled: Bool { maxRequests > 0 || maxMemory > 0 || maxLifetime > 0 }

    /// One worker's own limits, fixed when it starts.
    package struct Limits: Sendable, Equatable, Codable {
        package var requests: UInt64
        package var lifetime: UInt64
    }

    /// The limits of a worker in `slot`: each staggered by `limit × (slot mod 8) / 32` plus `limit × random / 32`,
    /// so workers started together do not reach them together.
    /// - Parameter random: A value in 0..<1.
    package func limits(slot: Int, random: Double) -> Limits {
        Limits(
            requests: Self.staggered(maxRequests, slot: slot, random: random),
            lifetime: Self.staggered(maxLifetime, slot: slot, random: random))
    }

    static func staggered(_ limit: UInt64, slot: Int, random: Double) -> UInt64 {
        guard limit > 0 else { return 0 }
        let step = Double(limit) / 32
        let extra = step * Double(slot % 8) + step * min(max(random, 0), 1)
        return limit &+ UInt64(extra)
    }

    /// What one memory sample means for a worker that has served `uptime` nanoseconds.
    package enum MemoryVerdict: Equatable, Sendable {
        case within
        /// Over the limit; recycle when this is the second sample in a row.
        case over
        /// Over the limit this soon after its start: the limit is below what a fresh worker needs.
        case belowBaseline
    }

    package func memory(uniqueBytes: UInt64, uptime: UInt64) -> MemoryVerdict {
        guard maxMemory > 0, uniqueBytes > maxMemory else { return .within }
        return uptime < minUptime ? .belowBaseline : .over
    }

    /// The reason to recycle a worker for its requests or age now, if any.
    package func due(_ limits: Limits, handled: UInt64, uptime: UInt64) -> SupervisorMachine.RecycleReason? {
        if limits.requests > 0 && handled >= limits.requests { return .requests }
        if limits.lifetime > 0 && uptime >= limits.lifetime { return .lifetime }
        return nil
    }
}
