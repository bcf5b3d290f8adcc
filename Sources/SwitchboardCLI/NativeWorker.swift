import CSwitchboardLinux
import Logging
import Switchboard

#if canImport(Glibc)
import Glibc
#endif

/// The built-in worker's default engine: one thread and one epoll set for the channel to the master, the worker's
/// own listener (in `reuseport` and `shared` modes) and every connection, answering each HTTP/1.1 request with
/// `Handled by worker: <pid>` from a response built once.
///
/// It receives passed connections on the thread that serves them (no hand-off between threads), reads what is
/// already waiting as soon as a connection arrives, and writes each response with one `send`. HTTP/1.1 as clients
/// use it: keep-alive (HTTP/1.0 only with `Connection: keep-alive`), pipelining (answers in order), `HEAD`, request
/// bodies with `Content-Length` (read and discarded), `Expect: 100-continue`. Malformed requests get 400, headers
/// over 16 KiB get 431 and `Transfer-Encoding` request bodies get 501, each followed by closing the connection.
/// On a drain it stops accepting, closes idle keep-alive connections at once, answers what is in flight (a
/// connection passed just before the drain gets its first request answered) with `Connection: close`, and exits
/// when none is left or at the deadline.
final class NativeWorker {
    /// One client connection.
    struct Connection {
        /// Bytes of an incomplete request, carried to the next read (usually empty).
        var input: [UInt8] = []
        /// Response bytes not yet written (usually empty: a response is written as soon as it is ready).
        var output: [UInt8] = []
        var outputOffset = 0
        /// Request body bytes still to read and discard.
        var bodyToSkip = 0
        /// Responses written so far.
        var answered = 0
        /// Close once `output` is written (the client asked, an error response, a drain, or its end of stream).
        var closeAfterOutput = false
        /// The client closed its side: nothing more to read.
        var readClosed = false
        /// A test-hook response waiting for its time (later requests wait behind it).
        var delayed: Delayed?
        var watchingWritable = false

        struct Delayed {
            var due: UInt64
            var response: [UInt8]
            var keepAlive: Bool
        }

        var isIdle: Bool {
            input.isEmpty && output.isEmpty && bodyToSkip == 0 && delayed == nil
        }
    }

    /// The responses, built once.
    struct Responses {
        let ok: [UInt8]
        let okClose: [UInt8]
        let okKeepAlive10: [UInt8]
        let head: [UInt8]
        let headClose: [UInt8]
        let headKeepAlive10: [UInt8]
        let badRequest = Self.error("400 Bad Request")
        let headersTooLarge = Self.error("431 Request Header Fields Too Large")
        let notImplemented = Self.error("501 Not Implemented")
        let versionNotSupported = Self.error("505 HTTP Version Not Supported")
        let continueInterim = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)

        init(body: String) {
            let start = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\n"
            func make(_ extra: String, _ withBody: Bool) -> [UInt8] {
                Array((start + extra + "\r\n" + (withBody ? body : "")).utf8)
            }
            ok = make("", true)
            okClose = make("Connection: close\r\n", true)
            okKeepAlive10 = make("Connection: keep-alive\r\n", true)
            head = make("", false)
            headClose = make("Connection: close\r\n", false)
            headKeepAlive10 = make("Connection: keep-alive\r\n", false)
        }

        static func error(_ status: String) -> [UInt8] {
            Array("HTTP/1.1 \(status)\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8)
        }
    }

    enum Token {
        static let channel: UInt64 = 1
        static let listener: UInt64 = 2
        static let signals: UInt64 = 3
        static let connectionKind: UInt64 = 4
        static func connection(_ fd: CInt) -> UInt64 { UInt64(fd) << 8 | connectionKind }
    }

    /// The longest request head (request line and headers) accepted.
    static let maxHeadBytes = 16 * 1024

    let runtime: WorkerRuntime
    let logger: Logger
    let testHooks: Bool
    let responses: Responses
    private var epoll: CInt = -1
    private var signals: CInt = -1
    private var listener: CInt = -1
    /// Connections by descriptor number.
    private var table: [Connection?] = []
    private var open = 0
    private var handled: UInt64 = 0
    private var draining = false
    private var drainDeadline: UInt64 = .max
    private var nextHeartbeat: UInt64 = 0
    private let heartbeatNanoseconds: UInt64
    private var delayedDescriptors: [CInt] = []
    private var readBuffer = [UInt8](repeating: 0, count: 64 * 1024)
    private var events = [sb_epoll_event](repeating: sb_epoll_event(events: 0, data: 0), count: 256)

    init(runtime: WorkerRuntime, logger: Logger, testHooks: Bool) {
        self.runtime = runtime
        self.logger = logger
        self.testHooks = testHooks
        self.responses = Responses(body: "Handled by worker: \(getpid())")
        self.heartbeatNanoseconds = max(UInt64(runtime.heartbeatInterval.nanoseconds), 1_000_000)
    }

    /// Serves until drained, then exits the process with 0.
    func run(announcingReady: Bool) -> Never {
        do {
            epoll = try Syscalls.epollCreate()
            signals = try Syscalls.signalDescriptor([SIGTERM])
            try Syscalls.epollAdd(epoll, signals, events: sb_EPOLLIN, token: Token.signals)
            try Syscalls.epollAdd(epoll, runtime.descriptor, events: sb_EPOLLIN, token: Token.channel)
            try startOwnListener()
        } catch {
            logger.critical("cannot start the worker: \(error)")
            exit(1)
        }
        if announcingReady { runtime.announceReady() }
        while true {
            let count: Int
            do {
                count = try Syscalls.epollWait(epoll, &events, timeoutMilliseconds: millisecondsUntilNextTimer())
            } catch {
                logger.critical("epoll_wait failed: \(error)")
                exit(1)
            }
            for index in 0..<count {
                handle(events[index])
            }
            runTimers()
            if draining && open == 0 { exit(0) }
        }
    }

    private func startOwnListener() throws {
        guard let own = try runtime.ownListener() else { return }
        listener = own
        try Syscalls.setNonBlocking(listener, true)
        try Syscalls.epollAdd(epoll, listener, events: sb_EPOLLIN, token: Token.listener)
    }

    // MARK: events

    private func handle(_ event: sb_epoll_event) {
        switch event.data & 0xff {
        case Token.connectionKind:
            let fd = CInt(truncatingIfNeeded: event.data >> 8)
            guard Int(fd) < table.count, table[Int(fd)] != nil else { return }
            if event.events & sb_EPOLLOUT != 0 {
                flush(fd)
            }
            if event.events & (sb_EPOLLIN | sb_EPOLLHUP | sb_EPOLLERR) != 0, table[Int(fd)] != nil {
                readable(fd)
            }
        case Token.channel:
            receiveFromMaster()
        case Token.listener:
            acceptConnections()
        case Token.signals:
            while let signal = Syscalls.readSignal(signals) {
                if signal == SIGTERM { beginDrain(deadline: 10_000_000_000) }
            }
        default:
            break
        }
    }

    private func receiveFromMaster() {
        let present = runtime.receiveAvailable(openConnections: { self.open }) { event in
            switch event {
            case .connections(let descriptors):
                for fd in descriptors { adopt(fd) }
            case .drain(let deadline):
                beginDrain(deadline: UInt64(max(deadline.nanoseconds, 0)))
            case .message:
                break  // the built-in worker takes no messages
            case .masterGone:
                break
            }
        }
        if !present {
            // Level-triggered: a closed channel stays readable, so stop watching it.
            Syscalls.epollRemove(epoll, runtime.descriptor)
            beginDrain(deadline: 10_000_000_000)
        }
    }

    private func acceptConnections() {
        for _ in 0..<64 {
            guard listener >= 0 else { return }
            do {
                guard case .done(let fd) = try Syscalls.accept(listener) else { return }
                adopt(fd)
            } catch {
                logger.warning("accept failed: \(error)")
                return
            }
        }
    }

    /// Takes a connection (passed or accepted; this worker owns the descriptor) and answers what it already sent.
    private func adopt(_ fd: CInt) {
        guard Syscalls.isStreamSocket(fd) else {
            logger.warning("a passed descriptor is not a connected stream socket; closing it")
            Syscalls.close(fd)
            return
        }
        Syscalls.setNoDelay(fd)
        do {
            try Syscalls.epollAdd(epoll, fd, events: sb_EPOLLIN, token: Token.connection(fd))
        } catch {
            logger.warning("cannot watch a connection: \(error); closing it")
            Syscalls.close(fd)
            return
        }
        let index = Int(fd)
        if index >= table.count {
            table.append(contentsOf: repeatElement(nil, count: max(index + 1 - table.count, table.count)))
        }
        table[index] = Connection()
        open += 1
        handled &+= 1
        // The request is usually there already: answering now saves a trip through epoll.
        readable(fd)
    }

    // MARK: reading and answering

    private func readable(_ fd: CInt) {
        let index = Int(fd)
        while table[index] != nil && !table[index]!.readClosed && !table[index]!.closeAfterOutput {
            let result: NonBlocking<Int>
            do {
                result = try Syscalls.read(fd, into: &readBuffer, at: 0)
            } catch {
                closeConnection(fd)  // reset by the client
                return
            }
            guard case .done(let count) = result else { break }
            if count == 0 {
                endOfStream(fd)
                return
            }
            consume(fd, count)
            if count < readBuffer.count { break }  // drained; epoll says when there is more
        }
        flush(fd)
    }

    /// The client closed its side: answer what it sent, then close.
    private func endOfStream(_ fd: CInt) {
        let index = Int(fd)
        table[index]!.readClosed = true
        table[index]!.closeAfterOutput = true
        if table[index]!.output.isEmpty && table[index]!.delayed == nil {
            closeConnection(fd)
        } else {
            watch(fd, readable: false, writable: !table[index]!.output.isEmpty)
        }
    }

    /// Parses the `count` bytes just read into `readBuffer` together with what was carried over, and queues the
    /// responses.
    private func consume(_ fd: CInt, _ count: Int) {
        let index = Int(fd)
        if table[index]!.input.isEmpty && table[index]!.delayed == nil {
            let used = parse(fd, readBuffer, 0, count)
            if used < count, table[index] != nil, !table[index]!.closeAfterOutput {
                table[index]!.input.append(contentsOf: readBuffer[used..<count])
            }
        } else {
            table[index]!.input.append(contentsOf: readBuffer[0..<count])
            parseCarried(fd)
        }
    }

    /// Parses the carried-over input of `fd` (after more arrived or a delayed response went out).
    private func parseCarried(_ fd: CInt) {
        let index = Int(fd)
        guard table[index]!.delayed == nil, !table[index]!.input.isEmpty else { return }
        let input = table[index]!.input
        table[index]!.input = []
        let used = parse(fd, input, 0, input.count)
        if used < input.count, table[index] != nil, !table[index]!.closeAfterOutput {
            table[index]!.input = Array(input[used...])
        }
    }

    /// Parses requests from `bytes[start..<end]` and queues their responses; returns how far it got. Stops at an
    /// incomplete request, a delayed response, or a response after which the connection closes.
    private func parse(_ fd: CInt, _ bytes: [UInt8], _ start: Int, _ end: Int) -> Int {
        let index = Int(fd)
        var cursor = start
        while cursor < end {
            if table[index]!.bodyToSkip > 0 {
                let skipped = min(table[index]!.bodyToSkip, end - cursor)
                table[index]!.bodyToSkip -= skipped
                cursor += skipped
                continue
            }
            // Empty lines before a request line are allowed (RFC 9112, 2.2).
            if bytes[cursor] == 13 || bytes[cursor] == 10 {
                cursor += 1
                continue
            }
            guard let headEnd = Self.headEnd(bytes, cursor, end) else {
                if end - cursor > Self.maxHeadBytes { fail(fd, responses.headersTooLarge) }
                return cursor
            }
            guard headEnd - cursor <= Self.maxHeadBytes else {
                fail(fd, responses.headersTooLarge)
                return end
            }
            let request: Request
            switch Request.parse(bytes, cursor, headEnd) {
            case .success(let parsed): request = parsed
            case .failure(.malformed): fail(fd, responses.badRequest); return end
            case .failure(.version): fail(fd, responses.versionNotSupported); return end
            case .failure(.transferEncoding): fail(fd, responses.notImplemented); return end
            }
            cursor = headEnd + 4
            table[index]!.bodyToSkip = request.contentLength
            if request.expectsContinue && request.contentLength > 0 {
                enqueue(fd, responses.continueInterim)
            }
            let keepAlive = request.keepAlive && !draining
            let response = self.response(for: request, keepAlive: keepAlive)
            let delay =
                testHooks ? TestHooks.apply(to: String(decoding: bytes[request.target], as: UTF8.self), runtime: runtime) : 0
            if delay > 0 {
                table[index]!.delayed = .init(
                    due: Syscalls.monotonicNanoseconds() + UInt64(delay) * 1_000_000, response: response,
                    keepAlive: keepAlive)
                delayedDescriptors.append(fd)
                return cursor
            }
            enqueue(fd, response)
            table[index]!.answered += 1
            if !keepAlive {
                table[index]!.closeAfterOutput = true
                return end
            }
        }
        return cursor
    }

    private func response(for request: Request, keepAlive: Bool) -> [UInt8] {
        switch (request.isHead, keepAlive, request.isHTTP10) {
        case (false, false, _): responses.okClose
        case (false, true, false): responses.ok
        case (false, true, true): responses.okKeepAlive10
        case (true, false, _): responses.headClose
        case (true, true, false): responses.head
        case (true, true, true): responses.headKeepAlive10
        }
    }

    /// An error response, after which the connection closes and nothing more is read from it.
    private func fail(_ fd: CInt, _ response: [UInt8]) {
        enqueue(fd, response)
        table[Int(fd)]!.closeAfterOutput = true
        table[Int(fd)]!.input = []
    }

    private func enqueue(_ fd: CInt, _ bytes: [UInt8]) {
        let index = Int(fd)
        if table[index]!.output.isEmpty {
            table[index]!.output = bytes  // shares the prebuilt response: no copy
            table[index]!.outputOffset = 0
        } else {
            table[index]!.output.append(contentsOf: bytes)
        }
    }

    /// Writes what is queued for `fd`; closes it when it is done and should close.
    private func flush(_ fd: CInt) {
        let index = Int(fd)
        guard table[index] != nil else { return }
        let output = table[index]!.output
        var offset = table[index]!.outputOffset
        while offset < output.count {
            do {
                guard case .done(let written) = try Syscalls.write(fd, output, from: offset, to: output.count) else {
                    table[index]!.outputOffset = offset
                    // A connection that closes once this is written reads nothing more.
                    watch(fd, readable: !table[index]!.readClosed && !table[index]!.closeAfterOutput, writable: true)
                    return
                }
                offset += written
            } catch {
                closeConnection(fd)
                return
            }
        }
        if !output.isEmpty {
            table[index]!.output = []
            table[index]!.outputOffset = 0
        }
        if table[index]!.watchingWritable { watch(fd, readable: !table[index]!.readClosed, writable: false) }
        let connection = table[index]!
        if connection.delayed == nil
            && (connection.closeAfterOutput || (draining && connection.answered > 0 && connection.isIdle))
        {
            closeConnection(fd)
        }
    }

    private func watch(_ fd: CInt, readable: Bool, writable: Bool) {
        let index = Int(fd)
        table[index]!.watchingWritable = writable
        let events = (readable ? sb_EPOLLIN : 0) | (writable ? sb_EPOLLOUT : 0)
        try? Syscalls.epollModify(epoll, fd, events: events, token: Token.connection(fd))
    }

    private func closeConnection(_ fd: CInt) {
        let index = Int(fd)
        guard table[index] != nil else { return }
        // Remove it explicitly: the master may still hold a copy of this socket, which would keep it in the set.
        Syscalls.epollRemove(epoll, fd)
        Syscalls.close(fd)
        table[index] = nil
        open -= 1
    }

    // MARK: timers and draining

    private func millisecondsUntilNextTimer() -> Int {
        var next = nextHeartbeat
        if draining { next = min(next, drainDeadline) }
        for fd in delayedDescriptors {
            if let due = table[Int(fd)]?.delayed?.due { next = min(next, due) }
        }
        let now = Syscalls.monotonicNanoseconds()
        guard next > now else { return 0 }
        return Int(min((next - now + 999_999) / 1_000_000, 60_000))
    }

    private func runTimers() {
        let now = Syscalls.monotonicNanoseconds()
        if now >= nextHeartbeat {
            runtime.heartbeat(open: open, handled: handled)
            nextHeartbeat = now + heartbeatNanoseconds
        }
        if !delayedDescriptors.isEmpty {
            let waiting = delayedDescriptors
            delayedDescriptors.removeAll(keepingCapacity: true)
            for fd in waiting {
                let index = Int(fd)
                guard let delayed = table[index]?.delayed else { continue }
                guard delayed.due <= now else {
                    delayedDescriptors.append(fd)
                    continue
                }
                table[index]!.delayed = nil
                enqueue(fd, delayed.response)
                table[index]!.answered += 1
                if !delayed.keepAlive { table[index]!.closeAfterOutput = true }
                if !table[index]!.closeAfterOutput { parseCarried(fd) }
                flush(fd)
            }
        }
        if draining && now >= drainDeadline {
            if open > 0 { logger.notice("drain deadline passed with \(open) connections open; exiting") }
            exit(0)
        }
    }

    /// Stops accepting, closes idle keep-alive connections and lets the others finish their response.
    private func beginDrain(deadline nanoseconds: UInt64) {
        guard !draining else { return }
        draining = true
        drainDeadline = Syscalls.monotonicNanoseconds() &+ nanoseconds
        if listener >= 0 {
            Syscalls.epollRemove(epoll, listener)
            // A reuseport listener that closes resets the connections still in its accept queue unless
            // net.ipv4.tcp_migrate_req=1 moves them to the other workers' listeners.
            Syscalls.close(listener)
            listener = -1
        }
        logger.info("draining", metadata: ["connections.open": "\(open)"])
        for index in table.indices {
            guard let connection = table[index] else { continue }
            // A connection that has not had its first request answered yet keeps its chance until the deadline.
            if connection.answered > 0 && connection.isIdle {
                closeConnection(CInt(index))
            }
        }
    }
}

/// What the worker needs from a request head.
struct Request {
    enum Failure: Error {
        case malformed
        case version
        case transferEncoding
    }

    /// Where the request target is in the parsed bytes (made a `String` only for the test hooks).
    var target: Range<Int>
    var isHead: Bool
    var isHTTP10: Bool
    var keepAlive: Bool
    var contentLength: Int
    var expectsContinue: Bool

    /// Parses the request line and headers in `bytes[start..<headEnd]` (`headEnd` is where `\r\n\r\n` starts).
    static func parse(_ bytes: [UInt8], _ start: Int, _ headEnd: Int) -> Result<Request, Failure> {
        // Request line: method SP target SP HTTP/1.x
        var lineEnd = start
        while lineEnd < headEnd && bytes[lineEnd] != 13 { lineEnd += 1 }
        guard let firstSpace = bytes[start..<lineEnd].firstIndex(of: 32), firstSpace > start,
            let secondSpace = bytes[(firstSpace + 1)..<lineEnd].firstIndex(of: 32), secondSpace > firstSpace + 1
        else { return .failure(.malformed) }
        let method = bytes[start..<firstSpace]
        guard method.allSatisfy({ $0 >= 65 && $0 <= 90 }) else { return .failure(.malformed) }
        let version = bytes[(secondSpace + 1)..<lineEnd]
        guard version.count == 8, Self.equalsIgnoringCase(version.prefix(5), "http/") else { return .failure(.malformed) }
        let major = version[version.startIndex + 5]
        let minor = version[version.startIndex + 7]
        guard version[version.startIndex + 6] == 46, (48...57).contains(major), (48...57).contains(minor) else {
            return .failure(.malformed)
        }
        guard major == 49 else { return .failure(.version) }
        let isHTTP10 = minor == 48
        let target = bytes[(firstSpace + 1)..<secondSpace]
        guard !target.contains(where: { $0 < 33 || $0 == 127 }) else { return .failure(.malformed) }

        var connectionClose = false
        var connectionKeepAlive = false
        var contentLength: Int?
        var expectsContinue = false
        var cursor = lineEnd + 2
        while cursor < headEnd + 2 {
            var end = cursor
            while end < headEnd && bytes[end] != 13 { end += 1 }
            if end == cursor { break }
            // Obsolete line folding and lines without a colon are malformed.
            guard bytes[cursor] != 32 && bytes[cursor] != 9,
                let colon = bytes[cursor..<end].firstIndex(of: 58), colon > cursor
            else { return .failure(.malformed) }
            let name = bytes[cursor..<colon]
            var valueStart = colon + 1
            var valueEnd = end
            while valueStart < valueEnd && (bytes[valueStart] == 32 || bytes[valueStart] == 9) { valueStart += 1 }
            while valueEnd > valueStart && (bytes[valueEnd - 1] == 32 || bytes[valueEnd - 1] == 9) { valueEnd -= 1 }
            let value = bytes[valueStart..<valueEnd]
            if Self.equalsIgnoringCase(name, "connection") {
                var tokenStart = valueStart
                while tokenStart < valueEnd {
                    var tokenEnd = tokenStart
                    while tokenEnd < valueEnd && bytes[tokenEnd] != 44 { tokenEnd += 1 }
                    var first = tokenStart
                    var last = tokenEnd
                    while first < last && (bytes[first] == 32 || bytes[first] == 9) { first += 1 }
                    while last > first && (bytes[last - 1] == 32 || bytes[last - 1] == 9) { last -= 1 }
                    if Self.equalsIgnoringCase(bytes[first..<last], "close") { connectionClose = true }
                    if Self.equalsIgnoringCase(bytes[first..<last], "keep-alive") { connectionKeepAlive = true }
                    tokenStart = tokenEnd + 1
                }
            } else if Self.equalsIgnoringCase(name, "content-length") {
                guard !value.isEmpty, value.count <= 18, value.allSatisfy({ $0 >= 48 && $0 <= 57 }) else {
                    return .failure(.malformed)
                }
                let length = value.reduce(0) { $0 * 10 + Int($1 - 48) }
                if let earlier = contentLength, earlier != length { return .failure(.malformed) }
                contentLength = length
            } else if Self.equalsIgnoringCase(name, "transfer-encoding") {
                return .failure(.transferEncoding)
            } else if Self.equalsIgnoringCase(name, "expect") {
                expectsContinue = Self.equalsIgnoringCase(value, "100-continue")
            }
            cursor = end + 2
        }
        return .success(
            Request(
                target: target.indices,
                isHead: method.elementsEqual("HEAD".utf8),
                isHTTP10: isHTTP10,
                keepAlive: isHTTP10 ? connectionKeepAlive && !connectionClose : !connectionClose,
                contentLength: contentLength ?? 0,
                expectsContinue: expectsContinue))
    }

    static func equalsIgnoringCase(_ bytes: ArraySlice<UInt8>, _ lowercase: StaticString) -> Bool {
        guard bytes.count == lowercase.utf8CodeUnitCount else { return false }
        return lowercase.withUTF8Buffer { expected in
            var index = bytes.startIndex
            for byte in expected {
                let actual = bytes[index]
                let folded = actual >= 65 && actual <= 90 ? actual + 32 : actual
                if folded != byte { return false }
                index += 1
            }
            return true
        }
    }
}

extension NativeWorker {
    /// Where the `\r\n\r\n` that ends a request head starts in `bytes[start..<end]`, if it is there.
    static func headEnd(_ bytes: [UInt8], _ start: Int, _ end: Int) -> Int? {
        var index = start
        while index + 3 < end {
            if bytes[index + 3] == 10 {
                if bytes[index] == 13 && bytes[index + 1] == 10 && bytes[index + 2] == 13 { return index }
                index += 1
            } else if bytes[index + 3] == 13 {
                index += 1
            } else {
                index += 4
            }
        }
        return nil
    }
}
