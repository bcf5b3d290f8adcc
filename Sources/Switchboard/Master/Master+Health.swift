import CSwitchboardLinux
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The master's listeners for load balancers (`--health`, `--agent`) and the probes being answered on its loop.
struct HealthServer {
    struct Probe {
        var fd: CInt
        var bytes: [UInt8] = []
        /// A prober silent until then is an agent-check that sends nothing: it gets the agent line.
        var silentUntil: UInt64
        /// A probe still unanswered then is closed.
        var giveUpAt: UInt64
    }

    var listener: CInt = -1
    var agentListener: CInt = -1
    var probes: [Probe] = []

    /// Probes answered at once; more are closed on arrival.
    static let maxProbes = 64
    static let agentSilence: UInt64 = 200_000_000
    static let timeout: UInt64 = 2_000_000_000
}

extension Master {
    /// Binds `--health` and `--agent`.
    /// - Throws: ``SwitchboardError`` when an address cannot be bound.
    func bindHealth() throws(SwitchboardError) {
        for (flag, text) in [("--health", configuration.health), ("--agent", configuration.agent)] {
            guard let text, let address = Configuration.address(text) else { continue }
            let fd: CInt
            do {
                fd = try Syscalls.listenTCP(host: address.host, port: address.port, backlog: 64, reusePort: false).fd
                try Syscalls.epollAdd(
                    epoll, fd, events: sb_EPOLLIN, token: flag == "--health" ? Token.health : Token.agent)
            } catch {
                let reason = error.code == EADDRINUSE ? "is in use" : "cannot be bound: \(error.reason)"
                throw SwitchboardError(error.code == EADDRINUSE ? .portInUse : .system, "\(flag) \(text) \(reason)")
            }
            if flag == "--health" { health.listener = fd } else { health.agentListener = fd }
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

    /// Accepts probes. On the agent port each gets its line at once; on the health port each is read first.
    func acceptProbes(agent: Bool) {
        let listener = agent ? health.agentListener : health.listener
        let now = Syscalls.monotonicNanoseconds()
        for _ in 0..<16 {
            guard case .done(let fd)? = try? Syscalls.accept(listener) else { return }
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
                .init(fd: fd, silentUntil: now &+ HealthServer.agentSilence, giveUpAt: now &+ HealthServer.timeout))
        }
    }

    /// Reads what a prober sent and answers once it is a whole request (or an agent's line).
    func readProbe(_ fd: CInt) {
        guard let index = health.probes.firstIndex(where: { $0.fd == fd }) else { return }
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
        let probe = health.probes.remove(at: index)
        Syscalls.epollRemove(epoll, fd)
        if ended && probe.bytes.isEmpty {
            Syscalls.close(fd)  // a bare TCP check
            return
        }
        answer(fd, HealthProbe.response(to: request, readiness: readiness))
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
        health.probes.map { $0.bytes.isEmpty ? min($0.silentUntil, $0.giveUpAt) : $0.giveUpAt }.min()
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
        for fd in [health.listener, health.agentListener] where fd >= 0 { Syscalls.close(fd) }
        health.listener = -1
        health.agentListener = -1
    }
}
