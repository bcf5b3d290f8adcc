import Logging

#if canImport(Glibc)
import Glibc
#endif

// The master's half of supervision: events in (from the workers' channels, reaps, commands), the machine's actions
// performed. What it touches it routes to the owner: processes to ``WorkerProcesses``, connections and channels to
// ``ConnectionDispatcher``, figures to ``MasterMetrics``; the master state written here is the event queue, the
// startup error and the count of orphans reaped.
extension Master {
    /// Feeds `event` to the supervisor machine and performs what it asks, in order. One event at a time: an event
    /// raised while the actions of another are performed (a spawn reports `spawned`, a send finds a channel failed)
    /// waits in a queue until those actions are done, so no action runs against a state that changed under it, and
    /// the order is the one a simulation replays.
    func submit(_ event: SupervisorMachine.Event) {
        machineEvents.append(event)
        guard machineEvents.count == 1 else { return }  // the outer call is draining the queue
        while let next = machineEvents.first {
            for action in machine.handle(next) { perform(action) }
            machineEvents.removeFirst()
        }
    }

    /// The lifecycle state of the worker in `slot`.
    func worker(_ index: Int) -> SupervisorMachine.Worker {
        machine.workers[index]
    }

    func metadata(_ index: Int) -> Logger.Metadata {
        ["worker.id": "\(worker(index).id)", "worker.pid": "\(worker(index).pid)"]
    }

    /// Performs one action of the machine: the only place lifecycle decisions turn into processes, signals,
    /// frames, systemd notifications and log lines.
    private func perform(_ action: SupervisorMachine.Action) {
        let now = Syscalls.monotonicNanoseconds()
        switch action {
        case .spawn(let index):
            dispatcher.ensureLane(index)
            let pid: pid_t
            do {
                pid = try spawn(slot: index)
            } catch {
                if starting && startupError == nil {
                    startupError = error
                } else {
                    logger.error("cannot start a worker: \(error.message); retrying")
                }
                submit(.spawnFailed(slot: index, now: now))
                return
            }
            submit(.spawned(slot: index, pid: pid, now: now))  // handled after this event's other actions
            recycler.started(slot: index, pid: pid, random: Double.random(in: 0..<1))
            let forked = WorkerInfo(id: worker(index).id, pid: pid, slot: index, generation: worker(index).generation)
            logger.info(
                "worker forked",
                metadata: ["worker.id": "\(forked.id)", "worker.pid": "\(pid)", "worker.slot": "\(index)",
                           "worker.generation": "\(forked.generation)"])
            emit(.fork(forked))
        case .kill(let index, let reason):
            switch reason {
            case .notReady:
                logger.warning(
                    "worker did not become ready within \(configuration.readyTimeout); killing it", metadata: metadata(index))
            case .hung:
                logger.warning(
                    "worker sent no heartbeat for \(configuration.heartbeatTimeout) (hung); killing it",
                    metadata: metadata(index))
            case .drainOverdue:
                logger.notice("worker did not finish draining in time; killing it", metadata: metadata(index))
            case .broken, .channelFailed, .replacementAborted, .stopDeadline, .stopEscalated:
                break  // said where it was found, or as a whole
            }
            if worker(index).hasProcess { processes.killChildren(of: worker(index).pid) }
            sendSignal(SIGKILL, toSlot: index)
            disconnect(slot: index)
        case .drain(let index):
            drain(slot: index)
        case .serve(let index):
            dispatcher.serve(index)
            logger.info(
                "worker ready",
                metadata: ["worker.id": "\(worker(index).id)", "worker.pid": "\(worker(index).pid)",
                           "worker.generation": "\(worker(index).generation)"])
            emit(.ready(info(index)))
        case .listening:
            let host = (try? Syscalls.localAddress(listener)) ?? configuration.displayHost
            onListening(host, port)
            emit(.listening(port: port))
            notifyReady(event: "listening on port \(port)")
        case .status(let event):
            notifySystemd("", event: event)
        case .restartScheduled(let index, let delay, let early, let cause):
            metrics.restarted(cause)
            logger.info(
                "restarting worker in \(delay / 1_000_000) ms",
                metadata: ["worker.slot": "\(index)", "restart.early-exits": "\(early)"])
        case .halt(let early):
            notifyHalt(earlyExits: early)
            logger.critical(
                "workers exited early \(early) times within \(configuration.restart.crashLoopWindow): halting (crash loop)")
        case .stopAnnounced(let delay):
            logger.info(
                "stop announced: load balancers are told to drain; serving on for \(delay / 1_000_000) ms, then draining")
            notifySystemd("", event: "stop announced: draining in \(delay / 1_000_000) ms")
        case .stopping:
            stopAccepting()
        case .stopDeadlinePassed:
            logger.notice("drain deadline passed: killing the workers still running")
        case .stopAlreadyRunning:
            break
        case .reloadStarted(let generation, let workers):
            metrics.reloads.started &+= 1
            logger.info("rolling reload started", metadata: ["reload.generation": "\(generation)", "workers": "\(workers)"])
            notifyReloading()
        case .reloadQueued:
            logger.info("reload requested during a reload: queued")
        case .reloadFinished(let generation, let replaced):
            metrics.reloads.finished &+= 1
            logger.info("rolling reload finished", metadata: ["reload.generation": "\(generation)", "workers": "\(replaced)"])
            notifyReady(event: "reload to generation \(generation) finished")
        case .reloadAborted(let generation, let index, let cause):
            metrics.reloads.aborted &+= 1
            let why = failureText(cause, problem: index.flatMap { processes.problem($0) })
            logger.error(
                "rolling reload aborted: the new worker from \(configuration.workerExecutable) \(why); the running workers keep serving",
                metadata: ["reload.generation": "\(generation)"])
            notifyReady(event: "reload to generation \(generation) aborted: the new worker \(why); old workers keep serving")
        case .short(let missing):
            logger.warning("\(missing) worker(s) short of the target of \(machine.target): starting replacements")
        case .surplus(let count):
            logger.notice("\(count) worker(s) over the target of \(machine.target): draining the surplus")
        case .scaled(let target):
            logger.info("worker count changed", metadata: ["workers.target": "\(target)"])
        case .scaleDownRefused:
            logger.notice("SIGTTOU ignored: keeping at least one worker")
        case .recycleStarted(let index, let reason):
            metrics.recycled(reason)
            recycler.began(reason, workerID: worker(index).id)
            logger.info("recycling worker (\(reasonText(reason, slot: index))): its replacement starts, then it drains", metadata: metadata(index))
        case .recycleFinished(let index, let reason):
            logger.info("worker recycled (\(reason.rawValue))", metadata: metadata(index))
            checkRecycles(now: now)  // the next one due need not wait for the next health check
        case .recycleAborted(let index, let reason, let cause):
            let why = failureText(cause, problem: nil)
            logger.error(
                "recycle (\(reason.rawValue)) aborted: the new worker from \(configuration.workerExecutable) \(why); the worker keeps serving",
                metadata: metadata(index))
        case .scaleUpRefused(let limit):
            logger.notice("scale-up ignored: at most \(limit) workers may run (the target is \(machine.target))")
        }
    }

    /// What went wrong with a reload's new worker, in words.
    private func failureText(_ cause: SupervisorMachine.ReplacementFailure, problem: String?) -> String {
        switch cause {
        case .couldNotStart: problem ?? "could not be started"
        case .exited(.code(let code)): "exited with code \(code) before it was ready"
        case .exited(.signal(let signal)): "was killed by signal \(signal) before it was ready"
        case .exited(.unknown): "was gone before it was ready (exit status unknown)"
        case .killed(.notReady): "was not ready within \(configuration.readyTimeout)"
        case .killed(let reason): problem ?? "was killed (\(reason))"
        }
    }

    /// Tells the worker in `slot` to drain: out of the rotation, a `drain` frame with the drain timeout (SIGTERM when
    /// the channel is full or failed, which drains it too).
    private func drain(slot index: Int) {
        logger.info(
            "worker draining",
            metadata: ["worker.id": "\(worker(index).id)", "worker.pid": "\(worker(index).pid)",
                       "worker.generation": "\(worker(index).generation)"])
        let milliseconds = UInt32(clamping: configuration.drainTimeout.milliseconds)
        if !dispatcher.drain(index, deadlineMilliseconds: milliseconds) { sendSignal(SIGTERM, toSlot: index) }
    }
}

extension Master {
    // MARK: workers: starting, signalling, reaping (``WorkerProcesses``); what the master tells the others

    /// Whether the workers outnumber the CPUs the master may run on (its affinity mask, which `--cpu-affinity` divides
    /// among them): then they take turns on a CPU, and share it with the master.
    var workersShareCPUs: Bool { machine.target > cpuBudget.allowed }

    /// Starts the worker the machine named in `slot`
    /// (``WorkerProcesses/spawn(slot:id:port:sharedListener:sharingCPUs:listenerGivesNoDelay:attach:)``) with its
    /// channel attached to the dispatcher. It is told whether the workers outnumber the CPUs the master may run on
    /// (its affinity mask, which `--cpu-affinity` divides among them): then they take turns on a CPU. And whether the
    /// connections it will be passed (or accept on the shared listener) come with `TCP_NODELAY` from the listener.
    /// - Returns: The worker's pid.
    func spawn(slot index: Int) throws(SwitchboardError) -> pid_t {
        let id = worker(index).id
        return try processes.spawn(
            slot: index, id: id, port: port, sharedListener: strategy.sharesListener ? listener : nil,
            sharingCPUs: workersShareCPUs, listenerGivesNoDelay: dispatcher.listenerGivesNoDelay,
            normalScheduling: scheduling.batched
        ) { (channel, kept, pid) throws(SystemCallError) in
            try dispatcher.attach(
                index, channel: channel, kept: kept, token: Token.worker(slot: index, id: id),
                metadata: ["worker.id": "\(id)", "worker.pid": "\(pid)"])
        }
    }

    /// Sends `signal` to the worker in `slot`, if it has a process (``WorkerProcesses/signal(_:slot:pid:)``).
    func sendSignal(_ signal: CInt, toSlot index: Int) {
        guard worker(index).hasProcess else { return }
        processes.signal(signal, slot: index, pid: worker(index).pid)
    }

    /// Reaps every worker that has exited (only our own workers, by pid: an embedding program's other children are
    /// left alone).
    func reapChildren() {
        for index in processes.indices where worker(index).hasProcess {
            reapIfExited(slot: index)
        }
        if configuration.reapsOrphans { reapOrphans() }
    }

    /// Reaps every exited child that is not a worker (``Configuration/reapsOrphans``): orphans adopted as PID 1 or as
    /// a subreaper, a worker's own children. An exited worker found here goes the workers' way, with its slot told.
    func reapOrphans() {
        for _ in 0..<256 {
            let child = processes.reapExitedChild(
                workerSlot: { pid in machine.workers.firstIndex(where: { $0.hasProcess && $0.pid == pid }) },
                isOther: { pid in pid == upgrade.check?.pid })
            switch child {
            case nil:
                return
            case .other:
                // The upgrade's pre-check ended: judged (and reaped) there.
                pollUpgradeCheck(now: Syscalls.monotonicNanoseconds())
                if upgrade.check != nil { return }
            case .worker(let index, let reaped):
                if let reaped { exited(slot: index, reaped) }
            case .orphan(let pid, let code, let signaled):
                orphansReaped &+= 1
                logger.debug(
                    "reaped a child that is not a worker",
                    metadata: ["child.pid": "\(pid)", signaled ? "child.signal" : "child.exit-code": "\(signaled ? code - 128 : code)"])
            }
        }
    }

    /// Reaps the worker in `slot` if it has exited (``WorkerProcesses/reap(slot:pid:)``).
    func reapIfExited(slot index: Int) {
        guard worker(index).hasProcess, let reaped = processes.reap(slot: index, pid: worker(index).pid) else { return }
        exited(slot: index, reaped)
    }

    /// The worker in `slot` is reaped: its figures join the slot's totals, the dispatcher takes back what it never
    /// received, then the machine is told.
    private func exited(slot index: Int, _ reaped: WorkerProcesses.Reaped) {
        let gone = worker(index)
        // Its last figures join its slot's totals in `/metrics` (a spawn resets the slot's own counts).
        metrics.workerLeft(
            slot: index, dispatched: dispatcher.lanes[index].dispatched, handled: reaped.handled,
            cpuSeconds: reaped.cpuSeconds)
        disconnect(slot: index)
        detach(slot: index)
        logger.info(
            "worker \(reaped.exit.text)",
            metadata: ["worker.id": "\(gone.id)", "worker.pid": "\(gone.pid)",
                       "worker.intended": "\(gone.exitIntended)"])
        emit(.exit(info(index), code: reaped.exit.code, signal: reaped.exit.signal, intended: gone.exitIntended))
        submit(.exited(slot: index, exit: reaped.exit, now: Syscalls.monotonicNanoseconds(), random: Double.random(in: 0..<1)))
    }

    /// Cuts the master off from the worker in `slot` (killed, or reaped): closes the master's end of the channel.
    /// The connections still in its queue stay there, held by the kernel, until the reap: then the master takes
    /// them back (``detach(slot:)``), when nothing can receive them any more.
    func disconnect(slot index: Int) {
        emitDisconnect(slot: index)
        dispatcher.disconnect(index)
    }

    /// Tells the embedding program the worker in `slot` is cut off, once (while its channel is open).
    func emitDisconnect(slot index: Int) {
        guard dispatcher.channel(index) != nil else { return }
        emit(.disconnect(info(index)))
    }

    /// After the reap: takes back every connection the worker never received and closes the master's copy of its
    /// end.
    private func detach(slot index: Int) {
        let owed = dispatcher.detach(index)
        if owed > 0 {
            logger.info(
                "re-dispatching \(owed) connections the worker never received",
                metadata: ["worker.id": "\(worker(index).id)"])
        }
    }

    func info(_ index: Int) -> WorkerInfo {
        WorkerInfo(id: worker(index).id, pid: worker(index).pid, slot: index, generation: worker(index).generation)
    }

    func emit(_ event: SupervisorEvent) {
        eventSink?(event)
    }

    // MARK: workers: what their channels say, as events for the machine

    /// Reads up to ``WorkerChannelReader/readBudget`` frames from the worker in `slot` and handles each.
    func readChannel(slot index: Int) {
        guard let channel = dispatcher.channel(index) else { return }
        for _ in 0..<WorkerChannelReader.readBudget where dispatcher.channel(index) != nil {
            switch channelReader.read(channel) {
            case .none: return
            case .message(let message): handle(message: message, from: index)
            case .protocolError(let what): return protocolError(slot: index, what)
            case .unsupportedVersion(let version): return refuse(slot: index, speaking: version)
            case .failed(let what): return channelFailed(slot: index, what)
            }
        }
    }

    private func handle(message: WireMessage, from index: Int) {
        switch message {
        case .hello(let pid, let build):
            guard pid == worker(index).pid else {
                protocolError(slot: index, "said hello as pid \(pid)")
                return
            }
            processes.said(hello: build, slot: index)
            if build != Cluster.build {
                logger.info(
                    "worker runs build \(build); this master runs \(Cluster.build)",
                    metadata: ["worker.id": "\(worker(index).id)", "worker.pid": "\(pid)"])
            }
            emit(.online(info(index)))
        case .ready:
            submit(.ready(slot: index, now: Syscalls.monotonicNanoseconds()))
        case .ack(let sequence, let open):
            do {
                try dispatcher.acknowledge(index, upTo: sequence, open: Int(open))
            } catch {
                protocolError(slot: index, "acknowledged connection \(sequence) it was never sent")
            }
        case .heartbeat(let open, let handled):
            processes.reported(handled: handled, slot: index)
            if recycler.policy.maxRequests > 0 { checkRecycles(now: Syscalls.monotonicNanoseconds()) }
            submit(.heartbeat(slot: index, now: Syscalls.monotonicNanoseconds()))
            dispatcher.report(index, open: Int(open))
        case .message(let bytes):
            emit(.message(info(index), bytes))
        case .connections, .drain:
            protocolError(slot: index, "sent a master-only message")
        }
    }

    /// A worker broke the protocol: log it; the machine kills it and replaces it.
    private func protocolError(slot index: Int, _ what: String) {
        processes.found(problem: "broke the channel protocol: it \(what)", slot: index)
        logger.error("worker \(what); replacing it", metadata: metadata(index))
        submit(.broken(slot: index))
    }

    /// The worker speaks another version of the channel protocol (a deploy of a build this master cannot talk to):
    /// one line naming both versions; the machine kills it (and a reload waiting for it aborts).
    private func refuse(slot index: Int, speaking version: UInt8) {
        let problem = "speaks channel protocol \(version) and this master speaks \(WireCodec.version)"
        processes.found(problem: "was refused: it \(problem)", slot: index)
        logger.error(
            "worker from \(configuration.workerExecutable) \(problem): refused (a master of its protocol starts with the next restart)",
            metadata: metadata(index))
        submit(.broken(slot: index))
    }

    /// The worker's channel closed or failed: it is going anyway.
    func channelFailed(slot index: Int, _ what: String) {
        logger.info("worker \(what)", metadata: metadata(index))
        submit(.channelFailed(slot: index))
    }

    // MARK: commands from other threads

    /// Performs a command another thread gave through ``MasterControl``.
    func perform(_ command: MasterControl.Command) {
        switch command {
        case .send(let id, let bytes):
            guard let index = machine.workers.firstIndex(where: { $0.id == id && $0.isAttached }) else {
                logger.notice("message for worker \(id) dropped: no such worker")
                return
            }
            send(message: bytes, slot: index)
        case .broadcast(let bytes):
            for index in processes.indices where worker(index).isAttached { send(message: bytes, slot: index) }
        case .reload:
            submit(.reload(now: Syscalls.monotonicNanoseconds()))
        case .stop:
            submit(.stop(exitCode: 0, now: Syscalls.monotonicNanoseconds(), escalate: true))
        case .addWorker:
            submit(.scaleUp(now: Syscalls.monotonicNanoseconds()))
        case .removeWorker:
            submit(.scaleDown(now: Syscalls.monotonicNanoseconds()))
        case .upgrade(let masterOnly):
            beginUpgrade(masterOnly: masterOnly, asked: "Supervisor.upgrade")
        }
    }

    private func send(message bytes: [UInt8], slot index: Int) {
        guard let channel = dispatcher.channel(index) else { return }
        do {
            if case .wouldBlock = try channel.send(.message(bytes)) {
                logger.warning("message to worker dropped: its channel is full", metadata: ["worker.id": "\(worker(index).id)"])
            }
        } catch {
            channelFailed(slot: index, "channel failed while sending a message: \(error)")
        }
    }
}

extension Master {
    /// Asks the recycler which worker reached a limit (requests, age, unique memory) and tells the machine; says a
    /// memory limit below a fresh worker's baseline once per worker.
    func checkRecycles(now: UInt64) {
        guard recycler.policy.isEnabled, machine.state == .running else { return }
        let findings = recycler.check(
            now: now, workers: machine.workers, handled: { processes.handled($0) },
            sample: { ProcessMemory.uniqueBytes($0) })
        for finding in findings {
            switch finding {
            case .belowBaseline(let index, let bytes):
                logger.warning(
                    "worker holds \(bytes / 1_048_576) MiB of unique memory within \(configuration.restart.healthyUptime) of its start, over --max-worker-memory \(configuration.maxWorkerMemory / 1_048_576) MiB: the limit is below what a fresh worker needs; not recycling it for that",
                    metadata: metadata(index))
            case .recycle(let index, let reason):
                submit(.recycle(slot: index, reason: reason, now: now))
            }
        }
    }

    /// Why a worker is recycled, in words.
    func reasonText(_ reason: SupervisorMachine.RecycleReason, slot index: Int) -> String {
        switch reason {
        case .requests: "requests: \(processes.handled(index)) served, --max-requests \(configuration.maxRequests)"
        case .memory:
            "memory: \((recycler.uniqueBytes(index) ?? 0) / 1_048_576) MiB unique, --max-worker-memory \(configuration.maxWorkerMemory / 1_048_576) MiB"
        case .lifetime: "lifetime: --max-lifetime \(configuration.maxLifetime)"
        }
    }
}
