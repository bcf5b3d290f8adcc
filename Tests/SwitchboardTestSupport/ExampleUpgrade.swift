import Foundation
import Synchronization
import Testing

/// What load clients saw, from any thread.
package final class Outcomes: Sendable {
    private let state = Mutex<(count: Int, failures: [String], stopped: Bool)>((0, [], false))

    package init() {}

    package var stopped: Bool { state.withLock { $0.stopped } }
    package var count: Int { state.withLock { $0.count } }
    package var failures: [String] { state.withLock { $0.failures } }

    package func record(_ failure: String?) {
        state.withLock { state in
            state.count += 1
            if let failure { state.failures.append(failure) }
        }
    }

    package func stop() { state.withLock { $0.stopped = true } }
}

/// `clients` loops of plain GETs to `port`, each request on a new connection, each loop on a thread of its own (the
/// dispatch pool's few threads may all be blocked by other tests), until ``stop()``.
package final class GetLoops: Sendable {
    package let outcomes = Outcomes()
    private let group = DispatchGroup()

    package init(port: Int, clients: Int = 1) {
        for _ in 0..<clients {
            group.enter()
            Thread.detachNewThread { [outcomes, group] in
                defer { group.leave() }
                while !outcomes.stopped {
                    do {
                        let response = try get(port: port)
                        outcomes.record(response.status == 200 ? nil : "status \(response.status)")
                    } catch {
                        outcomes.record("\(error)")
                    }
                }
            }
        }
    }

    /// Stops every loop and waits for them; safe to call more than once.
    package func stop() {
        outcomes.stop()
        group.wait()
    }
}

/// The upgrade in place of a program that embeds the library (the Hummingbird and Vapor examples), as users deploy:
/// release 1 started from its own file under a client loop, release 2 renamed over it, SIGUSR2, then SIGTERM. The
/// facts are gathered here; each framework's test asserts on them.
package struct ExampleUpgrade {
    package let master: pid_t
    package let release1: UInt64
    package let release2: UInt64
    package let path: String
    /// The workers before the upgrade, and those running once the rolling reload moved them.
    package let before: Set<pid_t>
    package let after: [pid_t]
    /// The master's exit status if it exited during the upgrade (it must not).
    package let exitedDuringUpgrade: Int32?
    /// What the master ran after the upgrade.
    package let running: (path: String, inode: UInt64?)
    /// Requests of the client loop, and the failed ones.
    package let requests: Int
    package let failures: [String]
    /// Worker pids that answered 4 GETs after the reload.
    package let answeredBy: [pid_t?]
    /// The master's exit status after SIGTERM, and the workers left 10 s after it.
    package let exitStatus: Int32?
    package let workersLeft: [pid_t]
    package let stderr: String

    /// Runs the whole scenario with `example` (a binary beside the test bundle) and `--workers 2`.
    package static func run(example: String) throws -> ExampleUpgrade {
        let folder = try Deploys.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent((example as NSString).lastPathComponent).path
        try Deploys.writeBuild(of: example, marker: "release 1", at: path)
        let release1 = Deploys.inode(path) ?? 0
        let server = try SwitchboardProcess.start(["--workers", "2", "--drain-timeout", "5"], executable: path)
        defer { server.cleanUp() }
        let master = server.pid
        let before = Set(server.workerPIDs)
        let loops = GetLoops(port: server.port)
        defer { loops.stop() }  // on every path, a thrown error included
        waitUntil { loops.outcomes.count >= 20 }

        let release2 = try Deploys.deploy(over: path) { try Deploys.writeBuild(of: example, marker: "release 2", at: $0) }
        server.signal(SIGUSR2)
        waitUntil(timeout: .seconds(30)) {
            server.logCount("master upgraded in place") > 0 || !server.process.isRunning
        }
        let exited = server.process.isRunning ? nil : server.waitForExit(timeout: .zero)
        let running = Deploys.executable(master)
        let after = exited == nil ? Deploys.waitForWorkers(of: server, count: 2, notIn: before, runningInode: release2) : []
        let served = loops.outcomes.count
        waitUntil { loops.outcomes.count >= served + 20 }
        loops.stop()
        let answeredBy = exited == nil ? (0..<4).map { _ in (try? get(port: server.port))?.workerPID } : []

        server.signal(SIGTERM)
        let status = server.waitForExit()
        waitUntil(timeout: .seconds(10)) { ProcFS.workers(ofMaster: master).isEmpty }
        return ExampleUpgrade(
            master: master, release1: release1, release2: release2, path: path, before: before, after: after,
            exitedDuringUpgrade: exited, running: running, requests: loops.outcomes.count,
            failures: loops.outcomes.failures, answeredBy: answeredBy, exitStatus: status,
            workersLeft: ProcFS.workers(ofMaster: master), stderr: server.stderr)
    }

    /// How many lines of the master's log contain `text`.
    package func logCount(_ text: String) -> Int {
        stderr.split(separator: "\n").filter { $0.contains(text) }.count
    }
}

extension ExampleUpgrade {
    /// Everything an upgrade in place promises, from the facts of one run.
    package func expectUpgradedInPlace(sourceLocation: SourceLocation = #_sourceLocation) throws {
        try #require(
            exitedDuringUpgrade == nil && logCount("master upgraded in place") == 1,
            "no upgrade in place (the master exited with \(exitedDuringUpgrade.map(String.init) ?? "-")); stderr:\n\(stderr)",
            sourceLocation: sourceLocation)
        #expect(before.count == 2, sourceLocation: sourceLocation)
        #expect(stderr.contains(" ms, pid \(master); rolling reload of the workers next"), "\(stderr)", sourceLocation: sourceLocation)
        // The same process (still the workers' parent) runs the file on disk.
        #expect(running.inode == release2 && running.path == path, "the master ran \(running.path)", sourceLocation: sourceLocation)
        // The rolling reload that follows: two new workers from the new file.
        #expect(after.count == 2 && before.isDisjoint(with: after), "workers \(after) (before \(before))\n\(stderr)", sourceLocation: sourceLocation)
        #expect(requests > 40, "only \(requests) requests", sourceLocation: sourceLocation)
        #expect(failures.isEmpty, "\(failures.count) of \(requests) failed: \(failures.prefix(3))", sourceLocation: sourceLocation)
        #expect(answeredBy.count == 4 && answeredBy.allSatisfy { $0.map(after.contains) == true }, "answered by \(answeredBy), new workers \(after)", sourceLocation: sourceLocation)
        #expect(logCount("upgrade 1 failed") + logCount("upgrade 1 rolled back") == 0, "\(stderr)", sourceLocation: sourceLocation)
        // SIGTERM after the upgrade: the new image stops the master gracefully, and no worker is left behind.
        #expect(exitStatus == 0, "master exit status; stderr:\n\(stderr)", sourceLocation: sourceLocation)
        #expect(workersLeft.isEmpty, "workers left behind: \(workersLeft)", sourceLocation: sourceLocation)
    }
}
