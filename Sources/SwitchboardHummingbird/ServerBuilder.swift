// Built only with the package trait `Hummingbird` (`swift build --traits Hummingbird`).
#if Hummingbird
import HummingbirdCore
import Logging
import ServiceLifecycle
import NIOCore
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOSSL
import NIOTLS
import Switchboard
import SwitchboardNIO

extension HTTPServerBuilder {
    /// The child channel Hummingbird's own server sets every accepted connection up with, for `responder`.
    ///
    /// Hummingbird 2 keeps the builder's function `package`; its one public use is `buildServer(...)`, which calls it
    /// and returns a `Server` that has not started (nothing is bound until it runs). The child channel is read from
    /// that server through reflection and the server is dropped unstarted. `SwitchboardHummingbirdTests` checks this
    /// for every builder Hummingbird ships (`.http1()`, `.tls(...)`, `.http2Upgrade(...)`, `.plaintextHTTP2()`);
    /// should a release store it differently, a worker stops at start with one line instead of serving without the
    /// application's protocol.
    func childChannel(
        responder: @escaping HTTPChannelHandler.Responder, eventLoopGroup: any EventLoopGroup, logger: Logger
    ) throws(SwitchboardError) -> any ServerChildChannel {
        let server: any Service
        do {
            server = try buildServer(
                configuration: .init(), eventLoopGroup: eventLoopGroup, logger: logger, responder: responder)
        } catch {
            throw SwitchboardError(.usage, "the application's server builder failed: \(error)")
        }
        guard let childChannel = Self.unstartedChildChannel(of: server) else {
            throw SwitchboardError(
                .usage,
                "this Hummingbird version's server does not show its child channel; "
                    + "pass the HTTP/1 settings with `http1:` instead")
        }
        return childChannel
    }

    /// The child channel in an unstarted `Server`'s `initial` state.
    static func unstartedChildChannel(of server: Any) -> (any ServerChildChannel)? {
        for property in Mirror(reflecting: server).children {
            for state in Mirror(reflecting: property.value).children where state.label == "initial" {
                for field in Mirror(reflecting: state.value).children {
                    if let childChannel = field.value as? any ServerChildChannel { return childChannel }
                }
            }
        }
        return nil
    }
}

/// The hostile-clients limits that need the HTTP/1 codec (`ConnectionLimits.headerTimeout` and
/// `ConnectionLimits.keepAliveTimeout`), put right after Hummingbird's HTTP/1 codec wherever one is in a connection's
/// pipeline: at set-up for `.http1()` and `.tls(.http1())`, after the handshake when ALPN chose HTTP/1.1 under
/// `.http2Upgrade(...)`. HTTP/2 connections keep the idle, graceful-close and max-age timeouts of the application's
/// `HTTP2ChannelConfiguration`.
enum HTTP1Limits {
    /// Adds the timeouts after the HTTP/1 codec; false when the pipeline has none (yet).
    static func install(on channel: any Channel, limits: ConnectionLimits) throws -> Bool {
        let operations = channel.pipeline.syncOperations
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
                try operations.addHandler(AfterHandshake(limits: limits), position: .after(tls.handler))
            }
            let closeAfterWrites = CloseAfterWrites()
            if let tls {
                try operations.addHandler(closeAfterWrites, position: .after(tls.handler))
                try operations.addHandler(EndOfInputWhileClosing(closing: closeAfterWrites), position: .first)
            } else {
                try operations.addHandler(closeAfterWrites, position: .first)
            }
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

    /// Waits for the end of the TLS handshake, then installs the timeouts if ALPN made the connection HTTP/1.1.
    final class AfterHandshake: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = NIOAny
        let limits: ConnectionLimits

        init(limits: ConnectionLimits) {
            self.limits = limits
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            // Passed on first: the ALPN handler behind this one configures the protocol's pipeline on this event.
            context.fireUserInboundEventTriggered(event)
            guard case .handshakeCompleted = event as? TLSUserEvent else { return }
            let channel = context.channel
            let limits = limits
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            if (try? HTTP1Limits.install(on: channel, limits: limits)) != true {
                // The protocol's pipeline may be configured a moment later (an asynchronous configurator).
                channel.eventLoop.execute { _ = try? HTTP1Limits.install(on: channel, limits: limits) }
            }
        }
    }
}
#endif
