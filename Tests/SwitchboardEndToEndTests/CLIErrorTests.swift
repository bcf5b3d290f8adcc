import CSwitchboardLinux
import Foundation
import SwitchboardTestSupport
import Testing

extension EndToEndTests {
    @Suite struct CLIErrors {
        struct Outcome {
            var status: Int32?
            var stdout: String
            var stderr: String
            var pid: pid_t
        }

        func run(_ arguments: [String], user: String? = nil) throws -> Outcome {
            let process = try SwitchboardProcess(arguments: arguments, user: user)
            defer { process.cleanUp() }
            let status = process.waitForExit(timeout: .seconds(30))
            return Outcome(status: status, stdout: process.stdout, stderr: process.stderr, pid: process.pid)
        }

        /// One line on stderr, the given exit status, nothing on stdout, no worker left.
        func expectOneLineError(_ outcome: Outcome, status: Int32, _ line: String,
                                sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(outcome.status == status, "exit status", sourceLocation: sourceLocation)
            #expect(outcome.stderr == line + "\n", sourceLocation: sourceLocation)
            #expect(outcome.stdout.isEmpty, sourceLocation: sourceLocation)
            #expect(ProcFS.workers(ofMaster: outcome.pid).isEmpty, sourceLocation: sourceLocation)
        }

        @Test func unknownFlag() throws {
            let outcome = try run(["--colour", "blue"])
            expectOneLineError(outcome, status: 64, "switchboard: Unknown option '--colour' (see 'switchboard --help')")
        }

        @Test func unknownBuiltinWorker() throws {
            let outcome = try run(["--worker", "tokio"])
            expectOneLineError(
                outcome, status: 64,
                "switchboard: --worker 'tokio' is not a built-in worker: pass native or nio (see 'switchboard --help')")
        }

        @Test func zeroWorkers() throws {
            let outcome = try run(["--workers", "0"])
            expectOneLineError(
                outcome, status: 64,
                "switchboard: --workers must be at least 1 (got 0): pass --workers 1 or more (see 'switchboard --help')")
        }

        @Test func portOutOfRange() throws {
            let outcome = try run(["--port", "70000"])
            expectOneLineError(
                outcome, status: 64,
                "switchboard: port 70000 is out of range: pass --port between 0 and 65535 (0 picks a free port) (see 'switchboard --help')"
            )
        }

        @Test func notANumber() throws {
            let outcome = try run(["--workers", "many"])
            expectOneLineError(
                outcome, status: 64,
                "switchboard: --workers 'many' is not a number: pass a count such as 4, or auto (see 'switchboard --help')")
        }

        @Test func hostThatIsNotAnAddress() throws {
            let outcome = try run(["--host", "example.invalid", "--port", "0"])
            expectOneLineError(
                outcome, status: 64,
                "switchboard: --host 'example.invalid' is not a numeric IPv4 or IPv6 address: pass e.g. 127.0.0.1 or ::1")
        }

        @Test func portInUse() throws {
            // Hold a listener on an ephemeral port, then ask switchboard for the same port.
            let holder = try TestListener()
            let outcome = try run(["--host", "127.0.0.1", "--port", "\(holder.port)", "--workers", "1"])
            expectOneLineError(
                outcome, status: 69,
                "switchboard: port \(holder.port) on 127.0.0.1 is in use: stop the other server or pass --port 0")
        }

        @Test func permissionDeniedOnALowPort() throws {
            let unprivilegedStart = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_unprivileged_port_start", encoding: .utf8))
                .flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 1024
            try #require(getuid() == 0, "needs root to drop to an unprivileged user")
            try #require(unprivilegedStart > 1, "every port is unprivileged on this machine")
            // Port 1 is never actually bound: the unprivileged user is refused before that.
            let outcome = try run(["--host", "127.0.0.1", "--port", "1", "--workers", "1"], user: "65534")
            expectOneLineError(
                outcome, status: 77,
                "switchboard: permission denied binding port 1: use a port above 1023, run as root, or grant CAP_NET_BIND_SERVICE"
            )
        }

        @Test func aConnectionLimitOfZeroSecondsIsRefused() throws {
            let outcome = try run(["--header-timeout", "0"])
            #expect(outcome.status == 64)
            #expect(outcome.stderr.contains("--header-timeout must be more than 0 seconds"), "\(outcome.stderr)")
            let negative = try run(["--max-connections=-1"])
            #expect(negative.status == 64)
            #expect(negative.stderr.contains("--max-connections must be 0"), "\(negative.stderr)")
        }

        @Test func helpListsEveryFlag() throws {
            let outcome = try run(["--help"])
            #expect(outcome.status == 0)
            for flag in [
                "--port", "--host", "--workers", "--backlog", "--defer-accept", "--max-queued", "--drain-timeout", "--log-level",
                "--header-timeout", "--keepalive-timeout", "--send-timeout", "--max-connections", "--steal-after",
                "--health", "--agent", "--metrics", "--shutdown-delay", "--control-socket", "--user", "--group",
                "--cpu-affinity", "--log-format", "--version", "status", "reload", "scale", "stop",
            ] {
                #expect(outcome.stdout.contains(flag), "help lacks \(flag)")
            }
            #expect(!outcome.stdout.contains("--test-hooks"))
        }
    }
}

/// A TCP listener on 127.0.0.1 and an ephemeral port, closed on deinit.
final class TestListener {
    let fd: Int32
    let port: Int

    init() throws {
        var bound: Int32 = 0
        var family: Int32 = 0
        let fd = sb_tcp_listen("127.0.0.1", 0, 16, 0, 1, &bound, &family)
        guard fd >= 0 else { throw ProbeError.io("listen: errno \(errno)") }
        self.fd = fd
        self.port = Int(bound)
    }

    deinit { close(fd) }
}
