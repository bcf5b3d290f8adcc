import Foundation
import SwitchboardTestSupport
import Testing

extension EndToEndTests {
    @Suite struct Lifecycle {
        @Test func sigtermStopsMasterAndWorkersWithExitZero() throws {
            let server = try SwitchboardProcess.start(["--workers", "3"])
            defer { server.cleanUp() }
            let workers = server.workerPIDs
            #expect(workers.count == 3)
            server.stopAndCheckNoOrphans()
            #expect(workers.allSatisfy { !ProcFS.isAlive($0) })
        }

        @Test func workersExitWhenTheMasterIsKilled() throws {
            let server = try SwitchboardProcess.start(["--workers", "2"])
            defer { server.cleanUp() }
            let master = server.pid
            let workers = ProcFS.workers(ofMaster: master)
            #expect(workers.count == 2)
            server.signal(SIGKILL)
            _ = server.waitForExit()
            #expect(waitUntil(timeout: .seconds(15)) { ProcFS.workers(ofMaster: master).isEmpty })
        }

        @Test func workersInheritOnlyTheirChannel() throws {
            let server = try SwitchboardProcess.start(["--workers", "2"])
            defer { server.cleanUp() }
            for worker in server.workerPIDs {
                let descriptors = ProcFS.descriptors(worker)
                #expect(descriptors[3]?.hasPrefix("socket:") == true, "fd 3 of worker: \(descriptors)")
                // Everything else above 2 is the worker's own event loop machinery, never a socket, pipe or file.
                let inherited = descriptors.filter { $0.key > 3 && !$0.value.hasPrefix("anon_inode:") }
                #expect(inherited.isEmpty, "worker \(worker) has unexpected descriptors: \(inherited)")
            }
            server.stopAndCheckNoOrphans()
        }

        @Test func aWorkerThatExitsIsReplacedAndServiceContinues() throws {
            let server = try SwitchboardProcess.start(["--workers", "2"])
            defer { server.cleanUp() }
            let victim = try #require(server.workerPIDs.first)
            kill(victim, SIGKILL)
            #expect(waitUntil { server.workerPIDs.count == 2 && !server.workerPIDs.contains(victim) })
            var pids: Set<pid_t> = []
            for _ in 0..<10 { pids.insert(try #require(try get(port: server.port).workerPID)) }
            #expect(!pids.contains(victim))
            server.stopAndCheckNoOrphans()
        }

        @Test func aMalformedFrameFromAWorkerReplacesItAndTheMasterKeepsServing() throws {
            let server = try SwitchboardProcess.start(["--workers", "2", "--test-hooks"])
            defer { server.cleanUp() }
            let before = Set(server.workerPIDs)
            let connection = try TestConnection(port: server.port)
            try connection.request(path: "/test/malformed-frame")
            _ = try? connection.readResponse()
            #expect(waitUntil { server.stderr.contains("sent a malformed frame") }, "\(server.stderr)")
            #expect(waitUntil { Set(server.workerPIDs).subtracting(before).count == 1 && server.workerPIDs.count == 2 })
            for _ in 0..<10 {
                #expect(try get(port: server.port).status == 200)
            }
            server.stopAndCheckNoOrphans()
        }

        /// Issue 19, bug 3: a worker that sends messages flat out. The master reads a bounded number of frames per
        /// wake-up, so it goes on accepting, checking timers and taking the talker's queue back: requests are served
        /// while the talk goes on (on main each waited until the talker stopped).
        @Test func aChattyWorkerDoesNotStarveTheMaster() throws {
            let server = try SwitchboardProcess.start(["--workers", "2", "--test-hooks", "--steal-after", "0.1"])
            defer { server.cleanUp() }
            let chatty = try TestConnection(port: server.port, timeoutSeconds: 30)
            try chatty.request(path: "/test/chatty?ms=6000")
            let talker = try #require(chatty.waitUntilHeldByWorker(of: server))
            let clock = ContinuousClock()
            let start = clock.now
            var pids: [pid_t] = []
            for _ in 0..<10 { pids.append((try? get(port: server.port))?.workerPID ?? -1) }
            let elapsed = clock.now - start
            #expect(pids.allSatisfy { $0 > 0 && $0 != talker }, "served by the other worker: \(pids)")
            #expect(elapsed < .seconds(4), "ten requests took \(elapsed) while a worker talked for 6 s")
            #expect(try chatty.readResponse().status == 200, "the talker answers once it is done")
            server.stopAndCheckNoOrphans()
        }
    }
}
