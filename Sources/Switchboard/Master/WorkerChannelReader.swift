#if canImport(Glibc)
import Glibc
#endif

/// Reads one frame at a time from a worker's channel and says what it is: a message, or what the worker did wrong.
///
/// It owns the receive buffers (one frame, the most descriptors a frame may carry) and closes any descriptor a worker
/// sent before the frame is judged: a worker never sends descriptors.
struct WorkerChannelReader {
    /// What one read found.
    enum Frame {
        /// Nothing more to read now.
        case none
        /// A message for the master.
        case message(WireMessage)
        /// The worker broke the protocol: it `what` (e.g. "sent descriptors").
        case protocolError(String)
        /// The worker speaks another version of the channel protocol.
        case unsupportedVersion(UInt8)
        /// The channel closed or failed: `what` happened to it.
        case failed(String)
    }

    /// The most frames the master reads from one worker per wake-up: the channel is level-triggered, so the rest
    /// wake the next turn of the loop, after the listener, the timers and the other workers had theirs (a worker that
    /// sends messages in a loop cannot starve accepting, heartbeat checks or the watchdog).
    static let readBudget = 16

    private var buffer = [UInt8](repeating: 0, count: WireCodec.maxFrame)
    private var descriptors = [CInt](repeating: -1, count: WireCodec.maxDescriptors)

    /// Reads the next frame from `channel` without blocking.
    mutating func read(_ channel: DescriptorChannel) -> Frame {
        let result: NonBlocking<(bytes: Int, fds: Int, truncated: Bool)>
        do {
            result = try channel.receive(into: &buffer, fds: &descriptors, blocking: false)
        } catch {
            if error.code == EMSGSIZE {
                return .protocolError("sent a frame over \(WireCodec.maxFrame) bytes or too many descriptors")
            }
            return .failed("channel failed: \(error)")
        }
        guard case .done(let received) = result else { return .none }
        if received.bytes == 0 && received.fds == 0 { return .failed("closed its channel") }
        for position in 0..<received.fds { Syscalls.close(descriptors[position]) }
        if received.truncated { return .protocolError("sent descriptors") }
        do {
            return .message(try WireCodec.decode(buffer[0..<received.bytes], descriptorCount: received.fds))
        } catch .unsupportedVersion(let version) {
            return .unsupportedVersion(version)
        } catch {
            return .protocolError("sent a malformed frame: \(error)")
        }
    }
}
