import Testing

@testable import Switchboard

@Suite struct HealthProbeTests {
    func classify(_ text: String) -> HealthProbe.Request {
        HealthProbe.classify(Array(text.utf8)[...])
    }

    func answer(_ request: HealthProbe.Request, _ readiness: HealthProbe.Readiness) -> String {
        String(decoding: HealthProbe.response(to: request, readiness: readiness), as: UTF8.self)
    }

    @Test func anHTTPRequestIsAnsweredOnceItsHeadIsComplete() {
        #expect(classify("GET /readyz HTTP/1.1\r\nHost: x\r\n") == .incomplete)
        #expect(classify("GET /readyz?verbose HTTP/1.1\r\nHost: x\r\n\r\n") == .http(method: "GET", path: "/readyz"))
        #expect(classify("HEAD /livez HTTP/1.0\n\n") == .http(method: "HEAD", path: "/livez"))
        #expect(classify("GET /liv") == .incomplete)
    }

    @Test func anythingElseIsAnAgentCheck() {
        #expect(classify("agent\n") == .agent)
        #expect(classify("\n") == .agent)
        #expect(classify(String(repeating: "x", count: HealthProbe.maxHead)) == .agent)
    }

    @Test func readinessFollowsTheReadyWorkersAndTheStop() {
        #expect(HealthProbe.readiness(stopAnnounced: false, ready: 4, target: 4) == .ready(weight: 100))
        #expect(HealthProbe.readiness(stopAnnounced: false, ready: 1, target: 2) == .ready(weight: 50))
        #expect(HealthProbe.readiness(stopAnnounced: false, ready: 1, target: 300) == .ready(weight: 1))
        #expect(HealthProbe.readiness(stopAnnounced: false, ready: 0, target: 2) == .down)
        #expect(HealthProbe.readiness(stopAnnounced: true, ready: 2, target: 2) == .draining)
    }

    @Test func agentLinesAreHAProxysWords() {
        #expect(answer(.agent, .ready(weight: 50)) == "up ready 50%\n")
        #expect(answer(.agent, .draining) == "drain\n")
        #expect(answer(.agent, .down) == "down\n")
    }

    @Test func httpAnswers() {
        #expect(answer(.http(method: "GET", path: "/readyz"), .ready(weight: 100)).hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(answer(.http(method: "GET", path: "/readyz"), .draining).hasPrefix("HTTP/1.1 503 "))
        #expect(answer(.http(method: "GET", path: "/readyz"), .down).hasSuffix("\r\n\r\nno worker ready\n"))
        #expect(answer(.http(method: "GET", path: "/livez"), .draining).hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(answer(.http(method: "HEAD", path: "/livez"), .down).hasSuffix("Connection: close\r\n\r\n"))
        #expect(answer(.http(method: "GET", path: "/"), .down).hasPrefix("HTTP/1.1 404 "))
        #expect(answer(.http(method: "POST", path: "/readyz"), .down).hasPrefix("HTTP/1.1 405 "))
    }

    @Test func addressesParse() {
        #expect(Configuration.address("127.0.0.1:8081")! == ("127.0.0.1", 8081))
        #expect(Configuration.address("[::1]:0")! == ("::1", 0))
        #expect(Configuration.address(":9000")! == ("", 9000))
        #expect(Configuration.address("::1:80") == nil)
        #expect(Configuration.address("localhost") == nil)
        #expect(Configuration.address("1.2.3.4:70000") == nil)
    }
}
