import CSwitchboardLinux
import Logging

#if canImport(Glibc)
import Glibc
#endif

extension Master {
    // MARK: starting

    /// Starts a worker in `slot`: a socketpair, then `posix_spawn` of the worker executable with its end at fd 3.
    /// The master keeps a copy of the worker's end (close-on-exec, so no other worker inherits it) until the worker
    /// is reaped: connections sent but not received stay in that queue, where the master can take them back.
    func spawn(slot index: Int) throws(SwitchboardError) {
        let id = nextWorkerID
        nextWorkerID += 1
        let masterEnd: DescriptorChannel
        let workerEnd: DescriptorChannel
        do {
            (masterEnd, workerEnd) = try DescriptorChannel.pair()
        } catch {
            throw SwitchboardError(.system, "cannot create a worker channel: \(error)")
        }
        var environment = baseEnvironment
        environment.append("SWITCHBOARD_WORKER_ID=\(id)")
        environment.append("SWITCHBOARD_WORKER_SLOT=\(index)")
        environment.append("SWITCHBOARD_MASTER_PID=\(getpid())")
        environment.append("SWITCHBOARD_MODE=\(configuration.mode.name)")
        environment.append("SWITCHBOARD_HOST=\(configuration.host)")
        environment.append("SWITCHBOARD_PORT=\(port)")
        environment.append("SWITCHBOARD_BACKLOG=\(configuration.backlog)")
        environment.append("SWITCHBOARD_HEARTBEAT_MS=\(configuration.heartbeatInterval.milliseconds)")
        environment.append("SWITCHBOARD_DRAIN_MS=\(configuration.drainTimeout.milliseconds)")
        environment.append(contentsOf: configuration.limits.environment)
        environment.append(contentsOf: configuration.workerEnvironment)
        let pid: pid_t
        do {
            pid = try Syscalls.spawn(
                path: configuration.workerExecutable,
                arguments: ["switchboard-worker"] + configuration.workerArguments,
                environment: environment,
                channel: workerEnd.fd,
                extra: configuration.mode == .shared ? listener : nil)
        } catch {
            masterEnd.close()
            workerEnd.close()
            throw SwitchboardError(
                .system, "cannot start worker '\(configuration.workerExecutable)': \(error.reason)")
        }
        do {
            try Syscalls.epollAdd(epoll, masterEnd.fd, events: sb_EPOLLIN, token: Token.worker(slot: index, id: id))
        } catch {
            masterEnd.close()
            workerEnd.close()
            Syscalls.kill(pid, SIGKILL)
            throw SwitchboardError(.system, "cannot watch a worker channel: \(error)")
        }
        if let pidfd = Syscalls.processDescriptor(pid) {
            slots[index].processDescriptor = pidfd
            try? Syscalls.epollAdd(epoll, pidfd, events: sb_EPOLLIN, token: Token.process(slot: index, id: id))
        }
        let now = Syscalls.monotonicNanoseconds()
        slots[index].id = id
        slots[index].pid = pid
        slots[index].generation = generation
        slots[index].channel = masterEnd
        slots[index].kept = workerEnd
        slots[index].phase = .starting
        slots[index].startedAt = now
        slots[index].lastHeartbeat = now
        slots[index].exitIntended = false
        slots[index].killedByMaster = false
        slots[index].watchingWritable = false
        slots[index].drainDeadline = nil
        logger.info(
            "worker forked",
            metadata: ["worker.id": "\(id)", "worker.pid": "\(pid)", "worker.slot": "\(index)",
                       "worker.generation": "\(generation)"])
        emit(.fork(info(index)))
    }

    // MARK: reading a channel

    func readChannel(slot index: Int) {
        guard let channel = slots[index].channel else { return }
        while slots[index].isAttached {
            let result: NonBlocking<(bytes: Int, fds: Int, truncated: Bool)>
            do {
                result = try channel.receive(into: &receiveBuffer, fds: &receiveDescriptors, blocking: false)
            } catch {
                if error.code == EMSGSIZE {
                    protocolError(slot: index, "sent a frame over \(WireCodec.maxFrame) bytes or too many descriptors")
                } else {
                    detach(slot: index, reason: "channel failed: \(error)")
                }
                return
            }
            guard case .done(let received) = result else { return }
            if received.bytes == 0 && received.fds == 0 {
                detach(slot: index, reason: "closed its channel")
                return
            }
            // A worker never sends descriptors: close any that arrived before judging the frame.
            for position in 0..<received.fds { Syscalls.close(receiveDescriptors[position]) }
            if received.truncated {
                protocolError(slot: index, "sent descriptors")
                return
            }
            let message: WireMessage
            do {
                message = try WireCodec.decode(receiveBuffer[0..<received.bytes], descriptorCount: received.fds)
            } catch {
                protocolError(slot: index, "sent a malformed frame: \(error)")
                return
            }
            handle(message: message, from: index)
        }
    }

    private func handle(message: WireMessage, from index: Int) {
        switch message {
        case .hello(let pid):
            guard pid == slots[index].pid else {
                protocolError(slot: index, "said hello as pid \(pid)")
                return
            }
            emit(.online(info(index)))
        case .ready:
            guard slots[index].phase == .starting else { return }
            slots[index].phase = .ready
            slots[index].lastHeartbeat = Syscalls.monotonicNanoseconds()
            scheduler.setReady(index, true)
            logger.info(
                "worker ready",
                metadata: ["worker.id": "\(slots[index].id)", "worker.pid": "\(slots[index].pid)",
                           "worker.generation": "\(slots[index].generation)"])
            emit(.ready(info(index)))
            if announced { notifySystemd("", event: "worker \(slots[index].id) ready") }
            announceIfReady()
            replacementReady(slot: index)
        case .ack(let sequence, let open):
            acknowledge(slot: index, upTo: sequence, open: Int(open))
        case .heartbeat(let open, _):
            slots[index].lastHeartbeat = Syscalls.monotonicNanoseconds()
            scheduler.reportOpen(index, open: Int(open))
        case .message(let bytes):
            emit(.message(info(index), bytes))
        case .connections, .drain:
            protocolError(slot: index, "sent a master-only message")
        }
    }

    /// The worker received the frame it was asked to report (the one that filled its queue) and all before it.
    private func acknowledge(slot index: Int, upTo sequence: UInt64, open: Int) {
        do {
            scheduler.received(index, count: try slots[index].queue.received(upTo: sequence))
            scheduler.reportOpen(index, open: open)
        } catch {
            protocolError(slot: index, "acknowledged connection \(sequence) it was never sent")
        }
    }

    private func announceIfReady() {
        guard !announced, state == .running else { return }
        let ready = slots.filter { $0.phase == .ready }.count
        guard ready >= configuration.workers else { return }
        announced = true
        let host = (try? Syscalls.localAddress(listener)) ?? configuration.displayHost
        onListening(host, port)
        emit(.listening(port: port))
        notifyReady(event: "listening on port \(port)")
    }

    func info(_ index: Int) -> WorkerInfo {
        WorkerInfo(id: slots[index].id, pid: slots[index].pid, slot: index, generation: slots[index].generation)
    }

    func emit(_ event: SupervisorEvent) {
        eventSink?(event)
    }

    /// Performs a command another thread gave through ``MasterControl``.
    func perform(_ command: MasterControl.Command) {
        switch command {
        case .send(let id, let bytes):
            guard let index = slots.firstIndex(where: { $0.id == id && $0.isAttached }) else {
                logger.notice("message for worker \(id) dropped: no such worker")
                return
            }
            send(message: bytes, slot: index)
        case .broadcast(let bytes):
            for index in slots.indices where slots[index].isAttached { send(message: bytes, slot: index) }
        case .reload:
            requestReload()
        case .stop:
            if case .stopping = state { killAll() } else { beginStop(exitCode: 0) }
        case .addWorker:
            scaleUp()
        case .removeWorker:
            scaleDown()
        }
    }

    private func send(message bytes: [UInt8], slot index: Int) {
        guard let channel = slots[index].channel else { return }
        do {
            if case .wouldBlock = try channel.send(.message(bytes)) {
                logger.warning("message to worker dropped: its channel is full", metadata: ["worker.id": "\(slots[index].id)"])
            }
        } catch {
            detach(slot: index, reason: "channel failed while sending a message: \(error)")
        }
    }

    /// A worker broke the protocol: log it, kill it, hand its connections to others, replace it.
    func protocolError(slot index: Int, _ what: String) {
        logger.error(
            "worker \(what); replacing it",
            metadata: ["worker.id": "\(slots[index].id)", "worker.pid": "\(slots[index].pid)"])
        detach(slot: index, reason: nil, verdict: true)
    }

    // MARK: losing a worker

    /// Cuts the master off from the worker in `slot`: kills it (the reap comes later) and closes the master's end of
    /// the channel. The connections still in its queue stay there, held by the kernel, until the reap: then the
    /// master takes them back (``reclaimQueue(slot:live:)``), when nothing can receive them any more. `verdict`: the
    /// master decided this worker must go (its SIGKILL then does not count as an outside kill).
    func detach(slot index: Int, reason: String?, kill: Bool = true, verdict: Bool = false) {
        guard slots[index].isAttached else { return }
        if let reason {
            logger.info(
                "worker \(reason)", metadata: ["worker.id": "\(slots[index].id)", "worker.pid": "\(slots[index].pid)"])
        }
        if kill {
            Syscalls.kill(slots[index].pid, SIGKILL)
            // Unless it is the master's verdict, the channel closed or failed because the worker is dying anyway:
            // the SIGKILL only makes sure, and whatever ended it (a crash, an outside kill) is what its status tells.
            if verdict { slots[index].killedByMaster = true }
        }
        emit(.disconnect(info(index)))
        if let channel = slots[index].channel {
            Syscalls.epollRemove(epoll, channel.fd)
            channel.close()
        }
        slots[index].channel = nil
        slots[index].phase = .exiting
        slots[index].queue.removeAll()
        scheduler.workerExited(index)
    }

    /// After the reap: takes back every connection the worker never received and closes the master's copy of its
    /// end.
    func releaseQueue(slot index: Int) {
        guard let kept = slots[index].kept else { return }
        let owed = reclaimQueue(slot: index, live: false)
        kept.close()
        slots[index].kept = nil
        if owed > 0 {
            logger.info(
                "re-dispatching \(owed) connections the worker never received",
                metadata: ["worker.id": "\(slots[index].id)"])
        }
    }

    /// Reaps every worker that has exited (only our own workers, by pid: an embedding program's other children are
    /// left alone) and decides about replacements.
    func reapChildren() {
        for index in slots.indices where slots[index].hasProcess {
            reapIfExited(slot: index)
        }
    }

    /// Reaps the worker in `slot` if it has exited.
    func reapIfExited(slot index: Int) {
        guard slots[index].hasProcess, let exit = Syscalls.reap(slots[index].pid) else { return }
        detach(slot: index, reason: nil, kill: false)  // reaped: the pid may already be reused
        releaseQueue(slot: index)
        if let pidfd = slots[index].processDescriptor {
            Syscalls.epollRemove(epoll, pidfd)
            Syscalls.close(pidfd)
            slots[index].processDescriptor = nil
        }
        let slot = slots[index]
        let now = Syscalls.monotonicNanoseconds()
        let uptime = Duration.nanoseconds(Int64(now - slot.startedAt))
        let how = exit.signaled ? "killed by signal \(exit.code - 128)" : "exited with code \(exit.code)"
        logger.info(
            "worker \(how)",
            metadata: ["worker.id": "\(slot.id)", "worker.pid": "\(slot.pid)",
                       "worker.intended": "\(slot.exitIntended)"])
        emit(.exit(WorkerInfo(id: slot.id, pid: slot.pid, slot: index, generation: slot.generation), code: exit.signaled ? nil : exit.code,
                   signal: exit.signaled ? exit.code - 128 : nil, intended: slot.exitIntended))
        slots[index].phase = .empty
        slots[index].pid = 0
        guard state == .running else { return }
        if !slot.exitIntended { notifySystemd("", event: "worker \(slot.id) \(how)") }
        if reloadReplacementExited(slot: index) { return }
        guard !slots[index].retired else { return }
        if slot.exitIntended {
            slots[index].respawnAt = now
            return
        }
        let cause: RestartPolicy.ExitCause
        if !exit.signaled && exit.code == WorkerRuntime.resourcePressureExitCode {
            cause = .resourcePressure
        } else if exit.signaled && exit.code - 128 == SIGKILL && !slot.killedByMaster {
            cause = .killedFromOutside
        } else {
            cause = .failed
        }
        switch restartPolicy.workerExited(uptime: uptime, now: now, random: Double.random(in: 0..<1), cause: cause) {
        case .restart(let delay):
            slots[index].respawnAt = now + UInt64(delay.nanoseconds)
            logger.info(
                "restarting worker in \(delay.milliseconds) ms",
                metadata: ["worker.slot": "\(index)", "restart.early-exits": "\(restartPolicy.earlyExitsInARow)"])
        case .halt(let early):
            notifyHalt(earlyExits: early)
            logger.critical(
                "workers exited early \(early) times within \(restartPolicy.settings.crashLoopWindow): halting (crash loop)"
            )
            beginStop(exitCode: SwitchboardError.Code.crashLoop.exitCode)
        }
    }

    func drain(slot index: Int, deadlineMilliseconds: UInt32) {
        guard let channel = slots[index].channel else { return }
        scheduler.setReady(index, false)
        slots[index].phase = .draining
        slots[index].exitIntended = true
        logger.info(
            "worker draining",
            metadata: ["worker.id": "\(slots[index].id)", "worker.pid": "\(slots[index].pid)",
                       "worker.generation": "\(slots[index].generation)"])
        slots[index].drainDeadline = Syscalls.monotonicNanoseconds() + UInt64(deadlineMilliseconds) * 1_000_000
        do {
            if case .wouldBlock = try channel.send(.drain(deadlineMilliseconds: deadlineMilliseconds)) {
                Syscalls.kill(slots[index].pid, SIGTERM)  // the channel is full: the signal drains it too
            }
        } catch {
            Syscalls.kill(slots[index].pid, SIGTERM)
        }
    }
}
