import Foundation
import SwitchboardTestSupport
import Testing

extension EndToEndTests {
    /// The master's signals reach it whichever thread the kernel picks.
    @Suite struct Signals {
        /// The reloads in the master's log: how many were asked for (each request starts one or, during one, queues
        /// one: a reload that starts while one is queued is that one), how many started, and whether every one that
        /// started has finished and none queued is still to come.
        static func reloads(_ server: SwitchboardProcess) -> (requested: Int, started: Int, settled: Bool) {
            var requested = 0
            var started = 0
            var finished = 0
            var owed = false
            for line in server.logLines {
                if line.message.hasPrefix("rolling reload started") {
                    if !owed { requested += 1 }
                    started += 1
                    owed = false
                } else if line.message.hasPrefix("rolling reload finished") {
                    finished += 1
                } else if line.message.hasPrefix("reload requested during a reload: queued") {
                    requested += 1
                    owed = true
                }
            }
            return (requested, started, started > 0 && started == finished && !owed)
        }

        /// The NIO example starts an event loop group of its own before its supervisor, as an application with an
        /// HTTP client or a metrics exporter does: those threads have the master's signals unblocked. Twenty HUPs,
        /// each sent once a thread took the one before (so the kernel merges none), each start a reload or queue
        /// one; TTIN adds a worker; and the master neither dies of a HUP nor stops on a TTIN that the kernel gave to
        /// one of those threads.
        @Test func signalsReachTheMasterOfAProgramThatStartedThreadsFirst() throws {
            // Started with nothing blocked, as from a shell or systemd.
            let server = try SwitchboardProcess.start(
                ["--workers", "2"], executable: SwitchboardProcess.sibling("switchboard-nio-example"),
                signals: LaunchSignals())
            defer { server.cleanUp() }
            // The main thread, the group's two and the master's own: the premise of the test.
            #expect(ProcFS.threadCount(server.pid) >= 3, "threads: \(ProcFS.threadCount(server.pid))")
            let original = Set(server.workerPIDs)
            try #require(original.count == 2)

            for _ in 0..<20 {
                server.signal(SIGHUP)
                #expect(waitUntil { !ProcFS.pendingSignals(server.pid).contains(SIGHUP) }, "no thread took the HUP")
            }
            let settled = waitUntil(timeout: .seconds(60)) {
                guard server.process.isRunning else { return true }
                let reloads = Self.reloads(server)
                return reloads.requested == 20 && reloads.settled
            }
            try #require(
                server.process.isRunning, "the master died: status \(String(describing: server.waitForExit()))")
            let reloads = Self.reloads(server)
            #expect(
                settled, "reloads requested \(reloads.requested), started \(reloads.started); stderr:\n\(server.stderr)")
            #expect(waitUntil { server.workerPIDs.count == 2 && original.isDisjoint(with: server.workerPIDs) })

            let beforeScaling = server.logCount("worker ready")
            server.signal(SIGTTIN)
            #expect(waitUntil { server.workerPIDs.count == 3 && server.logCount("worker ready") == beforeScaling + 1 })
            #expect(ProcFS.isAlive(server.pid), "the master stopped or died")
            var seen: Set<pid_t> = []
            for _ in 0..<30 {
                // "Hello from NIO worker <pid>"
                let last = try get(port: server.port).body.split(separator: " ").last ?? ""
                seen.insert(pid_t(last.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0)
            }
            #expect(seen == Set(server.workerPIDs), "served by \(seen), workers \(server.workerPIDs)")
            server.stopAndCheckNoOrphans()
        }
    }
}
