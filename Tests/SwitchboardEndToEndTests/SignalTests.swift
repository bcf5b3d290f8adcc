import Foundation
import SwitchboardTestSupport
import Testing

extension EndToEndTests {
    /// The master's signals reach it whichever thread the kernel picks, and its children are reaped whatever the
    /// disposition of SIGCHLD it inherited.
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

        /// `SIG_IGN` for SIGCHLD survives exec, and with it the kernel reaps children itself (`waitpid` fails with
        /// ECHILD). A master started that way resets it, so a worker killed with connections in its queue is
        /// reaped, replaced and its connections served elsewhere, and the master does not spin on the dead
        /// worker's pidfd.
        @Test func aMasterStartedWithChildSignalsIgnoredReapsAndReplacesAKilledWorkerWithoutSpinning() throws {
            // The premise: what the launcher execs starts with SIGCHLD ignored.
            let ignoring = LaunchSignals(ignored: [SIGCHLD])
            let probe = try SwitchboardProcess(arguments: ["30"], executable: "/bin/sleep", signals: ignoring)
            defer { probe.cleanUp() }
            #expect(waitUntil { ProcFS.read("/proc/\(probe.pid)/cmdline")?.hasPrefix("/bin/sleep") == true })
            #expect(ProcFS.ignoredSignals(probe.pid).contains(SIGCHLD), "the launcher did not ignore SIGCHLD")

            let server = try SwitchboardProcess.start(
                ["--workers", "3", "--steal-after", "0", "--max-queued", "64"], signals: ignoring)
            defer { server.cleanUp() }
            #expect(!ProcFS.ignoredSignals(server.pid).contains(SIGCHLD), "the master still ignores SIGCHLD")
            let workers = server.workerPIDs
            try #require(workers.count == 3)
            for worker in workers {
                #expect(!ProcFS.ignoredSignals(worker).contains(SIGCHLD), "worker \(worker) ignores SIGCHLD")
            }
            _ = try get(port: server.port)
            let victim = workers[0]
            kill(victim, SIGSTOP)
            let (connections, results, group) = try KernelQueue.requests(30, port: server.port)
            #expect(waitUntil { results.count == 20 }, "the two running workers answer their twenty")

            let clock = ContinuousClock()
            let killed = clock.now
            let cpuAtKill = try #require(ProcFS.cpuSeconds(server.pid))
            kill(victim, SIGKILL)
            #expect(group.wait(timeout: .now() + 20) == .success, "answered \(results.count) of 30")
            let responses = results.all.compactMap { try? $0.get() }
            #expect(responses.count == 30, "answered \(responses.count) of 30")
            #expect(responses.allSatisfy { $0.status == 200 && $0.workerPID != victim })
            #expect(
                waitUntil { server.workerPIDs.count == 3 && !server.workerPIDs.contains(victim) },
                "not replaced: \(server.workerPIDs); stderr:\n\(server.stderr)")
            // The CPU the master used over at least three seconds from the kill: the replacement and the ten
            // connections it re-dispatched, not a loop on a readable pidfd.
            let remaining = .seconds(3) - (clock.now - killed)
            if remaining > .zero { Thread.sleep(forTimeInterval: remaining / .seconds(1)) }
            let cpu = try #require(ProcFS.cpuSeconds(server.pid)) - cpuAtKill
            #expect(cpu < 0.3, "the master used \(cpu) s of CPU in the \(clock.now - killed) after the kill")
            for connection in connections { #expect(try connection.readUntilClosed(), "bytes after the response") }
            server.stopAndCheckNoOrphans()
        }
    }
}
