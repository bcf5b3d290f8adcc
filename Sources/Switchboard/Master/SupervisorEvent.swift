#if canImport(Glibc)
import Glibc
#endif

/// One worker as the master sees it at the moment of an event.
public struct WorkerInfo: Sendable, Hashable, CustomStringConvertible {
    /// The worker's id: 1, 2, … never reused while the master runs (Node's `worker.id`).
    public var id: Int
    /// Its process id.
    public var pid: Int32
    /// Its slot, 0..<workers; a replacement takes the slot of the worker it replaces.
    public var slot: Int
    /// The reload generation it was started in (1 for the first workers).
    public var generation: Int

    init(id: Int, pid: Int32, slot: Int, generation: Int) {
        self.id = id
        self.pid = pid
        self.slot = slot
        self.generation = generation
    }

    public var description: String { "worker \(id) (pid \(pid), generation \(generation))" }
}

/// A lifecycle event of the cluster, named after Node's cluster events.
public enum SupervisorEvent: Sendable, Hashable {
    /// A worker process was started (Node's `fork`).
    case fork(WorkerInfo)
    /// The worker said hello over its channel (Node's `online`).
    case online(WorkerInfo)
    /// The worker serves: the master dispatches to it (Node's `listening`).
    case ready(WorkerInfo)
    /// The master is cut off from the worker: its channel closed, or the master killed it (Node's `disconnect`).
    case disconnect(WorkerInfo)
    /// The worker process exited with `code`, or was killed by `signal` (both nil when its status is unknown: something
    /// else reaped it); `intended` when the master asked for it (a stop, a reload, scaling down) rather than a crash
    /// (Node's `exit` and `exitedAfterDisconnect`).
    case exit(WorkerInfo, code: Int32?, signal: Int32?, intended: Bool)
    /// Application bytes from a worker (Node's `message`).
    case message(WorkerInfo, [UInt8])
    /// Every configured worker is ready and the master listens on `port`.
    case listening(port: Int)
}
