import CSwitchboardLinux
import Foundation
import SwitchboardTestSupport
import Testing

/// Debian's haproxy, where it is installed (`Scripts/bootstrap.sh haproxy`).
let haproxyBinary: String? = ["/usr/sbin/haproxy", "/usr/bin/haproxy"].first {
    FileManager.default.isExecutableFile(atPath: $0)
}

extension EndToEndTests {
    /// Past one machine: two Switchboard hosts behind a real HAProxy that asks each one's agent.
    @Suite(.enabled(if: haproxyBinary != nil, "haproxy is not installed: run 'bash Scripts/bootstrap.sh haproxy'"))
    struct Fleet {
        /// A port nothing listens on now (bound to 0, then released).
        static func freePort() throws -> Int {
            var bound: CInt = 0
            var family: CInt = 0
            let fd = sb_tcp_listen("127.0.0.1", 0, 1, 0, 1, &bound, &family)
            guard fd >= 0 else { throw ProbeError.io("cannot find a free port") }
            close(fd)
            return Int(bound)
        }

        struct Host {
            let port: Int
            let health: Int

            func start(_ extra: [String] = []) throws -> SwitchboardProcess {
                let server = try SwitchboardProcess(
                    arguments: [
                        "--host", "127.0.0.1", "--port", "\(port)", "--workers", "2",
                        "--health", "127.0.0.1:\(health)", "--shutdown-delay", "1.5",
                    ] + extra)
                try server.waitForReady()
                return server
            }
        }

        /// HAProxy's own view of a server, from its stats socket: `UP`, `DRAIN`, `DOWN`, …
        static func status(of server: String, socket: String) -> String? {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            process.arguments = [
                "-c",
                "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.settimeout(2)\ns.connect(sys.argv[1])\n"
                    + "s.sendall(b'show stat\\n')\nprint(s.makefile().read())",
                socket,
            ]
            let output = Pipe()
            process.standardOutput = output
            process.standardError = FileHandle.nullDevice
            guard (try? process.run()) != nil else { return nil }
            let data = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
                let fields = line.split(separator: ",", omittingEmptySubsequences: false)
                if fields.count > 17, fields[0] == "be", fields[1] == server { return String(fields[17]) }
            }
            return nil
        }

        /// Requests through HAProxy, one connection each, on a thread of its own until stopped.
        final class ClientLoop: @unchecked Sendable {
            // @unchecked: the counters are only touched under `lock`.
            private let lock = NSLock()
            private var running = true
            private(set) var answered = 0
            private(set) var failures: [String] = []
            private var pids: Set<pid_t> = []
            private let done = DispatchSemaphore(value: 0)

            init(port: Int) {
                Thread.detachNewThread { [self] in
                    while lock.withLock({ running }) {
                        do {
                            let response = try get(port: port)
                            lock.withLock {
                                if response.status == 200 {
                                    answered += 1
                                    if let pid = response.workerPID { pids.insert(pid) }
                                } else {
                                    failures.append("status \(response.status)")
                                }
                            }
                        } catch {
                            lock.withLock { failures.append("\(error)") }
                        }
                    }
                    done.signal()
                }
            }

            func stop() -> (answered: Int, failures: [String], workers: Int) {
                lock.withLock { running = false }
                done.wait()
                return lock.withLock { (answered, failures, pids.count) }
            }

            var count: Int { lock.withLock { answered } }
        }

        @Test func twoHostsBehindHAProxyLoseNoRequestThroughAStopARestartAndAReload() throws {
            let haproxy = try #require(haproxyBinary)
            let a = Host(port: try Self.freePort(), health: try Self.freePort())
            let b = Host(port: try Self.freePort(), health: try Self.freePort())
            let front = try Self.freePort()
            var hostA = try a.start()
            let hostB = try b.start()
            defer {
                hostA.cleanUp()
                hostB.cleanUp()
            }
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-fleet-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let socket = directory.appendingPathComponent("stats.sock").path
            let config = """
                global
                    stats socket \(socket) mode 600 level admin
                    maxconn 512
                defaults
                    mode http
                    timeout connect 1s
                    timeout client 10s
                    timeout server 10s
                    retries 3
                    option redispatch
                frontend fe
                    bind 127.0.0.1:\(front)
                    default_backend be
                backend be
                    balance roundrobin
                    option httpchk GET /livez
                    default-server check inter 200 fall 1 rise 1 agent-check agent-inter 200 agent-send "agent\\n"
                    server a 127.0.0.1:\(a.port) port \(a.health) agent-port \(a.health)
                    server b 127.0.0.1:\(b.port) port \(b.health) agent-port \(b.health)

                """
            let configPath = directory.appendingPathComponent("haproxy.cfg").path
            try config.write(toFile: configPath, atomically: true, encoding: .utf8)
            let balancer = Process()
            balancer.executableURL = URL(fileURLWithPath: haproxy)
            balancer.arguments = ["-f", configPath, "-db"]
            balancer.standardOutput = FileHandle.nullDevice
            balancer.standardError = FileHandle.nullDevice
            try balancer.run()
            defer {
                kill(balancer.processIdentifier, SIGTERM)
                balancer.waitUntilExit()
            }
            #expect(waitUntil(timeout: .seconds(10)) {
                Self.status(of: "a", socket: socket) == "UP" && Self.status(of: "b", socket: socket) == "UP"
            }, "haproxy never saw both hosts up")

            let clients = ClientLoop(port: front)
            #expect(waitUntil { clients.count >= 50 })

            // A stops gracefully: its agent says drain for the shutdown delay, HAProxy stops sending to it, then it
            // drains and exits; B serves everything meanwhile.
            hostA.signal(SIGTERM)
            var sawDrain = false
            let drained = waitUntil(timeout: .seconds(5)) {
                // With the agent's word: "DRAIN (agent)".
                if Self.status(of: "a", socket: socket)?.hasPrefix("DRAIN") == true { sawDrain = true }
                return !ProcFS.isAlive(hostA.pid)
            }
            #expect(drained && sawDrain, "HAProxy saw A in DRAIN before it went away: \(sawDrain)")
            #expect(hostA.waitForExit() == 0)
            let beforeRestart = clients.count

            // A comes back on the same ports and HAProxy takes it in again once /readyz says so.
            hostA.cleanUp()
            hostA = try a.start()
            #expect(waitUntil(timeout: .seconds(10)) { Self.status(of: "a", socket: socket) == "UP" })

            // A reloads under load: every worker replaced, nothing refused.
            hostA.signal(SIGHUP)
            #expect(hostA.waitForLog("rolling reload finished"), "\(hostA.stderr)")
            #expect(waitUntil { clients.count >= beforeRestart + 200 })
            let result = clients.stop()
            print("fleet: \(result.answered) requests answered through HAProxy, \(result.failures.count) failed, \(result.workers) worker pids")
            #expect(result.failures.isEmpty, "failed requests: \(result.failures.prefix(5))")
            #expect(result.answered >= 300)
            hostA.stopAndCheckNoOrphans()
            hostB.stopAndCheckNoOrphans()
        }
    }
}
