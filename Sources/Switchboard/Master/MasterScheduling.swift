import Logging

/// How the master's thread is scheduled (``Configuration/masterScheduling``).
///
/// The master's work is short and comes in bursts: it wakes for each connection the listener has, accepts, passes
/// the descriptor on and sleeps again. Under the normal policy every such wake-up may preempt whatever runs on the
/// CPU it lands on (a worker answering, or the client itself on the same machine), and does, because a task that
/// sleeps this much is always owed CPU time. Under `SCHED_BATCH` the master gets the same share of the CPU but waits
/// for the running task's turn to end (or a CPU to go idle) instead of preempting it, and then accepts what arrived
/// meanwhile in one burst: fewer wake-ups, fewer messages, fewer preemptions of the workers
/// (`BENCHMARKS.md`, tail latency, twenty-fifth part). Where a CPU is idle nothing waits.
public enum MasterScheduling: String, Sendable, CaseIterable, CustomStringConvertible {
    /// `SCHED_BATCH` for the master's thread when it runs under the normal policy (`SCHED_OTHER`); workers start with
    /// the normal policy. A policy the master was started with that is not the normal one (`chrt`, systemd's
    /// `CPUSchedulingPolicy=`) is kept, for the master and its workers. Where the workers outnumber the CPUs the
    /// master may run on, a master moved to `SCHED_BATCH` also yields its CPU after each wake-up that found
    /// connections instead of going straight back to sleep (`BENCHMARKS.md`, tail latency, twenty-seventh part).
    case batch
    /// The policy the master was started with, for it and its workers.
    case inherit

    public var description: String { rawValue }
}

/// What the master did to its own thread's scheduling policy: the one place that changes it, gives it back before an
/// exec (an upgrade's new image starts from the policy this one was started with and decides for itself) and when the
/// master's run ends (an embedding program may have lent it a thread of a pool), and says whether workers must be
/// started with the normal policy instead of inheriting the master's.
package struct MasterSchedulingState {
    /// Whether the master moved its thread from the normal policy to `SCHED_BATCH`.
    package private(set) var batched = false

    package init() {}

    /// Applies `wanted`; one line says what happened unless nothing changed.
    package mutating func apply(_ wanted: MasterScheduling, logger: Logger) {
        guard wanted == .batch, !batched else { return }
        let current: Syscalls.SchedulingPolicy
        do {
            current = try Syscalls.schedulingPolicy()
        } catch {
            logger.notice("cannot read the master's scheduling policy (\(error)): keeping it")
            return
        }
        guard current == .normal else {
            logger.info("the master keeps the scheduling policy it was started with (\(current)), and so do its workers")
            return
        }
        do {
            try Syscalls.setSchedulingPolicy(batch: true)
            batched = true
            logger.debug("the master runs under SCHED_BATCH; workers under the normal policy")
        } catch {
            logger.notice("cannot set the master's scheduling policy to SCHED_BATCH (\(error)): keeping the normal one")
        }
    }

    /// Gives the thread its normal policy back: before an exec, and when the master's run ends.
    /// - Returns: Whether it did (and ``reapply()`` must follow a failed exec).
    @discardableResult
    package mutating func restore() -> Bool {
        guard batched, (try? Syscalls.setSchedulingPolicy(batch: false)) != nil else { return false }
        batched = false
        return true
    }

    /// After an exec that failed: `SCHED_BATCH` again, as before ``restore()``.
    package mutating func reapply() {
        batched = (try? Syscalls.setSchedulingPolicy(batch: true)) != nil
    }
}
