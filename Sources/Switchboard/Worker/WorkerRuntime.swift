import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The worker side of the channel to the master (fd 3): hello, ready, connections, heartbeats, drain.
///
/// A worker process calls ``current(logger:)``; when it returns a runtime, the process was started by a Switchboard master.
/// Call ``run(openConnections:_:)`` on a thread of its own: it blocks, receiving connections in batches and handing
/// each batch on. A connection received is the worker's alone: the master closed its copy when it sent it.
public final class WorkerRuntime: @unchecked Sendable {
    // @unchecked: `channel` is only received from on the thread inside run(); sends are single sendmsg calls, which
    // the kernel keeps whole, so any thread may send. The other stored properties are immutable.

    /// Something the master asked of this worker.
    public enum Event: Sendable {
        /// Connections to serve: the worker owns these descriptors (non-blocking, close-on-exec).
        case connections([CInt])
        /// Stop taking work, finish in-flight requests, exit within the deadline.
        case drain(deadline: Duration)
        /// Application bytes from the master.
        case message([UInt8])
        /// The master is gone (its end of the channel closed): drain and exit.
        case masterGone
    }

    /// This worker's id (1, 2, …; never reused while the master runs).
    public let id: Int
    /// The slot (0..<workers) this worker fills.
    public let slot: Int
    /// The master's pid.
    public let masterPID: pid_t
    /// How connections reach this worker: passed by the master, or accepted by the worker itself.
    public let mode: DispatchMode
    /// The address to bind in ``DispatchMode/reusePort`` mode (empty: every interface).
    public let listenHost: String
    /// The port the master bound (the real one, also for port 0).
    public let listenPort: Int
    /// The `listen()` backlog for a worker's own listener.
    public let backlog: Int
    /// `TCP_DEFER_ACCEPT` for a worker's own listener, in seconds; 0: off (``Configuration/deferAcceptSeconds``).
    public let deferAcceptSeconds: Int
    /// How often the master expects a heartbeat.
    public let heartbeatInterval: Duration
    /// The master's drain timeout: the deadline of a drain this worker starts by itself (the master is gone, or its
    /// parent-death SIGTERM arrived, or the program shuts down). A drain the master asks for carries its own.
    public let drainTimeout: Duration
    /// The event loop threads this worker should run (`--worker-threads`, ``Configuration/workerThreads``): build
    /// the worker's `EventLoopGroup` with this many. SwiftNIO's singleton group is sized to it already.
    public let threads: Int
    /// What this worker allows each client connection, as the master's ``Configuration/limits`` says.
    public let limits: ConnectionLimits
    /// The most connections this worker may hold at once (``ConnectionLimits/maxConnections``, or what its
    /// descriptor limit allows). The master sends no more than this; a worker that accepts by itself
    /// (``DispatchMode/reusePort``, ``DispatchMode/shared``) stops accepting at it.
    public let maxConnections: Int
    let channel: DescriptorChannel
    let logger: Logger

    /// The exit code of a worker that gives up for lack of descriptors or memory (`EX_TEMPFAIL`): the master
    /// restarts it with backoff but never counts it toward the crash-loop halt.
    public static let resourcePressureExitCode: Int32 = 75

    /// Whether a failure with `code` (an `errno` value) means the system or process is out of a resource (EMFILE,
    /// ENFILE, ENOBUFS, ENOMEM) rather than broken.
    public static func isResourcePressure(_ code: Int32) -> Bool {
        code == EMFILE || code == ENFILE || code == ENOBUFS || code == ENOMEM
    }

    /// The descriptor number the master puts the channel at.
    public static let channelDescriptor: CInt = 3
    /// The channel's descriptor in this process: watch it for readability and call
    /// ``receiveAvailable(openConnections:_:)``.
    public var descriptor: CInt { channel.fd }
    /// The descriptor number of the inherited listener in shared mode.
    public static let sharedListenerDescriptor: CInt = 4

    /// What tells the built-in engine's loop to yield before a wait that would block (`1`) or not (`0`): the master
    /// sets it to `1` for each worker it starts while the workers outnumber the CPUs the master may run on (they
    /// take turns on a CPU), unless its own environment or ``Configuration/workerEnvironment`` already sets it. Each
    /// worker gets it as of its start: after `switchboard scale` takes the worker count past the CPU count (or back),
    /// the workers started since have the new value, and all of them after the next reload.
    package static let yieldBeforeWaitingVariable = "SWITCHBOARD_YIELD_BEFORE_WAIT"

    /// What makes the built-in engine's loop (``LoopStats`` in SwitchboardHTTP1) and the master's loop each log one
    /// line of their figures at exit (wake-ups, yields, how long iterations ran): set, with any value, for measuring.
    package static let loopStatsVariable = "SWITCHBOARD_LOOP_STATS"

    /// What tells a worker that the connections the master passes it (or that it accepts on the shared listener)
    /// come with `TCP_NODELAY` set (`1`) or not (`0`): the master sets it on its listener, and Linux copies it to every
    /// connection accepted there (``passedConnectionsHaveNoDelay``).
    package static let listenerNoDelayVariable = "SWITCHBOARD_LISTENER_NODELAY"

    /// Whether the connections the master passes this worker, or that it accepts on the shared listener, come with
    /// `TCP_NODELAY` set: the master's listener has it, so the built-in engine need not set it on each one (a system
    /// call a connection). A listener this worker binds itself (``ownListener()``) has it too.
    package let passedConnectionsHaveNoDelay: Bool

    /// Whether this process was started by a Switchboard master as a worker.
    public static var isWorker: Bool { Syscalls.environment("SWITCHBOARD_WORKER_ID") != nil }

    /// The runtime of this worker process, or nil when this process is not a worker.
    ///
    /// Sets the parent-death signal to SIGTERM and exits at once if the master is already gone.
    /// - Parameter logger: Where to log.
    /// - Returns: The runtime, or nil when `SWITCHBOARD_WORKER_ID` is not set.
    public static func current(logger: Logger = Logger(label: "switchboard.worker")) -> WorkerRuntime? {
        guard let idText = Syscalls.environment("SWITCHBOARD_WORKER_ID"), let id = Int(idText) else { return nil }
        let slot = Syscalls.environment("SWITCHBOARD_WORKER_SLOT").flatMap { Int($0) } ?? 0
        let master = Syscalls.environment("SWITCHBOARD_MASTER_PID").flatMap { pid_t($0) } ?? getppid()
        try? Syscalls.setParentDeathSignal(SIGTERM)
        if getppid() != master {
            // The master died before the death signal was armed.
            exit(0)
        }
        // SIGINT, SIGQUIT and SIGHUP belong to the master (a terminal's Ctrl-C reaches the whole process group): the
        // master spawned this worker with them blocked, so none was lost or fatal before this line.
        Syscalls.ignoreMasterSignals()
        let descriptorLimit = Syscalls.raiseDescriptorLimit().soft
        return WorkerRuntime(
            id: id, slot: slot, masterPID: master, channel: DescriptorChannel(fd: channelDescriptor), logger: logger,
            mode: Syscalls.environment("SWITCHBOARD_MODE").flatMap { DispatchMode(name: $0) } ?? .roundRobin,
            listenHost: Syscalls.environment("SWITCHBOARD_HOST") ?? "",
            listenPort: Syscalls.environment("SWITCHBOARD_PORT").flatMap { Int($0) } ?? 0,
            backlog: Syscalls.environment("SWITCHBOARD_BACKLOG").flatMap { Int($0) } ?? 511,
            deferAcceptSeconds: Syscalls.environment("SWITCHBOARD_DEFER_ACCEPT").flatMap { Int($0) } ?? 0,
            heartbeatInterval: .milliseconds(
                Syscalls.environment("SWITCHBOARD_HEARTBEAT_MS").flatMap { Int64($0) } ?? 1000),
            limits: ConnectionLimits.fromEnvironment(), descriptorLimit: descriptorLimit,
            drainTimeout: .milliseconds(Syscalls.environment("SWITCHBOARD_DRAIN_MS").flatMap { Int64($0) } ?? 30_000),
            threads: Syscalls.environment("SWITCHBOARD_WORKER_THREADS").flatMap { Int($0) }.map { max($0, 1) } ?? 1,
            passedConnectionsHaveNoDelay: Syscalls.environment(listenerNoDelayVariable) == "1")
    }

    package init(
        id: Int, slot: Int, masterPID: pid_t, channel: DescriptorChannel, logger: Logger, mode: DispatchMode = .roundRobin,
        listenHost: String = "", listenPort: Int = 0, backlog: Int = 511, deferAcceptSeconds: Int = 0,
        heartbeatInterval: Duration = .seconds(1),
        limits: ConnectionLimits = .init(), descriptorLimit: UInt64 = .max, drainTimeout: Duration = .seconds(30),
        threads: Int = 1, passedConnectionsHaveNoDelay: Bool = false
    ) {
        self.passedConnectionsHaveNoDelay = passedConnectionsHaveNoDelay
        self.drainTimeout = drainTimeout
        self.threads = threads
        self.heartbeatInterval = heartbeatInterval
        self.limits = limits
        self.maxConnections = limits.effectiveMaxConnections(descriptorLimit: descriptorLimit)
        self.id = id
        self.slot = slot
        self.masterPID = masterPID
        self.mode = mode
        self.listenHost = listenHost
        self.listenPort = listenPort
        self.backlog = backlog
        self.deferAcceptSeconds = deferAcceptSeconds
        self.channel = channel
        self.logger = logger
        _ = try? channel.send(.hello(pid: getpid(), build: Cluster.build), blocking: true)
    }

    /// The listener this worker accepts on by itself, or nil when the master passes it connections: in
    /// ``DispatchMode/shared`` mode the one inherited at ``sharedListenerDescriptor``, in ``DispatchMode/reusePort``
    /// mode a new `SO_REUSEPORT` listener on the master's port (on ``listenHost``; dual-stack `::` with an IPv4
    /// fallback when that is empty, as the master binds). The worker owns it.
    /// - Throws: ``SwitchboardError`` when the reuseport listener cannot be bound.
    public func ownListener() throws(SwitchboardError) -> CInt? {
        try mode.strategy.workerListener(
            host: listenHost, port: listenPort, backlog: backlog, deferAcceptSeconds: deferAcceptSeconds)
    }

    /// Tells the master this worker serves; the master dispatches to it from now on.
    public func announceReady() {
        _ = try? channel.send(.ready, blocking: true)
    }

    /// Tells the master this worker is alive. Call it from the worker's event loop, so a stuck loop stops the
    /// heartbeats and the master replaces the worker.
    /// - Parameters:
    ///   - open: Open connections now.
    ///   - handled: Connections handled in total.
    public func heartbeat(open: Int, handled: UInt64) {
        _ = try? channel.send(.heartbeat(open: UInt32(clamping: open), handled: handled))
    }

    /// Sends application bytes to the master.
    /// - Parameter bytes: At most 64 KiB.
    /// - Throws: ``SwitchboardError`` when the payload is too large or the channel failed.
    public func send(message bytes: [UInt8]) throws(SwitchboardError) {
        guard bytes.count <= WireCodec.maxPayload else {
            throw SwitchboardError(.usage, "message of \(bytes.count) bytes is over the \(WireCodec.maxPayload)-byte limit")
        }
        do {
            _ = try channel.send(.message(bytes), blocking: true)
        } catch {
            throw SwitchboardError(.system, "cannot send to the master: \(error)")
        }
    }

    /// The channel itself, for in-process tests that stand in for the master.
    package var channelForTests: DescriptorChannel { channel }

    /// Whether `fd` is a stream socket (what a passed connection must be).
    public static func isStreamSocket(_ fd: CInt) -> Bool {
        Syscalls.isStreamSocket(fd)
    }

    /// Closes a descriptor this worker owns and will not use.
    public static func closeDescriptor(_ fd: CInt) {
        Syscalls.close(fd)
    }

    /// Sends raw bytes as one frame (blocking). Only for tests of the master's protocol checks.
    /// - Returns: false once the channel failed (the master cut it).
    @discardableResult
    package func sendRawFrame(_ frame: [UInt8]) -> Bool {
        (try? channel.sendRaw(frame)) != nil
    }

    /// Receives from the master until it is gone, calling `handler` for each event. Blocks the calling thread.
    ///
    /// A connection received is this worker's: the master closed its copy when it sent it. A connection that was
    /// sent but not received yet still waits in this worker's queue, where the master may take it back (this worker
    /// stopped receiving for ``Configuration/stealAfter``, or exited). The runtime never receives more connections
    /// than ``maxConnections`` leaves room for: a frame that would not fit waits in the queue.
    /// - Parameters:
    ///   - openConnections: Reports the connections this worker holds open.
    ///   - handler: Called on this thread for every event; after ``Event/masterGone`` `run` returns.
    public func run(openConnections: () -> Int, _ handler: (Event) -> Void) {
        var receiver = Receiver()
        while true {
            switch receiver.receive(from: self, blocking: true, openConnections: openConnections, handler) {
            case .gone: return
            case .received: continue
            case .waitingForRoom: Syscalls.sleep(milliseconds: 10)  // until a connection closes
            }
        }
    }

    /// For a worker with an event loop of its own: receives whatever the master has sent, without blocking, and
    /// calls `handler` for each event, as ``run(openConnections:_:)`` does. Call it when the channel is
    /// readable (``descriptor``; watch it level-triggered). Do not call it from `handler`.
    ///
    /// When the next frame brings more connections than ``maxConnections`` leaves room for, it stays queued and
    /// ``isWaitingForRoom`` turns true: stop watching ``descriptor`` (it stays readable) and call this again once a
    /// connection closed.
    /// - Returns: false once the master is gone (after `handler` saw ``Event/masterGone``).
    public func receiveAvailable(openConnections: () -> Int, _ handler: (Event) -> Void) -> Bool {
        receiveAvailable(oneFrame: false, openConnections: openConnections, handler)
    }

    /// ``receiveAvailable(openConnections:_:)``, but at most one frame: for a loop that watches the channel
    /// level-triggered and waits again anyway, where epoll reports a frame still queued at once. Reading on until the
    /// queue is empty costs a `recvmsg` that finds nothing after nearly every frame (0.66 a connection under the
    /// benchmark's close load, about 0.4 µs each here), which the built-in engine saves (issue 23).
    package func receiveFrame(openConnections: () -> Int, _ handler: (Event) -> Void) -> Bool {
        receiveAvailable(oneFrame: true, openConnections: openConnections, handler)
    }

    private func receiveAvailable(oneFrame: Bool, openConnections: () -> Int, _ handler: (Event) -> Void) -> Bool {
        receiver.withLock { receiver in
            let outcome = receiver.receive(
                from: self, blocking: false, oneFrame: oneFrame, openConnections: openConnections, handler)
            receiver.waitingForRoom = outcome == .waitingForRoom
            return outcome != .gone
        }
    }

    /// Whether the last ``receiveAvailable(openConnections:_:)`` left a frame queued for lack of room.
    public var isWaitingForRoom: Bool {
        receiver.withLock { $0.waitingForRoom }
    }

    private let receiver = Mutex(Receiver())

    /// Receive buffers, kept between calls so receiving allocates nothing.
    struct Receiver: ~Copyable {
        enum Outcome: Equatable {
            case received
            case waitingForRoom
            case gone
        }

        var buffer = [UInt8](repeating: 0, count: WireCodec.maxFrame)
        var descriptors = [CInt](repeating: -1, count: WireCodec.maxDescriptors)
        var header = [UInt8](repeating: 0, count: WireCodec.connectionsFrameSize)
        var batch: [CInt] = []
        var later: [Event] = []
        var waitingForRoom = false
        /// Connections the kernel closed because this process had no descriptor left for them.
        var lost = 0

        init() {
            batch.reserveCapacity(256)
        }

        /// Receives every message that is waiting (blocking for the first one if asked), or only the first one
        /// (`oneFrame`), while the connections fit, acknowledges a frame that asked for it, then hands the events on.
        mutating func receive(
            from runtime: WorkerRuntime, blocking: Bool, oneFrame: Bool = false, openConnections: () -> Int,
            _ handler: (Event) -> Void
        ) -> Outcome {
            var blocking = blocking
            var outcome = Outcome.received
            var report: UInt64?
            receiving: while batch.count < 256 {
                let room = runtime.maxConnections - openConnections() - batch.count
                if room < WireCodec.maxDescriptors, let waiting = nextConnectionCount(runtime), waiting > room {
                    // Received, they would not fit: leave the frame in the kernel's queue, from where the master
                    // serves it elsewhere if this worker has no room soon enough.
                    outcome = .waitingForRoom
                    break receiving
                }
                if room < WireCodec.maxDescriptors && blocking {
                    // A blocking receive could take a frame too large for the room left: look first, each time.
                    blocking = false
                    if case .wouldBlock? = try? runtime.channel.peek(into: &header) {
                        outcome = .waitingForRoom
                        break receiving
                    }
                }
                let result: NonBlocking<(bytes: Int, fds: Int, truncated: Bool)>
                do {
                    result = try runtime.channel.receive(into: &buffer, fds: &descriptors, blocking: blocking)
                } catch {
                    runtime.logger.error("channel to the master failed: \(error)")
                    outcome = .gone
                    break receiving
                }
                guard case .done(let received) = result else { break receiving }
                blocking = false
                if received.bytes == 0 && received.fds == 0 && !received.truncated {
                    outcome = .gone
                    break receiving
                }
                let message: WireMessage
                do {
                    message = try WireCodec.decode(
                        buffer[0..<received.bytes], descriptorCount: received.fds,
                        descriptorsDropped: received.truncated)
                } catch {
                    for index in 0..<received.fds { Syscalls.close(descriptors[index]) }
                    runtime.logger.error("malformed frame from the master: \(error)")
                    outcome = .gone
                    break receiving
                }
                switch message {
                case .connections(let first, let count, let reportReceipt):
                    batch.append(contentsOf: descriptors[0..<received.fds])
                    if reportReceipt { report = first &+ UInt64(count) &- 1 }
                    if received.fds < count {
                        lost &+= count - received.fds
                        runtime.logger.error(
                            "out of descriptors: the kernel closed \(count - received.fds) connections passed to this worker (\(lost) so far)"
                        )
                    }
                case .drain(let milliseconds):
                    later.append(.drain(deadline: .milliseconds(Int64(milliseconds))))
                case .message(let bytes):
                    later.append(.message(bytes))
                case .hello, .ready, .ack, .heartbeat:
                    runtime.logger.warning("ignoring a worker-only message from the master")
                }
                if oneFrame { break receiving }
            }
            if let report {
                let open = openConnections() + batch.count
                _ = try? runtime.channel.send(.ack(sequence: report, open: UInt32(clamping: open)), blocking: true)
            }
            if !batch.isEmpty {
                handler(.connections(batch))
                batch.removeAll(keepingCapacity: true)
            }
            for event in later { handler(event) }
            later.removeAll(keepingCapacity: true)
            if outcome == .gone { handler(.masterGone) }
            return outcome
        }

        /// The connection count of the next frame waiting, without receiving it; nil when the next frame carries
        /// no connections or nothing waits.
        private mutating func nextConnectionCount(_ runtime: WorkerRuntime) -> Int? {
            guard case .done(let bytes)? = try? runtime.channel.peek(into: &header) else { return nil }
            return WireCodec.connectionCount(peeked: header, bytes: bytes)
        }
    }
}
