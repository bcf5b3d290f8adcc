/// The master's I/O side of one worker slot (0..<n): the channel to the worker filling it now and the connections
/// waiting in its queue. Its lifecycle (phase, pid, timers, restart and reload state) is the
/// ``SupervisorMachine``'s, under the same slot number.
struct WorkerSlot {
    /// The master's end of the socketpair: what it sends and receives. nil once the worker was killed or reaped.
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
    var watchingWritable = false
    /// When a send that failed for a passing reason (ENOBUFS, ENOMEM, ETOOMANYREFS) may be tried again; until then
    /// the worker is skipped, as one whose channel is full.
    var retryAt: UInt64?
    /// A passing send failure was logged and no send to this worker has succeeded since.
    var backingOff = false
    /// Connections handed to the worker in this slot now.
    var dispatched: UInt64 = 0
    /// What the worker last reported as handled (requests answered by the built-in engine).
    var handled: UInt64 = 0
    /// The build the worker said hello with (``Cluster/build`` of the program it runs); nil before its hello.
    var build: String?
    /// What the master found wrong with the worker (refused, could not be started), for the line that ends a reload.
    var problem: String?

    init(bound: Int) {
        queue = QueuedFrames(capacity: bound)
        outbox = []
        outbox.reserveCapacity(Master.acceptBurst)
    }
}
