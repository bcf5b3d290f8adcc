// Built only with the package trait `Hummingbird` (`swift build --traits Hummingbird`).
#if Hummingbird
import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOSSL
import NIOHTTP1
import NIOHTTPTypes
import ServiceLifecycle
import Switchboard
import SwitchboardNIO

/// The worker's HTTP server as a `Service`: runs the application's `beforeServerStarts` processes, then serves the
/// connections the master passes through the child channel of the application's server builder (`.http1()`,
/// `.tls(...)`, `.http2Upgrade(...)`: the set-up Hummingbird's own server does for each connection it accepts) until
/// the worker has drained (the master said drain, or the group shuts down gracefully), and returns.
final class WorkerService<Child: ServerChildChannel>: Service, CustomStringConvertible {
    let childChannel: Child
    let processes: [@Sendable () async throws -> Void]
    let eventLoopGroup: any EventLoopGroup
    let runtime: WorkerRuntime
    let appLogger: Logger
    let logger: Logger

    var description: String { "SwitchboardWorker" }

    init<App: ApplicationProtocol>(application: App, childChannel: Child, runtime: WorkerRuntime, logger: Logger) {
        self.childChannel = childChannel
        self.processes = application.processesRunBeforeServerStart
        self.eventLoopGroup = application.eventLoopGroup
        self.runtime = runtime
        self.appLogger = application.logger
        self.logger = logger
    }

    func run() async throws {
        for process in processes {
            try await process()
        }
        let (connections, newConnection) = AsyncStream.makeStream(of: Child.Value.self)
        let childChannel = self.childChannel
        let appLogger = self.appLogger
        let limits = runtime.limits
        let server = SwitchboardWorkerServer(
            runtime: runtime, group: eventLoopGroup, logger: logger,
            findTLSHandler: { try? $0.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self) }
        ) { channel in
            PassedConnection.setUp(channel, with: childChannel, limits: limits, logger: appLogger).map {
                newConnection.yield($0)
            }
        }
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask {
                    // Returns once every connection has closed after a drain; that ends the loop below.
                    defer { newConnection.finish() }
                    try await server.serveUntilDrained()
                }
                for await connection in connections {
                    group.addTask { await childChannel.handle(value: connection, logger: appLogger) }
                }
            }
        } onGracefulShutdown: {
            server.beginDrain(deadline: server.runtime.drainTimeout)
        }
    }
}

/// The worker for a child channel whose type is known only at run time (the builder's).
func makeWorkerService<App: ApplicationProtocol, Child: ServerChildChannel>(
    application: App, childChannel: Child, runtime: WorkerRuntime, logger: Logger
) -> any Service {
    WorkerService(application: application, childChannel: childChannel, runtime: runtime, logger: logger)
}

/// The responder `Application.run()` gives its server builder.
enum ApplicationResponder<App: ApplicationProtocol> {
    /// The responder `Application.run()` builds: a request context per request, errors the application does not
    /// turn into responses become 500, and each response gets the `Date` and (when configured) `Server` headers.
    static func httpResponder(application: App, responder: App.Responder) -> HTTPChannelHandler.Responder {
        let dates = HTTPDateCache()
        let serverName = application.configuration.serverName
        let appLogger = application.logger
        return { (request, responseWriter: consuming ResponseWriter, channel) in
            var logger = appLogger
            logger[metadataKey: "hb.request.id"] = .stringConvertible(RequestID())
            let response = try await withLogger(logger) { logger in
                let context = App.Context(source: .init(channel: channel, logger: logger))
                var response: Response
                do {
                    response = try await responder.respond(to: request, context: context)
                } catch let error as HTTPParserError {
                    throw error
                } catch {
                    logger.debug("Unrecognised Error", metadata: ["error.type": "\(error)"])
                    response = Response(status: .internalServerError, body: .init())
                }
                response.headers[.date] = dates.current
                if let serverName {
                    response.headers[.server] = serverName
                }
                return response
            }
            do {
                try await responseWriter.write(response: response.head, body: response.body)
            } catch is HTTPParserError {
                // Not the parser error itself: the channel handler would answer it with a second response.
                throw ParseErrorWhileWritingResponse()
            }
        }
    }
}

/// The request body turned out malformed while the response was being written.
struct ParseErrorWhileWritingResponse: Error {}
#endif
