import Foundation
import SwitchboardTestSupport
import Testing

extension EndToEndTests {
    /// Slow, silent, greedy and unlucky clients against the real binary: each is cut or served within its limit,
    /// and none of them stops the service.
    @Suite struct HostileClients {
        /// Opens a connection that sends `text` and then nothing.
        static func open(_ text: String, port: Int, timeoutSeconds: Int = 20) throws -> TestConnection {
            let connection = try TestConnection(port: port, timeoutSeconds: timeoutSeconds)
            if !text.isEmpty { try connection.send(text) }
            return connection
        }

        /// `--defer-accept`: a client that connects and sends nothing is not kept forever. The kernel accepts it once
        /// the deferral runs out (its first SYN-ACK retransmission, about 1 s), and the worker's header timeout then
        /// closes it: later than without the option (the deferral is there, in both the master's and a reuseport
        /// worker's listener) and within a bound.
        @Test(arguments: ["round-robin", "reuseport"])
        func silentConnectionsAreClosedAfterTheDeferralAndTheHeaderTimeout(mode: String) throws {
            let server = try SwitchboardProcess.start(
                ["--workers", "2", "--mode", mode, "--defer-accept", "1", "--header-timeout", "1"])
            defer { server.cleanUp() }
            let start = Date()
            let silent = try (0..<5).map { _ in try Self.open("", port: server.port, timeoutSeconds: 10) }
            for connection in silent {
                #expect(try connection.readUntilClosed(), "a silent connection is closed without a word")
            }
            let elapsed = Date().timeIntervalSince(start)
            // Without the deferral the header timeout alone closes them after about 1 s.
            #expect(elapsed >= 1.8 && elapsed < 10, "closed after \(elapsed) s")
            #expect(try get(port: server.port).status == 200)
            server.stopAndCheckNoOrphans()
        }

        /// `--defer-accept` in both engines and in the modes where the master or the worker binds: a client that
        /// connects and sends nothing stays in the kernel, its server side SYN-RECV (not accepted, by nobody), and the
        /// same connection is accepted and answered once it speaks. The NIO engine, which Hummingbird's and Vapor's
        /// workers run on, binds its reuseport listener through the same runtime as the built-in one. With
        /// `--defer-accept 0` the server side is established at once: the check can tell.
        @Test(arguments: [
            ("native", "round-robin", 5), ("native", "reuseport", 5), ("nio", "round-robin", 5),
            ("nio", "reuseport", 5), ("native", "round-robin", 0), ("nio", "reuseport", 0),
        ])
        func aSilentClientWaitsInTheKernelWithDeferAcceptInEitherEngine(worker: String, mode: String, seconds: Int)
            throws
        {
            let server = try SwitchboardProcess.start(
                ["--workers", "2", "--worker", worker, "--mode", mode, "--defer-accept", "\(seconds)"])
            defer { server.cleanUp() }
            let silent = try TestConnection(port: server.port, timeoutSeconds: 10)
            let state = silent.waitForServerSideState(serverPort: server.port)
            #expect(
                state == (seconds > 0 ? "03" : "01"),
                "server side of a silent connection: \(state ?? "none") (03: SYN-RECV, held back; 01: established)")
            try silent.request(path: "/")
            #expect(try silent.readResponse().status == 200, "it is answered once it speaks")
            server.stopAndCheckNoOrphans()
        }

        @Test func halfRequestsGet408AndSilentConnectionsCloseAfterTheHeaderTimeout() throws {
            let server = try SwitchboardProcess.start(["--workers", "2", "--header-timeout", "1"])
            defer { server.cleanUp() }
            let workers = server.workerPIDs
            let baseline = Dictionary(uniqueKeysWithValues: workers.map { ($0, ProcFS.descriptorCount($0)) })
            let halves = try (0..<40).map { _ in try Self.open("GET / HT", port: server.port) }
            let silent = try (0..<10).map { _ in try Self.open("", port: server.port) }
            for connection in halves {
                let reply = connection.readToEnd()  // returns when the server closes (or after 20 s)
                #expect(reply.hasPrefix("HTTP/1.1 408 Request Timeout\r\n"), "\(reply)")
            }
            for connection in silent {
                #expect(try connection.readUntilClosed(), "a silent connection is closed without a word")
            }
            // Nothing of theirs is left in the workers.
            let settled = waitUntil { workers.allSatisfy { ProcFS.descriptorCount($0) == baseline[$0] } }
            #expect(settled, "worker descriptors \(workers.map(ProcFS.descriptorCount)) vs \(baseline)")
            #expect(try get(port: server.port).status == 200)
            server.stopAndCheckNoOrphans()
        }

        @Test func theNIOWorkerClosesHalfRequestsAndSilentConnectionsAfterTheHeaderTimeout() throws {
            let server = try SwitchboardProcess.start(["--workers", "2", "--worker", "nio", "--header-timeout", "1"])
            defer { server.cleanUp() }
            let waiting = try (0..<20).map { index in try Self.open(index % 2 == 0 ? "GET / HT" : "", port: server.port) }
            for connection in waiting {
                #expect((try? connection.readUntilClosed()) != nil, "the server closed it")
            }
            #expect(try get(port: server.port).status == 200)
            server.stopAndCheckNoOrphans()
        }

        /// A malformed request gets a 400 and a closed connection from every engine: the NIO ones (`--worker nio` and
        /// the NIO example) answered 400 and then left the connection open, waiting for the client.
        @Test(arguments: ["native", "nio", "nio-example"])
        func aMalformedRequestGets400AndAClose(engine: String) throws {
            let server =
                engine == "nio-example"
                ? try SwitchboardProcess.start(
                    ["--workers", "1"], executable: SwitchboardProcess.sibling("switchboard-nio-example"))
                : try SwitchboardProcess.start(["--workers", "1", "--worker", engine])
            defer { server.cleanUp() }
            for request in [
                "GET / HTTP/1.1\r\nBad Header\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
                "GET / HTTP/1.1\r\nName : a\r\n\r\n",
            ] {
                // Reads give up after 2 s: a connection still open then counts as left open.
                let connection = try TestConnection(port: server.port, timeoutSeconds: 2)
                try connection.send(request)
                #expect(try connection.readResponse().status == 400, "\(request.debugDescription)")
                let closed = try? connection.readUntilClosed()
                #expect(closed == true, "\(engine): closed within 2 s after the 400 to \(request.debugDescription)")
            }
            #expect(try get(port: server.port).status == 200)
            server.stopAndCheckNoOrphans()
        }

        @Test(arguments: ["native", "nio"])
        func anIdleKeepAliveConnectionClosesAfterTheKeepAliveTimeout(engine: String) throws {
            let server = try SwitchboardProcess.start(["--workers", "1", "--worker", engine, "--keepalive-timeout", "1"])
            defer { server.cleanUp() }
            let connection = try TestConnection(port: server.port, timeoutSeconds: 20)
            for _ in 0..<2 {
                try connection.request(keepAlive: true)
                #expect(try connection.readResponse().status == 200)
            }
            #expect(try connection.readUntilClosed(), "the server closed the idle connection")
            server.stopAndCheckNoOrphans()
        }

        @Test(arguments: ["native", "nio"])
        func aPipeliningClientThatNeverReadsIsCutAndTheWorkerStaysSmall(engine: String) throws {
            let server = try SwitchboardProcess.start(["--workers", "1", "--worker", engine, "--send-timeout", "2"])
            defer { server.cleanUp() }
            let worker = try #require(server.workerPIDs.first)
            let before = try #require(ProcFS.residentKiB(worker))
            let connection = try TestConnection(port: server.port, timeoutSeconds: 1)
            let burst = Array(String(repeating: "GET / HTTP/1.1\r\nHost: x\r\n\r\n", count: 200).utf8)
            var largest = before
            var cut = false
            let clock = ContinuousClock()
            let end = clock.now + .seconds(30)
            // Writes block for at most 1 s (the send timeout of the socket) while the server reads nothing more.
            while clock.now < end && !cut {
                let written = burst.withUnsafeBytes { send(connection.fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
                if written < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR { cut = true }
                largest = max(largest, ProcFS.residentKiB(worker) ?? 0)
            }
            #expect(cut, "the server never cut a client that does not read")
            #expect(largest - before < 16 * 1024, "worker RSS grew from \(before) KiB to \(largest) KiB")
            #expect(server.workerPIDs == [worker])
            #expect(try get(port: server.port).status == 200)
            server.stopAndCheckNoOrphans()
        }

        /// A flood of half-open connections against a master and workers started under a low descriptor limit, with
        /// the default cap and with a `--max-connections` above what the limit allows: either way a worker never
        /// receives more connections than it has descriptors for (the kernel would close the rest), so none is lost.
        @Test(arguments: [nil, 400] as [Int?])
        func aDescriptorFloodAtALowLimitNeitherHaltsTheMasterNorEndsAWorker(maxConnections: Int?) throws {
            var arguments = ["--workers", "2", "--header-timeout", "1"]
            if let maxConnections { arguments += ["--max-connections", "\(maxConnections)"] }
            let server = try SwitchboardProcess.start(arguments, descriptorLimit: 96)
            defer { server.cleanUp() }
            let workers = Set(server.workerPIDs)
            let flood = try (0..<240).map { _ in try Self.open("GET / HT", port: server.port, timeoutSeconds: 30) }
            // Every one of them reaches a worker in the end and is answered 408: none is lost on the way.
            var answered = 0
            for connection in flood where connection.readToEnd().hasPrefix("HTTP/1.1 408 ") { answered += 1 }
            #expect(answered == flood.count, "\(answered) of \(flood.count) answered 408; stderr:\n\(server.stderr)")
            #expect(Set(server.workerPIDs) == workers, "a worker was replaced; stderr:\n\(server.stderr)")
            #expect(server.logCount("crash loop") == 0)
            #expect(server.logCount("out of descriptors") == 0, "stderr:\n\(server.stderr)")
            #expect(server.logCount("worker.max-connections=32") == 1, "the cap fits the limit of 96 less 64")
            #expect(try get(port: server.port).status == 200)
            server.stopAndCheckNoOrphans()
        }

        @Test(arguments: [SIGINT, SIGQUIT], ["native", "nio"])
        func aSignalToTheWholeProcessGroupStopsGracefully(signal: Int32, engine: String) throws {
            let server = try SwitchboardProcess.start(["--workers", "2", "--worker", engine, "--test-hooks"])
            defer { server.cleanUp() }
            let master = server.pid
            let slow = try (0..<3).map { _ in try TestConnection(port: server.port) }
            for connection in slow {
                try connection.request(path: "/slow?ms=1500")
                #expect(connection.waitUntilHeldByWorker(of: server) != nil)
            }
            server.signalGroup(signal)  // as a terminal's Ctrl-C (or Ctrl-\) does
            for connection in slow {
                #expect(try connection.readResponse().status == 200)
            }
            #expect(server.waitForExit() == 0, "stderr:\n\(server.stderr)")
            #expect(server.logCount("killed by signal") == 0, "stderr:\n\(server.stderr)")
            #expect(waitUntil(timeout: .seconds(10)) { ProcFS.workers(ofMaster: master).isEmpty })
        }

        @Test(arguments: ["native", "nio"])
        func aWorkerAtItsConnectionCapGetsNoMoreUntilOneCloses(engine: String) throws {
            let server = try SwitchboardProcess.start(["--workers", "1", "--worker", engine, "--max-connections", "2"])
            defer { server.cleanUp() }
            let first = try TestConnection(port: server.port)
            let second = try TestConnection(port: server.port)
            for connection in [first, second] {
                try connection.request(keepAlive: true)
                #expect(try connection.readResponse().status == 200)
            }
            let waiting = try TestConnection(port: server.port)
            try waiting.request(keepAlive: true)
            // The worker is at its cap: the third waits in the backlog while the first two keep being served.
            for _ in 0..<5 {
                for connection in [first, second] {
                    try connection.request(keepAlive: true)
                    #expect(try connection.readResponse().status == 200)
                }
            }
            #expect(waiting.serverSideInode(serverPort: server.port) == nil, "the third was accepted past the cap")
            _ = consume first  // closes it: room for one
            #expect(try waiting.readResponse().status == 200)
            server.stopAndCheckNoOrphans()
        }

        @Test func workersKilledFromOutsideAreReplacedWithoutEverHaltingTheMaster() throws {
            let server = try SwitchboardProcess.start(["--workers", "2", "--crash-loop-limit", "2"])
            defer { server.cleanUp() }
            for round in 0..<6 {
                let victim = try #require(server.workerPIDs.first)
                kill(victim, SIGKILL)  // as the OOM killer or an operator would
                let replaced = waitUntil {
                    let now = server.workerPIDs
                    return !now.contains(victim) && now.count == 2 && server.logCount("worker ready") >= 3 + round
                }
                #expect(replaced, "round \(round): stderr:\n\(server.stderr)")
            }
            #expect(server.process.isRunning, "the master halted: stderr:\n\(server.stderr)")
            #expect(server.logCount("crash loop") == 0)
            #expect(try get(port: server.port).status == 200)
            server.stopAndCheckNoOrphans()
        }

        /// A burst of HUPs to the group lands on workers in every state, including new ones between their exec and
        /// their signal set-up (the master spawns them with the master's signals blocked).
        @Test func aBurstOfHangupsToTheGroupKillsNoWorkerEvenOneStartingUp() throws {
            let server = try SwitchboardProcess.start(["--workers", "2"])
            defer { server.cleanUp() }
            let clock = ContinuousClock()
            let end = clock.now + .milliseconds(600)
            while clock.now < end {
                server.signalGroup(SIGHUP)
                Thread.sleep(forTimeInterval: 0.003)
            }
            let settled = waitUntil(timeout: .seconds(60)) {
                let started = server.logCount("rolling reload started")
                return started >= 1 && server.logCount("rolling reload finished") == started
                    && server.workerPIDs.count == 2
            }
            #expect(settled, "stderr:\n\(server.stderr)")
            #expect(server.logCount("killed by signal") == 0, "stderr:\n\(server.stderr)")
            #expect(server.logCount("rolling reload aborted") == 0)
            #expect(try get(port: server.port).status == 200)
            server.stopAndCheckNoOrphans()
        }

        /// Orphaned by a killed master, a worker drains with the master's drain timeout, not a deadline of its own.
        @Test(arguments: ["native", "nio"])
        func anOrphanedWorkerDrainsWithTheMastersDrainTimeout(engine: String) throws {
            let server = try SwitchboardProcess.start(
                ["--workers", "1", "--worker", engine, "--test-hooks", "--drain-timeout", "1"])
            defer { server.cleanUp() }
            let master = server.pid
            let slow = try TestConnection(port: server.port, timeoutSeconds: 20)
            try slow.request(path: "/slow?ms=4000")
            #expect(slow.waitUntilHeldByWorker(of: server) != nil)
            server.signal(SIGKILL)
            // The drain ends at its 1 s deadline, before the 4 s response: the connection closes unanswered.
            #expect(slow.readToEnd().isEmpty)
            #expect(waitUntil { ProcFS.workers(ofMaster: master).isEmpty })
        }

        @Test func sighupToTheWholeProcessGroupReloadsExactlyOnce() throws {
            let server = try SwitchboardProcess.start(["--workers", "2"])
            defer { server.cleanUp() }
            let old = Set(server.workerPIDs)
            server.signalGroup(SIGHUP)
            #expect(waitUntil { server.logCount("rolling reload finished") == 1 }, "stderr:\n\(server.stderr)")
            #expect(waitUntil { Set(server.workerPIDs).isDisjoint(with: old) && server.workerPIDs.count == 2 })
            #expect(server.logCount("rolling reload started") == 1)
            #expect(server.logCount("worker forked") == 4, "stderr:\n\(server.stderr)")
            #expect(server.logCount("killed by signal") == 0, "stderr:\n\(server.stderr)")
            #expect(try get(port: server.port).status == 200)
            server.stopAndCheckNoOrphans()
        }
    }
}
