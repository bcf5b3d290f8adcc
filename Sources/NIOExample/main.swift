// A bare SwiftNIO HTTP server run as a Switchboard cluster, with messages between master and workers.
//
//   swift run switchboard-nio-example --port 8080 --workers 2 --pings 3 --events on
//   swift run switchboard-nio-example --port 8443 --tls-cert cert.pem --tls-key key.pem   # HTTPS
//
// With --tls-cert and --tls-key each worker does the TLS handshake on the raw TCP connections the master passes it,
// as a Node cluster worker does with https.createServer: NIOSSL's server handler first, then the same HTTP pipeline.
//
// The same binary is the master (it supervises) and, re-executed by the master, each worker (it serves).
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Switchboard
import SwitchboardNIO

/// Answers every request with the worker's pid.
final class HelloHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let request) = unwrapInboundIn(data) else { return }
        let body = "Hello from NIO worker \(getpid())\n"
        var headers = HTTPHeaders([("Content-Length", "\(body.utf8.count)")])
        if !request.isKeepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
        let keepAlive = request.isKeepAlive
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { bound.value.close(promise: nil) }
        }
    }
}

func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// The value of `--name value` in this process's arguments (the master passes its own to every worker).
func flag(_ name: String) -> String? {
    let arguments = CommandLine.arguments
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
    return arguments[index + 1]
}

/// The TLS context for `--tls-cert` and `--tls-key` (PEM files), or nil to serve plain HTTP.
func makeTLSContext() throws -> NIOSSLContext? {
    guard let certificate = flag("--tls-cert"), let key = flag("--tls-key") else { return nil }
    let chain = try NIOSSLCertificate.fromPEMFile(certificate).map { NIOSSLCertificateSource.certificate($0) }
    let privateKey = try NIOSSLPrivateKey(file: key, format: .pem)
    var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(privateKey))
    tls.applicationProtocols = ["http/1.1"]
    return try NIOSSLContext(configuration: tls)
}

// In a worker: serve the passed connections; answer every message from the master.
if Cluster.isWorker, let runtime = WorkerRuntime.current() {
    let tls: NIOSSLContext?
    do {
        tls = try makeTLSContext()
    } catch {
        FileHandle.standardError.write(Data("switchboard-nio-example: cannot load the TLS certificate or key: \(error)\n".utf8))
        exit(1)
    }
    let server = SwitchboardWorkerServer(
        runtime: runtime,
        group: MultiThreadedEventLoopGroup(numberOfThreads: runtime.threads),
        onMessage: { bytes in try? runtime.send(message: Array("echo from \(getpid()): ".utf8) + bytes) },
        // TLS first: the worker does the handshake on the passed TCP connection. A client that sends anything but a
        // ClientHello gets its connection closed by the handler; the worker goes on serving the others.
        tlsHandler: tls.map { context in { @Sendable _ in NIOSSLServerHandler(context: context) } }
    ) { channel in
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.configureHTTPServerPipeline()
            // The master's header and keep-alive timeouts (SwitchboardWorkerServer applies the send timeout and
            // backpressure to every connection by itself).
            try channel.pipeline.syncOperations.addHandler(HTTPTimeoutsHandler(limits: runtime.limits))
            try channel.pipeline.syncOperations.addHandler(HelloHandler())
        }
    }
    server.run()
}

// In the master: parse a few flags, supervise, and ping every worker once it is ready.
var configuration = Configuration()
configuration.port = 8080
var pings = 0
var printEvents = false
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let flag = arguments.next() {
    guard let value = arguments.next() else { break }
    switch flag {
    case "--port": configuration.port = Int(value) ?? configuration.port
    case "--host": configuration.host = value
    case "--header-timeout": configuration.limits.headerTimeout = .milliseconds(Int64((Double(value) ?? 30) * 1000))
    case "--workers": configuration.workers = Int(value) ?? configuration.workers
    case "--pings": pings = Int(value) ?? 0
    case "--events": printEvents = value == "on"
    case "--tls-cert", "--tls-key": break  // read by each worker
    default: say("unknown flag \(flag)")
    }
}

// The program's own event loops, started before the supervisor as an application's HTTP client or metrics exporter
// would be: their threads exist before the master does, so a signal meant for the master (HUP, TTIN, TERM) may be
// delivered to any of them. The master's handlers take it on whichever thread the kernel picks.
let applicationGroup = MultiThreadedEventLoopGroup(numberOfThreads: 2)

do {
    let supervisor = try Supervisor(configuration: configuration)
    let workers = configuration.workers
    let pingsPerWorker = pings
    let showEvents = printEvents
    // Fail here, once, rather than in every worker, when the certificate or key cannot be loaded.
    _ = try makeTLSContext()
    supervisor.onListening { host, port in say("listening on \(host):\(port) with \(workers) workers (round-robin)") }
    // Detached, since run() below blocks the main thread. Who cancels: nobody; the stream finishes when run() returns.
    Task.detached {
        for await event in supervisor.events {
            if showEvents { say("event: \(event)") }
            switch event {
            case .ready(let worker):
                for index in 0..<pingsPerWorker { try? supervisor.send(Array("ping \(index + 1)".utf8), toWorker: worker.id) }
            case .message(let worker, let bytes):
                say("message from worker \(worker.id): \(String(decoding: bytes, as: UTF8.self))")
            default:
                break
            }
        }
    }
    let exitCode = try supervisor.run()
    try? applicationGroup.syncShutdownGracefully()
    exit(exitCode)
} catch let error as SwitchboardError {
    FileHandle.standardError.write(Data("switchboard-nio-example: \(error.message)\n".utf8))
    exit(error.code.exitCode)
} catch {
    FileHandle.standardError.write(Data("switchboard-nio-example: cannot load the TLS certificate or key: \(error)\n".utf8))
    exit(1)
}
