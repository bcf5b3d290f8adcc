import Foundation
import SwitchboardTestSupport
import Testing

/// systemd's watchdog under a real systemd: it catches what the master cannot fix (its own loop stuck, or no worker
/// able to serve for longer than the master's recovery bound) and leaves the master to replace a hung worker.
extension EndToEndTests.RealSystemd {
    /// The master's workers, as pids of the sandbox's PID namespace (the ones `MainPID` and responses show).
    func workers(_ sandbox: SystemdSandbox, of master: String) -> Set<pid_t> {
        let children = try? sandbox.exec(["/bin/sh", "-c", "cat /proc/\(master)/task/*/children"])
        return Set((children?.stdout ?? "").split(whereSeparator: \.isWhitespace).compactMap { pid_t($0) })
    }

    /// One hung worker under a watchdog shorter than the heartbeat timeout: the master replaces it and a slow request
    /// on the other worker is answered; systemd restarts nothing.
    @Test func aHungWorkerIsReplacedByTheMasterWithoutAWatchdogRestart() throws {
        let port = try freePort()
        let units = try makeUnits(
            port: port, socket: true,
            serviceDropIn: """
                ExecStart=
                ExecStart=/usr/local/bin/switchboard --workers 2 --test-hooks --drain-timeout 2 \
                --heartbeat-interval 0.2 --heartbeat-timeout 3
                WatchdogSec=2s
                """)
        defer { try? FileManager.default.removeItem(at: units) }
        let sandbox = try SystemdSandbox(units: units)
        defer { sandbox.stop() }
        let active = waitForUnit(sandbox) {
            $0["ActiveState"] == "active" && $0["StatusText"]?.hasPrefix("2/2") == true
        }
        let master = try #require(active["MainPID"])
        let before = workers(sandbox, of: master)
        #expect(before.count == 2, "\(active)\n\(sandbox.journal("switchboard.service"))")

        // A keep-alive connection stays with the worker that took it: learn which, then ask it for a slow answer.
        let connection = try TestConnection(port: port, timeoutSeconds: 30)
        try connection.request(path: "/", keepAlive: true)
        let healthy = try #require(try connection.readResponse().workerPID)
        let victim = try #require(before.first { $0 != healthy })
        try connection.request(path: "/slow?ms=6000", keepAlive: true)
        let stopped = try sandbox.exec(["kill", "-STOP", "\(victim)"])
        #expect(stopped.status == 0, "\(stopped.stderr)")

        // Three watchdog intervals pass while the slow request runs; the master kills the victim at 3 s.
        let slow = Result { try connection.readResponse() }
        let journal = { sandbox.journal("switchboard.service") }
        #expect((try? slow.get().status) == 200, "the slow request on the healthy worker: \(slow)\n\(journal())")
        #expect((try? slow.get().workerPID) == healthy)
        var now: Set<pid_t> = []
        let replaced = waitUntil {
            now = workers(sandbox, of: master)
            return now.count == 2 && !now.contains(victim)
        }
        #expect(replaced, "the stopped worker is replaced: \(before) → \(now)")
        #expect(now.contains(healthy), "the healthy worker keeps serving")
        let after = try sandbox.show("switchboard.service", ["ActiveState", "NRestarts", "MainPID"])
        #expect(after["NRestarts"] == "0", "\(after)\n\(journal())")
        #expect(after["MainPID"] == master, "\(after)")
        #expect(after["ActiveState"] == "active")
        #expect(journal().contains("worker sent no heartbeat"), "the master killed the hung worker itself")
        #expect(!journal().contains("Watchdog timeout"))
        #expect(workerPIDs(port).count == 2)
    }

    /// The master's own loop stuck (SIGSTOP): no WATCHDOG=1 comes, and systemd restarts the service.
    @Test func aStuckMasterIsRestartedBySystemdsWatchdog() throws {
        let port = try freePort()
        let units = try makeUnits(
            port: port, socket: true,
            serviceDropIn: """
                ExecStart=
                ExecStart=/usr/local/bin/switchboard --workers 2 --drain-timeout 2 --heartbeat-interval 0.2
                WatchdogSec=2s
                """)
        defer { try? FileManager.default.removeItem(at: units) }
        let sandbox = try SystemdSandbox(units: units)
        defer { sandbox.stop() }
        let active = waitForUnit(sandbox) {
            $0["ActiveState"] == "active" && $0["StatusText"]?.hasPrefix("2/2") == true
        }
        let master = try #require(active["MainPID"])
        #expect(active["NRestarts"] == "0")
        #expect(workerPIDs(port).count == 2)

        let stopped = try sandbox.exec(["kill", "-STOP", master])
        #expect(stopped.status == 0, "\(stopped.stderr)")
        let restarted = waitForUnit(sandbox, timeout: .seconds(60)) {
            $0["NRestarts"] == "1" && $0["ActiveState"] == "active" && $0["MainPID"] != master
                && $0["StatusText"]?.hasPrefix("2/2") == true
        }
        let journal = sandbox.journal("switchboard.service")
        #expect(restarted["NRestarts"] == "1", "\(restarted)\n\(journal)")
        #expect(restarted["MainPID"] != master)
        #expect(journal.contains("Watchdog timeout (limit 2s)!"), "\(journal)")
        #expect(journal.contains("Failed with result 'watchdog'"), "\(journal)")
        #expect(workerPIDs(port).count == 2, "serving again after the restart")
    }

    /// Every worker stopped and no replacement able to start (the hook makes new workers never report ready): once
    /// no worker has served for the recovery bound (1 + 0.2 + 0.5 + 1 + 1 = 3.7 s here), the master withholds
    /// WATCHDOG=1 and says why, and systemd restarts the service.
    @Test func watchdogRestartsTheServiceOnceNoWorkerHasServedForTheRecoveryBound() throws {
        let port = try freePort()
        let hook = "/run/switchboard-test-hook"
        let units = try makeUnits(
            port: port, socket: true,
            serviceDropIn: """
                ExecStart=
                ExecStart=/usr/local/bin/switchboard --workers 2 --test-hooks --drain-timeout 2 \
                --heartbeat-interval 0.2 --heartbeat-timeout 1 --ready-timeout 1 --restart-delay-max 0.5 \
                --crash-loop-limit 0
                Environment=SWITCHBOARD_TEST_HOOK_FILE=\(hook)
                WatchdogSec=2s
                """)
        defer { try? FileManager.default.removeItem(at: units) }
        let sandbox = try SystemdSandbox(units: units)
        defer { sandbox.stop() }
        let active = waitForUnit(sandbox) {
            $0["ActiveState"] == "active" && $0["StatusText"]?.hasPrefix("2/2") == true
        }
        let master = try #require(active["MainPID"])
        #expect(workerPIDs(port).count == 2)

        let broken = try sandbox.exec(["/bin/sh", "-c", "echo never-ready > \(hook) && chmod 644 \(hook)"])
        #expect(broken.status == 0, "\(broken.stderr)")
        let stopped = try sandbox.exec(["/bin/sh", "-c", "kill -STOP $(cat /proc/\(master)/task/*/children)"])
        #expect(stopped.status == 0, "\(stopped.stderr)")
        let fired = waitForUnit(sandbox, timeout: .seconds(60)) { $0["NRestarts"] == "1" }
        #expect(fired["NRestarts"] == "1", "\(fired)\n\(sandbox.journal("switchboard.service"))")
        // The next master's workers may start at once.
        _ = try sandbox.exec(["rm", "-f", hook])
        let restarted = waitForUnit(sandbox, timeout: .seconds(60)) {
            $0["ActiveState"] == "active" && $0["StatusText"]?.hasPrefix("2/2") == true
        }
        let journal = sandbox.journal("switchboard.service")
        #expect(restarted["MainPID"] != master, "\(restarted)\n\(journal)")
        #expect(restarted["NRestarts"] == "1", "\(restarted)")
        #expect(journal.contains("worker sent no heartbeat"), "the master tried first: \(journal)")
        #expect(
            journal.contains("watchdog withheld: no worker has served for ")
                && journal.contains(" ms (recovery bound 3700 ms)"),
            "STATUS/log said why: \(journal)")
        #expect(journal.contains("Failed with result 'watchdog'"), "\(journal)")
        #expect(workerPIDs(port).count == 2, "serving again after the restart")
    }
}
