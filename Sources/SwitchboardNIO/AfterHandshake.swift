import NIOCore
import NIOTLS

/// Waits for the end of a TLS handshake, then runs `install` (the framework adapters put the HTTP/1 timeouts or the
/// HTTP/2 drain behind the protocol ALPN chose). Right after the TLS handler; it removes itself at the handshake.
package final class AfterHandshake: ChannelInboundHandler, RemovableChannelHandler {
    package typealias InboundIn = NIOAny

    private let install: (any Channel) throws -> Bool

    /// - Parameter install: Adds what the connection's protocol needs; false when the protocol's pipeline is not
    ///   there yet (it is tried once more on the next turn of the loop).
    package init(install: @escaping (any Channel) throws -> Bool) {
        self.install = install
    }

    package func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Passed on first: the ALPN handler behind this one configures the protocol's pipeline on this event.
        context.fireUserInboundEventTriggered(event)
        guard case .handshakeCompleted = event as? TLSUserEvent else { return }
        let channel = context.channel
        let install = self.install
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        if (try? install(channel)) != true {
            // The protocol's pipeline may be configured a moment later (an asynchronous configurator).
            let bound = NIOLoopBound(install, eventLoop: channel.eventLoop)
            channel.eventLoop.execute { _ = try? bound.value(channel) }
        }
    }
}
