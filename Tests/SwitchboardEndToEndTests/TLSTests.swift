import Foundation
import SwitchboardTestSupport
import Testing

extension EndToEndTests {
    /// HTTPS in workers: the master passes raw TCP connections, each worker does the TLS handshake (NIOSSL), as a
    /// Node cluster worker does with `https.createServer`.
    @Suite struct TLS {
        /// A self-signed certificate for 127.0.0.1 made with `openssl req`, in a fresh folder.
        static func makeCertificate() throws -> (directory: URL, certificate: String, key: String) {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-tls-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let certificate = directory.appendingPathComponent("cert.pem").path
            let key = directory.appendingPathComponent("key.pem").path
            let openssl = try run(
                "/usr/bin/openssl",
                ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", certificate, "-days", "1",
                 "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
            guard openssl.status == 0 else { throw ProbeError.io("openssl failed: \(openssl.output)") }
            return (directory, certificate, key)
        }

        @discardableResult
        static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
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

        /// `curl --http1.1` over TLS, checking the certificate: the body, or nil when it failed.
        static func curl(_ port: Int, certificate: String) throws -> String? {
            let result = try run(
                "/usr/bin/curl", ["-sS", "--max-time", "10", "--http1.1", "--cacert", certificate, "https://127.0.0.1:\(port)/"])
            return result.status == 0 ? result.output : nil
        }

        @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl")
            && FileManager.default.isExecutableFile(atPath: "/usr/bin/curl"), "needs openssl and curl"))
        func workersDoTheHandshakeOnPassedConnectionsAndSurviveGarbage() throws {
            let tls = try Self.makeCertificate()
            defer { try? FileManager.default.removeItem(at: tls.directory) }
            let server = try SwitchboardProcess.start(
                ["--workers", "2", "--tls-cert", tls.certificate, "--tls-key", tls.key],
                executable: SwitchboardProcess.sibling("switchboard-nio-example"))
            defer { server.cleanUp() }
            var pids: Set<String> = []
            for _ in 0..<6 {
                let body = try #require(try Self.curl(server.port, certificate: tls.certificate), "\(server.stderr)")
                #expect(body.hasPrefix("Hello from NIO worker "), "\(body)")
                pids.insert(String(body.dropFirst("Hello from NIO worker ".count)).trimmingCharacters(in: .whitespacesAndNewlines))
            }
            #expect(pids == Set(server.workerPIDs.map(String.init)), "both workers did handshakes: \(pids)")

            // Plain HTTP (not a ClientHello) on the TLS port: that connection closes, nobody else notices.
            let workers = Set(server.workerPIDs)
            let garbage = try TestConnection(port: server.port, timeoutSeconds: 5)
            try garbage.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            let answer = garbage.readToEnd()
            #expect(!answer.contains("Hello from NIO worker"), "no cleartext answer: \(answer)")
            #expect(try Self.curl(server.port, certificate: tls.certificate)?.hasPrefix("Hello from NIO worker ") == true)
            #expect(Set(server.workerPIDs) == workers, "no worker was replaced")
            server.stopAndCheckNoOrphans()
        }

        @Test func aMissingCertificateIsAOneLineErrorFromTheMaster() throws {
            let process = try SwitchboardProcess(
                arguments: ["--port", "0", "--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"],
                executable: SwitchboardProcess.sibling("switchboard-nio-example"))
            defer { process.cleanUp() }
            #expect(process.waitForExit() == 1)
            #expect(process.stderr.hasPrefix("switchboard-nio-example: cannot load the TLS certificate or key: "), "\(process.stderr)")
            #expect(ProcFS.workers(ofMaster: process.pid).isEmpty)
        }
    }
}
