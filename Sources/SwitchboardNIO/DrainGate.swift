import Logging
import NIOCore
import NIOTLS
import Synchronization

/// Holds back a drain (`ChannelShouldQuiesceEvent`) from a connection that has not sent a request yet.
///
/// NIO's HTTP server pipeline closes a connection at once when it quiesces with no request in flight. A connection
/// handed to the worker just before a drain usually has its request waiting in the socket, unread: closing it then
/// would answer a fresh client with nothing. The gate sits first in the pipeline (right after the TLS handler on a TLS
/// connection, so that the first read is the request and not the ClientHello) and passes the event on right after
/// the connection's first read (so the request is in flight and gets its response), or after `grace` if nothing
/// arrives.
///
/// A gate first in a pipeline whose first read is a TLS handshake record (the application put its TLS handler in
/// its initializer instead of passing it as `tlsHandler`) says so once per process through `logger`: its drains then
/// release on the ClientHello.
final class DrainGate: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let grace: TimeAmount
    private let logger: Logger?
    private var sawData = false
    private var held = false
    private static let toldOfTLS = Atomic<Bool>(false)

    init(grace: TimeAmount = .seconds(1), logger: Logger?) {
        self.grace = grace
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !sawData, let logger, Self.startsWithTLSHandshake(Self.unwrapInboundIn(data)),
           !Self.toldOfTLS.exchange(true, ordering: .relaxed) {
            logger.warning(
                "a TLS handshake reached the drain gate: pass the TLS handler to SwitchboardWorkerServer as tlsHandler, not in the channel initializer, so that a drain waits for the request")
        }
        sawData = true
        context.fireChannelRead(data)
        release(context: context)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is ChannelShouldQuiesceEvent, !sawData else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        guard !held else { return }
        held = true
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: grace) {
            let (gate, context) = bound.value
            gate.release(context: context)
        }
    }

    /// Whether a read begins with a TLS handshake record (content type 22, version 3.x): no HTTP request does.
    static func startsWithTLSHandshake(_ buffer: ByteBuffer) -> Bool {
        guard let bytes = buffer.getBytes(at: buffer.readerIndex, length: 2) else { return false }
        return bytes[0] == 0x16 && bytes[1] == 0x03
    }

    private func release(context: ChannelHandlerContext) {
        guard held else { return }
        held = false
        context.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
    }
}

/// Closes a TLS connection whose handshake has not completed within `timeout` of the connection's set-up: a client that
/// connects and sends no ClientHello, or trickles it, holds a worker's connection no longer than a client that sends
/// no HTTP request head (`ConnectionLimits.headerTimeout`). It sits right after the TLS handler, which tells it when
/// the handshake is done (NIOTLS's `TLSUserEvent.handshakeCompleted`), and removes itself then.
final class TLSHandshakeDeadline: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let timeout: TimeAmount
    private var scheduled: Scheduled<Void>?

    init(timeout: Duration) {
        self.timeout = .nanoseconds(Int64(timeout.nanoseconds))
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        scheduled = context.eventLoop.scheduleTask(in: timeout) { bound.value.close(promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        scheduled?.cancel()
        scheduled = nil
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        context.fireUserInboundEventTriggered(event)
        if case .handshakeCompleted = event as? TLSUserEvent {
            scheduled?.cancel()
            scheduled = nil
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }
}
