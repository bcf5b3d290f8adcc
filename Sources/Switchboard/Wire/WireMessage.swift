/// Every message that crosses a master↔worker channel.
///
/// Frames are little-endian: a 16-byte header (version, type, flags, payload length, sequence) and a bounded payload.
/// Descriptors travel beside the bytes in `SCM_RIGHTS`; only ``connections(firstSequence:count:reportReceipt:)`` carries any.
public enum WireMessage: Equatable, Sendable {
    /// Worker → master, first message: the worker's pid and its build (``Cluster/build``, printable ASCII, at most
    /// ``WireCodec/maxBuildLength`` bytes). The frame's header carries the worker's protocol version: a master that
    /// speaks another one refuses the worker.
    case hello(pid: Int32, build: String)
    /// Worker → master: the worker serves; the master may dispatch to it.
    case ready
    /// Master → worker: `count` connections, numbered from `firstSequence`, one descriptor each. Until the worker
    /// receives the frame the connections sit in its queue, held by the kernel, and the master may take them back.
    /// `reportReceipt`: the worker answers with ``ack(sequence:open:)`` on receipt (the master sets it on the frame
    /// that fills a worker's queue to its bound, so it learns at once when there is room again).
    case connections(firstSequence: UInt64, count: Int, reportReceipt: Bool = false)
    /// Worker → master: every connection up to and including `sequence` was received; `open` connections are open.
    case ack(sequence: UInt64, open: UInt32)
    /// Worker → master, from the worker's event loop: it is alive; `open` connections now, `handled` in total (requests
    /// answered, for the built-in engine; connections taken, for the SwiftNIO server).
    case heartbeat(open: UInt32, handled: UInt64)
    /// Master → worker: stop taking work, finish what is in flight, exit within `deadlineMilliseconds`.
    case drain(deadlineMilliseconds: UInt32)
    /// Either way: application bytes (Node's `worker.send` / `process.on('message')`).
    case message([UInt8])

    /// The number of descriptors that travel with this message.
    public var descriptorCount: Int {
        if case .connections(_, let count, _) = self { return count }
        return 0
    }
}

/// Why a frame could not be decoded. The master treats any of these from a worker as a protocol error.
public enum WireError: Error, Equatable, Sendable, CustomStringConvertible {
    case truncated(bytes: Int)
    case unsupportedVersion(UInt8)
    case unknownType(UInt8)
    case reservedFlags(UInt16)
    case lengthMismatch(declared: Int, actual: Int)
    case payloadTooLarge(Int)
    case badPayloadSize(type: UInt8, size: Int)
    case unexpectedDescriptors(type: UInt8, count: Int)
    case descriptorCountMismatch(declared: Int, actual: Int)

    public var description: String {
        switch self {
        case .truncated(let bytes): "frame of \(bytes) bytes is shorter than the 16-byte header"
        case .unsupportedVersion(let version): "unsupported protocol version \(version)"
        case .unknownType(let type): "unknown message type \(type)"
        case .reservedFlags(let flags): "reserved flags set (\(flags))"
        case .lengthMismatch(let declared, let actual): "header declares \(declared) payload bytes, frame has \(actual)"
        case .payloadTooLarge(let size): "payload of \(size) bytes exceeds \(WireCodec.maxPayload)"
        case .badPayloadSize(let type, let size): "message type \(type) cannot have a \(size)-byte payload"
        case .unexpectedDescriptors(let type, let count): "message type \(type) carried \(count) descriptors"
        case .descriptorCountMismatch(let declared, let actual):
            "frame declares \(declared) descriptors, \(actual) arrived"
        }
    }
}
