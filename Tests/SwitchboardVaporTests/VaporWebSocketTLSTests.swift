// Built only with the package trait `Vapor` (`swift build --traits Vapor`).
#if Vapor
import Foundation
import SwitchboardTestSupport
import Testing

/// WebSockets, TLS and HTTP/2 through `switchboard-vapor-example`, with real clients.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct VaporWebSocketTLSTests {
    static let curl = "/usr/bin/curl"
    static let nghttp = "/usr/bin/nghttp"

    /// `/ws` echoes text: the upgrade handshake, a masked frame out, the same text back; the connection outlives
    /// Switchboard's keep-alive timeout (the HTTP/1 timeouts leave on the 101).
    @Test func aWebSocketEchoesAndOutlivesTheHTTPTimeouts() throws {
        let server = try VaporClusterTests.start(
            ["--workers", "2", "--keepalive-timeout", "1", "--header-timeout", "1"])
        defer { server.cleanUp() }
        let socket = try WebSocketProbe(port: server.port)
        try socket.send(text: "hello through the cluster")
        #expect(try socket.receive() == .init(opcode: 1, payload: Array("hello through the cluster".utf8)))
        Thread.sleep(forTimeInterval: 2.5)
        try socket.send(text: "still here")
        #expect(try socket.receive().text == "still here", "the WebSocket was closed while idle")
        server.stopAndCheckNoOrphans()
    }

    /// A drain sends each WebSocket a Close frame with status 1001 (Going Away) at once; the worker exits once its
    /// client has answered the close.
    @Test func aDrainSaysGoingAwayToWebSockets() throws {
        let server = try VaporClusterTests.start(["--workers", "1", "--drain-timeout", "20"])
        defer { server.cleanUp() }
        let socket = try WebSocketProbe(port: server.port)
        try socket.send(text: "ping")
        #expect(try socket.receive().text == "ping")
        let start = Date()
        server.signal(SIGTERM)
        let close = try socket.receive()
        #expect(close.closeCode == 1001, "\(close)")
        #expect(Date().timeIntervalSince(start) < 3)
        try socket.close(code: 1001)
        #expect(server.waitForExit(timeout: .seconds(10)) == 0, "stderr:\n\(server.stderr)")
    }

    /// Over TLS, ALPN chooses HTTP/2 for curl --http2 and HTTP/1.1 for curl --http1.1; both reach the application.
    @Test(.enabled(if: toolsInstalled("/usr/bin/openssl", curl))) func tlsServesHTTP2ByALPNAndHTTP1() throws {
        let certificate = try TestCertificate()
        defer { certificate.remove() }
        let server = try VaporClusterTests.start(["--workers", "2"] + certificate.flags)
        defer { server.cleanUp() }
        let url = "https://127.0.0.1:\(server.port)/"
        for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
            let result = try runTool(
                Self.curl, ["-s", "--cacert", certificate.certificate, flag, "-w", " %{http_version}", url])
            #expect(result.output.hasPrefix("Hello from Vapor worker "), "\(result.output)")
            #expect(result.output.hasSuffix(" \(version)"), "\(flag): \(result.output)")
        }
        // A response streamed over HTTP/2.
        let stream = try runTool(Self.curl, ["-s", "--cacert", certificate.certificate, "--http2", url + "stream"])
        #expect(stream.output.components(separatedBy: "chunk ").count == 6, "\(stream.output)")
        server.stopAndCheckNoOrphans()
    }

    /// SIGTERM while an HTTP/2 stream is in flight: the client reads the worker's GOAWAY, then gets the whole
    /// response; the master exits 0.
    @Test(.enabled(if: toolsInstalled("/usr/bin/openssl", nghttp)))
    func anHTTP2DrainFinishesTheStreamsInFlight() throws {
        let certificate = try TestCertificate()
        defer { certificate.remove() }
        let server = try VaporClusterTests.start(["--workers", "1", "--drain-timeout", "20"] + certificate.flags)
        defer { server.cleanUp() }
        let client = try BackgroundTool(Self.nghttp, ["-v", "https://127.0.0.1:\(server.port)/stream"])
        #expect(client.waitForOutput(containing: "chunk 1 "), "\(client.printed)")
        server.signal(SIGTERM)
        let output = try #require(client.wait(timeout: 20))
        for index in 1...5 { #expect(output.contains("chunk \(index) "), "\(output)") }
        // nghttp -v logs the frames it receives: the worker's GOAWAY comes before the stream's last chunk.
        let goAway = try #require(output.range(of: "recv GOAWAY"), "no GOAWAY from the worker: \(output)")
        let lastChunk = try #require(output.range(of: "chunk 5 "))
        #expect(goAway.lowerBound < lastChunk.lowerBound, "\(output)")
        #expect(server.waitForExit() == 0, "stderr:\n\(server.stderr)")
    }
}
#endif
