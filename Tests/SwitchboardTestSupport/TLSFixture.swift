import Foundation

/// Runs a command-line tool to its end: its exit status and what it printed (standard output and error together).
@discardableResult
package func runTool(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Whether every one of these tools is installed (the suites that need them are skipped without).
package func toolsInstalled(_ paths: String...) -> Bool {
    paths.allSatisfy { FileManager.default.isExecutableFile(atPath: $0) }
}

/// A self-signed certificate for 127.0.0.1 made with `openssl req`, in a fresh folder removed by ``remove()``.
package struct TestCertificate {
    package let directory: URL
    package let certificate: String
    package let key: String

    package init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        certificate = directory.appendingPathComponent("cert.pem").path
        key = directory.appendingPathComponent("key.pem").path
        let openssl = try runTool(
            "/usr/bin/openssl",
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", certificate, "-days", "1",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
        guard openssl.status == 0 else { throw ProbeError.io("openssl failed: \(openssl.output)") }
    }

    /// The flags that make the examples serve TLS with this certificate.
    package var flags: [String] { ["--tls-cert", certificate, "--tls-key", key] }

    package func remove() {
        try? FileManager.default.removeItem(at: directory)
    }
}

/// Python: one keep-alive HTTP/1.1 request over TLS (arguments: port, CA file, path). Prints `sent` once the request
/// is out, what it reads as it arrives, and finally how the connection ended — Python's ssl module returns no data on
/// a close_notify and raises on a bare end of stream.
package let tlsCloseProbe = """
    import socket, ssl, sys
    context = ssl.create_default_context(cafile=sys.argv[2])
    raw = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
    tls = context.wrap_socket(raw, server_hostname="127.0.0.1", suppress_ragged_eofs=False)
    tls.sendall(("GET %s HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n" % sys.argv[3]).encode())
    print("sent", flush=True)
    try:
        while True:
            data = tls.recv(65536)
            if not data:
                print("\\nclosed with close_notify", flush=True)
                break
            sys.stdout.write(data.decode(errors="replace"))
            sys.stdout.flush()
    except ssl.SSLEOFError:
        print("\\nclosed without close_notify", flush=True)
    """

/// A tool running while the test does something else; its output so far, and all of it once it ends.
package final class BackgroundTool: @unchecked Sendable {
    // @unchecked: used by the one test thread that made it.
    let process = Process()
    let output: URL

    package init(_ executable: String, _ arguments: [String]) throws {
        output = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-tool-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let handle = try FileHandle(forWritingTo: output)
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    /// What it printed so far.
    package var printed: String { (try? String(contentsOf: output, encoding: .utf8)) ?? "" }

    /// Waits until it has printed `text` (false if it ends or `timeout` passes first).
    package func waitForOutput(containing text: String, timeout: Duration = .seconds(20)) -> Bool {
        waitUntil(timeout: timeout) { printed.contains(text) || !process.isRunning } && printed.contains(text)
    }

    /// What it printed once it has ended, or nil (and it is stopped) when it runs longer than `timeout` seconds.
    package func wait(timeout: Double) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        defer { try? FileManager.default.removeItem(at: output) }
        guard !process.isRunning else {
            process.terminate()
            process.waitUntilExit()
            return nil
        }
        return printed
    }
}
