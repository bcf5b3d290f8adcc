import CSwitchboardLinux
import Logging
import Switchboard

/// The built-in worker's connections and the work done on them at every event: the table, the read buffer and the
/// count of requests answered, owned by ``HTTP1Server``'s loop.
///
/// A noncopyable struct, as the master's `ConnectionDispatcher` is. Inside its mutating methods the compiler checks
/// exclusive access, so a connection's path pays one run-time check per call from the server instead of one per
/// stored property of the server (a class) it touches: 9.2 checks a connection, about 980 instructions, before this
/// type (issue 23, `BENCHMARKS.md`). And a struct that cannot be copied cannot become a second owner of the
/// descriptors in its table: each is closed by ``close(_:)`` exactly once.
///
/// Not generic: the server's `Responder` is a parameter of the methods that answer, so the type's layout needs no
/// metadata looked up at run time when the (unspecialized) server loop reaches it.
struct HTTP1Connections: ~Copyable {
    /// The worker's epoll set, where a connection is added once it has to wait; set when the server's loop starts.
    var epoll: CInt = -1
    let logger: Logger
    private var table = ConnectionTable()
    private var readBuffer = [UInt8](repeating: 0, count: 64 * 1024)
    /// Requests answered in total: what the heartbeats report as handled.
    private(set) var answered: UInt64 = 0
    /// Whether a request was answered on a connection that had been answered before (kept alive, or pipelined behind
    /// its first request) since ``takeAnsweredKeptAlive()`` last looked: what makes the loop yield (``LoopRest``).
    private var answeredKeptAlive = false
    /// Whether a connection is read as soon as it is adopted (``AdoptRead``).
    private var adoptRead = AdoptRead()
    /// Whether the connections come with `TCP_NODELAY` from the listener they were accepted on (the master's, or
    /// this worker's own): then ``adopt(_:_:now:responder:)`` does not set it on each (a `setsockopt`, about 0.37 µs
    /// here).
    var connectionsHaveNoDelay: Bool

    init(logger: Logger, connectionsHaveNoDelay: Bool = false) {
        self.logger = logger
        self.connectionsHaveNoDelay = connectionsHaveNoDelay
    }

    /// Connections open.
    var count: Int { table.count }

    /// Whether a request was answered on a connection that had been answered before since the last call.
    mutating func takeAnsweredKeptAlive() -> Bool {
        defer { answeredKeptAlive = false }
        return answeredKeptAlive
    }

    /// One past the highest descriptor the table has room for.
    var end: CInt { table.end }

    func contains(_ fd: CInt) -> Bool { table.contains(fd) }

    /// Takes a connection with its new machine and answers what it already sent, when connections usually come with
    /// their request (``AdoptRead``); otherwise it waits in the epoll set for it. Unless the listener gave it
    /// `TCP_NODELAY` (``connectionsHaveNoDelay``) it sets that first, which succeeds only on a TCP socket; where it
    /// fails, a descriptor that is not a stream socket at all is closed and not adopted.
    /// - Returns: ``AfterIO/close`` when the connection is to be closed at once (``close(_:)``); nil when `fd` was
    ///   not a stream socket (closed here).
    mutating func adopt<Responder: HTTP1Responder>(
        _ fd: CInt, _ machine: consuming HTTP1Connection, now: UInt64, responder: Responder
    ) -> AfterIO? {
        guard connectionsHaveNoDelay || Syscalls.setNoDelay(fd) || Syscalls.isStreamSocket(fd) else {
            Syscalls.close(fd)
            return nil
        }
        table.insert(fd, HTTP1ServerEntry(machine: machine, watching: nil))
        if adoptRead.readNow() {
            let (next, found) = read(fd, now: now, responder: responder)
            adoptRead.record(found: found)
            guard next == .keep else { return .close }
        }
        return service(fd, now: now, responder: responder)
    }

    /// Reads what the machine wants read, answering as it goes.
    mutating func readable<Responder: HTTP1Responder>(_ fd: CInt, now: UInt64, responder: Responder) -> AfterIO {
        read(fd, now: now, responder: responder).next
    }

    /// ``readable(_:now:responder:)``, and whether the socket had anything: data, the end of the stream or an error.
    private mutating func read<Responder: HTTP1Responder>(
        _ fd: CInt, now: UInt64, responder: Responder
    ) -> (next: AfterIO, found: Bool) {
        // The body works on the table's slot; the buffer and the count are moved out meanwhile (no copy).
        var buffer: [UInt8] = []
        swap(&buffer, &readBuffer)
        defer { swap(&buffer, &readBuffer) }
        var answeredNow = 0
        var keptAlive = false
        var found = false
        let next = table.withEntry(fd) { entry -> AfterIO in
            while entry.machine.wantsRead {
                let result: NonBlocking<Int>
                do {
                    result = try Syscalls.read(fd, into: &buffer, at: 0)
                } catch {
                    found = true
                    return .close  // reset by the client
                }
                guard case .done(let count) = result else { return .keep }
                found = true
                if count == 0 {
                    entry.machine.receivedEnd(now: now)
                    return .keep
                }
                let before = entry.machine.answered
                entry.machine.received(buffer, count: count, now: now, responder: responder)
                let after = entry.machine.answered
                answeredNow += after - before
                // Beyond the connection's first request: kept alive, or pipelined behind the first.
                if after > max(before, 1) { keptAlive = true }
                guard Self.flush(&entry, fd, now: now, responder: responder) else { return .close }
                if count < buffer.count { return .keep }  // drained; epoll says when there is more
            }
            return .keep
        }
        answered &+= UInt64(answeredNow)
        if keptAlive { answeredKeptAlive = true }
        return (next ?? .keep, found)
    }

    /// After anything happened to `fd`: writes what is queued, says when its machine is done, and watches what the
    /// machine wants next.
    mutating func service<Responder: HTTP1Responder>(_ fd: CInt, now: UInt64, responder: Responder) -> AfterIO {
        let epoll = self.epoll
        let logger = self.logger
        let next = table.withEntry(fd) { entry -> AfterIO in
            guard Self.flush(&entry, fd, now: now, responder: responder), !entry.machine.isFinished else { return .close }
            let wanted = (entry.machine.wantsRead ? sb_EPOLLIN : 0) | (entry.machine.wantsWrite ? sb_EPOLLOUT : 0)
            guard let watching = entry.watching else {
                // Its first wait. With no events wanted it joins too: epoll still reports a hang-up or an error.
                do {
                    try Syscalls.epollAdd(epoll, fd, events: wanted, token: HTTP1Token.connection(fd))
                } catch {
                    logger.warning("cannot watch a connection: \(error); closing it")
                    return .close
                }
                entry.watching = wanted
                return .keep
            }
            guard wanted != watching else { return .keep }
            entry.watching = wanted
            try? Syscalls.epollModify(epoll, fd, events: wanted, token: HTTP1Token.connection(fd))
            return .keep
        }
        return next ?? .keep
    }

    /// Writes what the machine has queued, as far as the socket takes it.
    /// - Returns: false when the write failed (the connection is to be closed).
    private static func flush<Responder: HTTP1Responder>(
        _ entry: inout HTTP1ServerEntry, _ fd: CInt, now: UInt64, responder: Responder
    ) -> Bool {
        while entry.machine.wantsWrite {
            do {
                guard
                    case .done(let written) = try Syscalls.write(
                        fd, entry.machine.output, from: entry.machine.outputOffset, to: entry.machine.output.count)
                else { return true }
                entry.machine.wrote(written, now: now, responder: responder)
            } catch {
                return false
            }
        }
        return true
    }

    /// Runs the timers of `fd`'s machine if they are due.
    /// - Returns: Whether they ran (the connection is then to be serviced).
    mutating func tick<Responder: HTTP1Responder>(_ fd: CInt, now: UInt64, responder: Responder) -> Bool {
        let logger = self.logger
        return table.withEntry(fd) { entry -> Bool in
            guard entry.machine.deadline <= now else { return false }
            entry.machine.tick(now: now, responder: responder)
            if let ending = entry.machine.ending, entry.machine.isFinished {
                logger.debug("closing a connection", metadata: ["connection.ending": "\(ending)"])
            }
            return true
        } ?? false
    }

    /// Tells `fd`'s machine to drain. - Returns: Whether `fd` is open (it is then to be serviced).
    mutating func drain(_ fd: CInt, now: UInt64) -> Bool {
        table.withEntry(fd) { $0.machine.drain(now: now) } != nil
    }

    /// Takes `fd` out of the table and of the epoll set, and closes it.
    /// - Returns: The connections still open, or nil when `fd` was not open (nothing was closed).
    mutating func close(_ fd: CInt) -> Int? {
        guard let removed = table.remove(fd) else { return nil }
        // Remove it explicitly: the master may still hold a copy of this socket, which would keep it in the set.
        if removed.watching != nil { Syscalls.epollRemove(epoll, fd) }
        Syscalls.close(fd)
        return table.count
    }
}
