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

        /// Issue 19, bug 4: a transient `sendmsg` failure is no verdict on the worker. A master that is not root may
        /// have at most its descriptor limit of descriptors in flight (ETOOMANYREFS): a stopped worker's queue fills
        /// to that, and on main the next send failed the channel and SIGKILLed the worker with everything it held.
        /// Now the master backs off from that worker, and the others serve.
        @Test func aTransientSendFailureBacksOffInsteadOfKillingTheWorker() throws {
            // A limit of 100 leaves each worker room for 36 connections; three stopped workers' queues can hold 108,
            // more than the 100 descriptors the master may have in flight.
            let server = try SwitchboardProcess.start(
                ["--workers", "4", "--steal-after", "0", "--max-queued", "1024", "--drain-timeout", "5"],
                descriptorLimit: 100, user: "65534")
            defer { server.cleanUp() }
            let workers = server.workerPIDs
            try #require(workers.count == 4)
            let running = try #require(try get(port: server.port).workerPID)
            let stopped = workers.filter { $0 != running }
            for worker in stopped { kill(worker, SIGSTOP) }
            let (connections, results, group) = try Self.requests(200, port: server.port)
            // The limit is per user, across every queue: until the stopped workers take theirs, the master holds the
            // rest (and the kernel backlog the newest); nothing is failed or lost.
            #expect(waitUntil { server.stderr.contains("backing off") && results.count >= 30 }, "\(results.count)")
            #expect(stopped.allSatisfy { ProcFS.isAlive($0) && server.workerPIDs.contains($0) }, "\(server.stderr)")
            #expect(!server.stderr.contains("channel failed"), "\(server.stderr)")
            for worker in stopped { kill(worker, SIGCONT) }
            #expect(group.wait(timeout: .now() + 20) == .success, "answered: \(results.count) of 200\n\(server.stderr)")
            #expect(results.all.compactMap { try? $0.get() }.count == 200)
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
