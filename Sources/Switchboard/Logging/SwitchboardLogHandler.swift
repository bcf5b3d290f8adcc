import Logging

#if canImport(Glibc)
import Glibc
#endif

/// A swift-log handler whose lines fit where they land: plain text on a terminal or in a file, sd-daemon's `<N>`
/// priority prefix without a timestamp of its own when standard error is the journal (so `journalctl -p warning`
/// filters, and journald stamps the time), or one JSON object per line for log shippers.
///
/// The `switchboard` command bootstraps it from `--log-format`. An embedding program keeps its own
/// `LoggingSystem` choice; it may bootstrap this one too:
/// `LoggingSystem.bootstrap { SwitchboardLogHandler(label: $0, format: .auto) }`.
public struct SwitchboardLogHandler: LogHandler {
    /// How lines are written.
    public enum Format: String, Sendable, CaseIterable {
        /// `journal` when standard error is the journal (`JOURNAL_STREAM` names its device and inode), else `text`.
        case auto
        /// `2026-12-01T10:00:00+0000 info switchboard: key=value [module] message`
        case text
        /// `<6>switchboard: key=value [module] message`: sd-daemon's priority prefix, no timestamp.
        case journal
        /// `{"time":"…","level":"info","label":"switchboard","message":"…","source":"…","key":"value"}`
        case json

        /// `auto` made concrete for this process.
        public var resolved: Format {
            guard self == .auto else { return self }
            return Self.stderrIsJournal() ? .journal : .text
        }

        /// Whether standard error is connected to the journal: `JOURNAL_STREAM` is `<device>:<inode>` of it.
        static func stderrIsJournal() -> Bool {
            guard let stream = Syscalls.environment("JOURNAL_STREAM"),
                let identity = Syscalls.deviceAndInode(2)
            else { return false }
            return stream == "\(identity.device):\(identity.inode)"
        }
    }

    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let format: Format

    /// - Parameters:
    ///   - label: The logger's label.
    ///   - format: How to write lines; `.auto` is resolved once, here.
    public init(label: String, format: Format = .auto) {
        self.label = label
        self.format = format.resolved
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        let line = Self.line(
            format: format, level: event.level, label: label, message: "\(event.message)", source: event.source,
            metadata: merged, time: time(nil))
        Syscalls.writeAll(2, line)
    }

    /// One whole line, newline included (written with one `write`, so lines from processes sharing standard error
    /// do not interleave).
    static func line(
        format: Format, level: Logger.Level, label: String, message: String, source: String,
        metadata: Logger.Metadata, time seconds: time_t
    ) -> String {
        let fields = metadata.sorted { $0.key < $1.key }
        switch format {
        case .json:
            var object = "{\"time\":\"\(timestamp(seconds))\",\"level\":\"\(level.rawValue)\",\"label\":\(quoted(label))"
            object += ",\"message\":\(quoted(message)),\"source\":\(quoted(source))"
            for (key, value) in fields where !["time", "level", "label", "message", "source"].contains(key) {
                object += ",\(quoted(key)):\(quoted("\(value)"))"
            }
            return object + "}\n"
        case .journal, .auto, .text:
            let pairs = fields.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            let body = "\(label):\(pairs.isEmpty ? "" : " " + pairs) [\(source)] \(message)"
            if format == .journal { return "<\(priority(level))>\(body)\n" }
            return "\(timestamp(seconds)) \(level) \(body)\n"
        }
    }

    /// sd-daemon's syslog priority for a swift-log level.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// ISO 8601 local time with its offset, as swift-log's `StreamLogHandler` writes it.
    static func timestamp(_ seconds: time_t) -> String {
        Syscalls.formatLocalTime(seconds, "%Y-%m-%dT%H:%M:%S%z")
    }

    /// A JSON string literal.
    static func quoted(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case let control where control.value < 0x20:
                let hex = String(control.value, radix: 16)
                result += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }
}
