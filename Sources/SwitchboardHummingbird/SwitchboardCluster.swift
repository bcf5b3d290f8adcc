// Built only with the package trait `Hummingbird` (`swift build --traits Hummingbird`).
#if Hummingbird
import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import ServiceLifecycle
@_exported import Switchboard
import SwitchboardNIO

/// Runs a Hummingbird 2 application as a Switchboard cluster: one master process accepts, N worker processes serve.
///
/// The same executable is both: ``run(configuration:logger:application:)`` supervises in the process you start and,
/// in each worker the master re-executes, builds your application and serves the connections the master passes with
/// the application's own server builder — `Application(server:)`'s `.http1()`, `.tls(...)` or
/// `.http2Upgrade(tlsConfiguration:)` — so the TLS handshake, ALPN, HTTP/2 streams, routes, middleware, request
/// contexts and error responses are the ones the application has when it listens by itself.
///
/// ```swift
/// import Hummingbird
/// import SwitchboardHummingbird
///
/// await SwitchboardCluster.run(port: 8080) {
///     let router = Router()
///     router.get("/") { _, _ in "Hello" }
///     return Application(router: router)
/// }
/// ```
public enum SwitchboardCluster {
    /// Where the master listens, how many workers it runs, the dispatch mode and the timeouts.
    public typealias Configuration = Switchboard.Configuration

    /// Runs the master in this process, or, in a worker the master started, serves the application with its own
    /// server builder.
    ///
    /// In the master (the process you start) it binds `configuration.host`:`configuration.port`, starts
    /// `configuration.workers` copies of this executable with the same arguments, prints
    /// `listening on <host>:<port> with <n> workers (<mode>)` on standard output once every worker is ready and
    /// supervises them: SIGTERM, SIGINT and SIGQUIT stop gracefully (in-flight requests finish within
    /// `configuration.drainTimeout`), SIGHUP reloads the workers one by one, SIGTTIN and SIGTTOU add and remove one.
    /// The master never calls `application`. It exits with 0 after a graceful stop, or with the
    /// ``SwitchboardError/Code/exitCode`` of the error after printing it on standard error.
    ///
    /// In a worker it does what ``runWorker(logger:application:)`` does.
    ///
    /// Call it at the top of `main` (or of an `AsyncParsableCommand`'s `run()`) and build the application, with its
    /// event loop group, database clients and the like, only inside `application`: the master needs none of it.
    /// - Parameters:
    ///   - configuration: The master's settings; `host`, `port` and `workers` are the usual ones to set. The
    ///     application's own `ApplicationConfiguration.address` is not used: the master binds.
    ///   - logger: Where the master's and the workers' lifecycle log lines go.
    ///   - application: Builds the application; called once in each worker, never in the master.
    /// - Returns: Never: the process exits when the master stops (or, in a worker, when it has drained).
    public static func run<App: ApplicationProtocol>(
        configuration: Configuration = Configuration(),
        logger: Logger = Logger(label: "switchboard"),
        application: @escaping @Sendable () async throws -> App
    ) async -> Never {
        if Cluster.isWorker {
            await runWorker(logger: logger, application: application)
        }
        await runPrimary(configuration: configuration, logger: logger)
    }

    /// Runs the master in this process, or, in a worker the master started, serves the application over HTTP/1.1
    /// with these settings instead of the application's server builder.
    ///
    /// The same as ``run(configuration:logger:application:)`` with `Application(server: .http1(configuration:
    /// http1))`.
    /// - Parameters:
    ///   - configuration: The master's settings.
    ///   - http1: The HTTP/1.1 settings of each connection (idle timeout, decoder limits, extra channel handlers), as
    ///     you would pass them to `HTTPServerBuilder.http1(configuration:)`.
    ///   - logger: Where the master's and the workers' lifecycle log lines go.
    ///   - application: Builds the application; called once in each worker, never in the master.
    /// - Returns: Never: the process exits when the master stops (or, in a worker, when it has drained).
    public static func run<App: ApplicationProtocol>(
        configuration: Configuration = Configuration(),
        http1: HTTP1Channel.Configuration,
        logger: Logger = Logger(label: "switchboard"),
        application: @escaping @Sendable () async throws -> App
    ) async -> Never {
        if Cluster.isWorker {
            await runWorker(http1: http1, logger: logger, application: application)
        }
        await runPrimary(configuration: configuration, logger: logger)
    }

    /// Runs the master in this process, or, in a worker the master started, serves the application with the child
    /// channel `childChannel` builds: the stable path, which reads nothing private of Hummingbird.
    ///
    /// `childChannel` is the closure you would give `HTTPServerBuilder(_:)`: it gets the application's responder and
    /// returns Hummingbird's public child channel for each connection, such as `HTTP1Channel(responder:)`,
    /// `TLSChannel(HTTP1Channel(responder:), tlsConfiguration:)` or
    /// `HTTP2UpgradeChannel(tlsConfiguration:responder:)`. The application's own `server` builder is not used.
    ///
    /// ```swift
    /// await SwitchboardCluster.run(configuration: configuration, childChannel: { responder in
    ///     try HTTP2UpgradeChannel(tlsConfiguration: tls, responder: responder)
    /// }) {
    ///     Application(router: router)
    /// }
    /// ```
    /// - Parameters:
    ///   - configuration: The master's settings.
    ///   - logger: Where the master's and the workers' lifecycle log lines go.
    ///   - childChannel: Builds the child channel from the application's responder; called once in each worker.
    ///   - application: Builds the application; called once in each worker, never in the master.
    /// - Returns: Never: the process exits when the master stops (or, in a worker, when it has drained).
    public static func run<App: ApplicationProtocol>(
        configuration: Configuration = Configuration(),
        logger: Logger = Logger(label: "switchboard"),
        childChannel: @escaping @Sendable (@escaping HTTPChannelHandler.Responder) throws -> any ServerChildChannel,
        application: @escaping @Sendable () async throws -> App
    ) async -> Never {
        if Cluster.isWorker {
            await runWorker(logger: logger, childChannel: childChannel, application: application)
        }
        await runPrimary(configuration: configuration, logger: logger)
    }

    /// Runs the master in this process, or, in a worker the master started, serves the application with its own
    /// server builder; the master listens on `host`:`port` with `workers` workers and otherwise default settings.
    ///
    /// The same as ``run(configuration:logger:application:)`` with a configuration made of these three values.
    /// - Parameters:
    ///   - host: The numeric address to listen on; empty (the default) listens on every interface.
    ///   - port: The TCP port; 0 picks a free one (the ready line names it).
    ///   - workers: The number of worker processes (default: ``Configuration/availableProcessors``: the CPUs this process may use, capped by its CPU quota).
    ///   - logger: Where the master's and the workers' lifecycle log lines go.
    ///   - application: Builds the application; called once in each worker, never in the master.
    /// - Returns: Never: the process exits when the master stops (or, in a worker, when it has drained).
    public static func run<App: ApplicationProtocol>(
        host: String = "",
        port: Int,
        workers: Int = Configuration.availableProcessors,
        logger: Logger = Logger(label: "switchboard"),
        application: @escaping @Sendable () async throws -> App
    ) async -> Never {
        await run(configuration: configuration(host: host, port: port, workers: workers), logger: logger,
                  application: application)
    }

    /// The same as ``run(host:port:workers:logger:application:)``, serving HTTP/1.1 with these settings instead of
    /// the application's server builder.
    /// - Parameters:
    ///   - host: The numeric address to listen on; empty (the default) listens on every interface.
    ///   - port: The TCP port; 0 picks a free one (the ready line names it).
    ///   - workers: The number of worker processes (default: ``Configuration/availableProcessors``: the CPUs this process may use, capped by its CPU quota).
    ///   - http1: The HTTP/1.1 settings of each connection.
    ///   - logger: Where the master's and the workers' lifecycle log lines go.
    ///   - application: Builds the application; called once in each worker, never in the master.
    /// - Returns: Never: the process exits when the master stops (or, in a worker, when it has drained).
    public static func run<App: ApplicationProtocol>(
        host: String = "",
        port: Int,
        workers: Int = Configuration.availableProcessors,
        http1: HTTP1Channel.Configuration,
        logger: Logger = Logger(label: "switchboard"),
        application: @escaping @Sendable () async throws -> App
    ) async -> Never {
        await run(configuration: configuration(host: host, port: port, workers: workers), http1: http1,
                  logger: logger, application: application)
    }

    private static func configuration(host: String, port: Int, workers: Int) -> Configuration {
        var configuration = Configuration()
        configuration.host = host
        configuration.port = port
        configuration.workers = workers
        return configuration
    }

    /// Serves the application in a worker process: each connection the master passes is set up by the
    /// application's own server builder (`ApplicationProtocol.server`: `.http1()` unless the application chose
    /// `.tls(...)`, `.http2Upgrade(...)` or another) and answered by the application's responder.
    ///
    /// It builds the application, runs its `services` in a `ServiceGroup` and its `beforeServerStarts` processes,
    /// then reports ready to the master and serves. Each response gets the `Date` header and, when
    /// `ApplicationConfiguration.serverName` is set, the `Server` header, as with `Application.run()`. The master's
    /// connection limits hold on every connection: the send timeout and output backpressure always, the TLS
    /// handshake within the header timeout, and the header and keep-alive timeouts on HTTP/1 connections (HTTP/2
    /// connections keep the timeouts of the application's `HTTP2ChannelConfiguration`).
    ///
    /// When the master says drain (on its SIGTERM, a reload or a scale-down) every connection is told to quiesce,
    /// as Hummingbird's own server does on a graceful shutdown: an idle HTTP/1 connection closes at once and one
    /// with a request in flight after its response, an HTTP/2 connection sends GOAWAY and closes when its open
    /// streams have finished, and a TLS connection closes with close_notify. The process exits when the last one is
    /// closed (or at the master's drain deadline). Then the application's services shut down gracefully (each gets
    /// the `ServiceGroup`'s graceful shutdown, as under `Application.runService()`) and the process exits with 0. The
    /// application's `onServerRunning` is not called, since the worker has no listening channel of its own.
    ///
    /// Hummingbird keeps the builder's function to itself, so the worker reads the child channel from an unstarted
    /// `Server` the builder made (reflection that only casts to `ServerChildChannel`); should a Hummingbird release
    /// store it differently, the worker stops at start with one line rather than crash-looping. The stable path that
    /// reads nothing private is ``runWorker(logger:childChannel:application:)``.
    ///
    /// Use it instead of ``run(configuration:logger:application:)`` when your program runs its own `Supervisor` in
    /// the master (for its events and messages) and tells the roles apart with `Cluster.isWorker`.
    /// - Parameters:
    ///   - logger: Where the worker's lifecycle log lines go (the application's own logger serves requests).
    ///   - application: Builds the application.
    /// - Returns: Never: the process exits with 0 when the worker has drained and the application's services have
    ///   shut down, or with 1 when `application` throws or one of the application's services fails.
    public static func runWorker<App: ApplicationProtocol>(
        logger: Logger = Logger(label: "switchboard.worker"),
        application: @escaping @Sendable () async throws -> App
    ) async -> Never {
        await serveWorker(logger: logger, application: application) { app, responder in
            try app.server.childChannel(responder: responder, eventLoopGroup: app.eventLoopGroup, logger: app.logger)
        }
    }

    /// Serves the application in a worker process over HTTP/1.1 with these settings instead of the application's
    /// server builder; otherwise as ``runWorker(logger:application:)``.
    /// - Parameters:
    ///   - http1: The HTTP/1.1 settings of each connection.
    ///   - logger: Where the worker's lifecycle log lines go (the application's own logger serves requests).
    ///   - application: Builds the application.
    /// - Returns: Never: the process exits with 0 when the worker has drained and the application's services have
    ///   shut down, or with 1 when `application` throws or one of the application's services fails.
    public static func runWorker<App: ApplicationProtocol>(
        http1: HTTP1Channel.Configuration,
        logger: Logger = Logger(label: "switchboard.worker"),
        application: @escaping @Sendable () async throws -> App
    ) async -> Never {
        await serveWorker(logger: logger, application: application) { _, responder in
            HTTP1Channel(responder: responder, configuration: http1)
        }
    }

    /// Serves the application in a worker process with the child channel `childChannel` builds from the
    /// application's responder (the stable path: nothing private of Hummingbird is read); otherwise as
    /// ``runWorker(logger:application:)``.
    /// - Parameters:
    ///   - logger: Where the worker's lifecycle log lines go (the application's own logger serves requests).
    ///   - childChannel: Builds the child channel from the application's responder, as the closure given to
    ///     `HTTPServerBuilder(_:)` does.
    ///   - application: Builds the application.
    /// - Returns: Never: the process exits with 0 when the worker has drained and the application's services have
    ///   shut down, or with 1 when `application` or `childChannel` throws or one of the application's services
    ///   fails.
    public static func runWorker<App: ApplicationProtocol>(
        logger: Logger = Logger(label: "switchboard.worker"),
        childChannel: @escaping @Sendable (@escaping HTTPChannelHandler.Responder) throws -> any ServerChildChannel,
        application: @escaping @Sendable () async throws -> App
    ) async -> Never {
        await serveWorker(logger: logger, application: application) { _, responder in
            do {
                return try childChannel(responder)
            } catch {
                throw SwitchboardError(.usage, "the child channel could not be built: \(error)")
            }
        }
    }

    private static func serveWorker<App: ApplicationProtocol>(
        logger: Logger,
        application: @escaping @Sendable () async throws -> App,
        childChannel makeChildChannel: (App, @escaping HTTPChannelHandler.Responder) throws -> any ServerChildChannel
    ) async -> Never {
        var logger = logger
        guard let runtime = WorkerRuntime.current(logger: logger) else {
            fail("SWITCHBOARD_WORKER_ID is missing or not a number: a worker is started by a Switchboard master", code: 78)
        }
        logger[metadataKey: "worker.id"] = "\(runtime.id)"
        let app: App
        let childChannel: any ServerChildChannel
        do {
            app = try await application()
            let responder = ApplicationResponder.httpResponder(application: app, responder: try await app.responder)
            childChannel = try makeChildChannel(app, responder)
        } catch let error as SwitchboardError {
            fail(error.message, code: error.code.exitCode)
        } catch {
            logger.critical("the application failed: \(error)")
            exit(1)
        }
        do {
            let worker = makeWorkerService(application: app, childChannel: childChannel, runtime: runtime, logger: logger)
            // The worker ends when it has drained; then the application's services shut down gracefully. If one of
            // them fails, the worker drains and the others shut down as well.
            let services =
                app.services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) } + [
                    .init(
                        service: worker, successTerminationBehavior: .gracefullyShutdownGroup,
                        failureTerminationBehavior: .gracefullyShutdownGroup)
                ]
            // SIGTERM is the worker's parent-death signal: if the master dies, drain rather than die mid-request.
            let group = ServiceGroup(
                configuration: .init(services: services, gracefulShutdownSignals: [.sigterm], logger: app.logger))
            try await group.run()
        } catch {
            logger.critical("the application failed: \(error)")
            exit(1)
        }
        exit(0)
    }

    private static func runPrimary(configuration: Configuration, logger: Logger) async -> Never {
        await ClusterMain.runMaster(configuration: configuration, logger: logger)
    }

    private static func fail(_ message: String, code: Int32) -> Never {
        ClusterMain.fail(message, code: code)
    }
}
#endif
