import CSwitchboardLinux

/// One end of a master↔worker `SOCK_SEQPACKET` socketpair: framed messages plus descriptors.
///
/// Not thread-safe for receiving; sends are single `sendmsg` calls, which the kernel keeps whole.
package final class DescriptorChannel {
    package let fd: CInt
    /// Scratch frame for `connections` messages, so the hot path never allocates.
    private var connectionFrame: [UInt8]

    package init(fd: CInt) {
        self.fd = fd
        self.connectionFrame = WireCodec.encode(.connections(firstSequence: 0, count: 1))
    }

    /// Creates a connected pair: `(master end, worker end)`, both close-on-exec.
    package static func pair() throws(SystemCallError) -> (DescriptorChannel, DescriptorChannel) {
        let (a, b) = try Syscalls.socketPair()
        return (DescriptorChannel(fd: a), DescriptorChannel(fd: b))
    }

    /// Sends the first `count` descriptors of `connections` in one message, numbered from `firstSequence`
    /// (non-blocking; `count` is at most ``WireCodec/maxDescriptors``). The caller keeps its copies.
    package func sendConnections(firstSequence: UInt64, _ connections: [CInt], count: Int) throws(SystemCallError)
        -> NonBlocking<Void>
    {
        precondition(count >= 1 && count <= min(connections.count, WireCodec.maxDescriptors))
        WireCodec.patchConnections(&connectionFrame, firstSequence: firstSequence, count: count)
        let result = unsafe connectionFrame.withUnsafeBytes { bytes in
            unsafe connections.withUnsafeBufferPointer { fds in
                Result { () throws(SystemCallError) in
                    try unsafe Syscalls.send(fd, bytes: bytes, fds: UnsafeBufferPointer(rebasing: fds[0..<count]))
                }
            }
        }
        return try result.get()
    }

    /// Sends a message without descriptors.
    package func send(_ message: WireMessage, blocking: Bool = false) throws(SystemCallError) -> NonBlocking<Void> {
        precondition(message.descriptorCount == 0, "use sendConnection for descriptors")
        let frame = WireCodec.encode(message)
        let result = unsafe frame.withUnsafeBytes { bytes in
            Result { () throws(SystemCallError) in
                try unsafe Syscalls.send(
                    fd, bytes: bytes, fds: UnsafeBufferPointer(start: nil, count: 0), blocking: blocking)
            }
        }
        return try result.get()
    }

    /// Sends raw bytes as one frame (tests use it to send malformed frames).
    package func sendRaw(_ frame: [UInt8], descriptors: [CInt] = []) throws(SystemCallError) -> NonBlocking<Void> {
        let result = unsafe frame.withUnsafeBytes { bytes in
            unsafe descriptors.withUnsafeBufferPointer { fds in
                Result { () throws(SystemCallError) in try unsafe Syscalls.send(fd, bytes: bytes, fds: fds, blocking: true) }
            }
        }
        return try result.get()
    }

    /// Receives one frame into `buffer` (which must hold ``WireCodec/maxFrame`` bytes) and its descriptors into `fds`.
    /// - Returns: byte and descriptor counts; `(0, 0)` means the peer closed its end. `truncated`: this process ran
    ///   out of descriptors, so only the first `fds` of those sent arrived; the kernel dropped the rest.
    package func receive(
        into buffer: inout [UInt8],
        fds: inout [CInt],
        blocking: Bool
    ) throws(SystemCallError) -> NonBlocking<(bytes: Int, fds: Int, truncated: Bool)> {
        let result = unsafe buffer.withUnsafeMutableBytes { raw in
            unsafe fds.withUnsafeMutableBufferPointer { descriptors in
                Result { () throws(SystemCallError) in
                    try unsafe Syscalls.receive(fd, into: raw, fds: descriptors, blocking: blocking)
                }
            }
        }
        return try result.get()
    }

    package func close() {
        Syscalls.close(fd)
    }
}
