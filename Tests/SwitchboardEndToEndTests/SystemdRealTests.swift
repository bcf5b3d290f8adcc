import Foundation
import SwitchboardTestSupport
import Testing

/// The repository's unit files under a real systemd 252, booted as PID 1 of private namespaces.
extension EndToEndTests {
    @Suite(.enabled(if: SystemdSandbox.available, "needs root and PID + mount namespaces to boot a real systemd"))
    struct RealSystemd {
        /// Waits until `systemctl show` satisfies `condition`; returns the last values seen.
        func waitForUnit(
            _ sandbox: SystemdSandbox, _ unit: String = "switchboard.service", timeout: Duration = .seconds(30),
            _ condition: ([String: String]) -> Bool
        ) -> [String: String] {
            var last: [String: String] = [:]
            waitUntil(timeout: timeout) {
                last = (try? sandbox.show(unit, ["ActiveState", "SubState", "StatusText", "NRestarts", "MainPID"])) ?? [:]
                return condition(last)
            }
            return last
        }

        func workerPIDs(_ port: Int, requests: Int = 20) -> Set<pid_t> {
            Set((0..<requests).compactMap { _ in try? get(port: port).workerPID })
        }

        /// Boots a sandbox with the repository's units for a free port (with the socket unit) and
        /// `switchboard <arguments>` as `ExecStart=`, and runs `body` with it and the port.
        func withSocketActivatedService(_ arguments: String, _ body: (SystemdSandbox, Int) throws -> Void) throws {
            let port = try freePort()
            try withSandbox(
                port: port, socket: true, serviceDropIn: "ExecStart=\nExecStart=/usr/local/bin/switchboard \(arguments)"
            ) { try body($0, port) }
        }

        @Test func socketActivatedServiceBecomesActiveServesAndReloads() throws {
            try withSocketActivatedService("--workers 2 --drain-timeout 5") { sandbox, port in
                let active = waitForUnit(sandbox) {
                    $0["ActiveState"] == "active" && $0["StatusText"]?.hasPrefix("2/2 workers ready") == true
                }
                #expect(active["ActiveState"] == "active", "\(active)\n\(sandbox.journal("switchboard.service"))")
                #expect(active["StatusText"]?.contains("listening on port \(port)") == true, "\(active)")
                #expect(active["NRestarts"] == "0")
                let before = workerPIDs(port)
                #expect(before.count == 2, "both workers answer through the socket unit's listener")
                #expect(sandbox.journal("switchboard.service").contains("using the listener systemd passed"))

                try sandbox.exec(["systemctl", "reload", "switchboard.service"])
                let reloaded = waitForUnit(sandbox) {
                    $0["StatusText"]?.contains("reload to generation 2 finished") == true
                }
                #expect(reloaded["ActiveState"] == "active", "\(reloaded)")
                #expect(reloaded["MainPID"] == active["MainPID"], "a reload keeps the master")
                let after = workerPIDs(port)
                #expect(after.count == 2 && after.isDisjoint(with: before), "new workers: \(before) → \(after)")
                let journal = sandbox.journal("switchboard.service")
                #expect(journal.contains("rolling reload started") && journal.contains("rolling reload finished"))
            }
        }

        /// The shipped socket unit holds the port while the service restarts: `systemctl restart switchboard`
        /// refuses and resets nothing (it did while the socket unit was `PartOf=` the service, which restarted it
        /// too). `systemctl stop switchboard` leaves the socket taking connections, and the next one starts the
        /// service again; stopping the socket unit stops both and closes the port.
        @Test func theSocketUnitHoldsThePortWhileTheServiceRestartsOrStops() throws {
            try withSocketActivatedService("--workers 2 --drain-timeout 5") { sandbox, port in
                let active = waitForUnit(sandbox) { $0["StatusText"]?.hasPrefix("2/2 workers ready") == true }
                let firstMaster = try #require(active["MainPID"], "\(sandbox.journal("switchboard.service"))")

                let load = LoadLoop(port: port)
                #expect(waitUntil { load.count > 50 })
                let restart = try sandbox.exec(["systemctl", "restart", "switchboard.service"])
                #expect(restart.status == 0, "\(restart.stderr)")
                let again = waitForUnit(sandbox) {
                    $0["MainPID"] != firstMaster && $0["StatusText"]?.hasPrefix("2/2 workers ready") == true
                }
                let served = load.count
                #expect(waitUntil { load.count > served + 50 })
                let outcomes = load.stop()
                let failures = outcomes.filter { if case .failure = $0.result { true } else { false } }
                #expect(
                    failures.count == 0,
                    "of \(outcomes.count) requests, failed across the restart: \(failures.prefix(3).map(\.result))")
                #expect(again["MainPID"] != firstMaster && again["ActiveState"] == "active", "\(again)")

                let stop = try sandbox.exec(["systemctl", "stop", "switchboard.service"])
                #expect(stop.status == 0, "\(stop.stderr)")
                #expect(try sandbox.show("switchboard.socket", ["ActiveState"])["ActiveState"] == "active")
                #expect(try get(port: port).status == 200, "the socket took the connection and started the service")
                #expect(waitForUnit(sandbox) { $0["ActiveState"] == "active" }["ActiveState"] == "active")

                let stopBoth = try sandbox.exec(["systemctl", "stop", "switchboard.socket"])
                #expect(stopBoth.status == 0, "\(stopBoth.stderr)")
                #expect(try sandbox.show("switchboard.service", ["ActiveState"])["ActiveState"] == "inactive")
                #expect(throws: (any Error).self, "the port is closed") { try get(port: port) }
            }
        }

        @Test func theFdStoreKeepsThePortOpenAcrossARestart() throws {
            let port = try freePort()
            let units = try makeUnits(
                port: port, socket: false,
                serviceDropIn: """
                    ExecStart=
                    ExecStart=/usr/local/bin/switchboard --host 127.0.0.1 --port \(port) --workers 2 --drain-timeout 5
                    """)
            defer { try? FileManager.default.removeItem(at: units) }
            let sandbox = try SystemdSandbox(units: units)
            defer { sandbox.stop() }
            let active = waitForUnit(sandbox) { $0["ActiveState"] == "active" && $0["StatusText"]?.hasPrefix("2/2") == true }
            let firstMaster = try #require(active["MainPID"])
            #expect(sandbox.journal("switchboard.service").contains("listener kept in systemd's fd store"))

            let load = LoadLoop(port: port)
            #expect(waitUntil { load.count > 50 })
            let restart = try sandbox.exec(["systemctl", "restart", "switchboard.service"])
            #expect(restart.status == 0, "\(restart.stderr)")
            let again = waitForUnit(sandbox) {
                $0["ActiveState"] == "active" && $0["MainPID"] != firstMaster && $0["StatusText"]?.hasPrefix("2/2") == true
            }
            let served = load.count
            #expect(waitUntil { load.count > served + 50 })
            let outcomes = load.stop()
            let refused = outcomes.filter {
                if case .failure(let error) = $0.result, case ProbeError.connect = error { return true }
                return false
            }
            let failures = outcomes.filter { if case .failure = $0.result { true } else { false } }
            #expect(refused.isEmpty, "refused connections across the restart: \(refused.count)")
            #expect(failures.isEmpty, "failed requests across the restart: \(failures.prefix(3).map(\.result))")
            #expect(again["MainPID"] != firstMaster)
            #expect(sandbox.journal("switchboard.service").contains("using the listener systemd passed"),
                    "the new master took the listener back from the fd store")
        }
    }
}

extension EndToEndTests.RealSystemd {
    /// The shipped unit's control socket (in its RuntimeDirectory) answers `switchboard status`, and every log line
    /// reaches the journal with its own priority, so `journalctl -p` filters.
    @Test func statusOverTheRuntimeDirectoryAndJournalPriorities() throws {
        let port = try freePort()
        let units = try makeUnits(
            port: port, socket: true,
            serviceDropIn: """
                ExecStart=
                ExecStart=/usr/local/bin/switchboard --workers 1 --drain-timeout 5 --control-socket /run/switchboard/control.sock
                """)
        defer { try? FileManager.default.removeItem(at: units) }
        let sandbox = try SystemdSandbox(units: units)
        defer { sandbox.stop() }
        let active = waitForUnit(sandbox) { $0["StatusText"]?.hasPrefix("1/1 workers ready") == true }
        #expect(active["ActiveState"] == "active", "\(active)\n\(sandbox.journal("switchboard.service"))")

        let status = try sandbox.exec(["/usr/local/bin/switchboard", "status", "--control-socket", "/run/switchboard/control.sock"])
        #expect(status.status == 0, "\(status.stderr)")
        #expect(status.stdout.contains("workers 1/1 ready"), "\(status.stdout)")

        _ = try sandbox.exec(["systemctl", "kill", "--kill-whom=main", "-s", "SIGTTOU", "switchboard.service"])
        var notices = ""
        waitUntil(timeout: .seconds(10)) {
            notices = (try? sandbox.exec(["journalctl", "-p", "notice", "-u", "switchboard.service", "-o", "cat", "--no-pager"]))?.stdout ?? ""
            return notices.contains("SIGTTOU ignored")
        }
        #expect(notices.contains("SIGTTOU ignored"), "a notice is filed as one: \(notices)")
        #expect(!notices.contains("worker forked"), "info lines stay out of -p notice: \(notices)")
        #expect(!notices.contains("<5>") && !notices.contains("<6>"), "journald took the prefixes as priorities")
        let everything = try sandbox.exec(["journalctl", "-u", "switchboard.service", "-o", "cat", "--no-pager"]).stdout
        #expect(everything.contains("worker forked"))
    }
}

extension EndToEndTests.RealSystemd {
    /// A socket unit's listener outlives the service, and so does one the master binds and keeps in the fd store,
    /// so what one run's `--defer-accept` set stays on it: a restart without the flag keeps deferring and says so;
    /// `--defer-accept 0` turns it off. Behaviour is read from the master's accepted count with a silent client
    /// waiting (1 accept while it defers, 2 when not).
    @Test(arguments: [true, false])
    func aKeptListenerKeepsAnEarlierRunsDeferralUntilTheFlagTurnsItOff(socketUnit: Bool) throws {
        let port = try freePort()
        let metricsPort = try freePort()
        let dropIn = { (flags: String) in
            """
            ExecStart=
            ExecStart=/usr/local/bin/switchboard --host 127.0.0.1 --port \(port) --workers 1 --drain-timeout 5 \
            --metrics 127.0.0.1:\(metricsPort) \(flags)
            """
        }
        try withSandbox(port: port, socket: socketUnit, serviceDropIn: dropIn("--defer-accept 5")) { sandbox in
            var master = waitForUnit(sandbox) { $0["StatusText"]?.hasPrefix("1/1 workers ready") == true }["MainPID"]
            #expect(master != nil, "\(sandbox.journal("switchboard.service"))")

            /// Accepts the master makes while a client that sent nothing waits and another is answered.
            func acceptsWithASilentClient() throws -> Double {
                let accepted = "switchboard_connections_accepted_total"
                let before = try EndToEndTests.Metrics.scrape(metricsPort).samples[accepted] ?? 0
                let silent = try TestConnection(port: port)
                #expect(try get(port: port).status == 200)
                let meanwhile = try EndToEndTests.Metrics.scrape(metricsPort).samples[accepted] ?? 0
                try silent.request()
                #expect(try silent.readResponse().status == 200, "the silent client is served once it sends")
                return meanwhile - before
            }
            func restart(with flags: String) throws {
                try sandbox.replaceServiceDropIn(dropIn(flags))
                let restarted = try sandbox.exec(["systemctl", "restart", "switchboard.service"])
                #expect(restarted.status == 0, "\(restarted.stderr)")
                let previous = master
                master = waitForUnit(sandbox) {
                    $0["MainPID"] != previous && $0["StatusText"]?.hasPrefix("1/1 workers ready") == true
                }["MainPID"]
            }
            let notice = "the listener defers accepts by about"
            func notices() -> Int { sandbox.journal("switchboard.service").components(separatedBy: notice).count - 1 }
            #expect(try acceptsWithASilentClient() == 1)
            #expect(notices() == 0, "an explicit --defer-accept is not news")

            try restart(with: "")
            #expect(try acceptsWithASilentClient() == 1, "the kept listener still defers")
            #expect(notices() == 1, "\(sandbox.journal("switchboard.service"))")

            try restart(with: "--defer-accept 0")
            #expect(try acceptsWithASilentClient() == 2, "--defer-accept 0 turned it off")
            #expect(notices() == 1, "\(sandbox.journal("switchboard.service"))")
        }
    }
}
