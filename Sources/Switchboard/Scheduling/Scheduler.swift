/// Chooses the worker slot for each accepted connection. A plain value that does no I/O.
///
/// Slots are numbered 0..<n. A slot is eligible when it is ready, not blocked (its channel would block), not full
/// (it refused connections for lack of descriptors, until its next report), below the bound of unacknowledged
/// connections and below its connection cap (open plus unacknowledged). Round-robin rotates strictly over eligible slots: a slot that is skipped
/// keeps its place in the rotation. Least-connections picks the eligible slot with the fewest open plus unacknowledged
/// connections, rotation breaking ties.
package struct Scheduler {
    package enum Policy: Sendable {
        case roundRobin
        case leastConnections
    }

    package struct Slot: Equatable {
        package var ready = false
        package var blocked = false
        package var unacknowledged = 0
        package var open = 0
        package var full = false
    }

    package let policy: Policy
    package let bound: Int
    /// The most connections (open plus unacknowledged) a worker may hold; `Int.max` for no cap.
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
        slot.ready && !slot.blocked && !slot.full && slot.unacknowledged < bound
            && slot.open + slot.unacknowledged < capacity
    }

    /// Whether any slot can take a connection now.
    package var hasCapacity: Bool {
        slots.contains(where: eligible)
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
                let load = slot.open + slot.unacknowledged
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
        slots[slot].unacknowledged += 1
        cursor = (slot + 1) % slots.count
    }

    /// Takes back `count` connections recorded with ``dispatched(to:)`` that were never sent after all.
    package mutating func undispatched(_ slot: Int, count: Int) {
        precondition(count <= slots[slot].unacknowledged, "took back more than was recorded")
        slots[slot].unacknowledged -= count
    }

    /// Records that `slot` acknowledged `count` connections and reports `open` connections.
    package mutating func acknowledged(_ slot: Int, count: Int, open: Int? = nil) {
        precondition(count <= slots[slot].unacknowledged, "acknowledged more than was sent")
        slots[slot].unacknowledged -= count
        if let open { slots[slot].open = open }
    }

    /// Updates the open-connection count a worker reported in a heartbeat; a full worker may take work again.
    package mutating func reportOpen(_ slot: Int, open: Int) {
        slots[slot].open = open
        slots[slot].full = false
    }

    /// Records that `slot` refused `count` unacknowledged connections (they go elsewhere) and is full until its next
    /// report.
    package mutating func refused(_ slot: Int, count: Int) {
        precondition(count <= slots[slot].unacknowledged, "refused more than was sent")
        slots[slot].unacknowledged -= count
        slots[slot].full = true
    }

    package mutating func setReady(_ slot: Int, _ ready: Bool) {
        slots[slot].ready = ready
    }

    package mutating func setBlocked(_ slot: Int, _ blocked: Bool) {
        slots[slot].blocked = blocked
    }

    /// The worker in `slot` is gone; returns how many connections it owed an acknowledgement for.
    /// The slot stays (not ready) for a replacement.
    @discardableResult
    package mutating func workerExited(_ slot: Int) -> Int {
        let owed = slots[slot].unacknowledged
        slots[slot] = Slot()
        return owed
    }
}
