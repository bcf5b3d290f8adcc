import CSwitchboardLinux
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Answers load balancers and scrapers on the master's loop: the `--health`, `--agent` and `--metrics` listeners and
/// the probes being answered.
///
/// It owns its descriptors (the listeners and every accepted probe: ``close()`` closes them all, and so does its
/// deinit), each probe's deadlines, and the pause of its accepts after a shortage of descriptors. What it answers comes
/// from its owner, asked only when a probe needs it (``Source``): the readiness for `/readyz` and the agent line, the
/// metrics text for `/metrics`. The metrics listener is part of this server rather than one of its own: a scrape is a
/// probe with another answer, on the same accept, read, timeout and long-write machinery.
///
/// One thread; every call is non-blocking.
final class HealthServer {
    /// What the server asks its owner, when a probe needs an answer.
    protocol Source {
        /// What load balancers are told now.
        var readiness: HealthProbe.Readiness { get }

        /// Everything `/metrics` shows, rendered now.
        func scrapeMetrics() -> [UInt8]
    }

    /// The three listeners: what each answers.
    enum Kind: UInt64, CaseIterable {
        /// `--health`: HTTP probes (`/livez`, `/readyz`), and agent-checks.
        case health = 0
        /// `--agent`: HAProxy's agent-check, answered on accept.
        case agent = 1
        /// `--metrics`: `GET /metrics` in the Prometheus text format.
        case metrics = 2

        var flag: String {
            switch self {
            case .health: "--health"
            case .agent: "--agent"
            case .metrics: "--metrics"
            }
        }
    }

    private struct Probe {
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

    /// Probes answered at once; more are closed on arrival.
    static let maxProbes = 64
    static let agentSilence: UInt64 = 200_000_000
    static let timeout: UInt64 = 2_000_000_000

    /// The token a probe's events carry: its descriptor above the server's token.
    private static let probeKind: UInt64 = 3

    private let epoll: CInt
    private let token: UInt64
    private let logger: Logger
    private var healthListener = Descriptor(-1)
    private var agentListener = Descriptor(-1)
    private var metricsListener = Descriptor(-1)
    private var probes: [Probe] = []
    /// Out of descriptors or memory: the listeners are not watched until then (``AcceptBackoff``).
    private var acceptsResumeAt: UInt64?

    /// - Parameters:
    ///   - epoll: The master's epoll set: the server adds and removes its own descriptors.
    ///   - token: The low byte of every epoll token the server's descriptors carry (the byte above says which
    ///     listener or a probe, the bits above that a probe's descriptor); the master routes those events to
    ///     ``handle(token:events:source:)``.
    init(epoll: CInt, token: UInt64, logger: Logger) {
        self.epoll = epoll
        self.token = token
        self.logger = logger
    }

    deinit {
        close()
    }

    // MARK: listeners

    /// Binds `--health`, `--agent` and `--metrics` (those configured).
    /// - Throws: ``SwitchboardError`` when an address cannot be bound; the ones bound before stay until ``close()``.
    func bind(_ configuration: Configuration) throws(SwitchboardError) {
        for kind in Kind.allCases {
            let text: String? =
                switch kind {
                case .health: configuration.health
                case .agent: configuration.agent
                case .metrics: configuration.metrics
                }
            guard let text, let address = Configuration.address(text) else { continue }
            func failure(_ error: SystemCallError) -> SwitchboardError {
                let reason = error.code == EADDRINUSE ? "is in use" : "cannot be bound: \(error.reason)"
                let code: SwitchboardError.Code = error.code == EADDRINUSE ? .portInUse : .system
                return SwitchboardError(code, "\(kind.flag) \(text) \(reason)")
            }
            let fd: CInt
            do {
                fd = try Syscalls.listenTCP(host: address.host, port: address.port, backlog: 64, reusePort: false).fd
            } catch {
                throw failure(error)
            }
            switch kind {  // owned from here on
            case .health: healthListener = Descriptor(fd)
            case .agent: agentListener = Descriptor(fd)
            case .metrics: metricsListener = Descriptor(fd)
            }
            do {
                try Syscalls.epollAdd(epoll, fd, events: sb_EPOLLIN, token: listenerToken(kind))
            } catch {
                throw failure(error)
            }
            let port = (try? Syscalls.localPort(fd)) ?? address.port
            logger.info(
                "answering load balancers",
                metadata: ["health.address": "\(text)", "health.kind": "\(kind.flag)", "health.port": "\(port)"])
        }
    }

    /// The listeners, for a master's upgrade (``Handover``): the new image adopts them, so no probe is refused.
    struct Handed: Codable, Equatable {
        var health: CInt?
        var agent: CInt?
        var metrics: CInt?

        var descriptors: [CInt] { [health, agent, metrics].compactMap { $0 } }
    }

    var handed: Handed {
        func fd(_ kind: Kind) -> CInt? { listener(kind) >= 0 ? listener(kind) : nil }
        return Handed(health: fd(.health), agent: fd(.agent), metrics: fd(.metrics))
    }

    /// Takes over the listeners another image of the master bound.
    /// - Throws: ``SwitchboardError`` when one cannot be watched.
    func adopt(_ handed: Handed) throws(SwitchboardError) {
        for (kind, fd) in [(Kind.health, handed.health), (.agent, handed.agent), (.metrics, handed.metrics)] {
            guard let fd else { continue }
            switch kind {
            case .health: healthListener = Descriptor(fd)
            case .agent: agentListener = Descriptor(fd)
            case .metrics: metricsListener = Descriptor(fd)
            }
            do {
                try Syscalls.epollAdd(epoll, fd, events: sb_EPOLLIN, token: listenerToken(kind))
            } catch {
                throw SwitchboardError(.system, "cannot watch the handed-over \(kind.flag) listener: \(error)")
            }
        }
    }

    private func listener(_ kind: Kind) -> CInt {
        switch kind {
        case .health: healthListener.raw
        case .agent: agentListener.raw
        case .metrics: metricsListener.raw
        }
    }

    private func listenerToken(_ kind: Kind) -> UInt64 {
        kind.rawValue << 8 | token
    }

    private func probeToken(_ fd: CInt) -> UInt64 {
        UInt64(UInt32(bitPattern: fd)) << 16 | Self.probeKind << 8 | token
    }

    // MARK: events

    /// Acts on an epoll event whose token carries the server's low byte: accepts on a listener, or reads (or writes
    /// to) a probe.
    /// - Parameter source: Asked for the readiness or the metrics when a probe is answered.
    func handle(token: UInt64, events: UInt32, source: some Source) {
        let kind = (token >> 8) & 0xff
        if kind == Self.probeKind {
            read(CInt(truncatingIfNeeded: token >> 16), writable: events & sb_EPOLLOUT != 0, source: source)
        } else if let kind = Kind(rawValue: kind) {
            accept(kind, source: source)
        }
    }

    /// Accepts probes. On the agent port each gets its line at once; on the health and metrics ports each is read
    /// first.
    private func accept(_ kind: Kind, source: some Source) {
        let listener = listener(kind)
        guard listener >= 0 else { return }
        let now = Syscalls.monotonicNanoseconds()
        for _ in 0..<16 {
            let fd: CInt
            do {
                guard case .done(let accepted) = try Syscalls.accept(listener) else { return }
                fd = accepted
            } catch {
                pauseAccepts(after: error, now: now)
                return
            }
            if kind == .agent {
                answer(fd, HealthProbe.response(to: .agent, readiness: source.readiness))
                continue
            }
            guard probes.count < Self.maxProbes,
                (try? Syscalls.epollAdd(epoll, fd, events: sb_EPOLLIN, token: probeToken(fd))) != nil
            else {
                Syscalls.close(fd)
                continue
            }
            let metrics = kind == .metrics
            probes.append(
                Probe(
                    fd: fd, metrics: metrics, silentUntil: metrics ? .max : now &+ Self.agentSilence,
                    giveUpAt: now &+ Self.timeout))
        }
    }

    /// Out of descriptors or memory, as the main listener does: the probe listeners are not watched for
    /// ``AcceptBackoff/pause`` (epoll would report them again at once, and the loop would spin); their backlogs hold
    /// the probes meanwhile. Any other failure concerns one probe only.
    private func pauseAccepts(after error: SystemCallError, now: UInt64) {
        guard let resume = AcceptBackoff.resume(after: error.code, now: now) else { return }
        logger.warning(
            "probe accept failed: \(error.reason); pausing probe accepts for \(AcceptBackoff.pause / 1_000_000) ms")
        acceptsResumeAt = resume
        watchListeners(events: 0)
    }

    private func watchListeners(events: UInt32) {
        for kind in Kind.allCases where listener(kind) >= 0 {
            try? Syscalls.epollModify(epoll, listener(kind), events: events, token: listenerToken(kind))
        }
    }

    /// Reads what a prober sent and answers once it is a whole request (or an agent's line); writes the rest of a
    /// long answer when the socket takes more.
    private func read(_ fd: CInt, writable: Bool, source: some Source) {
        guard let index = probes.firstIndex(where: { $0.fd == fd }) else { return }
        if !probes[index].output.isEmpty {
            if writable { continueAnswer(at: index) }
            return
        }
        var chunk = [UInt8](repeating: 0, count: 1024)
        var ended = false
        while probes[index].bytes.count < HealthProbe.maxHead {
            guard case .done(let count)? = try? Syscalls.read(fd, into: &chunk, at: 0) else { break }
            if count == 0 {
                ended = true
                break
            }
            probes[index].bytes.append(contentsOf: chunk[0..<count])
        }
        let request = HealthProbe.classify(probes[index].bytes[...])
        if request == .incomplete && !ended { return }
        if probes[index].metrics {
            let get = request == .http(method: "GET", path: "/metrics")
            let head = request == .http(method: "HEAD", path: "/metrics")
            probes[index].output =
                get || head
                ? HealthProbe.metricsResponse(source.scrapeMetrics(), head: head)
                : HealthProbe.http(404, "not found: /metrics\n", head: false)
            continueAnswer(at: index)
            return
        }
        let probe = probes.remove(at: index)
        Syscalls.epollRemove(epoll, fd)
        if ended && probe.bytes.isEmpty {
            Syscalls.close(fd)  // a bare TCP check
            return
        }
        answer(fd, HealthProbe.response(to: request, readiness: source.readiness))
    }

    /// Writes what the socket takes of a long answer; closes once all of it went out.
    private func continueAnswer(at index: Int) {
        let fd = probes[index].fd
        while probes[index].written < probes[index].output.count {
            let probe = probes[index]
            guard
                case .done(let count)? = try? Syscalls.write(
                    fd, probe.output, from: probe.written, to: probe.output.count)
            else {
                try? Syscalls.epollModify(epoll, fd, events: sb_EPOLLOUT, token: probeToken(fd))
                return
            }
            probes[index].written += count
        }
        probes.remove(at: index)
        Syscalls.epollRemove(epoll, fd)
        Syscalls.close(fd)
    }

    /// Writes `bytes` (small: one write) and closes.
    private func answer(_ fd: CInt, _ bytes: [UInt8]) {
        _ = try? Syscalls.write(fd, bytes, from: 0, to: bytes.count)
        Syscalls.close(fd)
    }

    // MARK: timers

    /// When ``runTimers(now:source:)`` has something to do next (monotonic nanoseconds), or nil. Asked at every
    /// wake-up of the master, so a plain loop: no array is built.
    func nextDeadline(now: UInt64) -> UInt64? {
        var next = acceptsResumeAt
        for probe in probes {
            next = min(next ?? .max, probe.bytes.isEmpty ? min(probe.silentUntil, probe.giveUpAt) : probe.giveUpAt)
        }
        return next
    }

    /// Answers silent probers (agent-checks that send nothing), closes the ones that took too long, and watches the
    /// listeners again once their pause is over.
    /// - Parameter source: Asked for the readiness when a silent prober is answered.
    func runTimers(now: UInt64, source: some Source) {
        if !probes.isEmpty { expireProbes(now: now, source: source) }
        if let resume = acceptsResumeAt, resume <= now {
            acceptsResumeAt = nil
            watchListeners(events: sb_EPOLLIN)
        }
    }

    private func expireProbes(now: UInt64, source: some Source) {
        var index = 0
        while index < probes.count {
            let probe = probes[index]
            if probe.bytes.isEmpty && probe.silentUntil <= now {
                probes.remove(at: index)
                Syscalls.epollRemove(epoll, probe.fd)
                answer(probe.fd, HealthProbe.response(to: .agent, readiness: source.readiness))
            } else if probe.giveUpAt <= now {
                probes.remove(at: index)
                Syscalls.epollRemove(epoll, probe.fd)
                Syscalls.close(probe.fd)
            } else {
                index += 1
            }
        }
    }

    // MARK: closing

    /// Closes the listeners and every open probe. Idempotent.
    func close() {
        for probe in probes { Syscalls.close(probe.fd) }
        probes.removeAll()
        acceptsResumeAt = nil
        // Each old descriptor closes as it is replaced.
        healthListener = Descriptor(-1)
        agentListener = Descriptor(-1)
        metricsListener = Descriptor(-1)
    }
}
