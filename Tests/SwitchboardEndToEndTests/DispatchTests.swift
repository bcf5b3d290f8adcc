import Foundation
import SwitchboardTestSupport
import Testing

extension EndToEndTests {
    @Suite struct Dispatch {
        @Test func fourWorkersGetExactlyAHundredConnectionsEach() throws {
            let server = try SwitchboardProcess.start(["--workers", "4"])
            defer { server.cleanUp() }
            var counts: [pid_t: Int] = [:]
            for _ in 0..<400 {
                let response = try get(port: server.port)
                #expect(response.status == 200)
                let pid = try #require(response.workerPID, "body: \(response.body)")
                counts[pid, default: 0] += 1
            }
            print("distribution over 4 workers, 400 connections: \(counts.sorted { $0.key < $1.key })")
            #expect(counts.count == 4)
            #expect(counts.values.allSatisfy { $0 == 100 }, "per-worker counts: \(counts)")
            #expect(Set(counts.keys) == Set(server.workerPIDs))
            server.stopAndCheckNoOrphans()
        }

        /// Connections already waiting in the backlog are accepted in bursts and go out several per message (one
        /// `sendmsg` per worker per burst), still in strict rotation, and every one is answered.
        @Test func aBurstWaitingInTheBacklogGoesOutSeveralConnectionsPerMessage() throws {
            let server = try SwitchboardProcess.start(["--workers", "2"])
            defer { server.cleanUp() }
            let workers = server.workerPIDs
            try #require(workers.count == 2)
            // With the master stopped, the kernel completes the handshakes and queues all thirty in the backlog. Thirty
            // keeps each worker below its bound of 16 unacknowledged, so rotation is never skipped.
            server.signal(SIGSTOP)
            var connections: [TestConnection] = []
            for _ in 0..<30 {
                let connection = try TestConnection(port: server.port, timeoutSeconds: 30)
                try connection.request()
                connections.append(connection)
            }
            server.signal(SIGCONT)
            var counts: [pid_t: Int] = [:]
            for connection in connections {
                let response = try connection.readResponse()
                #expect(response.status == 200)
                counts[try #require(response.workerPID), default: 0] += 1
            }
            #expect(counts == [workers[0]: 15, workers[1]: 15], "per-worker counts: \(counts)")
            server.signal(SIGTERM)
            #expect(server.waitForExit() == 0)
            let log = server.stderr
            let stopped = try #require(log.split(separator: "\n").last { $0.contains("stopped") }, "\(log)")
            func figure(_ name: String) -> Int? {
                stopped.split(separator: " ").first { $0.hasPrefix("\(name)=") }.flatMap { Int($0.split(separator: "=")[1]) }
            }
            #expect(figure("connections.dispatched") == 30, "\(stopped)")
            let messages = try #require(figure("connections.messages"), "\(stopped)")
            print("30 queued connections went out in \(messages) messages")
            #expect(messages <= 15, "a burst should carry several connections per message: \(stopped)")
        }

        @Test func keepAliveConnectionServesManyRequestsOnOneWorker() throws {
            let server = try SwitchboardProcess.start(["--workers", "2"])
            defer { server.cleanUp() }
            let connection = try TestConnection(port: server.port)
            var pids: Set<pid_t> = []
            for _ in 0..<20 {
                try connection.request(keepAlive: true)
                let response = try connection.readResponse()
                #expect(response.status == 200)
                pids.insert(try #require(response.workerPID))
            }
            #expect(pids.count == 1)
            server.stopAndCheckNoOrphans()
        }

        /// Node loses these: a connection handed to a worker that dies before taking it hangs forever. Here they wait
        /// in the stopped worker's queue (stealing is off) until it is killed; then the master takes them back.
        @Test func connectionsHeldByAStoppedThenKilledWorkerAreServedByAnother() throws {
            let server = try SwitchboardProcess.start(["--workers", "2", "--max-queued", "4", "--steal-after", "0"])
            defer { server.cleanUp() }
            let workers = server.workerPIDs
            try #require(workers.count == 2)
            // Find which worker the next connection goes to, then stop the other one so rotation alternates onto it.
            let first = try #require(try get(port: server.port).workerPID)
            let stopped = try #require(workers.first { $0 != first })
            kill(stopped, SIGSTOP)

            // Eight connections alternate between the workers: four go to the stopped one (its bound) and wait.
            let (connections, results, group) = try KernelQueue.requests(8, port: server.port)
            #expect(waitUntil { results.count == 4 }, "the running worker should answer its four")
            Thread.sleep(forTimeInterval: 0.3)
            #expect(results.count == 4, "connections dispatched to the stopped worker cannot be answered yet")

            kill(stopped, SIGKILL)
            #expect(group.wait(timeout: .now() + 30) == .success)
            let responses = results.all.compactMap { try? $0.get() }
            #expect(responses.count == 8, "every connection answered: \(results.all)")
            #expect(responses.allSatisfy { $0.status == 200 && $0.workerPID != stopped })
            #expect(server.stderr.contains("re-dispatching 4 connections the worker never received"), "\(server.stderr)")
            #expect(waitUntil { server.workerPIDs.count == 2 && !server.workerPIDs.contains(stopped) })
            // None was served twice: after its one response each connection simply ends.
            for connection in connections { #expect(try connection.readUntilClosed(), "bytes after the response") }
            server.stopAndCheckNoOrphans()
        }

        @Test func masterDescriptorCountReturnsToBaselineAfterTenThousandConnections() throws {
            let server = try SwitchboardProcess.start(["--workers", "2"])
            defer { server.cleanUp() }
            _ = try get(port: server.port)
            let baseline = ProcFS.descriptorCount(server.pid)
            let failures = ResultBox()
            let port = server.port
            DispatchQueue.concurrentPerform(iterations: 4) { _ in
                for _ in 0..<2500 {
                    do {
                        let response = try get(port: port)
                        if response.status != 200 { failures.append(.failure(ProbeError.malformed(response.body))) }
                    } catch {
                        failures.append(.failure(error))
                    }
                }
            }
            #expect(failures.count == 0, "failed requests: \(failures.all.prefix(5))")
            // The master closes its copy as soon as a connection is sent: a leak of even one in 10,000 shows.
            let settled = waitUntil { ProcFS.descriptorCount(server.pid) <= baseline }
            #expect(settled, "master fds: baseline \(baseline), now \(ProcFS.descriptorCount(server.pid))")
            server.stopAndCheckNoOrphans()
        }
    }
}

/// Thread-safe list of results.
final class ResultBox: @unchecked Sendable {
    // @unchecked: `items` is only touched under `lock`.
    private let lock = NSLock()
    private var items: [Result<HTTPResponse, any Error>] = []

    func append(_ item: Result<HTTPResponse, any Error>) {
        lock.withLock { items.append(item) }
    }

    var count: Int { lock.withLock { items.count } }
    var all: [Result<HTTPResponse, any Error>] { lock.withLock { items } }
}
