import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Switchboard
import SwitchboardNIO
import SwitchboardTestSupport
import Testing

/// The public products only (no @testable): what an embedding program can see and do.
@Suite(.serialized) struct PublicAPITests {
    /// The built `switchboard` binary next to the test bundle: its built-in worker serves the supervisor's workers.
    static var workerBinary: String {
        URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent("switchboard").path
    }

    /// A supervisor of two built-in workers on 127.0.0.1 and a free port, handling no signals.
    static func makeSupervisor() throws -> (Supervisor, Logger) {
        try #require(FileManager.default.isExecutableFile(atPath: workerBinary), "build the switchboard product first")
        var configuration = Configuration()
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configuration.workers = 2
        configuration.workerExecutable = workerBinary
        configuration.workerArguments = []
        var logger = Logger(label: "api-test")
        logger.logLevel = .warning
        return (try Supervisor(configuration: configuration, logger: logger, handleSignals: false), logger)
    }

    @Test func thisProcessIsThePrimary() {
        #expect(Cluster.isPrimary)
        #expect(!Cluster.isWorker)
        #expect(WorkerRuntime.current() == nil)
    }

    @Test func invalidConfigurationIsATypedError() {
        var configuration = Configuration()
        configuration.workers = 0
        #expect(throws: SwitchboardError(.usage, "--workers must be at least 1 (got 0): pass --workers 1 or more")) {
            _ = try Supervisor(configuration: configuration, handleSignals: false)
        }
    }

    @Test func messagesOverTheLimitAreRefused() throws {
        let supervisor = try Supervisor(configuration: Configuration(), handleSignals: false)
        #expect(throws: SwitchboardError.self) { try supervisor.broadcast([UInt8](repeating: 0, count: 70_000)) }
    }

    @Test func wireFramesRoundTripThroughThePublicCodec() throws {
        let frame = WireCodec.encode(.heartbeat(open: 2, handled: 9))
        #expect(try WireCodec.decode(frame) == .heartbeat(open: 2, handled: 9))
        #expect(throws: WireError.truncated(bytes: 3)) { try WireCodec.decode([1, 2, 3]) }
    }

    @Test func restartPolicyIsUsableOnItsOwn() {
        var policy = RestartPolicy()
        #expect(policy.workerExited(uptime: .seconds(60), now: 0, random: 0) == .restart(after: .zero))
    }

    @Test func aSupervisorRunsWorkersReportsEventsAndStops() async throws {
        let (supervisor, _) = try Self.makeSupervisor()
        let exitCode = Task.detached { try supervisor.run() }

        var forks: Set<Int> = []
        var ready: Set<Int> = []
        var port = 0
        var exits: [(WorkerInfo, Bool)] = []
        for await event in supervisor.events {
            switch event {
            case .fork(let worker): forks.insert(worker.id)
            case .ready(let worker): ready.insert(worker.id)
            case .listening(let listeningPort):
                port = listeningPort
                // Serve one request through the public API's master, then stop it.
                let body = try await fetch(port: port)
                #expect(body.hasPrefix("Handled by worker: "))
                supervisor.stop()
            case .exit(let worker, _, _, let intended): exits.append((worker, intended))
            default: break
            }
        }
        #expect(try await exitCode.value == 0)
        #expect(forks == [1, 2] && ready == [1, 2])
        #expect(port > 0)
        #expect(exits.count == 2 && exits.allSatisfy { $0.1 }, "both workers exited as intended")
    }

    /// The thread `run()` blocks is the embedding program's (here one of the concurrency pool's): the master runs it
    /// under `SCHED_BATCH` (``Configuration/masterScheduling``), its workers run under the normal policy, and the
    /// thread has the normal policy back when `run()` returns.
    @Test func theMastersThreadHasItsPolicyBackWhenTheRunEnds() async throws {
        let (supervisor, _) = try Self.makeSupervisor()
        let thread = ThreadName()
        let running = Task.detached { () throws -> (code: Int32, policyAfter: Int?) in
            // `<pid>/task/<tid>`: this thread's entry under /proc.
            let task = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/thread-self")
            thread.value.withLock { $0 = task }
            let code = try supervisor.run()
            return (code, ProcFS.schedulingPolicy(task: task))
        }
        var during: Int?
        var workers: [Int?] = []
        var forked: [Int32] = []
        for await event in supervisor.events {
            switch event {
            case .fork(let worker): forked.append(worker.pid)
            case .listening:
                let task = try #require(thread.value.withLock { $0 })
                during = ProcFS.schedulingPolicy(task: task)
                workers = forked.map { ProcFS.schedulingPolicy(of: $0) }
                supervisor.stop()
            default: break
            }
        }
        let result = try await running.value
        #expect(result.code == 0)
        #expect(during == 3, "the master's thread is not under SCHED_BATCH while it runs")
        #expect(workers.count == 2 && workers.allSatisfy { $0 == 0 }, "\(workers)")
        #expect(result.policyAfter == 0, "the thread kept the master's policy after run() returned")
    }

    final class ThreadName: Sendable {
        let value = Mutex<String?>(nil)
    }

    @Test func aSupervisorServiceStopsGracefullyWithItsServiceGroup() async throws {
        let (supervisor, logger) = try Self.makeSupervisor()
        let group = ServiceGroup(services: [SupervisorService(supervisor)], logger: logger)
        let running = Task { try await group.run() }
        var exits = 0
        for await event in supervisor.events {
            switch event {
            case .listening(let port):
                #expect(try await fetch(port: port).hasPrefix("Handled by worker: "))
                await group.triggerGracefulShutdown()
            case .exit(_, _, _, let intended):
                #expect(intended)
                exits += 1
            default:
                break
            }
        }
        try await running.value  // the group finished without error: the master stopped with exit code 0
        #expect(exits == 2)
    }

    /// One HTTP/1.0 GET over a plain blocking socket; returns the body.
    func fetch(port: Int) async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                defer { close(fd) }
                var address = sockaddr_in()
                address.sin_family = sa_family_t(AF_INET)
                address.sin_port = in_port_t(UInt16(port).bigEndian)
                address.sin_addr.s_addr = inet_addr("127.0.0.1")
                let connected = withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                    }
                }
                guard connected == 0 else {
                    continuation.resume(throwing: SwitchboardError(.system, "connect: errno \(errno)"))
                    return
                }
                _ = "GET / HTTP/1.0\r\n\r\n".withCString { write(fd, $0, strlen($0)) }
                var response: [UInt8] = []
                var chunk = [UInt8](repeating: 0, count: 4096)
                while true {
                    let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
                    if n <= 0 { break }
                    response += chunk[0..<n]
                }
                let text = String(decoding: response, as: UTF8.self)
                let body = text.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
                continuation.resume(returning: body)
            }
        }
    }
}
