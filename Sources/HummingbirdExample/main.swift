// A Hummingbird 2 application run as a Switchboard cluster: the master accepts, each worker runs the application.
//
//   swift run --traits Hummingbird switchboard-hummingbird-example --port 8080 --workers 4
//   (or PORT=8080 WORKERS=4 ...)
//
// With --tls-cert <pem> --tls-key <pem> the application's server is `.http2Upgrade(tlsConfiguration:)`: each worker
// does the TLS handshake on the raw TCP connections the master passes it and serves HTTP/2 when ALPN chooses h2,
// HTTP/1.1 over TLS otherwise, as a Node cluster worker with `http2.createSecureServer({ allowHTTP1: true })`.
//
// The same binary is the master (the process you start) and, re-executed by the master, each worker. With
// --test-hooks on it also has /trap (fatalError: the process ends); with --alone on the application listens by
// itself on --port, one multithreaded process without Switchboard (what the trap fault and benchmark compare with).
#if Hummingbird
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdHTTP2
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOSSL
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

/// The application, exactly as it would be built to listen by itself: the server builder is the application's.
func buildApplication(server: HTTPServerBuilder, address: BindAddress = .hostname()) -> some ApplicationProtocol {
    let count = RequestCount()
    let router = Router()
    router.add(middleware: count)
    router.get("/") { _, _ in "Hello from Hummingbird worker \(getpid())" }
    router.get("/slow") { request, _ -> String in
        let milliseconds = min(max(request.uri.queryParameters.get("ms", as: Int.self) ?? 0, 0), 10_000)
        try await Task.sleep(for: .milliseconds(milliseconds))
        return "Slept \(milliseconds) ms in Hummingbird worker \(getpid())"
    }
    if arguments()["TEST_HOOKS"] == "on" {
        // A trap, as a force-unwrap of nil or an index out of range would be: the whole process ends.
        router.get("/trap") { _, _ -> String in fatalError("trap requested at /trap") }
    }
    return Application(
        router: router, server: server, configuration: .init(address: address),
        services: [ShutdownReport(count: count)])
}

/// How each worker sets a connection up: `.http2Upgrade` over TLS with `--tls-cert` and `--tls-key` (PEM files), plain
/// HTTP/1.1 without them. An HTTP/2 connection with no open stream closes after the keep-alive timeout, as an idle
/// HTTP/1 one does. The same choice twice: as the public child channel (`SwitchboardCluster.run(childChannel:)`, the
/// stable path, the default) and as the application's server builder (`--server-builder on`, which the adapter reads
/// from an unstarted Hummingbird server).
struct Serving: Sendable {
    let builder: HTTPServerBuilder
    let childChannel: @Sendable (@escaping HTTPChannelHandler.Responder) throws -> any ServerChildChannel
}

func serving(_ cluster: SwitchboardCluster.Configuration) throws -> Serving {
    let values = arguments()
    guard let certificate = values["TLS_CERT"], let key = values["TLS_KEY"] else {
        if values["TLS_CERT"] != nil || values["TLS_KEY"] != nil {
            throw ExampleError("--tls-cert and --tls-key go together")
        }
        if values["WEBSOCKET"] == "on" {
            return Serving(
                builder: .http1WebSocketUpgrade(shouldUpgrade: echoAtWS),
                childChannel: { HTTP1WebSocketUpgradeChannel(responder: $0, configuration: .init(), shouldUpgrade: echoAtWS) })
        }
        return Serving(builder: .http1(), childChannel: { HTTP1Channel(responder: $0) })
    }
    let chain = try NIOSSLCertificate.fromPEMFile(certificate).map { NIOSSLCertificateSource.certificate($0) }
    let privateKey = try NIOSSLPrivateKey(file: key, format: .pem)
    let tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(privateKey))
    let http2 = HTTP2UpgradeChannel.Configuration(idleTimeout: cluster.limits.keepAliveTimeout)
    return Serving(
        builder: try .http2Upgrade(tlsConfiguration: tls, configuration: http2),
        childChannel: { try HTTP2UpgradeChannel(tlsConfiguration: tls, configuration: http2, responder: $0) })
}

/// `--websocket on`: an upgrade to WebSocket at `/ws` (hummingbird-websocket), which echoes every message.
@Sendable func echoAtWS(
    _ request: HTTPRequest, _ channel: any Channel, _ logger: Logger
) throws -> ShouldUpgradeResult<WebSocketDataHandler<HTTP1WebSocketUpgradeChannel.Context>> {
    guard request.path == "/ws" else { return .dontUpgrade }
    return .upgrade([:]) { inbound, outbound, _ in
        for try await message in inbound.messages(maxSize: 1 << 20) {
            switch message {
            case .text(let text): try await outbound.write(.text(text))
            case .binary(let buffer): try await outbound.write(.binary(buffer))
            }
        }
    }
}

struct ExampleError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The flags as environment-style names (`--tls-cert x` is `TLS_CERT=x`) over the environment.
func arguments() -> [String: String] {
    var values = ProcessInfo.processInfo.environment
    let arguments = Array(CommandLine.arguments.dropFirst())
    for index in stride(from: 0, to: arguments.count, by: 2) {
        let name = arguments[index].dropFirst(2).uppercased().replacingOccurrences(of: "-", with: "_")
        values[name] = index + 1 < arguments.count ? arguments[index + 1] : ""
    }
    return values
}

/// `--port`, `--host`, `--workers`, `--worker-threads`, `--mode`, `--drain-timeout` (seconds), the limits,
/// `--defer-accept` (seconds), or `PORT`, `HOST`, `WORKERS`, `MODE`, `DRAIN_TIMEOUT`, ...
func clusterConfiguration() -> SwitchboardCluster.Configuration {
    var cluster = SwitchboardCluster.Configuration()
    cluster.port = 8080
    let values = arguments()
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
    value("WORKER_THREADS") { cluster.workerThreads = $0 }
    value("MODE") { (name: String) in
        guard let mode = DispatchMode(name: name) else {
            FileHandle.standardError.write(Data("invalid MODE: '\(name)' (round-robin, least-connections, reuseport, shared)\n".utf8))
            exit(64)
        }
        cluster.mode = mode
    }
    func seconds(_ value: Double) -> Duration { .milliseconds(Int64(min(max(value, 0), 1e9) * 1000)) }
    value("DRAIN_TIMEOUT") { (value: Double) in cluster.drainTimeout = seconds(value) }
    value("HEADER_TIMEOUT") { (value: Double) in cluster.limits.headerTimeout = seconds(value) }
    value("KEEPALIVE_TIMEOUT") { (value: Double) in cluster.limits.keepAliveTimeout = seconds(value) }
    value("SEND_TIMEOUT") { (value: Double) in cluster.limits.sendTimeout = seconds(value) }
    value("MAX_CONNECTIONS") { (value: Int) in cluster.limits.maxConnections = value > 0 ? value : nil }
    value("DEFER_ACCEPT") { (value: Int) in cluster.deferAcceptSeconds = value }
    return cluster
}

let cluster = clusterConfiguration()
let chosen: Serving
do {
    // Loaded in the master too, before any worker starts: a bad certificate is one line, not a crash loop.
    chosen = try serving(cluster)
} catch {
    FileHandle.standardError.write(
        Data("switchboard-hummingbird-example: cannot load the TLS certificate or key: \(error)\n".utf8))
    exit(1)
}
if arguments()["ALONE"] == "on" {
    // The application listening by itself, one multithreaded process (the comparison `Scripts/bench` and
    // `Scripts/faults` make): no master, no workers.
    let app = buildApplication(server: chosen.builder, address: .hostname(cluster.host.isEmpty ? "127.0.0.1" : cluster.host, port: cluster.port))
    do {
        try await app.runService()
    } catch {
        FileHandle.standardError.write(Data("switchboard-hummingbird-example: \(error)\n".utf8))
        exit(1)
    }
    exit(0)
}
if arguments()["SERVER_BUILDER"] == "on" {
    await SwitchboardCluster.run(configuration: cluster) { buildApplication(server: chosen.builder) }
}
await SwitchboardCluster.run(configuration: cluster, childChannel: chosen.childChannel) {
    buildApplication(server: chosen.builder)
}
#else
import Foundation

FileHandle.standardError.write(Data("""
    switchboard-hummingbird-example was built without the Hummingbird package trait: \
    build it with `swift build --traits Hummingbird`\n
    """.utf8))
exit(69)
#endif
