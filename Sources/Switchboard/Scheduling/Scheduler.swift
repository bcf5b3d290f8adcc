/// Chooses the worker slot for each accepted connection. A plain value that does no I/O.
///
/// Slots are numbered 0..<n. A slot is eligible when it is ready, not blocked (its channel would block), not stalled
/// (the master took its queue back because it stopped receiving, until it reports again), below the bound of queued
/// connections (sent, not yet received) and below its connection cap (open plus queued). Round-robin rotates strictly
/// over eligible slots: a slot that is skipped keeps its place in the rotation. Least-connections picks the eligible
/// slot with the fewest open plus queued connections, rotation breaking ties.
package struct Scheduler {
    package enum Policy: Sendable {
        case roundRobin
        case leastConnections
    }

    package struct Slot: Equatable {
        package var ready = false
        package var blocked = false
        /// Connections sent that the worker may not have received yet.
        package var queued = 0
        /// Connections the worker holds: its last report plus what it received since.
        package var open = 0
        package var stalled = false
    }

    package let policy: Policy
    package let bound: Int
    /// The most connections (open plus queued) a worker may hold; `Int.max` for no cap.
    package let capacity: Int
    package private(set) var slots: [Slot] = []
    private var cursor = 0

    package init(policy: Policy = .roundRobin, bound: Int, capacity: Int = .max, slots count: Int = 0) {
        precondition(bound >= 1, "bound must be at least 1")
        precondition(capacity >= 1, "capacity must be at least 1")
        self.policy = policy
        self.bound = bound
        self.capacity = capacity
        self.slots = Array(repeating: Slot(), count: count)
    }

    /// Adds a slot (not ready) and returns its index.
    package mutating func addSlot() -> Int {
        slots.append(Slot())
        return slots.count - 1
    }

    private func eligible(_ slot: Slot) -> Bool {
        slot.ready && !slot.blocked && !slot.stalled && slot.queued < bound && slot.open + slot.queued < capacity
    }

    /// Whether any slot can take a connection now.
    package var hasCapacity: Bool {
        slots.contains(where: eligible)
    }

    /// Whether a slot other than `slot` serves (ready, not stalled), so connections taken from `slot` have somewhere
    /// to go, now or once its queue moves.
    package func anotherServes(besides slot: Int) -> Bool {
        slots.indices.contains { $0 != slot && slots[$0].ready && !slots[$0].stalled }
    }

    /// The slot the next connection goes to, or nil when every slot is at its bound, blocked or not ready.
    /// Does not change state: call ``dispatched(to:)`` once the connection was sent.
    package func next() -> Int? {
        let count = slots.count
        guard count > 0 else { return nil }
        switch policy {
        case .roundRobin:
            for step in 0..<count {
                let index = (cursor + step) % count
                if eligible(slots[index]) { return index }
            }
            return nil
        case .leastConnections:
            var best: Int? = nil
            var bestLoad = Int.max
            for step in 0..<count {
                let index = (cursor + step) % count
                let slot = slots[index]
                guard eligible(slot) else { continue }
                let load = slot.open + slot.queued
                if load < bestLoad {
                    best = index
                    bestLoad = load
                }
            }
            return best
        }
    }

    /// Records a connection sent to `slot`; the rotation moves past it.
    package mutating func dispatched(to slot: Int) {
        slots[slot].queued += 1
        cursor = (slot + 1) % slots.count
    }

    /// Takes back `count` connections recorded with ``dispatched(to:)`` that were never sent after all.
    package mutating func undispatched(_ slot: Int, count: Int) {
        precondition(count <= slots[slot].queued, "took back more than was recorded")
        slots[slot].queued -= count
    }

    /// Records that `slot` received `count` queued connections: they count as open until its next report.
    /// A worker that receives is no longer stalled.
    package mutating func received(_ slot: Int, count: Int) {
        precondition(count <= slots[slot].queued, "received more than was sent")
        slots[slot].queued -= count
        slots[slot].open += count
        if count > 0 { slots[slot].stalled = false }
    }

    /// Records that the master took `count` queued connections back from `slot` (they go to other workers).
    package mutating func takenBack(_ slot: Int, count: Int) {
        precondition(count <= slots[slot].queued, "took back more than was queued")
        slots[slot].queued -= count
    }

    /// Updates the open-connection count a worker reported (heartbeat or acknowledgement); a stalled worker that
    /// reports is live again.
    package mutating func reportOpen(_ slot: Int, open: Int) {
        slots[slot].open = open
        slots[slot].stalled = false
    }

    /// Takes `slot` out of the rotation until it reports again: it stopped receiving and its queue was taken back.
    package mutating func setStalled(_ slot: Int) {
        slots[slot].stalled = true
    }

    package mutating func setReady(_ slot: Int, _ ready: Bool) {
        slots[slot].ready = ready
    }

    package mutating func setBlocked(_ slot: Int, _ blocked: Bool) {
        slots[slot].blocked = blocked
    }

    /// The worker in `slot` is gone; the slot stays (not ready) for a replacement.
    package mutating func workerExited(_ slot: Int) {
        slots[slot] = Slot()
    }
}
