import CSwitchboardLinux
import Foundation
import Logging
import Switchboard
import Testing

@testable import SwitchboardHTTP1

/// What the engine's connections tell its loop about the requests they answered (issue 23): a request answered on a
/// connection that had been answered before (kept alive, or pipelined behind its first request) is what lets the
/// loop yield (``LoopRest``); a connection's first request is not.
@Suite struct HTTP1ConnectionsTests {
    let get = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    let limits = HTTP1Limits(
        headerTimeout: 10_000_000_000, keepAliveTimeout: 10_000_000_000, sendTimeout: 10_000_000_000)

    /// A connected pair: the engine's end (non-blocking) and the client's.
    func pair() throws -> (engine: CInt, client: CInt) {
        let (engine, client) = try Syscalls.streamSocketPair()
        try Syscalls.setNonBlocking(engine, true)
        return (engine, client)
    }

    func send(_ text: String, to fd: CInt) throws {
        let bytes = Array(text.utf8)
        let written = try bytes.withUnsafeBytes { try Syscalls.write(fd, $0) }
        #expect(written == bytes.count)
    }

    /// A connection gets `TCP_NODELAY` at adoption unless the listener gave it
    /// (``HTTP1Connections/connectionsHaveNoDelay``, which the master makes true by setting it on its listener): then
    /// adoption makes no call for it (issue 23). A descriptor that is not a stream socket is not adopted.
    @Test func adoptionSetsNoDelayOnlyWhereTheListenerDidNot() throws {
        let listener = try Syscalls.listenTCP(host: "127.0.0.1", port: 0, backlog: 8, reusePort: false)
        defer { Syscalls.close(listener.fd) }
        #expect(!Syscalls.noDelay(listener.fd))
        let responder = FixedResponder(body: "ok")
        for given in [false, true] {
            var connections = HTTP1Connections(logger: Logger(label: "test"), connectionsHaveNoDelay: given)
            connections.epoll = try Syscalls.epollCreate()
            defer { Syscalls.close(connections.epoll) }
            let client = sb_tcp_connect("127.0.0.1", Int32(listener.port))
            try #require(client >= 0)
            defer { Syscalls.close(client) }
            guard case .done(let engine) = try Syscalls.accept(listener.fd) else {
                Issue.record("nothing to accept")
                return
            }
            #expect(!Syscalls.noDelay(engine), "accepted on a listener without it")
            let adopted = connections.adopt(
                engine, HTTP1Connection(limits: limits, now: 1), now: 1, responder: responder)
            #expect(adopted == .keep && connections.count == 1)
            #expect(Syscalls.noDelay(engine) == !given, "said to come with it: \(given)")
            #expect(connections.close(engine) == 0)
        }

        // A datagram socket takes neither TCP_NODELAY nor a connection's place: closed, not adopted.
        var connections = HTTP1Connections(logger: Logger(label: "test"))
        connections.epoll = try Syscalls.epollCreate()
        defer { Syscalls.close(connections.epoll) }
        let datagram = socket(AF_INET, CInt(SOCK_DGRAM.rawValue), 0)
        try #require(datagram >= 0)
        let adopted = connections.adopt(datagram, HTTP1Connection(limits: limits, now: 1), now: 1, responder: responder)
        #expect(adopted == nil && connections.count == 0)
    }

    @Test func aSecondRequestOnAConnectionIsKeptAliveAndItsFirstIsNot() throws {
        var connections = HTTP1Connections(logger: Logger(label: "test"))
        connections.epoll = try Syscalls.epollCreate()
        let responder = FixedResponder(body: "ok")
        let first = try pair()
        try send(get, to: first.client)
        let adopted = connections.adopt(
            first.engine, HTTP1Connection(limits: limits, now: 1), now: 1, responder: responder)
        #expect(adopted == .keep)
        #expect(connections.answered == 1)
        let afterFirst = connections.takeAnsweredKeptAlive()
        #expect(!afterFirst)
        try send(get, to: first.client)
        let read = connections.readable(first.engine, now: 2, responder: responder)
        #expect(read == .keep)
        #expect(connections.answered == 2)
        let afterSecond = connections.takeAnsweredKeptAlive()
        #expect(afterSecond)
        // Taken: it says nothing until the next such answer.
        let again = connections.takeAnsweredKeptAlive()
        #expect(!again)

        // Two requests in the connection's first read: the second is pipelined behind the first.
        let pipelined = try pair()
        try send(get + get, to: pipelined.client)
        let adoptedPipelined = connections.adopt(
            pipelined.engine, HTTP1Connection(limits: limits, now: 3), now: 3, responder: responder)
        #expect(adoptedPipelined == .keep)
        #expect(connections.answered == 4)
        let afterPipelined = connections.takeAnsweredKeptAlive()
        #expect(afterPipelined)

        // One request per connection, however many connections: never.
        for round in 0..<5 {
            let one = try pair()
            try send("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", to: one.client)
            let now = UInt64(10 + round)
            let next = connections.adopt(
                one.engine, HTTP1Connection(limits: limits, now: now), now: now, responder: responder)
            #expect(next == .close)
            let closed = connections.close(one.engine)
            #expect(closed != nil)
            Syscalls.close(one.client)
        }
        #expect(connections.answered == 9)
        let afterNew = connections.takeAnsweredKeptAlive()
        #expect(!afterNew)

        for fd in [first.engine, pipelined.engine] {
            let closed = connections.close(fd)
            #expect(closed != nil)
        }
        for fd in [first.client, pipelined.client, connections.epoll] { Syscalls.close(fd) }
    }
}
