/// What the master knows of the process in one worker slot (0..<n) beyond its lane in the dispatcher (channel,
/// queue) and its lifecycle (phase, pid, timers, restart and reload state) is the
/// ``SupervisorMachine``'s, under the same slot number.
struct WorkerSlot {
    /// A pidfd that becomes readable when the process exits (nil where the kernel has none).
    var processDescriptor: CInt?
    /// What the worker last reported as handled (requests answered by the built-in engine).
    var handled: UInt64 = 0
    /// The build the worker said hello with (``Cluster/build`` of the program it runs); nil before its hello.
    var build: String?
    /// What the master found wrong with the worker (refused, could not be started), for the line that ends a reload.
    var problem: String?
}
