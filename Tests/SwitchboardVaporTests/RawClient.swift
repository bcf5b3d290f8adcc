// Built only with the package trait `Vapor` (`swift build --traits Vapor`).
#if Vapor
import Foundation
import SwitchboardTestSupport

/// Reads straight from a test connection's socket, with the time each read returned.
extension TestConnection {
    /// One read of up to 64 KiB: the bytes and when they arrived; empty when the peer closed.
    func readChunk() throws -> (bytes: [UInt8], at: Date) {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
        if count < 0 { throw ProbeError.io("read: errno \(errno)") }
        return (Array(chunk[0..<count]), Date())
    }

    /// Reads until `done` holds for everything read so far, or the peer closes; every read with its arrival time.
    func read(until done: ([UInt8]) -> Bool) throws -> [(bytes: [UInt8], at: Date)] {
        var reads: [(bytes: [UInt8], at: Date)] = []
        var all: [UInt8] = []
        while !done(all) {
            let next = try readChunk()
            if next.bytes.isEmpty { break }
            reads.append(next)
            all += next.bytes
        }
        return reads
    }

    func send(bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written <= 0 { throw ProbeError.io("write: errno \(errno)") }
            offset += written
        }
    }
}

extension Array where Element == UInt8 {
    var text: String { String(decoding: self, as: UTF8.self) }

    func contains(_ text: String) -> Bool {
        self.text.contains(text)
    }

    /// The index just past the first blank line (`\r\n\r\n`).
    var headEnd: Int? {
        guard count >= 4 else { return nil }
        for index in 0...(count - 4) where self[index..<(index + 4)].elementsEqual([13, 10, 13, 10]) {
            return index + 4
        }
        return nil
    }
}

/// A WebSocket client on a raw socket: the upgrade handshake, masked frames out, frames in.
struct RawWebSocket {
    let connection: TestConnection
    var pending: [UInt8] = []

    /// Connects to `path` and upgrades; throws unless the server answers 101 with the right accept key.
    init(port: Int, path: String = "/ws") throws {
        connection = try TestConnection(port: port)
        try connection.send(
            "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        let reads = try connection.read { $0.contains("\r\n\r\n") }
        var all = reads.flatMap(\.bytes)
        let end = all.headEnd ?? all.count
        let head = Array(all[..<end]).text
        guard head.hasPrefix("HTTP/1.1 101"), head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") else {
            throw ProbeError.malformed(head)
        }
        all.removeFirst(end)
        pending = all
    }

    /// Sends one masked frame.
    func send(opcode: UInt8, payload: [UInt8]) throws {
        let mask: [UInt8] = [0x12, 0x34, 0x56, 0x78]
        var frame: [UInt8] = [0x80 | opcode]
        if payload.count < 126 {
            frame.append(0x80 | UInt8(payload.count))
        } else {
            frame += [0x80 | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        }
        frame += mask
        frame += payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
        try connection.send(bytes: frame)
    }

    /// Reads one (unmasked, unfragmented) frame: its opcode and payload; nil when the server closed first.
    mutating func readFrame() throws -> (opcode: UInt8, payload: [UInt8])? {
        func need(_ count: Int) throws -> Bool {
            while pending.count < count {
                let next = try connection.readChunk()
                if next.bytes.isEmpty { return false }
                pending += next.bytes
            }
            return true
        }
        guard try need(2) else { return nil }
        var length = Int(pending[1] & 0x7F)
        var header = 2
        if length == 126 {
            guard try need(4) else { return nil }
            length = Int(pending[2]) << 8 | Int(pending[3])
            header = 4
        }
        guard try need(header + length) else { return nil }
        let frame = (opcode: pending[0] & 0x0F, payload: Array(pending[header..<(header + length)]))
        pending.removeFirst(header + length)
        return frame
    }
}
#endif
