#if canImport(Glibc)
import Glibc
#endif

/// The master's view of one worker slot (0..<n): the process filling it now, its channel and the connections
/// waiting in its queue. Slot numbers are stable; worker ids increase from 1 and are never reused.
struct WorkerSlot {
    enum Phase: Equatable {
        /// No process; a replacement may be due at `respawnAt`.
        case empty
        /// Spawned, not yet ready.
        case starting
        /// Serving; the scheduler may pick it.
        case ready
        /// Told to drain; no new connections.
        case draining
        /// Detached (killed or its channel closed); waiting to be reaped.
        case exiting
    }

    var phase: Phase = .empty
    var id = 0
    var pid: pid_t = 0
    var generation = 0
    /// The master's end of the socketpair: what it sends and receives.
    var channel: DescriptorChannel?
    /// The master's copy of the worker's end (the worker has it at fd 3). Kept open until the worker is reaped, so
    /// the connections queued for the worker stay in the kernel and the master can take back what the worker never
    /// received.
    var kept: DescriptorChannel?
    /// A pidfd that becomes readable when the process exits (nil where the kernel has none).
    var processDescriptor: CInt?
    /// The `connections` frames sent that the worker may not have received.
    var queue: QueuedFrames
    /// Connections picked for this worker during one accept burst, sent together in one message.
    var outbox: [CInt]
    var startedAt: UInt64 = 0
    var respawnAt: UInt64?
    var lastHeartbeat: UInt64 = 0
    /// When a draining worker is killed if it has not exited.
    var drainDeadline: UInt64?
    var watchingWritable = false
    /// The stop or the slot's removal was asked for: its exit is not a crash.
    var exitIntended = false
    /// The master killed this worker (hung, protocol error, missed deadline): its SIGKILL is the master's verdict,
    /// not an outside kill.
    var killedByMaster = false
    /// Removed by scaling down: not refilled.
    var retired = false

    init(bound: Int) {
        queue = QueuedFrames(capacity: bound)
        outbox = []
        outbox.reserveCapacity(Master.acceptBurst)
    }

    var hasProcess: Bool { phase != .empty }
    var isAttached: Bool { phase == .starting || phase == .ready || phase == .draining }
}
