import Dispatch
import ServiceLifecycle
import Switchboard

/// A `Supervisor` as a swift-service-lifecycle `Service`, so the master sits in a `ServiceGroup` beside the
/// program's other services and stops gracefully with them.
///
/// Create the supervisor with `handleSignals: false` and give the group the signals (`gracefulShutdownSignals:
/// [.sigterm, .sigint]`): on graceful shutdown the service calls `Supervisor.stop()`, which drains the workers, and
/// `run()` returns when the master has stopped.
public struct SupervisorService: Service, CustomStringConvertible {
    /// The supervisor this service runs.
    public let supervisor: Supervisor
    private let listener: CInt?

    /// Creates the service.
    /// - Parameters:
    ///   - supervisor: The supervisor to run.
    ///   - listener: An already listening socket to use instead of binding.
    public init(_ supervisor: Supervisor, listener: CInt? = nil) {
        self.supervisor = supervisor
        self.listener = listener
    }

    public var description: String { "SwitchboardSupervisor" }

    /// Runs the master until it stops: on graceful shutdown or cancellation it is told to stop.
    /// - Throws: `SwitchboardError` when the master cannot start, or halts with a non-zero exit code (a crash loop).
    public func run() async throws {
        let supervisor = self.supervisor
        let listener = self.listener
        let code: Int32 = try await withGracefulShutdownHandler {
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { continuation in
                    // The master loop blocks a thread of its own until it stops.
                    DispatchQueue(label: "switchboard.supervisor").async {
                        continuation.resume(with: Result { () throws(SwitchboardError) in try supervisor.run(listener: listener) })
                    }
                }
            } onCancel: {
                supervisor.stop()
            }
        } onGracefulShutdown: {
            supervisor.stop()
        }
        guard code == 0 else {
            throw SwitchboardError(.crashLoop, "the master stopped with exit code \(code)")
        }
    }
}
