import Foundation
import SwitchboardTestSupport

/// Reads the master's log lines (swift-log's stream handler format: `<time> <level> <label>: k=v ... [Module] text`).
struct LogLine {
    var text: String
    var metadata: [String: String]
    var message: String

    init(_ text: String) {
        self.text = text
        var metadata: [String: String] = [:]
        for field in text.split(separator: " ") {
            let parts = field.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { metadata[String(parts[0])] = String(parts[1]) }
        }
        self.metadata = metadata
        if let close = text.range(of: "] ") {
            message = String(text[close.upperBound...])
        } else {
            message = text
        }
    }
}

extension SwitchboardProcess {
    var logLines: [LogLine] {
        stderr.split(separator: "\n").map { LogLine(String($0)) }
    }

    /// Waits until a log line whose message starts with `prefix` appears `count` times.
    @discardableResult
    func waitForLog(_ prefix: String, count: Int = 1, timeout: Duration = .seconds(30)) -> Bool {
        waitUntil(timeout: timeout) { logLines.filter { $0.message.hasPrefix(prefix) }.count >= count }
    }
}
