import Foundation
import SwitchboardTestSupport
import Testing

extension EndToEndTests {
    /// What a master started with no `--workers` finds out about its CPUs: the affinity mask, a cgroup v1 quota set
    /// for real in a child group of this machine's `cpu` controller, and a cgroup v2 `cpu.max` through a fixture tree.
    /// This machine has 2 CPUs, so each limit below must show as 1 worker (or, for 1.5 CPUs, in the start line).
    @Suite struct Containers {
        /// A child group of the cgroup v1 `cpu` controller with a quota of `cpus`, or nil where it cannot be made.
        static func cgroupV1(quota cpus: Double) -> String? {
            let parent = "/sys/fs/cgroup/cpu"
            guard FileManager.default.isWritableFile(atPath: parent + "/cgroup.procs") else { return nil }
            let path = parent + "/switchboard-test-\(UUID().uuidString.prefix(8))"
            guard mkdir(path, 0o755) == 0 else { return nil }
            let quota = "\(Int(cpus * 100_000))"
            guard (try? "100000".write(toFile: path + "/cpu.cfs_period_us", atomically: false, encoding: .utf8)) != nil,
                (try? quota.write(toFile: path + "/cpu.cfs_quota_us", atomically: false, encoding: .utf8)) != nil
            else {
                rmdir(path)
                return nil
            }
            return path
        }

        @Test func aCPUQuotaOfOneCPUStartsOneWorker() throws {
            guard let group = Self.cgroupV1(quota: 1) else {
                print("skipped: the cgroup v1 cpu controller is not writable here")
                return
            }
            defer { rmdir(group) }
            // The shell joins the group, then execs the master: the master and every worker it starts are in it.
            let server = try SwitchboardProcess.start(
                [], wrapper: ["/bin/sh", "-c", "echo $$ > \(group)/cgroup.procs && exec \"$0\" \"$@\""])
            defer { server.cleanUp() }
            #expect(server.workerPIDs.count == 1, "\(server.stderr)")
            #expect(server.stdout.contains("with 1 workers") || server.stdout.contains("with 1 worker"), "\(server.stdout)")
            #expect(server.logCount("1 worker: CPU quota 1 of 2 CPUs") == 1, "\(server.stderr)")
            _ = try get(port: server.port)
            server.stopAndCheckNoOrphans()
        }

        @Test func oneAllowedCPUStartsOneWorker() throws {
            let server = try SwitchboardProcess.start([], wrapper: ["/usr/bin/taskset", "-c", "0"])
            defer { server.cleanUp() }
            #expect(server.workerPIDs.count == 1, "\(server.stderr)")
            #expect(server.logCount("1 worker: 1 CPU allowed of 2 CPUs") == 1, "\(server.stderr)")
            server.stopAndCheckNoOrphans()
        }

        /// Workers that outnumber the CPUs they may run on take turns on one: each is told to yield before a wait
        /// that would block after a kept-alive answer (issue 23, BENCHMARKS.md "Tail latency", seventeenth part),
        /// and does. A worker with a CPU of its own is not told and does not; an environment that sets it wins.
        @Test(arguments: [
            (2, [String: String](), "1"), (1, [:], "0"), (2, ["SWITCHBOARD_YIELD_BEFORE_WAIT": "0"], "0"),
        ])
        func workersThatOutnumberTheirCPUsYieldBeforeWaiting(
            workers: Int, environment: [String: String], expected: String
        ) throws {
            let server = try SwitchboardProcess.start(
                ["--workers", "\(workers)"],
                environment: environment.merging(["SWITCHBOARD_LOOP_STATS": "1"]) { mine, _ in mine },
                wrapper: ["/usr/bin/taskset", "-c", "0"])
            defer { server.cleanUp() }
            #expect(server.workerPIDs.count == workers, "\(server.stderr)")
            for pid in server.workerPIDs {
                let told = ProcFS.environment(of: pid).filter { $0.hasPrefix("SWITCHBOARD_YIELD_BEFORE_WAIT=") }
                #expect(told == ["SWITCHBOARD_YIELD_BEFORE_WAIT=\(expected)"], "worker \(pid)")
            }
            // Five requests on one kept-alive connection, 50 ms apart: after each answer but the first the worker's
            // next wait finds nothing ready (the next request is not sent yet) and, told to, yields first.
            let connection = try TestConnection(port: server.port)
            for _ in 0..<5 {
                try connection.request(keepAlive: true)
                #expect(try connection.readResponse().status == 200)
                usleep(50_000)
            }
            // Stopped by hand: the log is read before the clean-up removes it.
            server.signal(SIGTERM)
            #expect(server.waitForExit() == 0)
            let stderr = server.stderr
            #expect(waitUntil(timeout: .seconds(10)) { ProcFS.workers(ofMaster: server.pid).isEmpty })
            let counts = stderr.split(separator: "\n").filter { $0.contains("loop-stats") }.compactMap { line in
                line.split(separator: " ").first { $0.hasPrefix("yields_before_waiting=") }
                    .flatMap { Int($0.dropFirst("yields_before_waiting=".count)) }
            }
            #expect(counts.count == workers, "\(stderr)")
            if expected == "1" {
                #expect(counts.reduce(0, +) >= 4, "\(counts)")
            } else {
                #expect(counts.allSatisfy { $0 == 0 }, "\(counts)")
            }
        }

        /// Where the workers outnumber the CPUs, the master shares one with them: under `SCHED_BATCH` (the default)
        /// it yields after each wake-up that found connections instead of going straight back to sleep (issue 23,
        /// BENCHMARKS.md "Tail latency", twenty-seventh part). Not with a CPU per worker, nor when it keeps the policy
        /// it was started with (`--master-scheduling inherit`, where its wake-up may preempt and yielding would give
        /// that up).
        @Test(arguments: [(2, [String](), true), (1, [], false), (2, ["--master-scheduling", "inherit"], false)])
        func aMasterThatSharesItsCPUWithWorkersYieldsAfterAccepting(
            workers: Int, flags: [String], yields: Bool
        ) throws {
            let server = try SwitchboardProcess.start(
                ["--workers", "\(workers)"] + flags, environment: ["SWITCHBOARD_LOOP_STATS": "1"],
                wrapper: ["/usr/bin/taskset", "-c", "0"])
            defer { server.cleanUp() }
            #expect(server.workerPIDs.count == workers, "\(server.stderr)")
            // One connection at a time: each one wakes the master, which accepts it.
            for _ in 0..<40 {
                let connection = try TestConnection(port: server.port)
                try connection.request(keepAlive: false)
                #expect(try connection.readResponse().status == 200)
            }
            server.signal(SIGTERM)
            #expect(server.waitForExit() == 0)
            let stderr = server.stderr
            #expect(waitUntil(timeout: .seconds(10)) { ProcFS.workers(ofMaster: server.pid).isEmpty })
            let figures = stderr.split(separator: "\n").filter { $0.contains("loop-stats: wake_ups=") }.map { line in
                Dictionary(
                    line.split(separator: " ").compactMap { field -> (String, Int)? in
                        let pair = field.split(separator: "=")
                        guard pair.count == 2, let value = Int(pair[1]) else { return nil }
                        return (String(pair[0]), value)
                    }, uniquingKeysWith: { first, _ in first })
            }
            #expect(figures.count == 1, "\(stderr)")
            let wakeUps = figures.first?["wake_ups"] ?? 0
            let yielded = figures.first?["yields_after_accepting"] ?? -1
            #expect(wakeUps >= 40, "\(stderr)")
            if yields {
                #expect(yielded >= 20 && yielded <= wakeUps, "\(stderr)")
            } else {
                #expect(yielded == 0, "\(stderr)")
            }
        }

        /// A cgroup v2 tree (as under systemd's `CPUQuota=` or a container with `--cpus`) through `--test-hooks`'
        /// fixture root: the quota on an ancestor of the master's group counts.
        @Test(arguments: [("150000 100000", 2, "2 workers: CPU quota 1.5 of 2 CPUs"),
                          ("50000 100000", 1, "1 worker: CPU quota 0.5 of 2 CPUs")])
        func aCgroupV2QuotaOnAnAncestorCounts(cpuMax: String, workers: Int, line: String) throws {
            let root = FileManager.default.temporaryDirectory.appendingPathComponent("cgroup-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: root) }
            let group = root.appendingPathComponent("sys/fs/cgroup/app.slice/web.service")
            try FileManager.default.createDirectory(at: group, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(
                at: root.appendingPathComponent("proc/self"), withIntermediateDirectories: true)
            try "0::/app.slice/web.service\n".write(
                to: root.appendingPathComponent("proc/self/cgroup"), atomically: true, encoding: .utf8)
            try "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n".write(
                to: root.appendingPathComponent("proc/self/mountinfo"), atomically: true, encoding: .utf8)
            try "max 100000\n".write(to: group.appendingPathComponent("cpu.max"), atomically: true, encoding: .utf8)
            try "\(cpuMax)\n".write(
                to: root.appendingPathComponent("sys/fs/cgroup/app.slice/cpu.max"), atomically: true, encoding: .utf8)
            let socket = root.appendingPathComponent("control.sock").path
            let metrics = try DeployExamples().freePort()
            let server = try SwitchboardProcess.start(
                ["--test-hooks", "--control-socket", socket, "--metrics", "127.0.0.1:\(metrics)"],
                environment: ["SWITCHBOARD_TEST_HOST_ROOT": root.path])
            defer { server.cleanUp() }
            #expect(server.workerPIDs.count == workers, "\(server.stderr)")
            #expect(server.logCount(line) == 1, "\(server.stderr)")
            // Status and /metrics say what was found.
            let limits = String(line.split(separator: ":", maxSplits: 1)[1].dropFirst())
            let status = try SwitchboardProcess(arguments: ["status", "--control-socket", socket])
            defer { status.cleanUp() }
            #expect(status.waitForExit(timeout: .seconds(20)) == 0)
            #expect(status.stdout.contains("cpus: \(limits)"), "\(status.stdout)")
            let scrape = try get(port: metrics, path: "/metrics")
            let quota = Double(cpuMax.split(separator: " ")[0])! / 100_000
            #expect(scrape.body.contains("switchboard_cpus{kind=\"quota\"} \(quota)"), "\(scrape.body)")
            #expect(scrape.body.contains("switchboard_cpus{kind=\"online\"} 2"))
            server.stopAndCheckNoOrphans()
        }

        @Test func anExplicitCountWinsAndAWrongOneIsAOneLineError() throws {
            let server = try SwitchboardProcess.start(["--workers", "3"], wrapper: ["/usr/bin/taskset", "-c", "0"])
            defer { server.cleanUp() }
            #expect(server.workerPIDs.count == 3)
            server.stopAndCheckNoOrphans()
            let wrong = try SwitchboardProcess(arguments: ["--workers", "many"])
            defer { wrong.cleanUp() }
            wrong.process.waitUntilExit()
            #expect(wrong.process.terminationStatus != 0)
            #expect(wrong.stderr.contains("--workers 'many' is not a number: pass a count such as 4, or auto"), "\(wrong.stderr)")
        }
    }
}

extension EndToEndTests {
    /// The master as PID 1 of a PID namespace, as in a container without an init: every orphan in the namespace
    /// becomes its child, and no signal has a default action unless a handler is installed.
    @Suite struct PIDOne {
        /// Starts the master as PID 1 of a new PID namespace (`unshare --pid --fork --mount-proc`); nil where this
        /// machine does not allow it.
        static func start(_ arguments: [String] = []) throws -> (server: SwitchboardProcess, master: pid_t)? {
            guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare") else { return nil }
            let server = try SwitchboardProcess.start(
                ["--log-level", "debug"] + arguments,
                wrapper: ["/usr/bin/unshare", "--pid", "--fork", "--mount-proc", "--kill-child"])
            guard let master = ProcFS.children(of: server.pid).first else {
                server.cleanUp()
                return nil
            }
            return (server, master)
        }

        /// Children of `pid` that are zombies (exited, not reaped).
        static func zombies(of pid: pid_t) -> [pid_t] {
            ProcFS.children(of: pid).filter { child in
                guard let stat = ProcFS.read("/proc/\(child)/stat"), let close = stat.lastIndex(of: ")") else { return false }
                return stat[stat.index(close, offsetBy: 2)] == "Z"
            }
        }

        @Test func anOrphanInTheNamespaceIsReapedAndNoWorkerIsMistakenForIt() throws {
            let metrics = try DeployExamples().freePort()
            guard let (server, master) = try Self.start(["--workers", "2", "--metrics", "127.0.0.1:\(metrics)"]) else {
                print("skipped: no PID namespaces here")
                return
            }
            defer { server.cleanUp() }
            #expect(ProcFS.read("/proc/\(master)/status")?.contains("NSpid:\t\(master)\t1") == true, "the master is PID 1")
            let workers = ProcFS.children(of: master)
            #expect(workers.count == 2)
            // A shell in the namespace starts `sleep 1` and exits: the sleep is orphaned to PID 1, the master. The
            // shell prints the sleep's pid in the namespace, which the master's debug line names when it reaps it.
            let orphan = Process()
            orphan.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
            orphan.arguments = ["-t", "\(master)", "-p", "--", "/bin/sh", "-c", "/bin/sleep 1 </dev/null >/dev/null 2>&1 & echo $!"]
            let output = Pipe()
            orphan.standardOutput = output
            try orphan.run()
            orphan.waitUntilExit()
            #expect(orphan.terminationStatus == 0)
            let pid = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            try #require(Int(pid) != nil, "no pid from the shell: \(pid)")
            Thread.sleep(forTimeInterval: 3)
            #expect(Self.zombies(of: master).isEmpty, "a zombie is left: \(Self.zombies(of: master))")
            #expect(
                server.logCount("child.exit-code=0 child.pid=\(pid) [Switchboard] reaped a child that is not a worker") == 1,
                "\(server.stderr)")
            #expect(Set(ProcFS.children(of: master)) == Set(workers), "the workers are the same")
            _ = try get(port: server.port)
            let scrape = try get(port: metrics, path: "/metrics")
            #expect(scrape.body.contains("switchboard_orphans_reaped_total 1\n"), "\(scrape.body)")
        }

        @Test func asPIDOneAKilledWorkerIsReplacedAndSIGTERMDrainsAndExitsZero() throws {
            guard let (server, master) = try Self.start(["--workers", "2"]) else {
                print("skipped: no PID namespaces here")
                return
            }
            defer { server.cleanUp() }
            let workers = ProcFS.children(of: master)
            try #require(workers.count == 2)
            kill(workers[0], SIGKILL)
            #expect(waitUntil(timeout: .seconds(10)) {
                let now = ProcFS.children(of: master)
                return now.count == 2 && !now.contains(workers[0]) && Self.zombies(of: master).isEmpty
            }, "the killed worker was not replaced")
            _ = try get(port: server.port)
            kill(master, SIGTERM)
            #expect(server.waitForExit() == 0, "unshare passes the master's exit status on: \(server.stderr)")
            #expect(server.logCount("stopping gracefully") == 1, "\(server.stderr)")
            #expect(!ProcFS.isAlive(master))
        }
    }
}
