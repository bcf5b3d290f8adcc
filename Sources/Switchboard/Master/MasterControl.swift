import Synchronization

/// Commands other threads give the master loop, and the eventfd that wakes it.
package final class MasterControl: Sendable {
    package enum Command: Sendable {
        case send(worker: Int, [UInt8])
        case broadcast([UInt8])
        case reload
        case stop
        case addWorker
        case removeWorker
    }

    package let eventFD: CInt
    private let queue = Mutex<[Command]>([])

    init() throws(SystemCallError) {
        eventFD = try Syscalls.eventDescriptor()
    }

    deinit {
        Syscalls.close(eventFD)
    }

    /// Queues `command` and wakes the loop. Safe from any thread.
    package func submit(_ command: Command) {
        queue.withLock { $0.append(command) }
        Syscalls.signalEvent(eventFD)
    }

    func take() -> [Command] {
        queue.withLock { queue in
            defer { queue.removeAll() }
            return queue
        }
    }
}
