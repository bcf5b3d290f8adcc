import Foundation
import Testing

/// How a started process finds its signals, as a shell, a service manager or another supervisor leaves them.
package struct LaunchSignals: Sendable {
    /// Signals it starts with ignored (`SIG_IGN` survives exec).
    package var ignored: [Int32]

    /// Nothing ignored (beyond what the test runner ignores) and nothing blocked.
    /// Foundation's `Process` gives its child the signal mask of the thread that starts it, and the threads of the
    /// test runner's concurrency pool block HUP, INT, QUIT and TERM among others; a shell or systemd blocks nothing.
    package init(ignored: [Int32] = []) {
        self.ignored = ignored
    }

    /// Python sets them up, then execs the program (the pid stays the program's).
    static let launcher = """
        import os, signal, sys
        for number in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores these for itself
            signal.signal(number, signal.SIG_DFL)
        for number in sys.argv[1].split(",") if sys.argv[1] else []:
            signal.signal(int(number), signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.execv(sys.argv[2], sys.argv[2:])
        """
}

/// The built `switchboard` binary running as a real process, with its output in temporary files.
package final class SwitchboardProcess {
    package let process = Process()
    package let directory: URL
    package let stdoutURL: URL
    package let stderrURL: URL
    package private(set) var port = 0

    package var pid: pid_t { process.processIdentifier }

    /// The `switchboard` executable next to the test bundle (or `SWITCHBOARD_BINARY`).
    package static var binary: String {
        if let path = ProcessInfo.processInfo.environment["SWITCHBOARD_BINARY"] { return path }
        let testRunner = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        return testRunner.deletingLastPathComponent().appendingPathComponent("switchboard").path
    }

    /// Another executable built next to the test bundle, such as `switchboard-nio-example`.
    package static func sibling(_ name: String) -> String {
        URL(fileURLWithPath: binary).deletingLastPathComponent().appendingPathComponent(name).path
    }

    /// Starts `executable` (default: `switchboard`) with `arguments`, as `user` if given, and with its descriptor limit
    /// (soft and hard) set to `descriptorLimit` if given, as `ulimit -n` in a shell does, and with its signals set up
    /// as `signals` says if given. Foundation starts it in a process group of its own (its pid), so `signalGroup`
    /// reaches it and its workers only.
    package init(
        arguments: [String], environment: [String: String] = [:], user: String? = nil, executable: String? = nil,
        descriptorLimit: Int? = nil, signals: LaunchSignals? = nil, wrapper: [String] = []
    ) throws {
        let executable = executable ?? Self.binary
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        stdoutURL = directory.appendingPathComponent("stdout")
        stderrURL = directory.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: stdoutURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw ProbeError.io("no binary at \(executable): run `swift build` first")
        }
        if let command = wrapper.first {
            // A command that ends by exec'ing the binary (`taskset -c 0`, a shell that joins a cgroup first): the
            // pid stays the master's.
            process.executableURL = URL(fileURLWithPath: command)
            process.arguments = Array(wrapper.dropFirst()) + [executable] + arguments
        } else if let user {
            try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: directory.path)
            let setpriv = ["--reuid=\(user)", "--regid=\(user)", "--clear-groups", executable] + arguments
            if let descriptorLimit {
                // The limit first (as root, so the hard limit may go down), then the user; both exec, same pid.
                process.executableURL = URL(fileURLWithPath: "/bin/sh")
                process.arguments = ["-c", "ulimit -n \(descriptorLimit) && exec /usr/bin/setpriv \"$@\"", "sh"] + setpriv
            } else {
                process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
                process.arguments = setpriv
            }
        } else if let descriptorLimit {
            // The shell execs the binary, so the pid stays the master's.
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "ulimit -n \(descriptorLimit) && exec \"$0\" \"$@\"", executable] + arguments
        } else if let signals {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            let ignored = signals.ignored.map(String.init).joined(separator: ",")
            process.arguments = ["-c", LaunchSignals.launcher, ignored, executable] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
        }
        var env = ProcessInfo.processInfo.environment
        for name in ["NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID",
                     "SWITCHBOARD_WORKER_ID", "SWITCHBOARD_MASTER_PID", "JOURNAL_STREAM"] {
            env[name] = nil
        }
        for (key, value) in environment { env[key] = value }
        if environment["JOURNAL_STREAM"] == "stderr" {
            // As systemd sets it when stderr is the journal: the device and inode of what stderr is.
            var info = stat()
            stat(stderrURL.path, &info)
            env["JOURNAL_STREAM"] = "\(info.st_dev):\(info.st_ino)"
        }
        process.environment = env
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = try FileHandle(forWritingTo: stdoutURL)
        process.standardError = try FileHandle(forWritingTo: stderrURL)
        try process.run()
    }

    /// Starts `switchboard --host 127.0.0.1 --port 0 <arguments>` and waits for its ready line.
    package static func start(
        _ arguments: [String], environment: [String: String] = [:], executable: String? = nil,
        descriptorLimit: Int? = nil, user: String? = nil, signals: LaunchSignals? = nil, wrapper: [String] = []
    ) throws -> SwitchboardProcess {
        let server = try SwitchboardProcess(
            arguments: ["--host", "127.0.0.1", "--port", "0"] + arguments, environment: environment, user: user,
            executable: executable, descriptorLimit: descriptorLimit, signals: signals, wrapper: wrapper)
        try server.waitForReady()
        return server
    }

    package var stdout: String { (try? String(contentsOf: stdoutURL, encoding: .utf8)) ?? "" }
    package var stderr: String { (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? "" }

    /// Waits for `listening on <host>:<port> with ...` and records the port.
    package func waitForReady(timeout: Duration = .seconds(60)) throws {
        let ready = waitUntil(timeout: timeout) {
            guard let line = stdout.split(separator: "\n").first(where: { $0.hasPrefix("listening on ") }) else {
                return !process.isRunning
            }
            let address = line.split(separator: " ")[2]
            port = Int(address.split(separator: ":").last ?? "") ?? 0
            return true
        }
        guard ready, port > 0 else {
            throw ProbeError.io("switchboard did not become ready: stdout=\(stdout) stderr=\(stderr)")
        }
    }

    /// Current worker pids (children of the master).
    package var workerPIDs: [pid_t] { ProcFS.children(of: pid) }

    package func signal(_ signal: Int32) {
        kill(pid, signal)
    }

    /// Sends `signal` to the master's whole process group, as a terminal's Ctrl-C or `kill -INT -<pgid>` does.
    package func signalGroup(_ signal: Int32) {
        kill(-pid, signal)
    }

    /// How many lines of the master's log contain `text`.
    package func logCount(_ text: String) -> Int {
        stderr.split(separator: "\n").filter { $0.contains(text) }.count
    }

    /// Waits for the process to exit; returns its status (exit code, or 128+signal), or nil on timeout.
    @discardableResult
    package func waitForExit(timeout: Duration = .seconds(30)) -> Int32? {
        guard waitUntil(timeout: timeout, { !process.isRunning }) else { return nil }
        process.waitUntilExit()
        return process.terminationReason == .uncaughtSignal
            ? 128 + process.terminationStatus : process.terminationStatus
    }

    /// Stops the master with SIGTERM and checks that it exits 0 and leaves no worker behind.
    package func stopAndCheckNoOrphans(sourceLocation: SourceLocation = #_sourceLocation) {
        let master = pid
        signal(SIGTERM)
        let status = waitForExit()
        #expect(status == 0, "master exit status; stderr:\n\(stderr)", sourceLocation: sourceLocation)
        let orphansGone = waitUntil(timeout: .seconds(10)) { ProcFS.workers(ofMaster: master).isEmpty }
        #expect(orphansGone, "workers left behind: \(ProcFS.workers(ofMaster: master))", sourceLocation: sourceLocation)
        cleanUp()
    }

    /// Kills whatever is left (the master and its workers) and removes the temporary files.
    package func cleanUp() {
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
        }
        for worker in ProcFS.workers(ofMaster: pid) { kill(worker, SIGKILL) }
        try? FileManager.default.removeItem(at: directory)
    }

    deinit {
        if process.isRunning { kill(pid, SIGKILL) }
    }
}
