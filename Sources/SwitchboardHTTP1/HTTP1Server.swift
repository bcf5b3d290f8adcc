import CSwitchboardLinux
import Logging
import Switchboard

#if canImport(Glibc)
import Glibc
#endif

/// What an epoll event of ``HTTP1Server`` is about.
enum HTTP1Token {
    static let channel: UInt64 = 1
    static let listener: UInt64 = 2
    static let signals: UInt64 = 3
    static let connectionKind: UInt64 = 4
    /// The loop's ``WaitTimer``.
    static let timer: UInt64 = 5
    static func connection(_ fd: CInt) -> UInt64 { UInt64(fd) << 8 | connectionKind }
}

/// The built-in worker's engine: one thread and one epoll set for the channel to the master, the worker's own
/// listener (in `reuseport` and `shared` modes), every connection, each a ``HTTP1Connection`` answered by
/// `Responder`, and the timerfd that ends its waits (``WaitTimer``).
///
/// It receives passed connections on the thread that serves them (no hand-off between threads), reads a new
/// connection at once while new connections usually come with their request (``AdoptRead``), and writes each response
/// with one `send`. The connection machines decide everything about a connection; this loop only performs their
/// reads, writes and closes, sweeps their timers every ``sweepInterval``, and keeps at most
/// ``WorkerRuntime/maxConnections`` open (in the modes where it accepts by itself it stops accepting at the cap; in
/// the passing modes the master sends no more than that).
/// On a drain it stops accepting, lets each machine close what is idle and finish what is in flight, and exits
/// when none is left or at the deadline.
///
/// A noncopyable struct, run by a consuming ``run(announcingReady:)``: the loop's state is a local value there, so
/// the compiler checks exclusive access to it, where a class's stored properties cost a run-time check at each
/// access the optimizer cannot prove safe (issue 23, `BENCHMARKS.md`, twenty-fourth part).
package struct HTTP1Server<Responder: HTTP1Responder>: ~Copyable {
    /// How often connection timers are checked while any connection is open.
    package static var sweepInterval: UInt64 { 100_000_000 }

    let runtime: WorkerRuntime
    let logger: Logger
    let responder: Responder
    let limits: HTTP1Limits
    let maxConnections: Int
    /// The drain deadline when the master is gone or SIGTERM (its parent-death signal) arrives: the master's
    /// drain timeout.
    let fallbackDrain: UInt64
    private var epoll: CInt = -1
    private var signals: CInt = -1
    private var listener: CInt = -1
    private var listenerWatched = false
    /// Whether the channel to the master is in the epoll set: not while a frame waits there that this worker has no
    /// room for (it stays readable).
    private var channelWatched = true
    private var masterGone = false
    /// A connection closed while the channel was not watched: look at the channel again after this round.
    private var roomAgain = false
    /// Accepting paused until then after running out of descriptors.
    private var acceptResumeAt: UInt64 = 0
    /// The connections and the work on them (``HTTP1Connections``).
    private var connections: HTTP1Connections
    /// Connections open.
    private var open: Int { connections.count }
    private var draining = false
    private var drainDeadline: UInt64 = .max
    private var nextHeartbeat: UInt64 = 0
    private var nextSweep: UInt64 = .max
    private var now: UInt64 = 0
    private let heartbeatNanoseconds: UInt64
    /// How long the loop may run without blocking before it yields the CPU (`sched_yield`), in nanoseconds
    /// (``LoopRest``).
    ///
    /// Under a steady keep-alive load a busy worker never blocks: by the time it has answered every connection that
    /// was ready, the client has sent the next requests, so `epoll_wait` returns at once, and the worker runs until
    /// the scheduler preempts it at the end of its slice (about 3 ms here). Every connection of another worker on that
    /// CPU waits that long: the keep-alive p99 was 4.2 ms against the C worker's 0.25 ms, which blocks after nearly
    /// every batch (`Scripts/bench/tail-evidence.py`: 860 slices of 2.9 ms per worker in 5 s against 80,000 of
    /// 30 µs, 140 involuntary switches a second against 12,000 voluntary ones). Yielding after 100 µs of running
    /// lets the other worker's connections in within about one batch; with nothing else runnable the call returns at
    /// once (well under 1 % of the loop). Only a loop that answers kept-alive connections yields: one that only
    /// answers new ones keeps the CPU (``LoopRest``). `SWITCHBOARD_LOOP_YIELD_US` overrides it (0: never yield), for
    /// measuring.
    package static var yieldAfter: UInt64 { 100_000 }
    /// When the loop rests: blocked in `epoll_wait`, or yielded. `SWITCHBOARD_LOOP_YIELDS_BEFORE_WAIT` overrides how
    /// many times at most it yields before a wait where workers share a CPU (``LoopRest/maxYieldsBeforeWaiting``; 1:
    /// once), for measuring.
    private var rest = LoopRest(
        yieldAfter: Syscalls.environment("SWITCHBOARD_LOOP_YIELD_US").flatMap { UInt64($0) }.map { $0 * 1000 }
            ?? HTTP1Server.yieldAfter,
        yieldBeforeWaiting: Syscalls.environment(WorkerRuntime.yieldBeforeWaitingVariable) == "1",
        maxYieldsBeforeWaiting: Syscalls.environment("SWITCHBOARD_LOOP_YIELDS_BEFORE_WAIT").flatMap { Int($0) }
            ?? LoopRest.defaultMaxYieldsBeforeWaiting)
    /// Whether this iteration adopted a connection.
    private var adoptedThisRound = false
    /// Iteration times and events per wait (``LoopStats``), when asked for.
    private var loopStats: LoopStats? = LoopStats.enabled ? LoopStats() : nil
    /// The connections of the frame being received (``receiveFromMaster()``), kept between frames.
    private var inbox: [CInt] = {
        var inbox: [CInt] = []
        inbox.reserveCapacity(WireCodec.maxDescriptors)
        return inbox
    }()

    /// - Parameters:
    ///   - runtime: This worker's channel to the master; its ``WorkerRuntime/limits`` apply to every connection.
    ///   - logger: Where to log.
    ///   - responder: Answers each request.
    package init(runtime: WorkerRuntime, logger: Logger, responder: Responder) {
        self.runtime = runtime
        self.logger = logger
        self.responder = responder
        self.limits = HTTP1Limits(runtime.limits)
        self.maxConnections = runtime.maxConnections
        self.fallbackDrain = UInt64(max(runtime.drainTimeout.nanoseconds, 0))
        self.heartbeatNanoseconds = max(UInt64(max(runtime.heartbeatInterval.nanoseconds, 0)), 1_000_000)
        self.connections = HTTP1Connections(
            logger: logger, connectionsHaveNoDelay: runtime.passedConnectionsHaveNoDelay)
    }

    /// Serves until drained, then exits the process with 0.
    package consuming func run(announcingReady: Bool) -> Never {
        // The waits' deadline, kept armed across them (a timed wait would arm and cancel a kernel timer each time).
        var timer = WaitTimer()
        // A local, not a stored property: the wait's closure captures it, and a closure that captured this generic
        // struct would look its type's metadata up at every wait.
        var events = [sb_epoll_event](repeating: sb_epoll_event(events: 0, data: 0), count: 256)
        do {
            epoll = try Syscalls.epollCreate()
            connections.epoll = epoll
            signals = try Syscalls.signalDescriptor([SIGTERM])
            try Syscalls.epollAdd(epoll, signals, events: sb_EPOLLIN, token: HTTP1Token.signals)
            try Syscalls.epollAdd(epoll, runtime.descriptor, events: sb_EPOLLIN, token: HTTP1Token.channel)
            try timer.watch(in: epoll, token: HTTP1Token.timer)
            try startOwnListener()
        } catch {
            logger.critical("cannot start the worker: \(error)")
            exit(WorkerRuntime.isResourcePressure(error.code) ? WorkerRuntime.resourcePressureExitCode : 1)
        }
        if announcingReady { runtime.announceReady() }
        // Two clock reads per iteration: after the wait and after the work. The end of one iteration is the start
        // of the next wait (nothing runs in between but a yield, which reads the clock itself).
        var waitStart = Syscalls.monotonicNanoseconds()
        while true {
            let count: Int
            var yieldEnded: UInt64? = nil
            do {
                let timeout = timer.timeout(until: nextTimerDeadline(current: waitStart), now: waitStart)
                let epoll = self.epoll
                count = try LoopRest.wait(
                    timeout: timeout, yieldingFirst: rest.yieldsBeforeWaiting(timeout: timeout),
                    yields: rest.yieldBudget,
                    poll: { (timeout) throws(SystemCallError) in
                        try Syscalls.epollWait(epoll, &events, timeoutMilliseconds: timeout)
                    },
                    yield: {
                        Syscalls.yieldProcessor()
                        yieldEnded = Syscalls.monotonicNanoseconds()
                    })
            } catch {
                logger.critical("epoll_wait failed: \(error)")
                exit(1)
            }
            now = Syscalls.monotonicNanoseconds()
            if let yieldEnded {
                // A rest; the wait after it found events at once or blocked.
                let blockedAfter = LoopRest.blocked(waitStart: yieldEnded, woke: now, count: count)
                rest.yielded(at: yieldEnded)
                rest.waitedAfterYielding(blocked: blockedAfter)
                loopStats?.yieldedBeforeWaiting(blockedAfter: blockedAfter)
            }
            for index in 0..<count {
                if events[index].data == HTTP1Token.timer {
                    timer.fired()
                } else {
                    handle(events[index])
                }
            }
            runTimers()
            let end = Syscalls.monotonicNanoseconds()
            let blocked = LoopRest.blocked(waitStart: waitStart, woke: now, count: count)
            loopStats?.record(run: end &- now, waited: now &- waitStart, blocked: blocked, count: count)
            waitStart = end
            if rest.iterationEnded(
                blocked: blocked, woke: now, end: end, adopted: adoptedThisRound,
                answeredKeptAlive: connections.takeAnsweredKeptAlive())
            {
                Syscalls.yieldProcessor()
                loopStats?.yielded()
                waitStart = Syscalls.monotonicNanoseconds()
                rest.yielded(at: waitStart)
            }
            adoptedThisRound = false
            if draining && open == 0 { finish() }
        }
    }

    private mutating func startOwnListener() throws(SystemCallError) {
        let own: CInt?
        do {
            own = try runtime.ownListener()
        } catch {
            logger.critical("\(error.message)")
            exit(1)
        }
        guard let own else { return }
        listener = own
        connections.connectionsHaveNoDelay = Syscalls.noDelay(own)
        try Syscalls.setNonBlocking(listener, true)
        updateListenerInterest()
    }

    // MARK: events

    private mutating func handle(_ event: sb_epoll_event) {
        switch event.data & 0xff {
        case HTTP1Token.connectionKind:
            let fd = CInt(truncatingIfNeeded: event.data >> 8)
            guard connections.contains(fd) else { return }
            if event.events & (sb_EPOLLIN | sb_EPOLLHUP | sb_EPOLLERR) != 0 {
                readable(fd)
            }
            service(fd)
        case HTTP1Token.channel:
            receiveFromMaster()
        case HTTP1Token.listener:
            acceptConnections()
        case HTTP1Token.signals:
            while let signal = Syscalls.readSignal(signals) {
                if signal == SIGTERM { beginDrain(deadline: fallbackDrain) }
            }
        default:
            break
        }
    }

    private mutating func receiveFromMaster() {
        // The handler takes what the frame brings and the loop acts on it afterwards: a closure that captured this
        // generic struct would look its type's metadata up at every frame (about 330 instructions). The inbox is
        // moved out for the call and back after it, so appending never copies it.
        let open = self.open  // the call reads it before it hands the frame's connections over
        var received: [CInt] = []
        swap(&received, &inbox)
        var drain: Duration? = nil
        let present = runtime.receiveFrame(openConnections: { open }) { event in
            switch event {
            case .connections(let descriptors):
                received.append(contentsOf: descriptors)
            case .drain(let deadline):
                if drain == nil { drain = deadline }
            case .message:
                break  // the built-in worker takes no messages
            case .masterGone:
                break
            }
        }
        for fd in received { adopt(fd) }
        received.removeAll(keepingCapacity: true)
        swap(&received, &inbox)
        if let drain { beginDrain(deadline: UInt64(max(drain.nanoseconds, 0))) }
        if !present {
            // Level-triggered: a closed channel stays readable, so stop watching it.
            masterGone = true
            watchChannel(false)
            beginDrain(deadline: fallbackDrain)
        } else {
            // A frame this worker has no room for stays queued (the master takes it back if room does not come
            // soon); the channel stays readable meanwhile, so stop watching it until a connection closes.
            watchChannel(!runtime.isWaitingForRoom)
        }
    }

    private mutating func watchChannel(_ on: Bool) {
        guard on != channelWatched else { return }
        if on {
            channelWatched =
                (try? Syscalls.epollAdd(epoll, runtime.descriptor, events: sb_EPOLLIN, token: HTTP1Token.channel)) != nil
        } else {
            Syscalls.epollRemove(epoll, runtime.descriptor)
            channelWatched = false
        }
    }

    private mutating func acceptConnections() {
        for _ in 0..<64 {
            guard listener >= 0, open < maxConnections else { break }
            do {
                guard case .done(let fd) = try Syscalls.accept(listener) else { break }
                adopt(fd)
            } catch {
                if WorkerRuntime.isResourcePressure(error.code) {
                    // The backlog holds the connections meanwhile; epoll would report the listener again at once.
                    logger.warning("accept failed: \(error.reason); pausing accepts for 100 ms")
                    acceptResumeAt = now &+ 100_000_000
                } else {
                    logger.warning("accept failed: \(error)")
                }
                break
            }
        }
        updateListenerInterest()
    }

    /// Watches the own listener only while this worker takes connections: not at its cap, not paused, not draining.
    private mutating func updateListenerInterest() {
        guard listener >= 0 else { return }
        let wanted = !draining && open < maxConnections && now >= acceptResumeAt
        guard wanted != listenerWatched else { return }
        if wanted {
            listenerWatched = (try? Syscalls.epollAdd(epoll, listener, events: sb_EPOLLIN, token: HTTP1Token.listener)) != nil
        } else {
            Syscalls.epollRemove(epoll, listener)
            listenerWatched = false
        }
    }

    /// Takes a connection (passed or accepted; this worker owns the descriptor) and answers what it already sent.
    /// It joins the epoll set only if it has to wait (``HTTP1Connections/service(_:now:responder:)``): from a
    /// deferring listener the request is there, and the whole connection is read, answered and closed without two
    /// `epoll_ctl` calls; from one that does not defer it usually is not, and the connection waits in the epoll set
    /// without a read that would find nothing (``AdoptRead``).
    private mutating func adopt(_ fd: CInt) {
        if now == 0 { now = Syscalls.monotonicNanoseconds() }
        let now = self.now
        var machine = HTTP1Connection(limits: limits, now: now)
        if draining { machine.drain(now: now) }
        switch connections.adopt(fd, machine, now: now, responder: responder) {
        case .keep:
            break
        case .close:
            closeConnection(fd)
        case nil:
            logger.warning("a passed descriptor is not a connected stream socket; closed it")
            return
        }
        adoptedThisRound = true
        if nextSweep == .max { nextSweep = now &+ Self.sweepInterval }
    }

    // MARK: reading and writing

    /// Reads what the machine wants read, answering as it goes.
    private mutating func readable(_ fd: CInt) {
        if connections.readable(fd, now: now, responder: responder) == .close { closeConnection(fd) }
    }

    /// After anything happened to `fd`: write what is queued, close it when its machine is done, and watch what
    /// the machine wants next.
    private mutating func service(_ fd: CInt) {
        if connections.service(fd, now: now, responder: responder) == .close { closeConnection(fd) }
    }

    private mutating func closeConnection(_ fd: CInt) {
        guard let open = connections.close(fd) else { return }
        if !channelWatched && !masterGone { roomAgain = true }
        if open == maxConnections - 1 {
            // Room again: tell the master now rather than at the next heartbeat, and accept again.
            runtime.heartbeat(open: open, handled: connections.answered)
            updateListenerInterest()
        }
    }

    // MARK: timers and draining

    /// Exits after a drain, with the loop's figures first when they were asked for.
    private func finish() -> Never {
        if let loopStats { logger.notice("\(loopStats.line)") }
        exit(0)
    }

    /// When the next timer is due (monotonic nanoseconds; `current` or earlier: at once).
    private func nextTimerDeadline(current: UInt64) -> UInt64 {
        if roomAgain { return current }
        var next = min(nextHeartbeat, open > 0 ? nextSweep : .max)
        if draining { next = min(next, drainDeadline) }
        if listener >= 0 && !listenerWatched && acceptResumeAt > 0 { next = min(next, acceptResumeAt) }
        return next
    }

    private mutating func runTimers() {
        if roomAgain {
            roomAgain = false
            receiveFromMaster()
        }
        if now >= nextHeartbeat {
            runtime.heartbeat(open: open, handled: connections.answered)
            nextHeartbeat = now &+ heartbeatNanoseconds
        }
        if now >= nextSweep {
            nextSweep = open > 0 ? now &+ Self.sweepInterval : .max
            for fd in 0..<connections.end where connections.tick(fd, now: now, responder: responder) {
                service(fd)
            }
        }
        if acceptResumeAt > 0 && now >= acceptResumeAt {
            acceptResumeAt = 0
            updateListenerInterest()
        }
        if draining && now >= drainDeadline {
            if open > 0 { logger.notice("drain deadline passed with \(open) connections open; exiting") }
            finish()
        }
    }

    /// Stops accepting, closes idle keep-alive connections and lets the others finish their response.
    private mutating func beginDrain(deadline nanoseconds: UInt64) {
        guard !draining else { return }
        draining = true
        drainDeadline = Syscalls.monotonicNanoseconds() &+ nanoseconds
        if listener >= 0 {
            updateListenerInterest()
            // A reuseport listener that closes resets the connections still in its accept queue unless
            // net.ipv4.tcp_migrate_req=1 moves them to the other workers' listeners.
            Syscalls.close(listener)
            listener = -1
        }
        logger.info("draining", metadata: ["connections.open": "\(open)"])
        let now = Syscalls.monotonicNanoseconds()
        if nextSweep == .max && open > 0 { nextSweep = now &+ Self.sweepInterval }
        for fd in 0..<connections.end where connections.drain(fd, now: now) {
            service(fd)
        }
    }
}
