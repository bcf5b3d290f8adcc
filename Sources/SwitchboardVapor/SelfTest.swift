// Built only with the package trait `Vapor` (`swift build --traits Vapor`).
#if Vapor
import NIOCore
import NIOPosix
import NIOSSL
import Vapor

#if canImport(Glibc)
import Glibc
#endif

/// One real request through the way a passed connection takes into Vapor, on a socketpair: one end is adopted exactly
/// as a passed connection is (``PrivateListener/adopt(_:)``), the other is a client that sends a request (over TLS
/// when the application's server has a TLS configuration) and expects an HTTP/1.1 response, whatever its status.
enum SelfTest {
    /// The request's path: the application answers it as any other (usually 404).
    static let path = "/.switchboard/self-test"

    /// Runs the self-test.
    /// - Throws: ``InternalsMoved`` when no response came back: the passed connection did not reach Vapor's server.
    static func run(through listener: PrivateListener, group: any EventLoopGroup) async throws {
        let descriptors: (CInt, CInt)
        do {
            descriptors = try Syscalls.streamSocketPair()
        } catch {
            throw SwitchboardError(.system, "\(error)")
        }
        let serverSide = try? await ClientBootstrap(group: group)
            .channelInitializer { listener.adopt($0) }
            .withConnectedSocket(descriptors.0)
            .get()
        guard serverSide != nil else {
            Syscalls.close(descriptors.1)
            throw InternalsMoved("cannot set a passed connection up through HTTPServer's listening channel")
        }
        let response = group.next().makePromise(of: String.self)
        let tls = listener.server.configuration.tlsConfiguration != nil
        let client: any Channel
        do {
            client = try await ClientBootstrap(group: group)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if tls {
                            var configuration = TLSConfiguration.makeClientConfiguration()
                            configuration.certificateVerification = .none
                            configuration.applicationProtocols = ["http/1.1"]
                            let context = try NIOSSLContext(configuration: configuration)
                            try channel.pipeline.syncOperations.addHandler(
                                try NIOSSLClientHandler(context: context, serverHostname: nil))
                        }
                        try channel.pipeline.syncOperations.addHandler(ResponseReader(response: response))
                    }
                }
                .withConnectedSocket(descriptors.1)
                .get()
        } catch {
            serverSide?.close(promise: nil)
            throw SwitchboardError(.system, "the self-test client failed: \(error)")
        }
        let request = "GET \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        client.writeAndFlush(ByteBuffer(string: request), promise: nil)
        let timeout = client.eventLoop.scheduleTask(in: .seconds(10)) {
            response.fail(ChannelError.connectTimeout(.seconds(10)))
        }
        let text = try? await response.futureResult.get()
        timeout.cancel()
        client.close(promise: nil)
        serverSide?.close(promise: nil)
        guard let text, text.hasPrefix("HTTP/1.1 ") else {
            throw InternalsMoved("got no HTTP response through HTTPServer's listening channel")
        }
    }

    /// Collects what the server sends until it closes, then completes `response` with it.
    final class ResponseReader: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let response: EventLoopPromise<String>
        var received = ""

        init(response: EventLoopPromise<String>) {
            self.response = response
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            received += String(buffer: unwrapInboundIn(data))
            if received.contains("\r\n\r\n") { response.succeed(received) }
        }

        func channelInactive(context: ChannelHandlerContext) {
            response.succeed(received)
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            response.fail(error)
            context.close(promise: nil)
        }
    }
}
#endif
