import CSwitchboardLinux
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Owns every accepted connection from the accept until a worker receives it: the listener, the connections waiting
/// in the master, and one ``Lane`` per worker.
///
/// This is the one place the exactly-once rule lives. An accepted descriptor is, at any moment, in exactly one of:
/// - a lane's **outbox**: staged for that worker, sent with the others of the same burst in one message;
/// - a worker's **queue**: sent; the master closed its copy and the kernel holds the connection in the worker's end of
///   the socketpair (the lane's frame ring says how many, its kept copy of that end lets the master take them back);
/// - **pending**: waiting in the master for a worker with room (taken back, or its send would have blocked);
/// - or it is gone: the worker received it, or the dispatcher closed it (at a stop, when no worker could take it).
///
/// Counts are derived from those places, never stored twice: a lane's ``Lane/queued`` is its outbox plus its ring.
/// What only the supervisor may decide (a channel that failed, a drain frame that could not be put back) comes out
/// as ``Trouble`` values for the master to act on after the call that found it, never from inside it.
///
/// One thread; every call is non-blocking. The unit tests drive it on real socketpairs without processes.
///
/// A noncopyable value, not a class: it has exactly one owner (a copy would own every descriptor twice), and exclusive
/// access to its state is checked by the compiler inside its `mutating` methods. A class's stored properties are
/// checked at run time on every access instead; on the accept path those checks were about 40 % of the master's
/// user-space instructions.
package struct ConnectionDispatcher: ~Copyable {
    /// How the dispatcher schedules and when it steals.
    package struct Settings: Sendable {
        package var policy: Scheduler.Policy
        /// The most connections that may wait in one worker's queue (``Configuration/maxQueued``).
        package var bound: Int
        /// The most connections one worker may hold, open plus queued.
        package var capacity: Int
        /// The most descriptors the master may have open (its soft `RLIMIT_NOFILE`); `Int.max` for no limit. The same
        /// number bounds two things: the descriptors in flight in all the queues together (the scheduler's
        /// ``Scheduler/inFlightBudget``: the kernel counts a sender's in-flight descriptors against its limit), and how
        /// far a live worker's queue is taken back (only as far as they fit, see ``descriptorReserve``).
        package var descriptorLimit: Int
        /// Take a worker's queue back once its oldest frame waited this long (nanoseconds); nil: never.
        package var stealAfter: UInt64?
        /// Whether the master accepts and passes connections (round-robin, least-connections) or only holds the
        /// listener (reuseport, shared).
        package var passesDescriptors: Bool

        package init(
            policy: Scheduler.Policy, bound: Int, capacity: Int = .max, descriptorLimit: Int = .max, stealAfter: UInt64? = nil, passesDescriptors: Bool = true
        ) {
            self.policy = policy
            self.bound = bound
            self.capacity = capacity
            self.descriptorLimit = descriptorLimit
            self.stealAfter = stealAfter
            self.passesDescriptors = passesDescriptors
        }
    }

    /// Something only the supervisor may act on, found while the dispatcher moved connections.
    package enum Trouble: Equatable, Sendable {
        /// Sending to the worker failed for good: its lane is out of the rotation; the worker must go.
        case channelFailed(lane: Int, reason: String)
        /// A drain frame taken back with a stolen queue could not be put back: the worker must be told by SIGTERM.
        case drainUndelivered(lane: Int)
    }

    /// Connection counts since the start, for status, `/metrics` and the last log line.
    package struct Counters: Equatable, Sendable, Codable {
        package var accepted: UInt64 = 0
        /// Connections sent to workers (each once per send: a connection taken back and sent again counts twice).
        package var dispatched: UInt64 = 0
        /// Connections the master received back from a worker's queue (it died, or stalled).
        package var takenBack: UInt64 = 0
        /// Connections sent from `pending` (after they were taken back, or their send would have blocked).
        package var redispatched: UInt64 = 0
        /// Connections taken back from stalled workers' queues (a part of `takenBack`).
        package var stolen: UInt64 = 0
        /// `connections` messages sent: below `dispatched` when a burst went out several connections per message.
        package var messages: UInt64 = 0
    }

    /// The most connections accepted in one go before they are sent; at most ``WireCodec/maxDescriptors``.
    package static let acceptBurst = 16

    /// `sendmsg` failures that say nothing about the worker: kernel memory for the message (ENOBUFS, ENOMEM), or more
    /// descriptors in flight than this user may have (ETOOMANYREFS, for a master that is not root: the limit is its
    /// descriptor limit, counted across every worker's queue). They pass once queues move.
    package static let transientSendErrors: [CInt] = [ENOBUFS, ENOMEM, ETOOMANYREFS]

    /// How long a worker is skipped after a passing send failure.
    package static let sendRetryDelay: UInt64 = 10_000_000

    package let settings: Settings
    private var scheduler: Scheduler
    package private(set) var lanes: [Lane] = []
    private var pending = PendingQueue()
    package private(set) var counters = Counters()
    private var troubles: [Trouble] = []
    private var listenerDescriptor = Descriptor(-1)
    private var listenerWatched = false
    private let listenerToken: UInt64
    private let epoll: CInt
    private var acceptResumeAt: UInt64?
    /// A shortage of descriptors or memory was logged and no accept has succeeded since.
    private var acceptShortageLogged = false
    /// When the earliest send back-off ends, so timers look at the lanes only then.
    private var nextSendRetry: UInt64?
    /// Descriptors the master keeps free when it takes a live worker's queue back: for accepting, starting a
    /// worker, its control and health sockets. At least ``acceptBurst``, the most connections one frame carries
    /// (outboxes never grow past a burst: a failed send gives its share back to `pending`): the worker may receive the
    /// frame the master peeked before the master receives, and the next frame then still fits.
    package static let descriptorReserve = max(16, acceptBurst)
    /// How many descriptors this process has open now (the default lists `/proc/self/fd`); unit tests replace it.
    package var openDescriptorCount: () -> Int = { Syscalls.openDescriptorCount() }
    /// Until when stealing waits after a take-back stopped for lack of descriptors (monotonic nanoseconds).
    private var stealPausedUntil: UInt64?
    private var receiveBuffer = [UInt8](repeating: 0, count: WireCodec.maxFrame)
    private var peekBuffer = [UInt8](repeating: 0, count: WireCodec.connectionsFrameSize)
    private var receiveDescriptors = [CInt](repeating: -1, count: WireCodec.maxDescriptors)
    private let logger: Logger

    /// - Parameters:
    ///   - epoll: The master's epoll set: the dispatcher adds and removes its own descriptors (the listener, each
    ///     lane's channel) and their interest.
    ///   - listenerToken: The epoll token the listener is watched with.
    package init(settings: Settings, epoll: CInt, listenerToken: UInt64, logger: Logger) {
        self.settings = settings
        self.scheduler = Scheduler(
            policy: settings.policy, bound: settings.bound, capacity: settings.capacity,
            inFlightBudget: settings.descriptorLimit)
        self.epoll = epoll
        self.listenerToken = listenerToken
        self.logger = logger
    }

    // MARK: the listener

    /// The listener (-1 before ``adopt(listener:)`` and after ``stop()``): borrowed, never closed by the caller.
    package var listener: CInt { listenerDescriptor.raw }

    /// Takes ownership of the listening socket, and turns Nagle's algorithm off on it (bound here, passed by systemd
    /// or handed over by an upgrade alike): Linux copies `TCP_NODELAY` from a listener to every connection accepted
    /// on it, so a worker need not set it on each connection, one system call each (issue 23).
    package mutating func adopt(listener fd: CInt) {
        precondition(!listenerDescriptor.isValid, "a second listener")
        listenerDescriptor = Descriptor(fd)
        Syscalls.setNoDelay(fd)
    }

    /// Whether the connections accepted on the listener come with `TCP_NODELAY` set (a TCP listener that took it).
    package var listenerGivesNoDelay: Bool {
        listenerDescriptor.isValid && Syscalls.noDelay(listenerDescriptor.raw)
    }

    /// Connections waiting in the master for a worker.
    package var pendingCount: Int { pending.count }

    // MARK: lanes

    /// Makes sure lanes 0...`lane` exist (new ones are empty).
    package mutating func ensureLane(_ lane: Int) {
        while lanes.count <= lane { lanes.append(Lane(bound: settings.bound)) }
    }

    /// Connects a newly started worker to `lane`: the master's end of its channel, and the master's copy of the
    /// worker's end (kept until ``detach(_:)`` so what the worker never received can be taken back). Watches the
    /// channel for reading with `token`.
    /// - Throws: When the channel cannot be watched; the caller still owns both ends then.
    package mutating func attach(
        _ lane: Int, channel: DescriptorChannel, kept: DescriptorChannel, token: UInt64, metadata: Logger.Metadata
    ) throws(SystemCallError) {
        ensureLane(lane)
        precondition(lanes[lane].channel == nil && lanes[lane].kept == nil, "lane \(lane) attached twice")
        try Syscalls.epollAdd(epoll, channel.fd, events: sb_EPOLLIN, token: token)
        lanes[lane] = Lane(bound: settings.bound)
        lanes[lane].channel = channel
        lanes[lane].kept = kept
        lanes[lane].token = token
        lanes[lane].metadata = metadata
    }

    /// The channel of `lane`, for the master to read the worker's messages (borrowed: the dispatcher closes it).
    package func channel(_ lane: Int) -> DescriptorChannel? {
        lane < lanes.count ? lanes[lane].channel : nil
    }

    /// The worker in `lane` said it is ready: it joins the rotation.
    package mutating func serve(_ lane: Int) {
        guard lanes[lane].channel != nil else { return }
        lanes[lane].ready = true
    }

    /// The worker in `lane` drains: it leaves the rotation and gets a `drain` frame with `deadlineMilliseconds`.
    /// - Returns: false when the frame could not be sent (its channel is full or failed): signal the worker instead.
    package mutating func drain(_ lane: Int, deadlineMilliseconds: UInt32) -> Bool {
        lanes[lane].ready = false
        guard let channel = lanes[lane].channel else { return true }
        guard case .done? = try? channel.send(.drain(deadlineMilliseconds: deadlineMilliseconds)) else { return false }
        return true
    }

    /// Cuts the master off from the worker in `lane` (killed, or exited): closes the master's end of its channel.
    /// Staged connections go to `pending`; the ones in its queue stay there, held by the kernel, until
    /// ``detach(_:)``, when nothing can receive them any more.
    package mutating func disconnect(_ lane: Int) {
        guard lane < lanes.count, let channel = lanes[lane].channel else { return }
        Syscalls.epollRemove(epoll, channel.fd)
        channel.close()
        lanes[lane].channel = nil
        unstage(lane)
        lanes[lane].frames.removeAll()
        lanes[lane].ready = false
        lanes[lane].open = 0
        lanes[lane].stalled = false
        lanes[lane].watchingWritable = false
        lanes[lane].retryAt = nil
    }

    /// After the worker in `lane` was reaped: takes back every connection it never received (to `pending`, for the
    /// other workers) and closes the master's copy of its end.
    /// - Returns: The connections taken back.
    @discardableResult
    package mutating func detach(_ lane: Int) -> Int {
        guard lane < lanes.count else { return 0 }
        disconnect(lane)
        guard let kept = lanes[lane].kept else { return 0 }
        let taken = takeBack(lane, live: false).taken
        kept.close()
        lanes[lane].kept = nil
        return taken
    }

    /// The most connections one worker's queue may hold with `workers` workers: ``Settings/bound``, or less when the
    /// workers' shares of ``Settings/descriptorLimit`` are smaller.
    package func queueBound(workers: Int) -> Int {
        scheduler.queueBound(lanes: workers)
    }

    // MARK: what workers report

    /// The worker in `lane` received the frame holding `sequence` and all before it, and holds `open` connections.
    /// - Throws: When it acknowledges a connection it was never sent (a protocol error).
    package mutating func acknowledge(_ lane: Int, upTo sequence: UInt64, open: Int) throws(QueuedFrames.AckError) {
        noteReceived(lane, try lanes[lane].frames.received(upTo: sequence))
        lanes[lane].open = open
        lanes[lane].stalled = false
    }

    /// A heartbeat: the worker in `lane` holds `open` connections. A stalled worker that reports is live again.
    package mutating func report(_ lane: Int, open: Int) {
        refresh(lane)  // what it received since the last look, then its own count of what is open
        lanes[lane].open = open
        lanes[lane].stalled = false
    }

    /// Forgets the frames the worker in `lane` has received, from the bytes still waiting in its queue (`SIOCINQ`).
    /// - Returns: The connections received since the last look.
    @discardableResult
    package mutating func refresh(_ lane: Int) -> Int {
        guard !lanes[lane].frames.isEmpty, let channel = lanes[lane].channel,
            let queued = lanes[lane].kept?.queuedBytes()
        else { return 0 }
        let count = lanes[lane].frames.received(sent: channel.bytesSent, queued: queued)
        noteReceived(lane, count)
        return count
    }

    /// The channel of `lane` has room again.
    package mutating func writable(_ lane: Int) {
        watchWritable(lane, false)
    }

    private mutating func noteReceived(_ lane: Int, _ count: Int) {
        guard count > 0 else { return }
        lanes[lane].open += count
        lanes[lane].stalled = false
    }

    // MARK: moving connections

    /// Hands waiting connections to workers, then accepts new ones while some worker has room.
    /// The hot path: no allocation, no logging, no locks per connection.
    /// - Parameters:
    ///   - accepting: The master serves (not starting, not stopping): new connections may be accepted.
    ///   - now: The monotonic clock (nanoseconds) the frames sent in this pump are stamped with, for the steal check.
    /// - Returns: Whether troubles wait for ``takeTroubles()``.
    @discardableResult
    package mutating func pump(accepting: Bool, now: UInt64 = Syscalls.monotonicNanoseconds()) -> Bool {
        dispatchPending(now: now)
        if settings.passesDescriptors && accepting && pending.isEmpty && listenerDescriptor.isValid
            && acceptResumeAt == nil
        {
            acceptLoop(now: now)
            dispatchPending(now: now)
        }
        updateListenerInterest(accepting: accepting)
        return !troubles.isEmpty
    }

    /// ``pump(accepting:now:)``, and the dispatcher's next deadline after it (``nextDeadline(now:)``, `UInt64.max`
    /// for none): the master's loop waits for it without looking at the dispatcher again.
    /// - Returns: Whether troubles wait for ``takeTroubles()``.
    package mutating func pump(accepting: Bool, now: UInt64, nextDeadline deadline: inout UInt64) -> Bool {
        let troubled = pump(accepting: accepting, now: now)
        deadline = nextDeadline(now: now) ?? .max
        return troubled
    }

    /// What the master must act on, oldest first; each is returned once.
    package mutating func takeTroubles() -> [Trouble] {
        guard !troubles.isEmpty else { return [] }
        defer { troubles.removeAll() }
        return troubles
    }

    /// Hands `pending` to workers with room, through the same outboxes as fresh connections. Each round either sends
    /// or takes a worker out of the rotation (blocked, failed, detached), so it ends.
    private mutating func dispatchPending(now: UInt64) {
        while !pending.isEmpty {
            var staged = 0
            while staged < Self.acceptBurst, !pending.isEmpty, let lane = nextLane() {
                stage(pending.removeFirst(), on: lane)
                staged += 1
            }
            counters.redispatched &+= UInt64(staged)
            guard staged > 0 else { return }
            sendOutboxes(now: now)
        }
    }

    /// Accepts a burst (up to ``acceptBurst``, while some worker has room), picking a worker for each in scheduling
    /// order, then sends each worker its share in one message: one `sendmsg` and one wake-up per worker per burst.
    private mutating func acceptLoop(now: UInt64) {
        while true {
            var staged = 0
            accepting: while staged < Self.acceptBurst, let lane = nextLane() {
                let accepted: NonBlocking<CInt>
                do {
                    accepted = try Syscalls.accept(listenerDescriptor.raw)
                } catch {
                    acceptFailed(error)
                    break accepting
                }
                guard case .done(let fd) = accepted else { break accepting }
                if acceptShortageLogged {
                    acceptShortageLogged = false
                    logger.info("accepting again")
                }
                counters.accepted &+= 1
                stage(fd, on: lane)
                staged += 1
            }
            if staged > 0 { sendOutboxes(now: now) }
            // A full burst means more may be waiting; anything else means the backlog is empty or nobody has room.
            guard staged == Self.acceptBurst, pending.isEmpty, acceptResumeAt == nil else { return }
        }
    }

    @inline(__always)
    private mutating func stage(_ fd: CInt, on lane: Int) {
        lanes[lane].outbox.append(fd)
        scheduler.dispatched(to: lane, of: lanes.count)
    }

    /// Sends every worker the connections staged for it, one message each: the only place connections are sent.
    /// Once a message is sent the master closes its copies: the connections wait in the worker's queue, held by the
    /// kernel, until the worker receives them or the master takes them back. A worker whose channel would block or
    /// fails gives its share back to `pending`.
    private mutating func sendOutboxes(now: UInt64) {
        let bound = scheduler.queueBound(lanes: lanes.count)
        for lane in lanes.indices where !lanes[lane].outbox.isEmpty {
            let count = lanes[lane].outbox.count
            guard let channel = lanes[lane].channel else {
                unstage(lane)
                lanes[lane].ready = false
                continue
            }
            // The frame that fills the queue to its bound asks for a receipt: the acknowledgement is what tells the
            // master at once that this worker has room again. Below the bound nothing is acknowledged.
            var reportReceipt = lanes[lane].queued >= bound
            if reportReceipt {
                refresh(lane)
                reportReceipt = lanes[lane].queued >= bound
            }
            do {
                switch try channel.sendConnections(
                    firstSequence: lanes[lane].frames.nextSequence, lanes[lane].outbox.descriptors, count: count,
                    reportReceipt: reportReceipt)
                {
                case .done(let end):
                    lanes[lane].backingOff = false
                    lanes[lane].frames.sent(count, end: end, at: now)
                    for index in 0..<count { Syscalls.close(lanes[lane].outbox.descriptors[index]) }
                    lanes[lane].outbox.removeAll()
                    counters.dispatched &+= UInt64(count)
                    lanes[lane].dispatched &+= UInt64(count)
                    counters.messages &+= 1
                case .wouldBlock:
                    unstage(lane)
                    watchWritable(lane, true)
                }
            } catch where Self.transientSendErrors.contains(error.code) {
                unstage(lane)
                backOff(lane, now: now, error)
            } catch {
                unstage(lane)
                lanes[lane].ready = false  // out of the rotation until the master acts on the trouble
                troubles.append(.channelFailed(lane: lane, reason: "channel failed while sending connections: \(error)"))
            }
        }
    }

    /// Moves the connections staged for `lane` (not sent) to `pending`.
    private mutating func unstage(_ lane: Int) {
        guard !lanes[lane].outbox.isEmpty else { return }
        pending.append(contentsOf: lanes[lane].outbox.staged)
        lanes[lane].outbox.removeAll()
    }

    /// The lane the next connection goes to. When the scheduler finds none, the queues that kept workers out (at their
    /// bound, or at their connection cap) may have moved since the master last looked: it asks the kernel (one
    /// `SIOCINQ` each) and tries once more.
    private mutating func nextLane() -> Int? {
        if let lane = scheduler.next(lanes) { return lane }
        var moved = false
        for lane in lanes.indices where lanes[lane].ready && lanes[lane].queued > 0 {
            if refresh(lane) > 0 { moved = true }
        }
        return moved ? scheduler.next(lanes) : nil
    }

    /// Skips the worker in `lane` for ``sendRetryDelay``, as one whose channel is full; one line per episode (until a
    /// send to it succeeds).
    private mutating func backOff(_ lane: Int, now: UInt64, _ error: SystemCallError) {
        if !lanes[lane].backingOff {
            lanes[lane].backingOff = true
            logger.warning(
                "sending connections to the worker failed (\(error.reason)): backing off, the others take them",
                metadata: lanes[lane].metadata)
        }
        lanes[lane].retryAt = now &+ Self.sendRetryDelay
        nextSendRetry = min(nextSendRetry ?? .max, now &+ Self.sendRetryDelay)
    }

    /// Out of descriptors or memory: accepting pauses (``AcceptBackoff``), with one line per shortage (until an
    /// accept succeeds again), not one per pause.
    private mutating func acceptFailed(_ error: SystemCallError) {
        if let resume = AcceptBackoff.resume(after: error.code, now: Syscalls.monotonicNanoseconds()) {
            if !acceptShortageLogged {
                acceptShortageLogged = true
                logger.warning(
                    "accept failed: \(error.reason); pausing accepts for \(AcceptBackoff.pause / 1_000_000) ms at a time until it passes")
            }
            acceptResumeAt = resume
        } else {
            logger.warning("accept failed: \(error.reason)")
        }
    }

    private mutating func watchWritable(_ lane: Int, _ on: Bool) {
        guard lanes[lane].watchingWritable != on, let channel = lanes[lane].channel else { return }
        lanes[lane].watchingWritable = on
        let events = on ? sb_EPOLLIN | sb_EPOLLOUT : sb_EPOLLIN
        try? Syscalls.epollModify(epoll, channel.fd, events: events, token: lanes[lane].token)
    }

    /// Watches the listener only while a connection could be handed on: when every worker is at its bound the kernel
    /// backlog holds new connections (backpressure) instead of the master.
    private mutating func updateListenerInterest(accepting: Bool) {
        let wanted =
            settings.passesDescriptors && accepting && listenerDescriptor.isValid && pending.isEmpty
            && acceptResumeAt == nil && scheduler.hasCapacity(lanes)
        guard wanted != listenerWatched else { return }
        if wanted {
            do {
                try Syscalls.epollAdd(epoll, listenerDescriptor.raw, events: sb_EPOLLIN, token: listenerToken)
                listenerWatched = true
            } catch {
                logger.error("cannot watch the listener: \(error)")
            }
        } else {
            unwatchListener()
        }
    }

    private mutating func unwatchListener() {
        guard listenerWatched else { return }
        Syscalls.epollRemove(epoll, listenerDescriptor.raw)
        listenerWatched = false
    }

    // MARK: taking back

    /// Receives, from the master's copy of the worker's end, every frame the worker in `lane` has not received: their
    /// connections go to `pending`. A frame is received by exactly one reader, so each connection now belongs to the
    /// master or to the worker, never to both. Frames without connections (a drain, a message) go back to a live
    /// worker's queue, in their order.
    ///
    /// From a live worker it takes only as many frames as the master has descriptors for (its limit less those open
    /// and ``descriptorReserve``): the rest stay in the worker's queue, still the worker's, until the connections
    /// taken so far are sent on and a later steal takes more. Receiving more than fit would let the kernel close them.
    /// - Parameter live: The worker still runs (its queue accounting stays); false once it was reaped.
    /// - Returns: The connections taken back, and whether frames were left for lack of descriptors.
    private mutating func takeBack(_ lane: Int, live: Bool) -> (taken: Int, short: Bool) {
        guard let kept = lanes[lane].kept else { return (0, false) }
        var taken = 0
        var short = false
        // How many more descriptors the master may receive; nil: no limit applies (a reaped worker's queue always
        // comes back whole, the kernel closes what does not fit).
        var room: Int? =
            live && settings.descriptorLimit != .max
            ? settings.descriptorLimit - openDescriptorCount() - Self.descriptorReserve : nil
        var others: [(frame: [UInt8], drain: Bool)] = []
        for _ in 0..<4096 {
            if let room, case .done(let bytes)? = try? kept.peek(into: &peekBuffer),
                let count = WireCodec.connectionCount(peeked: peekBuffer, bytes: bytes), count > room
            {
                short = true
                break
            }
            guard
                case .done(let received)? = try? kept.receive(
                    into: &receiveBuffer, fds: &receiveDescriptors, blocking: false),
                received.bytes > 0
            else { break }
            if received.truncated {
                logger.error("out of descriptors while taking connections back: the kernel closed some of them")
            }
            let message = try? WireCodec.decode(
                receiveBuffer[0..<received.bytes], descriptorCount: received.fds,
                descriptorsDropped: received.truncated)
            guard case .connections(let first, _, _)? = message else {
                for position in 0..<received.fds { Syscalls.close(receiveDescriptors[position]) }
                if live {
                    let drain = if case .drain? = message { true } else { false }
                    others.append((Array(receiveBuffer[0..<received.bytes]), drain))
                }
                continue
            }
            pending.append(contentsOf: receiveDescriptors[0..<received.fds])
            taken += received.fds
            if let left = room { room = left - received.fds }
            if live {
                // Frames older than this one were received by the worker; this one is the master's again.
                if first > 1, let older = try? lanes[lane].frames.received(upTo: first - 1) { noteReceived(lane, older) }
                _ = lanes[lane].frames.takenBack(through: first)
            }
        }
        if live && !short {
            // The kernel queue is empty now: whatever the ring still lists, the worker received.
            let rest = lanes[lane].frames.connections
            lanes[lane].frames.removeAll()
            noteReceived(lane, rest)
        }
        if let channel = lanes[lane].channel {
            for (position, other) in others.enumerated() {
                if case .done? = try? channel.sendRaw(other.frame) { continue }
                // What is left never reaches the worker: a drain among it becomes SIGTERM, which drains it too.
                let lost = others[position...]
                let drain = lost.contains { $0.drain }
                logger.warning(
                    "could not put \(lost.count) frame(s) back in the worker's queue\(drain ? "; SIGTERM drains it" : "")",
                    metadata: lanes[lane].metadata)
                if drain { troubles.append(.drainUndelivered(lane: lane)) }
                break
            }
        }
        counters.takenBack &+= UInt64(taken)
        return (taken, short)
    }

    // MARK: timers

    /// When ``runTimers(now:)`` has something to do next (monotonic nanoseconds), or nil.
    package func nextDeadline(now: UInt64) -> UInt64? {
        var next = acceptResumeAt ?? .max
        if let retry = nextSendRetry { next = min(next, retry) }
        if let steal = nextStealCheck(now: now) { next = min(next, steal) }
        return next == .max ? nil : next
    }

    /// Ends accept pauses and send back-offs that are over, and steals from stalled workers.
    package mutating func runTimers(now: UInt64) {
        if let resume = acceptResumeAt, resume <= now { acceptResumeAt = nil }
        endSendBackOffs(now: now)
        stealFromStalledWorkers(now: now)
    }

    /// Puts workers whose send back-off ended into the rotation again; looks at the lanes only when one is due.
    private mutating func endSendBackOffs(now: UInt64) {
        guard let due = nextSendRetry, due <= now else { return }
        nextSendRetry = nil
        for lane in lanes.indices {
            guard let retry = lanes[lane].retryAt else { continue }
            guard retry <= now else {
                nextSendRetry = min(nextSendRetry ?? .max, retry)
                continue
            }
            lanes[lane].retryAt = nil
        }
    }

    /// Takes back the queues of workers that stopped receiving: a connection waits in a worker's queue at most about
    /// ``Settings/stealAfter`` before it is served elsewhere. The worker gets nothing new until it reports again.
    /// Only when another worker serves: otherwise (a stop, when every worker drains) the connections would wait in
    /// the master for nobody, while the worker they are queued for may still serve them once it runs again.
    private mutating func stealFromStalledWorkers(now: UInt64) {
        guard let after = settings.stealAfter else { return }
        if let paused = stealPausedUntil {
            guard paused <= now else { return }
            stealPausedUntil = nil
        }
        for lane in lanes.indices where lanes[lane].channel != nil {
            guard let oldest = lanes[lane].frames.oldest, oldest.sentAt &+ after <= now,
                scheduler.anotherServes(besides: lane, in: lanes)
            else { continue }
            refresh(lane)
            guard let stale = lanes[lane].frames.oldest, stale.sentAt &+ after <= now else { continue }
            let (taken, short) = takeBack(lane, live: true)
            if taken > 0 {
                lanes[lane].stalled = true
                counters.stolen &+= UInt64(taken)
                logger.warning(
                    "worker received nothing for \((now - stale.sentAt) / 1_000_000) ms: \(taken) queued connections go to other workers",
                    metadata: lanes[lane].metadata)
            }
            if short {
                // No descriptors for more: the rest wait in their queues until what was taken is sent on.
                stealPausedUntil = now &+ Self.sendRetryDelay
                return
            }
        }
    }

    private func nextStealCheck(now: UInt64) -> UInt64? {
        guard let after = settings.stealAfter else { return nil }
        if let paused = stealPausedUntil, paused > now { return paused }
        var next: UInt64?
        for lane in lanes.indices where lanes[lane].channel != nil {
            guard let oldest = lanes[lane].frames.oldest else { continue }
            let due = oldest.sentAt &+ after
            // A due check that cannot steal (no other worker serves) is not due again until something changes.
            if due <= now && !scheduler.anotherServes(besides: lane, in: lanes) { continue }
            next = min(next ?? .max, due)
        }
        return next
    }

    // MARK: stopping

    /// The master stops accepting: closes the listener, hands what waits in `pending` to workers that still take
    /// connections, and closes the rest.
    /// - Returns: The connections closed because no worker could take them.
    package mutating func stop() -> Int {
        unwatchListener()
        listenerDescriptor = Descriptor(-1)  // the old one closes as it is replaced
        pump(accepting: false)
        return closePending()
    }

    /// At the end: disconnects and detaches every lane (taking back what their queues hold) and closes everything
    /// still waiting in the master.
    /// - Returns: The connections closed.
    package mutating func closeAll() -> Int {
        for lane in lanes.indices { detach(lane) }
        unwatchListener()
        listenerDescriptor = Descriptor(-1)
        return closePending()
    }

    private mutating func closePending() -> Int {
        guard !pending.isEmpty else { return 0 }
        let lost = pending.removeAll()
        for fd in lost { Syscalls.close(fd) }
        return lost.count
    }
}

extension ConnectionDispatcher {
    /// Everything the dispatcher holds, for a master's upgrade (``Handover``): the listener, `pending` and each lane's
    /// descriptors and accounting. Outboxes are empty between pumps, so every connection is in `pending`, in a
    /// worker's queue (held by the kernel, in the kept end) or in a worker.
    package struct Snapshot: Equatable, Codable {
        package struct Lane: Equatable, Codable {
            var channel: CInt?
            var kept: CInt?
            var bytesSent: UInt64
            var frames: [QueuedFrames.Frame]
            var nextSequence: UInt64
            var ready: Bool
            var stalled: Bool
            var open: Int
            var dispatched: UInt64
        }

        var listener: CInt
        var pending: [CInt]
        var counters: Counters
        var lanes: [Lane]

        /// Every descriptor in it.
        package var descriptors: [CInt] {
            var all = pending
            if listener >= 0 { all.append(listener) }
            for lane in lanes {
                if let channel = lane.channel { all.append(channel) }
                if let kept = lane.kept { all.append(kept) }
            }
            return all
        }
    }

    /// The dispatcher's state for the hand-over. The descriptors stay the dispatcher's until this image execs.
    package var snapshot: Snapshot {
        precondition(lanes.allSatisfy { $0.outbox.isEmpty }, "a hand-over during a pump")
        return Snapshot(
            listener: listenerDescriptor.raw, pending: pending.waiting, counters: counters,
            lanes: lanes.map { lane in
                let frames = lane.frames.snapshot
                return Snapshot.Lane(
                    channel: lane.channel?.fd, kept: lane.kept?.fd, bytesSent: lane.channel?.bytesSent ?? 0,
                    frames: frames.frames, nextSequence: frames.nextSequence, ready: lane.ready,
                    stalled: lane.stalled, open: lane.open, dispatched: lane.dispatched)
            })
    }

    /// Takes over what another image of the master handed over: the listener, `pending` and every lane, each
    /// channel watched again with `token(lane)`.
    /// - Throws: When a channel cannot be watched (what was adopted before stays the dispatcher's).
    package mutating func restore(
        _ snapshot: Snapshot, token: (Int) -> UInt64, metadata: (Int) -> Logger.Metadata
    ) throws(SystemCallError) {
        precondition(!listenerDescriptor.isValid && lanes.isEmpty && pending.isEmpty, "restore into a used dispatcher")
        if snapshot.listener >= 0 { adopt(listener: snapshot.listener) }
        pending.append(contentsOf: snapshot.pending)
        counters = snapshot.counters
        for (index, handed) in snapshot.lanes.enumerated() {
            var lane = Lane(bound: settings.bound)
            lane.frames = QueuedFrames(
                capacity: settings.bound, restoring: handed.frames, nextSequence: handed.nextSequence)
            lane.kept = handed.kept.map { DescriptorChannel(fd: $0) }
            lane.ready = handed.ready
            lane.stalled = handed.stalled
            lane.open = handed.open
            lane.dispatched = handed.dispatched
            lane.token = token(index)
            lane.metadata = metadata(index)
            if let fd = handed.channel {
                lane.channel = DescriptorChannel(fd: fd, bytesSent: handed.bytesSent)
            }
            lanes.append(lane)
            if let fd = handed.channel { try Syscalls.epollAdd(epoll, fd, events: sb_EPOLLIN, token: lane.token) }
        }
    }
}

extension ConnectionDispatcher {
    /// One worker's side of the dispatcher: its channel, the master's copy of its end, the connections staged for it,
    /// the frames in its queue and its scheduling state.
    package struct Lane: SchedulingState {
        /// The master's end of the socketpair; nil once the worker was killed or reaped.
        package fileprivate(set) var channel: DescriptorChannel?
        /// The master's copy of the worker's end (the worker has it at fd 3), open until the worker is reaped.
        fileprivate var kept: DescriptorChannel?
        /// Connections staged during one burst, sent together in one message.
        fileprivate var outbox = Outbox()
        /// The `connections` frames sent that the worker may not have received.
        package fileprivate(set) var frames: QueuedFrames
        package fileprivate(set) var ready = false
        package fileprivate(set) var stalled = false
        package fileprivate(set) var open = 0
        /// The channel would block: watched for writing until it has room.
        fileprivate var watchingWritable = false
        /// When a send that failed for a passing reason may be tried again.
        fileprivate var retryAt: UInt64?
        /// A passing send failure was logged and no send to this worker has succeeded since.
        fileprivate var backingOff = false
        /// Connections handed to the worker in this lane now (since its attach).
        package fileprivate(set) var dispatched: UInt64 = 0
        fileprivate var token: UInt64 = 0
        fileprivate var metadata: Logger.Metadata = [:]

        init(bound: Int) {
            frames = QueuedFrames(capacity: bound)
        }

        package var blocked: Bool { watchingWritable || retryAt != nil }
        package var queued: Int { outbox.count + frames.connections }
        /// Whether a worker is attached (its channel is open).
        package var isAttached: Bool { channel != nil }
    }
}
