import ArgumentParser
import Switchboard

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

#if canImport(Glibc)
import Glibc
#endif

/// Where the master's control socket is: `--control-socket` (the same flag the master takes, given before or after
/// the command), else `$SWITCHBOARD_CONTROL_SOCKET`, else the shipped unit's `/run/switchboard/control.sock`.
struct ControlOptions {
    let controlSocket: String?

    var path: String {
        controlSocket ?? Syscalls.environment("SWITCHBOARD_CONTROL_SOCKET") ?? "/run/switchboard/control.sock"
    }

    /// Sends `command` to the master and prints its answer: the body on stdout, an error as one line on stderr.
    func send(_ command: ControlCommand) throws {
        Syscalls.writeAll(1, try ask(command))
    }

    /// Sends `command` to the master and returns the body of its answer.
    /// - Throws: ``SwitchboardError`` with the master's one-line error, or when it cannot be reached.
    func ask(_ command: ControlCommand) throws(SwitchboardError) -> String {
        let fd: CInt
        do {
            fd = try Syscalls.connectUnix(path)
        } catch {
            throw SwitchboardError(
                .system,
                "cannot reach a master at \(path): \(error.reason) (is it running with --control-socket \(path)?)")
        }
        defer { Syscalls.close(fd) }
        // A master that refuses this client (another uid) answers and closes at once, maybe before the command is
        // written: the write then fails with EPIPE, and the refusal is read below, instead of SIGPIPE ending us.
        signal(SIGPIPE, SIG_IGN)
        Syscalls.writeAll(fd, command.line + "\n")
        var answer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            guard case .done(let count)? = try? Syscalls.read(fd, into: &chunk, at: 0), count > 0 else { break }
            answer.append(contentsOf: chunk[0..<count])
        }
        let text = String(decoding: answer, as: UTF8.self)
        if text.hasPrefix("ok\n") { return String(text.dropFirst(3)) }
        let line = text.split(separator: "\n").first.map(String.init) ?? "the master closed the connection"
        throw SwitchboardError(.system, line.hasPrefix("error: ") ? String(line.dropFirst(7)) : line)
    }
}

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show the running master and one line per worker (pm2 ls, pumactl stats).")

    @ParentCommand var root: SwitchboardCommand
    var options: ControlOptions { ControlOptions(controlSocket: root.controlSocket) }

    @Flag(help: "Print the status as one JSON object.")
    var json = false

    func run() throws { try options.send(.status(json: json)) }
}

struct ReloadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload", abstract: "Start a rolling reload (as SIGHUP does).")

    @ParentCommand var root: SwitchboardCommand
    var options: ControlOptions { ControlOptions(controlSocket: root.controlSocket) }

    func run() throws { try options.send(.reload) }
}

struct StopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stop", abstract: "Stop gracefully (as SIGTERM does).")

    @ParentCommand var root: SwitchboardCommand
    var options: ControlOptions { ControlOptions(controlSocket: root.controlSocket) }

    func run() throws { try options.send(.stop) }
}

struct ScaleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scale",
        abstract: "Set the worker count exactly: <n>, +<k> or -<k> (signals coalesce; this does not).")

    @ParentCommand var root: SwitchboardCommand
    var options: ControlOptions { ControlOptions(controlSocket: root.controlSocket) }

    @Argument(parsing: .allUnrecognized, help: "<n>, +<k> or -<k>")
    var amount: [String] = []

    func run() throws {
        guard amount.count == 1 else {
            throw ValidationError("scale takes one amount: <n>, +<k> or -<k>")
        }
        let command: ControlCommand
        do {
            command = try ControlCommand(line: "scale \(amount[0])")
        } catch {
            throw ValidationError(error.message)
        }
        try options.send(command)
    }
}

struct UpgradeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upgrade",
        abstract: "Upgrade the master in place to the build on disk (same PID, nothing dropped), then reload the workers.",
        discussion: """
            The file the master was started by is run first with the master's arguments (a pre-check: it must parse \
            the configuration and speak this master's protocols); then the master hands its state over and execs it, \
            keeping its PID, its listener and its workers. Waits for the outcome: exits 0 once the new image serves, \
            non-zero with the reason if the pre-check failed or the new image could not adopt (the old one serves on).
            """)

    @ParentCommand var root: SwitchboardCommand
    var options: ControlOptions { ControlOptions(controlSocket: root.controlSocket) }

    @Flag(help: "Upgrade the master only: the workers keep running their build (no rolling reload).")
    var masterOnly = false

    @Option(help: "Seconds to wait for the outcome.")
    var timeout: Double = 60

    func run() throws {
        let started = try options.ask(.upgrade(masterOnly: masterOnly))
        Syscalls.writeAll(1, started)
        // "upgrade N: checking <path>"
        guard let sequence = started.split(separator: " ").dropFirst().first.flatMap({ Int($0.dropLast()) }) else {
            throw SwitchboardError(.system, "unexpected answer from the master: \(started.prefix(200))")
        }
        let deadline = Syscalls.monotonicNanoseconds() + UInt64(max(timeout, 1) * 1e9)
        while Syscalls.monotonicNanoseconds() < deadline {
            Syscalls.sleep(milliseconds: 100)
            // The master execs meanwhile: its socket keeps the connection waiting, or this one try fails; ask again.
            guard let text = try? options.ask(.status(json: true)),
                let status = try? JSONDecoder().decode(MasterStatus.self, from: Data(text.utf8)),
                let upgrade = status.upgrade, upgrade.sequence == sequence, upgrade.result != "checking"
            else { continue }
            switch upgrade.result {
            case "done":
                let took = upgrade.milliseconds.map { " in \($0) ms" } ?? ""
                Syscalls.writeAll(
                    1,
                    "master upgraded in place: \(upgrade.fromBuild) -> \(upgrade.toBuild ?? "?")\(took), pid \(status.pid); \(upgrade.detail)\n")
                return
            default:
                throw SwitchboardError(.system, "upgrade \(sequence) \(upgrade.result): \(upgrade.detail)")
            }
        }
        throw SwitchboardError(.system, "upgrade \(sequence): no outcome within \(timeout) s (see switchboard status)")
    }
}
