import CSwitchboardLinux
import Foundation
import SwitchboardTestSupport
import Testing

/// The master's upgrade in place (issue 22): a new build renamed over the file, then `switchboard upgrade` or SIGUSR2.
/// The master keeps its PID and runs the new file; its workers, listener and the connections it holds are handed over.
extension EndToEndTests {
    @Suite struct Upgrade {

        /// A server started from its own copy of the binary at `<folder>/switchboard`, with a control socket.
        struct Setup {
            let folder: URL
            let path: String
            let socket: String
            let release1: UInt64
            let server: SwitchboardProcess

            /// - Parameter refusingRelease2: Stages release 2 beside the file (`<path>.new`) before the start and tells
            ///   the test hook to make that file refuse to adopt the master.
            init(_ arguments: [String], refusingRelease2: Bool = false) throws {
                folder = try Deploys.folder()
                path = folder.appendingPathComponent("switchboard").path
                socket = folder.appendingPathComponent("control.sock").path
                try Deploys.writeBuild(of: SwitchboardProcess.binary, marker: "release 1", at: path)
                release1 = try #require(Deploys.inode(path))
                var environment: [String: String] = [:]
                if refusingRelease2 {
                    try Deploys.writeBuild(of: SwitchboardProcess.binary, marker: "release 2", at: path + ".new")
                    // A rename keeps the inode: the hook names the file that will be on disk.
                    environment["SWITCHBOARD_TEST_REFUSE_ADOPTION_INODE"] = "\(try #require(Deploys.inode(path + ".new")))"
                }
                server = try SwitchboardProcess.start(
                    arguments + ["--control-socket", socket], environment: environment, executable: path)
            }

            func upgrade(_ arguments: [String] = []) throws -> EndToEndTests.Control.Outcome {
                try EndToEndTests.Control.client(["upgrade"] + arguments, socket: socket)
            }

            func status() throws -> [String: Any] {
                let outcome = try EndToEndTests.Control.client(["status", "--json"], socket: socket)
                return try #require(try JSONSerialization.jsonObject(with: Data(outcome.stdout.utf8)) as? [String: Any])
            }

            func cleanUp() {
                server.cleanUp()
                try? FileManager.default.removeItem(at: folder)
            }
        }

        /// wrk against the server for `seconds`, on its own thread: its summary once done.
        final class Wrk: @unchecked Sendable {
            // @unchecked: started in init, read once by finish() on the test's thread; never shared meanwhile.
            private let process = Process()
            private let output = Pipe()

            init?(port: Int, seconds: Int) {
                let wrk = ["/usr/bin/wrk", "/usr/local/bin/wrk"].first { FileManager.default.isExecutableFile(atPath: $0) }
                guard let wrk else { return nil }
                process.executableURL = URL(fileURLWithPath: wrk)
                process.arguments = ["-t1", "-c8", "-d\(seconds)s", "http://127.0.0.1:\(port)/"]
                process.standardOutput = output
                process.standardError = output
                do { try process.run() } catch { return nil }
            }

            /// Waits for wrk and returns (requests, non-2xx or socket errors, its output).
            func finish() -> (requests: Int, errors: Int, text: String) {
                let data = output.fileHandleForReading.readDataToEndOfFile()
                process.waitUntilExit()
                let text = String(decoding: data, as: UTF8.self)
                func number(after label: String) -> Int {
                    guard let range = text.range(of: label) else { return 0 }
                    let digits = text[range.upperBound...].drop { $0 == " " }.prefix { $0.isNumber }
                    return Int(digits) ?? 0
                }
                // "  123456 requests in 6.00s, 10.0MB read"
                let summary = text.split(separator: "\n").first { $0.contains(" requests in ") }
                let requests = summary.flatMap { Int($0.split(separator: " ").first ?? "") } ?? 0
                var errors = number(after: "Non-2xx or 3xx responses:")
                if let line = text.split(separator: "\n").first(where: { $0.contains("Socket errors:") }) {
                    errors += line.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }.reduce(0, +)
                }
                return (requests, errors, text)
            }
        }

        /// The deploy users do, under a client loop and wrk: a new build renamed over the file, `upgrade --master-only`
        /// (the master alone: same PID, new file, the same workers), then `upgrade` (the master again, then a rolling
        /// reload puts every worker on the new file). Not one request fails; the counters go on.
        @Test func anUpgradeUnderLoadKeepsThePIDDropsNothingAndMovesTheWorkersAfter() throws {
            let setup = try Setup(["--workers", "2", "--drain-timeout", "5"])
            defer { setup.cleanUp() }
            let server = setup.server
            let workers = Set(server.workerPIDs)
            #expect(workers.count == 2)
            let loop = LoadLoop(port: server.port)
            let wrk = Wrk(port: server.port, seconds: 6)
            #expect(wrk != nil, "wrk is missing: Scripts/test.sh installs it")
            #expect(waitUntil { loop.count >= 20 })
            let before = try setup.status()
            let dispatchedBefore = try #require(before["dispatched"] as? Int)

            let release2 = try Deploys.deploy(over: setup.path) {
                try Deploys.writeBuild(of: SwitchboardProcess.binary, marker: "release 2", at: $0)
            }
            let masterOnly = try setup.upgrade(["--master-only"])
            #expect(masterOnly.status == 0, "\(masterOnly.stdout)\(masterOnly.stderr)\n\(server.stderr)")
            #expect(masterOnly.stdout.contains("master upgraded in place"), "\(masterOnly.stdout)")
            #expect(Deploys.executable(server.pid).inode == release2, "the master runs \(Deploys.executable(server.pid).path)")
            #expect(!Deploys.executable(server.pid).path.hasSuffix("(deleted)"))
            // The master alone: the same workers, still on the old file, still serving.
            #expect(Set(server.workerPIDs) == workers)
            #expect(workers.allSatisfy { Deploys.executable($0).inode == setup.release1 })
            let served = loop.count
            #expect(waitUntil { loop.count >= served + 20 })
            let after = try setup.status()
            #expect(after["pid"] as? Int == Int(server.pid))
            #expect((after["dispatched"] as? Int ?? 0) >= dispatchedBefore + 20, "counters reset: \(after)")
            let record = try #require(after["upgrade"] as? [String: Any])
            #expect(record["result"] as? String == "done" && record["sequence"] as? Int == 1, "\(record)")

            // The whole service: the master once more, then the workers by a rolling reload.
            let whole = try setup.upgrade()
            #expect(whole.status == 0, "\(whole.stdout)\(whole.stderr)\n\(server.stderr)")
            let moved = Deploys.waitForWorkers(of: server, count: 2, notIn: workers, runningInode: release2)
            #expect(moved.count == 2, "workers \(moved.map { Deploys.executable($0) })\n\(server.stderr)")
            // Each image sets the master's policy itself: the one before gave it back before the exec, so the new one
            // still starts its workers under the normal policy (MasterSchedulingState).
            #expect(ProcFS.schedulingPolicy(of: server.pid) == 3, "the master is not under SCHED_BATCH")
            for pid in moved { #expect(ProcFS.schedulingPolicy(of: pid) == 0, "worker \(pid) took the master's policy") }
            let summary = try #require(wrk).finish()
            let outcomes = loop.stop()
            let failures = outcomes.filter { if case .failure = $0.result { true } else { false } }
            #expect(failures.isEmpty, "\(failures.count) of \(outcomes.count) requests failed: \(failures.prefix(3).map(\.result))")
            #expect(summary.requests > 100, "wrk: \(summary.text)")
            #expect(summary.errors == 0, "wrk: \(summary.text)")
            #expect(server.pid == setup.server.pid && Deploys.executable(server.pid).inode == release2)
            #expect(server.logCount("master upgraded in place") == 2)
            let last = try setup.status()
            #expect((last["dispatched"] as? Int ?? 0) >= outcomes.count, "\(last)")
            print("upgrade under load: loop \(outcomes.count) requests, 0 failed; wrk \(summary.requests) requests, \(summary.errors) errors; took \((last["upgrade"] as? [String: Any])?["milliseconds"] ?? "?") ms (last), \(record["milliseconds"] ?? "?") ms (master only)")
            server.stopAndCheckNoOrphans()
        }

        /// A stop asked while the master execs its new image (README: its handled signals stay blocked across the
        /// exec): the test watches `/proc/<pid>/exe` and sends SIGTERM the moment the inode changes, while the new
        /// image is still starting. The TERM waits for it: the new image adopts the master, then stops gracefully
        /// (exit 0, every worker gone), instead of dying of the signal's default action or losing it.
        @Test func aStopSentDuringTheExecWaitsForTheNewImage() throws {
            let setup = try Setup(["--workers", "2", "--drain-timeout", "5"])
            defer { setup.cleanUp() }
            let server = setup.server
            let master = server.pid
            let release2 = try Deploys.deploy(over: setup.path) {
                try Deploys.writeBuild(of: SwitchboardProcess.binary, marker: "release 2", at: $0)
            }
            server.signal(SIGUSR2)
            // Tight polling: the window between the exec and the new image's signal set-up is milliseconds.
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(20)
            var sentAt: ContinuousClock.Instant?
            while clock.now < deadline {
                if Deploys.executable(master).inode == release2 {
                    server.signal(SIGTERM)
                    sentAt = clock.now
                    break
                }
                usleep(50)
            }
            #expect(sentAt != nil, "the master never exec'd the new file: \(server.stderr)")
            let status = server.waitForExit()
            #expect(status == 0, "exit status \(String(describing: status)) (143: killed by the TERM); stderr:\n\(server.stderr)")
            #expect(server.logCount("master upgraded in place") == 1, "the new image did not adopt first:\n\(server.stderr)")
            #expect(server.logCount("stopping gracefully") == 1, "\(server.stderr)")
            #expect(waitUntil(timeout: .seconds(10)) { ProcFS.workers(ofMaster: master).isEmpty })
        }

        /// README: control and health clients that are mid-request at the exec see their connection close (their
        /// descriptors are not handed over: the exec closes them; a leaked one would hang the client), and both
        /// listeners go on answering.
        @Test func controlAndHealthClientsMidRequestAtTheExecAreClosedAndTheListenersServeOn() throws {
            let setup = try Setup(["--workers", "1", "--health", "127.0.0.1:0"])
            defer { setup.cleanUp() }
            let server = setup.server
            let health = try #require(EndToEndTests.Health.port(server, "--health"), "\(server.stderr)")
            #expect(try EndToEndTests.Health.status(health, "/livez") == "HTTP/1.1 200 OK")
            // Half a request on each: the master holds both clients (up to 2 s) waiting for the rest.
            let healthClient = try TestConnection(port: health, timeoutSeconds: 10)
            try healthClient.send("GET /liv")
            let control = sb_unix_connect(setup.socket)
            try #require(control >= 0, "connect: errno \(errno)")
            defer { close(control) }
            #expect(write(control, "stat", 4) == 4)
            let release2 = try Deploys.deploy(over: setup.path) {
                try Deploys.writeBuild(of: SwitchboardProcess.binary, marker: "release 2", at: $0)
            }
            let outcome = try setup.upgrade(["--master-only"])
            #expect(outcome.status == 0, "\(outcome.stdout)\(outcome.stderr)\n\(server.stderr)")
            #expect(Deploys.executable(server.pid).inode == release2)
            // Closed, not left open: a read returns end-of-file instead of timing out.
            #expect(try healthClient.readUntilClosed(), "the health client got bytes before the close")
            var pollControl = pollfd(fd: control, events: Int16(POLLIN), revents: 0)
            #expect(poll(&pollControl, 1, 10_000) == 1, "the control client was left open")
            var byte: UInt8 = 0
            #expect(read(control, &byte, 1) == 0, "the control client was not closed")
            // The listeners themselves were handed over.
            #expect(try EndToEndTests.Health.status(health, "/livez") == "HTTP/1.1 200 OK")
            let asked = try EndToEndTests.Control.client(["status"], socket: setup.socket)
            #expect(asked.status == 0 && asked.stdout.contains("workers 1/1 ready"), "\(asked)")
            server.stopAndCheckNoOrphans()
        }

        /// A file on disk that is not a master of this configuration (a script that exits 1): nothing changes, one
        /// line says why, `upgrade` exits non-zero with the reason.
        @Test func aPreCheckFailureChangesNothing() throws {
            let setup = try Setup(["--workers", "2"])
            defer { setup.cleanUp() }
            let server = setup.server
            let workers = Set(server.workerPIDs)
            let loop = LoadLoop(port: server.port)
            _ = try Deploys.deploy(over: setup.path) {
                try Deploys.writeScript("#!/bin/sh\necho 'this build is broken' >&2\nexit 1\n", at: $0)
            }
            let outcome = try setup.upgrade()
            #expect(outcome.status != 0 && outcome.status != nil)
            #expect(outcome.stderr.contains("exited with code 1") && outcome.stderr.contains("this build is broken"), "\(outcome.stderr)")
            #expect(server.logCount("failed: the pre-check") == 1, "\(server.stderr)")
            #expect(Deploys.executable(server.pid).inode == setup.release1)
            #expect(Set(server.workerPIDs) == workers)
            let served = loop.count
            #expect(waitUntil { loop.count >= served + 20 })
            #expect(loop.stop().allSatisfy { if case .success = $0.result { true } else { false } })
            server.stopAndCheckNoOrphans()
        }

        /// A new image that execs but cannot adopt the master (a test hook refuses): it execs the old image back, which
        /// adopts the same state. The same PID throughout, the old file running, serving without a failure, one line.
        @Test func aNewImageThatCannotAdoptRollsBackToTheOldOne() throws {
            let setup = try Setup(["--workers", "2"], refusingRelease2: true)
            defer { setup.cleanUp() }
            let server = setup.server
            let workers = Set(server.workerPIDs)
            let loop = LoadLoop(port: server.port)
            #expect(waitUntil { loop.count >= 10 })
            #expect(rename(setup.path + ".new", setup.path) == 0)

            let outcome = try setup.upgrade()
            #expect(outcome.status != 0 && outcome.status != nil, "\(outcome.stdout)")
            #expect(outcome.stderr.contains("rolled back") && outcome.stderr.contains("test hook"), "\(outcome.stderr)")
            #expect(server.logCount("rolled back: the new image could not adopt") == 1, "\(server.stderr)")
            #expect(Deploys.executable(server.pid).inode == setup.release1, "\(Deploys.executable(server.pid))")
            #expect(Set(server.workerPIDs) == workers, "a rolled-back upgrade does not reload the workers")
            let served = loop.count
            #expect(waitUntil { loop.count >= served + 20 })
            let outcomes = loop.stop()
            #expect(outcomes.allSatisfy { if case .success = $0.result { true } else { false } }, "\(outcomes.count)")
            let status = try setup.status()
            #expect((status["upgrade"] as? [String: Any])?["result"] as? String == "rolled back")
            // Still upgradable afterwards: the launch path survived the rollback.
            #expect((status["workerExecutable"] as? String) == setup.path, "\(status)")
            server.stopAndCheckNoOrphans()
        }

        /// Connections accepted and not yet with any worker when the exec happens are all answered: `pending` (a
        /// stalled worker's queue taken back while the other's is full), the queue of a worker that has not received
        /// it (held by the kernel) and the backlog. Both workers are stopped meanwhile; the upgrade is SIGUSR2.
        @Test func connectionsWaitingInTheMasterAndInStoppedWorkersQueuesAreAnsweredAfterTheUpgrade() throws {
            let setup = try Setup(["--workers", "2", "--max-queued", "2", "--steal-after", "0.1", "--heartbeat-timeout", "60"])
            defer { setup.cleanUp() }
            let server = setup.server
            let workers = server.workerPIDs
            try #require(workers.count == 2)
            _ = try Deploys.deploy(over: setup.path) {
                try Deploys.writeBuild(of: SwitchboardProcess.binary, marker: "release 2", at: $0)
            }
            for worker in workers { kill(worker, SIGSTOP) }
            var connections: [TestConnection] = []
            for _ in 0..<6 {
                let connection = try TestConnection(port: server.port)
                try connection.request()
                connections.append(connection)
            }
            // Each queue fills (2 each); 0.1 s later the first stalled queue is taken back into `pending` (the other
            // worker still counts as serving), where it waits: the other queue is full. The rest wait in the backlog.
            #expect(waitUntil { ((try? setup.status())?["stolen"] as? Int) == 2 }, "\(server.stderr)")
            server.signal(SIGUSR2)
            #expect(waitUntil { server.logCount("master upgraded in place") == 1 }, "\(server.stderr)")
            #expect(Deploys.executable(server.pid).path == setup.path)
            for worker in workers { kill(worker, SIGCONT) }
            for (index, connection) in connections.enumerated() {
                let response = try connection.readResponse()
                #expect(response.status == 200, "connection \(index)")
            }
            server.stopAndCheckNoOrphans()
        }
    }
}
