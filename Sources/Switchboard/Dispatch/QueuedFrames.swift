/// The `connections` frames the master sent one worker that the worker may not have received yet, oldest first.
///
/// The master closes its copies of the connections as soon as a frame is sent: until the worker receives the frame,
/// the kernel holds them in the worker's queue (the worker's end of the socketpair, which the master keeps open too).
/// This ring only remembers what each frame was (first sequence number, connection count, where it ends in the
/// byte stream sent, when it was sent), so the master can tell how many connections still wait: from the bytes
/// still queued (`SIOCINQ`), from a worker's acknowledgement, or from frames it took back itself.
///
/// A fixed-capacity ring: sending and receiving never allocate.
package struct QueuedFrames {
    package struct Frame: Equatable, Codable {
        /// The sequence number of the frame's first connection.
        package var first: UInt64
        /// Connections in the frame.
        package var count: Int
        /// The channel's byte count once this frame was sent: the frame is received when the worker has taken
        /// this many bytes.
        package var end: UInt64
        /// When it was sent (monotonic nanoseconds).
        package var sentAt: UInt64
    }

    private var storage: [Frame]
    private var head = 0
    /// Frames waiting.
    package private(set) var count = 0
    /// Connections in the frames waiting.
    package private(set) var connections = 0
    /// The sequence number the next connection sent gets. Starts at 1.
    package private(set) var nextSequence: UInt64 = 1

    package init(capacity: Int) {
        precondition(capacity >= 1)
        storage = Array(repeating: Frame(first: 0, count: 0, end: 0, sentAt: 0), count: capacity)
    }

    /// The frames waiting, oldest first, and the next sequence number: what a master's new image needs to go on
    /// counting (``init(capacity:restoring:)``).
    package var snapshot: (frames: [Frame], nextSequence: UInt64) {
        ((0..<count).map { storage[(head + $0) % storage.count] }, nextSequence)
    }

    /// The ring another image kept, in a ring of `capacity` (its own bound; frames beyond it are kept too).
    package init(capacity: Int, restoring frames: [Frame], nextSequence: UInt64) {
        self.init(capacity: max(capacity, frames.count))
        for (index, frame) in frames.enumerated() { storage[index] = frame }
        count = frames.count
        connections = frames.reduce(0) { $0 + $1.count }
        self.nextSequence = nextSequence
    }

    package var capacity: Int { storage.count }
    package var isEmpty: Bool { count == 0 }

    /// The oldest frame still waiting.
    package var oldest: Frame? { count > 0 ? storage[head] : nil }

    /// Records a frame of `connections` connections sent; the channel had sent `end` bytes after it.
    /// - Returns: The frame's first sequence number.
    @discardableResult
    package mutating func sent(_ connections: Int, end: UInt64, at now: UInt64) -> UInt64 {
        precondition(count < storage.count, "more frames queued than the bound allows")
        precondition(connections >= 1)
        let first = nextSequence
        storage[(head + count) % storage.count] = Frame(first: first, count: connections, end: end, sentAt: now)
        count += 1
        self.connections += connections
        nextSequence += UInt64(connections)
        return first
    }

    /// Forgets the frames the worker has received, given the bytes of everything sent (`sent`) and the bytes still
    /// in its queue (`queued`).
    /// - Returns: The connections in those frames.
    package mutating func received(sent: UInt64, queued: Int) -> Int {
        let taken = sent &- UInt64(queued)
        return popWhile { $0.end <= taken }
    }

    package enum AckError: Error, Equatable {
        /// The worker acknowledged a sequence number it was never sent.
        case beyondSent(acknowledged: UInt64, lastSent: UInt64)
    }

    /// Forgets every frame up to the one holding `sequence`: the worker said it received them.
    /// - Returns: The connections in those frames (0 for an acknowledgement of frames already forgotten).
    package mutating func received(upTo sequence: UInt64) throws(AckError) -> Int {
        guard sequence < nextSequence else {
            throw .beyondSent(acknowledged: sequence, lastSent: nextSequence - 1)
        }
        return popWhile { $0.first <= sequence }
    }

    /// Forgets the frames up to the one starting at `first`: the master took it back from the worker's queue (so
    /// every older one was received or taken back too).
    /// - Returns: The connections in those frames.
    package mutating func takenBack(through first: UInt64) -> Int {
        popWhile { $0.first <= first }
    }

    /// Forgets everything (the worker is gone).
    package mutating func removeAll() {
        head = 0
        count = 0
        connections = 0
    }

    private mutating func popWhile(_ done: (Frame) -> Bool) -> Int {
        var removed = 0
        while count > 0 && done(storage[head]) {
            removed += storage[head].count
            head = (head + 1) % storage.count
            count -= 1
        }
        connections -= removed
        return removed
    }
}
