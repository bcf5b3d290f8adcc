import Foundation
import SwitchboardTestSupport
import Testing

/// Deploying as users do: a new build renamed over the old file (`install`, `mv`, package managers) or a `current`
/// symbolic link switched to a new release, then a reload. Every worker started afterwards runs the file on disk.
extension EndToEndTests {
    @Suite struct Deploy {
        /// The deploy of issue 18: the master started by name through `PATH`, the file replaced by rename. A worker
        /// restarted after a crash, a worker added by scaling and every worker of the reload run the new file, none
        /// `(deleted)`.
        @Test func aBuildRenamedOverTheOldIsWhatRestartsScalingAndReloadsRun() throws {
            let directory = try Deploys.folder()
            defer { try? FileManager.default.removeItem(at: directory) }
            let path = directory.appendingPathComponent("switchboard").path
            try Deploys.writeBuild(of: SwitchboardProcess.binary, marker: "release 1", at: path)
            // Started by name, as a shell or an init script does: argv[0] is "switchboard", found through PATH.
            let server = try SwitchboardProcess(
                arguments: ["-c", "exec switchboard --host 127.0.0.1 --port 0 --workers 2 --drain-timeout 5"],
                environment: ["PATH": "\(directory.path):/usr/bin:/bin"], executable: "/bin/sh")
            defer { server.cleanUp() }
            try server.waitForReady()
            #expect(server.stderr.contains("workers start from \(path)"), "\(server.stderr)")
            let first = Set(server.workerPIDs)
            #expect(first.count == 2)

            let release2 = try Deploys.deploy(over: path) { try Deploys.writeBuild(of: SwitchboardProcess.binary, marker: "release 2", at: $0) }
            // A crash after the deploy: the replacement is the new build.
            let crashed = try #require(first.first)
            kill(crashed, SIGKILL)
            var replacement: pid_t?
            #expect(waitUntil {
                replacement = server.workerPIDs.first { !first.contains($0) }
                return replacement.map { Deploys.executable($0).inode == release2 } ?? false
            }, "replacement runs \(replacement.map { Deploys.executable($0).path } ?? "nothing")")
            // Scaling up after the deploy: the new build.
            server.signal(SIGTTIN)
            var added: [pid_t] = []
            #expect(waitUntil {
                added = server.workerPIDs.filter { !first.contains($0) && $0 != replacement }
                return added.count == 1 && Deploys.executable(added[0]).inode == release2
            }, "added: \(added.map { Deploys.executable($0).path })")

            // The reload: every worker runs the new file.
            let before = Set(server.workerPIDs)
            server.signal(SIGHUP)
            let after = Deploys.waitForWorkers(of: server, count: 3, notIn: before, runningInode: release2)
            #expect(after.count == 3, "workers \(after.map { Deploys.executable($0) })\n\(server.stderr)")
            for worker in after {
                let running = Deploys.executable(worker)
                #expect(running.path == path, "worker \(worker) runs \(running.path)")
                #expect(!running.path.hasSuffix("(deleted)"))
            }
            #expect(after.contains(try #require(try get(port: server.port).workerPID)))
            server.stopAndCheckNoOrphans()
        }

        /// A deploy that switches a `current` link to a new release folder: the master was started through the
        /// link (symbolic links are kept in the launch path), so the reload runs the release the link names now.
        @Test func aReloadFollowsACurrentLinkSwitchedToANewRelease() throws {
            let base = try Deploys.folder()
            defer { try? FileManager.default.removeItem(at: base) }
            let fileManager = FileManager.default
            for release in ["release-1", "release-2"] {
                try fileManager.createDirectory(at: base.appendingPathComponent(release), withIntermediateDirectories: true)
                try Deploys.writeBuild(
                    of: SwitchboardProcess.binary, marker: release,
                    at: base.appendingPathComponent("\(release)/switchboard").path)
            }
            let current = base.appendingPathComponent("current").path
            try fileManager.createSymbolicLink(atPath: current, withDestinationPath: "release-1")
            let server = try SwitchboardProcess.start(["--workers", "2", "--drain-timeout", "5"], executable: current + "/switchboard")
            defer { server.cleanUp() }
            let before = Set(server.workerPIDs)
            let release1 = try #require(Deploys.inode(base.appendingPathComponent("release-1/switchboard").path))
            #expect(before.allSatisfy { Deploys.executable($0).inode == release1 })

            // Switch the link atomically, as deploy tools do (a new link renamed over the old one).
            try fileManager.createSymbolicLink(atPath: current + ".new", withDestinationPath: "release-2")
            #expect(rename(current + ".new", current) == 0)
            let release2 = try #require(Deploys.inode(base.appendingPathComponent("release-2/switchboard").path))
            server.signal(SIGHUP)
            let after = Deploys.waitForWorkers(of: server, count: 2, notIn: before, runningInode: release2)
            #expect(after.count == 2, "workers \(after.map { Deploys.executable($0) })\n\(server.stderr)")
            for worker in after {
                #expect(Deploys.executable(worker).path == base.appendingPathComponent("release-2/switchboard").path)
            }
            server.stopAndCheckNoOrphans()
        }

        /// The same for a program that embeds the library: the NIO example's workers are the example itself.
        @Test func anEmbeddingProgramsReloadRunsItsNewBuild() throws {
            let directory = try Deploys.folder()
            defer { try? FileManager.default.removeItem(at: directory) }
            let path = directory.appendingPathComponent("switchboard-nio-example").path
            let example = SwitchboardProcess.sibling("switchboard-nio-example")
            try Deploys.writeBuild(of: example, marker: "release 1", at: path)
            let server = try SwitchboardProcess.start(["--workers", "2"], executable: path)
            defer { server.cleanUp() }
            let before = Set(server.workerPIDs)
            #expect(before.count == 2)
            let release2 = try Deploys.deploy(over: path) { try Deploys.writeBuild(of: example, marker: "release 2", at: $0) }
            server.signal(SIGHUP)
            let after = Deploys.waitForWorkers(of: server, count: 2, notIn: before, runningInode: release2)
            #expect(after.count == 2, "workers \(after.map { Deploys.executable($0) })\n\(server.stderr)")
            #expect(after.allSatisfy { !Deploys.executable($0).path.hasSuffix("(deleted)") })
            server.stopAndCheckNoOrphans()
        }

        /// Broken deploys: a build that exits at start, one that never becomes ready, and one that speaks another
        /// channel protocol. Each reload aborts with one line naming the file and what went wrong, and the old
        /// workers keep serving.
        @Test func aBrokenNewBuildAbortsTheReloadWithOneLineAndTheOldWorkersServe() throws {
            let directory = try Deploys.folder()
            defer { try? FileManager.default.removeItem(at: directory) }
            let path = directory.appendingPathComponent("switchboard").path
            try Deploys.writeBuild(of: SwitchboardProcess.binary, marker: "good", at: path)
            let server = try SwitchboardProcess.start(
                ["--workers", "2", "--ready-timeout", "1.5", "--drain-timeout", "5"], executable: path)
            defer { server.cleanUp() }
            let serving = Set(server.workerPIDs)
            #expect(serving.count == 2)

            func reloadAborts(because why: String, attempt: Int) {
                let expected = "rolling reload aborted: the new worker from \(path) \(why)"
                server.signal(SIGHUP)
                #expect(waitUntil { server.logCount("rolling reload aborted") == attempt }, "\(server.stderr)")
                #expect(server.stderr.contains(expected), "expected «\(expected)» in\n\(server.stderr)")
                #expect(Set(server.workerPIDs) == serving, "the old workers keep serving")
                for _ in 0..<6 { #expect(serving.contains((try? get(port: server.port).workerPID) ?? -1)) }
            }

            _ = try Deploys.deploy(over: path) { try Deploys.writeScript("#!/bin/sh\nexit 3\n", at: $0) }
            reloadAborts(because: "exited with code 3 before it was ready", attempt: 1)

            _ = try Deploys.deploy(over: path) { try Deploys.writeScript("#!/bin/sh\nexec sleep 30\n", at: $0) }
            reloadAborts(because: "was not ready within 1.5 seconds", attempt: 2)

            // A build of the first protocol: its hello's header says version 1.
            let oldProtocol = """
                #!/usr/bin/env python3
                import os, struct, time
                os.write(3, struct.pack("<BBHIQi", 1, 1, 0, 4, 0, os.getpid()))
                time.sleep(30)

                """
            _ = try Deploys.deploy(over: path) { try Deploys.writeScript(oldProtocol, at: $0) }
            reloadAborts(because: "was refused: it speaks channel protocol 1 and this master speaks 2", attempt: 3)
            #expect(server.logCount("speaks channel protocol 1 and this master speaks 2: refused") == 1)
            #expect(server.workerPIDs.count == 2)
            server.stopAndCheckNoOrphans()
        }

        /// `switchboard status` shows the master's build and each worker's, and the file workers start from.
        @Test func statusShowsEachWorkersBuildAndTheFileWorkersStartFrom() throws {
            let socket = EndToEndTests.Control.socketPath()
            let server = try SwitchboardProcess.start(["--workers", "2", "--control-socket", socket])
            defer { server.cleanUp() }
            let table = try EndToEndTests.Control.client(["status"], socket: socket)
            #expect(table.status == 0, "\(table.stderr)")
            #expect(table.stdout.contains("workers start from \(SwitchboardProcess.binary)"), "\(table.stdout)")
            let json = try EndToEndTests.Control.client(["status", "--json"], socket: socket)
            let status = try JSONDecoder().decode(StatusBuilds.self, from: Data(json.stdout.utf8))
            #expect(status.workers.count == 2)
            #expect(status.workers.allSatisfy { $0.build == status.build }, "\(json.stdout)")
            #expect(status.build.contains("+"), "a build id tells two builds of one version apart: \(status.build)")
            for worker in status.workers {
                #expect(table.stdout.contains(status.build) && table.stdout.contains("\(worker.pid)"))
            }
            server.stopAndCheckNoOrphans()
        }

        struct StatusBuilds: Decodable {
            struct Worker: Decodable {
                var pid: Int32
                var build: String?
            }
            var build: String
            var workers: [Worker]
        }
    }
}
