// A Hummingbird 2 application run as a Switchboard cluster: the master accepts, each worker runs the application.
//
//   swift run --traits Hummingbird switchboard-hummingbird-example --port 8080 --workers 4
//   (or PORT=8080 WORKERS=4 ...)
//
// The same binary is the master (the process you start) and, re-executed by the master, each worker.
#if Hummingbird
import Foundation
import Hummingbird
import ServiceLifecycle
import SwitchboardHummingbird
import Synchronization

/// Counts the requests this worker answered.
final class RequestCount: RouterMiddleware, Sendable {
    typealias Context = BasicRequestContext
    let value = Atomic<Int>(0)

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        value.add(1, ordering: .relaxed)
        return try await next(request, context)
    }
}

/// An application service that has work to do at shutdown (think of flushing metrics or closing a database pool):
/// it waits for the service group's graceful shutdown, which comes after the worker has drained, then reports.
struct ShutdownReport: Service {
    let count: RequestCount

    func run() async throws {
        do {
            try await gracefulShutdown()
        } catch {
            return  // cancelled, not shut down gracefully: nothing to report
        }
        let line = "worker \(getpid()) shut down gracefully after \(count.value.load(ordering: .relaxed)) requests\n"
        FileHandle.standardError.write(Data(line.utf8))
    }
}

/// The application, exactly as it would be built to listen by itself.
func buildApplication() -> some ApplicationProtocol {
    let count = RequestCount()
    let router = Router()
    router.add(middleware: count)
    router.get("/") { _, _ in "Hello from Hummingbird worker \(getpid())" }
    router.get("/slow") { request, _ -> String in
        let milliseconds = min(max(request.uri.queryParameters.get("ms", as: Int.self) ?? 0, 0), 10_000)
        try await Task.sleep(for: .milliseconds(milliseconds))
        return "Slept \(milliseconds) ms in Hummingbird worker \(getpid())"
    }
    return Application(router: router, services: [ShutdownReport(count: count)])
}

/// `--port`, `--host`, `--workers`, `--drain-timeout` (seconds), or `PORT`, `HOST`, `WORKERS`, `DRAIN_TIMEOUT`.
func clusterConfiguration() -> SwitchboardCluster.Configuration {
    var cluster = SwitchboardCluster.Configuration()
    cluster.port = 8080
    var values = ProcessInfo.processInfo.environment
    let arguments = Array(CommandLine.arguments.dropFirst())
    for index in stride(from: 0, to: arguments.count, by: 2) {
        let name = arguments[index].dropFirst(2).uppercased().replacingOccurrences(of: "-", with: "_")
        values[name] = index + 1 < arguments.count ? arguments[index + 1] : ""
    }
    func value<T: LosslessStringConvertible>(_ name: String, _ body: (T) -> Void) {
        guard let text = values[name] else { return }
        guard let value = T(text), (value as? Double)?.isFinite != false else {
            FileHandle.standardError.write(Data("invalid \(name): '\(text)'\n".utf8))
            exit(64)
        }
        body(value)
    }
    value("PORT") { cluster.port = $0 }
    value("HOST") { cluster.host = $0 }
    value("WORKERS") { cluster.workers = $0 }
    func seconds(_ value: Double) -> Duration { .milliseconds(Int64(min(max(value, 0), 1e9) * 1000)) }
    value("DRAIN_TIMEOUT") { (value: Double) in cluster.drainTimeout = seconds(value) }
    value("HEADER_TIMEOUT") { (value: Double) in cluster.limits.headerTimeout = seconds(value) }
    value("KEEPALIVE_TIMEOUT") { (value: Double) in cluster.limits.keepAliveTimeout = seconds(value) }
    value("SEND_TIMEOUT") { (value: Double) in cluster.limits.sendTimeout = seconds(value) }
    value("MAX_CONNECTIONS") { (value: Int) in cluster.limits.maxConnections = value > 0 ? value : nil }
    return cluster
}

await SwitchboardCluster.run(configuration: clusterConfiguration()) { buildApplication() }
#else
import Foundation

FileHandle.standardError.write(Data("""
    switchboard-hummingbird-example was built without the Hummingbird package trait: \
    build it with `swift build --traits Hummingbird`\n
    """.utf8))
exit(69)
#endif
