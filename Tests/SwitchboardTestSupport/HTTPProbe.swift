import CSwitchboardLinux
import Foundation

/// A minimal blocking HTTP/1.1 client for tests: one request per call.
package struct HTTPResponse {
    package var status: Int
    package var body: String
    package var headers: [String: String]

    /// The pid at the end of a worker's greeting: "Handled by worker: <pid>" (the built-in worker) or
    /// "Hello from Hummingbird worker <pid>" (the Hummingbird example).
    package var workerPID: pid_t? {
        let words = body.split(separator: " ")
        guard words.count >= 2, words[words.count - 2].hasPrefix("worker") else { return nil }
        return pid_t(words[words.count - 1])
    }
}

package enum ProbeError: Error, CustomStringConvertible {
    case connect(Int32)
    case io(String)
    case malformed(String)

    package var description: String {
        switch self {
        case .connect(let code): "connect failed: errno \(code)"
        case .io(let what): "i/o failed: \(what)"
        case .malformed(let text): "malformed response: \(text)"
        }
    }
}

/// A blocking TCP connection with receive and send timeouts.
package final class TestConnection: @unchecked Sendable {
    // @unchecked: a connection is used by one thread at a time (handed over, never shared).
    package let fd: Int32
    private var buffered: [UInt8] = []

    package init(port: Int, host: String = "127.0.0.1", timeoutSeconds: Int = 15) throws {
        let fd = sb_tcp_connect(host, Int32(port))
        guard fd >= 0 else { throw ProbeError.connect(errno) }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        self.fd = fd
    }

    deinit { close(fd) }

    /// The client side's local port.
    package var localPort: Int { Int(sb_local_port(fd)) }

    /// The inode of the server side of this connection (from /proc/net/tcp), once the server accepted it.
    package func serverSideInode(serverPort: Int) -> String? {
        serverSideEntries(serverPort: serverPort).lazy.compactMap { $0.count > 9 && $0[9] != "0" ? String($0[9]) : nil }
            .first
    }

    /// The TCP state of the server side of this connection as /proc/net/tcp shows it (hex: `01` established, `03`
    /// SYN-RECV, which is also how a connection the kernel holds back for `TCP_DEFER_ACCEPT` shows), or nil when it
    /// is not listed.
    package func serverSideState(serverPort: Int) -> String? {
        serverSideEntries(serverPort: serverPort).first.map { String($0[3]) }
    }

    /// ``serverSideState(serverPort:)`` once the server side is listed (within `timeout`), or nil.
    package func waitForServerSideState(serverPort: Int, timeout: Duration = .seconds(3)) -> String? {
        var state: String?
        _ = waitUntil(timeout: timeout) {
            state = serverSideState(serverPort: serverPort)
            return state != nil
        }
        return state
    }

    /// The /proc/net/tcp lines (split into fields) whose local end is `serverPort` and remote end this connection.
    private func serverSideEntries(serverPort: Int) -> [[Substring]] {
        let local = String(format: ":%04X", serverPort)
        let remote = String(format: ":%04X", localPort)
        guard let table = ProcFS.read("/proc/net/tcp") else { return [] }
        return table.split(separator: "\n").dropFirst().map { $0.split(separator: " ") }.filter { fields in
            fields.count > 3 && fields[1].hasSuffix(local) && fields[2].hasSuffix(remote)
        }
    }

    /// Waits until the server side of this connection is held by a worker and no longer by the master.
    package func waitUntilHeldByWorker(of server: SwitchboardProcess) -> pid_t? {
        var holder: pid_t?
        waitUntil {
            guard let inode = serverSideInode(serverPort: server.port) else { return false }
            let name = "socket:[\(inode)]"
            guard !ProcFS.descriptors(server.pid).values.contains(name) else { return false }
            holder = server.workerPIDs.first { ProcFS.descriptors($0).values.contains(name) }
            return holder != nil
        }
        return holder
    }

    package func send(_ text: String) throws {
        try send(bytes: Array(text.utf8))
    }

    package func send(bytes: [UInt8]) throws {
        var bytes = bytes
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written <= 0 { throw ProbeError.io("write: errno \(errno)") }
            offset += written
        }
    }

    package func request(path: String = "/", keepAlive: Bool = false) throws {
        try send("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: \(keepAlive ? "keep-alive" : "close")\r\n\r\n")
    }

    /// Reads one response (headers plus Content-Length body).
    package func readResponse() throws -> HTTPResponse {
        while true {
            if let end = findHeaderEnd() {
                let head = String(decoding: buffered[..<end], as: UTF8.self)
                var lines = head.components(separatedBy: "\r\n")
                let statusLine = lines.removeFirst().split(separator: " ")
                guard statusLine.count >= 2, let status = Int(statusLine[1]) else {
                    throw ProbeError.malformed(head)
                }
                var headers: [String: String] = [:]
                for line in lines {
                    guard let colon = line.firstIndex(of: ":") else { continue }
                    headers[line[..<colon].lowercased()] = line[line.index(after: colon)...]
                        .trimmingCharacters(in: .whitespaces)
                }
                let length = Int(headers["content-length"] ?? "0") ?? 0
                while buffered.count < end + 4 + length {
                    try fill()
                }
                let body = String(decoding: buffered[(end + 4)..<(end + 4 + length)], as: UTF8.self)
                buffered.removeFirst(end + 4 + length)
                return HTTPResponse(status: status, body: body, headers: headers)
            }
            try fill()
        }
    }

    /// The next `count` bytes (after a response read by ``readResponse()``, what followed it).
    package func receive(exactly count: Int) throws -> [UInt8] {
        while buffered.count < count { try fill() }
        defer { buffered.removeFirst(count) }
        return Array(buffered[..<count])
    }

    /// Everything the peer sends (after what was already buffered) until it closes or the receive timeout passes.
    package func readToEnd() -> String {
        _ = try? readUntilClosed()
        defer { buffered.removeAll() }
        return String(decoding: buffered, as: UTF8.self)
    }

    /// Reads until the peer closes; returns whether it closed cleanly with no more bytes.
    package func readUntilClosed() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n == 0 { return buffered.isEmpty }
            if n < 0 { throw ProbeError.io("read: errno \(errno)") }
            buffered.append(contentsOf: chunk[0..<n])
        }
    }

    private func findHeaderEnd() -> Int? {
        guard buffered.count >= 4 else { return nil }
        for index in 0...(buffered.count - 4)
        where buffered[index] == 13 && buffered[index + 1] == 10 && buffered[index + 2] == 13
            && buffered[index + 3] == 10
        {
            return index
        }
        return nil
    }

    private func fill() throws {
        var chunk = [UInt8](repeating: 0, count: 4096)
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
        if n == 0 { throw ProbeError.io("connection closed after \(buffered.count) bytes") }
        if n < 0 { throw ProbeError.io("read: errno \(errno)") }
        buffered.append(contentsOf: chunk[0..<n])
    }
}

/// One GET on a new connection.
package func get(port: Int, path: String = "/") throws -> HTTPResponse {
    let connection = try TestConnection(port: port)
    try connection.request(path: path)
    return try connection.readResponse()
}
