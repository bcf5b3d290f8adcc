import CSwitchboardLinux
import Foundation
import Testing

@testable import Switchboard

@Suite struct DescriptorChannelTests {
    func inode(_ fd: CInt) -> UInt {
        var info = stat()
        fstat(fd, &info)
        return UInt(info.st_ino)
    }

    @Test func aPassedDescriptorIsTheSameSocket() throws {
        let (master, worker) = try DescriptorChannel.pair()
        defer { master.close(); worker.close() }
        var bound: CInt = 0
        var family: CInt = 0
        let listener = sb_tcp_listen("127.0.0.1", 0, 4, 0, 1, &bound, &family)
        try #require(listener >= 0)
        defer { close(listener) }

        guard case .done = try master.sendConnections(firstSequence: 7, [listener], count: 1) else {
            Issue.record("send would block")
            return
        }
        var buffer = [UInt8](repeating: 0, count: WireCodec.maxFrame)
        var fds = [CInt](repeating: -1, count: WireCodec.maxDescriptors)
        guard case .done(let received) = try worker.receive(into: &buffer, fds: &fds, blocking: true) else {
            Issue.record("nothing received")
            return
        }
        #expect(received.fds == 1)
        let message = try WireCodec.decode(buffer[0..<received.bytes], descriptorCount: received.fds)
        #expect(message == .connections(firstSequence: 7, count: 1))
        #expect(fds[0] != listener)
        #expect(inode(fds[0]) == inode(listener))
        #expect(try Syscalls.localPort(fds[0]) == Int(bound))
        #expect(fcntl(fds[0], F_GETFD) & FD_CLOEXEC != 0, "received close-on-exec")
        close(fds[0])
    }

    @Test func surplusDescriptorsAreClosedAndReportedAsTooLarge() throws {
        let (master, worker) = try DescriptorChannel.pair()
        defer { master.close(); worker.close() }
        var pipeFDs: [CInt] = [-1, -1]
        try #require(pipe(&pipeFDs) == 0)
        _ = fcntl(pipeFDs[0], F_SETFL, O_NONBLOCK)
        defer { close(pipeFDs[0]) }
        // Two copies of the pipe's write end travel; ours closes after sending. Once every copy is closed the read
        // end sees end of file, so a copy leaked by the receiver shows as a read that would block instead. (Counting
        // this process's descriptors would race the suites that run beside this one.)
        _ = try master.sendConnections(firstSequence: 1, [pipeFDs[1], pipeFDs[1]], count: 2)
        close(pipeFDs[1])
        var buffer = [UInt8](repeating: 0, count: WireCodec.maxFrame)
        var room = [CInt](repeating: -1, count: 1)  // room for one: the second is surplus
        #expect(throws: SystemCallError(call: "recvmsg", code: EMSGSIZE)) {
            _ = try worker.receive(into: &buffer, fds: &room, blocking: true)
        }
        var byte: UInt8 = 0
        #expect(read(pipeFDs[0], &byte, 1) == 0, "every received descriptor was closed (errno \(errno))")
    }

    @Test func aFrameLargerThanTheBufferIsReportedAsTooLarge() throws {
        let (master, worker) = try DescriptorChannel.pair()
        defer { master.close(); worker.close() }
        _ = try master.sendRaw([UInt8](repeating: 1, count: 64))
        var small = [UInt8](repeating: 0, count: 16)
        var fds = [CInt](repeating: -1, count: 1)
        #expect(throws: SystemCallError(call: "recvmsg", code: EMSGSIZE)) {
            _ = try worker.receive(into: &small, fds: &fds, blocking: true)
        }
    }

    @Test func nonBlockingReceiveOnAnEmptyChannelWouldBlock() throws {
        let (master, worker) = try DescriptorChannel.pair()
        defer { master.close(); worker.close() }
        var buffer = [UInt8](repeating: 0, count: WireCodec.maxFrame)
        var fds = [CInt](repeating: -1, count: 4)
        guard case .wouldBlock = try worker.receive(into: &buffer, fds: &fds, blocking: false) else {
            Issue.record("expected wouldBlock")
            return
        }
    }

    @Test func closingOneEndIsEndOfStreamForTheOther() throws {
        let (master, worker) = try DescriptorChannel.pair()
        defer { worker.close() }
        master.close()
        var buffer = [UInt8](repeating: 0, count: WireCodec.maxFrame)
        var fds = [CInt](repeating: -1, count: 4)
        guard case .done(let received) = try worker.receive(into: &buffer, fds: &fds, blocking: true) else {
            Issue.record("expected end of stream")
            return
        }
        #expect(received.bytes == 0 && received.fds == 0)
    }

    @Test func aFullChannelWouldBlockInsteadOfBlocking() throws {
        let (master, worker) = try DescriptorChannel.pair()
        defer { master.close(); worker.close() }
        var sent = 0
        while sent < 100_000 {
            guard case .done = try master.send(.heartbeat(open: 0, handled: 0)) else { break }
            sent += 1
        }
        #expect(sent < 100_000, "the channel never filled")
    }

    @Test func systemCallErrorsNameTheCallAndReason() {
        let error = SystemCallError(call: "bind", code: EADDRINUSE)
        #expect(error.description == "bind: Address already in use (errno \(EADDRINUSE))")
    }
}

extension DescriptorChannelTests {
    /// The mechanism the master relies on: once a frame is sent, the sender's copies may be closed; the connection
    /// lives in the receiver's queue, and whoever receives the frame first (the worker, or the master from its copy
    /// of the worker's end) owns it, exactly once. The bytes still queued tell how much was received.
    @Test func aQueuedConnectionOutlivesTheSendersCopyAndIsReceivedOnce() throws {
        let (master, worker) = try DescriptorChannel.pair()
        defer { master.close(); worker.close() }
        var bound: CInt = 0
        var family: CInt = 0
        let listener = sb_tcp_listen("127.0.0.1", 0, 4, 0, 1, &bound, &family)
        try #require(listener >= 0)
        let original = inode(listener)
        guard case .done = try master.sendConnections(firstSequence: 1, [listener], count: 1),
            case .done = try master.send(.drain(deadlineMilliseconds: 5))
        else {
            Issue.record("send would block")
            return
        }
        close(listener)  // the sender's copy: the kernel still holds the socket in the queue
        #expect(master.bytesSent == UInt64(WireCodec.connectionsFrameSize + WireCodec.headerSize + 4))
        #expect(worker.queuedBytes() == Int(master.bytesSent))

        var header = [UInt8](repeating: 0, count: WireCodec.connectionsFrameSize)
        guard case .done(let peeked) = try worker.peek(into: &header) else {
            Issue.record("nothing to peek")
            return
        }
        #expect(peeked == WireCodec.connectionsFrameSize)
        #expect(worker.queuedBytes() == Int(master.bytesSent), "a peek takes nothing")

        var buffer = [UInt8](repeating: 0, count: WireCodec.maxFrame)
        var fds = [CInt](repeating: -1, count: WireCodec.maxDescriptors)
        guard case .done(let received) = try worker.receive(into: &buffer, fds: &fds, blocking: false) else {
            Issue.record("nothing received")
            return
        }
        #expect(received.fds == 1)
        #expect(inode(fds[0]) == original, "the same socket, alive after the sender closed its copy")
        #expect(try Syscalls.localPort(fds[0]) == Int(bound))
        close(fds[0])
        #expect(worker.queuedBytes() == WireCodec.headerSize + 4, "only the drain frame is left")
        guard case .done(let rest) = try worker.receive(into: &buffer, fds: &fds, blocking: false) else {
            Issue.record("the drain frame is missing")
            return
        }
        #expect(rest.fds == 0)
        #expect(try WireCodec.decode(buffer[0..<rest.bytes]) == .drain(deadlineMilliseconds: 5))
        guard case .wouldBlock = try worker.receive(into: &buffer, fds: &fds, blocking: false) else {
            Issue.record("a frame was received twice")
            return
        }
    }
}
