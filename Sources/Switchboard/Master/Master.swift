import CSwitchboardLinux
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The master process: binds, accepts, passes connections to workers and supervises them, on one thread.
///
/// Everything runs on the calling thread around one epoll set: the listener, the eventfd its signal handlers write to,
/// one channel per worker, and the timerfd that ends its waits (``WaitTimer``). Policies (scheduling, restart
/// backoff) are plain values; this class performs their actions.
package final class Master {
    /// The low byte of each epoll token says whose descriptor it is; the master routes the event to that owner.
    enum Token {
        static let listener: UInt64 = 1
        static let signals: UInt64 = 2
        static let worker: UInt64 = 3

        static let process: UInt64 = 4
        static let control: UInt64 = 5
        /// ``HealthServer``'s listeners and probes.
        static let health: UInt64 = 6
        /// ``ControlServer``'s socket and clients.
        static let controlServer: UInt64 = 7
        /// The loop's ``WaitTimer``.
        static let timer: UInt64 = 8

        static func worker(slot: Int, id: Int) -> UInt64 {
            UInt64(id) << 32 | UInt64(slot) << 8 | worker
        }

        static func process(slot: Int, id: Int) -> UInt64 {
            UInt64(id) << 32 | UInt64(slot) << 8 | process
        }
    }

    let configuration: Configuration
    /// What the dispatch mode does on the master's side.
    let strategy: any DispatchStrategy
    /// Whether the master accepts and passes connections (the strategy's answer, read on the hot path).
    let passesDescriptors: Bool
    var logger: Logger
    private let epollSet: Descriptor
    /// The eventfd the master's signal handlers write to, if it handles signals (not when the embedding program does).
    private let signalWake: Descriptor
    /// Whether this master installed the process's signal handlers (and puts the previous ones back in deinit).
    private(set) var ownsSignalHandlers = false
    var epoll: CInt { epollSet.raw }
    /// The eventfd that becomes readable when a signal arrived, or -1 when the embedding program handles signals.
    var signals: CInt { signalWake.raw }
    /// Commands from other threads (``Supervisor``'s methods) and the eventfd that wakes the loop for them.
    package let control: MasterControl
    /// Where lifecycle events go (``Supervisor/events``).
    package var eventSink: (@Sendable (SupervisorEvent) -> Void)?
    /// The listener, `pending` and one lane per worker: every accepted connection until a worker receives it.
    var dispatcher: ConnectionDispatcher
    /// The listening socket (owned by the dispatcher; -1 after the stop).
    var listener: CInt { dispatcher.listener }
    package internal(set) var port = 0
    /// Every lifecycle decision: workers' phases, timers, restarts, reloads, scaling, the stop.
    var machine: SupervisorMachine
    /// Each worker's recycling limits and memory samples (`--max-requests`, `--max-worker-memory`, `--max-lifetime`).
    var recycler: WorkerRecycler
    /// The CPUs this master may use, found at start.
    let cpuBudget: CPUBudget
    /// Children that were not workers, reaped (``Configuration/reapsOrphans``).
    var orphansReaped: UInt64 = 0
    /// Events for the machine, handled one at a time (``submit(_:)``).
    var machineEvents: [SupervisorMachine.Event] = []
    /// The process of each slot the machine names: spawned, signalled and reaped there, with its pidfd.
    let processes: WorkerProcesses
    /// Reads the workers' channels a frame at a time.
    var channelReader = WorkerChannelReader()
    /// The descriptor limits in effect (the soft one raised to the hard one at start).
    let descriptorLimit: (soft: UInt64, hard: UInt64)
    /// What systemd is told: readiness, status, the watchdog, the fd store.
    let systemd: SystemdNotifier
    /// `--health`, `--agent` and `--metrics`: what load balancers and scrapers ask.
    let health: HealthServer
    /// The figures `--metrics` shows in the Prometheus text format, and the counters the machine reports.
    let metrics: MasterMetrics
    /// `--control-socket`: `switchboard status`, `reload`, `scale`, `stop`.
    let controlServer: ControlServer
    /// When the master started (monotonic nanoseconds).
    var startedAt = Syscalls.monotonicNanoseconds()
    /// The upgrade in place: its pre-check, its count and the last one's outcome (``MasterUpgrade``).
    var upgrade = MasterUpgrade()
    /// What the master did to its thread's scheduling policy (``Configuration/masterScheduling``).
    var scheduling = MasterSchedulingState()
    /// Set while the first workers start: a worker that cannot be started then fails ``run(inheritedListener:)``.
    var starting = false
    var startupError: SwitchboardError?
    /// Called once, when every configured worker is ready, with the bound port.
    package var onListening: (_ host: String, _ port: Int) -> Void = { _, _ in }

    /// The signals the master handles, in the order it takes them after a wake-up (ascending, as a signalfd would).
    static let handledSignals: [CInt] = [SIGHUP, SIGINT, SIGQUIT, SIGUSR2, SIGTERM, SIGCHLD, SIGTTIN, SIGTTOU]

    /// Creates the master.
    ///
    /// With `handleSignals` it installs process-wide handlers for ``handledSignals`` (until deinit, which puts the
    /// previous ones back): a handler counts its signal and writes to an eventfd that wakes the loop, as libuv's do,
    /// so a signal is taken whichever thread the kernel delivers it to and the program may run threads of its own,
    /// started before or after. A SIGCHLD the process inherited ignored is reset to its default either way: ignored,
    /// the kernel would reap the workers before the master could.
    /// - Throws: ``SwitchboardError`` when the configuration is invalid, a descriptor cannot be created, or another
    ///   master in this process handles signals.
    package init(configuration: Configuration, logger: Logger, handleSignals: Bool = true) throws(SwitchboardError) {
        try configuration.validate()
        self.configuration = configuration
        self.strategy = configuration.mode.strategy
        self.passesDescriptors = strategy.passesDescriptors
        self.logger = logger
        // Raised to the hard limit (workers inherit it) before the per-worker cap is derived from it.
        self.descriptorLimit = Syscalls.raiseDescriptorLimit()
        self.machine = SupervisorMachine(settings: SupervisorMachine.Settings(configuration))
        self.recycler = WorkerRecycler(
            policy: RecyclePolicy(
                maxRequests: configuration.maxRequests, maxMemory: configuration.maxWorkerMemory,
                maxLifetime: UInt64(configuration.maxLifetime.nanoseconds),
                minUptime: UInt64(configuration.restart.healthyUptime.nanoseconds)))
        self.cpuBudget = configuration.cpuBudget ?? CPUBudget.current()
        self.metrics = MasterMetrics(version: Cluster.build, mode: configuration.mode.name, cpus: cpuBudget)
        let workerIdentity = try WorkerProcesses.resolveIdentity(configuration)
        let workerCPUs = try WorkerProcesses.resolveCPUs(configuration)
        do {
            self.signalWake = Descriptor(handleSignals ? try Syscalls.eventDescriptor() : -1)
            self.epollSet = Descriptor(try Syscalls.epollCreate())
            self.control = try MasterControl()
        } catch {
            throw SwitchboardError(.system, "cannot set up the event loop: \(error)")
        }
        self.dispatcher = ConnectionDispatcher(
            settings: ConnectionDispatcher.Settings(
                policy: strategy.scheduling ?? .roundRobin,
                bound: configuration.maxQueued,
                capacity: configuration.limits.effectiveMaxConnections(descriptorLimit: descriptorLimit.soft),
                descriptorLimit: Int(clamping: descriptorLimit.soft),
                stealAfter: configuration.stealAfter > .zero ? UInt64(configuration.stealAfter.nanoseconds) : nil,
                passesDescriptors: passesDescriptors),
            epoll: epollSet.raw, listenerToken: Token.listener, logger: logger)
        var workerEnvironment = WorkerProcesses.baseEnvironment()
        workerEnvironment += configuration.threadEnvironment(inherited: workerEnvironment)
        self.processes = WorkerProcesses(
            configuration: configuration, baseEnvironment: workerEnvironment, identity: workerIdentity,
            cpus: workerCPUs, epoll: epollSet.raw, token: { Token.process(slot: $0, id: $1) })
        self.health = HealthServer(epoll: epollSet.raw, token: Token.health, logger: logger)
        self.controlServer = ControlServer(epoll: epollSet.raw, token: Token.controlServer, logger: logger)
        self.systemd = SystemdNotifier(configuration: configuration, logger: logger)
        if Syscalls.resetIgnoredChildSignal() {
            self.logger.info("SIGCHLD was ignored (inherited): reset to its default so that workers can be reaped")
        }
        if handleSignals {
            do {
                try Syscalls.installSignalHandlers(Self.handledSignals, wake: signalWake.raw)
            } catch {
                guard error.code == EBUSY else {
                    throw SwitchboardError(.system, "cannot install the signal handlers: \(error)")
                }
                throw SwitchboardError(
                    .usage, "another Supervisor in this process handles signals: pass handleSignals: false to this one")
            }
            ownsSignalHandlers = true
        }
        signal(SIGPIPE, SIG_IGN)
    }

    deinit {
        // Before the wake eventfd closes: no handler writes to it once the previous dispositions are back.
        if ownsSignalHandlers { Syscalls.restoreSignalHandlers() }
        // The epoll set and the eventfds close themselves (``Descriptor``), the listener with the dispatcher, the
        // servers' descriptors with their servers.
    }

    /// Binds the listener (or takes `inherited`), starts the workers and runs until stopped.
    /// - Returns: The process exit code: 0 after a graceful stop.
    /// - Throws: ``SwitchboardError`` when the port cannot be bound or workers cannot be started.
    package func run(inheritedListener: CInt? = nil) throws(SwitchboardError) -> Int32 {
        // The thread may be an embedding program's (a pool's): it gets back the policy it came with.
        defer { scheduling.restore() }
        // The pre-check of an upgrade: the configuration parsed and validated, this build answers and exits.
        if Syscalls.environment(Handover.checkVariable) != nil { answerUpgradeCheck() }
        // Execed by an upgrade: the same process, its workers and listeners handed over.
        if let inherited = Handover.inherited() { return adopt(inherited) }
        systemd.start()
        var inherited = inheritedListener
        if inherited == nil, let passed = systemd.takeListener() {
            if !strategy.usesInheritedListener {
                logger.warning("\(configuration.mode) mode binds its own listeners: closing the listener systemd passed")
                Syscalls.close(passed.fd)
            } else {
                inherited = passed.fd
            }
        }
        try bindListener(inherited: inherited)
        try deferAccepts()
        try health.bind(configuration)
        if let path = configuration.controlSocket { try controlServer.bind(path: path) }
        if let note = configuration.workerCountNote { logger.info("\(note)") }
        if configuration.reapsOrphans {
            do {
                try Syscalls.becomeChildSubreaper()
            } catch {
                logger.notice("cannot become a child subreaper (\(error.reason)): orphans of workers go to PID 1")
            }
        }
        func describe(_ limit: UInt64) -> String { limit == .max ? "unlimited" : "\(limit)" }
        let queueBound = dispatcher.queueBound(workers: configuration.workers)
        logger.info(
            "descriptor limit \(describe(descriptorLimit.soft))",
            metadata: [
                "limit.hard": "\(describe(descriptorLimit.hard))",
                "worker.max-connections": "\(dispatcher.settings.capacity)",
                "worker.max-queued": "\(queueBound)",
            ])
        if passesDescriptors && queueBound < configuration.maxQueued {
            logger.notice(
                "each worker's queue holds at most \(queueBound) connections, not --max-queued \(configuration.maxQueued): the kernel lets this user have \(describe(descriptorLimit.soft)) descriptors in flight (the descriptor limit), shared among \(configuration.workers) workers")
        }
        if configuration.workerExecutable == LaunchPath.fallback {
            logger.notice(
                "workers start from this master's own image (the path it was started by is unknown): a reload will not pick up a new build; restart instead")
        } else {
            logger.info("workers start from \(configuration.workerExecutable)", metadata: ["build": "\(Cluster.build)"])
        }
        if inherited == nil {
            // Bound here: keep a copy in the fd store. One that came from the store or a socket unit is kept there.
            systemd.storeListener(listener)
        }
        do {
            if signals >= 0 { try Syscalls.epollAdd(epoll, signals, events: sb_EPOLLIN, token: Token.signals) }
            try Syscalls.epollAdd(epoll, control.eventFD, events: sb_EPOLLIN, token: Token.control)
        } catch {
            throw SwitchboardError(.system, "cannot watch signals: \(error)")
        }
        // Before the first worker starts: workers take the normal policy only when the master left it.
        scheduling.apply(configuration.masterScheduling, logger: logger)
        starting = true
        submit(.start(now: Syscalls.monotonicNanoseconds()))
        starting = false
        if let startupError { throw startupError }
        return loop()
    }

    private func bindListener(inherited: CInt?) throws(SwitchboardError) {
        if let inherited {
            dispatcher.adopt(listener: inherited)
            do {
                try Syscalls.setNonBlocking(inherited, true)
                try Syscalls.setCloseOnExec(inherited, true)
                port = try Syscalls.localPort(inherited)
            } catch {
                throw SwitchboardError(.system, "the inherited listener cannot be used: \(error)")
            }
            return
        }
        let host = configuration.host
        let shown = host.isEmpty ? "*" : host
        do {
            let bound = try Syscalls.listenTCP(
                host: host, port: configuration.port, backlog: configuration.backlog,
                reusePort: strategy.masterReusesPort, listening: strategy.masterListens)
            dispatcher.adopt(listener: bound.fd)
            port = bound.port
        } catch {
            switch error.code {
            case EADDRINUSE:
                throw SwitchboardError(
                    .portInUse,
                    "port \(configuration.port) on \(shown) is in use: stop the other server or pass --port 0")
            case EACCES:
                throw SwitchboardError(
                    .permissionDenied,
                    "permission denied binding port \(configuration.port): use a port above 1023, run as root, or grant CAP_NET_BIND_SERVICE"
                )
            case EINVAL where Self.isNotNumericAddress(host):
                throw SwitchboardError(
                    .usage, "--host '\(host)' is not a numeric IPv4 or IPv6 address: pass e.g. 127.0.0.1 or ::1")
            case EADDRNOTAVAIL:
                throw SwitchboardError(
                    .usage, "address \(host) is not available on this machine: pass one of its addresses or omit --host")
            default:
                throw SwitchboardError(.system, "cannot listen on \(shown):\(configuration.port): \(error.reason)")
            }
        }
    }

    /// `--defer-accept` on the listener the master accepts on or shares (bound here or inherited); a reuseport worker
    /// sets it on its own listener. Without the flag the listener stays as it came, so a socket unit's
    /// `DeferAcceptSec=` stands; a listener that defers then says so in the log, since a socket unit's listener
    /// outlives the service and keeps what an earlier run's `--defer-accept` set on it until `--defer-accept 0`.
    private func deferAccepts() throws(SwitchboardError) {
        guard strategy.masterListens else { return }
        guard let seconds = configuration.deferAcceptSeconds else {
            if let held = Syscalls.deferAccept(listener), held > 0 {
                logger.notice(
                    """
                    the listener defers accepts by about \(held) s as it came (a socket unit's DeferAcceptSec= or an \
                    earlier run's --defer-accept); --defer-accept 0 turns it off
                    """)
            }
            return
        }
        do {
            try Syscalls.setDeferAccept(listener, seconds: seconds)
        } catch {
            throw SwitchboardError(.system, "cannot defer accepts on the listener (--defer-accept \(seconds)): \(error)")
        }
    }

    static func isNotNumericAddress(_ host: String) -> Bool {
        let v4 = host.split(separator: ".", omittingEmptySubsequences: false)
        let looksV4 = v4.count == 4 && v4.allSatisfy { UInt8($0) != nil }
        return !looksV4 && !host.contains(":")
    }


    // MARK: the loop

    func loop() -> Int32 {
        // A signal the master handles may arrive blocked in every thread (a mask inherited from the parent or set by
        // the program): the loop's waits unblock them, so the handler runs here at the latest.
        if ownsSignalHandlers { Syscalls.prepareSignalWait() }
        // The loop's own buffer: a stored property would cost a run-time exclusivity check at every wake-up.
        var events = [sb_epoll_event](repeating: sb_epoll_event(), count: 64)
        // What the supervisor's side (the machine, the servers, systemd, an upgrade) decided, and the dispatcher's
        // own next deadline, as of the last wake-up that could change them. A wake-up that only accepted and passed
        // connections (listener events, no timer, no trouble) changes neither the supervisor's side nor anything
        // the dispatcher's pump did not already report, so the next wait reuses them: under a close load that is
        // nearly every wake-up, and each look at the master's stored state costs a run-time exclusivity check.
        var side = SideState()
        var sideIsCurrent = false
        var dispatchDeadline = UInt64.max
        // The waits' deadline, kept armed across them (a timed wait would arm and cancel a kernel timer each time).
        var timer = WaitTimer()
        // How many times the loop woke, and yielded after accepting (``SideState/yieldsAfterAccepting``): one line
        // at the end of the run when the environment has `SWITCHBOARD_LOOP_STATS`, as the built-in worker's loop.
        var wakeUps = 0
        var yields = 0
        do {
            try timer.watch(in: epoll, token: Token.timer)
        } catch {
            logger.critical("cannot watch the loop's timer: \(error)")
            return SwitchboardError.Code.system.exitCode
        }
        while true {
            // One clock read before the wait: the fresh look, when there is one, and the wait's deadline share it.
            let before = Syscalls.monotonicNanoseconds()
            if !sideIsCurrent {
                side = sideState(now: before)
                if case .finished(let code) = side.run {
                    shutdownRemaining()
                    if Syscalls.environment(WorkerRuntime.loopStatsVariable) != nil {
                        logger.notice("loop-stats: wake_ups=\(wakeUps) yields_after_accepting=\(yields)")
                    }
                    return code
                }
                dispatchDeadline = dispatcher.nextDeadline(now: before) ?? .max
            } else {
                // Debug builds (every test) check the reuse against a fresh look at each such wake-up.
                assert(
                    side == sideState(now: before),
                    "the loop's view of the supervisor went stale after passing connections")
            }
            let due = min(side.deadline, dispatchDeadline)
            let count: Int
            do {
                count = try Syscalls.epollWait(
                    epoll, &events, timeoutMilliseconds: timer.timeout(until: due, now: before),
                    unblockingSignals: ownsSignalHandlers)
            } catch {
                logger.critical("epoll_wait failed: \(error)")
                return SwitchboardError.Code.system.exitCode
            }
            wakeUps &+= 1
            var onlyConnections = true
            var listenerReady = false
            for index in 0..<count {
                if events[index].data == Token.timer {
                    timer.fired()
                    onlyConnections = false
                } else if events[index].data & 0xff == Token.listener {
                    listenerReady = true  // accepting happens in pump()
                } else if handle(event: events[index]) {
                    onlyConnections = false
                }
            }
            // One clock read per wake-up, for the timers and for the connections this pump sends. The timers run only
            // once the earliest deadline the wait was computed from has come: a deadline an event handler moved
            // closer is seen by the next wait, whose timeout is then 0.
            let now = Syscalls.monotonicNanoseconds()
            if now >= due {
                runTimers(now: now)
                onlyConnections = false
            } else if side.upgradeChecks {
                pollUpgradeCheck(now: now)
                onlyConnections = false
            }
            if dispatcher.pump(accepting: side.run == .running, now: now, nextDeadline: &dispatchDeadline) {
                actOnDispatchTroubles()
                onlyConnections = false
            }
            if listenerReady && side.yieldsAfterAccepting {
                Syscalls.yieldProcessor()
                yields &+= 1
            }
            sideIsCurrent = onlyConnections
        }
    }

    /// What the loop needs of the supervisor's side between two wake-ups that may change it.
    struct SideState: Equatable {
        var run = SupervisorMachine.RunState.running
        /// The earliest deadline of every timer but the dispatcher's (`UInt64.max` for none).
        var deadline = UInt64.max
        /// An upgrade's pre-check runs: it is polled at every wake-up.
        var upgradeChecks = false
        /// Whether the loop yields its CPU after a wake-up that found the listener ready, before it waits again: where
        /// the workers outnumber the CPUs (so the master shares one with them) and the master runs under
        /// `SCHED_BATCH`. A batch task's wake-up does not preempt the task running on its CPU anyway, so the master
        /// loses no turn by staying runnable instead of sleeping; and the connections that arrive while the workers
        /// run are then accepted at its next turn without a wake-up, which the client's CPU pays for (on loopback the
        /// handshake that completes a connection runs there). Pinned, under a load of one request per connection, it
        /// halved the master's wake-ups and gave 1.04 times the connections a second (BENCHMARKS.md, "Tail latency",
        /// twenty-seventh part).
        var yieldsAfterAccepting = false
    }

    private func sideState(now: UInt64) -> SideState {
        var next = machine.nextDeadline
        if let systemd = systemd.nextDeadline(now: now) { next = min(next, systemd) }
        if let probe = health.nextDeadline(now: now) { next = min(next, probe) }
        if let client = controlServer.nextDeadline(now: now) { next = min(next, client) }
        if let check = upgrade.nextDeadline { next = min(next, check) }
        return SideState(
            run: machine.state, deadline: next, upgradeChecks: upgrade.check != nil,
            yieldsAfterAccepting: workersShareCPUs && scheduling.batched)
    }

    /// Routes one event to its owner; the loop itself takes the listener's (accepting happens in the dispatcher's pump)
    /// and the timer's.
    /// - Returns: Whether it may have changed the supervisor's side (``SideState``): every event routed here may.
    private func handle(event: sb_epoll_event) -> Bool {
        let token = event.data
        switch token & 0xff {
        case Token.signals:
            // Drained before the counts are taken: a signal that arrives in between wakes the loop once more.
            Syscalls.drainEvent(signals)
            for signal in Self.handledSignals {
                let count = Syscalls.takeSignal(signal)
                // One reap finds every exited worker; each other signal counts (a second TERM escalates).
                for _ in 0..<(signal == SIGCHLD ? min(count, 1) : count) { handle(signal: signal) }
            }
        case Token.process:
            let slot = Int((token >> 8) & 0xff_ffff)
            let id = Int(token >> 32)
            guard slot < processes.indices.count, worker(slot).id == id else { return true }
            reapIfExited(slot: slot)
        case Token.health:
            health.handle(token: token, events: event.events, source: self)
        case Token.controlServer:
            controlServer.handle(token: token, events: event.events, execute: execute)
        case Token.control:
            Syscalls.drainEvent(control.eventFD)
            for command in control.take() { perform(command) }
        case Token.worker:
            let slot = Int((token >> 8) & 0xff_ffff)
            let id = Int(token >> 32)
            guard slot < processes.indices.count, worker(slot).id == id, dispatcher.channel(slot) != nil else {
                return true
            }
            if event.events & sb_EPOLLOUT != 0 {
                dispatcher.writable(slot)
            }
            if event.events & (sb_EPOLLIN | sb_EPOLLHUP | sb_EPOLLERR) != 0 {
                readChannel(slot: slot)
            }
        default:
            break
        }
        return true
    }

    private func handle(signal: CInt) {
        switch signal {
        case SIGCHLD:
            reapChildren()
        case SIGTERM, SIGINT, SIGQUIT:
            if case .stopping = machine.state {
                if signal != SIGQUIT { logger.notice("second stop signal: killing every worker now") }
            } else if machine.stopDue != nil {
                logger.notice("second stop signal during the shutdown delay: draining now")
            } else {
                logger.info("stopping gracefully (signal \(signal))")
            }
            // SIGQUIT asks for the graceful stop only; a second SIGTERM or SIGINT escalates to killing.
            submit(.stop(exitCode: 0, now: Syscalls.monotonicNanoseconds(), escalate: signal != SIGQUIT))
        case SIGHUP:
            submit(.reload(now: Syscalls.monotonicNanoseconds()))
        case SIGUSR2:
            beginUpgrade(masterOnly: false, asked: "SIGUSR2")
        case SIGTTIN:
            submit(.scaleUp(now: Syscalls.monotonicNanoseconds()))
        case SIGTTOU:
            submit(.scaleDown(now: Syscalls.monotonicNanoseconds()))
        default:
            break
        }
    }

    // MARK: timers

    private func runTimers(now: UInt64) {
        systemd.runTimers(now: now, source: self)
        dispatcher.runTimers(now: now)
        health.runTimers(now: now, source: self)
        controlServer.runTimers(now: now)
        if upgrade.check != nil { pollUpgradeCheck(now: now) }
        if now >= machine.nextDeadline {
            reapChildren()  // also where pidfds are missing and SIGCHLD is the embedding program's
            systemd.observeWorkers(now: now, source: self)  // before the health check may kill a hung worker
            submit(.tick(now: now))
            // After the tick, at a fresh time: a replacement it spawns must not look older than the tick's clock.
            checkRecycles(now: Syscalls.monotonicNanoseconds())
        }
    }

    // MARK: dispatching

    /// Hands connections on (``ConnectionDispatcher/pump(accepting:now:)``), then acts on what the dispatcher found that
    /// only the supervisor may decide, after the dispatcher is done: never from inside it.
    /// - Parameter now: The monotonic clock, when the caller has just read it.
    func pump(now: UInt64 = Syscalls.monotonicNanoseconds()) {
        if dispatcher.pump(accepting: machine.state == .running, now: now) { actOnDispatchTroubles() }
    }

    func actOnDispatchTroubles() {
        while true {
            let troubles = dispatcher.takeTroubles()
            guard !troubles.isEmpty else { return }
            for trouble in troubles {
                switch trouble {
                case .channelFailed(let index, let reason):
                    channelFailed(slot: index, reason)
                case .drainUndelivered(let index):
                    sendSignal(SIGTERM, toSlot: index)
                }
            }
        }
    }

    // MARK: stopping

    /// The machine began the stop: stop accepting, and hand waiting connections to workers before they are told to
    /// drain (the drain actions follow this one); what nobody can take is closed, with one line.
    func stopAccepting() {
        systemd.stopping(source: self)
        let lost = dispatcher.stop()
        if lost > 0 { logger.warning("closed \(lost) connections no worker could take during the stop") }
    }

    private func shutdownRemaining() {
        for index in processes.indices { emitDisconnect(slot: index) }
        let lost = dispatcher.closeAll()
        if lost > 0 { logger.warning("closed \(lost) connections no worker could take during the stop") }
        health.close()
        controlServer.close()
        let counters = dispatcher.counters
        logger.info(
            "stopped",
            metadata: [
                "connections.dispatched": "\(counters.dispatched)", "connections.taken-back": "\(counters.takenBack)",
                "connections.redispatched": "\(counters.redispatched)",
                "connections.stolen": "\(counters.stolen)",
                "connections.messages": "\(counters.messages)",
                "children.orphans-reaped": "\(orphansReaped)",
            ])
    }
}
