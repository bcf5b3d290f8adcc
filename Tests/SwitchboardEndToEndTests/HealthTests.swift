import CSwitchboardLinux
import Foundation
import SwitchboardTestSupport
import Testing

extension EndToEndTests {
    /// What load balancers ask the master: /livez, /readyz and HAProxy's agent-check.
    @Suite struct Health {
        /// The port the master bound for `--health` or `--agent`, from its log line.
        static func port(_ server: SwitchboardProcess, _ kind: String) -> Int? {
            let line = server.stderr.split(separator: "\n").first { $0.contains("health.kind=\(kind) ") }
            guard let field = line?.split(separator: " ").first(where: { $0.hasPrefix("health.port=") }) else { return nil }
            return Int(field.dropFirst("health.port=".count))
        }

        /// Connects, sends `text` (nothing when empty) and reads until the master closes.
        static func ask(_ port: Int, _ text: String = "") throws -> String {
            let connection = try TestConnection(port: port, timeoutSeconds: 5)
            if !text.isEmpty { try connection.send(text) }
            return connection.readToEnd()
        }

        static func status(_ port: Int, _ path: String) throws -> String {
            let answer = try ask(port, "GET \(path) HTTP/1.1\r\nHost: lb\r\n\r\n")
            return answer.components(separatedBy: "\r\n").first ?? ""
        }

        @Test func readyzTurns503ForTheShutdownDelayWhileServingGoesOn() throws {
            let server = try SwitchboardProcess.start(
                ["--workers", "2", "--health", "127.0.0.1:0", "--shutdown-delay", "2"])
            defer { server.cleanUp() }
            let health = try #require(Self.port(server, "--health"), "\(server.stderr)")
            #expect(try Self.status(health, "/livez") == "HTTP/1.1 200 OK")
            #expect(try Self.status(health, "/readyz") == "HTTP/1.1 200 OK")
            #expect(try Self.status(health, "/nothing") == "HTTP/1.1 404 Not Found")

            let clock = ContinuousClock()
            let start = clock.now
            server.signal(SIGTERM)
            #expect(waitUntil(timeout: .seconds(1)) { (try? Self.status(health, "/readyz")) == "HTTP/1.1 503 Service Unavailable" })
            #expect(try Self.ask(health, "GET /readyz HTTP/1.1\r\n\r\n").hasSuffix("\r\n\r\ndraining\n"))
            #expect(try Self.status(health, "/livez") == "HTTP/1.1 200 OK", "the loop still turns")
            // Nothing is refused during the delay: the workers still serve and no drain has begun.
            for _ in 0..<10 { #expect(try get(port: server.port).status == 200) }
            #expect(server.logCount("worker draining") == 0)
            #expect(server.waitForExit(timeout: .seconds(20)) == 0, "\(server.stderr)")
            #expect(clock.now - start >= .seconds(2), "the drain began only after the delay")
            #expect(server.logCount("stop announced") == 1)
        }

        @Test func theAgentCheckAnswersWeightDrainAndDown() throws {
            let hooks = try HookFile("")
            let server = try SwitchboardProcess.start(
                ["--workers", "2", "--test-hooks", "--health", "127.0.0.1:0", "--agent", "127.0.0.1:0",
                 "--shutdown-delay", "5"],
                environment: ["SWITCHBOARD_TEST_HOOK_FILE": hooks.path])
            defer { server.cleanUp() }
            let health = try #require(Self.port(server, "--health"))
            let agent = try #require(Self.port(server, "--agent"))
            #expect(try Self.ask(agent) == "up ready 100%\n", "the agent port answers on connect")
            #expect(try Self.ask(health, "agent\n") == "up ready 100%\n", "HAProxy's agent-send line")
            #expect(try Self.ask(health) == "up ready 100%\n", "a silent prober is an agent-check too")

            // One worker is lost and its replacement never becomes ready: half the target is ready.
            try hooks.write("never-ready")
            let workers = server.workerPIDs
            kill(workers[0], SIGKILL)
            #expect(waitUntil { (try? Self.ask(agent)) == "up ready 50%\n" }, "\(server.stderr)")
            #expect(try Self.status(health, "/readyz") == "HTTP/1.1 200 OK")
            kill(workers[1], SIGKILL)
            #expect(waitUntil { (try? Self.ask(agent)) == "down\n" }, "\(server.stderr)")
            #expect(try Self.status(health, "/readyz") == "HTTP/1.1 503 Service Unavailable")
            try hooks.write("")
            #expect(waitUntil(timeout: .seconds(30)) { (try? Self.ask(agent)) == "up ready 100%\n" }, "\(server.stderr)")

            server.signal(SIGTERM)
            #expect(waitUntil(timeout: .seconds(1)) { (try? Self.ask(agent)) == "drain\n" })
            #expect(try Self.ask(health, "agent\n") == "drain\n")
            server.signal(SIGTERM)  // a second one skips the rest of the delay
            #expect(server.waitForExit(timeout: .seconds(20)) == 0, "\(server.stderr)")
        }

        /// Out of descriptors, the health listener pauses its accepts as the main listener does (the kernel backlog
        /// holds the probes) instead of spinning on EMFILE; once probes close it answers again.
        @Test func probesPastTheDescriptorLimitPauseAcceptingInsteadOfSpinning() throws {
            let limit = 48
            let server = try SwitchboardProcess.start(
                ["--workers", "1", "--health", "127.0.0.1:0"], descriptorLimit: limit)
            defer { server.cleanUp() }
            let health = try #require(Self.port(server, "--health"), "\(server.stderr)")
            #expect(try Self.status(health, "/livez") == "HTTP/1.1 200 OK")
            // Half a request each: the master holds them (up to 2 s) and runs out of descriptors; 16 more wait in
            // the backlog.
            let free = limit - ProcFS.descriptorCount(server.pid)
            var held = try (0..<(free + 16)).map { _ in
                let connection = try TestConnection(port: health, timeoutSeconds: 10)
                try connection.send("GET /livez HT")
                return connection
            }
            #expect(waitUntil(timeout: .seconds(1)) { ProcFS.descriptorCount(server.pid) >= limit - 1 })
            let before = try #require(ProcFS.cpuSeconds(server.pid))
            Thread.sleep(forTimeInterval: 1)
            let spent = try #require(ProcFS.cpuSeconds(server.pid)) - before
            #expect(spent < 0.3, "the master used \(spent) s of CPU in 1 s at EMFILE")
            #expect(server.logCount("pausing probe accepts") >= 1, "\(server.stderr)")
            held.removeAll()  // the clients close
            #expect(waitUntil(timeout: .seconds(10)) { (try? Self.status(health, "/livez")) == "HTTP/1.1 200 OK" })
            #expect(try get(port: server.port).status == 200)
            server.stopAndCheckNoOrphans()
        }

        @Test func aHealthAddressInUseIsAOneLineError() throws {
            var bound: CInt = 0
            var family: CInt = 0
            let taken = sb_tcp_listen("127.0.0.1", 0, 4, 0, 1, &bound, &family)
            try #require(taken >= 0)
            defer { close(taken) }
            let process = try SwitchboardProcess(arguments: ["--port", "0", "--health", "127.0.0.1:\(bound)"])
            defer { process.cleanUp() }
            #expect(process.waitForExit() == 69)
            #expect(process.stderr == "switchboard: --health 127.0.0.1:\(bound) is in use\n", "\(process.stderr)")
            #expect(ProcFS.workers(ofMaster: process.pid).isEmpty)

            let malformed = try SwitchboardProcess(arguments: ["--health", "localhost"])
            defer { malformed.cleanUp() }
            #expect(malformed.waitForExit() == 64)
            #expect(malformed.stderr.hasPrefix("switchboard: --health 'localhost' is not host:port"), "\(malformed.stderr)")
        }
    }
}
