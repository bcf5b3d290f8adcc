import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Switchboard
import SwitchboardNIO

#if canImport(Glibc)
import Glibc
#endif

/// The built-in worker: HTTP/1.1 with keep-alive on SwiftNIO, answering every request with
/// `Handled by worker: <pid>`, like Node's cluster example.
struct BuiltinWorker {
    var testHooks: Bool
    var logLevel: Logger.Level

    func run() -> Never {
        var logger = Logger(label: "switchboard.worker")
        logger.logLevel = logLevel
        guard let runtime = WorkerRuntime.current(logger: logger) else {
            Output.error("SWITCHBOARD_WORKER_ID is set but not a number: unset it to run the master")
            exit(78)
        }
        logger[metadataKey: "worker.id"] = "\(runtime.id)"
        if testHooks { TestHooks.applyAtStart() }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let body = "Handled by worker: \(getpid())"
        let hooks = testHooks
        let server = SwitchboardWorkerServer(runtime: runtime, group: group, logger: logger) { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                try channel.pipeline.syncOperations.addHandler(
                    HelloHandler(body: body, testHooks: hooks ? runtime : nil))
            }
        }
        if testHooks && TestHooks.current == "never-ready" {
            server.runWithoutAnnouncingReady()
        }
        server.run()
    }
}

/// Behaviours the end-to-end tests switch on with `--test-hooks` and a file named by `SWITCHBOARD_TEST_HOOK_FILE`,
/// read when a worker starts (so a test can change what the next workers do).
enum TestHooks {
    /// The first line of the hook file, or nil.
    static var current: String? {
        guard let path = Syscalls.environment("SWITCHBOARD_TEST_HOOK_FILE"),
            let line = try? String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").first
        else { return nil }
        return String(line)
    }

    /// `exit-at-start`: the worker exits with code 3 before saying anything.
    static func applyAtStart() {
        if current == "exit-at-start" { exit(3) }
    }
}

/// Answers every request with 200 and the worker's greeting.
///
/// With the hidden `--test-hooks` flag: `GET /slow?ms=N` answers after N ms; `GET /test/malformed-frame` makes the
/// worker send a malformed frame to the master (which must replace it and keep running); `GET /test/oversized-frame`
/// sends a frame larger than the protocol allows.
final class HelloHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let body: String
    private let testHooks: WorkerRuntime?
    private var keepAlive = true
    private var delayMilliseconds: Int64 = 0

    init(body: String, testHooks: WorkerRuntime?) {
        self.body = body
        self.testHooks = testHooks
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            keepAlive = head.isKeepAlive
            delayMilliseconds = testHooks != nil ? Self.delay(in: head.uri) : 0
            if let runtime = testHooks, head.uri == "/test/malformed-frame" {
                runtime.sendRawFrame([0xFF, 0x01, 0x02])
            }
            if let runtime = testHooks, head.uri == "/test/oversized-frame" {
                var frame = WireCodec.encode(.message([]))
                frame += [UInt8](repeating: 0x42, count: WireCodec.maxPayload + 4096)
                runtime.sendRawFrame(frame)
            }
        case .body:
            break
        case .end:
            if delayMilliseconds > 0 {
                let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                context.eventLoop.scheduleTask(in: .milliseconds(delayMilliseconds)) {
                    let (handler, context) = loopBound.value
                    handler.respond(context: context)
                }
            } else {
                respond(context: context)
            }
        }
    }

    private func respond(context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/plain")
        headers.add(name: "Content-Length", value: "\(body.utf8.count)")
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        let head = HTTPResponseHead(version: .http1_1, status: .ok, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        var buffer = context.channel.allocator.buffer(capacity: body.utf8.count)
        buffer.writeString(body)
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        let keepAlive = self.keepAlive
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { loopBound.value.close(promise: nil) }
        }
    }

    private static func delay(in uri: String) -> Int64 {
        guard uri.hasPrefix("/slow?ms=") else { return 0 }
        let digits = uri.dropFirst("/slow?ms=".count).prefix { $0.isNumber }
        return min(Int64(digits) ?? 0, 600_000)
    }
}
