import Foundation
import SwitchboardTestSupport
import Testing

extension EndToEndTests {
    @Suite struct Supervision {
        @Test func killingWorkersUnderLoadLosesOnlyRequestsTheyHeld() throws {
            let server = try SwitchboardProcess.start(["--workers", "2"])
            defer { server.cleanUp() }
            _ = try get(port: server.port)
            let baseline = ProcFS.descriptorCount(server.pid)
            let load = LoadLoop(port: server.port)
            // Each kill from just before `kill(2)` to the first look that finds the victim dead: the test thread may
            // be preempted between reading the clock and the signal taking effect, and a connection the master hands
            // the victim meanwhile is in its hands when it dies.
            var kills: [ClosedRange<ContinuousClock.Instant>] = []
            for round in 0..<5 {
                #expect(waitUntil { load.count > (round + 1) * 50 })
                let victim = try #require(server.workerPIDs.first)
                let issued = ContinuousClock.now
                kill(victim, SIGKILL)
                let deadline = ContinuousClock.now + .seconds(10)
                while ProcFS.isAlive(victim) && ContinuousClock.now < deadline { usleep(200) }
                kills.append(issued...ContinuousClock.now)
                #expect(waitUntil { server.workerPIDs.count == 2 && !server.workerPIDs.contains(victim) })
            }
            let served = load.count
            #expect(waitUntil { load.count > served + 50 }, "requests keep being served after the last kill")
            let outcomes = load.stop()
            let failures = outcomes.filter { if case .failure = $0.result { true } else { false } }
            // Only a request already in a killed worker's hands may fail: it was under way while the worker died.
            for failure in failures {
                #expect(
                    kills.contains { failure.started <= $0.upperBound && $0.lowerBound <= failure.ended },
                    "\(failure.result)")
            }
            #expect(failures.count <= kills.count)
            #expect(outcomes.count - failures.count > 300)
            // The baseline may still include the first connection's copy (closed when its acknowledgement is read).
            #expect(
                waitUntil { ProcFS.descriptorCount(server.pid) <= baseline },
                "master fds: baseline \(baseline), now \(ProcFS.descriptorCount(server.pid)); \(ProcFS.descriptors(server.pid))")
            server.stopAndCheckNoOrphans()
        }

        @Test func aWorkerThatExitsAtOnceBacksOffThenHaltsTheMaster() throws {
            let hooks = try HookFile("exit-at-start")
            let server = try SwitchboardProcess(
                arguments: [
                    "--host", "127.0.0.1", "--port", "0", "--workers", "1", "--test-hooks", "--restart-delay", "0.02",
                    "--crash-loop-limit", "5",
                ],
                environment: ["SWITCHBOARD_TEST_HOOK_FILE": hooks.path])
            defer { server.cleanUp() }
            let status = server.waitForExit(timeout: .seconds(60))
            #expect(status == 70, "crash loop exit code; stderr: \(server.stderr)")
            #expect(server.stderr.contains("halting (crash loop)"))
            #expect(!server.stdout.contains("listening on"), "never ready, never announced")
            let delays = server.logLines.filter { $0.message.hasPrefix("restarting worker in ") }
                .compactMap { Int($0.message.dropFirst("restarting worker in ".count).prefix { $0.isNumber }) }
            #expect(delays.count == 5, "\(delays)")
            #expect(delays == delays.sorted() && Set(delays).count == delays.count, "backoff grows: \(delays)")
            #expect(ProcFS.workers(ofMaster: server.pid).isEmpty)
        }

        @Test func rollingReloadUnderLoadReplacesEveryWorkerWithoutAFailure() throws {
            let server = try SwitchboardProcess.start(["--workers", "2"])
            defer { server.cleanUp() }
            let before = Set(server.workerPIDs)
            let load = LoadLoop(port: server.port)
            #expect(waitUntil { load.count > 100 })
            server.signal(SIGHUP)
            #expect(server.waitForLog("rolling reload finished"))
            let served = load.count
            #expect(waitUntil { load.count > served + 100 })
            let outcomes = load.stop()
            let failures = outcomes.filter { if case .failure = $0.result { true } else { false } }
            #expect(failures.isEmpty, "failed during reload: \(failures.prefix(3).map(\.result))")
            #expect(waitUntil { server.workerPIDs.count == 2 })
            #expect(Set(server.workerPIDs).isDisjoint(with: before), "every worker replaced")
            // Replay the log: the number of ready, not draining workers never drops below 2 once announced.
            var ready: Set<String> = []
            var lowest = Int.max
            var announced = false
            for line in server.logLines {
                guard let id = line.metadata["worker.id"] else { continue }
                if line.message == "worker ready" { ready.insert(id) }
                if line.message == "worker draining" || line.message.hasPrefix("worker exited")
                    || line.message.hasPrefix("worker killed")
                {
                    ready.remove(id)
                }
                if ready.count >= 2 { announced = true }
                if announced { lowest = min(lowest, ready.count) }
            }
            #expect(lowest == 2, "ready workers dropped to \(lowest) during the reload")
            server.stopAndCheckNoOrphans()
        }

        @Test func aReloadWhoseNewWorkerNeverBecomesReadyAbortsAndKeepsTheOldWorkers() throws {
            let hooks = try HookFile("")
            let server = try SwitchboardProcess.start(
                ["--workers", "2", "--test-hooks", "--ready-timeout", "1"],
                environment: ["SWITCHBOARD_TEST_HOOK_FILE": hooks.path])
            defer { server.cleanUp() }
            let before = Set(server.workerPIDs)
            try hooks.write("never-ready")
            server.signal(SIGHUP)
            #expect(server.waitForLog("rolling reload aborted"))
            #expect(waitUntil { Set(server.workerPIDs) == before }, "the old workers keep serving, the new one is gone")
            for _ in 0..<10 {
                let response = try get(port: server.port)
                #expect(before.contains(response.workerPID ?? 0))
            }
            server.stopAndCheckNoOrphans()
        }

        /// The reload's old worker dies while its replacement is starting, then the replacement misses its ready
        /// deadline: the reload aborts with both of that pair gone, and the master still ends with the configured
        /// number of workers.
        @Test func aReloadAbortedAfterItsOldWorkerDiedStillEndsWithTheConfiguredWorkers() throws {
            let hooks = try HookFile("")
            let server = try SwitchboardProcess.start(
                ["--workers", "2", "--test-hooks", "--ready-timeout", "2"],
                environment: ["SWITCHBOARD_TEST_HOOK_FILE": hooks.path])
            defer { server.cleanUp() }
            // The reload replaces slot 0 first.
            let forked = server.stderr.split(separator: "\n").first { $0.contains("worker forked") && $0.contains("worker.slot=0") }
            let pidField = forked?.split(separator: " ").first { $0.hasPrefix("worker.pid=") }
            let first = try #require(pidField.flatMap { pid_t($0.dropFirst("worker.pid=".count)) })
            try hooks.write("never-ready")
            server.signal(SIGHUP)
            #expect(waitUntil { server.logCount("worker forked") == 3 }, "the replacement started")
            kill(first, SIGKILL)
            #expect(server.waitForLog("rolling reload aborted"), "stderr:\n\(server.stderr)")
            try hooks.write("")
            let converged = waitUntil(timeout: .seconds(30)) {
                server.workerPIDs.count == 2 && server.logCount("worker ready") >= 3
            }
            #expect(converged, "workers: \(server.workerPIDs); stderr:\n\(server.stderr)")
            var pids: Set<pid_t> = []
            for _ in 0..<20 { pids.insert(try get(port: server.port).workerPID ?? 0) }
            #expect(pids.count == 2, "both workers serve: \(pids)")
            server.stopAndCheckNoOrphans()
        }

        /// Issue 19, bug 1, as reported: a reload whose new worker never becomes ready, then `switchboard scale 1`.
        /// On main the scale-down drained the replacement and both old workers ran on (2 workers 8 s later).
        @Test func scalingDownDuringAReloadEndsWithTheTargetNotTheOldWorkers() throws {
            let hooks = try HookFile("")
            let socket = EndToEndTests.Control.socketPath()
            let server = try SwitchboardProcess.start(
                ["--workers", "2", "--test-hooks", "--ready-timeout", "1.5", "--drain-timeout", "3", "--control-socket", socket],
                environment: ["SWITCHBOARD_TEST_HOOK_FILE": hooks.path])
            defer { server.cleanUp() }
            try hooks.write("never-ready")
            server.signal(SIGHUP)
            #expect(waitUntil { server.logCount("worker forked") == 3 }, "the replacement started")
            let scaled = try EndToEndTests.Control.client(["scale", "1"], socket: socket)
            #expect(scaled.status == 0 && scaled.stdout.contains("workers: 2 -> 1"), "\(scaled.stdout)\(scaled.stderr)")
            #expect(server.waitForLog("rolling reload aborted"), "\(server.stderr)")
            let one = waitUntil(timeout: .seconds(10)) { server.workerPIDs.count == 1 }
            #expect(one, "workers: \(server.workerPIDs)\n\(server.stderr)")
            try hooks.write("")
            for _ in 0..<5 { #expect(try get(port: server.port).status == 200) }
            #expect(server.workerPIDs.count == 1, "and it stays one")
            server.stopAndCheckNoOrphans()
        }

        @Test func sigtermLetsASlowRequestInFlightFinish() throws {
            let server = try SwitchboardProcess.start(["--workers", "2", "--test-hooks"])
            defer { server.cleanUp() }
            let connection = try TestConnection(port: server.port)
            try connection.request(path: "/slow?ms=1500")
            #expect(connection.waitUntilHeldByWorker(of: server) != nil)
            server.signal(SIGTERM)
            let response = try connection.readResponse()
            #expect(response.status == 200)
            #expect(response.headers["connection"] == "close")
            #expect(server.waitForExit() == 0)
            #expect(waitUntil { ProcFS.workers(ofMaster: server.pid).isEmpty })
        }

        /// A connection handed to a worker just before a stop, whose request has not been read yet, is served.
        @Test func aConnectionPassedJustBeforeAStopStillGetsItsResponse() throws {
            let server = try SwitchboardProcess.start(["--workers", "1", "--drain-timeout", "10"])
            defer { server.cleanUp() }
            let connection = try TestConnection(port: server.port)
            #expect(connection.waitUntilHeldByWorker(of: server) != nil)
            server.signal(SIGTERM)
            #expect(server.waitForLog("stopping gracefully"))
            try connection.request()
            let response = try connection.readResponse()
            #expect(response.status == 200 && response.headers["connection"] == "close")
            #expect(server.waitForExit() == 0)
        }

        @Test func aRequestSlowerThanTheDrainDeadlineIsCutAndTheMasterStillExits() throws {
            let server = try SwitchboardProcess.start(["--workers", "1", "--test-hooks", "--drain-timeout", "1"])
            defer { server.cleanUp() }
            let connection = try TestConnection(port: server.port)
            try connection.request(path: "/slow?ms=30000")
            #expect(connection.waitUntilHeldByWorker(of: server) != nil)
            let clock = ContinuousClock()
            let start = clock.now
            server.signal(SIGTERM)
            #expect(server.waitForExit(timeout: .seconds(20)) == 0)
            let took = clock.now - start
            #expect(took < .seconds(6), "exit took \(took) with a 1 s drain deadline")
            #expect((try? connection.readResponse()) == nil, "the request was cut, not answered")
            #expect(waitUntil { ProcFS.workers(ofMaster: server.pid).isEmpty })
        }

        @Test func aStoppedWorkerIsKilledAfterTheHeartbeatTimeoutAndOthersServeMeanwhile() throws {
            let server = try SwitchboardProcess.start([
                "--workers", "2", "--heartbeat-interval", "0.1", "--heartbeat-timeout", "1",
            ])
            defer { server.cleanUp() }
            let victim = try #require(server.workerPIDs.first)
            kill(victim, SIGSTOP)
            var answered = 0
            for _ in 0..<20 {
                let response = try get(port: server.port)
                #expect(response.status == 200 && response.workerPID != victim)
                answered += 1
            }
            #expect(answered == 20)
            #expect(server.waitForLog("worker sent no heartbeat"))
            #expect(waitUntil { !ProcFS.isAlive(victim) && server.workerPIDs.count == 2 })
            server.stopAndCheckNoOrphans()
        }

        @Test func ttinAndTtouChangeTheWorkerCountByOneAndNeverBelowOne() throws {
            let server = try SwitchboardProcess.start(["--workers", "2"])
            defer { server.cleanUp() }
            server.signal(SIGTTIN)
            #expect(waitUntil { server.workerPIDs.count == 3 })
            #expect(server.waitForLog("worker ready", count: 3))
            var seen: Set<pid_t> = []
            for _ in 0..<30 { seen.insert(try get(port: server.port).workerPID ?? 0) }
            #expect(seen.count == 3)
            server.signal(SIGTTOU)
            #expect(waitUntil { server.workerPIDs.count == 2 })
            server.signal(SIGTTOU)
            #expect(waitUntil { server.workerPIDs.count == 1 })
            server.signal(SIGTTOU)
            #expect(server.waitForLog("SIGTTOU ignored"))
            #expect(server.workerPIDs.count == 1)
            #expect(try get(port: server.port).status == 200)
            server.stopAndCheckNoOrphans()
        }
    }
}

/// A temporary file the workers read at start (`--test-hooks`).
final class HookFile {
    let path: String

    init(_ content: String) throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-hook-\(UUID().uuidString)").path
        try write(content)
    }

    func write(_ content: String) throws {
        try content.write(toFile: path, atomically: true, encoding: .utf8)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}
