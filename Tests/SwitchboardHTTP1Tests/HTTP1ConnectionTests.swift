import Testing

@testable import SwitchboardHTTP1

/// Answers `OK` (or `OK-close`), holding a response back when the target is `/hold`.
private struct EchoResponder: HTTP1Responder {
    func respond(to request: RequestHead, in bytes: [UInt8], keepAlive: Bool) -> HTTP1Reply {
        let target = String(decoding: bytes[request.target], as: UTF8.self)
        let body = keepAlive ? "OK \(target)|" : "OK-close \(target)|"
        return HTTP1Reply(bytes: Array(body.utf8), delayNanoseconds: target == "/hold" ? 500 * ms : 0)
    }
}

private let ms: UInt64 = 1_000_000
private let second: UInt64 = 1_000_000_000

/// Drives a machine as a driver would: a socket that takes at most `window` bytes per write.
private struct Harness {
    var machine: HTTP1Connection
    var now: UInt64 = 1_000 * second
    var sent: [UInt8] = []

    init(headerTimeout: UInt64 = 10 * second, keepAlive: UInt64 = 5 * second, send: UInt64 = 20 * second,
         outputBound: Int = 64 * 1024) {
        machine = HTTP1Connection(
            limits: HTTP1Limits(
                headerTimeout: headerTimeout, keepAliveTimeout: keepAlive, sendTimeout: send, outputBound: outputBound),
            now: now)
    }

    mutating func receive(_ text: String) {
        let bytes = Array(text.utf8)
        machine.received(bytes, count: bytes.count, now: now, responder: EchoResponder())
    }

    /// Writes what is queued, at most `window` bytes in all (nil: everything).
    mutating func write(window: Int? = nil) {
        var room = window ?? .max
        while machine.wantsWrite && room > 0 {
            let count = min(machine.pendingOutput, room)
            sent += machine.output[machine.outputOffset..<(machine.outputOffset + count)]
            room -= count
            machine.wrote(count, now: now, responder: EchoResponder())
        }
    }

    mutating func advance(_ nanoseconds: UInt64) {
        now += nanoseconds
        machine.tick(now: now, responder: EchoResponder())
    }

    var text: String { String(decoding: sent, as: UTF8.self) }
}

@Suite struct HTTP1ConnectionTests {
    @Test func answersPipelinedRequestsInOrder() {
        var h = Harness()
        h.receive("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\nConnection: close\r\n\r\n")
        h.write()
        #expect(h.text == "OK /a|OK /b|OK-close /c|")
        #expect(h.machine.isFinished)
        #expect(h.machine.ending == nil)
    }

    @Test func aRequestSplitAcrossReadsIsAnsweredOnceComplete() {
        var h = Harness()
        h.receive("GET /split HT")
        h.write()
        #expect(h.text.isEmpty)
        h.receive("TP/1.1\r\n\r\n")
        h.write()
        #expect(h.text == "OK /split|")
        #expect(!h.machine.isFinished)
    }

    @Test func silentNewConnectionClosesQuietlyAfterTheHeaderTimeout() {
        var h = Harness(headerTimeout: 3 * second)
        h.advance(3 * second - 1)
        #expect(!h.machine.isFinished)
        h.advance(1)
        #expect(h.machine.isFinished)
        #expect(h.machine.ending == .noRequest)
        #expect(h.sent.isEmpty)
    }

    @Test func halfARequestGets408AfterTheHeaderTimeout() {
        var h = Harness(headerTimeout: 3 * second)
        h.receive("GET / HT")
        h.advance(2 * second)
        h.receive("TP/1.1\r\nHost: slow")  // still no end of head: the timeout counts from arrival, not the last byte
        h.advance(1 * second)
        #expect(h.machine.ending == .headerTimeout)
        h.write()
        #expect(h.text.hasPrefix("HTTP/1.1 408 Request Timeout\r\n"))
        #expect(h.machine.isFinished)
    }

    @Test func idleKeepAliveClosesAfterTheKeepAliveTimeoutCountedFromTheResponse() {
        var h = Harness(headerTimeout: 10 * second, keepAlive: 2 * second)
        h.advance(1 * second)
        h.receive("GET / HTTP/1.1\r\n\r\n")
        h.write()
        h.advance(2 * second - 1)
        #expect(!h.machine.isFinished)
        h.advance(1)
        #expect(h.machine.isFinished)
        #expect(h.machine.ending == .keepAliveTimeout)
    }

    @Test func theNextHeadHasTheHeaderTimeoutFromTheEndOfTheResponse() {
        var h = Harness(headerTimeout: 4 * second, keepAlive: 1 * second)
        h.receive("GET / HTTP/1.1\r\n\r\n")
        h.write()
        h.advance(500 * ms)
        h.receive("GET /next")  // a byte arrived: the header timeout applies, not the keep-alive one
        h.advance(3 * second)
        #expect(!h.machine.isFinished)
        h.advance(500 * ms)
        #expect(h.machine.ending == .headerTimeout)
    }

    @Test func aStalledBodyEnds() {
        var h = Harness(headerTimeout: 2 * second)
        h.receive("POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n0123456789")
        h.write()
        #expect(h.text == "OK /|")
        h.advance(1 * second)
        h.receive("0123456789")
        h.advance(2 * second - 1)
        #expect(!h.machine.isFinished)  // progress moved the deadline
        h.advance(1)
        #expect(h.machine.ending == .bodyTimeout)
    }

    @Test func aClientThatDoesNotReadIsCutAfterTheSendTimeout() {
        var h = Harness(send: 5 * second)
        h.receive("GET / HTTP/1.1\r\n\r\n")
        h.write(window: 3)  // the socket took 3 bytes, then would block
        h.advance(4 * second)
        h.write(window: 1)  // progress restarts the send timer
        h.advance(5 * second - 1)
        #expect(!h.machine.isFinished)
        h.advance(1)
        #expect(h.machine.isFinished)
        #expect(h.machine.ending == .sendTimeout)
    }

    @Test func outputAboveTheBoundStopsReadingAndParsing() {
        var h = Harness(outputBound: 20)
        let request = "GET /x HTTP/1.1\r\n\r\n"
        h.receive(String(repeating: request, count: 1000))
        // Two responses of 7 bytes fit under 20, the third passes it: parsing stops there and nothing is read.
        #expect(h.machine.pendingOutput <= 20 + 7)
        #expect(!h.machine.wantsRead)
        h.write()
        // Once written, the carried requests are parsed again, a bounded batch at a time.
        var rounds = 0
        while h.machine.wantsWrite && rounds < 2000 {
            #expect(h.machine.pendingOutput <= 27)
            h.write()
            rounds += 1
        }
        #expect(h.text == String(repeating: "OK /x|", count: 1000))
        #expect(h.machine.wantsRead)
    }

    @Test func aHeldResponseKeepsLaterRequestsWaitingInOrder() {
        var h = Harness()
        h.receive("GET /hold HTTP/1.1\r\n\r\nGET /after HTTP/1.1\r\n\r\n")
        h.write()
        #expect(h.text.isEmpty)
        #expect(!h.machine.wantsRead)
        h.advance(500 * ms)
        h.write()
        #expect(h.text == "OK /hold|OK /after|")
    }

    @Test func badInputIsAnsweredAndClosed() {
        for (input, status) in [
            ("BAD\r\n\r\n", "400"), ("GET / HTTP/2.0\r\n\r\n", "505"),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "501"),
            ("GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 17_000), "431"),
            ("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", "400"), ("GET / HTTP/1.1\rX\r\n\r\n", "400"),
            ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", "400"),
        ] {
            var h = Harness()
            h.receive(input)
            h.write()
            #expect(h.text.hasPrefix("HTTP/1.1 \(status) "), "\(input.prefix(20))")
            #expect(h.machine.isFinished)
        }
    }

    @Test func expectContinueGetsTheInterimResponseFirst() {
        var h = Harness()
        h.receive("POST / HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        h.write()
        #expect(h.text == "HTTP/1.1 100 Continue\r\n\r\nOK /|")
        h.receive("abcGET /2 HTTP/1.1\r\n\r\n")
        h.write()
        #expect(h.text.hasSuffix("OK /2|"))
    }

    @Test func endOfStreamAnswersWhatWasSentThenCloses() {
        var h = Harness()
        h.receive("GET /last HTTP/1.1\r\n\r\n")
        h.machine.receivedEnd(now: h.now)
        #expect(!h.machine.isFinished)
        h.write()
        #expect(h.text == "OK /last|")
        #expect(h.machine.isFinished)
    }

    @Test func drainClosesIdleAfterItsGraceAndAnswersInFlightWithClose() {
        var idle = Harness()
        idle.receive("GET / HTTP/1.1\r\n\r\n")
        idle.write()
        idle.machine.drain(now: idle.now)
        #expect(!idle.machine.isFinished)  // its next request may be on its way
        #expect(idle.machine.deadline == idle.now + HTTP1Connection.drainGrace)
        idle.machine.tick(now: idle.now + HTTP1Connection.drainGrace, responder: EchoResponder())
        #expect(idle.machine.isFinished)

        // A request that arrives within the grace is answered, with close.
        var busy = Harness()
        busy.receive("GET /a HTTP/1.1\r\n\r\n")
        busy.write()
        busy.machine.drain(now: busy.now)
        busy.receive("GET /b HTTP/1.1\r\n\r\n")
        busy.write()
        #expect(busy.text == "OK /a|OK-close /b|")
        #expect(busy.machine.isFinished)

        var fresh = Harness()
        fresh.machine.drain(now: fresh.now)
        #expect(!fresh.machine.isFinished)  // passed just before the drain: its first request still gets an answer
        fresh.receive("GET /late HTTP/1.1\r\n\r\n")
        fresh.write()
        #expect(fresh.text == "OK-close /late|")
        #expect(fresh.machine.isFinished)
    }
}
