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
    /// - Returns: The worker's pid.
    func spawn(slot index: Int) throws(SwitchboardError) -> pid_t {
        let id = worker(index).id
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
                extra: strategy.sharesListener ? listener : nil,
                identity: workerIdentity,
                cpu: workerCPUs.isEmpty ? nil : workerCPUs[index % workerCPUs.count])
        } catch {
            masterEnd.close()
            workerEnd.close()
            slots[index].problem = "could not be started: \(error.reason)"
            throw SwitchboardError(
                .system, "cannot start worker '\(configuration.workerExecutable)': \(error.reason)")
        }
        do {
            try dispatcher.attach(
                index, channel: masterEnd, kept: workerEnd, token: Token.worker(slot: index, id: id),
                metadata: ["worker.id": "\(id)", "worker.pid": "\(pid)"])
        } catch {
            masterEnd.close()
            workerEnd.close()
            Syscalls.kill(pid, SIGKILL)
            Syscalls.waitForExit(pid)  // no slot knows this pid: reaped here, or it would stay a zombie
            throw SwitchboardError(.system, "cannot watch a worker channel: \(error)")
        }
        if let pidfd = Syscalls.processDescriptor(pid) {
            slots[index].processDescriptor = pidfd
            try? Syscalls.epollAdd(epoll, pidfd, events: sb_EPOLLIN, token: Token.process(slot: index, id: id))
        }
        slots[index].handled = 0
        slots[index].build = nil
        slots[index].problem = nil
        return pid
    }

    // MARK: reading a channel

    /// The most frames the master reads from one worker per wake-up: the channel is level-triggered, so the rest
    /// wake the next turn of the loop, after the listener, the timers and the other workers had theirs (a worker that
    /// sends messages in a loop cannot starve accepting, heartbeat checks or the watchdog).
    static let readBudget = 16

    func readChannel(slot index: Int) {
        guard let channel = dispatcher.channel(index) else { return }
        for _ in 0..<Self.readBudget where dispatcher.channel(index) != nil {
            let result: NonBlocking<(bytes: Int, fds: Int, truncated: Bool)>
            do {
                result = try channel.receive(into: &receiveBuffer, fds: &receiveDescriptors, blocking: false)
            } catch {
                if error.code == EMSGSIZE {
                    protocolError(slot: index, "sent a frame over \(WireCodec.maxFrame) bytes or too many descriptors")
                } else {
                    channelFailed(slot: index, "channel failed: \(error)")
                }
                return
            }
            guard case .done(let received) = result else { return }
            if received.bytes == 0 && received.fds == 0 {
                channelFailed(slot: index, "closed its channel")
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
            } catch .unsupportedVersion(let version) {
                refuse(slot: index, speaking: version)
                return
            } catch {
                protocolError(slot: index, "sent a malformed frame: \(error)")
                return
            }
            handle(message: message, from: index)
        }
    }

    private func handle(message: WireMessage, from index: Int) {
        switch message {
        case .hello(let pid, let build):
            guard pid == worker(index).pid else {
                protocolError(slot: index, "said hello as pid \(pid)")
                return
            }
            slots[index].build = build
            if build != Cluster.build {
                logger.info(
                    "worker runs build \(build); this master runs \(Cluster.build)",
                    metadata: ["worker.id": "\(worker(index).id)", "worker.pid": "\(pid)"])
            }
            emit(.online(info(index)))
        case .ready:
            submit(.ready(slot: index, now: Syscalls.monotonicNanoseconds()))
        case .ack(let sequence, let open):
            acknowledge(slot: index, upTo: sequence, open: Int(open))
        case .heartbeat(let open, let handled):
            slots[index].handled = handled
            submit(.heartbeat(slot: index, now: Syscalls.monotonicNanoseconds()))
            dispatcher.report(index, open: Int(open))
        case .message(let bytes):
            emit(.message(info(index), bytes))
        case .connections, .drain:
            protocolError(slot: index, "sent a master-only message")
        }
    }

    /// The worker received the frame it was asked to report (the one that filled its queue) and all before it.
    private func acknowledge(slot index: Int, upTo sequence: UInt64, open: Int) {
        do {
            try dispatcher.acknowledge(index, upTo: sequence, open: open)
        } catch {
            protocolError(slot: index, "acknowledged connection \(sequence) it was never sent")
        }
    }

    func info(_ index: Int) -> WorkerInfo {
        WorkerInfo(id: worker(index).id, pid: worker(index).pid, slot: index, generation: worker(index).generation)
    }

    func emit(_ event: SupervisorEvent) {
        eventSink?(event)
    }

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
            for index in slots.indices where worker(index).isAttached { send(message: bytes, slot: index) }
        case .reload:
            submit(.reload(now: Syscalls.monotonicNanoseconds()))
        case .stop:
            submit(.stop(exitCode: 0, now: Syscalls.monotonicNanoseconds(), escalate: true))
        case .addWorker:
            submit(.scaleUp(now: Syscalls.monotonicNanoseconds()))
        case .removeWorker:
            submit(.scaleDown(now: Syscalls.monotonicNanoseconds()))
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

    /// A worker broke the protocol: log it; the machine kills it and replaces it.
    func protocolError(slot index: Int, _ what: String) {
        slots[index].problem = "broke the channel protocol: it \(what)"
        logger.error(
            "worker \(what); replacing it",
            metadata: ["worker.id": "\(worker(index).id)", "worker.pid": "\(worker(index).pid)"])
        submit(.broken(slot: index))
    }

    /// The worker speaks another version of the channel protocol (a deploy of a build this master cannot talk to):
    /// one line naming both versions; the machine kills it (and a reload waiting for it aborts).
    private func refuse(slot index: Int, speaking version: UInt8) {
        let problem = "speaks channel protocol \(version) and this master speaks \(WireCodec.version)"
        slots[index].problem = "was refused: it \(problem)"
        logger.error(
            "worker from \(configuration.workerExecutable) \(problem): refused (a master of its protocol starts with the next restart)",
            metadata: ["worker.id": "\(worker(index).id)", "worker.pid": "\(worker(index).pid)"])
        submit(.broken(slot: index))
    }

    /// The worker's channel closed or failed: it is going anyway.
    func channelFailed(slot index: Int, _ what: String) {
        logger.info(
            "worker \(what)", metadata: ["worker.id": "\(worker(index).id)", "worker.pid": "\(worker(index).pid)"])
        submit(.channelFailed(slot: index))
    }

    // MARK: losing a worker

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
    func detach(slot index: Int) {
        let owed = dispatcher.detach(index)
        if owed > 0 {
            logger.info(
                "re-dispatching \(owed) connections the worker never received",
                metadata: ["worker.id": "\(worker(index).id)"])
        }
    }

    /// Sends `signal` to the worker in `slot` through its pidfd, which names that process and no other: once the
    /// worker has exited (reaped or not, by whoever) the signal goes nowhere, never to a process that reused its pid.
    /// Without a pidfd (a kernel without them) by pid, which is safe while the master has not reaped it: SIGCHLD is
    /// never left ignored, so nothing else reaps the master's children.
    func sendSignal(_ signal: CInt, toSlot index: Int) {
        guard worker(index).hasProcess, worker(index).pid > 0 else { return }  // kill(0) would reach the group
        if let pidfd = slots[index].processDescriptor {
            do {
                try Syscalls.signal(processDescriptor: pidfd, signal)
                return
            } catch {
                guard error.code == ENOSYS else { return }  // ESRCH: it has exited already
            }
        }
        Syscalls.kill(worker(index).pid, signal)
    }

    /// Reaps every worker that has exited (only our own workers, by pid: an embedding program's other children are
    /// left alone).
    func reapChildren() {
        for index in slots.indices where worker(index).hasProcess {
            reapIfExited(slot: index)
        }
        if configuration.reapsOrphans { reapOrphans() }
    }

    /// Reaps every exited child that is not a worker (``Configuration/reapsOrphans``): orphans adopted as PID 1 or as
    /// a subreaper, a worker's own children. Each is looked at before it is reaped (`WNOWAIT`), so a worker is never
    /// reaped here by mistake: an exited worker goes the workers' way, with its slot told.
    func reapOrphans() {
        for _ in 0..<256 {
            guard let pid = Syscalls.exitedChild() else { return }
            if let index = machine.workers.firstIndex(where: { $0.hasProcess && $0.pid == pid }) {
                reapIfExited(slot: index)
                continue
            }
            guard case .exited(let code, let signaled, _) = Syscalls.reap(pid) else { return }
            orphansReaped &+= 1
            logger.debug(
                "reaped a child that is not a worker",
                metadata: ["child.pid": "\(pid)", signaled ? "child.signal" : "child.exit-code": "\(signaled ? code - 128 : code)"])
        }
    }

    /// Reaps the worker in `slot` if it has exited: takes back what it never received, then tells the machine.
    ///
    /// Through its pidfd where there is one (`waitid(P_PIDFD)`), by pid elsewhere. A worker that is not ours to wait
    /// for any more (`ECHILD`: the kernel reaped it because SIGCHLD was ignored, or another waiter did) is gone just
    /// the same, with its exit status unknown: its pidfd must leave the epoll set, which would report it readable
    /// forever, and the machine replaces it.
    func reapIfExited(slot index: Int) {
        let reaped = worker(index)
        guard reaped.hasProcess else { return }
        let status =
            slots[index].processDescriptor.flatMap { Syscalls.reap(processDescriptor: $0) } ?? Syscalls.reap(reaped.pid)
        let ended: SupervisorMachine.Exit
        var cpuSeconds: Double?
        switch status {
        case .running: return
        case .exited(let code, let signaled, let cpu):
            ended = signaled ? .signal(code - 128) : .code(code)
            cpuSeconds = cpu
        case .gone: ended = .unknown
        }
        // Its last figures join its slot's totals in `/metrics` (a spawn resets the slot's own counts).
        metrics.workerLeft(
            slot: index, dispatched: dispatcher.lanes[index].dispatched, handled: slots[index].handled, cpuSeconds: cpuSeconds)
        disconnect(slot: index)
        detach(slot: index)
        if let pidfd = slots[index].processDescriptor {
            Syscalls.epollRemove(epoll, pidfd)
            Syscalls.close(pidfd)
            slots[index].processDescriptor = nil
        }
        logger.info(
            "worker \(ended.text)",
            metadata: ["worker.id": "\(reaped.id)", "worker.pid": "\(reaped.pid)",
                       "worker.intended": "\(reaped.exitIntended)"])
        emit(.exit(info(index), code: ended.code, signal: ended.signal, intended: reaped.exitIntended))
        submit(.exited(slot: index, exit: ended, now: Syscalls.monotonicNanoseconds(), random: Double.random(in: 0..<1)))
    }
}
