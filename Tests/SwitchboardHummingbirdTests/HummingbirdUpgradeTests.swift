// Built only with the package trait `Hummingbird` (`swift build --traits Hummingbird`).
#if Hummingbird
import Foundation
import SwitchboardTestSupport
import Testing

/// The master's upgrade in place in a program that embeds the library: `switchboard-hummingbird-example` runs its
/// master through `SwitchboardCluster` (signals forwarded by Dispatch sources, not the supervisor's own handlers), and
/// SIGUSR2 upgrades it the way it upgrades `switchboard`. Serialized so the 2-core machine is not oversubscribed.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct HummingbirdUpgradeTests {
    /// The example app, built next to the test bundle.
    let example = SwitchboardProcess.sibling("switchboard-hummingbird-example")

    /// A new build renamed over the example's file, then SIGUSR2, under a client loop: the master keeps its PID and
    /// runs the new file, a rolling reload moves both workers onto it, not one request fails, and SIGTERM still stops
    /// the whole cluster gracefully afterwards.
    @Test func sigusr2UpgradesTheEmbeddedMasterInPlaceWithoutAFailedRequest() throws {
        let folder = try Deploys.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("switchboard-hummingbird-example").path
        try Deploys.writeBuild(of: example, marker: "release 1", at: path)
        let release1 = try #require(Deploys.inode(path))
        let server = try SwitchboardProcess.start(["--workers", "2", "--drain-timeout", "5"], executable: path)
        defer { server.cleanUp() }
        let master = server.pid
        let before = Set(server.workerPIDs)
        #expect(before.count == 2)
        #expect(before.allSatisfy { Deploys.executable($0).inode == release1 })

        // One client on a thread of its own (the dispatch pool's few threads may all be blocked by other tests):
        // plain GETs, each on a new connection, until stopped.
        let port = server.port
        let outcomes = Outcomes()
        let client = DispatchGroup()
        // Stopped on every path, a failed #require included (stop is idempotent).
        defer {
            outcomes.stop()
            client.wait()
        }
        client.enter()
        Thread.detachNewThread {
            defer { client.leave() }
            while !outcomes.stopped {
                do {
                    let response = try get(port: port)
                    outcomes.record(response.status == 200 ? nil : "status \(response.status)")
                } catch {
                    outcomes.record("\(error)")
                }
            }
        }
        #expect(waitUntil { outcomes.count >= 20 })

        let release2 = try Deploys.deploy(over: path) { try Deploys.writeBuild(of: example, marker: "release 2", at: $0) }
        server.signal(SIGUSR2)
        _ = waitUntil(timeout: .seconds(30)) {
            server.logCount("master upgraded in place") > 0 || !server.process.isRunning
        }
        // The same process (still running, still the workers' parent) now runs the file on disk.
        let exited = server.process.isRunning ? nil : server.waitForExit(timeout: .zero)
        try #require(
            exited == nil && server.logCount("master upgraded in place") == 1,
            "no upgrade in place (the master exited with \(exited.map(String.init) ?? "-")); stderr:\n\(server.stderr)")
        #expect(server.stderr.contains(" ms, pid \(master); rolling reload of the workers next"), "\(server.stderr)")
        let running = Deploys.executable(master)
        #expect(running.inode == release2, "the master runs \(running.path)")
        #expect(running.path == path, "the master runs \(running.path)")

        // The rolling reload that follows: two new workers, children of the same master, from the new file.
        let after = Deploys.waitForWorkers(of: server, count: 2, notIn: before, runningInode: release2)
        let moved = after.count == 2 && before.isDisjoint(with: after)
            && after.allSatisfy { Deploys.executable($0).inode == release2 }
        #expect(moved, "workers \(after) (before \(before)) run \(after.map { Deploys.executable($0) })\n\(server.stderr)")
        #expect(after.allSatisfy { ProcFS.parent(of: $0) == master && Deploys.executable($0).path == path })
        let served = outcomes.count
        #expect(waitUntil { outcomes.count >= served + 20 })
        outcomes.stop()
        client.wait()
        #expect(outcomes.count > 40, "only \(outcomes.count) requests")
        let failures = outcomes.failures
        #expect(failures.count == 0, "\(failures.count) of \(outcomes.count) failed: \(failures.prefix(3))")
        for _ in 0..<4 { #expect(after.contains(try #require(try get(port: server.port).workerPID))) }
        #expect(server.logCount("master upgraded in place") == 1, "\(server.stderr)")
        #expect(server.logCount("upgrade 1 failed") + server.logCount("upgrade 1 rolled back") == 0, "\(server.stderr)")

        // SIGTERM after the upgrade: the new image's signal sources stop the master gracefully (each new worker
        // drains and its application services report), exit 0, and no worker is left behind.
        server.signal(SIGTERM)
        #expect(server.waitForExit() == 0, "master exit status; stderr:\n\(server.stderr)")
        #expect(
            waitUntil(timeout: .seconds(10)) { ProcFS.workers(ofMaster: master).isEmpty },
            "workers left behind: \(ProcFS.workers(ofMaster: master))")
        for worker in after {
            #expect(server.stderr.contains("worker \(worker) shut down gracefully after "), "\(server.stderr)")
        }
    }
}
#endif
