import CSwitchboardLinux
import Foundation
import SwitchboardTestSupport
import Testing

extension EndToEndTests {
    /// `switchboard status | reload | scale | stop` over the master's control socket.
    @Suite struct Control {
        static func socketPath() -> String {
            FileManager.default.temporaryDirectory.appendingPathComponent("sb-\(UUID().uuidString.prefix(8)).sock").path
        }

        struct Outcome {
            var status: Int32?
            var stdout: String
            var stderr: String
        }

        /// Runs `switchboard <arguments> --control-socket <path>` as a client process.
        static func client(_ arguments: [String], socket: String, user: String? = nil) throws -> Outcome {
            let process = try SwitchboardProcess(arguments: arguments + ["--control-socket", socket], user: user)
            defer { process.cleanUp() }
            let status = process.waitForExit(timeout: .seconds(20))
            return Outcome(status: status, stdout: process.stdout, stderr: process.stderr)
        }

        /// Sends raw bytes on the socket and reads the answer.
        static func raw(_ bytes: [UInt8], socket: String) -> String {
            let fd = sb_unix_connect(socket)
            guard fd >= 0 else { return "connect failed: errno \(errno)" }
            defer { close(fd) }
            if !bytes.isEmpty { _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) } }
            shutdown(fd, Int32(SHUT_WR))
            var answer: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
                if count <= 0 { break }
                answer += chunk[0..<count]
            }
            return String(decoding: answer, as: UTF8.self)
        }

        @Test func statusShowsTheMasterAndEveryWorkerAsATableAndAsJSON() throws {
            let socket = Self.socketPath()
            let server = try SwitchboardProcess.start(["--workers", "2", "--control-socket", socket])
            defer { server.cleanUp() }
            for _ in 0..<10 { _ = try get(port: server.port) }
            var mode = stat()
            #expect(stat(socket, &mode) == 0 && mode.st_mode & 0o777 == 0o600, "socket mode \(String(mode.st_mode & 0o777, radix: 8))")

            let table = try Self.client(["status"], socket: socket)
            #expect(table.status == 0, "\(table.stderr)")
            #expect(table.stdout.contains("round-robin on port \(server.port)"), "\(table.stdout)")
            #expect(table.stdout.contains("workers 2/2 ready"))
            for pid in server.workerPIDs { #expect(table.stdout.contains(" \(pid) "), "\(table.stdout)") }

            let json = try Self.client(["status", "--json"], socket: socket)
            #expect(json.status == 0)
            let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
            #expect(object["targetWorkers"] as? Int == 2 && object["readyWorkers"] as? Int == 2)
            #expect(object["pid"] as? Int == Int(server.pid))
            #expect(object["backlogLimit"] as? Int == 511, "the listener's own accept-queue limit: \(object)")
            #expect((object["dispatched"] as? Int ?? 0) >= 10)
            let workers = try #require(object["workers"] as? [[String: Any]])
            #expect(Set(workers.compactMap { $0["pid"] as? Int }) == Set(server.workerPIDs.map(Int.init)))
            #expect(workers.allSatisfy { $0["state"] as? String == "ready" && ($0["residentBytes"] as? Int ?? 0) > 0 })
            #expect(workers.compactMap { $0["dispatched"] as? Int }.reduce(0, +) >= 10)
            server.stopAndCheckNoOrphans()
        }

        /// Signals coalesce (a burst of TTIN adds what the kernel delivered); the socket is exact.
        @Test func scaleIsExact() throws {
            let socket = Self.socketPath()
            let server = try SwitchboardProcess.start(["--workers", "2", "--control-socket", socket])
            defer { server.cleanUp() }
            #expect(try Self.client(["scale", "5"], socket: socket).stdout == "workers: 2 -> 5\n")
            #expect(waitUntil { server.workerPIDs.count == 5 && server.logCount("worker ready") == 5 })
            #expect(try Self.client(["scale", "-3"], socket: socket).stdout == "workers: 5 -> 2\n")
            #expect(waitUntil { server.workerPIDs.count == 2 }, "\(server.workerPIDs)")
            #expect(try Self.client(["scale", "+1"], socket: socket).stdout == "workers: 2 -> 3\n")
            #expect(waitUntil { server.workerPIDs.count == 3 })
            let zero = try Self.client(["scale", "0"], socket: socket)
            #expect(zero.status == 64, "\(zero)")
            #expect(zero.stderr.hasPrefix("switchboard: scale 0: pass a worker count from 1 to 1024"), "\(zero.stderr)")
            #expect(try Self.client(["scale", "-9"], socket: socket).stderr.contains("at least one worker stays"))
            #expect(server.workerPIDs.count == 3)
            server.stopAndCheckNoOrphans()
        }

        /// `--workers` stops at 1024 and so does scaling: a scale past it is one error line that names the limit, and
        /// nothing changes.
        @Test func scalingPastTheWorkerLimitIsAnErrorAndChangesNothing() throws {
            let socket = Self.socketPath()
            let server = try SwitchboardProcess.start(["--workers", "2", "--control-socket", socket])
            defer { server.cleanUp() }
            let workers = server.workerPIDs
            let over = try Self.client(["scale", "+1023"], socket: socket)
            #expect(over.status == 1, "\(over)")
            #expect(over.stdout.isEmpty)
            #expect(
                over.stderr
                    == "switchboard: scale +1023 would make 1025 workers: at most 1024 may run (the target is 2)\n",
                "\(over.stderr)")
            let raw = Self.raw(Array("scale 1025\n".utf8), socket: socket)
            #expect(raw.hasPrefix("error: scale 1025: pass a worker count from 1 to 1024"), "\(raw)")
            let status = try Self.client(["status", "--json"], socket: socket)
            let object = try #require(
                try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])
            #expect(object["targetWorkers"] as? Int == 2, "\(status.stdout)")
            #expect(server.workerPIDs == workers)
            #expect(try Self.client(["scale", "+2"], socket: socket).stdout == "workers: 2 -> 4\n")
            server.stopAndCheckNoOrphans()
        }

        @Test func reloadAndStopOverTheSocket() throws {
            let socket = Self.socketPath()
            let server = try SwitchboardProcess.start(["--workers", "2", "--control-socket", socket])
            defer { server.cleanUp() }
            let before = Set(server.workerPIDs)
            #expect(try Self.client(["reload"], socket: socket).stdout == "rolling reload to generation 2 started\n")
            #expect(server.waitForLog("rolling reload finished"))
            #expect(waitUntil { Set(server.workerPIDs).isDisjoint(with: before) && server.workerPIDs.count == 2 })
            #expect(try Self.client(["stop"], socket: socket).stdout == "stopping gracefully\n")
            #expect(server.waitForExit() == 0)
            #expect(!FileManager.default.fileExists(atPath: socket), "the socket file is removed at exit")
            let gone = try Self.client(["status"], socket: socket)
            #expect(gone.status == 1)
            #expect(gone.stderr.hasPrefix("switchboard: cannot reach a master at \(socket): "), "\(gone.stderr)")
        }

        @Test func badCommandsGetAnErrorLineAndTheMasterKeepsServing() throws {
            let socket = Self.socketPath()
            let server = try SwitchboardProcess.start(["--workers", "1", "--control-socket", socket])
            defer { server.cleanUp() }
            #expect(Self.raw(Array("dance\n".utf8), socket: socket).hasPrefix("error: unknown command 'dance'"))
            #expect(Self.raw([UInt8](repeating: 0x41, count: 5000), socket: socket) == "error: command longer than 256 bytes\n")
            #expect(Self.raw(Array("scale 1 2\n".utf8), socket: socket).hasPrefix("error: unknown command"))
            #expect(Self.raw([0, 255, 10], socket: socket).hasPrefix("error: unknown command"))
            #expect(Self.raw([], socket: socket) == "error: no command (end the line with a newline)\n")
            #expect(try Self.client(["status"], socket: socket).status == 0)
            #expect(try get(port: server.port).status == 200)
            server.stopAndCheckNoOrphans()
        }

        /// Reads what the master writes on `fd` until it closes the connection, for at most `timeout` seconds: the
        /// answer, and whether the master closed it in that time.
        static func answer(_ fd: CInt, within timeout: Double) -> (text: String, closed: Bool) {
            let deadline = Date().addingTimeInterval(timeout)
            var answer: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 512)
            while true {
                let left = Int32(max(0, deadline.timeIntervalSinceNow * 1000))
                var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&poller, 1, left) == 1 else { return (String(decoding: answer, as: UTF8.self), false) }
                let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
                if count <= 0 { return (String(decoding: answer, as: UTF8.self), true) }
                answer += chunk[0..<count]
            }
        }

        /// A client that sends half a command and then nothing holds one of the 16 places for 2 seconds, not for
        /// ever: it is told so and closed. While all 16 are held, one more client is turned away at once with an
        /// error line, and afterwards the master holds no more descriptors than before.
        @Test func silentClientsAreCutAfterTwoSecondsAndTheSeventeenthIsTurnedAway() throws {
            let socket = Self.socketPath()
            let server = try SwitchboardProcess.start(["--workers", "1", "--control-socket", socket])
            defer { server.cleanUp() }
            #expect(try Self.client(["status"], socket: socket).status == 0)
            let descriptors = ProcFS.descriptorCount(server.pid)
            var held: [CInt] = []
            defer { for fd in held { close(fd) } }
            let connected = Date()
            for _ in 0..<16 {
                let fd = sb_unix_connect(socket)
                try #require(fd >= 0, "connect: errno \(errno)")
                _ = Array("sta".utf8).withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
                held.append(fd)
            }
            #expect(waitUntil(timeout: .seconds(2)) { ProcFS.descriptorCount(server.pid) >= descriptors + 16 })

            let extra = sb_unix_connect(socket)
            try #require(extra >= 0, "connect: errno \(errno)")
            let turnedAway = Self.answer(extra, within: 1)
            close(extra)
            #expect(turnedAway.text == "error: too many control clients at once; try again\n", "\(turnedAway)")
            #expect(turnedAway.closed, "the seventeenth client was not closed at once")

            for fd in held {
                let cut = Self.answer(fd, within: 6)
                #expect(cut.text == "error: no command within 2 seconds\n", "\(cut)")
                #expect(cut.closed)
            }
            let waited = Date().timeIntervalSince(connected)
            #expect(waited >= 1.9 && waited < 5, "the silent clients were cut after \(waited) s")
            #expect(waitUntil(timeout: .seconds(2)) { ProcFS.descriptorCount(server.pid) == descriptors },
                    "the master holds \(ProcFS.descriptorCount(server.pid)) descriptors, \(descriptors) before")
            #expect(try Self.client(["status"], socket: socket).status == 0)
            #expect(try get(port: server.port).status == 200)
            server.stopAndCheckNoOrphans()
        }

        /// Out of descriptors, the control socket pauses its accepts as the TCP listeners do (its backlog holds the
        /// clients) instead of spinning on EMFILE; once the clients close, `switchboard status` works again.
        @Test func clientsPastTheDescriptorLimitPauseAcceptingInsteadOfSpinning() throws {
            let socket = Self.socketPath()
            let limit = 24
            let server = try SwitchboardProcess.start(
                ["--workers", "1", "--control-socket", socket], descriptorLimit: limit)
            defer { server.cleanUp() }
            #expect(try Self.client(["status"], socket: socket).status == 0)
            // Silent clients: the master holds each (up to 2 s) and runs out of descriptors before its cap of 16
            // clients would turn the next ones away; 4 more wait in the backlog.
            let free = limit - ProcFS.descriptorCount(server.pid)
            try #require(free > 0 && free < 16, "the master holds \(limit - free) descriptors: change the limit")
            var held: [CInt] = []
            defer { for fd in held { close(fd) } }
            for _ in 0..<(free + 4) {
                let fd = sb_unix_connect(socket)
                try #require(fd >= 0, "connect: errno \(errno)")
                held.append(fd)
            }
            #expect(waitUntil(timeout: .seconds(1)) { ProcFS.descriptorCount(server.pid) >= limit - 1 })
            let before = try #require(ProcFS.cpuSeconds(server.pid))
            Thread.sleep(forTimeInterval: 1)
            let spent = try #require(ProcFS.cpuSeconds(server.pid)) - before
            #expect(spent < 0.3, "the master used \(spent) s of CPU in 1 s at EMFILE")
            #expect(server.logCount("pausing control accepts") >= 1, "\(server.stderr)")
            for fd in held { close(fd) }  // the clients go away
            held.removeAll()
            #expect(waitUntil(timeout: .seconds(10)) { (try? Self.client(["status"], socket: socket))?.status == 0 })
            let status = try Self.client(["status"], socket: socket)
            #expect(status.stdout.contains("workers 1/1 ready"), "\(status)")
            #expect(server.logCount("control socket: accepting clients again") >= 1, "\(server.stderr)")
            server.stopAndCheckNoOrphans()
        }

        /// The socket is 0600; opened wider by mistake, the master still checks the peer's uid.
        @Test(.enabled(if: getuid() == 0, "needs root to run a client as nobody"))
        func aClientWithAnotherUidIsRefused() throws {
            let socket = Self.socketPath()
            let server = try SwitchboardProcess.start(["--workers", "1", "--control-socket", socket])
            defer { server.cleanUp() }
            let denied = try Self.client(["status"], socket: socket, user: "65534")
            #expect(denied.status == 1)
            #expect(denied.stderr.contains("Permission denied"), "\(denied.stderr)")
            chmod(socket, 0o666)
            let refused = try Self.client(["status"], socket: socket, user: "65534")
            #expect(refused.status == 1)
            #expect(
                refused.stderr == "switchboard: uid 65534 may not control this master: only uid 0 and root may\n",
                "\(refused.stderr)")
            #expect(server.logCount("control socket: refused a client with uid 65534") == 1)
            #expect(try Self.client(["status"], socket: socket).status == 0)
            server.stopAndCheckNoOrphans()
        }
    }
}
