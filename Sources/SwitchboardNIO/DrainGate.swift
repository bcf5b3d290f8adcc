import NIOCore
import NIOSSL
import NIOTLS

/// Holds back a drain (`ChannelShouldQuiesceEvent`) from a connection that has not sent a request yet.
///
/// NIO's HTTP server pipeline closes a connection at once when it quiesces with no request in flight. A connection
/// handed to the worker just before a drain usually has its request waiting in the socket, unread: closing it then
/// would answer a fresh client with nothing. The gate sits first in the pipeline (right after the TLS handler on a TLS
/// connection, so that the first read is the request and not the ClientHello) and passes the event on right after
/// the connection's first read (so the request is in flight and gets its response), or after `grace` if nothing
/// arrives.
final class DrainGate: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let grace: TimeAmount
    private var sawData = false
    private var held = false

    init(grace: TimeAmount = .seconds(1)) {
        self.grace = grace
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
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

    private func release(context: ChannelHandlerContext) {
        guard held else { return }
        held = false
        context.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
    }
}

/// Closes a TLS connection whose handshake has not completed within `timeout` of the connection's set-up: a client that
/// connects and sends no ClientHello, or trickles it, holds a worker's connection no longer than a client that sends
/// no HTTP request head (`ConnectionLimits.headerTimeout`). It sits right after NIOSSL's server handler, which tells
/// it when the handshake is done, and removes itself then.
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
