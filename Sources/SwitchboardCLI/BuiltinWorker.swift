import Foundation
import Logging
import Synchronization
import NIOCore
import NIOHTTP1
import NIOPosix
import Switchboard
import SwitchboardHTTP1
import SwitchboardNIO

#if canImport(Glibc)
import Glibc
#endif

/// The built-in worker, answering every request with `Handled by worker: <pid>` like Node's cluster example: by
/// default on its own epoll loop (`HTTP1Server` from SwitchboardHTTP1), or with `--worker nio` through SwiftNIO's HTTP/1.1 pipeline
/// on a `SwitchboardWorkerServer`, as an embedding program would.
struct BuiltinWorker {
    enum Engine: String, CaseIterable {
        case native
        case nio
    }

    var engine: Engine
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
        let announceReady = !(testHooks && TestHooks.current == "never-ready")
        if engine == .native {
            let responder = FixedResponder(body: "Handled by worker: \(getpid())")
            if testHooks {
                HTTP1Server(runtime: runtime, logger: logger, responder: TestHookResponder(base: responder, runtime: runtime))
                    .run(announcingReady: announceReady)
            }
            HTTP1Server(runtime: runtime, logger: logger, responder: responder).run(announcingReady: announceReady)
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: runtime.threads)
        let response = HelloHandler.Response(body: "Handled by worker: \(getpid())")
        let hooks = testHooks
        let server = SwitchboardWorkerServer(runtime: runtime, group: group, logger: logger) { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                try channel.pipeline.syncOperations.addHandler(HTTPTimeoutsHandler(limits: runtime.limits))
                try channel.pipeline.syncOperations.addHandler(
                    HelloHandler(response: response, testHooks: hooks ? runtime : nil))
            }
        }
        if !announceReady {
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

    /// What `/grow?mb=N` keeps.
    static let grown = Mutex<[[UInt8]]>([])

    /// The request hooks, the same for both engines: `/grow?mb=N` keeps N MiB more (a leak, for recycling); `/test/malformed-frame` and `/test/oversized-frame` make the
    /// worker send the master a frame it must reject; `/test/malformed-frames?count=N` sends N of them as fast as
    /// the channel takes them (until the master cuts the channel); `/test/chatty?ms=N` sends valid messages flat out
    /// for N ms; `/slow?ms=N` delays the response.
    /// - Returns: How many milliseconds to delay the response (0: answer now).
    static func apply(to target: String, runtime: WorkerRuntime) -> Int64 {
        if target == "/test/malformed-frame" {
            runtime.sendRawFrame([0xFF, 0x01, 0x02])
        } else if target.hasPrefix("/test/malformed-frames?count=") {
            let count = Int(target.dropFirst("/test/malformed-frames?count=".count)) ?? 0
            for _ in 0..<min(max(count, 0), 10_000_000) {
                guard runtime.sendRawFrame([0xFF, 0x01, 0x02]) else { break }
            }
        } else if target.hasPrefix("/test/chatty?ms=") {
            // A worker that talks to the master flat out for N ms, from four threads (blocking when its channel is
            // full), faster than one reader can keep up with.
            let milliseconds = min(Int64(target.dropFirst("/test/chatty?ms=".count)) ?? 0, 60_000)
            let end = Syscalls.monotonicNanoseconds() + UInt64(max(milliseconds, 0)) * 1_000_000
            let talkers = DispatchGroup()
            for _ in 0..<4 {
                talkers.enter()
                Thread.detachNewThread {
                    defer { talkers.leave() }
                    let note = Array("chatter".utf8)
                    while Syscalls.monotonicNanoseconds() < end {
                        guard (try? runtime.send(message: note)) != nil else { break }
                    }
                }
            }
            talkers.wait()
        } else if target.hasPrefix("/grow?mb=") {
            // A worker that leaks: it keeps N MiB more, every page written (unique memory, not shared).
            let megabytes = min(max(Int(target.dropFirst("/grow?mb=".count)) ?? 0, 0), 4096)
            let block = [UInt8](repeating: 0x5A, count: megabytes << 20)
            grown.withLock { $0.append(block) }
        } else if target == "/test/oversized-frame" {
            var frame = WireCodec.encode(.message([]))
            frame += [UInt8](repeating: 0x42, count: WireCodec.maxPayload + 4096)
            runtime.sendRawFrame(frame)
        } else if target.hasPrefix("/slow?ms=") {
            let digits = target.dropFirst("/slow?ms=".count).prefix { $0.isNumber }
            return min(Int64(digits) ?? 0, 600_000)
        }
        return 0
    }
}

/// The built-in engine's responder with the test hooks in front: injected only with `--test-hooks`, so the
/// production path has no hook branch.
struct TestHookResponder: HTTP1Responder {
    let base: FixedResponder
    let runtime: WorkerRuntime

    func respond(to request: RequestHead, in bytes: [UInt8], keepAlive: Bool) -> HTTP1Reply {
        var reply = base.respond(to: request, in: bytes, keepAlive: keepAlive)
        let delay = TestHooks.apply(to: String(decoding: bytes[request.target], as: UTF8.self), runtime: runtime)
        reply.delayNanoseconds = UInt64(max(delay, 0)) * 1_000_000
        return reply
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

    /// The parts of the one response this worker gives, built once per worker and shared by every connection
    /// (`HTTPHeaders` and `ByteBuffer` are copy-on-write, so writing them costs no allocation).
    struct Response: Sendable {
        let keepAlive: HTTPResponseHead
        let close: HTTPResponseHead
        let body: ByteBuffer

        init(body text: String) {
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "text/plain")
            headers.add(name: "Content-Length", value: String(text.utf8.count))
            keepAlive = HTTPResponseHead(version: .http1_1, status: .ok, headers: headers)
            headers.add(name: "Connection", value: "close")
            close = HTTPResponseHead(version: .http1_1, status: .ok, headers: headers)
            body = ByteBuffer(string: text)
        }
    }

    private let response: Response
    private let testHooks: WorkerRuntime?
    private var keepAlive = true
    private var delayMilliseconds: Int64 = 0

    init(response: Response, testHooks: WorkerRuntime?) {
        self.response = response
        self.testHooks = testHooks
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            keepAlive = head.isKeepAlive
            guard let runtime = testHooks else { return }
            delayMilliseconds = TestHooks.apply(to: head.uri, runtime: runtime)
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
        context.write(wrapOutboundOut(.head(keepAlive ? response.keepAlive : response.close)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(response.body))), promise: nil)
        if keepAlive {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        } else {
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
                loopBound.value.close(promise: nil)
            }
        }
    }
}
