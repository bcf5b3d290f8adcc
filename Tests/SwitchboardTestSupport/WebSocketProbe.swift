import Foundation

/// A WebSocket client on a raw socket (RFC 6455): the upgrade request, masked frames out, frames in. Small on purpose:
/// what a test needs to see is exactly what crossed the wire.
package final class WebSocketProbe: @unchecked Sendable {
    // @unchecked: used by the one test thread that made it.
    package let connection: TestConnection
    /// The upgrade's response (101 and its headers).
    package let upgrade: HTTPResponse

    /// A frame from the server.
    package struct Frame: Equatable, CustomStringConvertible {
        package var opcode: UInt8
        package var payload: [UInt8]
        package var text: String { String(decoding: payload, as: UTF8.self) }
        /// The status code of a close frame.
        package var closeCode: Int? { opcode == 8 && payload.count >= 2 ? Int(payload[0]) << 8 | Int(payload[1]) : nil }
        package var description: String { opcode == 8 ? "close \(closeCode ?? 0)" : "opcode \(opcode): \(text)" }

        package init(opcode: UInt8, payload: [UInt8]) {
            self.opcode = opcode
            self.payload = payload
        }
    }

    /// Connects and upgrades at `path`; throws unless the server answers 101.
    package init(port: Int, path: String = "/ws", timeoutSeconds: Int = 15) throws {
        connection = try TestConnection(port: port, timeoutSeconds: timeoutSeconds)
        try connection.send(
            "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        upgrade = try connection.readResponse()
        guard upgrade.status == 101,
              upgrade.headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        else { throw ProbeError.malformed("no WebSocket upgrade: \(upgrade)") }
    }

    /// Sends one masked frame.
    package func send(opcode: UInt8, _ payload: [UInt8]) throws {
        var frame: [UInt8] = [0x80 | opcode]
        switch payload.count {
        case ..<126: frame.append(0x80 | UInt8(payload.count))
        case ..<65536: frame += [0x80 | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        default: frame += [0x80 | 127] + (0..<8).reversed().map { UInt8((payload.count >> ($0 * 8)) & 0xFF) }
        }
        let mask: [UInt8] = (0..<4).map { _ in UInt8.random(in: 0...255) }
        frame += mask
        frame += payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
        try connection.send(bytes: frame)
    }

    package func send(text: String) throws { try send(opcode: 1, Array(text.utf8)) }

    /// Sends a close frame with `code`.
    package func close(code: Int = 1000) throws { try send(opcode: 8, [UInt8(code >> 8), UInt8(code & 0xFF)]) }

    /// The next frame from the server (unmasked, as a server sends).
    package func receive() throws -> Frame {
        let head = try connection.receive(exactly: 2)
        var length = Int(head[1] & 0x7F)
        if length == 126 {
            length = try connection.receive(exactly: 2).reduce(0) { $0 << 8 | Int($1) }
        } else if length == 127 {
            length = try connection.receive(exactly: 8).reduce(0) { $0 << 8 | Int($1) }
        }
        return Frame(opcode: head[0] & 0x0F, payload: try connection.receive(exactly: length))
    }
}
