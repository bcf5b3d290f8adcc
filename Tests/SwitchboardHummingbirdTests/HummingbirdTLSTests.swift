// Built only with the package trait `Hummingbird` (`swift build --traits Hummingbird`).
#if Hummingbird
import Foundation
import SwitchboardTestSupport
import Testing

/// End-to-end: `switchboard-hummingbird-example --tls-cert --tls-key`, whose application server is
/// `.http2Upgrade(tlsConfiguration:)`, under its master on 127.0.0.1, with real clients no one here wrote: curl,
/// nghttp2's h2load and nghttp. Serialized so the 2-core machine is not oversubscribed.
@Suite(
    .serialized, .timeLimit(.minutes(4)),
    .enabled(
        if: toolsInstalled("/usr/bin/openssl", "/usr/bin/curl", "/usr/bin/h2load", "/usr/bin/nghttp"),
        "needs openssl, curl and nghttp2-client (h2load, nghttp): bash Scripts/bootstrap.sh tls"))
struct HummingbirdTLSTests {
    let example = SwitchboardProcess.sibling("switchboard-hummingbird-example")

    /// curl over TLS: the body and the HTTP version curl used, or the failure.
    static func curl(_ port: Int, _ tls: TestCertificate, _ flags: [String], path: String = "/") throws
        -> (body: String, version: String, output: String)?
    {
        let result = try runTool(
            "/usr/bin/curl",
            ["-sS", "--max-time", "20", "--cacert", tls.certificate, "-w", "\n%{http_version}"] + flags
                + ["https://127.0.0.1:\(port)\(path)"])
        guard result.status == 0 else { return nil }
        let lines = result.output.split(separator: "\n", omittingEmptySubsequences: false)
        return (lines.dropLast().joined(separator: "\n"), String(lines.last ?? ""), result.output)
    }

    /// The `Hello from Hummingbird worker <pid>` greeting's pid.
    static func workerPID(_ body: String) -> pid_t? {
        body.hasPrefix("Hello from Hummingbird worker ") ? pid_t(body.split(separator: " ").last ?? "") : nil
    }

    @Test func curlGetsHTTP2ByALPNOrHTTP11OverTLSFromEveryWorker() throws {
        let tls = try TestCertificate()
        defer { tls.remove() }
        let server = try SwitchboardProcess.start(["--workers", "2"] + tls.flags, executable: example)
        defer { server.cleanUp() }
        let workers = Set(server.workerPIDs)
        var h2: Set<pid_t> = []
        var h1: Set<pid_t> = []
        for _ in 0..<4 {
            // Over TLS curl speaks HTTP/2 only when the server chose h2 by ALPN.
            let answer = try #require(try Self.curl(server.port, tls, ["--http2"]), "\(server.stderr)")
            #expect(answer.version == "2", "\(answer.output)")
            h2.insert(try #require(Self.workerPID(answer.body), "\(answer.output)"))
        }
        for _ in 0..<4 {
            let old = try #require(try Self.curl(server.port, tls, ["--http1.1"]), "\(server.stderr)")
            #expect(old.version == "1.1", "\(old.output)")
            h1.insert(try #require(Self.workerPID(old.body), "\(old.output)"))
        }
        #expect(h2 == workers, "HTTP/2 from \(h2), workers \(workers)")
        #expect(h1 == workers, "HTTP/1.1 from \(h1), workers \(workers)")
        server.stopAndCheckNoOrphans()
    }

    @Test func h2loadWithManyStreamsPerConnectionGetsOnly2xx() throws {
        let tls = try TestCertificate()
        defer { tls.remove() }
        let server = try SwitchboardProcess.start(["--workers", "2"] + tls.flags, executable: example)
        defer { server.cleanUp() }
        let run = try runTool("/usr/bin/h2load", ["-n", "2000", "-c", "4", "-m", "10", "https://127.0.0.1:\(server.port)/"])
        let result = try #require(H2LoadResult(run.output), "\(run.output)")
        #expect(result.protocolName == "h2", "\(run.output)")
        #expect(result.succeeded == 2000 && result.status2xx == 2000, "\(run.output)")
        #expect(result.failed == 0 && result.errored == 0 && result.timeouts == 0, "\(run.output)")
        server.stopAndCheckNoOrphans()
    }

    /// A rolling reload while h2load keeps 4 connections with 8 streams each busy: the old workers send GOAWAY, answer
    /// every stream, then close, and h2load counts no failed stream. (h2load does not open new connections after a
    /// GOAWAY, so its run ends with the old workers' connections; a second run is served by the new workers.)
    @Test func aReloadUnderHTTP2LoadFailsNoStream() throws {
        let tls = try TestCertificate()
        defer { tls.remove() }
        let server = try SwitchboardProcess.start(["--workers", "2"] + tls.flags, executable: example)
        defer { server.cleanUp() }
        let before = Set(server.workerPIDs)
        let load = try BackgroundTool(
            "/usr/bin/h2load", ["-D", "6", "-c", "4", "-m", "8", "https://127.0.0.1:\(server.port)/"])
        Thread.sleep(forTimeInterval: 2.5)
        server.signal(SIGHUP)
        #expect(waitUntil(timeout: .seconds(60)) {
            let now = Set(server.workerPIDs)
            return now.count == 2 && now.isDisjoint(with: before) && server.logCount("reload finished") >= 1
        }, "\(server.stderr)")
        // It ends when the drained workers have closed its connections.
        let output = try #require(load.wait(timeout: 60), "h2load did not end after the reload")
        let during = try #require(H2LoadResult(output), "\(output)")
        let after = try runTool("/usr/bin/h2load", ["-n", "400", "-c", "2", "-m", "8", "https://127.0.0.1:\(server.port)/"])
        let fresh = try #require(H2LoadResult(after.output), "\(after.output)")
        server.signal(SIGTERM)
        #expect(server.waitForExit() == 0)
        #expect(waitUntil(timeout: .seconds(10)) { ProcFS.workers(ofMaster: server.pid).isEmpty })

        // Each worker reports the requests it answered when its application shuts down.
        let answered = server.stderr.split(separator: "\n")
            .filter { $0.contains("shut down gracefully after") }
            .compactMap { Int($0.split(separator: " ")[6]) }
        #expect(answered.count == 4, "\(server.stderr)")
        #expect(during.succeeded > 100, "\(output)")
        #expect(during.failed == 0 && during.errored == 0 && during.timeouts == 0, "\(output)")
        #expect(during.started == during.succeeded && during.status2xx == during.succeeded, "\(output)")
        #expect(fresh.succeeded == 400 && fresh.status2xx == 400, "the new workers serve HTTP/2: \(after.output)")
        let total = answered.reduce(0, +)
        #expect(total == during.succeeded + fresh.succeeded,
                "every answered stream reached the client: workers \(answered), h2load \(during.succeeded) + \(fresh.succeeded)")
    }

    @Test func sigtermAnswersASlowHTTP2StreamAfterGOAWAYThenExitsWith0() throws {
        let tls = try TestCertificate()
        defer { tls.remove() }
        let server = try SwitchboardProcess.start(["--workers", "1"] + tls.flags, executable: example)
        defer { server.cleanUp() }
        // The slow HTTP/1.1 request first (Python starts slowly on a loaded machine), then the HTTP/2 one; both are in
        // flight (the probe's request sent, nghttp's HEADERS sent) when the master stops.
        let http1 = try BackgroundTool(
            "/usr/bin/python3", ["-c", tlsCloseProbe, "\(server.port)", tls.certificate, "/slow?ms=4000"])
        #expect(http1.waitForOutput(containing: "sent"), "\(http1.printed)")
        let client = try BackgroundTool(
            "/usr/bin/nghttp", ["-v", "--timeout", "20", "https://127.0.0.1:\(server.port)/slow?ms=1500"])
        #expect(client.waitForOutput(containing: "send HEADERS frame"), "\(client.printed)")
        Thread.sleep(forTimeInterval: 0.2)
        server.signal(SIGTERM)
        let output = try #require(client.wait(timeout: 30), "nghttp did not end")
        let curl = try #require(http1.wait(timeout: 30), "the HTTP/1.1 client did not end")
        #expect(server.waitForExit() == 0, "\(server.stderr)")

        let goAway = try #require(output.range(of: "recv GOAWAY frame"), "\(output)")
        let status = try #require(output.range(of: ":status: 200"), "\(output)")
        #expect(goAway.lowerBound < status.lowerBound, "GOAWAY first, then the stream's answer: \(output)")
        #expect(output.contains("Slept 1500 ms in Hummingbird worker "), "\(output)")
        #expect(!output.contains("Some requests were not processed"), "\(output)")
        // The HTTP/1.1 connection: its answer, then a clean TLS close.
        #expect(curl.contains("Slept 4000 ms in Hummingbird worker "), "\(curl)")
        #expect(curl.hasSuffix("closed with close_notify\n"), "\(curl)")
        #expect(ProcFS.workers(ofMaster: server.pid).isEmpty)
    }

    @Test func garbageOrSilenceInsteadOfAClientHelloClosesOnlyThatConnection() throws {
        let tls = try TestCertificate()
        defer { tls.remove() }
        let server = try SwitchboardProcess.start(
            ["--workers", "2", "--header-timeout", "1"] + tls.flags, executable: example)
        defer { server.cleanUp() }
        let workers = Set(server.workerPIDs)

        let garbage = try TestConnection(port: server.port, timeoutSeconds: 5)
        try garbage.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        let answer = garbage.readToEnd()
        #expect(!answer.contains("Hello from Hummingbird"), "no cleartext answer: \(answer)")

        // Connected, says nothing: closed at the header timeout, as an HTTP client that sends no request head.
        let silent = try TestConnection(port: server.port, timeoutSeconds: 10)
        let started = ContinuousClock.now
        #expect(try silent.readUntilClosed(), "the silent connection was closed")
        #expect(ContinuousClock.now - started < .seconds(5))

        #expect(try Self.curl(server.port, tls, ["--http2"])?.version == "2")
        #expect(Set(server.workerPIDs) == workers, "no worker was replaced")
        server.stopAndCheckNoOrphans()
    }
}

/// h2load's summary lines.
struct H2LoadResult {
    var total = 0, started = 0, done = 0, succeeded = 0, failed = 0, errored = 0, timeouts = 0
    var status2xx = 0
    var protocolName = ""

    /// Parses `requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout`,
    /// `status codes: 2000 2xx, ...` and `Application protocol: h2`; nil without them.
    init?(_ output: String) {
        func numbers(after prefix: String) -> [String: Int]? {
            guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix(prefix) }) else { return nil }
            var values: [String: Int] = [:]
            for part in line.dropFirst(prefix.count).split(separator: ",") {
                let words = part.split(separator: " ")
                if words.count == 2, let value = Int(words[0]) { values[String(words[1])] = value }
            }
            return values
        }
        guard let requests = numbers(after: "requests: "), let codes = numbers(after: "status codes: ") else {
            return nil
        }
        total = requests["total"] ?? -1
        started = requests["started"] ?? -1
        done = requests["done"] ?? -1
        succeeded = requests["succeeded"] ?? -1
        failed = requests["failed"] ?? -1
        errored = requests["errored"] ?? -1
        timeouts = requests["timeout"] ?? -1
        status2xx = codes["2xx"] ?? -1
        protocolName = output.split(separator: "\n").first { $0.hasPrefix("Application protocol: ") }
            .map { String($0.dropFirst("Application protocol: ".count)) } ?? ""
    }
}

#endif
