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
        /// Upgrade the master in place (``Supervisor/upgrade(masterOnly:)``).
        case upgrade(masterOnly: Bool)
    }

    private let event: Descriptor
    private let queue = Mutex<[Command]>([])

    /// The eventfd that becomes readable when commands wait.
    package var eventFD: CInt { event.raw }

    init() throws(SystemCallError) {
        event = Descriptor(try Syscalls.eventDescriptor())
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
