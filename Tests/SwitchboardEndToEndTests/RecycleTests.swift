import Foundation
import SwitchboardTestSupport
import Testing

extension EndToEndTests {
    /// Recycling against leaks and bloat (`--max-requests`, `--max-worker-memory`, `--max-lifetime`): a recycle is a
    /// one-worker rolling reload, so no request fails, ready workers never drop below the target, and never two run
    /// at once.
    @Suite struct Recycling {
        /// The readiness and the recycles seen while `body` runs: `status --json` sampled every 20 ms.
        final class Sampler: @unchecked Sendable {  // @unchecked: `lowest` is written by one thread, read after join
            var lowest = Int.max
            var samples = 0
            private var running = true
            private let lock = NSLock()
            private var thread: Thread?

            init(socket: String) {
                let thread = Thread { [unowned self] in
                    while self.lock.withLock({ self.running }) {
                        let answer = Control.raw(Array("status --json\n".utf8), socket: socket)
                        if let start = answer.firstIndex(of: "{"),
                            let object = try? JSONSerialization.jsonObject(with: Data(answer[start...].utf8))
                                as? [String: Any],
                            let ready = object["readyWorkers"] as? Int
                        {
                            self.lock.withLock {
                                self.lowest = min(self.lowest, ready)
                                self.samples += 1
                            }
                        }
                        Thread.sleep(forTimeInterval: 0.02)
                    }
                }
                self.thread = thread
                thread.start()
            }

            func stop() -> (lowest: Int, samples: Int) {
                lock.withLock { running = false }
                Thread.sleep(forTimeInterval: 0.1)
                return lock.withLock { (lowest, samples) }
            }
        }

        /// Begun and finished recycles in the log never overlap.
        static func neverOverlapping(_ log: String) -> (recycles: Int, overlapping: Bool) {
            var open = 0
            var recycles = 0
            var overlapping = false
            for line in log.split(separator: "\n") {
                if line.contains("recycling worker (") {
                    recycles += 1
                    open += 1
                    if open > 1 { overlapping = true }
                } else if line.contains("worker recycled (") || line.contains("recycle (") && line.contains("aborted") {
                    open -= 1
                }
            }
            return (recycles, overlapping)
        }

        @Test func maxRequestsRecyclesWorkersOneAtATimeAndLosesNothing() throws {
            let socket = Control.socketPath()
            let server = try SwitchboardProcess.start(
                ["--workers", "4", "--max-requests", "100", "--control-socket", socket, "--heartbeat-interval", "0.2"])
            defer { server.cleanUp() }
            let first = Set(server.workerPIDs)
            let sampler = Sampler(socket: socket)
            var failed = 0
            // A client loop, paced (about 2 ms a request) so the load lasts as long as recycling one worker at a
            // time takes: 3,000 requests reach about 26 staggered limits.
            for _ in 0..<3_000 {
                if (try? get(port: server.port))?.status != 200 { failed += 1 }
                usleep(2_000)
            }
            // The last recycles finish after the load.
            _ = waitUntil(timeout: .seconds(5)) { Self.neverOverlapping(server.stderr).recycles > 0 && server.logCount("recycling worker (") == server.logCount("worker recycled (") }
            let sampled = sampler.stop()
            let log = Self.neverOverlapping(server.stderr)
            #expect(failed == 0, "failed requests")
            #expect(log.recycles >= 20, "recycles: \(log.recycles)")
            #expect(!log.overlapping, "two recycles ran at once")
            #expect(sampled.samples > 10 && sampled.lowest >= 4, "ready workers fell to \(sampled.lowest) (\(sampled.samples) samples)")
            #expect(server.workerPIDs.count == 4 && Set(server.workerPIDs) != first)
            let metrics = Control.raw(Array("status\n".utf8), socket: socket)
            #expect(metrics.contains("last recycle: requests (worker"), "\(metrics)")
            server.stopAndCheckNoOrphans()
        }

        @Test func aWorkerLeakingMemoryIsReplacedAndTheOthersAreUntouched() throws {
            let socket = Control.socketPath()
            let server = try SwitchboardProcess.start(
                ["--workers", "2", "--test-hooks", "--max-worker-memory", "64M", "--min-uptime", "1",
                 "--control-socket", socket])
            defer { server.cleanUp() }
            Thread.sleep(forTimeInterval: 1.2)  // past --min-uptime: a grown worker is over the limit, not below it
            let grown = try #require(try get(port: server.port, path: "/grow?mb=100").workerPID)
            let other = try #require(server.workerPIDs.first { $0 != grown })
            var failed = 0
            let recycled = waitUntil(timeout: .seconds(5)) {
                if (try? get(port: server.port))?.status != 200 { failed += 1 }
                return !server.workerPIDs.contains(grown) && server.workerPIDs.count == 2
            }
            #expect(recycled, "the grown worker \(grown) was not replaced: \(server.stderr)")
            #expect(failed == 0)
            #expect(server.workerPIDs.contains(other), "the other worker was untouched")
            #expect(server.logCount("recycling worker (memory:") == 1, "\(server.stderr)")
            let status = Control.raw(Array("status\n".utf8), socket: socket)
            #expect(status.contains("last recycle: memory (worker"), "\(status)")
            server.stopAndCheckNoOrphans()
        }

        @Test func maxLifetimeRecyclesAndALimitBelowTheBaselineIsSaidOnce() throws {
            let server = try SwitchboardProcess.start(
                ["--workers", "2", "--max-lifetime", "1", "--max-worker-memory", "1K", "--min-uptime", "30"])
            defer { server.cleanUp() }
            let first = Set(server.workerPIDs)
            var failed = 0
            let replaced = waitUntil(timeout: .seconds(10)) {
                if (try? get(port: server.port))?.status != 200 { failed += 1 }
                return Set(server.workerPIDs).isDisjoint(with: first) && server.workerPIDs.count == 2
            }
            #expect(replaced, "\(server.stderr)")
            #expect(failed == 0)
            #expect(server.logCount("recycling worker (lifetime") >= 2)
            #expect(server.logCount("recycling worker (memory") == 0, "1K is below any worker's baseline")
            #expect(server.logCount("the limit is below what a fresh worker needs") >= 2, "\(server.stderr)")
            server.stopAndCheckNoOrphans()
        }
    }
}
