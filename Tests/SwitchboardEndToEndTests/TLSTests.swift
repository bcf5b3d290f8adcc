import Foundation
import SwitchboardTestSupport
import Testing

extension EndToEndTests {
    /// HTTPS in workers: the master passes raw TCP connections, each worker does the TLS handshake (NIOSSL), as a
    /// Node cluster worker does with `https.createServer`.
    @Suite struct TLS {
        /// `curl --http1.1` over TLS, checking the certificate: the body, or nil when it failed.
        static func curl(_ port: Int, certificate: String) throws -> String? {
            let result = try runTool(
                "/usr/bin/curl", ["-sS", "--max-time", "10", "--http1.1", "--cacert", certificate, "https://127.0.0.1:\(port)/"])
            return result.status == 0 ? result.output : nil
        }

        @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl")
            && FileManager.default.isExecutableFile(atPath: "/usr/bin/curl"), "needs openssl and curl"))
        func workersDoTheHandshakeOnPassedConnectionsAndSurviveGarbage() throws {
            let tls = try TestCertificate()
            defer { tls.remove() }
            let server = try SwitchboardProcess.start(
                ["--workers", "2"] + tls.flags,
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

        /// On a drain the idle keep-alive connection is closed with close_notify, not a bare end of stream.
        @Test(.enabled(if: toolsInstalled("/usr/bin/openssl", "/usr/bin/python3"), "needs openssl and python3"))
        func aDrainingWorkerClosesTLSWithCloseNotify() throws {
            let tls = try TestCertificate()
            defer { tls.remove() }
            let server = try SwitchboardProcess.start(
                ["--workers", "1"] + tls.flags, executable: SwitchboardProcess.sibling("switchboard-nio-example"))
            defer { server.cleanUp() }
            let probe = try BackgroundTool(
                "/usr/bin/python3", ["-c", tlsCloseProbe, "\(server.port)", tls.certificate, "/"])
            // Answered, and idle on its keep-alive connection: then the master stops.
            #expect(probe.waitForOutput(containing: "Hello from NIO worker "), "\(probe.printed)")
            server.signal(SIGTERM)
            let output = try #require(probe.wait(timeout: 30), "the probe did not end")
            #expect(output.contains("Hello from NIO worker "), "\(output)")
            #expect(output.hasSuffix("closed with close_notify\n"), "\(output)")
            #expect(server.waitForExit() == 0)
        }

        /// A TLS connection handed over just before a drain: its drain gate is behind the TLS handler, so the
        /// handshake does not count as the request and the request sent after it is answered. A handshake never
        /// begun is cut at the header timeout.
        @Test(.enabled(if: toolsInstalled("/usr/bin/openssl", "/usr/bin/python3"), "needs openssl and python3"))
        func theDrainGateWaitsForTheFirstDecryptedRequestAndASilentHandshakeIsCut() throws {
            let tls = try TestCertificate()
            defer { tls.remove() }
            let server = try SwitchboardProcess.start(
                ["--workers", "1", "--header-timeout", "1.5"] + tls.flags,
                executable: SwitchboardProcess.sibling("switchboard-nio-example"))
            defer { server.cleanUp() }
            let silent = try TestConnection(port: server.port, timeoutSeconds: 10)
            let started = ContinuousClock.now
            _ = silent.readToEnd()
            #expect(ContinuousClock.now - started < .seconds(5), "a connection that sends no ClientHello is cut")
            let probe = try BackgroundTool("/usr/bin/python3", ["-c", Self.lateRequestProbe, "\(server.port)", tls.certificate])
            #expect(probe.waitForOutput(containing: "handshake done"), "\(probe.printed)")
            server.signal(SIGTERM)
            let output = try #require(probe.wait(timeout: 30), "the probe did not end")
            #expect(output.contains("Hello from NIO worker "), "the request sent after the drain began: \(output)")
            #expect(server.waitForExit() == 0)
        }

        /// Connects over TLS, says when the handshake is done, waits 0.4 s, then sends one request and prints the
        /// answer.
        static let lateRequestProbe = """
            import socket, ssl, sys, time
            context = ssl.create_default_context(cafile=sys.argv[2])
            raw = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
            tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
            print("handshake done", flush=True)
            time.sleep(0.4)
            try:
                tls.sendall(b"GET / HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n")
                while True:
                    data = tls.recv(65536)
                    if not data:
                        break
                    sys.stdout.write(data.decode(errors="replace"))
            except Exception as error:
                print("failed:", error)
            """

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
