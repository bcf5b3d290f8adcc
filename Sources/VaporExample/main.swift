// A Vapor 4 application run as a Switchboard cluster: the master accepts, each worker runs the application.
//
//   swift run --traits Vapor switchboard-vapor-example --port 8080 --workers 4
//   (or PORT=8080 WORKERS=4 ...)
//
// With --tls-cert <pem> --tls-key <pem> the application's server has a TLS configuration and serves HTTP/2 when ALPN
// chooses h2, HTTP/1.1 over TLS otherwise; each worker does the TLS handshake on the raw TCP connections the master
// passes it. With --test-hooks, GET /trap calls fatalError (it kills only that worker; the master replaces it). With
// --alone the application listens by itself on --port: one multithreaded process without Switchboard.
//
// The same binary is the master (the process you start) and, re-executed by the master, each worker.
#if Vapor
import Foundation
import NIOSSL
import SwitchboardVapor
import Vapor

/// The application, exactly as it would be built to listen by itself.
func buildApplication(tls: TLSConfiguration?, testHooks: Bool) async throws -> Application {
    var environment = Environment.production
    environment.arguments = [CommandLine.arguments.first ?? "switchboard-vapor-example"]
    let app = try await Application.make(environment)
    app.http.server.configuration.responseCompression = .enabled
    app.http.server.configuration.requestDecompression = .enabled(limit: .ratio(10))
    if let tls {
        app.http.server.configuration.tlsConfiguration = tls
        app.http.server.configuration.supportVersions = [.one, .two]
    }
    app.get { _ in "Hello from Vapor worker \(getpid())" }
    // Five chunks, 300 ms apart, each written as it is made.
    app.get("stream") { _ -> Response in
        Response(body: .init(managedAsyncStream: { writer in
            for index in 1...5 {
                try await writer.write(.buffer(ByteBuffer(string: "chunk \(index) from worker \(getpid())\n")))
                if index < 5 { try await Task.sleep(for: .milliseconds(300)) }
            }
        }))
    }
    app.get("slow") { request async throws -> String in
        let milliseconds = min(max((try? request.query.get(Int.self, at: "ms")) ?? 0, 0), 10_000)
        try await Task.sleep(for: .milliseconds(milliseconds))
        return "Slept \(milliseconds) ms in Vapor worker \(getpid())"
    }
    // The body as it arrives, chunk by chunk.
    app.on(.POST, "upload", body: .stream) { request async throws -> String in
        var bytes = 0
        var chunks = 0
        for try await chunk in request.body {
            bytes += chunk.readableBytes
            chunks += 1
        }
        return "received \(bytes) bytes in \(chunks) chunks by worker \(getpid())"
    }
    // What the application knows of the connection and of its server.
    app.get("whoami") { request -> String in
        let server = request.application.http.server.configuration
        let peer = request.remoteAddress
        return "client \(peer?.ipAddress ?? "?") \(peer?.port ?? 0) server \(server.hostname) \(server.port)"
    }
    app.webSocket("ws") { _, socket in
        socket.onText { socket, text in socket.send(text) }
        socket.onBinary { socket, bytes in socket.send(raw: bytes.readableBytesView, opcode: .binary) }
    }
    if testHooks {
        app.get("trap") { _ -> String in fatalError("trap requested by GET /trap") }
    }
    return app
}

struct ExampleError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The flags as environment-style names (`--tls-cert x` is `TLS_CERT=x`, `--test-hooks` is `TEST_HOOKS=`) over the
/// environment.
func arguments() -> [String: String] {
    var values = ProcessInfo.processInfo.environment
    var arguments = Array(CommandLine.arguments.dropFirst())[...]
    while let flag = arguments.popFirst() {
        let name = flag.dropFirst(2).uppercased().replacingOccurrences(of: "-", with: "_")
        if name == "TEST_HOOKS" || name == "ALONE" {
            // A switch: `--test-hooks` alone, or with `on`/`off` as the Hummingbird example takes it.
            if let next = arguments.first, !next.hasPrefix("--") {
                values[name] = arguments.popFirst()
            } else {
                values[name] = "on"
            }
        } else {
            values[name] = arguments.popFirst() ?? ""
        }
    }
    return values
}

/// The TLS configuration of `--tls-cert` and `--tls-key` (PEM files), or nil without them.
func tlsConfiguration() throws -> TLSConfiguration? {
    let values = arguments()
    guard let certificate = values["TLS_CERT"], let key = values["TLS_KEY"] else {
        if values["TLS_CERT"] != nil || values["TLS_KEY"] != nil {
            throw ExampleError("--tls-cert and --tls-key go together")
        }
        return nil
    }
    let chain = try NIOSSLCertificate.fromPEMFile(certificate).map { NIOSSLCertificateSource.certificate($0) }
    let privateKey = try NIOSSLPrivateKey(file: key, format: .pem)
    return TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(privateKey))
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
            FileHandle.standardError.write(
                Data("invalid MODE: '\(name)' (round-robin, least-connections, reuseport, shared)\n".utf8))
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
let testHooks = arguments()["TEST_HOOKS"].map { $0 != "off" } ?? false
let tls: TLSConfiguration?
do {
    // Loaded in the master too, before any worker starts: a bad certificate is one line, not a crash loop.
    tls = try tlsConfiguration()
} catch {
    FileHandle.standardError.write(
        Data("switchboard-vapor-example: cannot load the TLS certificate or key: \(error)\n".utf8))
    exit(1)
}
if arguments()["ALONE"].map({ $0 != "off" }) ?? false {
    // The application listening by itself, one multithreaded process (what `Scripts/bench` and `Scripts/faults`
    // compare with): no master, no workers, Vapor's own `serve`.
    do {
        let app = try await buildApplication(tls: tls, testHooks: testHooks)
        app.http.server.configuration.hostname = cluster.host.isEmpty ? "127.0.0.1" : cluster.host
        app.http.server.configuration.port = cluster.port
        try await app.execute()
        try await app.asyncShutdown()
    } catch {
        FileHandle.standardError.write(Data("switchboard-vapor-example: \(error)\n".utf8))
        exit(1)
    }
    exit(0)
}
await SwitchboardCluster.run(configuration: cluster) {
    try await buildApplication(tls: tls, testHooks: testHooks)
}
#else
import Foundation

FileHandle.standardError.write(Data("""
    switchboard-vapor-example was built without the Vapor package trait: \
    build it with `swift build --traits Vapor`\n
    """.utf8))
exit(69)
#endif
