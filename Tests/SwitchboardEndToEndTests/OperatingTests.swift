import CSwitchboardLinux
import Foundation
import SwitchboardTestSupport
import Testing

extension EndToEndTests {
    /// What an operator sees: the version, and log lines that fit where they land.
    @Suite struct Operating {
        @Test func versionPrintsOneLineAndExitsZero() throws {
            let process = try SwitchboardProcess(arguments: ["--version"])
            defer { process.cleanUp() }
            #expect(process.waitForExit() == 0)
            #expect(process.stdout.range(of: #"^\d+\.\d+\.\d+(\+[0-9a-f]{12})?\n$"#, options: .regularExpression) != nil, "\(process.stdout)")
        }

        @Test func anUnknownLogFormatIsAOneLineError() throws {
            let process = try SwitchboardProcess(arguments: ["--log-format", "xml"])
            defer { process.cleanUp() }
            #expect(process.waitForExit() == 64)
            #expect(
                process.stderr
                    == "switchboard: --log-format 'xml' is not a format: pass auto, text, journal or json (see 'switchboard --help')\n")
        }

        /// Under systemd, stderr is the journal and JOURNAL_STREAM names it: every line carries sd-daemon's priority
        /// and no timestamp, so `journalctl -p warning` filters.
        @Test func whenStderrIsTheJournalEveryLineCarriesItsPriority() throws {
            let server = try SwitchboardProcess.start(["--workers", "1"], environment: ["JOURNAL_STREAM": "stderr"])
            defer { server.cleanUp() }
            server.signal(SIGTTOU)  // refused with one worker: a notice
            #expect(waitUntil { server.logCount("SIGTTOU ignored") == 1 })
            let lines = server.stderr.split(separator: "\n").map(String.init)
            #expect(!lines.isEmpty)
            for line in lines {
                #expect(line.range(of: #"^<[2-7]>switchboard(\.worker)?: "#, options: .regularExpression) != nil, "\(line)")
            }
            #expect(lines.contains { $0.hasPrefix("<6>switchboard: ") && $0.hasSuffix("worker forked") })
            #expect(lines.contains { $0.hasPrefix("<5>switchboard: ") && $0.contains("SIGTTOU ignored") })
            server.stopAndCheckNoOrphans()
        }

        @Test func withoutTheJournalLinesStartWithATimestamp() throws {
            let server = try SwitchboardProcess.start(["--workers", "1"])
            defer { server.cleanUp() }
            let first = try #require(server.stderr.split(separator: "\n").first)
            #expect(first.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} info switchboard: "#, options: .regularExpression) != nil, "\(first)")
            server.stopAndCheckNoOrphans()
        }

        @Test func jsonLogsAreOneObjectPerLine() throws {
            let server = try SwitchboardProcess.start(["--workers", "2", "--log-format", "json"])
            defer { server.cleanUp() }
            server.signal(SIGTERM)
            #expect(server.waitForExit() == 0)
            let lines = server.stderr.split(separator: "\n")
            #expect(lines.count >= 6)
            var forked: [[String: Any]] = []
            for line in lines {
                let object = try #require(
                    try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
                #expect(object["level"] is String && object["message"] is String && object["time"] is String)
                if object["message"] as? String == "worker forked" { forked.append(object) }
            }
            #expect(forked.count == 2)
            #expect(forked.allSatisfy { ($0["worker.pid"] as? String).flatMap { Int32($0) } != nil })
            #expect(lines.contains { $0.contains(#""level":"info","label":"switchboard.worker""#) })
        }
    }
}

extension EndToEndTests.Operating {
    /// A `/proc/<pid>/status` field, such as `Uid` or `Cpus_allowed_list`.
    static func statusField(_ pid: pid_t, _ name: String) -> String? {
        ProcFS.read("/proc/\(pid)/status")?.split(separator: "\n")
            .first { $0.hasPrefix(name + ":") }
            .map { $0.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces) }
    }

    /// Worker pids by slot, from the `worker forked` lines.
    static func workersBySlot(_ server: SwitchboardProcess) -> [Int: pid_t] {
        var result: [Int: pid_t] = [:]
        for line in server.stderr.split(separator: "\n") where line.hasSuffix("worker forked") {
            let fields = line.split(separator: " ")
            func value(_ key: String) -> String? {
                fields.first { $0.hasPrefix(key + "=") }.map { String($0.dropFirst(key.count + 1)) }
            }
            if let slot = value("worker.slot").flatMap(Int.init), let pid = value("worker.pid").flatMap(pid_t.init) {
                result[slot] = pid
            }
        }
        return result
    }

    @Test(.enabled(if: getuid() == 0, "needs root to switch users"))
    func workersRunAsTheGivenUserWithItsGroupsWhileTheMasterKeepsItsOwn() throws {
        let server = try SwitchboardProcess.start(["--workers", "2", "--user", "nobody", "--group", "nogroup"])
        defer { server.cleanUp() }
        #expect(Self.statusField(server.pid, "Uid") == "0\t0\t0\t0")
        let workers = server.workerPIDs
        #expect(workers.count == 2)
        for worker in workers {
            #expect(Self.statusField(worker, "Uid") == "65534\t65534\t65534\t65534", "worker \(worker)")
            #expect(Self.statusField(worker, "Gid") == "65534\t65534\t65534\t65534", "worker \(worker)")
            #expect(Self.statusField(worker, "Groups")?.split(separator: " ").contains("0") == false, "root's groups dropped")
        }
        var served: Set<pid_t> = []
        for _ in 0..<10 { served.insert(try #require(try get(port: server.port).workerPID)) }
        #expect(served == Set(workers))
        // A replacement starts as nobody too.
        kill(workers[0], SIGKILL)
        #expect(waitUntil { server.workerPIDs.count == 2 && !server.workerPIDs.contains(workers[0]) })
        for worker in server.workerPIDs { #expect(Self.statusField(worker, "Uid")?.hasPrefix("65534") == true) }
        server.stopAndCheckNoOrphans()
    }

    /// The reason to start as root at all: the master binds a privileged port, the workers serve it as nobody.
    @Test(.enabled(if: getuid() == 0, "needs root to bind a port below 1024"))
    func aPortBelow1024IsBoundByTheMasterAndServedByWorkersAsNobody() throws {
        var port: CInt = 0
        for candidate in CInt(600)..<CInt(1000) {
            var bound: CInt = 0
            var family: CInt = 0
            let fd = sb_tcp_listen("127.0.0.1", candidate, 1, 0, 1, &bound, &family)
            if fd >= 0 {
                close(fd)
                port = candidate
                break
            }
        }
        try #require(port > 0, "no free port below 1000")
        let server = try SwitchboardProcess(
            arguments: ["--host", "127.0.0.1", "--port", "\(port)", "--workers", "1", "--user", "nobody"])
        defer { server.cleanUp() }
        try server.waitForReady()
        let response = try get(port: Int(port))
        #expect(response.status == 200)
        let worker = try #require(response.workerPID)
        #expect(Self.statusField(worker, "Uid")?.hasPrefix("65534") == true)
        server.stopAndCheckNoOrphans()
    }

    /// Only a root master can switch users: any other stops at once, with one line, before binding or starting anyone.
    @Test(.enabled(if: getuid() == 0, "needs root to start the master as another user"))
    func aMasterThatIsNotRootCannotSwitchUsers() throws {
        let process = try SwitchboardProcess(arguments: ["--port", "0", "--user", "root"], user: "65534")
        defer { process.cleanUp() }
        #expect(process.waitForExit() == 77)
        #expect(
            process.stderr == "switchboard: --user/--group need a master started as root (it binds, then workers switch)\n",
            "\(process.stderr)")
        #expect(ProcFS.workers(ofMaster: process.pid).isEmpty)
    }

    @Test func anUnknownUserOrABadCPUListIsAOneLineError() throws {
        for (arguments, message) in [
            (["--user", "no-such-user-here"], "switchboard: --user 'no-such-user-here' is not a user on this machine\n"),
            (["--cpu-affinity", "0-"], "switchboard: --cpu-affinity '0-' is not auto or a CPU list: pass e.g. auto, 0,1 or 0-3 (see 'switchboard --help')\n"),
        ] {
            let process = try SwitchboardProcess(arguments: ["--port", "0"] + arguments)
            defer { process.cleanUp() }
            #expect(process.waitForExit() == 64)
            #expect(process.stderr == message)
            #expect(ProcFS.workers(ofMaster: process.pid).isEmpty)
        }
        let outside = try SwitchboardProcess(arguments: ["--port", "0", "--cpu-affinity", "4095"])
        defer { outside.cleanUp() }
        #expect(outside.waitForExit() == 64)
        #expect(outside.stderr.hasPrefix("switchboard: --cpu-affinity 4095: CPU 4095 is not one this process may use"), "\(outside.stderr)")
    }

    @Test func cpuAffinityAutoPinsWorkerIToCPUIModN() throws {
        let allowed = try #require(Self.statusField(getpid(), "Cpus_allowed_list"))
        let cpus = allowed.split(separator: ",").flatMap { part -> [Int] in
            let bounds = part.split(separator: "-").compactMap { Int($0) }
            return bounds.count == 2 ? Array(bounds[0]...bounds[1]) : bounds
        }
        let server = try SwitchboardProcess.start(["--workers", "3", "--cpu-affinity", "auto"])
        defer { server.cleanUp() }
        let bySlot = Self.workersBySlot(server)
        #expect(bySlot.count == 3)
        for (slot, pid) in bySlot {
            #expect(Self.statusField(pid, "Cpus_allowed_list") == "\(cpus[slot % cpus.count])", "slot \(slot)")
        }
        #expect(Self.statusField(server.pid, "Cpus_allowed_list") == allowed, "the master is not pinned")
        #expect(try get(port: server.port).status == 200)
        server.stopAndCheckNoOrphans()

        let listed = try SwitchboardProcess.start(["--workers", "2", "--cpu-affinity", "\(cpus.last!)"])
        defer { listed.cleanUp() }
        for pid in listed.workerPIDs { #expect(Self.statusField(pid, "Cpus_allowed_list") == "\(cpus.last!)") }
        listed.stopAndCheckNoOrphans()
    }

    /// `--master-scheduling batch` (the default): the master under `SCHED_BATCH` (3), its workers under the normal
    /// policy (0), by both ways a worker starts (posix_spawn, and fork + exec when it is pinned), and after a reload;
    /// `inherit` leaves the master's policy alone.
    @Test func theMasterRunsUnderSchedBatchAndItsWorkersUnderTheNormalPolicy() throws {
        for extra in [[], ["--cpu-affinity", "auto"]] {
            let server = try SwitchboardProcess.start(["--workers", "2"] + extra)
            defer { server.cleanUp() }
            #expect(ProcFS.schedulingPolicy(of: server.pid) == 3, "\(extra): the master is not under SCHED_BATCH")
            let first = server.workerPIDs
            #expect(first.count == 2)
            for pid in first { #expect(ProcFS.schedulingPolicy(of: pid) == 0, "\(extra): worker \(pid)") }
            #expect(try get(port: server.port).status == 200)
            server.signal(SIGHUP)
            #expect(waitUntil { server.workerPIDs.count == 2 && Set(server.workerPIDs).isDisjoint(with: first) })
            let replaced = server.workerPIDs
            #expect(replaced.count == 2 && Set(replaced).isDisjoint(with: first), "\(server.stderr)")
            for pid in replaced { #expect(ProcFS.schedulingPolicy(of: pid) == 0, "\(extra): reloaded worker \(pid)") }
            server.stopAndCheckNoOrphans()
        }
        let inherited = try SwitchboardProcess.start(["--workers", "1", "--master-scheduling", "inherit"])
        defer { inherited.cleanUp() }
        #expect(ProcFS.schedulingPolicy(of: inherited.pid) == 0)
        #expect(inherited.workerPIDs.allSatisfy { ProcFS.schedulingPolicy(of: $0) == 0 })
        inherited.stopAndCheckNoOrphans()
    }

    /// A policy the master was started with that is not the normal one (`chrt --idle`, systemd's
    /// `CPUSchedulingPolicy=idle`) is the operator's: the master and its workers keep it, and one line says so.
    @Test func aPolicyTheMasterWasStartedWithIsKeptForItAndItsWorkers() throws {
        let server = try SwitchboardProcess.start(["--workers", "2"], wrapper: ["/usr/bin/chrt", "--idle", "0"])
        defer { server.cleanUp() }
        #expect(ProcFS.schedulingPolicy(of: server.pid) == 5)
        #expect(server.workerPIDs.count == 2)
        for pid in server.workerPIDs { #expect(ProcFS.schedulingPolicy(of: pid) == 5, "worker \(pid)") }
        #expect(server.logCount("the master keeps the scheduling policy it was started with (SCHED_IDLE)") == 1, "\(server.stderr)")
        #expect(try get(port: server.port).status == 200)
        server.stopAndCheckNoOrphans()
    }

    @Test func anUnknownMasterSchedulingIsAOneLineError() throws {
        let process = try SwitchboardProcess(arguments: ["--port", "0", "--master-scheduling", "fifo"])
        defer { process.cleanUp() }
        #expect(process.waitForExit() == 64)
        #expect(process.stderr == "switchboard: --master-scheduling 'fifo' is not a policy: pass batch or inherit (see 'switchboard --help')\n")
        #expect(ProcFS.workers(ofMaster: process.pid).isEmpty)
    }
}
