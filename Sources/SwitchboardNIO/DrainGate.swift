import NIOCore

/// Holds back a drain (`ChannelShouldQuiesceEvent`) from a connection that has not sent anything yet.
///
/// NIO's HTTP server pipeline closes a connection at once when it quiesces with no request in flight. A connection
/// handed to the worker just before a drain usually has its request waiting in the socket, unread: closing it then
/// would answer a fresh client with nothing. The gate sits first in the pipeline and passes the event on right after
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
