/// What the scheduler reads of a worker's lane: a view, so there is no second copy of the lane's state.
package protocol SchedulingState {
    /// The worker serves: it said ready and is not draining.
    var ready: Bool { get }
    /// Its channel would block, or a send to it failed for a passing reason and it is skipped for a moment.
    var blocked: Bool { get }
    /// The master took its queue back because it stopped receiving; skipped until it receives or reports again.
    var stalled: Bool { get }
    /// Connections staged for it or sent that it may not have received yet.
    var queued: Int { get }
    /// Connections it holds: its last report plus what it received since.
    var open: Int { get }
}

/// Chooses the worker lane for each accepted connection: a pure selector that does no I/O and stores nothing about
/// the lanes but whose turn it is.
///
/// Lanes are numbered 0..<n. A lane is eligible when it is ready, not blocked, not stalled, below the bound of queued
/// connections (``queueBound(lanes:)``) and below its connection cap (open plus queued). Round-robin rotates strictly
/// over eligible lanes: a lane that is skipped keeps its place in the rotation. Least-connections picks the eligible
/// lane with the fewest open plus queued connections, rotation breaking ties.
package struct Scheduler {
    package enum Policy: Sendable {
        case roundRobin
        case leastConnections
    }

    package let policy: Policy
    /// The most connections that may wait in one worker's queue.
    package let bound: Int
    /// The most connections (open plus queued) a worker may hold; `Int.max` for no cap.
    package let capacity: Int
    /// The most descriptors the master may have in flight in all the queues together; `Int.max` for no limit.
    ///
    /// The kernel lets a user without `CAP_SYS_RESOURCE` have at most its descriptor limit in flight over every
    /// socket (a send beyond it fails with ETOOMANYREFS). Each queue gets an equal share of it, so workers that stop
    /// receiving can fill their own shares but never the whole budget: the others can still be sent to.
    package let inFlightBudget: Int
    /// The lane whose turn it is.
    package private(set) var cursor = 0

    package init(policy: Policy = .roundRobin, bound: Int, capacity: Int = .max, inFlightBudget: Int = .max) {
        precondition(bound >= 1, "bound must be at least 1")
        precondition(capacity >= 1, "capacity must be at least 1")
        precondition(inFlightBudget >= 1, "the in-flight budget must be at least 1")
        self.policy = policy
        self.bound = bound
        self.capacity = capacity
        self.inFlightBudget = inFlightBudget
    }

    /// The most connections that may wait in one queue when there are `count` lanes: ``bound``, or a lane's equal
    /// share of ``inFlightBudget`` (at least 1) when that is smaller.
    @inline(__always)
    package func queueBound(lanes count: Int) -> Int {
        inFlightBudget == .max ? bound : min(bound, max(1, inFlightBudget / max(1, count)))
    }

    @inline(__always)
    private func eligible(_ lane: some SchedulingState, queueBound: Int) -> Bool {
        lane.ready && !lane.blocked && !lane.stalled && lane.queued < queueBound && lane.open + lane.queued < capacity
    }

    /// Whether any lane can take a connection now.
    package func hasCapacity<Lane: SchedulingState>(_ lanes: [Lane]) -> Bool {
        let queueBound = queueBound(lanes: lanes.count)
        return lanes.contains { eligible($0, queueBound: queueBound) }
    }

    /// Whether a lane other than `lane` serves (ready, not stalled), so connections taken from `lane` have somewhere
    /// to go, now or once its queue moves.
    package func anotherServes<Lane: SchedulingState>(besides lane: Int, in lanes: [Lane]) -> Bool {
        lanes.indices.contains { $0 != lane && lanes[$0].ready && !lanes[$0].stalled }
    }

    /// The lane the next connection goes to, or nil when every lane is at its bound, blocked or not ready.
    /// Does not change state: call ``dispatched(to:count:)`` once the connection was staged for it.
    package func next<Lane: SchedulingState>(_ lanes: [Lane]) -> Int? {
        let count = lanes.count
        guard count > 0 else { return nil }
        let queueBound = queueBound(lanes: count)
        switch policy {
        case .roundRobin:
            for step in 0..<count {
                let index = (cursor + step) % count
                if eligible(lanes[index], queueBound: queueBound) { return index }
            }
            return nil
        case .leastConnections:
            var best: Int? = nil
            var bestLoad = Int.max
            for step in 0..<count {
                let index = (cursor + step) % count
                let lane = lanes[index]
                guard eligible(lane, queueBound: queueBound) else { continue }
                let load = lane.open + lane.queued
                if load < bestLoad {
                    best = index
                    bestLoad = load
                }
            }
            return best
        }
    }

    /// A connection was staged for `lane` (of `count` lanes): the rotation moves past it.
    package mutating func dispatched(to lane: Int, of count: Int) {
        cursor = (lane + 1) % count
    }
}
