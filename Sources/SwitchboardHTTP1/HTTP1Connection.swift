import Switchboard

/// Answers parsed requests: the one piece of the engine a program (or a test) chooses.
package protocol HTTP1Responder {
    /// The response to `request` (its bytes are `bytes[request.target]` and so on).
    /// - Parameters:
    ///   - request: The parsed head.
    ///   - bytes: The buffer the head was parsed from.
    ///   - keepAlive: Whether the connection stays open after this response (it says `Connection: close` if not).
    /// - Returns: The complete response and how long to hold it back (0: send it now).
    func respond(to request: RequestHead, in bytes: [UInt8], keepAlive: Bool) -> HTTP1Reply
}

/// A response and when to send it.
package struct HTTP1Reply {
    package var bytes: [UInt8]
    /// Nanoseconds to hold the response back; later pipelined requests wait behind it.
    package var delayNanoseconds: UInt64

    package init(bytes: [UInt8], delayNanoseconds: UInt64 = 0) {
        self.bytes = bytes
        self.delayNanoseconds = delayNanoseconds
    }
}

/// The limits of one connection, in nanoseconds, as ``HTTP1Connection`` uses them.
package struct HTTP1Limits: Sendable, Equatable {
    package var headerTimeout: UInt64
    package var keepAliveTimeout: UInt64
    package var sendTimeout: UInt64
    /// Unsent response bytes above which the connection is not read (output backpressure).
    package var outputBound: Int
    /// The longest request head (request line and headers) accepted.
    package var maxHeadBytes: Int

    package init(
        headerTimeout: UInt64, keepAliveTimeout: UInt64, sendTimeout: UInt64, outputBound: Int = 64 * 1024,
        maxHeadBytes: Int = 16 * 1024
    ) {
        self.headerTimeout = headerTimeout
        self.keepAliveTimeout = keepAliveTimeout
        self.sendTimeout = sendTimeout
        self.outputBound = outputBound
        self.maxHeadBytes = maxHeadBytes
    }

    package init(_ limits: ConnectionLimits) {
        func nanoseconds(_ duration: Duration) -> UInt64 { UInt64(max(duration.nanoseconds, 0)) }
        self.init(
            headerTimeout: nanoseconds(limits.headerTimeout), keepAliveTimeout: nanoseconds(limits.keepAliveTimeout),
            sendTimeout: nanoseconds(limits.sendTimeout))
    }
}

/// One HTTP/1.1 connection as a pure state machine: bytes in, response bytes out, and when to give up.
///
/// It does no I/O. Its driver reads into a buffer and calls ``received(_:count:now:responder:)``, writes
/// ``output`` from ``outputOffset`` and reports it with ``wrote(_:now:)``, calls ``tick(now:)`` now and then, and
/// closes the socket once ``isFinished``. ``wantsRead`` and ``wantsWrite`` say what to watch.
///
/// HTTP/1.1 as clients use it: keep-alive (HTTP/1.0 only with `Connection: keep-alive`), pipelining (answers in
/// order), `HEAD`, request bodies with `Content-Length` (read and discarded), `Expect: 100-continue`. Malformed
/// requests get 400, heads over ``HTTP1Limits/maxHeadBytes`` 431, `Transfer-Encoding` bodies 501, HTTP/2+ 505,
/// each followed by closing.
///
/// Limits: a request head must be complete within the header timeout from the connection's arrival or the end of
/// the previous response (408 when part of it arrived, a quiet close otherwise); an idle keep-alive connection
/// closes after the keep-alive timeout; a body makes progress at least every header timeout; a client that takes no
/// byte of its response for the send timeout is cut. While more than ``HTTP1Limits/outputBound`` bytes wait to be
/// sent, nothing more is read or parsed, so a client that sends without reading holds a bounded amount of memory.
package struct HTTP1Connection {
    /// Why a connection ended before its client closed it.
    package enum Ending: Equatable, Sendable {
        /// No byte of a first request within the header timeout.
        case noRequest
        /// A request head did not complete within the header timeout (answered 408).
        case headerTimeout
        /// A request body made no progress within the header timeout.
        case bodyTimeout
        /// Idle between requests for the keep-alive timeout.
        case keepAliveTimeout
        /// The client took no byte of its response for the send timeout.
        case sendTimeout
    }

    package let limits: HTTP1Limits

    /// Response bytes not yet written, from ``outputOffset``.
    package private(set) var output: [UInt8] = []
    package private(set) var outputOffset = 0
    /// Responses queued so far.
    package private(set) var answered = 0
    /// The connection is done: close the socket.
    package private(set) var isFinished = false
    /// Why it ended early, if it did.
    package private(set) var ending: Ending?

    /// Bytes of requests not parsed yet: an incomplete head, or requests held back by backpressure or a delay.
    private var carry: [UInt8] = []
    /// Parsing stopped with complete requests left in `carry` (backpressure or a held response).
    private var stalled = false
    private var bodyToSkip = 0
    private var closeAfterOutput = false
    private var readClosed = false
    private var draining = false
    /// When a connection idle between requests during a drain is closed (``drainGrace`` after the drain began).
    private var drainGraceEnd: UInt64 = .max
    private var held: (due: UInt64, bytes: [UInt8], keepAlive: Bool)?
    /// When the current wait for a request began: arrival or the end of the previous response.
    private var waitStart: UInt64
    /// When reading or writing last made progress.
    private var lastRead: UInt64
    private var lastWrite: UInt64

    package init(limits: HTTP1Limits, now: UInt64) {
        self.limits = limits
        self.waitStart = now
        self.lastRead = now
        self.lastWrite = now
    }

    // MARK: what the driver watches

    /// Unsent response bytes.
    package var pendingOutput: Int { output.count - outputOffset }

    /// Whether to read from the socket: not while closing, stalled, holding a response or over the output bound.
    package var wantsRead: Bool {
        !isFinished && !readClosed && !closeAfterOutput && !stalled && held == nil
            && pendingOutput <= limits.outputBound
    }

    /// Whether there are bytes to write.
    package var wantsWrite: Bool { !isFinished && pendingOutput > 0 }

    /// Nothing received, queued or held: between requests.
    package var isIdle: Bool {
        carry.isEmpty && pendingOutput == 0 && bodyToSkip == 0 && held == nil
    }

    /// When ``tick(now:)`` next has something to decide.
    package var deadline: UInt64 {
        if isFinished { return .max }
        if let held { return held.due }
        if pendingOutput > 0 { return lastWrite &+ limits.sendTimeout }
        if closeAfterOutput || readClosed { return .max }
        if bodyToSkip > 0 { return lastRead &+ limits.headerTimeout }
        if !carry.isEmpty || answered == 0 { return waitStart &+ limits.headerTimeout }
        return min(waitStart &+ limits.keepAliveTimeout, drainGraceEnd)
    }

    // MARK: events

    /// `count` bytes arrived in `buffer[0..<count]`.
    package mutating func received<R: HTTP1Responder>(
        _ buffer: [UInt8], count: Int, now: UInt64, responder: R
    ) {
        guard count > 0, !isFinished else { return }
        lastRead = now
        if carry.isEmpty && !stalled && held == nil {
            let used = parse(buffer, 0, count, now: now, responder: responder)
            if used < count, !closeAfterOutput { carry.append(contentsOf: buffer[used..<count]) }
        } else {
            carry.append(contentsOf: buffer[0..<count])
            parseCarry(now: now, responder: responder)
        }
    }

    /// The client closed its side: answer what it sent, then close.
    package mutating func receivedEnd(now: UInt64) {
        readClosed = true
        closeAfterOutput = true
        carry = []
        stalled = false
        finishIfDone()
    }

    /// `count` bytes of ``output`` were written.
    package mutating func wrote<R: HTTP1Responder>(_ count: Int, now: UInt64, responder: R) {
        precondition(count >= 0 && count <= pendingOutput)
        guard count > 0 else { return }
        lastWrite = now
        outputOffset += count
        guard outputOffset == output.count else { return }
        output = []
        outputOffset = 0
        if held == nil { waitStart = now }  // the end of a response: the next request's time starts
        if stalled { parseCarry(now: now, responder: responder) }
        finishIfDone()
    }

    /// Time passed: sends a held response that is due, and ends the connection when a limit is past.
    package mutating func tick<R: HTTP1Responder>(now: UInt64, responder: R) {
        guard !isFinished else { return }
        if let waiting = held, waiting.due <= now {
            held = nil
            enqueue(waiting.bytes, now: now)
            if !waiting.keepAlive { closeAfterOutput = true }
            parseCarry(now: now, responder: responder)
            finishIfDone()
            return
        }
        guard now >= deadline else { return }
        if pendingOutput > 0 {
            end(.sendTimeout)
        } else if bodyToSkip > 0 {
            end(.bodyTimeout)
        } else if !carry.isEmpty {
            // Part of a head arrived: say why before closing.
            carry = []
            fail(HTTP1Connection.requestTimeout, now: now)
            ending = .headerTimeout
        } else {
            end(answered == 0 ? .noRequest : .keepAliveTimeout)
        }
    }

    /// How long a keep-alive connection may still send one more request once its worker drains. A busy client's
    /// next request is usually on its way already: it is answered (with `Connection: close`, so the client reconnects
    /// to another worker) instead of meeting a closed socket, a reset that clients such as wrk count as an error and
    /// most do not retry. A connection idle this long is closed; every response from the drain on says `close`.
    package static let drainGrace: UInt64 = 1_000_000_000

    /// The worker drains: each response from now on says `Connection: close`; a connection idle between requests
    /// is closed after ``drainGrace`` unless a request comes first. A connection whose first request has not been
    /// answered yet keeps its chance (the header timeout).
    package mutating func drain(now: UInt64) {
        draining = true
        drainGraceEnd = now &+ Self.drainGrace
    }

    // MARK: parsing and answering

    private mutating func parseCarry<R: HTTP1Responder>(now: UInt64, responder: R) {
        stalled = false
        guard held == nil, !closeAfterOutput, !carry.isEmpty else { return }
        let input = carry
        carry = []
        let used = parse(input, 0, input.count, now: now, responder: responder)
        if used < input.count, !closeAfterOutput { carry = Array(input[used...]) }
    }

    /// Parses requests from `bytes[start..<end]` and queues their responses; returns how far it got. Stops at an
    /// incomplete request, a held response, a response after which the connection closes, or the output bound
    /// (then `stalled`).
    private mutating func parse<R: HTTP1Responder>(
        _ bytes: [UInt8], _ start: Int, _ end: Int, now: UInt64, responder: R
    ) -> Int {
        var cursor = start
        while cursor < end {
            if bodyToSkip > 0 {
                let skipped = min(bodyToSkip, end - cursor)
                bodyToSkip -= skipped
                cursor += skipped
                continue
            }
            // Empty lines before a request line are allowed (RFC 9112, 2.2).
            if bytes[cursor] == 13 || bytes[cursor] == 10 {
                cursor += 1
                continue
            }
            if held != nil || pendingOutput > limits.outputBound {
                stalled = true
                return cursor
            }
            guard let headEnd = RequestHead.headEnd(bytes, cursor, end) else {
                if end - cursor > limits.maxHeadBytes { fail(Self.headersTooLarge, now: now); return end }
                return cursor
            }
            guard headEnd - cursor <= limits.maxHeadBytes else {
                fail(Self.headersTooLarge, now: now)
                return end
            }
            let request: RequestHead
            switch RequestHead.parse(bytes, cursor, headEnd) {
            case .success(let parsed): request = parsed
            case .failure(.malformed): fail(Self.badRequest, now: now); return end
            case .failure(.version): fail(Self.versionNotSupported, now: now); return end
            case .failure(.transferEncoding): fail(Self.notImplemented, now: now); return end
            }
            cursor = headEnd + 4
            bodyToSkip = request.contentLength
            if request.expectsContinue && request.contentLength > 0 {
                enqueue(Self.continueInterim, now: now)
            }
            let keepAlive = request.keepAlive && !draining
            let reply = responder.respond(to: request, in: bytes, keepAlive: keepAlive)
            answered += 1
            if reply.delayNanoseconds > 0 {
                held = (now &+ reply.delayNanoseconds, reply.bytes, keepAlive)
                if cursor < end { stalled = true }
                return cursor
            }
            enqueue(reply.bytes, now: now)
            if !keepAlive {
                closeAfterOutput = true
                return end
            }
        }
        return cursor
    }

    /// An error response, after which the connection closes and nothing more is read.
    private mutating func fail(_ response: [UInt8], now: UInt64) {
        enqueue(response, now: now)
        closeAfterOutput = true
        carry = []
        stalled = false
        bodyToSkip = 0
    }

    private mutating func enqueue(_ bytes: [UInt8], now: UInt64) {
        if pendingOutput == 0 {
            output = bytes  // shares a prebuilt response: no copy
            outputOffset = 0
            lastWrite = now  // the send timeout counts from here
        } else {
            output.append(contentsOf: bytes)
        }
    }

    private mutating func end(_ why: Ending) {
        ending = why
        isFinished = true
    }

    private mutating func finishIfDone() {
        guard !isFinished, held == nil, pendingOutput == 0 else { return }
        if closeAfterOutput { isFinished = true }
    }

    // MARK: responses the machine gives by itself

    static func error(_ status: String) -> [UInt8] {
        Array("HTTP/1.1 \(status)\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8)
    }

    package static let badRequest = error("400 Bad Request")
    package static let requestTimeout = error("408 Request Timeout")
    package static let headersTooLarge = error("431 Request Header Fields Too Large")
    package static let notImplemented = error("501 Not Implemented")
    package static let versionNotSupported = error("505 HTTP Version Not Supported")
    package static let continueInterim = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)
}
