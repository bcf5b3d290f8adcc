import CSwitchboardLinux
import Foundation
import SwitchboardTestSupport
import Testing

/// systemd behaviour against a datagram NOTIFY_SOCKET stand-in and Debian's systemd-socket-activate.
extension EndToEndTests {
    @Suite struct SystemdNotify {
        @Test func readyComesOnlyOnceEveryWorkerIsReady() throws {
            let notify = try NotifySocketListener()
            let server = try SwitchboardProcess.start(["--workers", "3"], environment: ["NOTIFY_SOCKET": notify.path])
            defer { server.cleanUp() }
            #expect(notify.waitFor("READY", "1"))
            let ready = try #require(notify.with("READY", "1").first)
            #expect(ready.assignments["MAINPID"] == "\(server.pid)")
            #expect(ready.assignments["STATUS"]?.hasPrefix("3/3 workers ready, ") == true, "\(ready.text)")
            // Nothing said READY before: every earlier message is a status at most.
            let before = notify.all.prefix { $0.text != ready.text }
            #expect(before.allSatisfy { $0.assignments["READY"] == nil })
            #expect(server.logLines.filter { $0.message == "worker ready" }.count == 3)
            server.stopAndCheckNoOrphans()
            #expect(notify.with("STOPPING", "1").count == 1)
        }

        @Test func theListenerIsOfferedToTheFdStore() throws {
            let notify = try NotifySocketListener()
            let server = try SwitchboardProcess.start(["--workers", "1"], environment: ["NOTIFY_SOCKET": notify.path])
            defer { server.cleanUp() }
            #expect(notify.waitFor("FDSTORE", "1"))
            let store = try #require(notify.with("FDSTORE", "1").first)
            #expect(store.assignments["FDNAME"] == "switchboard-listener")
            let stored = try #require(notify.passedDescriptors.first)
            #expect(Int(sb_local_port(stored)) == server.port, "the stored descriptor is the listener")
            server.stopAndCheckNoOrphans()
        }

        @Test func watchdogPingsAtHalfTheInterval() throws {
            let notify = try NotifySocketListener()
            let server = try SwitchboardProcess.start(
                ["--workers", "2"],
                environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"])
            defer { server.cleanUp() }
            #expect(notify.waitFor("WATCHDOG", "1", count: 10))
            let pings = notify.with("WATCHDOG", "1")
            let span = pings[9].received - pings[0].received
            // Nine periods of 200 ms; the bound is loose on purpose (a noisy machine), it only rules out a wrong rate.
            #expect(span > .milliseconds(900) && span < .seconds(6), "10 pings took \(span)")
            server.stopAndCheckNoOrphans()
        }

        @Test func watchdogKeepsPingingWhileTheMasterReplacesAStuckWorker() throws {
            let notify = try NotifySocketListener()
            let server = try SwitchboardProcess.start(
                ["--workers", "2", "--heartbeat-interval", "0.1", "--heartbeat-timeout", "2"],
                environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"])
            defer { server.cleanUp() }
            #expect(notify.waitFor("WATCHDOG", "1", count: 2))
            let victim = try #require(server.workerPIDs.first)
            let stoppedAt = ContinuousClock.now
            kill(victim, SIGSTOP)
            #expect(server.waitForLog("worker sent no heartbeat"))
            #expect(waitUntil { server.workerPIDs.count == 2 && !server.workerPIDs.contains(victim) })
            let pingsBefore = notify.with("WATCHDOG", "1").count
            #expect(waitUntil { notify.with("WATCHDOG", "1").count > pingsBefore + 2 })
            // The other worker served all along: no gap as long as systemd's interval (1 s) between two pings.
            let pings = notify.with("WATCHDOG", "1").map(\.received).filter { $0 > stoppedAt - .seconds(1) }
            let gaps = zip(pings.dropFirst(), pings).map { $0 - $1 }
            #expect(gaps.allSatisfy { $0 < .seconds(1) }, "gaps between pings: \(gaps)")
            #expect(!notify.all.contains { $0.assignments["STATUS"]?.contains("watchdog withheld") == true })
            server.stopAndCheckNoOrphans()
        }

        @Test func watchdogIsWithheldOnceNoWorkerHasServedForTheRecoveryBoundAndResumesWhenOneServes() throws {
            let notify = try NotifySocketListener()
            let hooks = try HookFile("")
            // Recovery bound: heartbeat timeout 0.5 + health check 0.1 + restart delay 0.2 + ready 1 + margin 1 s.
            let server = try SwitchboardProcess.start(
                ["--workers", "1", "--test-hooks", "--heartbeat-interval", "0.1", "--heartbeat-timeout", "0.5",
                 "--ready-timeout", "1", "--restart-delay-max", "0.2", "--crash-loop-limit", "0"],
                environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000",
                              "SWITCHBOARD_TEST_HOOK_FILE": hooks.path])
            defer { server.cleanUp() }
            #expect(notify.waitFor("WATCHDOG", "1", count: 2))
            let victim = try #require(server.workerPIDs.first)
            try hooks.write("never-ready")
            kill(victim, SIGSTOP)
            let withheld = { (message: NotifySocketListener.Message) in
                message.assignments["STATUS"]?.contains("watchdog withheld: no worker has served for ") == true
                    && message.assignments["STATUS"]?.contains(" ms (recovery bound 2800 ms)") == true
            }
            #expect(waitUntil { notify.all.contains(where: withheld) }, "STATUS says why: \(notify.all.map(\.text))")
            #expect(server.waitForLog("watchdog withheld: no worker has served for "))
            let first = try #require(notify.all.first(where: withheld)?.assignments["STATUS"])
            let served = first.split(separator: " ").drop { $0 != "for" }.dropFirst().first.flatMap { Int($0) }
            #expect((served ?? 0) >= 2800, "withheld only past the bound: \(first)")

            try hooks.write("")
            #expect(server.waitForLog("watchdog pings resume"))
            let pingsBefore = notify.with("WATCHDOG", "1").count
            #expect(waitUntil { notify.with("WATCHDOG", "1").count > pingsBefore + 2 }, "pings resume")
            // In order: after the first withheld status, the next ping comes once a worker is ready again.
            let messages = notify.all
            let firstWithheld = try #require(messages.firstIndex(where: withheld))
            let nextPing = try #require(messages[firstWithheld...].firstIndex { $0.assignments["WATCHDOG"] == "1" })
            #expect(messages[nextPing].assignments["STATUS"]?.hasPrefix("1/1 workers ready") == true,
                    "\(messages[firstWithheld...nextPing].map(\.text))")
            server.stopAndCheckNoOrphans()
        }

        @Test func reloadSaysReloadingWithMonotonicTimeThenReady() throws {
            let notify = try NotifySocketListener()
            let server = try SwitchboardProcess.start(["--workers", "2"], environment: ["NOTIFY_SOCKET": notify.path])
            defer { server.cleanUp() }
            #expect(notify.waitFor("READY", "1"))
            server.signal(SIGHUP)
            #expect(notify.waitFor("READY", "1", count: 2))
            let reloading = try #require(notify.with("RELOADING", "1").first)
            let usec = try #require(UInt64(reloading.assignments["MONOTONIC_USEC"] ?? ""))
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            #expect(usec > 0 && usec <= UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000)
            let messages = notify.all.map(\.text)
            let reloadIndex = try #require(messages.firstIndex(of: reloading.text))
            let readyAgain = try #require(messages[reloadIndex...].firstIndex { $0.contains("READY=1") })
            #expect(messages[readyAgain].contains("reload to generation 2 finished"))
            server.stopAndCheckNoOrphans()
        }

        @Test func anAbortedReloadSaysReadyAgainWithAStatusThatSaysSo() throws {
            let notify = try NotifySocketListener()
            let hooks = try HookFile("")
            let server = try SwitchboardProcess.start(
                ["--workers", "1", "--test-hooks", "--ready-timeout", "1"],
                environment: ["NOTIFY_SOCKET": notify.path, "SWITCHBOARD_TEST_HOOK_FILE": hooks.path])
            defer { server.cleanUp() }
            try hooks.write("never-ready")
            server.signal(SIGHUP)
            #expect(notify.waitFor("READY", "1", count: 2))
            let last = try #require(notify.with("READY", "1").last)
            #expect(last.assignments["STATUS"]?.contains("aborted") == true, "\(last.text)")
            server.stopAndCheckNoOrphans()
        }

        @Test func stoppingThenExtendTimeoutWhileALongDrainMakesProgress() throws {
            let notify = try NotifySocketListener()
            let server = try SwitchboardProcess.start(
                ["--workers", "1", "--test-hooks", "--drain-timeout", "20"],
                environment: ["NOTIFY_SOCKET": notify.path])
            defer { server.cleanUp() }
            let connection = try TestConnection(port: server.port)
            try connection.request(path: "/slow?ms=2500")
            #expect(connection.waitUntilHeldByWorker(of: server) != nil)
            server.signal(SIGTERM)
            #expect(notify.waitFor("STOPPING", "1"))
            #expect(notify.waitFor("EXTEND_TIMEOUT_USEC"))
            let extend = try #require(Int(notify.with("EXTEND_TIMEOUT_USEC").first?.assignments["EXTEND_TIMEOUT_USEC"] ?? ""))
            #expect(extend > 5_000_000 && extend <= 25_000_000, "extension \(extend) µs")
            #expect(try connection.readResponse().status == 200)
            #expect(server.waitForExit() == 0)
        }

        @Test func aCrashLoopSetsErrnoAndAStatusBeforeHalting() throws {
            let notify = try NotifySocketListener()
            let hooks = try HookFile("exit-at-start")
            let server = try SwitchboardProcess(
                arguments: ["--host", "127.0.0.1", "--port", "0", "--workers", "1", "--test-hooks",
                            "--restart-delay", "0.01", "--crash-loop-limit", "3"],
                environment: ["NOTIFY_SOCKET": notify.path, "SWITCHBOARD_TEST_HOOK_FILE": hooks.path])
            defer { server.cleanUp() }
            #expect(server.waitForExit() == 70)
            let errno = try #require(notify.with("ERRNO").first)
            #expect(errno.assignments["ERRNO"] == "\(ECHILD)")
            #expect(errno.assignments["STATUS"]?.contains("crash loop") == true)
            #expect(notify.with("READY").isEmpty)
        }

        @Test func socketActivationServesOnThePassedListener() throws {
            let activator = "/usr/bin/systemd-socket-activate"
            try #require(FileManager.default.isExecutableFile(atPath: activator), "needs systemd's systemd-socket-activate")
            let port = try freePort()
            let process = try SwitchboardProcess(
                arguments: ["-l", "127.0.0.1:\(port)", "--fdname=web", SwitchboardProcess.binary, "--workers", "2",
                            "--port", "1"],
                executable: activator)
            defer { process.cleanUp() }
            #expect(waitUntil { process.stderr.contains("Listening on 127.0.0.1:\(port)") }, "\(process.stderr)")
            // The first connection makes systemd-socket-activate exec switchboard on the same pid with the socket at fd 3.
            let response = try get(port: port)
            #expect(response.status == 200 && response.workerPID != nil)
            #expect(waitUntil { process.stdout.contains("listening on 127.0.0.1:\(port) with 2 workers (round-robin)") },
                    "\(process.stdout)")
            #expect(process.stderr.contains("using the listener systemd passed; --port and --host are ignored"))
            #expect(process.stderr.contains("listener.name=web"))
            let workers = ProcFS.children(of: process.pid)
            #expect(workers.count == 2)
            for worker in workers {
                #expect(ProcFS.read("/proc/\(worker)/environ")?.contains("LISTEN_FDS") == false, "workers see no LISTEN_*")
            }
            process.stopAndCheckNoOrphans()
        }
    }
}

/// A TCP port that was free a moment ago (for tools that cannot take port 0).
func freePort() throws -> Int {
    let listener = try TestListener()
    return listener.port
}
