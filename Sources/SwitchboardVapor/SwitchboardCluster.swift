// Built only with the package trait `Vapor` (`swift build --traits Vapor`).
#if Vapor
import Foundation
import Logging
import NIOCore
import NIOSSL
@_exported import Switchboard
import SwitchboardNIO
import Vapor

/// Runs a Vapor 4 application as a Switchboard cluster: one master process accepts, N worker processes serve.
///
/// The same executable is both: ``run(configuration:logger:application:)`` supervises in the process you start and,
/// in each worker the master re-executes, builds your application and serves each connection the master passes with
/// the application's own `HTTPServer` — its responder, middleware, routes, TLS, HTTP/2, compression, request body
/// streaming, WebSockets and error responses, exactly as when the application listens by itself.
///
/// ```swift
/// import SwitchboardVapor
/// import Vapor
///
/// await SwitchboardCluster.run(port: 8080) {
///     let app = try await Application.make(.production)
///     app.get { _ in "Hello" }
///     return app
/// }
/// ```
public enum SwitchboardCluster {
    /// Where the master listens, how many workers it runs, the dispatch mode and the timeouts.
    public typealias Configuration = Switchboard.Configuration

    /// Runs the master in this process, or, in a worker the master started, serves the application with its own
    /// HTTP server.
    ///
    /// In the master (the process you start) it first checks, on a bare Vapor application of its own (none of your
    /// code), that this Vapor release can serve passed connections (see ``runWorker(logger:application:)``): if not,
    /// it prints one line naming the Vapor release it supports and exits with 78 before starting any worker. Then it
    /// binds `configuration.host`:`configuration.port`, starts `configuration.workers` copies of this executable with
    /// the same arguments, prints `listening on <host>:<port> with <n> workers (<mode>)` on standard output once every
    /// worker is ready and supervises them: SIGTERM, SIGINT and SIGQUIT stop gracefully (in-flight requests finish
    /// within `configuration.drainTimeout`), SIGHUP reloads the workers one by one, SIGTTIN and SIGTTOU add and
    /// remove one. The master never calls `application`. It exits with 0 after a graceful stop, or with the
    /// ``SwitchboardError/Code/exitCode`` of the error after printing it on standard error.
    ///
    /// In a worker it does what ``runWorker(logger:application:)`` does.
    /// - Parameters:
    ///   - configuration: The master's settings; `host`, `port` and `workers` are the usual ones to set. The
    ///     application's own `app.http.server.configuration` address is not used: the master binds.
    ///   - logger: Where the master's and the workers' lifecycle log lines go.
    ///   - application: Builds and configures the application (`Application.make`, routes, middleware, the HTTP
    ///     server's configuration); called once in each worker, never in the master.
    /// - Returns: Never: the process exits when the master stops (or, in a worker, when it has drained).
    public static func run(
        configuration: Configuration = Configuration(),
        logger: Logger = Logger(label: "switchboard"),
        application: @escaping @Sendable () async throws -> Application
    ) async -> Never {
        if Cluster.isWorker {
            await runWorker(logger: logger, application: application)
        }
        await checkVapor()
        await runPrimary(configuration: configuration, logger: logger)
    }

    /// Runs the master in this process, or, in a worker, serves the application; the master listens on
    /// `host`:`port` with `workers` workers and otherwise default settings.
    ///
    /// The same as ``run(configuration:logger:application:)`` with a configuration made of these three values.
    /// - Parameters:
    ///   - host: The numeric address to listen on; empty (the default) listens on every interface.
    ///   - port: The TCP port; 0 picks a free one (the ready line names it).
    ///   - workers: The number of worker processes (default: the CPUs this process may use, capped by its CPU quota).
    ///   - logger: Where the master's and the workers' lifecycle log lines go.
    ///   - application: Builds and configures the application; called once in each worker, never in the master.
    /// - Returns: Never: the process exits when the master stops (or, in a worker, when it has drained).
    public static func run(
        host: String = "",
        port: Int,
        workers: Int = Configuration.availableProcessors,
        logger: Logger = Logger(label: "switchboard"),
        application: @escaping @Sendable () async throws -> Application
    ) async -> Never {
        var configuration = Configuration()
        configuration.host = host
        configuration.port = port
        configuration.workers = workers
        await run(configuration: configuration, logger: logger, application: application)
    }

    /// Serves the application in a worker process: each connection the master passes is served by the
    /// application's own `HTTPServer` (`app.http.server.shared`).
    ///
    /// It builds the application, boots it (`asyncBoot()`: providers and lifecycle handlers), and starts the
    /// application's HTTP server on a private unix socket in a fresh 0700 directory whose name is removed at once,
    /// so nothing can connect to it. Each passed connection enters that server as one it accepted: Vapor's
    /// per-connection set-up (TLS, ALPN, HTTP/2, HTTP/1, compression, pipelining, upgrades) and its graceful
    /// shutdown apply. `app.http.server.configuration` reads the master's host and port. Before it reports ready,
    /// the worker sends one request (`GET /.switchboard/self-test`, over TLS if configured) through that path on a
    /// socketpair; if it gets no HTTP response (another Vapor release), it prints one line naming the Vapor release
    /// this adapter supports and exits with 78.
    ///
    /// The master's connection limits hold on every connection: the send timeout and output backpressure always,
    /// the TLS handshake within the header timeout, the header and keep-alive timeouts on HTTP/1 connections
    /// (until a WebSocket upgrade). When the master says drain: an idle HTTP/1 connection closes at once and a busy
    /// one after its response; an HTTP/2 connection sends GOAWAY, answers every stream the client opened before it
    /// read the GOAWAY, then closes; a WebSocket gets a Close frame with status 1001 (Going Away), so its client
    /// reconnects to a worker that keeps serving. Once every connection is closed (or at the drain deadline) the
    /// server and the application shut down (`asyncShutdown()`) and the process exits with 0.
    ///
    /// Use it instead of ``run(configuration:logger:application:)`` when your program runs its own `Supervisor` in
    /// the master and tells the roles apart with `Cluster.isWorker`.
    /// - Parameters:
    ///   - logger: Where the worker's lifecycle log lines go (the application's own logger serves requests).
    ///   - application: Builds and configures the application.
    /// - Returns: Never: the process exits with 0 when the worker has drained, 78 when the self-test fails, or 1
    ///   when `application` throws or the server cannot start.
    public static func runWorker(
        logger: Logger = Logger(label: "switchboard.worker"),
        application: @escaping @Sendable () async throws -> Application
    ) async -> Never {
        var logger = logger
        guard let runtime = WorkerRuntime.current(logger: logger) else {
            fail(
                "SWITCHBOARD_WORKER_ID is missing or not a number: a worker is started by a Switchboard master",
                code: 78)
        }
        logger[metadataKey: "worker.id"] = "\(runtime.id)"
        let app: Application
        let listener: PrivateListener
        do {
            app = try await application()
            try await app.asyncBoot()
            listener = try await startListener(
                app, host: runtime.listenHost.isEmpty ? "0.0.0.0" : runtime.listenHost, port: runtime.listenPort)
        } catch let error as SwitchboardError {
            fail(error.message, code: error.code.exitCode)
        } catch {
            fail("the application failed: \(error)", code: 1)
        }
        let limits = runtime.limits
        let server = SwitchboardWorkerServer(
            runtime: runtime, group: app.eventLoopGroup, logger: logger,
            // Vapor's own TLS handler (its server configuration's `tlsConfiguration`): the drain gate goes behind it.
            findTLSHandler: { try? $0.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self) }
        ) { channel in
            listener.adopt(channel).flatMapThrowing {
                try PassedConnection.finishSetUp(channel, limits: limits)
            }
        }
        // SIGTERM is the worker's parent-death signal: if the master dies, drain rather than die mid-request.
        signal(SIGTERM, SIG_IGN)
        let term = DispatchSource.makeSignalSource(signal: SIGTERM, queue: .global())
        term.setEventHandler { server.beginDrain(deadline: runtime.drainTimeout) }
        term.resume()
        do {
            try await server.serveUntilDrained()
        } catch {
            logger.critical("the worker failed: \(error)")
        }
        term.cancel()
        await listener.shutdown()
        do {
            try await app.asyncShutdown()
        } catch {
            logger.warning("the application's shutdown failed: \(error)")
        }
        exit(0)
    }

    /// Starts the application's server privately and runs the self-test through it; exits with one line when
    /// Vapor's internals are not what this adapter expects.
    private static func startListener(_ app: Application, host: String, port: Int) async throws -> PrivateListener {
        do {
            let listener = try await PrivateListener.start(application: app, publicHost: host, publicPort: port)
            do {
                try await SelfTest.run(through: listener, group: app.eventLoopGroup)
            } catch {
                await listener.shutdown()
                throw error
            }
            return listener
        } catch let moved as InternalsMoved {
            fail(moved.description, code: 78)
        }
    }

    /// The self-test of ``runWorker(logger:application:)`` on a bare application, in the master before any worker
    /// starts: a Vapor release that moved the internals stops the service with one line, not a crash loop.
    private static func checkVapor() async {
        do {
            var environment = Environment.production
            environment.arguments = [CommandLine.arguments.first ?? "switchboard"]
            let probe = try await Application.make(environment)
            var quiet = Logger(label: "switchboard.vapor-check")
            quiet.logLevel = .critical
            probe.logger = quiet
            probe.http.server.configuration.logger = quiet
            do {
                let listener = try await startListener(probe, host: "127.0.0.1", port: 0)
                await listener.shutdown()
            } catch {
                try? await probe.asyncShutdown()
                throw error
            }
            try await probe.asyncShutdown()
        } catch {
            fail("cannot check Vapor's HTTP server: \(error)", code: 1)
        }
    }

    private static func runPrimary(configuration: Configuration, logger: Logger) async -> Never {
        await ClusterMain.runMaster(configuration: configuration, logger: logger)
    }

    private static func fail(_ message: String, code: Int32) -> Never {
        ClusterMain.fail(message, code: code)
    }
}
#endif
