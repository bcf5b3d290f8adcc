import Foundation
import SwitchboardTestSupport
import Testing

extension EndToEndTests {
    /// Every connection the built-in worker serves has Nagle's algorithm off (`TCP_NODELAY`), in every mode and with
    /// a listener passed the way systemd passes one, which comes without it. The worker no longer sets it on each
    /// connection: the listener it was accepted on has it, and Linux copies it to the connection (issue 23). Read on
    /// the worker's own socket, through a copy taken with `pidfd_getfd`.
    @Suite struct NoDelay {
        @Test(arguments: ["round-robin", "least-connections", "reuseport", "shared", "systemd listener"])
        func theWorkersConnectionHasNoDelay(_ how: String) throws {
            let systemd = how == "systemd listener"
            let server = try SwitchboardProcess.start(
                ["--workers", "2"] + (systemd ? [] : ["--mode", how]),
                wrapper: systemd ? ["/usr/bin/python3", "-c", Self.plainListener] : [])
            defer { server.cleanUp() }
            if systemd {
                #expect(server.stderr.contains("using the listener systemd passed"), "\(server.stderr)")
            }
            // Passing and sharing modes: each worker is told its connections come with it.
            if how != "reuseport" {
                for pid in server.workerPIDs {
                    let told = ProcFS.environment(of: pid).filter { $0.hasPrefix("SWITCHBOARD_LISTENER_NODELAY=") }
                    #expect(told == ["SWITCHBOARD_LISTENER_NODELAY=1"], "worker \(pid)")
                }
            }
            // A kept-alive connection stays open in the worker that answered it.
            let connection = try TestConnection(port: server.port)
            try connection.request(keepAlive: true)
            let worker = try #require(try connection.readResponse().workerPID)
            let inode = try #require(connection.serverSideInode(serverPort: server.port))
            let fd = try #require(
                ProcFS.descriptors(worker).first { $0.value == "socket:[\(inode)]" }?.key,
                "the worker \(worker) holds no descriptor of socket \(inode)")
            #expect(try Self.noDelay(pid: worker, fd: fd) == "1", "TCP_NODELAY on the worker's connection")
            server.stopAndCheckNoOrphans()
        }

        /// `TCP_NODELAY` of descriptor `fd` in process `pid`, as `0` or `1`, read on a copy of it (`pidfd_getfd`).
        static func noDelay(pid: pid_t, fd: Int) throws -> String {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            process.arguments = ["-c", Self.readNoDelay, "\(pid)", "\(fd)"]
            let output = Pipe()
            process.standardOutput = output
            try process.run()
            process.waitUntilExit()
            let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            return text.trimmingCharacters(in: .whitespacesAndNewlines)
        }

        static let readNoDelay = """
            import ctypes, os, socket, sys
            libc = ctypes.CDLL(None, use_errno=True)
            process = os.pidfd_open(int(sys.argv[1]))
            copy = libc.syscall(438, process, int(sys.argv[2]), 0)  # pidfd_getfd
            if copy < 0:
                sys.exit("pidfd_getfd: " + os.strerror(ctypes.get_errno()))
            print(socket.socket(fileno=copy).getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            """

        /// Execs its arguments with a plain listener on 127.0.0.1 (no `TCP_NODELAY`), passed as systemd does.
        static let plainListener = PassedListener.launcher(
            setUp: "assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0")
    }
}
