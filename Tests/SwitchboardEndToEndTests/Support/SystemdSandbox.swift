import Foundation
import SwitchboardTestSupport

/// A real systemd booted as PID 1 of private PID + mount namespaces by `Scripts/systemd-sandbox.sh` (which mounts
/// private tmpfs over /tmp, /var/tmp and /run first, so the machine's /tmp is never touched).
final class SystemdSandbox {
    let pid: String
    let script: String

    static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
    }

    static var scriptPath: String { repositoryRoot.appendingPathComponent("Scripts/systemd-sandbox.sh").path }

    /// Whether this machine lets a test boot systemd in namespaces (root, unshare, systemd 252+).
    static let available: Bool = {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/lib/systemd/systemd"),
            FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare")
        else { return false }
        return (try? run("/usr/bin/unshare", ["--pid", "--fork", "--mount", "--propagation", "private", "true"]).status)
            == 0
    }()

    /// Boots a sandbox with the unit files in `units` and the built binary installed as /usr/local/bin/switchboard.
    /// - Parameter installs: More copies of the host's files or folders, host path to path inside.
    init(units: URL, installs: [(from: String, to: String)] = []) throws {
        script = Self.scriptPath
        let extra = installs.flatMap { ["--install", "\($0.from):\($0.to)"] }
        let result = try Self.run(
            "/bin/bash",
            [script, "start", "--units", units.path, "--install", "\(SwitchboardProcess.binary):/usr/local/bin/switchboard"]
                + extra)
        guard result.status == 0,
            let line = result.stdout.split(separator: "\n").first(where: { $0.hasPrefix("SANDBOX_PID=") })
        else {
            throw ProbeError.io("systemd sandbox did not start (\(result.status)): \(result.stdout) \(result.stderr)")
        }
        pid = String(line.dropFirst("SANDBOX_PID=".count))
    }

    /// Runs a command inside the sandbox; returns its status and output.
    @discardableResult
    func exec(_ command: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try Self.run("/bin/bash", [script, "exec", pid, "--"] + command)
    }

    /// `systemctl show -p <properties> <unit>` as a dictionary.
    func show(_ unit: String, _ properties: [String]) throws -> [String: String] {
        let output = try exec(["systemctl", "show", "-p", properties.joined(separator: ","), unit]).stdout
        var result: [String: String] = [:]
        for line in output.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1)
            result[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        return result
    }

    func journal(_ unit: String) -> String {
        (try? exec(["journalctl", "--no-pager", "-o", "cat", "-u", unit]).stdout) ?? ""
    }

    /// Replaces the service's test drop-in (the `serviceDropIn` of ``makeUnits(port:socket:serviceDropIn:)``, which
    /// the sandbox keeps under /run/systemd/system) and reloads systemd's configuration; the next start uses it.
    func replaceServiceDropIn(_ lines: String) throws {
        let write = try exec([
            "sh", "-c", "printf '[Service]\\n%s\\n' \"$1\" > /run/systemd/system/switchboard.service.d/test.conf",
            "sh", lines,
        ])
        guard write.status == 0 else { throw ProbeError.io("cannot replace the service's drop-in: \(write.stderr)") }
        let reload = try exec(["systemctl", "daemon-reload"])
        guard reload.status == 0 else { throw ProbeError.io("systemctl daemon-reload: \(reload.stderr)") }
    }

    func stop() {
        _ = try? Self.run("/bin/bash", [script, "stop", pid])
    }

    deinit { stop() }

    static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        // Output goes to files, not pipes: `start` leaves the sandbox running in the background, holding whatever
        // it inherited, so a pipe would never see end of file.
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sb-run-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let outURL = directory.appendingPathComponent("stdout")
        let errURL = directory.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        // Through system(): it waits for the command itself, where Foundation's Process would also wait for the
        // daemon `start` leaves behind.
        let quoted = ([executable] + arguments).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        let command = quoted.joined(separator: " ") + " </dev/null >'\(outURL.path)' 2>'\(errURL.path)'"
        let raw = system(command)
        let status: Int32 = raw == -1 ? -1 : (raw >> 8) & 0xff
        let stdout = (try? String(contentsOf: outURL, encoding: .utf8)) ?? ""
        let stderr = (try? String(contentsOf: errURL, encoding: .utf8)) ?? ""
        return (status, stdout, stderr)
    }
}

/// Boots a sandbox with ``makeUnits(port:socket:serviceDropIn:)``'s units, runs `body` with it, then stops it and
/// removes the units.
func withSandbox(
    port: Int, socket: Bool, serviceDropIn: String, _ body: (SystemdSandbox) throws -> Void
) throws {
    let units = try makeUnits(port: port, socket: socket, serviceDropIn: serviceDropIn)
    defer { try? FileManager.default.removeItem(at: units) }
    let sandbox = try SystemdSandbox(units: units)
    defer { sandbox.stop() }
    try body(sandbox)
}

/// The repository's unit files, adapted for a test: the socket on 127.0.0.1:<port>, and a drop-in with `service`
/// lines (for example a shorter WatchdogSec and a different ExecStart).
func makeUnits(port: Int, socket: Bool, serviceDropIn: String) throws -> URL {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sb-units-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let source = SystemdSandbox.repositoryRoot.appendingPathComponent("systemd")
    var service = try String(contentsOf: source.appendingPathComponent("switchboard.service"), encoding: .utf8)
    if socket {
        var socketUnit = try String(contentsOf: source.appendingPathComponent("switchboard.socket"), encoding: .utf8)
        socketUnit = socketUnit.replacingOccurrences(of: "ListenStream=3000", with: "ListenStream=127.0.0.1:\(port)")
        try socketUnit.write(to: directory.appendingPathComponent("switchboard.socket"), atomically: true, encoding: .utf8)
    } else {
        service = service.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.hasPrefix("Requires=switchboard.socket") && !$0.hasPrefix("Also=switchboard.socket") }
            .joined(separator: "\n")
            .replacingOccurrences(of: "After=switchboard.socket network.target", with: "After=network.target")
    }
    try service.write(to: directory.appendingPathComponent("switchboard.service"), atomically: true, encoding: .utf8)
    let dropIns = directory.appendingPathComponent("switchboard.service.d")
    try FileManager.default.createDirectory(at: dropIns, withIntermediateDirectories: true)
    try "[Service]\n\(serviceDropIn)\n".write(to: dropIns.appendingPathComponent("test.conf"), atomically: true, encoding: .utf8)
    return directory
}
