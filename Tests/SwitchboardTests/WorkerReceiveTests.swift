import CSwitchboardLinux
import Foundation
import Logging
import Testing

@testable import Switchboard

/// How a worker takes what the master sends: every frame that waits
/// (``WorkerRuntime/receiveAvailable(openConnections:_:)``), or one frame a call for a loop that waits again in between
/// (``WorkerRuntime/receiveFrame(openConnections:_:)``, issue 23).
@Suite struct WorkerReceiveTests {
    /// Sends `count` copies of a pipe's write end as one frame of connections; returns the pipe's read end, which sees
    /// end of file once every copy is closed.
    func sendFrame(_ master: DescriptorChannel, first: UInt64, count: Int) throws -> CInt {
        var ends: [CInt] = [-1, -1]
        try #require(pipe(&ends) == 0)
        _ = fcntl(ends[0], F_SETFL, O_NONBLOCK)
        guard case .done = try master.sendConnections(
            firstSequence: first, [CInt](repeating: ends[1], count: count), count: count)
        else {
            Issue.record("send would block")
            return ends[0]
        }
        close(ends[1])
        return ends[0]
    }

    /// The connections each call handed on, one array per `.connections` event.
    func take(_ receive: (() -> Int, (WorkerRuntime.Event) -> Void) -> Bool) -> (present: Bool, batches: [[CInt]]) {
        var batches: [[CInt]] = []
        let present = receive({ 0 }) { event in
            if case .connections(let fds) = event { batches.append(fds) }
        }
        return (present, batches)
    }

    @Test func receiveFrameTakesOneFrameACallAndReceiveAvailableTakesAll() throws {
        let (master, worker) = try DescriptorChannel.pair()
        defer { master.close() }
        let runtime = WorkerRuntime(id: 1, slot: 0, masterPID: getpid(), channel: worker, logger: Logger(label: "test"))
        defer { worker.close() }
        var readEnds: [CInt] = []
        defer { for fd in readEnds { close(fd) } }
        var received: [CInt] = []

        readEnds.append(try sendFrame(master, first: 1, count: 1))
        readEnds.append(try sendFrame(master, first: 2, count: 2))
        let first = take(runtime.receiveFrame)
        #expect(first.present && first.batches.map(\.count) == [1], "one frame, not both")
        let second = take(runtime.receiveFrame)
        #expect(second.present && second.batches.map(\.count) == [2], "the frame left queued")
        let third = take(runtime.receiveFrame)
        #expect(third.present && third.batches.isEmpty)
        received += (first.batches + second.batches).flatMap { $0 }

        readEnds.append(try sendFrame(master, first: 4, count: 1))
        readEnds.append(try sendFrame(master, first: 5, count: 3))
        let all = take(runtime.receiveAvailable)
        #expect(all.present && all.batches.map(\.count) == [4], "both frames in one call")
        received += all.batches.flatMap { $0 }

        // Each connection sent arrived once: closing what was received leaves no copy open anywhere.
        #expect(received.count == 7)
        for fd in received { close(fd) }
        for fd in readEnds {
            var byte: UInt8 = 0
            #expect(read(fd, &byte, 1) == 0, "a copy of a passed descriptor is still open")
        }
    }

    @Test func receiveFrameSeesTheMasterGoneAfterItsLastFrame() throws {
        let (master, worker) = try DescriptorChannel.pair()
        let runtime = WorkerRuntime(id: 1, slot: 0, masterPID: getpid(), channel: worker, logger: Logger(label: "test"))
        defer { worker.close() }
        let readEnd = try sendFrame(master, first: 1, count: 2)
        defer { close(readEnd) }
        // Read the worker's hello first: a UNIX socket closed with bytes unread resets its peer, and the worker would
        // see ECONNRESET instead of the frame.
        var buffer = [UInt8](repeating: 0, count: WireCodec.maxFrame)
        var fds = [CInt](repeating: -1, count: WireCodec.maxDescriptors)
        _ = try master.receive(into: &buffer, fds: &fds, blocking: true)
        master.close()
        let frame = take(runtime.receiveFrame)
        #expect(frame.present && frame.batches.map(\.count) == [2])
        for fd in frame.batches.flatMap({ $0 }) { close(fd) }
        var gone = false
        let after = runtime.receiveFrame(openConnections: { 0 }) { event in
            if case .masterGone = event { gone = true }
        }
        #expect(!after && gone)
    }
}
