import NIOCore

/// Tells a WebSocket client at the start of a drain that this worker is going away (a close frame with status 1001),
/// so that it reconnects, through the master, to a worker that stays.
///
/// A drain otherwise leaves an upgraded connection alone: the HTTP layer that acts on `ChannelShouldQuiesceEvent` is
/// gone after the 101, and the connection would be cut without a word at the drain deadline. The handler sits where
/// it sees the connection's plaintext bytes (first in a cleartext pipeline, right after the TLS handler otherwise),
/// which works whatever WebSocket library serves the connection: it notes the `101 Switching Protocols` response on
/// its way out, and on a drain writes the close frame itself, lets nothing more out (the library's own close reply
/// included: a server sends one close frame), waits for the client's close frame (or `closeTimeout`) and closes the
/// connection. Connections that did not upgrade get the drain event as before.
package final class WebSocketGoingAway: ChannelDuplexHandler, RemovableChannelHandler {
    package typealias InboundIn = ByteBuffer
    package typealias InboundOut = ByteBuffer
    package typealias OutboundIn = IOData
    package typealias OutboundOut = IOData

    /// A close frame from a server (unmasked) with status 1001, going away.
    static let closeFrame: [UInt8] = [0x88, 0x02, 0x03, 0xE9]

    private let closeTimeout: TimeAmount
    private var upgraded = false
    private var closing = false
    private var scanner = FrameScanner()

    package init(closeTimeout: TimeAmount = .seconds(1)) {
        self.closeTimeout = closeTimeout
    }

    package func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if closing {
            promise?.succeed()  // the close frame is out: nothing more goes to this client
            return
        }
        if !upgraded, case .byteBuffer(let buffer) = unwrapOutboundIn(data),
           buffer.readableBytesView.starts(with: Self.switchingProtocols) {
            upgraded = true
        }
        context.write(data, promise: promise)
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard upgraded else {
            context.fireChannelRead(data)
            return
        }
        let buffer = unwrapInboundIn(data)
        if scanner.scan(buffer) && closing {
            context.close(promise: nil)  // the client answered our close: done
            return
        }
        if !closing { context.fireChannelRead(data) }
    }

    package func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is ChannelShouldQuiesceEvent, upgraded else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        guard !closing else { return }
        closing = true
        if scanner.sawClose {
            context.close(promise: nil)  // the client is closing already
            return
        }
        context.writeAndFlush(wrapOutboundOut(.byteBuffer(ByteBuffer(bytes: Self.closeFrame))), promise: nil)
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: closeTimeout) { bound.value.close(promise: nil) }
    }

    static let switchingProtocols = Array("HTTP/1.1 101".utf8)

    /// Follows the client's WebSocket frames (RFC 6455 §5.2) across reads, to find a close frame (opcode 8).
    struct FrameScanner {
        private var header: [UInt8] = []
        private var skip = 0
        private(set) var sawClose = false

        /// Reads `buffer`; true once a close frame has begun.
        mutating func scan(_ buffer: ByteBuffer) -> Bool {
            var bytes = buffer.readableBytesView[...]
            while !bytes.isEmpty && !sawClose {
                if skip > 0 {
                    let taken = min(skip, bytes.count)
                    skip -= taken
                    bytes = bytes.dropFirst(taken)
                    continue
                }
                header.append(bytes.removeFirst())
                guard let (opcode, length) = Self.parse(header) else { continue }
                header.removeAll(keepingCapacity: true)
                if opcode == 0x8 { sawClose = true }
                skip = length
            }
            return sawClose
        }

        /// The opcode and the bytes that follow the header (mask key and payload), once `header` is whole.
        static func parse(_ header: [UInt8]) -> (opcode: UInt8, remaining: Int)? {
            guard header.count >= 2 else { return nil }
            let masked = header[1] & 0x80 != 0
            let short = Int(header[1] & 0x7F)
            let extended = short == 126 ? 2 : short == 127 ? 8 : 0
            guard header.count == 2 + extended else { return nil }
            var length = short
            if extended > 0 {
                length = 0
                for byte in header[2...] { length = length << 8 | Int(byte) }
                length = min(length, Int(Int32.max))
            }
            return (header[0] & 0x0F, length + (masked ? 4 : 0))
        }
    }
}
