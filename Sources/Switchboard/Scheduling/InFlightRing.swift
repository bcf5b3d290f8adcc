/// The connections the master handed to one worker and still holds copies of, in sequence order.
///
/// A fixed-capacity ring (the per-worker bound): pushing and acknowledging never allocate.
package struct InFlightRing {
    private var storage: [CInt]
    private var head = 0
    package private(set) var count = 0
    /// The sequence number the next pushed connection gets. Starts at 1.
    package private(set) var nextSequence: UInt64 = 1

    package init(capacity: Int) {
        precondition(capacity >= 1)
        storage = [CInt](repeating: -1, count: capacity)
    }

    package var capacity: Int { storage.count }
    package var isFull: Bool { count == storage.count }

    /// Sequence of the oldest unacknowledged connection.
    package var firstSequence: UInt64 { nextSequence - UInt64(count) }

    /// Records `fd` as sent; returns its sequence number.
    package mutating func push(_ fd: CInt) -> UInt64 {
        precondition(!isFull, "in-flight ring overflow")
        storage[(head + count) % storage.count] = fd
        count += 1
        defer { nextSequence += 1 }
        return nextSequence
    }

    package enum AckError: Error, Equatable {
        /// The worker acknowledged a sequence number it was never sent.
        case beyondSent(acknowledged: UInt64, lastSent: UInt64)
    }

    /// Removes every connection up to and including `sequence`, handing each fd to `release`.
    /// An acknowledgement older than what was already acknowledged removes nothing.
    /// - Returns: how many were removed.
    package mutating func acknowledge(
        upTo sequence: UInt64,
        _ release: (CInt) -> Void
    ) throws(AckError) -> Int {
        guard sequence < nextSequence else {
            throw .beyondSent(acknowledged: sequence, lastSent: nextSequence - 1)
        }
        var removed = 0
        while count > 0 && firstSequence <= sequence {
            release(storage[head])
            storage[head] = -1
            head = (head + 1) % storage.count
            count -= 1
            removed += 1
        }
        return removed
    }

    /// Takes back the `count` oldest connections when they are numbered from `sequence` (a worker refused them: the
    /// kernel dropped its copies), handing them to the caller instead of closing them.
    /// - Returns: The descriptors, oldest first, or nil when the oldest ones are not those.
    package mutating func takeBack(from sequence: UInt64, count taken: Int) -> [CInt]? {
        guard taken >= 1, taken <= count, firstSequence == sequence else { return nil }
        var result: [CInt] = []
        result.reserveCapacity(taken)
        for _ in 0..<taken {
            result.append(storage[head])
            storage[head] = -1
            head = (head + 1) % storage.count
            count -= 1
        }
        return result
    }

    /// Removes and returns every unacknowledged fd, oldest first.
    package mutating func removeAll() -> [CInt] {
        var result: [CInt] = []
        result.reserveCapacity(count)
        while count > 0 {
            result.append(storage[head])
            storage[head] = -1
            head = (head + 1) % storage.count
            count -= 1
        }
        return result
    }
}
