import Foundation
import SwitchboardTestSupport
import Testing

/// The master's upgrade in place under a real systemd: the shipped unit (Type=notify, NotifyAccess=main, the
/// watchdog, the sandboxing) runs a build from a folder of its own, a new build is renamed over it and
/// `switchboard upgrade` runs. systemd sees a reload of the same main process, not a restart.
extension EndToEndTests.RealSystemd {
    /// Where the service's build lives inside the sandbox, and the control socket in its RuntimeDirectory.
    static let releases = "/usr/local/lib/switchboard-upgrade"
    static let controlSocket = "/run/switchboard/control.sock"

    /// The inode of the file `path` names inside the sandbox (`/proc/<pid>/exe`: the file the process runs).
    func inode(_ sandbox: SystemdSandbox, _ path: String) -> String? {
        guard let result = try? sandbox.exec(["stat", "-L", "-c", "%i", path]), result.status == 0 else { return nil }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `switchboard status --json` of the service, through its control socket.
    func status(_ sandbox: SystemdSandbox) -> [String: Any]? {
        guard let result = try? sandbox.exec(["/usr/local/bin/switchboard", "status", "--json", "--control-socket", Self.controlSocket]),
            result.status == 0
        else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
    }

    func statusWorkerPIDs(_ sandbox: SystemdSandbox) -> Set<Int> {
        Set((status(sandbox)?["workers"] as? [[String: Any]] ?? []).compactMap { $0["pid"] as? Int })
    }

    /// A new build renamed over the service's file, then `switchboard upgrade` under a client loop: the same MainPID,
    /// no restart, the master and then every worker run the new file, the unit active, not one request refused or
    /// failed, and the watchdog still fed by the new image a full WatchdogSec later.
    @Test func anUpgradeInPlaceIsAReloadOfTheSameMainPIDThatDropsNothing() throws {
        let port = try freePort()
        let builds = try Deploys.folder()
        defer { try? FileManager.default.removeItem(at: builds) }
        let folder = builds.appendingPathComponent("switchboard-upgrade")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try Deploys.writeBuild(
            of: SwitchboardProcess.binary, marker: "release 1", at: folder.appendingPathComponent("switchboard").path)
        // Staged beside it, renamed over it inside the sandbox: a deploy the way `install` and `mv` do it.
        try Deploys.writeBuild(
            of: SwitchboardProcess.binary, marker: "release 2",
            at: folder.appendingPathComponent("switchboard.new").path)
        let path = "\(Self.releases)/switchboard"
        let units = try makeUnits(
            port: port, socket: true,
            serviceDropIn: """
                ExecStart=
                ExecStart=\(path) --workers 2 --drain-timeout 5 --control-socket \(Self.controlSocket)
                """)
        defer { try? FileManager.default.removeItem(at: units) }
        let sandbox = try SystemdSandbox(units: units, installs: [(folder.path, Self.releases)])
        defer { sandbox.stop() }

        let active = waitForUnit(sandbox) { $0["StatusText"]?.hasPrefix("2/2 workers ready") == true }
        #expect(active["ActiveState"] == "active", "\(active)\n\(sandbox.journal("switchboard.service"))")
        let mainPID = try #require(active["MainPID"].flatMap { Int($0) }, "\(active)")
        let release1 = try #require(inode(sandbox, path))
        #expect(inode(sandbox, "/proc/\(mainPID)/exe") == release1)
        let before = statusWorkerPIDs(sandbox)
        #expect(before.count == 2, "\(String(describing: status(sandbox)))")
        #expect(sandbox.journal("switchboard.service").contains("systemd watchdog on"))

        let load = LoadLoop(port: port)
        #expect(waitUntil { load.count >= 50 })
        let deploy = try sandbox.exec(["mv", "-f", "\(path).new", path])
        #expect(deploy.status == 0, "\(deploy.stderr)")
        let release2 = try #require(inode(sandbox, path))
        #expect(release2 != release1)

        let upgrade = try sandbox.exec(["/usr/local/bin/switchboard", "upgrade", "--control-socket", Self.controlSocket])
        #expect(upgrade.status == 0, "\(upgrade.stdout)\(upgrade.stderr)\n\(sandbox.journal("switchboard.service"))")
        #expect(upgrade.stdout.contains("master upgraded in place"), "\(upgrade.stdout)")
        let upgraded = ContinuousClock.now
        #expect(inode(sandbox, "/proc/\(mainPID)/exe") == release2, "the master runs the new file")

        // The rolling reload that follows puts every worker on the new file.
        var workers: Set<Int> = []
        #expect(waitUntil(timeout: .seconds(60)) {
            workers = statusWorkerPIDs(sandbox)
            return workers.count == 2 && workers.isDisjoint(with: before)
                && workers.allSatisfy { inode(sandbox, "/proc/\($0)/exe") == release2 }
        }, "workers \(before) → \(workers)\n\(sandbox.journal("switchboard.service"))")
        let reloaded = waitForUnit(sandbox) {
            $0["ActiveState"] == "active" && $0["StatusText"]?.contains("reload to generation 2 finished") == true
        }
        #expect(reloaded["StatusText"]?.hasPrefix("2/2 workers ready") == true, "\(reloaded)")

        // Serving on for a full WatchdogSec (10 s) after the exec: the new image feeds systemd's watchdog.
        let served = load.count
        while ContinuousClock.now < upgraded + .seconds(11) { Thread.sleep(forTimeInterval: 0.2) }
        #expect(load.count > served + 50)
        let outcomes = load.stop()
        let refused = outcomes.filter {
            if case .failure(let error) = $0.result, case ProbeError.connect = error { return true }
            return false
        }
        let failures = outcomes.filter { if case .failure = $0.result { true } else { false } }
        #expect(refused.isEmpty, "refused connections across the upgrade: \(refused.count)")
        #expect(failures.isEmpty, "\(failures.count) of \(outcomes.count) requests failed: \(failures.prefix(3).map(\.result))")
        let servingWorkers = Set(outcomes.suffix(20).compactMap { try? $0.result.get().workerPID }.map(Int.init))
        #expect(servingWorkers.isSubset(of: workers), "the new workers serve: \(servingWorkers) vs \(workers)")

        let after = try sandbox.show(
            "switchboard.service", ["ActiveState", "SubState", "NRestarts", "MainPID", "ExecMainStatus", "StatusText"])
        #expect(after["MainPID"] == "\(mainPID)", "systemd's main process is the same: \(after)")
        #expect(after["NRestarts"] == "0", "\(after)")
        #expect(after["ActiveState"] == "active" && after["SubState"] == "running", "\(after)")
        #expect(inode(sandbox, "/proc/\(mainPID)/exe") == release2)
        let journal = sandbox.journal("switchboard.service")
        #expect(journal.contains("upgrading the master in place"), "\(journal)")
        #expect(journal.contains("master upgraded in place"), "\(journal)")
        #expect(!journal.contains("Watchdog timeout") && !journal.contains("Main process exited"), "\(journal)")
        let record = status(sandbox)?["upgrade"] as? [String: Any]
        #expect(record?["result"] as? String == "done", "\(String(describing: record))")
        print(
            "upgrade under systemd: \(outcomes.count) requests, 0 failed; the master took \(record?["milliseconds"] ?? "?") ms")
    }
}
