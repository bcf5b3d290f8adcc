import CSwitchboardLinux
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Switchboard
import Synchronization
import Testing

@testable import SwitchboardNIO

/// Passed connections adopted by SwitchboardWorkerServer in this process: a real loopback TCP connection, a real
/// socketpair, a real NIO pipeline.
@Suite(.serialized) struct NIOConnectionAdopterTests {
    final class Greeter: ChannelInboundHandler, Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard case .end = unwrapInboundIn(data) else { return }
            let headers = HTTPHeaders([("Content-Length", "5"), ("Connection", "close")])
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "hello")))), promise: nil)
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in bound.value.close(promise: nil) }
        }
    }

    /// A server whose runtime talks to a socketpair end the test holds (no master process).
    struct Fixture {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let server: SwitchboardWorkerServer
        let masterEnd: DescriptorChannel
        let listener: CInt
        let port: Int

        init(initializer: (@Sendable (any Channel) -> EventLoopFuture<Void>)? = nil) throws {
            let (master, worker) = try DescriptorChannel.pair()
            masterEnd = master
            let runtime = WorkerRuntime(id: 1, slot: 0, masterPID: getpid(), channel: worker, logger: Logger(label: "test"))
            server = SwitchboardWorkerServer(runtime: runtime, group: group, childChannelInitializer: initializer ?? { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Greeter())
                }
            })
            var bound: CInt = 0
            var family: CInt = 0
            listener = sb_tcp_listen("127.0.0.1", 0, 128, 0, 1, &bound, &family)
            port = Int(bound)
        }

        /// Connects a client, accepts it here and passes the accepted descriptor through the socketpair, like the
        /// master does; returns the client's fd.
        func connectAndPass() throws -> (client: CInt, passed: CInt) {
            let client = sb_tcp_connect("127.0.0.1", CInt(port))
            guard client >= 0 else { throw SwitchboardError(.system, "connect failed") }
            var accepted: CInt = -1
            for _ in 0..<1000 where accepted < 0 {
                accepted = sb_accept(listener)
                if accepted < 0 { usleep(1000) }
            }
            guard accepted >= 0 else { throw SwitchboardError(.system, "accept failed") }
            _ = try masterEnd.sendConnections(firstSequence: 1, [accepted], count: 1)
            close(accepted)  // the master's copy: the worker's copy arrives through the socketpair
            var buffer = [UInt8](repeating: 0, count: WireCodec.maxFrame)
            var fds = [CInt](repeating: -1, count: 4)
            _ = try server.runtime.channelForTests.receive(into: &buffer, fds: &fds, blocking: true)
            return (client, fds[0])
        }

        func shutdown() {
            close(listener)
            masterEnd.close()
            try? group.syncShutdownGracefully()
        }
    }

    static func openDescriptors() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
    }

    static func readAll(_ fd: CInt) -> String {
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n <= 0 { break }
            result += chunk[0..<n]
        }
        return String(decoding: result, as: UTF8.self)
    }

    @Test func aPassedConnectionIsServedByTheNIOPipeline() throws {
        let fixture = try Fixture()
        defer { fixture.shutdown() }
        let (client, passed) = try fixture.connectAndPass()
        defer { close(client) }
        fixture.server.adopt(passed)
        let request = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        _ = request.withCString { write(client, $0, strlen($0)) }
        let response = Self.readAll(client)
        #expect(response.hasPrefix("HTTP/1.1 200 OK"))
        #expect(response.hasSuffix("hello"))
    }

    @Test func descriptorCountIsUnchangedAfterAThousandConnections() throws {
        let fixture = try Fixture()
        defer { fixture.shutdown() }
        _ = try { let (client, passed) = try fixture.connectAndPass(); fixture.server.adopt(passed); close(client) }()
        #expect(waitFor { fixture.server.openConnections == 0 })
        for _ in 0..<1000 {
            let (client, passed) = try fixture.connectAndPass()
            fixture.server.adopt(passed)
            _ = "GET / HTTP/1.1\r\nHost: x\r\n\r\n".withCString { write(client, $0, strlen($0)) }
            let response = Self.readAll(client)
            close(client)
            #expect(response.hasSuffix("hello"))
        }
        // Other suites open descriptors in this process at the same time, so count only ours: accepted sockets of
        // this listener's port that this process still holds.
        #expect(waitFor { fixture.server.openConnections == 0 && Self.heldServerSockets(port: fixture.port) == 0 },
                "still held: \(Self.heldServerSockets(port: fixture.port))")
    }

    @Test func aDescriptorThatIsNotAStreamSocketIsClosedExactlyOnce() throws {
        let fixture = try Fixture()
        defer { fixture.shutdown() }
        let null = open("/dev/null", O_RDONLY)
        defer { close(null) }
        var pipeFDs: [CInt] = [-1, -1]
        try #require(pipe(&pipeFDs) == 0)
        close(pipeFDs[1])
        fixture.server.adopt(pipeFDs[0])  // adoption fails: not a socket
        #expect(fcntl(pipeFDs[0], F_GETFD) == -1 && errno == EBADF, "the failed descriptor was closed")
        // The number is free again; a new descriptor takes it and must not be closed a second time. (F_DUPFD from that
        // number on: other suites in this process may free lower numbers meanwhile, which open() would take.)
        let reused = fcntl(null, F_DUPFD, pipeFDs[0])
        #expect(reused == pipeFDs[0])
        usleep(200_000)
        #expect(fcntl(reused, F_GETFD) != -1, "closed exactly once: the reused number stays open")
        close(reused)
    }

    @Test func aFailingChannelInitializerClosesTheConnection() throws {
        struct Refused: Error {}
        let fixture = try Fixture(initializer: { channel in channel.eventLoop.makeFailedFuture(Refused()) })
        defer { fixture.shutdown() }
        let (client, passed) = try fixture.connectAndPass()
        fixture.server.adopt(passed)
        #expect(Self.readAll(client).isEmpty, "the client sees the connection closed")
        close(client)
        #expect(waitFor { Self.heldServerSockets(port: fixture.port) == 0 }, "the passed descriptor was closed")
    }

    /// Records when the service group shut it down gracefully.
    final class ShutdownWitness: Service, Sendable {
        private let flag = Atomic<Bool>(false)
        var shutDownGracefully: Bool { flag.load(ordering: .sequentiallyConsistent) }

        func run() async throws {
            try await gracefulShutdown()
            flag.store(true, ordering: .sequentiallyConsistent)
        }
    }

    /// As a ServiceLifecycle service the worker serves what the master passes, drains when the master says so, then
    /// returns (it does not exit the process), and its end shuts the rest of the group down gracefully.
    @Test func aWorkerServiceServesDrainsAndThenShutsItsGroupDownGracefully() async throws {
        let fixture = try Fixture()
        defer { fixture.shutdown() }
        let witness = ShutdownWitness()
        let group = ServiceGroup(
            configuration: .init(
                services: [
                    .init(service: witness),
                    .init(
                        service: SwitchboardWorkerService(fixture.server),
                        successTerminationBehavior: .gracefullyShutdownGroup),
                ],
                logger: Logger(label: "test")))
        let running = Task { try await group.run() }

        // A connection passed the way the master passes it: through the channel, to the runtime's receiving thread.
        let client = sb_tcp_connect("127.0.0.1", CInt(fixture.port))
        try #require(client >= 0)
        defer { close(client) }
        var accepted: CInt = -1
        for _ in 0..<1000 where accepted < 0 {
            accepted = sb_accept(fixture.listener)
            if accepted < 0 { usleep(1000) }
        }
        try #require(accepted >= 0)
        _ = try fixture.masterEnd.sendConnections(firstSequence: 1, [accepted], count: 1)
        close(accepted)
        let request = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        _ = request.withCString { write(client, $0, strlen($0)) }
        // Read on a thread of our own: blocking this test's thread of the concurrency pool would starve the service
        // group's task that serves the connection whenever the pool's other threads are busy with other suites.
        let response = await withCheckedContinuation { (done: CheckedContinuation<String, Never>) in
            Thread.detachNewThread { done.resume(returning: Self.readAll(client)) }
        }
        #expect(response.hasPrefix("HTTP/1.1 200 OK"), "response: \(response)")
        #expect(!witness.shutDownGracefully, "nothing stops before the drain")

        // The master says drain: with no connection left open the service returns and the group shuts down.
        _ = try fixture.masterEnd.send(.drain(deadlineMilliseconds: 5_000), blocking: true)
        try await running.value
        #expect(witness.shutDownGracefully)
        #expect(Self.heldServerSockets(port: fixture.port) == 0, "the passed connection was closed")
    }

    /// Accepted (not listening) sockets on `port` that this process still holds.
    static func heldServerSockets(port: Int) -> Int {
        let local = String(format: ":%04X", port)
        guard let handle = FileHandle(forReadingAtPath: "/proc/net/tcp"), let data = try? handle.readToEnd() else { return -1 }
        try? handle.close()
        var inodes: Set<String> = []
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ")
            if fields.count > 9, fields[1].hasSuffix(local), fields[3] != "0A" { inodes.insert("socket:[\(fields[9])]") }
        }
        return listing().filter { inodes.contains($0) }.count
    }

    static func listing() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return names.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\($0)") }.sorted()
    }

    func waitFor(_ condition: () -> Bool) -> Bool {
        for _ in 0..<500 {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }
}

/// The drain gate tells a TLS handshake from a request by its first bytes, to say once that the TLS handler belongs in
/// `tlsHandler`.
@Suite struct DrainGateTests {
    @Test func aTLSHandshakeRecordIsToldFromARequest() {
        let allocator = ByteBufferAllocator()
        let clientHello: [UInt8] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01]
        #expect(DrainGate.startsWithTLSHandshake(allocator.buffer(bytes: clientHello)))
        #expect(!DrainGate.startsWithTLSHandshake(allocator.buffer(string: "GET / HTTP/1.1\r\n")))
        #expect(!DrainGate.startsWithTLSHandshake(allocator.buffer(bytes: [0x16])), "one byte is not enough to tell")
        #expect(!DrainGate.startsWithTLSHandshake(allocator.buffer(bytes: [0x17, 0x03, 0x03])), "application data")
    }
}

/// The going-away handler follows a client's WebSocket frames across reads to find its close frame.
@Suite struct WebSocketGoingAwayTests {
    static func masked(_ opcode: UInt8, length: Int) -> [UInt8] {
        var frame: [UInt8] = [0x80 | opcode]
        switch length {
        case ..<126: frame.append(0x80 | UInt8(length))
        case ..<65536: frame += [0x80 | 126, UInt8(length >> 8), UInt8(length & 0xFF)]
        default: frame += [0x80 | 127] + (0..<8).reversed().map { UInt8((length >> ($0 * 8)) & 0xFF) }
        }
        // The payload is all 0x88: a scanner that loses its place would take it for a close frame.
        return frame + [1, 2, 3, 4] + [UInt8](repeating: 0x88, count: length)
    }

    @Test func theCloseFrameIsFoundWhereverReadsSplitTheStream() {
        let stream = Self.masked(1, length: 5) + Self.masked(2, length: 300) + Self.masked(2, length: 70_000)
            + Self.masked(9, length: 0) + Self.masked(8, length: 2)
        let closeAt = stream.count - Self.masked(8, length: 2).count
        for split in [1, 2, 7, 12, 320, closeAt, closeAt + 1, closeAt + 2, stream.count - 1] {
            var scanner = WebSocketGoingAway.FrameScanner()
            let first = scanner.scan(ByteBuffer(bytes: stream[..<split]))
            let second = scanner.scan(ByteBuffer(bytes: stream[split...]))
            #expect(first == (split >= closeAt + 2), "split at \(split): a close is known from its first two bytes")
            #expect(second, "split at \(split)")
        }
        var scanner = WebSocketGoingAway.FrameScanner()
        let found = scanner.scan(ByteBuffer(bytes: stream[..<closeAt]))
        #expect(!found, "data frames only")
    }
}
