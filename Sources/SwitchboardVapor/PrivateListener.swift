// Built only with the package trait `Vapor` (`swift build --traits Vapor`).
#if Vapor
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import Vapor

/// The application's own `HTTPServer`, listening on a private unix socket whose name is gone, and the way in for the
/// connections the master passes.
///
/// `start(application:publicHost:publicPort:)` starts `app.http.server.shared` (the application's responder and
/// configuration) on `<fresh 0700 directory>/s`, unlinks the name and removes the directory at once: nothing can
/// connect to it. It then reaches the server's listening channel (private state of Vapor's `HTTPServer`, read by
/// `Mirror` and only ever cast to `any Channel` or public NIO types) and puts ``PassedChannelCatcher`` at the tail
/// of its pipeline. ``adopt(_:)`` fires a passed, not yet registered channel into that pipeline: Vapor's quiescing
/// helper records it, NIO's accept handler applies the child options and runs Vapor's child initializer (TLS, ALPN,
/// HTTP/2, HTTP/1), and the catcher stops it before the server channel would register it, so that the
/// `ClientBootstrap` that made it registers it.
final class PrivateListener: Sendable {
    /// The Vapor release whose `HTTPServer` internals this adapter was written and tested against.
    static let vaporVersion = "4.122.3"

    let server: HTTPServer
    let channel: any Channel
    private let catcher: NIOLoopBound<PassedChannelCatcher>

    private init(server: HTTPServer, channel: any Channel, catcher: NIOLoopBound<PassedChannelCatcher>) {
        self.server = server
        self.channel = channel
        self.catcher = catcher
    }

    /// Starts the application's HTTP server privately and makes it ready to adopt passed connections.
    /// - Parameters:
    ///   - application: The application (booted).
    ///   - publicHost: What `app.http.server.configuration.hostname` reads afterwards.
    ///   - publicPort: What `app.http.server.configuration.port` reads afterwards (the master's port).
    /// - Throws: ``InternalsMoved`` when Vapor's `HTTPServer` is not built as this adapter expects; any other error
    ///   when the server cannot start.
    static func start(application: Application, publicHost: String, publicPort: Int) async throws -> PrivateListener {
        let server = application.http.server.shared
        let directory = try makePrivateDirectory()
        let path = directory + "/s"
        // Vapor logs "Server started on <address>" at notice: this address is nobody's business.
        let configured = server.configuration
        var quiet = configured
        quiet.logger.logLevel = max(configured.logger.logLevel, .warning)
        server.configuration = quiet
        do {
            try await server.start(address: .unixDomainSocket(path: path))
        } catch {
            Syscalls.unlink(path)
            Syscalls.removeDirectory(directory)
            throw error
        }
        Syscalls.unlink(path)
        Syscalls.removeDirectory(directory)

        let channel: any Channel
        do {
            channel = try listeningChannel(of: server)
            // The application sees the master's address, as if its server listened there.
            var configuration = server.configuration
            configuration.address = .hostname(publicHost, port: publicPort)
            configuration.logger = configured.logger
            try whileNotStarted(server) { server.configuration = configuration }
            guard case .hostname(_, publicPort) = server.configuration.address,
                application.http.server.configuration.port == publicPort
            else {
                throw InternalsMoved("the server's configuration did not take the public address")
            }
        } catch {
            await server.shutdown()
            throw error
        }
        let catcher = try await channel.eventLoop.submit {
            let catcher = PassedChannelCatcher()
            try channel.pipeline.syncOperations.addHandler(catcher)
            return NIOLoopBound(catcher, eventLoop: channel.eventLoop)
        }.get()
        return PrivateListener(server: server, channel: channel, catcher: catcher)
    }

    /// Sets up a passed connection as Vapor sets up one it accepted.
    ///
    /// Call it from the channel initializer of the `ClientBootstrap` that adopts the connection, before the channel
    /// is registered.
    /// - Parameter child: The connection's channel, not registered yet.
    /// - Returns: Succeeds when Vapor's child initializer has set the channel up; fails when it could not (the
    ///   channel is closed then).
    func adopt(_ child: any Channel) -> EventLoopFuture<Void> {
        let promise = child.eventLoop.makePromise(of: Void.self)
        let listener = channel
        let catcher = self.catcher
        listener.eventLoop.execute {
            guard listener.isActive else {
                promise.fail(ChannelError.ioOnClosedChannel)
                return
            }
            catcher.value.expect(child, promise: promise)
            listener.pipeline.syncOperations.fireChannelRead(NIOAny(child))
        }
        // The accept handler closes a channel whose set-up failed.
        child.closeFuture.whenComplete { _ in
            listener.eventLoop.execute { catcher.value.closed(child) }
        }
        return promise.futureResult
    }

    /// Shuts the application's server down (its quiescing helper closes the listener; the passed connections are
    /// closed by then).
    func shutdown() async {
        await server.shutdown()
    }

    private static func makePrivateDirectory() throws -> String {
        let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        do {
            // 0700: only this user can reach the socket during the moment its name exists.
            return try Syscalls.makePrivateDirectory(in: base, prefix: "switchboard-vapor-")
        } catch {
            throw SwitchboardError(.system, "cannot create a private directory in \(base): \(error)")
        }
    }

    /// The listening channel of a started `HTTPServer`: `connection` (a lock box) → its storage → `header` →
    /// `some` → `channel`. Only values are cast, to `any Channel`; nothing is called.
    private static func listeningChannel(of server: HTTPServer) throws -> any Channel {
        guard let box = field("connection", of: server) else {
            throw InternalsMoved("HTTPServer has no stored property 'connection'")
        }
        guard let storage = field("_storage", of: box), let header = field("header", of: storage) else {
            throw InternalsMoved("HTTPServer.connection is not an NIOLockedValueBox")
        }
        guard let connection = field("some", of: header) else {
            throw InternalsMoved("HTTPServer.connection is empty after start")
        }
        guard let channel = field("channel", of: connection) as? any Channel else {
            throw InternalsMoved("HTTPServer's connection has no 'channel' of type Channel")
        }
        guard channel.isActive, channel.parent == nil, channel.localAddress?.protocol == .unix else {
            throw InternalsMoved("HTTPServer's channel is not its listening unix socket")
        }
        return channel
    }

    /// Runs `body` with the server's started flag lowered: `HTTPServer` refuses a new address once started, and the
    /// application must see the public one.
    private static func whileNotStarted(_ server: HTTPServer, _ body: () -> Void) throws {
        guard let started = field("didStart", of: server) as? NIOLockedValueBox<Bool> else {
            throw InternalsMoved("HTTPServer has no 'didStart' flag")
        }
        started.withLockedValue { $0 = false }
        body()
        started.withLockedValue { $0 = true }
    }

    /// The stored property `label` of `value` (or of a superclass), by reflection.
    private static func field(_ label: String, of value: Any) -> Any? {
        var mirror: Mirror? = Mirror(reflecting: value)
        while let current = mirror {
            for child in current.children where child.label == label { return child.value }
            mirror = current.superclassMirror
        }
        return nil
    }
}

/// Vapor's `HTTPServer` is not built the way this adapter expects (another Vapor release).
struct InternalsMoved: Error, CustomStringConvertible {
    let detail: String

    init(_ detail: String) {
        self.detail = detail
    }

    var description: String {
        "SwitchboardVapor \(detail): this build supports Vapor \(PrivateListener.vaporVersion); pin vapor to "
            + "\(PrivateListener.vaporVersion) or update SwitchboardVapor"
    }
}

/// Stops the passed channels that ``PrivateListener/adopt(_:)`` fires into the listener's pipeline once the accept
/// handler has set them up: the server channel would register them (it registers what reaches its pipeline's
/// tail), but their `ClientBootstrap` does. The last handler of the listener's pipeline.
final class PassedChannelCatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = any Channel

    private var expected: [ObjectIdentifier: EventLoopPromise<Void>] = [:]

    func expect(_ child: any Channel, promise: EventLoopPromise<Void>) {
        expected[ObjectIdentifier(child)] = promise
    }

    func closed(_ child: any Channel) {
        expected.removeValue(forKey: ObjectIdentifier(child))?.fail(ChannelError.ioOnClosedChannel)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let child = unwrapInboundIn(data)
        guard let promise = expected.removeValue(forKey: ObjectIdentifier(child)) else {
            context.fireChannelRead(data)
            return
        }
        promise.succeed()
    }
}
#endif
