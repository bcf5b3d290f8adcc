import CSwitchboardLinux
import Logging

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

#if canImport(Glibc)
import Glibc
#endif

/// The master's control socket (`--control-socket`) and the clients being answered on its loop.
struct ControlServer {
    struct Client {
        var fd: CInt
        var bytes: [UInt8] = []
        var giveUpAt: UInt64
    }

    var listener: CInt = -1
    var path: String?
    var clients: [Client] = []
    /// Out of descriptors or memory: the listener is not watched until then (``AcceptBackoff``).
    var acceptsResumeAt: UInt64?
    /// Accepts have paused since the last client was accepted: the pauses of one shortage are logged once.
    var acceptsPaused = false

    static let maxClients = 16
    static let timeout: UInt64 = 2_000_000_000
}

extension Master {
    /// Binds `--control-socket`: mode 0600, and each client is checked with `SO_PEERCRED`.
    /// - Throws: ``SwitchboardError`` when it cannot be bound.
    func bindControl() throws(SwitchboardError) {
        guard let path = configuration.controlSocket else { return }
        do {
            let fd = try Syscalls.listenUnix(path)
            try Syscalls.epollAdd(epoll, fd, events: sb_EPOLLIN, token: Token.controlSocket)
            controlServer.listener = fd
            controlServer.path = path
        } catch {
            let reason =
                error.code == EADDRINUSE ? "another master is listening there" : error.reason
            throw SwitchboardError(
                error.code == EADDRINUSE ? .portInUse : .system, "--control-socket \(path): \(reason)")
        }
        logger.info("control socket ready", metadata: ["controlServer.path": "\(path)"])
    }

    func acceptControlClients() {
        let now = Syscalls.monotonicNanoseconds()
        for _ in 0..<16 {
            let fd: CInt
            do {
                guard case .done(let accepted) = try Syscalls.accept(controlServer.listener) else { return }
                fd = accepted
            } catch {
                pauseControlAccepts(after: error, now: now)
                return
            }
            if controlServer.acceptsPaused {
                controlServer.acceptsPaused = false
                logger.info("control socket: accepting clients again")
            }
            let own = Syscalls.effectiveUID
            guard let uid = Syscalls.peerUID(fd), uid == own || uid == 0 else {
                let uid = Syscalls.peerUID(fd).map(String.init) ?? "unknown"
                logger.warning("control socket: refused a client with uid \(uid)")
                reply(fd, "error: uid \(uid) may not control this master: only uid \(own) and root may\n")
                continue
            }
            guard controlServer.clients.count < ControlServer.maxClients,
                (try? Syscalls.epollAdd(epoll, fd, events: sb_EPOLLIN, token: Token.controlClient(fd))) != nil
            else {
                reply(fd, "error: too many control clients at once; try again\n")
                continue
            }
            controlServer.clients.append(.init(fd: fd, giveUpAt: now &+ ControlServer.timeout))
        }
    }

    /// Out of descriptors or memory, as the main and probe listeners do: the control socket is not watched for
    /// ``AcceptBackoff/pause`` (epoll would report it again at once, and the loop would spin); its backlog holds the
    /// clients meanwhile. Logged once until a client is accepted again. Any other failure concerns one client only.
    private func pauseControlAccepts(after error: SystemCallError, now: UInt64) {
        guard let resume = AcceptBackoff.resume(after: error.code, now: now) else { return }
        if !controlServer.acceptsPaused {
            let pause = AcceptBackoff.pause / 1_000_000
            logger.warning(
                "control socket: accept failed: \(error.reason); pausing control accepts for \(pause) ms at a time")
        }
        controlServer.acceptsPaused = true
        controlServer.acceptsResumeAt = resume
        try? Syscalls.epollModify(epoll, controlServer.listener, events: 0, token: Token.controlSocket)
    }

    /// Watches the control socket again once its pause is over.
    func resumeControlAccepts(now: UInt64) {
        guard let resume = controlServer.acceptsResumeAt, resume <= now else { return }
        controlServer.acceptsResumeAt = nil
        try? Syscalls.epollModify(epoll, controlServer.listener, events: sb_EPOLLIN, token: Token.controlSocket)
    }

    /// Reads one command line and answers it.
    func readControlClient(_ fd: CInt) {
        guard let index = controlServer.clients.firstIndex(where: { $0.fd == fd }) else { return }
        var chunk = [UInt8](repeating: 0, count: 512)
        var ended = false
        while controlServer.clients[index].bytes.count <= ControlCommand.maxLine {
            guard case .done(let count)? = try? Syscalls.read(fd, into: &chunk, at: 0) else { break }
            if count == 0 {
                ended = true
                break
            }
            controlServer.clients[index].bytes.append(contentsOf: chunk[0..<count])
        }
        let bytes = controlServer.clients[index].bytes
        let newline = bytes.firstIndex(of: UInt8(ascii: "\n"))
        guard newline != nil || ended || bytes.count > ControlCommand.maxLine else { return }
        controlServer.clients.remove(at: index)
        Syscalls.epollRemove(epoll, fd)
        guard let newline, newline <= ControlCommand.maxLine else {
            reply(fd, bytes.count > ControlCommand.maxLine
                ? "error: command longer than \(ControlCommand.maxLine) bytes\n" : "error: no command (end the line with a newline)\n")
            return
        }
        let line = String(decoding: bytes[0..<newline], as: UTF8.self).split(separator: "\r")
            .first.map(String.init) ?? ""
        do {
            reply(fd, try execute(ControlCommand(line: line)))
        } catch {
            reply(fd, "error: \(error.message)\n")
        }
    }

    /// Closes clients that did not finish their line in time.
    func expireControlClients(now: UInt64) {
        controlServer.clients.removeAll { client in
            guard client.giveUpAt <= now else { return false }
            Syscalls.epollRemove(epoll, client.fd)
            reply(client.fd, "error: no command within 2 seconds\n")
            return true
        }
    }

    /// When the next client or the end of a pause needs attention.
    var nextControlDeadline: UInt64? {
        let client = controlServer.clients.map(\.giveUpAt).min()
        guard let resume = controlServer.acceptsResumeAt else { return client }
        return min(client ?? .max, resume)
    }

    /// Does what `command` asks, exactly (no coalescing as with signals), and says what happened.
    private func execute(_ command: ControlCommand) -> String {
        let now = Syscalls.monotonicNanoseconds()
        switch command {
        case .status(let json):
            let current = status(now: now)
            guard json else { return "ok\n" + current.table }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let data = (try? encoder.encode(current)) ?? Data("{}".utf8)
            return "ok\n" + String(decoding: data, as: UTF8.self) + "\n"
        case .reload:
            guard machine.state == .running else { return "error: the master is stopping\n" }
            let queued = machine.reload != nil
            submit(.reload(now: now))
            return queued
                ? "ok\nreload queued: it starts when the one running (generation \(machine.generation)) ends\n"
                : "ok\nrolling reload to generation \(machine.generation) started\n"
        case .stop:
            guard machine.state == .running else { return "ok\nalready stopping\n" }
            logger.info("stopping gracefully (control socket)")
            submit(.stop(exitCode: 0, now: now, escalate: false))
            return "ok\nstopping gracefully\n"
        case .scale(let count):
            return scale(to: count, asked: command, now: now)
        case .scaleBy(let delta):
            return scale(to: machine.target + delta, asked: command, now: now)
        }
    }

    private func scale(to count: Int, asked command: ControlCommand, now: UInt64) -> String {
        guard machine.state == .running else { return "error: the master is stopping\n" }
        guard count >= 1 else { return "error: at least one worker stays (the target is \(machine.target))\n" }
        guard count <= Configuration.maxWorkers else {
            return "error: \(command.line) would make \(count) workers: at most \(Configuration.maxWorkers) may run "
                + "(the target is \(machine.target))\n"
        }
        let before = machine.target
        submit(.scaleTo(count: count, now: now))
        return "ok\nworkers: \(before) -> \(machine.target)\n"
    }

    /// Everything `switchboard status` shows.
    func status(now: UInt64) -> MasterStatus {
        let stateText =
            switch machine.state {
            case .running: machine.isStopAnnounced ? "stop announced" : "running"
            case .stopping: "stopping"
            case .finished: "stopped"
            }
        let counters = dispatcher.counters
        let queue = listener >= 0 && passesDescriptors ? Syscalls.listenQueue(listener) : nil
        for index in slots.indices { dispatcher.refresh(index) }  // what the workers took since the last look
        var workers: [MasterStatus.Worker] = []
        for index in machine.workers.indices where machine.workers[index].hasProcess {
            let worker = machine.workers[index]
            let usage = Syscalls.processUsage(worker.pid)
            let phase =
                switch worker.phase {
                case .starting: "starting"
                case .ready: "ready"
                case .draining: "draining"
                case .exiting, .empty: "exiting"
                }
            workers.append(
                MasterStatus.Worker(
                    id: worker.id, pid: worker.pid, slot: index, generation: worker.generation, state: phase,
                    uptimeSeconds: Double(now &- worker.startedAt) / 1e9, restarts: worker.restarts,
                    openConnections: dispatcher.lanes[index].open, queuedConnections: dispatcher.lanes[index].queued,
                    dispatched: dispatcher.lanes[index].dispatched, cpuSeconds: usage?.cpuSeconds ?? 0,
                    residentBytes: usage?.residentBytes ?? 0, build: slots[index].build))
        }
        return MasterStatus(
            version: Cluster.version, build: Cluster.build, workerExecutable: configuration.workerExecutable,
            pid: getpid(), mode: configuration.mode.name, port: port,
            uptimeSeconds: Double(now &- startedAt) / 1e9, state: stateText,
            reload: machine.reload.map { _ in "generation \(machine.generation)" },
            targetWorkers: machine.target, readyWorkers: machine.readyCount, backlogDepth: queue?.depth,
            backlogLimit: queue?.limit, dispatched: counters.dispatched, takenBack: counters.takenBack,
            redispatched: counters.redispatched, stolen: counters.stolen,
            workers: workers)
    }

    private func reply(_ fd: CInt, _ text: String) {
        let bytes = Array(text.utf8)
        var offset = 0
        // Small answers: a few writes at most; a client that does not read them is not waited for.
        for _ in 0..<64 where offset < bytes.count {
            guard case .done(let written)? = try? Syscalls.write(fd, bytes, from: offset, to: bytes.count) else { break }
            offset += written
        }
        Syscalls.close(fd)
    }

    /// Closes the socket (and removes its file) and every client.
    func closeControl() {
        for client in controlServer.clients { Syscalls.close(client.fd) }
        controlServer.clients.removeAll()
        controlServer.acceptsResumeAt = nil
        if controlServer.listener >= 0 {
            Syscalls.close(controlServer.listener)
            controlServer.listener = -1
        }
        if let path = controlServer.path {
            Syscalls.unlink(path)
            controlServer.path = nil
        }
    }
}
