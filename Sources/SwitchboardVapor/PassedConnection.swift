// Built only with the package trait `Vapor` (`swift build --traits Vapor`).
#if Vapor
import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOSSL
import NIOTLS
import Switchboard
import SwitchboardNIO
import Vapor

/// What a worker adds to a connection after Vapor has set it up.
///
/// - HTTP/1 (cleartext at once; over TLS once ALPN chose HTTP/1.1): Switchboard's header and keep-alive timeouts
///   (``HTTPTimeoutsHandler``, which leaves when a 101 response upgrades the connection) right after Vapor's HTTP/1
///   decoder.
/// - Every connection: `WebSocketGoingAway` first (right after the TLS handler behind TLS), which closes an upgraded
///   connection with 1001 at the start of a drain.
/// - HTTP/2 (over TLS once ALPN chose h2): ``HTTP2GracefulDrain`` right after NIOHTTP2's handler.
enum PassedConnection {
    /// Completes the set-up of a channel Vapor has just set up.
    static func finishSetUp(_ channel: any Channel, limits: ConnectionLimits) throws {
        let operations = channel.pipeline.syncOperations
        if let tls = try? operations.context(handlerType: NIOSSLServerHandler.self) {
            let afterHandshake = AfterHandshake { try PassedConnection.install(on: $0, limits: limits) }
            try operations.addHandler(afterHandshake, position: .after(tls.handler))
            try operations.addHandler(WebSocketGoingAway(), position: .after(tls.handler))
        } else {
            _ = try install(on: channel, limits: limits)
            try operations.addHandler(WebSocketGoingAway(), position: .first)
        }
    }

    /// Adds the HTTP/1 timeouts or the HTTP/2 drain, whichever protocol the pipeline speaks; false when it speaks
    /// neither (yet).
    static func install(on channel: any Channel, limits: ConnectionLimits) throws -> Bool {
        let operations = channel.pipeline.syncOperations
        if let decoder = try? operations.context(handlerType: ByteToMessageHandler<HTTPRequestDecoder>.self) {
            try operations.addHandler(HTTPTimeoutsHandler(limits: limits), position: .after(decoder.handler))
            return true
        }
        if let http2 = try? operations.context(handlerType: NIOHTTP2Handler.self) {
            try operations.addHandler(HTTP2GracefulDrain(), position: .after(http2.handler))
            return true
        }
        return false
    }

}

/// Drains an HTTP/2 connection without losing a stream: every stream the client opened before it learnt of the
/// drain is answered, then the connection closes.
///
/// RFC 9113's graceful shutdown: on the drain a GOAWAY with the highest possible stream id (the client stops opening
/// streams, those already on their way are still accepted) and a PING; once the client has answered the PING (it
/// has read the GOAWAY) or after `ackTimeout`, a second GOAWAY with the last stream id actually opened; the
/// connection closes when the last open stream has finished. The drain is not passed on to the streams: Vapor's
/// HTTP/2 streams would close (and cancel) a stream still waiting for its request. Right after NIOHTTP2's handler.
final class HTTP2GracefulDrain: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTP2Frame
    typealias InboundOut = HTTP2Frame
    typealias OutboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    /// "sbdrain!"
    static let pingData = HTTP2PingData(withInteger: 0x7362_6472_6169_6e21)

    enum Phase {
        case serving
        case announced(Scheduled<Void>)
        case closing
    }

    private var phase = Phase.serving
    private var open: Set<HTTP2StreamID> = []
    private var highest = HTTP2StreamID.rootStream
    private let ackTimeout: TimeAmount

    init(ackTimeout: TimeAmount = .seconds(1)) {
        self.ackTimeout = ackTimeout
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        context.fireChannelRead(data)
        if case .ping(let ping, ack: true) = frame.payload, ping == Self.pingData {
            finalGoAway(context: context)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case let created as NIOHTTP2StreamCreatedEvent:
            open.insert(created.streamID)
            highest = max(highest, created.streamID)
        case let closed as StreamClosedEvent:
            open.remove(closed.streamID)
            closeIfDone(context: context)
        case is ChannelShouldQuiesceEvent:
            guard case .serving = phase else { return }
            context.write(wrapOutboundOut(HTTP2Frame(
                streamID: .rootStream, payload: .goAway(lastStreamID: .maxID, errorCode: .noError, opaqueData: nil))),
                promise: nil)
            context.writeAndFlush(wrapOutboundOut(HTTP2Frame(
                streamID: .rootStream, payload: .ping(Self.pingData, ack: false))), promise: nil)
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            phase = .announced(context.eventLoop.scheduleTask(in: ackTimeout) {
                let (drain, context) = bound.value
                drain.finalGoAway(context: context)
            })
            // Not passed on: the streams finish as they would without a drain.
            return
        default:
            break
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func finalGoAway(context: ChannelHandlerContext) {
        guard case .announced(let timer) = phase else { return }
        timer.cancel()
        phase = .closing
        context.writeAndFlush(wrapOutboundOut(HTTP2Frame(
            streamID: .rootStream, payload: .goAway(lastStreamID: highest, errorCode: .noError, opaqueData: nil))),
            promise: nil)
        closeIfDone(context: context)
    }

    private func closeIfDone(context: ChannelHandlerContext) {
        guard case .closing = phase, open.isEmpty else { return }
        // In the next turn of the loop: the last stream's final frames are written in this one.
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.eventLoop.execute { bound.value.close(promise: nil) }
    }
}
#endif
