import Foundation
import SwitchboardTestSupport
import Testing

extension EndToEndTests {
    /// `--metrics`: the master's figures in the Prometheus text format.
    @Suite struct Metrics {
        /// Scrapes `/metrics` and returns each sample by `name{label="value",…}` (labels sorted), and the raw text.
        static func scrape(_ port: Int) throws -> (samples: [String: Double], text: String) {
            let connection = try TestConnection(port: port, timeoutSeconds: 5)
            try connection.send("GET /metrics HTTP/1.1\r\nHost: prometheus\r\n\r\n")
            let answer = connection.readToEnd()
            let parts = answer.components(separatedBy: "\r\n\r\n")
            guard parts.count >= 2, parts[0].hasPrefix("HTTP/1.1 200 OK"),
                parts[0].contains("Content-Type: text/plain; version=0.0.4")
            else { throw ProbeError.malformed(answer) }
            let text = parts.dropFirst().joined(separator: "\r\n\r\n")
            var samples: [String: Double] = [:]
            for line in text.split(separator: "\n") where !line.hasPrefix("#") {
                guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                    throw ProbeError.malformed("line: \(line)")
                }
                var name = String(line[..<space])
                if let brace = name.firstIndex(of: "{") {
                    let labels = name[name.index(after: brace)..<name.index(before: name.endIndex)]
                        .split(separator: ",").map(String.init).sorted().joined(separator: ",")
                    name = String(name[..<brace]) + "{" + labels + "}"
                }
                samples[name] = value
            }
            return (samples, text)
        }

        @Test func countersMoveWithConnectionsKillsAndReloads() throws {
            let server = try SwitchboardProcess.start(
                ["--workers", "2", "--metrics", "127.0.0.1:0", "--heartbeat-interval", "0.1"])
            defer { server.cleanUp() }
            let port = try #require(Health.port(server, "--metrics"), "\(server.stderr)")
            let first = try Self.scrape(port).samples
            #expect(first["switchboard_info{mode=\"round-robin\",version=\"\(try versionString())\"}"] == 1, "\(first.keys.sorted())")
            #expect(first["switchboard_workers{state=\"ready\"}"] == 2)
            #expect(first["switchboard_workers{state=\"configured\"}"] == 2)
            #expect(first["switchboard_listen_queue_limit_connections"] == 511)
            #expect((first["process_open_fds"] ?? 0) > 5 && (first["process_max_fds"] ?? 0) > 64)
            #expect((first["process_start_time_seconds"] ?? 0) > Date().timeIntervalSince1970 - 120)

            for _ in 0..<40 { #expect(try get(port: server.port).status == 200) }
            let second = try Self.scrape(port).samples
            #expect(second["switchboard_connections_dispatched_total"]! - (first["switchboard_connections_dispatched_total"] ?? 0) == 40)
            #expect(second["switchboard_connections_accepted_total"]! - (first["switchboard_connections_accepted_total"] ?? 0) == 40)
            #expect(second["switchboard_dispatch_skew_ratio"] == 1, "round-robin: 20 and 20")
            #expect(second["switchboard_worker_queued_connections{slot=\"0\"}"] == 0, "all received: nothing waits")
            // The workers' own figures arrive with their heartbeats.
            #expect(waitUntil {
                let samples = (try? Self.scrape(port).samples) ?? [:]
                return (samples["switchboard_worker_handled_total{slot=\"0\"}"] ?? 0) + (samples["switchboard_worker_handled_total{slot=\"1\"}"] ?? 0) >= 40
            })
            #expect((second["switchboard_worker_resident_memory_bytes{slot=\"0\"}"] ?? 0) > 1_000_000)

            let victim = try #require(server.workerPIDs.first)
            kill(victim, SIGKILL)
            #expect(waitUntil {
                ((try? Self.scrape(port).samples)?["switchboard_worker_restarts_total{cause=\"killed_from_outside\"}"] ?? 0) == 1
            })
            server.signal(SIGHUP)
            #expect(server.waitForLog("rolling reload finished"))
            let third = try Self.scrape(port).samples
            #expect(third["switchboard_reloads_total{result=\"started\"}"] == 1)
            #expect(third["switchboard_reloads_total{result=\"finished\"}"] == 1)
            #expect(third["switchboard_reloads_total{result=\"aborted\"}"] == 0)
            #expect(third["switchboard_worker_restarts_total{cause=\"failed\"}"] == 0)
            server.stopAndCheckNoOrphans()
        }

        /// A connection stolen from a stopped worker's queue shows as taken back and re-dispatched.
        @Test func takenBackConnectionsAreCounted() throws {
            let server = try SwitchboardProcess.start(["--workers", "2", "--metrics", "127.0.0.1:0", "--steal-after", "0.1"])
            defer { server.cleanUp() }
            let port = try #require(Health.port(server, "--metrics"))
            let first = try #require(try get(port: server.port).workerPID)
            let stopped = try #require(server.workerPIDs.first { $0 != first })
            kill(stopped, SIGSTOP)
            defer { kill(stopped, SIGCONT) }
            for _ in 0..<4 { #expect(try get(port: server.port).workerPID == first) }
            let samples = try Self.scrape(port).samples
            #expect((samples["switchboard_connections_stolen_total"] ?? 0) >= 1, "\(samples)")
            #expect(samples["switchboard_connections_taken_back_total"] == samples["switchboard_connections_stolen_total"])
            #expect((samples["switchboard_connections_redispatched_total"] ?? 0) >= 1)
            kill(stopped, SIGCONT)
            server.stopAndCheckNoOrphans()
        }

        /// The samples of one per-slot metric, by slot.
        static func bySlot(_ name: String, _ samples: [String: Double]) -> [Int: Double] {
            var values: [Int: Double] = [:]
            for (series, value) in samples where series.hasPrefix(name + "{slot=\"") {
                if let slot = Int(series.dropFirst(name.count + 7).dropLast(2)) { values[slot] = value }
            }
            return values
        }

        static let perSlotCounters = [
            "switchboard_worker_handled_total", "switchboard_worker_connections_dispatched_total",
            "switchboard_worker_cpu_seconds_total",
        ]

        /// Waits until the workers' heartbeats report `requests` handled, then checks every per-slot counter against
        /// the previous scrape: none went back, and each slot in `serving` (the slots with a worker now, the only ones
        /// with per-slot gauges) rose. Returns the scrape.
        static func checkCounters(
            _ port: Int, requests: Int, serving: Set<Int>, previous: [String: Double],
            sourceLocation: SourceLocation = #_sourceLocation
        ) throws -> [String: Double] {
            var samples: [String: Double] = [:]
            let reported = waitUntil(timeout: .seconds(10)) {
                samples = (try? scrape(port).samples) ?? [:]
                return bySlot("switchboard_worker_handled_total", samples).values.reduce(0, +) >= Double(requests)
            }
            let handled = bySlot("switchboard_worker_handled_total", samples)
            #expect(reported, "handled by slot \(handled), not \(requests) in all", sourceLocation: sourceLocation)
            #expect(handled.values.reduce(0, +) == Double(requests), "\(handled)", sourceLocation: sourceLocation)
            let dispatched = bySlot("switchboard_worker_connections_dispatched_total", samples)
            #expect(
                dispatched.values.reduce(0, +) == samples["switchboard_connections_dispatched_total"],
                "dispatched by slot \(dispatched)", sourceLocation: sourceLocation)
            #expect(
                Set(bySlot("switchboard_worker_open_connections", samples).keys) == serving,
                "per-slot gauges only for the slots with a worker", sourceLocation: sourceLocation)
            for name in perSlotCounters {
                let before = bySlot(name, previous)
                let now = bySlot(name, samples)
                for (slot, value) in before {
                    #expect((now[slot] ?? -1) >= value, "\(name) slot \(slot): \(value) -> \(now[slot] ?? -1)",
                        sourceLocation: sourceLocation)
                }
                guard name != "switchboard_worker_cpu_seconds_total" else { continue }  // it ticks in 10 ms steps
                for slot in serving {
                    #expect((now[slot] ?? 0) > (before[slot] ?? 0), "\(name) slot \(slot) stayed at \(now[slot] ?? 0)",
                        sourceLocation: sourceLocation)
                }
            }
            return samples
        }

        /// A reload's new workers fill new slots, and the next reload refills the emptied ones: each slot's counters
        /// add the workers it had, so they keep rising (Prometheus counters never go back), while an emptied slot's
        /// gauges go away.
        @Test func perSlotCountersKeepRisingAcrossReloads() throws {
            let server = try SwitchboardProcess.start(
                ["--workers", "2", "--metrics", "127.0.0.1:0", "--heartbeat-interval", "0.1"])
            defer { server.cleanUp() }
            let port = try #require(Health.port(server, "--metrics"), "\(server.stderr)")
            var requests = 0
            var samples: [String: Double] = [:]
            // Before any reload slots 0 and 1; after one, 2 and 3; after a second, 0 and 1 again.
            for (round, serving) in [[0, 1], [2, 3], [0, 1]].enumerated() {
                if round > 0 {
                    let old = Set(server.workerPIDs)
                    server.signal(SIGHUP)
                    #expect(waitUntil { server.logCount("rolling reload finished") == round }, "\(server.stderr)")
                    #expect(waitUntil { Set(server.workerPIDs).isDisjoint(with: old) && server.workerPIDs.count == 2 })
                }
                for _ in 0..<10 { #expect(try get(port: server.port).status == 200) }
                requests += 10
                samples = try Self.checkCounters(port, requests: requests, serving: Set(serving), previous: samples)
            }
            server.stopAndCheckNoOrphans()
        }

        /// A worker killed from outside restarts in its slot; the slot's counters go on from the dead worker's.
        @Test func aRestartedWorkersSlotCountersGoOnFromItsPredecessors() throws {
            let server = try SwitchboardProcess.start(
                ["--workers", "2", "--metrics", "127.0.0.1:0", "--heartbeat-interval", "0.1"])
            defer { server.cleanUp() }
            let port = try #require(Health.port(server, "--metrics"), "\(server.stderr)")
            for _ in 0..<10 { #expect(try get(port: server.port).status == 200) }
            var samples = try Self.checkCounters(port, requests: 10, serving: [0, 1], previous: [:])
            let old = Set(server.workerPIDs)
            for victim in old { kill(victim, SIGKILL) }
            #expect(waitUntil { Set(server.workerPIDs).isDisjoint(with: old) && server.workerPIDs.count == 2 })
            #expect(waitUntil { ((try? Self.scrape(port).samples)?["switchboard_workers{state=\"ready\"}"] ?? 0) == 2 })
            for _ in 0..<10 { #expect(try get(port: server.port).status == 200) }
            samples = try Self.checkCounters(port, requests: 20, serving: [0, 1], previous: samples)
            #expect(samples["switchboard_worker_restarts_total{cause=\"killed_from_outside\"}"] == 2)
            server.stopAndCheckNoOrphans()
        }

        func versionString() throws -> String {
            let process = try SwitchboardProcess(arguments: ["--version"])
            defer { process.cleanUp() }
            _ = process.waitForExit()
            return process.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }

        /// `--defer-accept`: a client that connects and sends nothing stays in the kernel (the master has not accepted
        /// it while a later client is answered), and is served in full once it sends its request.
        @Test func deferAcceptHoldsASilentClientInTheKernelAndLosesNothing() throws {
            let server = try SwitchboardProcess.start(
                ["--workers", "1", "--metrics", "127.0.0.1:0", "--defer-accept", "5"])
            defer { server.cleanUp() }
            let port = try #require(Health.port(server, "--metrics"), "\(server.stderr)")
            let accepted = "switchboard_connections_accepted_total"
            let before = try Self.scrape(port).samples[accepted] ?? 0

            let silent = try TestConnection(port: server.port)
            // Connected first, so without the option the master accepts it before the request below.
            #expect(try get(port: server.port).status == 200)
            let meanwhile = try Self.scrape(port).samples[accepted] ?? 0
            #expect(meanwhile - before == 1, "the silent client was accepted: \(meanwhile - before) accepts")

            try silent.request()
            let response = try silent.readResponse()
            #expect(response.status == 200 && response.workerPID != nil, "\(response)")
            let after = try Self.scrape(port).samples[accepted] ?? 0
            #expect(after - before == 2)
        }

        /// A listener systemd passes may come deferring: its socket unit's `DeferAcceptSec=`, or what an earlier run's
        /// `--defer-accept` left on a socket unit's listener, which outlives the service. Without the flag it stays as
        /// it came and the master says so; `--defer-accept 0` turns it off, so taking the flag out of a unit and
        /// restarting does what it says.
        @Test(arguments: [false, true]) func aPassedListenerDefersAsItCameUntilTheFlagSaysOtherwise(off: Bool) throws {
            let server = try SwitchboardProcess.start(
                ["--workers", "1", "--metrics", "127.0.0.1:0"] + (off ? ["--defer-accept", "0"] : []),
                wrapper: ["/usr/bin/python3", "-c", Self.deferringListener])
            defer { server.cleanUp() }
            #expect(server.stderr.contains("using the listener systemd passed"), "\(server.stderr)")
            let port = try #require(Health.port(server, "--metrics"), "\(server.stderr)")
            let accepted = "switchboard_connections_accepted_total"
            let before = try Self.scrape(port).samples[accepted] ?? 0

            let silent = try TestConnection(port: server.port)
            #expect(try get(port: server.port).status == 200)
            let meanwhile = try Self.scrape(port).samples[accepted] ?? 0
            #expect(meanwhile - before == (off ? 2 : 1), "accepts with a silent client waiting: \(meanwhile - before)")
            #expect(server.stderr.contains("the listener defers accepts by about") == !off, "\(server.stderr)")

            try silent.request()
            let response = try silent.readResponse()
            #expect(response.status == 200 && response.workerPID != nil, "\(response)")
        }

        /// Execs its arguments with a listener on 127.0.0.1 that defers accepts by 5 s, passed as systemd does.
        static let deferringListener = PassedListener.launcher(
            setUp: "listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 5)")
    }
}
