import CSwitchboardLinux
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The master's listeners for load balancers (`--health`, `--agent`) and the probes being answered on its loop.
struct HealthServer {
    struct Probe {
        var fd: CInt
        /// A scrape of `--metrics` rather than a health probe.
        var metrics = false
        var bytes: [UInt8] = []
        /// An answer too large for one write: what is left, sent as the socket takes it.
        var output: [UInt8] = []
        var written = 0
        /// A prober silent until then is an agent-check that sends nothing: it gets the agent line.
        var silentUntil: UInt64
        /// A probe still unanswered then is closed.
        var giveUpAt: UInt64
    }

    var listener: CInt = -1
    var agentListener: CInt = -1
    var metricsListener: CInt = -1
    var probes: [Probe] = []
    /// Out of descriptors or memory: the listeners are not watched until then (``AcceptBackoff``).
    var acceptsResumeAt: UInt64?

    /// The listeners bound, with their tokens.
    var listeners: [(fd: CInt, token: UInt64)] {
        [(listener, Master.Token.health), (agentListener, Master.Token.agent), (metricsListener, Master.Token.metrics)]
            .filter { $0.fd >= 0 }
    }

    /// Probes answered at once; more are closed on arrival.
    static let maxProbes = 64
    static let agentSilence: UInt64 = 200_000_000
    static let timeout: UInt64 = 2_000_000_000
}

extension Master {
    /// Binds `--health` and `--agent`.
    /// - Throws: ``SwitchboardError`` when an address cannot be bound.
    func bindHealth() throws(SwitchboardError) {
        for (flag, text) in [
            ("--health", configuration.health), ("--agent", configuration.agent), ("--metrics", configuration.metrics),
        ] {
            guard let text, let address = Configuration.address(text) else { continue }
            let fd: CInt
            do {
                fd = try Syscalls.listenTCP(host: address.host, port: address.port, backlog: 64, reusePort: false).fd
                let token = flag == "--health" ? Token.health : flag == "--agent" ? Token.agent : Token.metrics
                try Syscalls.epollAdd(epoll, fd, events: sb_EPOLLIN, token: token)
            } catch {
                let reason = error.code == EADDRINUSE ? "is in use" : "cannot be bound: \(error.reason)"
                throw SwitchboardError(error.code == EADDRINUSE ? .portInUse : .system, "\(flag) \(text) \(reason)")
            }
            switch flag {
            case "--health": health.listener = fd
            case "--agent": health.agentListener = fd
            default: health.metricsListener = fd
            }
            let port = (try? Syscalls.localPort(fd)) ?? address.port
            logger.info(
                "answering load balancers",
                metadata: ["health.address": "\(text)", "health.kind": "\(flag)", "health.port": "\(port)"])
        }
    }

    /// What load balancers are told now.
    var readiness: HealthProbe.Readiness {
        HealthProbe.readiness(
            stopAnnounced: machine.isStopAnnounced, ready: machine.readyCount, target: machine.target)
    }

    /// Accepts probes. On the agent port each gets its line at once; on the health and metrics ports each is read
    /// first.
    func acceptProbes(agent: Bool, metrics: Bool = false) {
        let listener = agent ? health.agentListener : metrics ? health.metricsListener : health.listener
        let now = Syscalls.monotonicNanoseconds()
        for _ in 0..<16 {
            let fd: CInt
            do {
                guard case .done(let accepted) = try Syscalls.accept(listener) else { return }
                fd = accepted
            } catch {
                pauseProbeAccepts(after: error, now: now)
                return
            }
            if agent {
                answer(fd, HealthProbe.response(to: .agent, readiness: readiness))
                continue
            }
            guard health.probes.count < HealthServer.maxProbes,
                (try? Syscalls.epollAdd(epoll, fd, events: sb_EPOLLIN, token: Token.probe(fd))) != nil
            else {
                Syscalls.close(fd)
                continue
            }
            health.probes.append(
                .init(
                    fd: fd, metrics: metrics, silentUntil: metrics ? .max : now &+ HealthServer.agentSilence,
                    giveUpAt: now &+ HealthServer.timeout))
        }
    }

    /// Out of descriptors or memory, as the main listener does: the probe listeners are not watched for
    /// ``AcceptBackoff/pause`` (epoll would report them again at once, and the loop would spin); their backlogs hold
    /// the probes meanwhile. Any other failure concerns one probe only.
    private func pauseProbeAccepts(after error: SystemCallError, now: UInt64) {
        guard let resume = AcceptBackoff.resume(after: error.code, now: now) else { return }
        logger.warning(
            "probe accept failed: \(error.reason); pausing probe accepts for \(AcceptBackoff.pause / 1_000_000) ms")
        health.acceptsResumeAt = resume
        for (fd, token) in health.listeners { try? Syscalls.epollModify(epoll, fd, events: 0, token: token) }
    }

    /// Watches the probe listeners again once their pause is over.
    func resumeProbeAccepts(now: UInt64) {
        guard let resume = health.acceptsResumeAt, resume <= now else { return }
        health.acceptsResumeAt = nil
        for (fd, token) in health.listeners { try? Syscalls.epollModify(epoll, fd, events: sb_EPOLLIN, token: token) }
    }

    /// Reads what a prober sent and answers once it is a whole request (or an agent's line); writes the rest of a
    /// long answer when the socket takes more.
    func readProbe(_ fd: CInt, writable: Bool = false) {
        guard let index = health.probes.firstIndex(where: { $0.fd == fd }) else { return }
        if !health.probes[index].output.isEmpty {
            if writable { continueAnswer(at: index) }
            return
        }
        var chunk = [UInt8](repeating: 0, count: 1024)
        var ended = false
        while health.probes[index].bytes.count < HealthProbe.maxHead {
            guard case .done(let count)? = try? Syscalls.read(fd, into: &chunk, at: 0) else { break }
            if count == 0 {
                ended = true
                break
            }
            health.probes[index].bytes.append(contentsOf: chunk[0..<count])
        }
        let request = HealthProbe.classify(health.probes[index].bytes[...])
        if request == .incomplete && !ended { return }
        if health.probes[index].metrics {
            let answer = request == .http(method: "GET", path: "/metrics") || request == .http(method: "HEAD", path: "/metrics")
                ? HealthProbe.metricsResponse(scrapeMetrics(), head: request == .http(method: "HEAD", path: "/metrics"))
                : HealthProbe.http(404, "not found: /metrics\n", head: false)
            health.probes[index].output = answer
            continueAnswer(at: index)
            return
        }
        let probe = health.probes.remove(at: index)
        Syscalls.epollRemove(epoll, fd)
        if ended && probe.bytes.isEmpty {
            Syscalls.close(fd)  // a bare TCP check
            return
        }
        answer(fd, HealthProbe.response(to: request, readiness: readiness))
    }

    /// Writes what the socket takes of a long answer; closes once all of it went out.
    private func continueAnswer(at index: Int) {
        let fd = health.probes[index].fd
        while health.probes[index].written < health.probes[index].output.count {
            let probe = health.probes[index]
            guard case .done(let count)? = try? Syscalls.write(fd, probe.output, from: probe.written, to: probe.output.count)
            else {
                try? Syscalls.epollModify(epoll, fd, events: sb_EPOLLOUT, token: Token.probe(fd))
                return
            }
            health.probes[index].written += count
        }
        health.probes.remove(at: index)
        Syscalls.epollRemove(epoll, fd)
        Syscalls.close(fd)
    }

    /// Answers silent probers (agent-checks that send nothing) and closes the ones that took too long.
    func expireProbes(now: UInt64) {
        var index = 0
        while index < health.probes.count {
            let probe = health.probes[index]
            if probe.bytes.isEmpty && probe.silentUntil <= now {
                health.probes.remove(at: index)
                Syscalls.epollRemove(epoll, probe.fd)
                answer(probe.fd, HealthProbe.response(to: .agent, readiness: readiness))
            } else if probe.giveUpAt <= now {
                health.probes.remove(at: index)
                Syscalls.epollRemove(epoll, probe.fd)
                Syscalls.close(probe.fd)
            } else {
                index += 1
            }
        }
    }

    /// When the next probe needs attention.
    var nextProbeDeadline: UInt64? {
        let probe = health.probes.map { $0.bytes.isEmpty ? min($0.silentUntil, $0.giveUpAt) : $0.giveUpAt }.min()
        guard let resume = health.acceptsResumeAt else { return probe }
        return min(probe ?? .max, resume)
    }

    /// Writes `bytes` (small: one write) and closes.
    private func answer(_ fd: CInt, _ bytes: [UInt8]) {
        _ = try? Syscalls.write(fd, bytes, from: 0, to: bytes.count)
        Syscalls.close(fd)
    }

    /// Closes the listeners and every open probe.
    func closeHealth() {
        for probe in health.probes { Syscalls.close(probe.fd) }
        health.probes.removeAll()
        for fd in [health.listener, health.agentListener, health.metricsListener] where fd >= 0 { Syscalls.close(fd) }
        health.listener = -1
        health.agentListener = -1
        health.metricsListener = -1
    }
}

extension Master {
    /// Everything `/metrics` shows, rendered now.
    func scrapeMetrics() -> [UInt8] {
        let now = Syscalls.monotonicNanoseconds()
        for index in slots.indices { dispatcher.refresh(index) }  // what the workers took since the last look
        let counters = dispatcher.counters
        var workers: [MasterMetrics.Snapshot.Worker] = []
        var draining = 0
        for index in machine.workers.indices where machine.workers[index].isAttached {
            let worker = machine.workers[index]
            if worker.phase == .draining { draining += 1 }
            let usage = Syscalls.processUsage(worker.pid)
            workers.append(
                .init(
                    slot: index, open: dispatcher.lanes[index].open, queued: dispatcher.lanes[index].queued,
                    dispatched: dispatcher.lanes[index].dispatched, handled: slots[index].handled,
                    heartbeatAge: Double(now &- worker.lastHeartbeat) / 1e9, cpuSeconds: usage?.cpuSeconds ?? 0,
                    residentBytes: usage?.residentBytes ?? 0))
        }
        let snapshot = MasterMetrics.Snapshot(
            accepted: counters.accepted, dispatched: counters.dispatched, takenBack: counters.takenBack,
            redispatched: counters.redispatched, stolen: counters.stolen, listenQueue: listener >= 0 && passesDescriptors ? Syscalls.listenQueue(listener) : nil,
            configured: machine.target, ready: machine.readyCount, draining: draining, workers: workers)
        let own = Syscalls.processUsage(getpid())
        let uptime = Double(now &- startedAt) / 1e9
        return metrics.render(
            snapshot,
            process: (
                cpuSeconds: own?.cpuSeconds ?? 0, residentBytes: own?.residentBytes ?? 0,
                openFDs: Syscalls.openDescriptorCount(),
                maxFDs: descriptorLimit.soft > UInt64(Int.max) ? Int.max : Int(descriptorLimit.soft),
                startTime: Syscalls.wallClockSeconds() - uptime))
    }
}
