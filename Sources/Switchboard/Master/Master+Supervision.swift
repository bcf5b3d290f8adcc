import Logging

#if canImport(Glibc)
import Glibc
#endif

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

    /// The I/O side of a slot the machine named exists (and its scheduler slot).
    private func ensureSlot(_ index: Int) {
        while slots.count <= index {
            slots.append(WorkerSlot())
        }
        dispatcher.ensureLane(index)
    }

    private func metadata(_ index: Int) -> Logger.Metadata {
        ["worker.id": "\(worker(index).id)", "worker.pid": "\(worker(index).pid)"]
    }

    /// Performs one action of the machine: the only place lifecycle decisions turn into processes, signals,
    /// frames, systemd notifications and log lines.
    private func perform(_ action: SupervisorMachine.Action) {
        let now = Syscalls.monotonicNanoseconds()
        switch action {
        case .spawn(let index):
            ensureSlot(index)
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
            let why = failureText(cause, problem: index.flatMap { slots.indices.contains($0) ? slots[$0].problem : nil })
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
