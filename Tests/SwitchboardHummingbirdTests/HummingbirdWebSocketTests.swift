// Built only with the package trait `Hummingbird` (`swift build --traits Hummingbird`).
#if Hummingbird
import Foundation
import SwitchboardTestSupport
import Testing

/// WebSockets through the cluster: `switchboard-hummingbird-example --websocket on` upgrades `/ws` with
/// hummingbird-websocket and echoes. The client is a raw socket (`WebSocketProbe`), so what is checked is what crossed
/// the wire.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct HummingbirdWebSocketTests {
    let example = SwitchboardProcess.sibling("switchboard-hummingbird-example")

    @Test(arguments: [false, true]) func messagesAreEchoedOnPassedConnections(serverBuilder: Bool) throws {
        let server = try SwitchboardProcess.start(
            ["--workers", "2", "--websocket", "on", "--keepalive-timeout", "1", "--header-timeout", "1"]
                + (serverBuilder ? ["--server-builder", "on"] : []),
            executable: example)
        defer { server.cleanUp() }
        var holders: Set<pid_t> = []
        var sockets: [WebSocketProbe] = []
        for index in 0..<4 {
            let socket = try WebSocketProbe(port: server.port)
            try socket.send(text: "hello \(index)")
            #expect(try socket.receive() == .init(opcode: 1, payload: Array("hello \(index)".utf8)))
            let binary = (0..<300).map { UInt8($0 & 0xFF) }
            try socket.send(opcode: 2, binary)
            #expect(try socket.receive() == .init(opcode: 2, payload: binary))
            holders.insert(try #require(socket.connection.waitUntilHeldByWorker(of: server)))
            sockets.append(socket)
        }
        #expect(holders == Set(server.workerPIDs), "both workers hold WebSockets: \(holders)")
        // Idle past the keep-alive timeout: the HTTP/1 limits do not apply to an upgraded connection.
        Thread.sleep(forTimeInterval: 2)
        try sockets[0].send(text: "still here")
        #expect(try sockets[0].receive().text == "still here")
        // A plain request on the same server is still HTTP, and its limits hold before any upgrade: a connection
        // that sends nothing is cut at the header timeout.
        #expect(try get(port: server.port).body.hasPrefix("Hello from Hummingbird worker "))
        let silent = try TestConnection(port: server.port, timeoutSeconds: 10)
        let started = ContinuousClock.now
        #expect(try silent.readUntilClosed(), "the silent connection was closed")
        #expect(ContinuousClock.now - started < .seconds(5))
        for socket in sockets { try socket.close() }
        server.stopAndCheckNoOrphans()
    }

    /// A drain (a reload here) tells each WebSocket client "going away" (1001) at once, so it reconnects to a worker
    /// that stays; the draining worker does not wait for the drain deadline.
    @Test func aDrainClosesWebSocketsWith1001AndTheClientReconnectsToANewWorker() throws {
        let server = try SwitchboardProcess.start(
            ["--workers", "1", "--websocket", "on", "--drain-timeout", "20"], executable: example)
        defer { server.cleanUp() }
        let socket = try WebSocketProbe(port: server.port)
        try socket.send(text: "before")
        #expect(try socket.receive().text == "before")
        let old = try #require(socket.connection.waitUntilHeldByWorker(of: server))
        let started = ContinuousClock.now
        server.signal(SIGHUP)
        let frame = try socket.receive()
        #expect(frame.closeCode == 1001, "a going-away close: \(frame)")
        #expect(ContinuousClock.now - started < .seconds(5))
        try socket.close(code: 1001)
        #expect(try socket.connection.readUntilClosed(), "the server closes after the client's close, with nothing more")
        // The old worker is gone well before the 20 s drain deadline: nothing held it.
        #expect(waitUntil(timeout: .seconds(5)) { !server.workerPIDs.contains(old) && server.workerPIDs.count == 1 })
        #expect(ContinuousClock.now - started < .seconds(10))
        let again = try WebSocketProbe(port: server.port)
        try again.send(text: "after")
        #expect(try again.receive().text == "after")
        #expect(again.connection.waitUntilHeldByWorker(of: server) != old)
        try again.close()
        server.stopAndCheckNoOrphans()
    }
}
#endif
