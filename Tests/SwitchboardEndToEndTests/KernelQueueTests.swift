import Foundation
import SwitchboardTestSupport
import Testing

extension EndToEndTests {
    /// The kernel holds every connection in flight: the master closes its copy when it sends, and takes back from a
    /// worker's queue what the worker does not receive.
    @Suite struct KernelQueue {
        /// Sends `count` requests on separate connections, each read on a thread of its own.
        static func requests(_ count: Int, port: Int) throws -> (connections: [TestConnection], results: ResultBox, group: DispatchGroup) {
            let results = ResultBox()
            let group = DispatchGroup()
            var connections: [TestConnection] = []
            for _ in 0..<count {
                let connection = try TestConnection(port: port, timeoutSeconds: 30)
                connections.append(connection)
                try connection.request()
                group.enter()
                Thread.detachNewThread {
                    defer { group.leave() }
                    results.append(Result { try connection.readResponse() })
                }
            }
            return (connections, results, group)
        }

        /// Node sends to a busy worker and waits. Here a stopped worker's queue is taken back after `--steal-after`
        /// and served by the other worker, long before the heartbeat timeout (10 s) would replace it.
        @Test func aStoppedWorkersQueueIsServedElsewhereAfterStealAfter() throws {
            let server = try SwitchboardProcess.start(["--workers", "2", "--steal-after", "0.2"])
            defer { server.cleanUp() }
            let workers = server.workerPIDs
            try #require(workers.count == 2)
            let first = try #require(try get(port: server.port).workerPID)
            let stopped = try #require(workers.first { $0 != first })
            let baseline = ProcFS.descriptorCount(server.pid)
            kill(stopped, SIGSTOP)

            let clock = ContinuousClock()
            let start = clock.now
            let (connections, results, group) = try Self.requests(8, port: server.port)
            #expect(group.wait(timeout: .now() + 5) == .success, "answered: \(results.count) of 8")
            let elapsed = clock.now - start
            let responses = results.all.compactMap { try? $0.get() }
            #expect(responses.count == 8, "every connection answered: \(results.all)")
            #expect(responses.allSatisfy { $0.status == 200 && $0.workerPID == first })
            #expect(elapsed < .seconds(5), "served after \(elapsed), not at the heartbeat timeout")
            #expect(server.logCount("queued connections go to other workers") >= 1, "\(server.stderr)")
            for connection in connections { #expect(try connection.readUntilClosed(), "bytes after the response") }

            // Back from the stop it serves again (after its next heartbeat), and was never replaced.
            kill(stopped, SIGCONT)
            #expect(waitUntil(timeout: .seconds(10)) {
                (try? get(port: server.port).workerPID) == stopped
            }, "the worker that was stopped never served again")
            #expect(Set(server.workerPIDs) == Set(workers))
            #expect(
                waitUntil { ProcFS.descriptorCount(server.pid) <= baseline },
                "master fds: baseline \(baseline), now \(ProcFS.descriptorCount(server.pid))")
            server.stopAndCheckNoOrphans()
        }

        /// A worker killed with connections in its queue (stealing off, so they stay there): the master takes them
        /// from its copy of the worker's end after the reap, and its descriptors return to the baseline.
        @Test func aKilledWorkersQueueGoesToTheOthersAndNoDescriptorIsLeft() throws {
            let server = try SwitchboardProcess.start(["--workers", "3", "--steal-after", "0", "--max-queued", "64"])
            defer { server.cleanUp() }
            let workers = server.workerPIDs
            try #require(workers.count == 3)
            _ = try get(port: server.port)
            let baseline = ProcFS.descriptorCount(server.pid)
            let victim = workers[0]
            kill(victim, SIGSTOP)
            let (connections, results, group) = try Self.requests(30, port: server.port)
            #expect(waitUntil { results.count == 20 }, "the two running workers answer their twenty")
            Thread.sleep(forTimeInterval: 0.3)
            #expect(results.count == 20, "the stopped worker's ten wait in its queue")
            kill(victim, SIGKILL)
            #expect(group.wait(timeout: .now() + 20) == .success)
            let responses = results.all.compactMap { try? $0.get() }
            #expect(responses.count == 30, "\(results.all)")
            #expect(responses.allSatisfy { $0.status == 200 && $0.workerPID != victim })
            for connection in connections { #expect(try connection.readUntilClosed(), "bytes after the response") }
            #expect(waitUntil { server.workerPIDs.count == 3 && !server.workerPIDs.contains(victim) })
            #expect(
                waitUntil { ProcFS.descriptorCount(server.pid) <= baseline },
                "master fds: baseline \(baseline), now \(ProcFS.descriptorCount(server.pid))")
            server.stopAndCheckNoOrphans()
        }

        /// Issue 19, bug 2, as reported: a stop while one worker is stopped with connections in its queue. No ready
        /// worker could take them, so stealing them would only strand them in the master until the stop closed them
        /// (3 of 6 answered on main); left in the queue, the draining worker serves them once it runs again.
        @Test func aStopNeverStealsWhatNoOtherWorkerCouldServe() throws {
            let server = try SwitchboardProcess.start(["--workers", "2", "--steal-after", "0.1", "--drain-timeout", "10"])
            defer { server.cleanUp() }
            let workers = server.workerPIDs
            try #require(workers.count == 2)
            let first = try #require(try get(port: server.port).workerPID)
            let stopped = try #require(workers.first { $0 != first })
            kill(stopped, SIGSTOP)
            let (connections, results, group) = try Self.requests(6, port: server.port)
            Thread.sleep(forTimeInterval: 0.03)
            server.signal(SIGTERM)
            Thread.sleep(forTimeInterval: 1)
            kill(stopped, SIGCONT)
            #expect(group.wait(timeout: .now() + 10) == .success, "answered: \(results.count) of 6")
            let responses = results.all.compactMap { try? $0.get() }
            #expect(responses.count == 6, "every connection answered: \(results.all)\n\(server.stderr)")
            #expect(responses.filter { $0.workerPID == stopped }.count >= 1, "the stopped worker served its own")
            #expect(server.waitForExit() == 0)
            #expect(!server.stderr.contains("closed"), "nothing closed unanswered: \(server.stderr)")
            withExtendedLifetime(connections) {}
        }

        /// A master that is not root with a descriptor limit of 100 and `workers` workers, each queue holding at most
        /// `share` (limit ÷ workers), with every worker but one stopped (SIGSTOP).
        static func startWithAllButOneStopped(
            workers count: Int, share: Int, _ arguments: [String]
        ) throws -> (server: SwitchboardProcess, running: pid_t, stopped: [pid_t]) {
            let server = try SwitchboardProcess.start(
                ["--workers", "\(count)", "--max-queued", "1024", "--drain-timeout", "5"] + arguments,
                descriptorLimit: 100, user: "65534")
            do {
                let workers = server.workerPIDs
                try #require(workers.count == count)
                #expect(
                    server.stderr.contains("each worker's queue holds at most \(share) connections"), "\(server.stderr)")
                let running = try #require(try get(port: server.port).workerPID)
                let stopped = workers.filter { $0 != running }
                for worker in stopped { kill(worker, SIGSTOP) }
                return (server, running, stopped)
            } catch {
                server.cleanUp()
                throw error
            }
        }

        /// A master that is not root may have at most its descriptor limit of descriptors in flight, counted over
        /// every queue (a send beyond it fails with ETOOMANYREFS). Three stopped workers' queues used to take that
        /// whole budget: every send failed, the running worker's too, and nothing moved until the heartbeat timeout
        /// killed the stopped ones, when taking their queues back ran out of descriptors and lost connections. Now
        /// each queue holds at most its share of the budget, and the running worker serves the rest at once.
        @Test func stoppedWorkersCannotTakeEveryDescriptorInFlight() throws {
            // A limit of 100 over 4 workers: 25 per queue, though --max-queued would allow 1024.
            let (server, running, stopped) = try Self.startWithAllButOneStopped(
                workers: 4, share: 25, ["--steal-after", "0"])
            defer { server.cleanUp() }
            let (connections, results, group) = try Self.requests(200, port: server.port)
            // Well before the heartbeat timeout (10 s) would replace the stopped workers.
            #expect(
                waitUntil(timeout: .seconds(8)) { results.count >= 200 - 3 * 25 },
                "served while three workers were stopped: \(results.count) of 200\n\(server.stderr)")
            #expect(results.all.compactMap { try? $0.get() }.allSatisfy { $0.workerPID == running })
            #expect(!server.stderr.contains("backing off"), "no send failed: \(server.stderr)")
            #expect(stopped.allSatisfy { ProcFS.isAlive($0) && server.workerPIDs.contains($0) }, "\(server.stderr)")
            for worker in stopped { kill(worker, SIGCONT) }
            #expect(group.wait(timeout: .now() + 20) == .success, "answered: \(results.count) of 200\n\(server.stderr)")
            #expect(results.all.compactMap { try? $0.get() }.count == 200)
            #expect(Set(results.all.compactMap { try? $0.get().workerPID }).count == 4, "the stopped ones served theirs")
            withExtendedLifetime(connections) {}
            server.stopAndCheckNoOrphans()
        }

        /// Stalled workers' queues come back to a master that has no room for all of them at once. With a limit of
        /// 100 over 8 workers each queue holds 12; seven stopped workers hold 84, which with the master's own
        /// descriptors is more than it may open. After `--steal-after` their queues are taken back only as far as the
        /// master has room, and the rest wait in the kernel until the connections taken so far are sent on. Before,
        /// the master received every queue at once, and the kernel closed what did not fit: those clients saw their
        /// connections reset.
        @Test func stolenQueuesComeBackOnlyAsFarAsTheMasterHasRoom() throws {
            let (server, running, stopped) = try Self.startWithAllButOneStopped(
                workers: 8, share: 12, ["--steal-after", "0.5"])
            defer { server.cleanUp() }
            defer { for worker in stopped { kill(worker, SIGCONT) } }
            let base = ProcFS.descriptorCount(server.pid)
            #expect(base + 7 * 12 > 100, "the master holds \(base) descriptors: the queues would fit at once")
            let (connections, results, group) = try Self.requests(120, port: server.port)
            // Well before the heartbeat timeout (10 s) would replace the stopped workers.
            #expect(group.wait(timeout: .now() + 8) == .success, "answered: \(results.count) of 120\n\(server.stderr)")
            let answered = results.all.compactMap { try? $0.get() }
            #expect(answered.count == 120, "lost: \(results.all.filter { (try? $0.get()) == nil })\n\(server.stderr)")
            #expect(answered.allSatisfy { $0.workerPID == running })
            #expect(!server.stderr.contains("the kernel closed"), "\(server.stderr)")
            #expect(server.logCount("queued connections go to other workers") >= 7, "\(server.stderr)")
            withExtendedLifetime(connections) {}
            for worker in stopped { kill(worker, SIGCONT) }
            server.stopAndCheckNoOrphans()
        }

        /// Issue 19, bug 4: a transient `sendmsg` failure is no verdict on the worker. Another process of the same
        /// user holds more descriptors in flight than the limit, so every send fails with ETOOMANYREFS: the master
        /// backs off and holds the connections, kills nobody, and sends them once the other process lets go.
        @Test func aTransientSendFailureBacksOffInsteadOfKillingTheWorker() throws {
            let server = try SwitchboardProcess.start(
                ["--workers", "2", "--drain-timeout", "5"], descriptorLimit: 100, user: "65534")
            defer { server.cleanUp() }
            let workers = server.workerPIDs
            try #require(workers.count == 2)
            let hog = try InFlightHog(user: "65534", descriptorLimit: 100)
            defer { hog.release() }
            #expect(hog.held > 100, "the hog put \(hog.held) descriptors in flight")
            let (connections, results, group) = try Self.requests(20, port: server.port)
            #expect(waitUntil { server.stderr.contains("backing off") }, "\(server.stderr)")
            Thread.sleep(forTimeInterval: 0.5)
            #expect(results.count == 0, "nothing could be sent while the budget was taken: \(results.count)")
            hog.release()
            #expect(group.wait(timeout: .now() + 10) == .success, "answered: \(results.count) of 20\n\(server.stderr)")
            #expect(results.all.compactMap { try? $0.get() }.count == 20)
            #expect(server.workerPIDs == workers, "no worker was replaced: \(server.stderr)")
            #expect(!server.stderr.contains("channel failed"), "\(server.stderr)")
            withExtendedLifetime(connections) {}
            server.stopAndCheckNoOrphans()
        }

        /// With `--max-queued 1` (Node's gate) a stopped worker holds one connection; the rest go to the others at
        /// once, and the one is served elsewhere after `--steal-after`.
        @Test func withTheNodeGateAStoppedWorkerHoldsOneConnectionAtMost() throws {
            let server = try SwitchboardProcess.start(["--workers", "2", "--max-queued", "1", "--steal-after", "1"])
            defer { server.cleanUp() }
            let workers = server.workerPIDs
            try #require(workers.count == 2)
            let first = try #require(try get(port: server.port).workerPID)
            let stopped = try #require(workers.first { $0 != first })
            kill(stopped, SIGSTOP)
            let (connections, results, group) = try Self.requests(6, port: server.port)
            #expect(waitUntil(timeout: .seconds(0.9)) { results.count == 5 }, "five served at once: \(results.count)")
            #expect(group.wait(timeout: .now() + 5) == .success, "the sixth is taken back after a second")
            #expect(results.all.compactMap { try? $0.get() }.allSatisfy { $0.workerPID == first })
            kill(stopped, SIGCONT)
            withExtendedLifetime(connections) {}
            server.stopAndCheckNoOrphans()
        }
    }
}

/// A process of `user` that puts descriptors in flight (one `/dev/null` sent again and again into a socketpair it never
/// reads) until the kernel refuses, and holds them until released: the user's in-flight budget is then spent.
final class InFlightHog {
    private let process = Process()
    private let input = Pipe()
    /// How many it put in flight.
    let held: Int

    init(user: String, descriptorLimit: Int) throws {
        let script = """
            import os, socket, sys
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            a.setblocking(False)
            fd = os.open("/dev/null", os.O_RDONLY)
            held = 0
            while True:
                try:
                    socket.send_fds(a, [b"x"], [fd])
                except OSError as error:
                    print(held, error.errno, flush=True)
                    break
                held += 1
            sys.stdin.read()
            """
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = [
            "-c",
            "ulimit -n \(descriptorLimit) && exec /usr/bin/setpriv --reuid=\(user) --regid=\(user) --clear-groups /usr/bin/python3 -c \"$0\"",
            script,
        ]
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        var line = Data()
        while let byte = try output.fileHandleForReading.read(upToCount: 1), let first = byte.first, first != 10 {
            line.append(first)
        }
        let fields = String(decoding: line, as: UTF8.self).split(separator: " ")
        held = fields.first.flatMap { Int($0) } ?? 0
        if fields.count == 2, fields[1] != "\(ETOOMANYREFS)" {
            release()
            throw ProbeError.io("the hog stopped with errno \(fields[1]), not ETOOMANYREFS")
        }
    }

    /// Lets go of every descriptor (the process exits, its sockets close) and waits for it.
    func release() {
        guard process.isRunning else { return }
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
    }
}
