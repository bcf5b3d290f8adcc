/// Accepted connections waiting for a worker: those taken back from the queue of a worker that died or stalled, and
/// those whose send would have blocked.
///
/// The master accepts only when some worker has room, so this holds at most the queued connections of the workers
/// that died or stalled (each bounded by ``Configuration/maxQueued``) plus one burst. It grows only on that rare path.
package struct PendingQueue {
    private var storage: [CInt] = []
    private var head = 0

    package init() {
        storage.reserveCapacity(64)
    }

    package var isEmpty: Bool { head == storage.count }
    package var count: Int { storage.count - head }

    /// The connections waiting, oldest first (they stay in the queue).
    package var waiting: [CInt] { Array(storage[head...]) }

    package mutating func append(_ fd: CInt) {
        storage.append(fd)
    }

    package mutating func append(contentsOf fds: some Collection<CInt>) {
        storage.append(contentsOf: fds)
    }

    package mutating func removeFirst() -> CInt {
        precondition(!isEmpty)
        let fd = storage[head]
        head += 1
        if head == storage.count {
            storage.removeAll(keepingCapacity: true)
            head = 0
        }
        return fd
    }

    package mutating func removeAll() -> [CInt] {
        let rest = Array(storage[head...])
        storage.removeAll(keepingCapacity: true)
        head = 0
        return rest
    }
}
