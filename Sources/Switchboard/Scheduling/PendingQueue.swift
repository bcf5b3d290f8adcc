/// Accepted connections waiting for a worker: those a dead worker never acknowledged, and one whose send failed.
///
/// The master accepts only when some worker has room, so this holds at most the unacknowledged connections of the
/// workers that died (each bounded), plus one. It grows only on that rare path.
package struct PendingQueue {
    private var storage: [CInt] = []
    private var head = 0

    package init() {
        storage.reserveCapacity(64)
    }

    package var isEmpty: Bool { head == storage.count }
    package var count: Int { storage.count - head }

    package mutating func append(_ fd: CInt) {
        storage.append(fd)
    }

    package mutating func append(contentsOf fds: [CInt]) {
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
