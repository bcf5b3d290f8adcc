import SwitchboardSimulation
import Testing

@testable import SwitchboardHTTP1

/// The rewritten request-head parser against the one it replaced (``ReferenceRequestHead``), on mutations of real
/// and broken requests: the same head, or the same failure, for every input.
@Suite struct RequestHeadDifferentialTests {
    static let seeds = [
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:3000\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:3000\r\nConnection: close\r\n\r\n",
        "GET /a/b?c=d HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
        "HEAD /x HTTP/1.1\r\ncontent-length: 12\r\nExpect: 100-continue\r\n\r\n",
        "POST /upload HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\nX-a.b_c~1!#$%&'*+^`|: v:w\r\n\r\n",
        "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nConnection: upgrade, close ,keep-alive\r\nHost:\ta \t\r\n\r\n",
        "DELETE /r HTTP/1.1\r\nexpect: 100-CONTINUE\r\nCONTENT-LENGTH: 000123456789012345\r\n\r\n",
    ]
    /// Bytes that matter to the parser, and a few that do not.
    static let alphabet: [UInt8] = Array(" \t\r\n:,/.0159AHTPaehkp-_(\u{7f}".utf8) + [0, 0xff]

    /// The same answer, as the reference gives it, for the seeds as they are.
    @Test func theSeedsParseAsBefore() {
        for seed in Self.seeds {
            let bytes = Array(seed.utf8)
            guard let end = RequestHead.headEnd(bytes, 0, bytes.count) else {
                Issue.record("no head end in \(seed.debugDescription)")
                continue
            }
            #expect(RequestHead.parse(bytes, 0, end) == ReferenceRequestHead.parse(bytes, 0, end))
        }
    }

    /// 100,000 mutations (replace, insert, delete one to four bytes; a seeded generator, so a failure repeats),
    /// parsed at a start after a few bytes of other data, as a pipelined request is.
    @Test func mutationsParseAsBefore() {
        var random = SplitMix64(seed: 0x4EAD_2026_1203)
        var compared = 0
        var succeeded = 0
        var failures: [RequestHead.Failure: Int] = [:]
        for round in 0..<100_000 {
            var bytes = Array(Self.seeds[round % Self.seeds.count].utf8)
            for _ in 0...Int.random(in: 0...3, using: &random) {
                let at = Int.random(in: 0..<bytes.count, using: &random)
                let byte = Self.alphabet.randomElement(using: &random)!
                switch Int.random(in: 0..<3, using: &random) {
                case 0: bytes[at] = byte
                case 1: bytes.insert(byte, at: at)
                default: if bytes.count > 4 { bytes.remove(at: at) }
                }
            }
            let prefix = Int.random(in: 0...3, using: &random)
            bytes = Array(repeating: 65, count: prefix) + bytes
            guard let end = RequestHead.headEnd(bytes, prefix, bytes.count) else { continue }
            let new = RequestHead.parse(bytes, prefix, end)
            let old = ReferenceRequestHead.parse(bytes, prefix, end)
            compared += 1
            switch old {
            case .success: succeeded += 1
            case .failure(let failure): failures[failure, default: 0] += 1
            }
            if new != old {
                Issue.record("\(String(decoding: bytes, as: UTF8.self).debugDescription): \(new), before \(old)")
                return
            }
        }
        // The mutations reach every answer, so the comparison covers each of them.
        #expect(compared > 50_000, "\(compared)")
        #expect(succeeded > 5_000, "\(succeeded)")
        for failure in [RequestHead.Failure.malformed, .version, .transferEncoding] {
            #expect(failures[failure, default: 0] > 100, "\(failure): \(failures)")
        }
    }
}
