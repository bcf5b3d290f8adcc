import CSwitchboardLinux

/// One end of a master↔worker `SOCK_SEQPACKET` socketpair: framed messages plus descriptors.
///
/// Not thread-safe for receiving; sends are single `sendmsg` calls, which the kernel keeps whole.
///
/// The channel owns its descriptor: ``close()`` closes it once (a second call stops the process: a double close is a
/// bug), and a channel released without ``close()`` closes it in its deinit. Never wrap a descriptor another channel
/// owns.
package final class DescriptorChannel {
    package let fd: CInt
    private var isOpen = true
    /// What sending changes, in one stored value: a send is one access to this class's state (each access to a
    /// stored `var` of a class is checked at run time), and the hot path never allocates.
    private struct Sending {
        /// Bytes of every frame sent through this end so far.
        var bytesSent: UInt64 = 0
        /// Scratch frame for `connections` messages.
        var connectionFrame = WireCodec.encode(.connections(firstSequence: 0, count: 1))

        mutating func sendConnections(
            fd: CInt, firstSequence: UInt64, _ connections: [CInt], count: Int, reportReceipt: Bool
        ) throws(SystemCallError) -> NonBlocking<UInt64> {
            WireCodec.patchConnections(
                &connectionFrame, firstSequence: firstSequence, count: count, reportReceipt: reportReceipt)
            let result = unsafe connectionFrame.withUnsafeBytes { bytes in
                unsafe connections.withUnsafeBufferPointer { fds in
                    Result { () throws(SystemCallError) in
                        try unsafe Syscalls.send(fd, bytes: bytes, fds: UnsafeBufferPointer(rebasing: fds[0..<count]))
                    }
                }
            }
            guard case .done = try result.get() else { return .wouldBlock }
            bytesSent &+= UInt64(connectionFrame.count)
            return .done(bytesSent)
        }
    }
    private var sending = Sending()
    /// Bytes of every frame sent through this end so far: with the peer's ``queuedBytes()`` it tells how much of
    /// what was sent the peer has received.
    package var bytesSent: UInt64 { sending.bytesSent }

    package init(fd: CInt) {
        self.fd = fd
    }

    /// Takes over a channel another image of the master used, with the bytes it had sent through it.
    package convenience init(fd: CInt, bytesSent: UInt64) {
        self.init(fd: fd)
        self.sending.bytesSent = bytesSent
    }

    /// Creates a connected pair: `(master end, worker end)`, both close-on-exec.
    package static func pair() throws(SystemCallError) -> (DescriptorChannel, DescriptorChannel) {
        let (a, b) = try Syscalls.socketPair()
        return (DescriptorChannel(fd: a), DescriptorChannel(fd: b))
    }

    /// Sends the first `count` descriptors of `connections` in one message, numbered from `firstSequence`
    /// (non-blocking; `count` is at most ``WireCodec/maxDescriptors``). The caller keeps its copies: once this
    /// returns `.done` the kernel holds the connections in the peer's queue, so the caller may close them.
    /// `reportReceipt` asks the peer to acknowledge the frame when it receives it.
    /// - Returns: `.done` with ``bytesSent`` after this frame.
    package func sendConnections(
        firstSequence: UInt64, _ connections: [CInt], count: Int, reportReceipt: Bool = false
    ) throws(SystemCallError) -> NonBlocking<UInt64> {
        precondition(count >= 1 && count <= min(connections.count, WireCodec.maxDescriptors))
        return try sending.sendConnections(
            fd: fd, firstSequence: firstSequence, connections, count: count, reportReceipt: reportReceipt)
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
        let sent = try result.get()
        if case .done = sent { sending.bytesSent &+= UInt64(frame.count) }
        return sent
    }

    /// Sends raw bytes as one frame (tests use it to send malformed frames).
    package func sendRaw(_ frame: [UInt8], descriptors: [CInt] = []) throws(SystemCallError) -> NonBlocking<Void> {
        let result = unsafe frame.withUnsafeBytes { bytes in
            unsafe descriptors.withUnsafeBufferPointer { fds in
                Result { () throws(SystemCallError) in try unsafe Syscalls.send(fd, bytes: bytes, fds: fds, blocking: true) }
            }
        }
        let sent = try result.get()
        if case .done = sent { sending.bytesSent &+= UInt64(frame.count) }
        return sent
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

    /// Copies the start of the next frame waiting at this end (up to `buffer.count` bytes) without receiving it:
    /// its descriptors stay queued.
    /// - Returns: The bytes copied; `.done(0)` when the peer closed its end.
    package func peek(into buffer: inout [UInt8]) throws(SystemCallError) -> NonBlocking<Int> {
        let result = unsafe buffer.withUnsafeMutableBytes { raw in
            Result { () throws(SystemCallError) in try unsafe Syscalls.peek(fd, into: raw) }
        }
        return try result.get()
    }

    /// The bytes of the frames waiting at this end, not yet received, or nil when the kernel would not say.
    package func queuedBytes() -> Int? {
        Syscalls.queuedBytes(fd)
    }

    /// Closes the descriptor. Call it once.
    package func close() {
        precondition(isOpen, "channel \(fd) closed twice")
        isOpen = false
        Syscalls.close(fd)
    }

    deinit {
        if isOpen { Syscalls.close(fd) }
    }
}
