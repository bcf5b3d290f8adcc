/// What the master tells load balancers: a pure function from the first bytes a prober sent and the master's state
/// to the bytes it answers. No I/O (``Master`` serves it on its own loop).
///
/// Two protocols share one port. HTTP: `GET /livez` (200 while the master's loop turns), `GET /readyz` (200 while
/// accepting with at least one worker ready and no stop announced, 503 otherwise). HAProxy's agent-check: one line,
/// `up ready 50%` (the weight in percent of the target worker count that is ready), `drain` once a stop is announced
/// (during `--shutdown-delay` and the drain), `down` when no worker is ready. A prober that sends a line that is not
/// an HTTP request (HAProxy's `agent-send`), or nothing at all for a moment, is an agent-check.
package enum HealthProbe {
    package enum Readiness: Equatable, Sendable {
        /// Serving; `weight` in percent (1...100) of the target worker count that is ready.
        case ready(weight: Int)
        /// A stop is announced or under way: send nothing new.
        case draining
        /// No worker is ready.
        case down
    }

    package enum Request: Equatable, Sendable {
        /// More bytes are needed.
        case incomplete
        case http(method: String, path: String)
        case agent
    }

    /// The most bytes of a request head read; more is a bad request.
    package static let maxHead = 4096

    /// The readiness for a master in this state.
    package static func readiness(stopAnnounced: Bool, ready: Int, target: Int) -> Readiness {
        if stopAnnounced { return .draining }
        guard ready > 0 else { return .down }
        return .ready(weight: max(1, min(100, ready * 100 / max(target, 1))))
    }

    /// What the bytes received so far are.
    package static func classify(_ bytes: ArraySlice<UInt8>) -> Request {
        guard let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) else {
            return bytes.count >= maxHead ? .agent : .incomplete
        }
        let line = String(decoding: bytes[bytes.startIndex..<newline], as: UTF8.self)
            .trimmingSuffix("\r")
        let parts = line.split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1."), parts[1].hasPrefix("/") else { return .agent }
        // Answer once the whole head is in: closing with unread bytes would reset the connection under the answer.
        guard containsBlankLine(bytes) else {
            return bytes.count >= maxHead ? .http(method: "", path: "") : .incomplete
        }
        let target = parts[1].split(separator: "?", maxSplits: 1)[0]
        return .http(method: String(parts[0]), path: String(target))
    }

    /// The whole answer, after which the master closes the connection.
    package static func response(to request: Request, readiness: Readiness) -> [UInt8] {
        switch request {
        case .incomplete, .agent:
            switch readiness {
            case .ready(let weight): return Array("up ready \(weight)%\n".utf8)
            case .draining: return Array("drain\n".utf8)
            case .down: return Array("down\n".utf8)
            }
        case .http(let method, let path):
            guard method == "GET" || method == "HEAD" else {
                return http(method.isEmpty ? 400 : 405, method.isEmpty ? "bad request\n" : "only GET and HEAD\n", head: false)
            }
            let head = method == "HEAD"
            switch path {
            case "/livez":
                return http(200, "live\n", head: head)
            case "/readyz":
                switch readiness {
                case .ready: return http(200, "ready\n", head: head)
                case .draining: return http(503, "draining\n", head: head)
                case .down: return http(503, "no worker ready\n", head: head)
                }
            default:
                return http(404, "not found: /livez or /readyz\n", head: head)
            }
        }
    }

    /// `/metrics` in the Prometheus text format.
    package static func metricsResponse(_ body: [UInt8], head: Bool) -> [UInt8] {
        let text =
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: \(body.count)\r\n"
            + "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
        return Array(text.utf8) + (head ? [] : body)
    }

    static func http(_ status: Int, _ body: String, head: Bool) -> [UInt8] {
        let reason =
            switch status {
            case 200: "OK"
            case 400: "Bad Request"
            case 404: "Not Found"
            case 405: "Method Not Allowed"
            default: "Service Unavailable"
            }
        let text =
            "HTTP/1.1 \(status) \(reason)\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\n"
            + "Cache-Control: no-store\r\nConnection: close\r\n\r\n" + (head ? "" : body)
        return Array(text.utf8)
    }

    private static func containsBlankLine(_ bytes: ArraySlice<UInt8>) -> Bool {
        var previous: UInt8 = 0
        var beforePrevious: UInt8 = 0
        for byte in bytes {
            if byte == UInt8(ascii: "\n") && (previous == UInt8(ascii: "\n")
                || (previous == UInt8(ascii: "\r") && beforePrevious == UInt8(ascii: "\n")))
            {
                return true
            }
            beforePrevious = previous
            previous = byte
        }
        return false
    }
}

extension String {
    fileprivate func trimmingSuffix(_ suffix: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) : self
    }
}
