import CSwitchboardLinux
import Foundation
import SwitchboardTestSupport

/// A datagram socket standing in for systemd's NOTIFY_SOCKET: collects every notification (and any descriptors
/// passed with FDSTORE=1) in order.
final class NotifySocketListener: @unchecked Sendable {
    // @unchecked: `messages` and `descriptors` are only touched under `lock`; `fd` is immutable.
    struct Message {
        var text: String
        var received: ContinuousClock.Instant
        var assignments: [String: String] {
            var result: [String: String] = [:]
            for line in text.split(separator: "\n") {
                let parts = line.split(separator: "=", maxSplits: 1)
                if parts.count == 2 { result[String(parts[0])] = String(parts[1]) }
            }
            return result
        }
    }

    let path: String
    private let fd: Int32
    private let lock = NSLock()
    private var messages: [Message] = []
    private var descriptors: [Int32] = []

    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("sb-notify-\(UUID().uuidString.prefix(8))").path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ProbeError.io("socket: errno \(errno)") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8.prefix(raw.count - 1))
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else { throw ProbeError.io("bind \(path): errno \(errno)") }
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        // The thread holds the listener only while one receive runs (at most 100 ms, the socket's timeout), so the
        // listener's deinit runs once the test drops it, and the thread, the socket and its path go with it.
        Thread.detachNewThread { [weak self] in
            while let self { self.receiveOnce() }
        }
    }

    private func receiveOnce() {
        var buffer = [UInt8](repeating: 0, count: 8192)
        var fds = [Int32](repeating: -1, count: 16)
        var count: Int32 = 0
        var truncated: Int32 = 0
        let n = buffer.withUnsafeMutableBytes { raw in
            fds.withUnsafeMutableBufferPointer {
                sb_receive_message(fd, raw.baseAddress!, raw.count, $0.baseAddress!, 16, &count, &truncated, 1)
            }
        }
        guard n > 0 else { return }
        let text = String(decoding: buffer[0..<n], as: UTF8.self)
        let received = Array(fds[0..<Int(count)])
        lock.withLock {
            messages.append(Message(text: text, received: .now))
            descriptors.append(contentsOf: received)
        }
    }

    var all: [Message] { lock.withLock { messages } }
    var passedDescriptors: [Int32] { lock.withLock { descriptors } }

    /// Messages that set `key` (to `value` when given).
    func with(_ key: String, _ value: String? = nil) -> [Message] {
        all.filter { message in
            guard let found = message.assignments[key] else { return false }
            return value == nil || found == value
        }
    }

    @discardableResult
    func waitFor(_ key: String, _ value: String? = nil, count: Int = 1, timeout: Duration = .seconds(30)) -> Bool {
        waitUntil(timeout: timeout) { with(key, value).count >= count }
    }

    deinit {
        // No receive is running: one would hold a strong reference.
        close(fd)
        for descriptor in descriptors { close(descriptor) }
        unlink(path)
    }
}
