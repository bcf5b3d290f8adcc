// Built only with the package trait `Hummingbird` (`swift build --traits Hummingbird`).
#if Hummingbird
import HummingbirdCore
import Logging
import ServiceLifecycle
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOSSL
import NIOTLS
import Switchboard
import SwitchboardNIO

/// How a worker sets up a connection the master passed: the application's child channel, then what Switchboard adds
/// around it.
///
/// The hostile-clients limits that need the HTTP/1 codec (`ConnectionLimits.headerTimeout` and
/// `ConnectionLimits.keepAliveTimeout`) go right after Hummingbird's HTTP/1 codec wherever one is in a connection's
/// pipeline: at set-up for `.http1()` and `.tls(.http1())`, after the handshake when ALPN chose HTTP/1.1 under
/// `.http2Upgrade(...)`. HTTP/2 connections keep the idle, graceful-close and max-age timeouts of the application's
/// `HTTP2ChannelConfiguration`. The drain helpers (``CloseAfterWrites``, ``EndOfInputWhileClosing``,
/// ``HTTP2GoAwayBarrier``, `WebSocketGoingAway`) sit right after the TLS handler, or first in a cleartext pipeline.
enum PassedConnection {
    /// Adds the timeouts after the HTTP/1 codec; false when the pipeline has none (yet).
    static func install(on channel: any Channel, limits: ConnectionLimits) throws -> Bool {
        let operations = channel.pipeline.syncOperations
        // An upgradable pipeline (hummingbird-websocket's) decodes with NIOHTTP1 until it has decided, and adds
        // Hummingbird's codec only then: time NIOHTTP1's parts; the handler leaves on a 101.
        if (try? operations.context(handlerType: HTTP1ToHTTPServerCodec.self)) == nil,
           let decoder = try? operations.context(handlerType: ByteToMessageHandler<HTTPRequestDecoder>.self) {
            try operations.addHandler(HTTPTimeoutsHandler(limits: limits), position: .after(decoder.handler))
            return true
        }
        guard let codec = try? operations.context(handlerType: HTTP1ToHTTPServerCodec.self) else { return false }
        let timeouts = HTTPTimeoutsHandler<HTTPRequestPart, HTTPResponsePart>(
            limits: limits,
            isHead: { if case .head = $0 { true } else { false } },
            isEnd: { if case .end = $0 { true } else { false } })
        try operations.addHandler(timeouts, position: .after(codec.handler))
        return true
    }

    /// Sets up a passed connection with `childChannel`, then puts the timeouts after its HTTP/1 codec (now, or once
    /// the TLS handshake has chosen HTTP/1.1).
    static func setUp<Child: ServerChildChannel>(
        _ channel: any Channel, with childChannel: Child, limits: ConnectionLimits, logger: Logger
    ) -> EventLoopFuture<Child.Value> {
        do {
            // As Hummingbird's own server: a client's half-close still gets its response.
            try channel.syncOptions?.setOption(.allowRemoteHalfClosure, value: true)
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return childChannel.setup(channel: channel, logger: logger).flatMapThrowing { value in
            let operations = channel.pipeline.syncOperations
            let tls = try? operations.context(handlerType: NIOSSLServerHandler.self)
            if try !install(on: channel, limits: limits), let tls {
                let afterHandshake = AfterHandshake { try PassedConnection.install(on: $0, limits: limits) }
                try operations.addHandler(afterHandshake, position: .after(tls.handler))
            }
            let closeAfterWrites = CloseAfterWrites()
            let barrier = HTTP2GoAwayBarrier()
            if let tls {
                try operations.addHandler(closeAfterWrites, position: .after(tls.handler))
                try operations.addHandler(barrier, position: .after(closeAfterWrites))
                try operations.addHandler(EndOfInputWhileClosing(closing: closeAfterWrites), position: .first)
            } else {
                try operations.addHandler(barrier, position: .first)
                try operations.addHandler(closeAfterWrites, position: .first)
            }
            // A WebSocket (hummingbird-websocket's upgrade) hears of a drain as a close frame with 1001.
            try operations.addHandler(WebSocketGoingAway(), position: .after(barrier))
            return value
        }
    }

    /// Lets the writes of the current event-loop turn go out before a close.
    ///
    /// Hummingbird's HTTP/2 connection manager closes a connection that has sent its last GOAWAY from inside
    /// NIOHTTP2's processing of the last stream's final frame, before that frame is written: the close would overtake
    /// it (behind TLS, close_notify would go out and the frame would fail), and the client of a draining worker
    /// would lose the response it was promised. A close that passes here goes on in the next turn of the loop, after
    /// the frames written in this one. Right after the TLS handler, or first in a cleartext pipeline.
    final class CloseAfterWrites: ChannelOutboundHandler, RemovableChannelHandler {
        typealias OutboundIn = NIOAny
        /// A full close has passed: behind TLS, close_notify is on its way.
        fileprivate(set) var closing = false

        func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
            if mode == .all { closing = true }
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.eventLoop.execute { bound.value.close(mode: mode, promise: promise) }
        }
    }

    /// Closes the socket when the client ends its side after the worker has begun a TLS close.
    ///
    /// With half-closure allowed (as Hummingbird's server allows it), NIOSSL that has sent close_notify waits for the
    /// client's own close_notify up to its shutdown timeout (5 s by default), and most clients (curl, nghttp2) just
    /// close the socket instead: a drained worker would linger that long for nothing. Once close_notify is sent and
    /// the client's end of the stream has arrived, nothing more can come: this first handler of the pipeline closes
    /// the socket under the TLS handler.
    final class EndOfInputWhileClosing: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = NIOAny
        let closing: CloseAfterWrites

        init(closing: CloseAfterWrites) {
            self.closing = closing
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if closing.closing, case ChannelEvent.inputClosed = event {
                context.close(promise: nil)
                return
            }
            context.fireUserInboundEventTriggered(event)
        }
    }
}

/// Makes the GOAWAY of a draining HTTP/2 connection the first thing its client reads after everything it has already
/// processed, so that a client loses no request to it.
///
/// A client that reads, in one go, the end of some responses and then the GOAWAY reacts to the responses first: it
/// queues new requests (the GOAWAY is not known yet), then reads the GOAWAY, and then may no longer send them —
/// nghttp2 fails them at once, and h2load counts them as failed. So on a drain this handler, between the TLS handler
/// and the HTTP/2 codec, first sends a PING of its own and holds everything else the connection writes; the client's
/// PING ACK shows it has processed all that came before. Then it lets the drain through (Hummingbird's connection
/// manager sends GOAWAY and its own PING at once) and only after that releases what it held. Requests the client sends
/// before it reads the GOAWAY are accepted and answered; nothing it reads before the GOAWAY can make it queue one.
/// Holding lasts one round trip, at most `ackTimeout`. NIOHTTP2 and Hummingbird ignore the ACK of a PING they did not
/// send, as RFC 9113 allows. HTTP/1 connections (no HTTP/2 preface) are left alone.
final class HTTP2GoAwayBarrier: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    /// The PING's opaque data: "sbdrain!".
    static let pingData: [UInt8] = Array("sbdrain!".utf8)
    static let preface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    enum State {
        /// Before the first bytes: HTTP/2 or not.
        case unknown
        /// HTTP/2, serving.
        case serving
        /// Our PING is out; writes are held until its ACK.
        case holding(quiesce: Any, held: [(NIOAny, EventLoopPromise<Void>?)], flushes: Int, timer: Scheduled<Void>?)
        /// Drain passed through (or HTTP/1): nothing more to do.
        case done
    }

    private var state = State.unknown
    private var frames = FrameScanner()
    private let ackTimeout: TimeAmount

    init(ackTimeout: TimeAmount = .seconds(1)) {
        self.ackTimeout = ackTimeout
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        if case .unknown = state {
            let head = bytes.getBytes(at: bytes.readerIndex, length: min(bytes.readableBytes, 3)) ?? []
            if head == Array(Self.preface.prefix(3)) {
                state = .serving
            } else {
                state = .done
            }
        }
        var ackSeen = false
        if case .holding = state {
            ackSeen = frames.scan(bytes, lookingFor: Self.pingData)
        } else if case .serving = state {
            _ = frames.scan(bytes, lookingFor: Self.pingData)
        }
        context.fireChannelRead(data)
        if ackSeen { release(context: context) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is ChannelShouldQuiesceEvent, case .serving = state else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        // PING: length 8, type 6, no flags, stream 0, then the opaque data.
        var ping = context.channel.allocator.buffer(capacity: 17)
        ping.writeBytes([0, 0, 8, 6, 0, 0, 0, 0, 0] + Self.pingData)
        context.writeAndFlush(NIOAny(ping), promise: nil)
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let timer = context.eventLoop.scheduleTask(in: ackTimeout) {
            let (barrier, context) = bound.value
            barrier.release(context: context)
        }
        state = .holding(quiesce: event, held: [], flushes: 0, timer: timer)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .holding(let quiesce, var held, let flushes, let timer) = state else {
            context.write(data, promise: promise)
            return
        }
        held.append((data, promise))
        state = .holding(quiesce: quiesce, held: held, flushes: flushes, timer: timer)
    }

    func flush(context: ChannelHandlerContext) {
        guard case .holding(let quiesce, let held, let flushes, let timer) = state else {
            context.flush()
            return
        }
        state = .holding(quiesce: quiesce, held: held, flushes: flushes + 1, timer: timer)
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if case .holding = state { release(context: context) }
        context.close(mode: mode, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .holding = state { release(context: context) }
        context.fireChannelInactive()
    }

    /// Lets the drain through (GOAWAY goes out now), then what was held.
    private func release(context: ChannelHandlerContext) {
        guard case .holding(let quiesce, let held, let flushes, let timer) = state else { return }
        timer?.cancel()
        state = .done
        context.fireUserInboundEventTriggered(quiesce)
        context.flush()
        for (data, promise) in held { context.write(data, promise: promise) }
        if flushes > 0 || !held.isEmpty { context.flush() }
    }

    /// Follows the HTTP/2 frames a client sends (after its preface) far enough to see a PING ACK with given data.
    struct FrameScanner {
        private var prefaceLeft = 24
        private var header: [UInt8] = []
        private var payloadLeft = 0
        private var pingAck = false
        private var pingPayload: [UInt8] = []

        /// Scans `bytes`; true when a PING ACK carrying `data` ended in them.
        mutating func scan(_ bytes: ByteBuffer, lookingFor data: [UInt8]) -> Bool {
            var found = false
            var view = bytes.readableBytesView[...]
            while !view.isEmpty {
                if prefaceLeft > 0 {
                    let skip = min(prefaceLeft, view.count)
                    prefaceLeft -= skip
                    view = view.dropFirst(skip)
                } else if payloadLeft > 0 {
                    let take = min(payloadLeft, view.count)
                    if pingAck { pingPayload += view.prefix(take) }
                    payloadLeft -= take
                    view = view.dropFirst(take)
                    if payloadLeft == 0 && pingAck {
                        found = found || pingPayload == data
                        pingAck = false
                    }
                } else {
                    let take = min(9 - header.count, view.count)
                    header += view.prefix(take)
                    view = view.dropFirst(take)
                    guard header.count == 9 else { continue }
                    payloadLeft = Int(header[0]) << 16 | Int(header[1]) << 8 | Int(header[2])
                    pingAck = header[3] == 6 && header[4] & 1 == 1 && payloadLeft == 8
                    pingPayload = []
                    header = []
                }
            }
            return found
        }
    }
}
#endif
