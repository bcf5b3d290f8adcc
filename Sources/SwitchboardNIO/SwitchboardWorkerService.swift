import ServiceLifecycle
import Switchboard

/// A ``SwitchboardWorkerServer`` as a swift-service-lifecycle `Service`, so a worker serves beside the program's
/// other services and they shut down after it has drained.
///
/// `run()` serves until the master says drain (or disappears) and every connection has closed, then returns. On the
/// group's graceful shutdown (or cancellation) it starts the drain itself. Give the worker
/// `successTerminationBehavior: .gracefullyShutdownGroup` so that its end shuts down the other services gracefully
/// (a database pool, a metrics exporter) before the process exits. A worker gets SIGTERM when its master dies (its
/// parent-death signal): list it in `gracefulShutdownSignals` so that the worker drains instead of dying mid-request:
///
/// ```swift
/// let worker = SwitchboardWorkerService(server)
/// let group = ServiceGroup(configuration: .init(
///     services: [
///         .init(service: metricsExporter),
///         .init(service: worker, successTerminationBehavior: .gracefullyShutdownGroup,
///               failureTerminationBehavior: .gracefullyShutdownGroup),
///     ],
///     gracefulShutdownSignals: [.sigterm],
///     logger: logger))
/// try await group.run()
/// ```
public struct SwitchboardWorkerService: Service, CustomStringConvertible {
    /// The server this service runs.
    public let server: SwitchboardWorkerServer
    /// How long a drain this service starts (graceful shutdown, cancellation) waits for open connections.
    public let drainTimeout: Duration

    /// Creates the service.
    /// - Parameters:
    ///   - server: The server to run; it must not be serving already.
    ///   - drainTimeout: How long a drain started by graceful shutdown or cancellation waits for open connections
    ///     before closing them; nil (the default) takes the master's drain timeout
    ///     (`WorkerRuntime.drainTimeout`). A drain the master asks for carries the master's own deadline.
    public init(_ server: SwitchboardWorkerServer, drainTimeout: Duration? = nil) {
        self.server = server
        self.drainTimeout = drainTimeout ?? server.runtime.drainTimeout
    }

    public var description: String { "SwitchboardWorker" }

    /// Serves until drained.
    /// - Throws: `SwitchboardError` when the worker's own listener cannot start or the server is already serving.
    public func run() async throws {
        let server = self.server
        let deadline = drainTimeout
        try await withGracefulShutdownHandler {
            try await withTaskCancellationHandler {
                try await server.serveUntilDrained()
            } onCancel: {
                server.beginDrain(deadline: deadline)
            }
        } onGracefulShutdown: {
            server.beginDrain(deadline: deadline)
        }
    }
}
