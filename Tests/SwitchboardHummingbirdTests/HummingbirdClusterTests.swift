// Built only with the package trait `Hummingbird` (`swift build --traits Hummingbird`).
#if Hummingbird
import Foundation
import SwitchboardTestSupport
import Testing

/// End-to-end: `switchboard-hummingbird-example` under its master on 127.0.0.1, port 0, as real processes. Serialized
/// so the 2-core machine is not oversubscribed.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct HummingbirdClusterTests {
    /// The example app, built next to the test bundle.
    let example = SwitchboardProcess.sibling("switchboard-hummingbird-example")

    /// Both ways a worker gets the application's child channel: the public one (`childChannel:`, the example's
    /// default) and the application's server builder read from an unstarted server (`--server-builder on`).
    @Test(arguments: [false, true]) func everyWorkerServesTheApplicationsRoutes(serverBuilder: Bool) throws {
        let server = try SwitchboardProcess.start(
            ["--workers", "2"] + (serverBuilder ? ["--server-builder", "on"] : []), executable: example)
        defer { server.cleanUp() }
        #expect(server.stdout.contains("listening on 127.0.0.1:\(server.port) with 2 workers (round-robin)"))
        let workers = Set(server.workerPIDs)
        #expect(workers.count == 2)

        var greeted: Set<pid_t> = []
        for _ in 0..<6 {
            let response = try get(port: server.port)
            #expect(response.status == 200)
            #expect(response.body.hasPrefix("Hello from Hummingbird worker "), "body: \(response.body)")
            // Hummingbird's own response headers, as when the application listens by itself.
            #expect(response.headers["date"]?.hasSuffix(" GMT") == true, "headers: \(response.headers)")
            greeted.insert(try #require(response.workerPID))
        }
        #expect(greeted == workers, "greeted by \(greeted), workers \(workers)")

        var slept: Set<pid_t> = []
        for _ in 0..<2 {
            let response = try get(port: server.port, path: "/slow?ms=50")
            #expect(response.status == 200)
            #expect(response.body.hasPrefix("Slept 50 ms in Hummingbird worker "), "body: \(response.body)")
            slept.insert(try #require(response.workerPID))
        }
        #expect(slept == workers)

        // The router's own answer for a path it does not know.
        #expect(try get(port: server.port, path: "/nowhere").status == 404)
        server.stopAndCheckNoOrphans()
    }

    @Test func keepAliveServesSeveralRequestsOnOneConnection() throws {
        let server = try SwitchboardProcess.start(["--workers", "2"], executable: example)
        defer { server.cleanUp() }
        let connection = try TestConnection(port: server.port)
        var pids: Set<pid_t> = []
        for index in 0..<5 {
            try connection.request(path: index.isMultiple(of: 2) ? "/" : "/slow?ms=10", keepAlive: true)
            let response = try connection.readResponse()
            #expect(response.status == 200)
            #expect(response.headers["connection"]?.lowercased() != "close")
            pids.insert(try #require(response.workerPID))
        }
        // One connection, one worker: every request went over the same socket.
        #expect(pids.count == 1)
        // Two requests written at once (pipelined) are answered in order.
        try connection.send(
            "GET /slow?ms=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        #expect(try connection.readResponse().body.hasPrefix("Slept 30 ms"))
        #expect(try connection.readResponse().body.hasPrefix("Hello from Hummingbird worker "))
        server.stopAndCheckNoOrphans()
    }

    @Test func sigtermLetsAnInFlightRequestFinish() throws {
        let server = try SwitchboardProcess.start(["--workers", "2", "--drain-timeout", "20"], executable: example)
        defer { server.cleanUp() }
        let master = server.pid

        // An idle keep-alive connection, and one with a slow request in flight.
        let idle = try TestConnection(port: server.port)
        try idle.request(path: "/", keepAlive: true)
        #expect(try idle.readResponse().status == 200)
        let busy = try TestConnection(port: server.port)
        // The request sleeps 4 s: on a loaded 2-CPU machine (the whole suite runs in parallel) the drain can take
        // over a second to reach the worker, and with 1.5 s the response once came first (CI, 2026-12-03).
        try busy.request(path: "/slow?ms=4000", keepAlive: true)
        #expect(busy.waitUntilHeldByWorker(of: server) != nil)
        // Give the worker a moment to read the request, so it is in flight when the drain starts.
        Thread.sleep(forTimeInterval: 0.3)

        let signalled = ContinuousClock.now
        server.signal(SIGTERM)

        // The idle connection is closed at once, without a response: before the request in flight is answered.
        #expect(try idle.readUntilClosed())
        let idleClosedAfter = ContinuousClock.now - signalled
        var pending = pollfd(fd: busy.fd, events: Int16(POLLIN), revents: 0)
        #expect(
            poll(&pending, 1, 0) == 0,
            "the in-flight response came before the idle connection was closed (\(idleClosedAfter) after SIGTERM)")

        // The request in flight completes, then the worker closes that connection too.
        let response = try busy.readResponse()
        #expect(response.status == 200)
        #expect(response.body.hasPrefix("Slept 4000 ms in Hummingbird worker "), "body: \(response.body)")
        #expect(try busy.readUntilClosed())

        #expect(server.waitForExit() == 0, "master exit status; stderr:\n\(server.stderr)")
        #expect(
            waitUntil(timeout: .seconds(10)) { ProcFS.workers(ofMaster: master).isEmpty },
            "workers left behind: \(ProcFS.workers(ofMaster: master))")
    }

    /// After a worker drains, the application's own services get a graceful shutdown before the process exits (the
    /// example's ShutdownReport writes how many requests its worker answered), on a stop and on a reload alike.
    @Test func theApplicationsServicesShutDownGracefullyAfterTheWorkerDrains() throws {
        let server = try SwitchboardProcess.start(["--workers", "2"], executable: example)
        defer { server.cleanUp() }
        let first = Set(server.workerPIDs)
        var answered: [pid_t: Int] = [:]
        for _ in 0..<6 {
            let response = try get(port: server.port)
            #expect(response.status == 200)
            answered[try #require(response.workerPID), default: 0] += 1
        }
        func reports() -> [pid_t: Int] {
            var found: [pid_t: Int] = [:]
            for line in server.stderr.split(separator: "\n") where line.contains("shut down gracefully after") {
                let words = line.split(separator: " ")
                guard words.count >= 8, let pid = pid_t(words[1]), let count = Int(words[6]) else { continue }
                found[pid] = count
            }
            return found
        }
        // A reload replaces both workers: each old one drains, then its services shut down and report.
        server.signal(SIGHUP)
        #expect(waitUntil(timeout: .seconds(30)) { Set(reports().keys) == first }, "stderr:\n\(server.stderr)")
        #expect(reports() == answered, "each worker reports the requests it answered: \(reports()) vs \(answered)")
        #expect(waitUntil(timeout: .seconds(30)) { Set(server.workerPIDs).isDisjoint(with: first) && server.workerPIDs.count == 2 })

        // A stop: the new generation reports too (no requests answered), and the master exits 0.
        let second = Set(server.workerPIDs)
        server.signal(SIGTERM)
        #expect(server.waitForExit() == 0, "master exit status; stderr:\n\(server.stderr)")
        #expect(Set(reports().keys) == first.union(second), "stderr:\n\(server.stderr)")
    }

    /// A worker's parent-death signal is SIGTERM: when the master is killed, the workers drain (the request in flight
    /// is answered) instead of dying mid-request, and then exit.
    @Test func whenTheMasterIsKilledWorkersFinishTheirRequestAndExit() throws {
        let server = try SwitchboardProcess.start(["--workers", "2"], executable: example)
        defer { server.cleanUp() }
        let master = server.pid
        let busy = try TestConnection(port: server.port)
        try busy.request(path: "/slow?ms=1000", keepAlive: true)
        #expect(busy.waitUntilHeldByWorker(of: server) != nil)
        Thread.sleep(forTimeInterval: 0.3)

        server.signal(SIGKILL)
        _ = server.waitForExit()
        let response = try busy.readResponse()
        #expect(response.status == 200)
        #expect(response.body.hasPrefix("Slept 1000 ms in Hummingbird worker "), "body: \(response.body)")
        #expect(
            waitUntil(timeout: .seconds(15)) { ProcFS.workers(ofMaster: master).isEmpty },
            "workers left behind: \(ProcFS.workers(ofMaster: master))")
    }

    @Test func rollingReloadsUnderLoadLoseNoRequest() throws {
        let server = try SwitchboardProcess.start(["--workers", "2"], executable: example)
        defer { server.cleanUp() }
        let before = Set(server.workerPIDs)
        let loops = GetLoops(port: server.port, clients: 3)
        defer { loops.stop() }
        let outcomes = loops.outcomes
        // Ten reloads, one after the other, while three clients keep sending requests on new connections.
        #expect(waitUntil { outcomes.count >= 10 })
        for reload in 1...10 {
            server.signal(SIGHUP)
            #expect(waitUntil { server.stderr.components(separatedBy: "rolling reload finished").count > reload })
        }
        loops.stop()
        #expect(outcomes.count > 20, "only \(outcomes.count) requests")
        #expect(outcomes.failures.isEmpty, "\(outcomes.failures.count) of \(outcomes.count) failed: \(outcomes.failures.prefix(3))")
        #expect(waitUntil { server.workerPIDs.count == 2 && Set(server.workerPIDs).isDisjoint(with: before) })
        server.stopAndCheckNoOrphans()
    }

    @Test func aBadFlagIsReportedWithExitCode64() throws {
        let server = try SwitchboardProcess(arguments: ["--workers", "none"], executable: example)
        defer { server.cleanUp() }
        #expect(server.waitForExit() == 64)
        #expect(server.stderr.contains("invalid WORKERS: 'none'"), "stderr: \(server.stderr)")
    }
}
extension HummingbirdClusterTests {
    @Test func halfRequestsAndIdleKeepAliveConnectionsAreClosedByTheLimits() throws {
        let server = try SwitchboardProcess.start(
            ["--workers", "2", "--header-timeout", "1", "--keepalive-timeout", "1"], executable: example)
        defer { server.cleanUp() }
        let halves = try (0..<200).map { _ in
            let connection = try TestConnection(port: server.port, timeoutSeconds: 20)
            try connection.send("GET / HT")
            return connection
        }
        let kept = try TestConnection(port: server.port, timeoutSeconds: 20)
        try kept.request(keepAlive: true)
        #expect(try kept.readResponse().status == 200)
        var closed = 0
        for connection in halves where (try? connection.readUntilClosed()) != nil { closed += 1 }
        #expect(closed == halves.count, "\(closed) of \(halves.count) half requests closed by the server")
        #expect((try? kept.readUntilClosed()) == true, "the idle keep-alive connection was closed")
        #expect(try get(port: server.port).status == 200)
        server.stopAndCheckNoOrphans()
    }

    /// `--worker-threads` sizes each worker's event loop group: the example's application keeps SwiftNIO's default
    /// singleton group, which the master's environment sizes (`NIO_SINGLETON_GROUP_LOOP_COUNT`). Counted by the
    /// event loop threads' names (`NIO-SGLTN-1-#n` for the singleton group, `NIO-ELT-…` for others) in `/proc/<pid>/task`: the other threads (Swift's cooperative pool)
    /// come and go with the load.
    @Test(arguments: [1, 3])
    func workerThreadsSizeTheApplicationsEventLoopGroup(threads: Int) throws {
        let server = try SwitchboardProcess.start(
            ["--workers", "2", "--worker-threads", "\(threads)"], executable: example)
        defer { server.cleanUp() }
        _ = try get(port: server.port)
        let workers = server.workerPIDs
        #expect(workers.count == 2)
        for worker in workers {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(worker)/task")) ?? []
            let loops = names.filter {
                let name = ProcFS.read("/proc/\(worker)/task/\($0)/comm") ?? ""
                return name.hasPrefix("NIO-ELT") || name.hasPrefix("NIO-SGLTN-1")
            }
            #expect(loops.count == threads, "worker \(worker): \(loops.count) event loop threads of \(names.count)")
        }
        server.stopAndCheckNoOrphans()
    }
}
#endif
