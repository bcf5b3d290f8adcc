/// The connections staged for one worker during a burst, sent together in one message.
///
/// A burst stages at most ``ConnectionDispatcher/acceptBurst`` and ends by sending every outbox or moving it to the
/// pending queue, so the buffer is allocated once at that size and emptying it only resets ``count``
/// (`removeAll(keepingCapacity:)` was a generic call at every send). Should more ever be staged, it grows.
struct Outbox {
    /// The buffer: its first ``count`` are the staged connections.
    private(set) var descriptors = [CInt](repeating: -1, count: ConnectionDispatcher.acceptBurst)
    /// Connections staged.
    private(set) var count = 0

    var isEmpty: Bool { count == 0 }

    /// The staged connections.
    var staged: ArraySlice<CInt> { descriptors[0..<count] }

    mutating func append(_ fd: CInt) {
        if count < descriptors.count {
            descriptors[count] = fd
        } else {
            descriptors.append(fd)
        }
        count += 1
    }

    /// Empties it (the descriptors were sent or moved on).
    mutating func removeAll() {
        count = 0
    }
}
