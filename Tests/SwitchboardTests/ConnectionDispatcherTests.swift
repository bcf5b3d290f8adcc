import CSwitchboardLinux
import Foundation
import Logging
import Testing

@testable import Switchboard

/// The dispatcher on real sockets, without processes: a TCP listener on 127.0.0.1, real clients, and per worker a
/// socketpair whose worker end the test reads as the worker would (a copy of the end the dispatcher keeps).
///
/// Every test checks the exactly-once rule from the clients' side: each client's id reaches exactly one worker, and
/// once that worker closes what it received the client reads end of file, which it would not while any other copy of
/// the connection stayed open (in `pending`, an outbox or a queue nobody reads).
@Suite struct ConnectionDispatcherTests {
    /// One dispatcher with its listener and lanes, the test playing the workers.
    final class Rig {
        let epoll: CInt
        let port: Int
        var dispatcher: ConnectionDispatcher
        /// Each lane's worker end as the worker holds it (its own copy, like fd 3 in a worker).
        var workers: [CInt] = []
        var clients: [Int: CInt] = [:]
        private var nextID = 0

        init(lanes: Int, bound: Int = 8, stealAfter: UInt64? = nil, descriptorLimit: Int = .max) throws {
            epoll = try Syscalls.epollCreate()
            let bound_ = try Syscalls.listenTCP(host: "127.0.0.1", port: 0, backlog: 128, reusePort: false)
            port = bound_.port
            var logger = Logger(label: "dispatcher-test")
            logger.logLevel = .critical
            dispatcher = ConnectionDispatcher(
                settings: .init(
                    policy: .roundRobin, bound: bound, descriptorLimit: descriptorLimit, stealAfter: stealAfter),
                epoll: epoll, listenerToken: 1, logger: logger)
            dispatcher.adopt(listener: bound_.fd)
            for lane in 0..<lanes { try attach(lane) }
        }

        func attach(_ lane: Int) throws {
            let (master, worker) = try DescriptorChannel.pair()
            let view = dup(worker.fd)
            _ = fcntl(view, F_SETFD, FD_CLOEXEC)
            if lane < workers.count {
                close(workers[lane])
                workers[lane] = view
            } else {
                workers.append(view)
            }
            try dispatcher.attach(lane, channel: master, kept: worker, token: UInt64(lane) << 8 | 3, metadata: [:])
            dispatcher.serve(lane)
        }

        /// Connects `count` clients; each sends its id (4 bytes) at once. The kernel completes the handshakes, so
        /// they wait in the listener's backlog until the dispatcher accepts.
        @discardableResult
        func connect(_ count: Int) throws -> [Int] {
            var ids: [Int] = []
            for _ in 0..<count {
                let fd = sb_tcp_connect("127.0.0.1", Int32(port))
                try #require(fd >= 0)
                var id = UInt32(nextID)
                _ = withUnsafeBytes(of: &id) { send(fd, $0.baseAddress, 4, 0) }
                clients[nextID] = fd
                ids.append(nextID)
                nextID += 1
            }
            return ids
        }

        /// What the worker in `lane` receives now (without blocking): the ids of the connections, each read from
        /// the received descriptor, which is then closed; and the other messages.
        /// - Parameter limit: The most frames to receive.
        /// - Parameter connectionsAfterDrain: Called when a `connections` frame comes after a `drain` frame.
        func receive(
            _ lane: Int, frames limit: Int = .max, connectionsAfterDrain: () -> Void = {}
        ) throws -> (ids: [Int], messages: [WireMessage]) {
            let channel = DescriptorChannel(fd: dup(workers[lane]))
            defer { channel.close() }
            var buffer = [UInt8](repeating: 0, count: WireCodec.maxFrame)
            var fds = [CInt](repeating: -1, count: WireCodec.maxDescriptors)
            var ids: [Int] = []
            var messages: [WireMessage] = []
            var frames = 0
            while frames < limit, case .done(let received) = try channel.receive(into: &buffer, fds: &fds, blocking: false) {
                guard received.bytes > 0 else { break }  // the master's end is closed
                frames += 1
                let message = try WireCodec.decode(buffer[0..<received.bytes], descriptorCount: received.fds)
                if case .connections = message {
                    if messages.contains(where: { if case .drain = $0 { true } else { false } }) { connectionsAfterDrain() }
                } else {
                    messages.append(message)
                }
                for position in 0..<received.fds {
                    var id: UInt32 = 0
                    let read = withUnsafeMutableBytes(of: &id) { recv(fds[position], $0.baseAddress, 4, Int32(MSG_WAITALL)) }
                    #expect(read == 4)
                    ids.append(Int(id))
                    close(fds[position])
                }
            }
            return (ids, messages)
        }

        /// Whether the client with `id` sees its connection closed within a second (every copy of it closed): end of
        /// file, or a reset when it was closed with the client's bytes unread.
        func clientSeesEnd(_ id: Int) -> Bool {
            guard let fd = clients[id] else { return false }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 1000) == 1 else { return false }
            var byte: UInt8 = 0
            let read = recv(fd, &byte, 1, Int32(MSG_DONTWAIT))
            return read == 0 || (read < 0 && errno == ECONNRESET)
        }

        deinit {
            _ = dispatcher.closeAll()
            for fd in workers { close(fd) }
            for fd in clients.values { close(fd) }
            close(epoll)
        }
    }

    @Test func roundRobinSendsEachConnectionToExactlyOneWorker() throws {
        let rig = try Rig(lanes: 2)
        let ids = try rig.connect(6)
        rig.dispatcher.pump(accepting: true)
        let first = try rig.receive(0).ids
        let second = try rig.receive(1).ids
        #expect(first.count == 3 && second.count == 3)
        #expect((first + second).sorted() == ids)
        #expect(ids.allSatisfy(rig.clientSeesEnd), "a copy of a connection stayed open in the master")
        #expect(rig.dispatcher.counters.accepted == 6 && rig.dispatcher.counters.dispatched == 6)
        #expect(rig.dispatcher.pendingCount == 0)
    }

    /// The listener the dispatcher adopts gets `TCP_NODELAY`, which Linux copies to each connection accepted there:
    /// what a worker receives has it without a `setsockopt` of its own (issue 23). A descriptor that is not a TCP
    /// socket does not take it, and the workers are then told to set it themselves.
    @Test func passedConnectionsComeWithNoDelayFromTheListener() throws {
        let rig = try Rig(lanes: 1)
        let given = rig.dispatcher.listenerGivesNoDelay
        #expect(given)
        try rig.connect(2)
        rig.dispatcher.pump(accepting: true)
        let channel = DescriptorChannel(fd: dup(rig.workers[0]))
        defer { channel.close() }
        var buffer = [UInt8](repeating: 0, count: WireCodec.maxFrame)
        var fds = [CInt](repeating: -1, count: WireCodec.maxDescriptors)
        var passed = 0
        while case .done(let received) = try channel.receive(into: &buffer, fds: &fds, blocking: false),
            received.fds > 0
        {
            for index in 0..<received.fds {
                #expect(Syscalls.noDelay(fds[index]), "a passed connection without TCP_NODELAY")
                close(fds[index])
            }
            passed += received.fds
        }
        #expect(passed == 2)

        let (one, other) = try Syscalls.streamSocketPair()
        defer { close(other) }
        var unix = ConnectionDispatcher(
            settings: .init(policy: .roundRobin, bound: 8), epoll: rig.epoll, listenerToken: 2,
            logger: Logger(label: "dispatcher-test"))
        unix.adopt(listener: one)
        let unixGives = unix.listenerGivesNoDelay
        #expect(!unixGives)
        _ = unix.closeAll()
    }

    @Test func notAcceptingLeavesConnectionsInTheBacklog() throws {
        let rig = try Rig(lanes: 1)
        try rig.connect(3)
        rig.dispatcher.pump(accepting: false)
        #expect(try rig.receive(0).ids.isEmpty)
        #expect(rig.dispatcher.counters.accepted == 0)
        rig.dispatcher.pump(accepting: true)
        #expect(try rig.receive(0).ids.count == 3)
    }

    @Test func aDrainingWorkerGetsItsDrainFrameAndNothingNew() throws {
        let rig = try Rig(lanes: 2)
        let sent = rig.dispatcher.drain(0, deadlineMilliseconds: 500)
        #expect(sent)
        let ids = try rig.connect(4)
        rig.dispatcher.pump(accepting: true)
        let drained = try rig.receive(0)
        #expect(drained.ids.isEmpty)
        #expect(drained.messages == [.drain(deadlineMilliseconds: 500)])
        #expect(try rig.receive(1).ids == ids)
    }

    @Test func aQueueAtItsBoundHoldsTheRestInTheBacklogUntilTheWorkerReceives() throws {
        let rig = try Rig(lanes: 1, bound: 2)
        let ids = try rig.connect(5)
        rig.dispatcher.pump(accepting: true)
        #expect(rig.dispatcher.lanes[0].queued == 2)
        #expect(rig.dispatcher.counters.accepted == 2, "the master accepts only what a worker has room for")
        var got = try rig.receive(0).ids
        rig.dispatcher.report(0, open: 0)  // a heartbeat: the master looks at the queue again
        #expect(rig.dispatcher.lanes[0].queued == 0)
        while got.count < 5 {
            rig.dispatcher.pump(accepting: true)
            let more = try rig.receive(0).ids
            try #require(!more.isEmpty, "nothing more was sent")
            got += more
        }
        #expect(got == ids)
        #expect(ids.allSatisfy(rig.clientSeesEnd))
    }

    /// A worker that dies with connections in its queue: the master takes them back when it is reaped and the
    /// others serve them; nothing is lost and nothing is served twice.
    @Test func aReapedWorkersQueueGoesToAnotherWorker() throws {
        let rig = try Rig(lanes: 2)
        let ids = try rig.connect(4)
        rig.dispatcher.pump(accepting: true)
        #expect(rig.dispatcher.lanes[0].queued == 2 && rig.dispatcher.lanes[1].queued == 2)
        rig.dispatcher.disconnect(0)  // killed
        #expect(rig.dispatcher.channel(0) == nil)
        #expect(rig.dispatcher.detach(0) == 2)  // reaped: what it never received comes back
        #expect(rig.dispatcher.pendingCount == 2)
        rig.dispatcher.pump(accepting: true)
        #expect(rig.dispatcher.pendingCount == 0)
        #expect(try rig.receive(1).ids.sorted() == ids)
        #expect(ids.allSatisfy(rig.clientSeesEnd))
        #expect(rig.dispatcher.counters.takenBack == 2 && rig.dispatcher.counters.redispatched == 2)
    }

    /// A replacement in the same lane starts with a fresh queue and turn; what its predecessor left was served.
    @Test func aReplacementStartsWithAnEmptyLane() throws {
        let rig = try Rig(lanes: 1)
        let before = try rig.connect(2)
        rig.dispatcher.pump(accepting: true)
        rig.dispatcher.disconnect(0)
        #expect(rig.dispatcher.detach(0) == 2)
        try rig.attach(0)
        #expect(rig.dispatcher.lanes[0].queued == 0 && rig.dispatcher.lanes[0].dispatched == 0)
        let after = try rig.connect(1)
        rig.dispatcher.pump(accepting: true)
        #expect(try rig.receive(0).ids == before + after)
    }

    @Test func aStalledQueueIsStolenOnlyWhenAnotherWorkerServes() throws {
        let rig = try Rig(lanes: 2, stealAfter: 1_000_000)
        let ids = try rig.connect(4)
        rig.dispatcher.pump(accepting: true)
        let served = try rig.receive(1).ids  // worker 1 receives; worker 0 is stopped
        #expect(served.count == 2)
        let later = Syscalls.monotonicNanoseconds() + 5_000_000
        #expect(rig.dispatcher.nextDeadline(now: later) != nil)
        rig.dispatcher.runTimers(now: later)
        #expect(rig.dispatcher.lanes[0].stalled && rig.dispatcher.counters.stolen == 2)
        rig.dispatcher.pump(accepting: true)
        #expect((served + (try rig.receive(1).ids)).sorted() == ids)
        #expect(try rig.receive(0).ids.isEmpty, "the stalled worker finds its queue empty")
        #expect(ids.allSatisfy(rig.clientSeesEnd))
        // A stalled worker that reports is back in the rotation.
        rig.dispatcher.report(0, open: 0)
        #expect(!rig.dispatcher.lanes[0].stalled)
    }

    /// The master's loop waits for the deadline the pump reports instead of asking the dispatcher again: it is the
    /// steal check of the frames just sent, and none once every frame was received.
    @Test func thePumpReportsTheDispatchersNextDeadline() throws {
        let rig = try Rig(lanes: 2, stealAfter: 1_000_000)
        _ = try rig.connect(2)
        let now = Syscalls.monotonicNanoseconds()
        var deadline: UInt64 = 0
        #expect(!rig.dispatcher.pump(accepting: true, now: now, nextDeadline: &deadline))
        #expect(deadline == now + 1_000_000, "the steal check of the frames sent at `now`")
        #expect(deadline == rig.dispatcher.nextDeadline(now: now))
        _ = try rig.receive(0)
        _ = try rig.receive(1)
        rig.dispatcher.report(0, open: 1)
        rig.dispatcher.report(1, open: 1)
        #expect(!rig.dispatcher.pump(accepting: true, now: now + 1, nextDeadline: &deadline))
        #expect(deadline == .max, "nothing waits in a queue: no steal check")
    }

    /// A stalled queue is taken back only as far as the master has descriptors for; the rest stays the stalled
    /// worker's, in its queue, until a later steal (after a pause) finds room. Each connection still reaches exactly
    /// one worker.
    @Test func aStolenQueueComesBackOnlyAsFarAsTheMasterHasDescriptors() throws {
        let rig = try Rig(lanes: 2, stealAfter: 1_000_000, descriptorLimit: 1000)
        nonisolated(unsafe) var open = 1000 - ConnectionDispatcher.descriptorReserve - 2  // room for two
        rig.dispatcher.openDescriptorCount = { open }
        var ids: [Int] = []
        var served: [Int] = []
        for _ in 0..<3 {  // three frames of one connection each in worker 0's queue
            ids += try rig.connect(2)
            rig.dispatcher.pump(accepting: true)
            served += try rig.receive(1).ids
        }
        #expect(rig.dispatcher.lanes[0].queued == 3)
        var now = Syscalls.monotonicNanoseconds() + 5_000_000
        rig.dispatcher.runTimers(now: now)
        #expect(rig.dispatcher.counters.stolen == 2, "two fit")
        #expect(rig.dispatcher.lanes[0].queued == 1, "the third stays in the stalled worker's queue")
        #expect(rig.dispatcher.pendingCount == 2)
        // The pause: no steal until it ends, even with room.
        open = 0
        #expect(rig.dispatcher.nextDeadline(now: now) == now + ConnectionDispatcher.sendRetryDelay)
        rig.dispatcher.runTimers(now: now + 1)
        #expect(rig.dispatcher.counters.stolen == 2)
        now += ConnectionDispatcher.sendRetryDelay
        rig.dispatcher.runTimers(now: now)
        #expect(rig.dispatcher.counters.stolen == 3)
        #expect(rig.dispatcher.lanes[0].queued == 0)
        rig.dispatcher.pump(accepting: true)
        served += try rig.receive(1).ids
        #expect(served.sorted() == ids)
        #expect(try rig.receive(0).ids.isEmpty, "the stalled worker finds its queue empty")
        #expect(ids.allSatisfy(rig.clientSeesEnd))
    }

    /// During a stop every worker drains: a queue that waits is left to its worker, which may yet serve it.
    @Test func nothingIsStolenWhenNoOtherWorkerServes() throws {
        let rig = try Rig(lanes: 2, stealAfter: 1_000_000)
        try rig.connect(2)
        rig.dispatcher.pump(accepting: true)
        let sent = rig.dispatcher.drain(1, deadlineMilliseconds: 1000)
        #expect(sent)
        _ = try rig.receive(1)
        let later = Syscalls.monotonicNanoseconds() + 5_000_000
        rig.dispatcher.runTimers(now: later)
        #expect(rig.dispatcher.counters.stolen == 0 && rig.dispatcher.lanes[0].queued == 1)
        #expect(try rig.receive(0).ids.count == 1)
    }

    /// A drain frame queued behind connections is taken back with them when the queue is stolen, and put back.
    @Test func aDrainFrameTakenBackWithAStolenQueueIsPutBack() throws {
        let rig = try Rig(lanes: 2, stealAfter: 1_000_000)
        try rig.connect(2)
        rig.dispatcher.pump(accepting: true)
        let sent = rig.dispatcher.drain(0, deadlineMilliseconds: 700)
        #expect(sent)
        _ = try rig.receive(1)
        rig.dispatcher.runTimers(now: Syscalls.monotonicNanoseconds() + 5_000_000)
        #expect(rig.dispatcher.counters.stolen == 1)
        let zero = try rig.receive(0)
        #expect(zero.ids.isEmpty && zero.messages == [.drain(deadlineMilliseconds: 700)])
        #expect(rig.dispatcher.takeTroubles().isEmpty)
    }

    @Test func aChannelThatFailsIsReportedAndItsShareGoesToTheOthers() throws {
        let rig = try Rig(lanes: 2)
        shutdown(rig.dispatcher.channel(0)!.fd, Int32(SHUT_RDWR))
        let ids = try rig.connect(4)
        let waiting = rig.dispatcher.pump(accepting: true)
        #expect(waiting, "the pump says troubles wait: the master acts only then")
        let troubles = rig.dispatcher.takeTroubles()
        #expect(troubles.count == 1)
        guard case .channelFailed(lane: 0, _)? = troubles.first else {
            Issue.record("expected a failed channel on lane 0, got \(troubles)")
            return
        }
        #expect(rig.dispatcher.takeTroubles().isEmpty, "each trouble is returned once")
        let waitingAgain = rig.dispatcher.pump(accepting: true)
        #expect(!waitingAgain, "none wait once taken")
        #expect(try rig.receive(1).ids.sorted() == ids)
        #expect(ids.allSatisfy(rig.clientSeesEnd))
    }

    @Test func aStopServesWhatWaitsWhereAWorkerTakesItAndClosesTheRest() throws {
        let rig = try Rig(lanes: 2)
        let ids = try rig.connect(2)
        rig.dispatcher.pump(accepting: true)
        rig.dispatcher.disconnect(0)
        #expect(rig.dispatcher.detach(0) == 1)
        #expect(rig.dispatcher.stop() == 0, "worker 1 still takes connections")
        #expect(rig.dispatcher.listener == -1)
        #expect(try rig.receive(1).ids.sorted() == ids)

        let alone = try Rig(lanes: 1)
        let lost = try alone.connect(2)
        alone.dispatcher.pump(accepting: true)
        alone.dispatcher.disconnect(0)
        #expect(alone.dispatcher.detach(0) == 2)
        #expect(alone.dispatcher.stop() == 2, "nobody can take them: closed, and counted")
        #expect(lost.allSatisfy(alone.clientSeesEnd))
    }

    @Test func acknowledgingAConnectionNeverSentIsAnError() throws {
        let rig = try Rig(lanes: 1)
        try rig.connect(1)
        rig.dispatcher.pump(accepting: true)
        #expect(throws: QueuedFrames.AckError.self) { try rig.dispatcher.acknowledge(0, upTo: 5, open: 0) }
        try rig.dispatcher.acknowledge(0, upTo: 1, open: 1)
        #expect(rig.dispatcher.lanes[0].queued == 0 && rig.dispatcher.lanes[0].open == 1)
    }
}
