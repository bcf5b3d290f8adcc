import CSwitchboardLinux
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The master's control socket (`--control-socket`): `switchboard status`, `reload`, `scale`, `stop`, one line per
/// client, answered on the master's loop.
///
/// It owns its descriptors (the socket, its file and every client: ``close()`` closes them all, and so does its
/// deinit), each client's deadline, the `SO_PEERCRED` check and the pause of its accepts after a shortage of
/// descriptors. It knows nothing of the master's state: a whole line is parsed into a ``ControlCommand`` and handed to
/// the `execute` closure of ``handle(token:events:execute:)``, which performs it and returns the reply text.
///
/// One thread; every call is non-blocking.
final class ControlServer {
    private struct Client {
        var fd: CInt
        var bytes: [UInt8] = []
        var giveUpAt: UInt64
    }

    static let maxClients = 16
    static let timeout: UInt64 = 2_000_000_000

    /// The byte above the server's token: the socket, or a client (its descriptor in the bits above).
    private static let listenerKind: UInt64 = 0
    private static let clientKind: UInt64 = 1

    private let epoll: CInt
    private let token: UInt64
    private let logger: Logger
    private var listener = Descriptor(-1)
    /// The socket's file, removed by ``close()``; nil when none was bound.
    private var path: String?
    private var clients: [Client] = []
    /// Out of descriptors or memory: the listener is not watched until then (``AcceptBackoff``).
    private var acceptsResumeAt: UInt64?
    /// Accepts have paused since the last client was accepted: the pauses of one shortage are logged once.
    private var acceptsPaused = false

    /// - Parameters:
    ///   - epoll: The master's epoll set: the server adds and removes its own descriptors.
    ///   - token: The low byte of every epoll token the server's descriptors carry; the master routes those events
    ///     to ``handle(token:events:execute:)``.
    init(epoll: CInt, token: UInt64, logger: Logger) {
        self.epoll = epoll
        self.token = token
        self.logger = logger
    }

    deinit {
        close()
    }

    private var listenerToken: UInt64 { Self.listenerKind << 8 | token }

    private func clientToken(_ fd: CInt) -> UInt64 {
        UInt64(UInt32(bitPattern: fd)) << 16 | Self.clientKind << 8 | token
    }

    /// Binds `path`: mode 0600, and each client is checked with `SO_PEERCRED`.
    /// - Throws: ``SwitchboardError`` when it cannot be bound.
    func bind(path: String) throws(SwitchboardError) {
        do {
            let fd = try Syscalls.listenUnix(path)
            listener = Descriptor(fd)
            self.path = path
            try Syscalls.epollAdd(epoll, fd, events: sb_EPOLLIN, token: listenerToken)
        } catch {
            let reason =
                error.code == EADDRINUSE ? "another master is listening there" : error.reason
            throw SwitchboardError(
                error.code == EADDRINUSE ? .portInUse : .system, "--control-socket \(path): \(reason)")
        }
        logger.info("control socket ready", metadata: ["controlServer.path": "\(path)"])
    }

    /// The socket and its path, for a master's upgrade (``Handover``); nil when none is bound.
    var handed: Handed? {
        guard listener.isValid, let path else { return nil }
        return Handed(fd: listener.raw, path: path)
    }

    struct Handed: Codable, Equatable {
        var fd: CInt
        var path: String
    }

    /// Takes over the socket another image of the master bound: clients that connected meanwhile wait in its
    /// backlog and are answered now.
    func adopt(_ handed: Handed) throws(SwitchboardError) {
        listener = Descriptor(handed.fd)
        path = handed.path
        do {
            try Syscalls.epollAdd(epoll, handed.fd, events: sb_EPOLLIN, token: listenerToken)
        } catch {
            throw SwitchboardError(.system, "cannot watch the handed-over control socket: \(error)")
        }
    }

    // MARK: events

    /// Acts on an epoll event whose token carries the server's low byte: accepts clients, or reads a client's line.
    /// - Parameter execute: Performs a command read from a client and returns the reply it is sent. Called after the
    ///   client is out of the server's hands, so it may do anything the master may.
    func handle(token: UInt64, events: UInt32, execute: (ControlCommand) -> String) {
        switch (token >> 8) & 0xff {
        case Self.listenerKind: accept()
        case Self.clientKind: read(CInt(truncatingIfNeeded: token >> 16), execute: execute)
        default: break
        }
    }

    private func accept() {
        guard listener.isValid else { return }
        let now = Syscalls.monotonicNanoseconds()
        for _ in 0..<16 {
            let fd: CInt
            do {
                guard case .done(let accepted) = try Syscalls.accept(listener.raw) else { return }
                fd = accepted
            } catch {
                pauseAccepts(after: error, now: now)
                return
            }
            if acceptsPaused {
                acceptsPaused = false
                logger.info("control socket: accepting clients again")
            }
            let own = Syscalls.effectiveUID
            guard let uid = Syscalls.peerUID(fd), uid == own || uid == 0 else {
                let uid = Syscalls.peerUID(fd).map(String.init) ?? "unknown"
                logger.warning("control socket: refused a client with uid \(uid)")
                reply(fd, "error: uid \(uid) may not control this master: only uid \(own) and root may\n")
                continue
            }
            guard clients.count < Self.maxClients,
                (try? Syscalls.epollAdd(epoll, fd, events: sb_EPOLLIN, token: clientToken(fd))) != nil
            else {
                reply(fd, "error: too many control clients at once; try again\n")
                continue
            }
            clients.append(Client(fd: fd, giveUpAt: now &+ Self.timeout))
        }
    }

    /// Out of descriptors or memory, as the main and probe listeners do: the control socket is not watched for
    /// ``AcceptBackoff/pause`` (epoll would report it again at once, and the loop would spin); its backlog holds the
    /// clients meanwhile. Logged once until a client is accepted again. Any other failure concerns one client only.
    private func pauseAccepts(after error: SystemCallError, now: UInt64) {
        guard let resume = AcceptBackoff.resume(after: error.code, now: now) else { return }
        if !acceptsPaused {
            let pause = AcceptBackoff.pause / 1_000_000
            logger.warning(
                "control socket: accept failed: \(error.reason); pausing control accepts for \(pause) ms at a time")
        }
        acceptsPaused = true
        acceptsResumeAt = resume
        try? Syscalls.epollModify(epoll, listener.raw, events: 0, token: listenerToken)
    }

    /// Reads one command line and answers it.
    private func read(_ fd: CInt, execute: (ControlCommand) -> String) {
        guard let index = clients.firstIndex(where: { $0.fd == fd }) else { return }
        var chunk = [UInt8](repeating: 0, count: 512)
        var ended = false
        while clients[index].bytes.count <= ControlCommand.maxLine {
            guard case .done(let count)? = try? Syscalls.read(fd, into: &chunk, at: 0) else { break }
            if count == 0 {
                ended = true
                break
            }
            clients[index].bytes.append(contentsOf: chunk[0..<count])
        }
        let bytes = clients[index].bytes
        let newline = bytes.firstIndex(of: UInt8(ascii: "\n"))
        guard newline != nil || ended || bytes.count > ControlCommand.maxLine else { return }
        clients.remove(at: index)
        Syscalls.epollRemove(epoll, fd)
        guard let newline, newline <= ControlCommand.maxLine else {
            reply(
                fd,
                bytes.count > ControlCommand.maxLine
                    ? "error: command longer than \(ControlCommand.maxLine) bytes\n"
                    : "error: no command (end the line with a newline)\n")
            return
        }
        let line =
            String(decoding: bytes[0..<newline], as: UTF8.self).split(separator: "\r")
            .first.map(String.init) ?? ""
        do {
            reply(fd, execute(try ControlCommand(line: line)))
        } catch {
            reply(fd, "error: \(error.message)\n")
        }
    }

    /// Writes `text` and closes.
    private func reply(_ fd: CInt, _ text: String) {
        let bytes = Array(text.utf8)
        var offset = 0
        // Small answers: a few writes at most; a client that does not read them is not waited for.
        for _ in 0..<64 where offset < bytes.count {
            guard case .done(let written)? = try? Syscalls.write(fd, bytes, from: offset, to: bytes.count) else {
                break
            }
            offset += written
        }
        Syscalls.close(fd)
    }

    // MARK: timers

    /// When ``runTimers(now:)`` has something to do next (monotonic nanoseconds), or nil. Asked at every wake-up of
    /// the master, so a plain loop: no array is built.
    func nextDeadline(now: UInt64) -> UInt64? {
        var next = acceptsResumeAt
        for client in clients { next = min(next ?? .max, client.giveUpAt) }
        return next
    }

    /// Watches the socket again once its pause is over, and closes clients that did not finish their line in time.
    func runTimers(now: UInt64) {
        if let resume = acceptsResumeAt, resume <= now {
            acceptsResumeAt = nil
            try? Syscalls.epollModify(epoll, listener.raw, events: sb_EPOLLIN, token: listenerToken)
        }
        guard !clients.isEmpty else { return }
        clients.removeAll { client in
            guard client.giveUpAt <= now else { return false }
            Syscalls.epollRemove(epoll, client.fd)
            reply(client.fd, "error: no command within 2 seconds\n")
            return true
        }
    }

    // MARK: closing

    /// Closes the socket (and removes its file) and every client. Idempotent.
    func close() {
        for client in clients { Syscalls.close(client.fd) }
        clients.removeAll()
        acceptsResumeAt = nil
        listener = Descriptor(-1)  // the old one closes as it is replaced
        if let path {
            Syscalls.unlink(path)
            self.path = nil
        }
    }
}
