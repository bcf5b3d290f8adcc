import ArgumentParser
import Switchboard

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
        if text.hasPrefix("ok\n") {
            Syscalls.writeAll(1, String(text.dropFirst(3)))
            return
        }
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
