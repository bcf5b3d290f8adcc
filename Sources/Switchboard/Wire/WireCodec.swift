/// Encodes and strictly decodes ``WireMessage`` frames. Decoding never traps on any input.
public enum WireCodec {
    /// The protocol version this build speaks. 2: the hello carries the worker's build.
    public static let version: UInt8 = 2
    /// The longest build string a hello may carry.
    public static let maxBuildLength = 128
    /// Header size in bytes.
    public static let headerSize = 16
    /// The largest payload a frame may carry.
    public static let maxPayload = 64 * 1024
    /// The most descriptors one `connections` frame may carry.
    public static let maxDescriptors = 64
    /// The header flag of a `connections` frame that asks the worker to acknowledge it on receipt; no other flag
    /// and no other message type carries flags.
    static let reportReceiptFlag: UInt16 = 1
    /// The size of a `connections` frame: what one takes of a worker's queue (`SIOCINQ` counts frame bytes).
    public static let connectionsFrameSize = headerSize + 4
    /// The largest frame in bytes.
    public static var maxFrame: Int { headerSize + maxPayload }

    enum MessageType: UInt8 {
        case hello = 1
        case ready = 2
        case connections = 3
        case ack = 4
        case heartbeat = 5
        case drain = 6
        case message = 7
    }

    /// Encodes `message` into a new frame.
    public static func encode(_ message: WireMessage) -> [UInt8] {
        var frame: [UInt8] = []
        frame.reserveCapacity(headerSize + 16)
        func header(_ type: MessageType, length: Int, sequence: UInt64 = 0, flags: UInt16 = 0) {
            frame.append(version)
            frame.append(type.rawValue)
            append16(flags, to: &frame)
            append32(UInt32(length), to: &frame)
            append64(sequence, to: &frame)
        }
        switch message {
        case .hello(let pid, let build):
            let text = Array(build.utf8.prefix(maxBuildLength))
            header(.hello, length: 4 + text.count)
            append32(UInt32(bitPattern: pid), to: &frame)
            frame.append(contentsOf: text)
        case .ready:
            header(.ready, length: 0)
        case .connections(let first, let count, let report):
            header(.connections, length: 4, sequence: first, flags: report ? reportReceiptFlag : 0)
            append32(UInt32(count), to: &frame)
        case .ack(let sequence, let open):
            header(.ack, length: 4, sequence: sequence)
            append32(open, to: &frame)
        case .heartbeat(let open, let handled):
            header(.heartbeat, length: 12)
            append32(open, to: &frame)
            append64(handled, to: &frame)
        case .drain(let deadline):
            header(.drain, length: 4)
            append32(deadline, to: &frame)
        case .message(let bytes):
            precondition(bytes.count <= maxPayload, "message payload over \(maxPayload) bytes")
            header(.message, length: bytes.count)
            frame.append(contentsOf: bytes)
        }
        return frame
    }

    /// Decodes one frame that arrived with `descriptorCount` descriptors.
    /// - Parameters:
    ///   - frame: The bytes of exactly one frame.
    ///   - descriptorCount: How many descriptors arrived with it.
    ///   - descriptorsDropped: The receiver ran out of descriptors, so a `connections` frame may have brought
    ///     fewer than it declares (the first `descriptorCount` of them).
    /// - Returns: The message.
    /// - Throws: ``WireError`` for anything but a well-formed frame of this version.
    public static func decode(
        _ frame: ArraySlice<UInt8>, descriptorCount: Int = 0, descriptorsDropped: Bool = false
    ) throws(WireError) -> WireMessage {
        guard frame.count >= headerSize else { throw .truncated(bytes: frame.count) }
        let base = frame.startIndex
        let frameVersion = frame[base]
        guard frameVersion == version else { throw .unsupportedVersion(frameVersion) }
        let rawType = frame[base + 1]
        guard let type = MessageType(rawValue: rawType) else { throw .unknownType(rawType) }
        let flags = read16(frame, at: base + 2)
        guard flags == 0 || (type == .connections && flags == reportReceiptFlag) else { throw .reservedFlags(flags) }
        let length = Int(read32(frame, at: base + 4))
        let sequence = read64(frame, at: base + 8)
        guard length <= maxPayload else { throw .payloadTooLarge(length) }
        let actual = frame.count - headerSize
        guard length == actual else { throw .lengthMismatch(declared: length, actual: actual) }
        let payload = base + headerSize
        if type != .connections && descriptorCount != 0 {
            throw .unexpectedDescriptors(type: rawType, count: descriptorCount)
        }
        func expect(_ size: Int) throws(WireError) {
            if length != size { throw .badPayloadSize(type: rawType, size: length) }
        }
        switch type {
        case .hello:
            guard (4...4 + maxBuildLength).contains(length) else { throw .badPayloadSize(type: rawType, size: length) }
            let build = frame[(payload + 4)..<frame.endIndex]
            guard build.allSatisfy({ (0x21...0x7e).contains($0) }) else { throw .badPayloadSize(type: rawType, size: length) }
            return .hello(pid: Int32(bitPattern: read32(frame, at: payload)), build: String(decoding: build, as: UTF8.self))
        case .ready:
            try expect(0)
            return .ready
        case .connections:
            try expect(4)
            let count = Int(read32(frame, at: payload))
            guard count >= 1, count <= maxDescriptors else { throw .badPayloadSize(type: rawType, size: count) }
            guard count == descriptorCount || (descriptorsDropped && descriptorCount < count) else {
                throw .descriptorCountMismatch(declared: count, actual: descriptorCount)
            }
            return .connections(firstSequence: sequence, count: count, reportReceipt: flags == reportReceiptFlag)
        case .ack:
            try expect(4)
            return .ack(sequence: sequence, open: read32(frame, at: payload))
        case .heartbeat:
            try expect(12)
            return .heartbeat(open: read32(frame, at: payload), handled: read64(frame, at: payload + 4))
        case .drain:
            try expect(4)
            return .drain(deadlineMilliseconds: read32(frame, at: payload))
        case .message:
            return .message(Array(frame[payload..<frame.endIndex]))
        }
    }

    /// Decodes a whole array.
    public static func decode(
        _ frame: [UInt8], descriptorCount: Int = 0, descriptorsDropped: Bool = false
    ) throws(WireError) -> WireMessage {
        try decode(frame[...], descriptorCount: descriptorCount, descriptorsDropped: descriptorsDropped)
    }

    // MARK: little-endian helpers

    private static func append16(_ value: UInt16, to frame: inout [UInt8]) {
        frame.append(UInt8(truncatingIfNeeded: value))
        frame.append(UInt8(truncatingIfNeeded: value >> 8))
    }

    private static func append32(_ value: UInt32, to frame: inout [UInt8]) {
        for shift in stride(from: 0, to: 32, by: 8) { frame.append(UInt8(truncatingIfNeeded: value >> shift)) }
    }

    private static func append64(_ value: UInt64, to frame: inout [UInt8]) {
        for shift in stride(from: 0, to: 64, by: 8) { frame.append(UInt8(truncatingIfNeeded: value >> shift)) }
    }

    private static func read16(_ frame: ArraySlice<UInt8>, at index: Int) -> UInt16 {
        UInt16(frame[index]) | UInt16(frame[index + 1]) << 8
    }

    private static func read32(_ frame: ArraySlice<UInt8>, at index: Int) -> UInt32 {
        var value: UInt32 = 0
        for offset in 0..<4 { value |= UInt32(frame[index + offset]) << (8 * offset) }
        return value
    }

    private static func read64(_ frame: ArraySlice<UInt8>, at index: Int) -> UInt64 {
        var value: UInt64 = 0
        for offset in 0..<8 { value |= UInt64(frame[index + offset]) << (8 * offset) }
        return value
    }
}

extension WireCodec {
    /// Rewrites the sequence and count of an encoded `connections` frame in place (no allocation).
    /// How many connections the frame whose start was peeked into `header` carries (its first
    /// ``connectionsFrameSize`` bytes, `bytes` of them copied), or nil when it is not a `connections` frame.
    package static func connectionCount(peeked header: [UInt8], bytes: Int) -> Int? {
        guard bytes == connectionsFrameSize, header.count >= connectionsFrameSize,
            header[1] == MessageType.connections.rawValue
        else { return nil }
        return Int(read32(header[...], at: headerSize))
    }

    static func patchConnections(_ frame: inout [UInt8], firstSequence: UInt64, count: Int, reportReceipt: Bool) {
        frame[2] = reportReceipt ? UInt8(reportReceiptFlag) : 0
        for offset in 0..<8 { frame[8 + offset] = UInt8(truncatingIfNeeded: firstSequence >> (8 * offset)) }
        let count = UInt32(count)
        for offset in 0..<4 { frame[headerSize + offset] = UInt8(truncatingIfNeeded: count >> (8 * offset)) }
    }
}
