import CSwitchboardLinux
import Logging

#if canImport(Glibc)
import Glibc
#endif

extension Master {
    /// The most connections accepted in one go before they are sent; at most ``WireCodec/maxDescriptors``.
    static let acceptBurst = 16

    /// Hands waiting connections to workers, then accepts new ones while some worker has room.
    /// The hot path: no allocation, no logging, no locks per connection.
    func pump() {
        dispatchPending()
        if passesDescriptors && pending.isEmpty && listener >= 0 && machine.state == .running
            && acceptResumeAt == nil
        {
            acceptLoop()
            dispatchPending()
        }
        updateListenerInterest()
    }

    /// Hands connections that are waiting (given back by a blocked or failed worker) to workers with room, through
    /// the same outboxes as freshly accepted ones. Each round either sends or takes a worker out of the rotation
    /// (blocked, not ready, detached), so it ends.
    private func dispatchPending() {
        while !pending.isEmpty {
            var staged = 0
            while staged < Self.acceptBurst, !pending.isEmpty, let index = nextWorker() {
                slots[index].outbox.append(pending.removeFirst())
                scheduler.dispatched(to: index)
                staged += 1
            }
            redispatched &+= UInt64(staged)
            guard staged > 0 else { return }
            flushOutboxes()
        }
    }

    /// Accepts a burst of connections (up to ``acceptBurst``, while some worker has room), picking a worker for each
    /// in scheduling order, then sends each worker its share in one message: one `sendmsg` and one wakeup per worker
    /// per burst instead of per connection.
    private func acceptLoop() {
        while true {
            var staged = 0
            accepting: while staged < Self.acceptBurst, let index = nextWorker() {
                let accepted: NonBlocking<CInt>
                do {
                    accepted = try Syscalls.accept(listener)
                } catch {
                    acceptFailed(error)
                    break accepting
                }
                guard case .done(let fd) = accepted else { break accepting }
                self.accepted &+= 1
                slots[index].outbox.append(fd)
                scheduler.dispatched(to: index)
                staged += 1
            }
            if staged > 0 { flushOutboxes() }
            // A full burst means more may be waiting; anything else means the backlog is empty or nobody has room.
            guard staged == Self.acceptBurst, pending.isEmpty, acceptResumeAt == nil else { return }
        }
    }

    /// Sends every worker the connections staged for it, one message each: the only place connections are sent.
    /// Once a message is sent the master closes its copies: the connections wait in the worker's queue, held by the
    /// kernel, until the worker receives them or the master takes them back. A worker whose channel would block or
    /// fails gives its share back to `pending`, from where `dispatchPending()` hands it to the others.
    private func flushOutboxes() {
        let now = Syscalls.monotonicNanoseconds()
        for index in slots.indices where !slots[index].outbox.isEmpty {
            let count = slots[index].outbox.count
            guard let channel = slots[index].channel else {
                giveBack(slot: index)
                scheduler.setReady(index, false)
                continue
            }
            // The frame that fills the queue to its bound asks for a receipt: the acknowledgement is what tells the
            // master at once that this worker has room again. Below the bound nothing is acknowledged.
            var reportReceipt = scheduler.slots[index].queued >= scheduler.bound
            if reportReceipt {
                refreshQueue(slot: index)
                reportReceipt = scheduler.slots[index].queued >= scheduler.bound
            }
            do {
                switch try channel.sendConnections(
                    firstSequence: slots[index].queue.nextSequence, slots[index].outbox, count: count,
                    reportReceipt: reportReceipt)
                {
                case .done:
                    slots[index].backingOff = false
                    slots[index].queue.sent(count, end: channel.bytesSent, at: now)
                    for fd in slots[index].outbox { Syscalls.close(fd) }
                    slots[index].outbox.removeAll(keepingCapacity: true)
                    dispatched &+= UInt64(count)
                    slots[index].dispatched &+= UInt64(count)
                    connectionMessages &+= 1
                case .wouldBlock:
                    giveBack(slot: index)
                    scheduler.setBlocked(index, true)
                    watchWritable(slot: index, true)
                }
            } catch where Self.transientSendErrors.contains(error.code) {
                giveBack(slot: index)
                backOff(slot: index, now: now, error)
            } catch {
                giveBack(slot: index)
                channelFailed(slot: index, "channel failed while sending connections: \(error)")
            }
        }
    }

    /// `sendmsg` failures that say nothing about the worker: kernel memory for the message (ENOBUFS, ENOMEM), or more
    /// descriptors in flight than this user may have (ETOOMANYREFS, for a master that is not root: the limit is its
    /// descriptor limit, counted across every worker's queue). They pass once queues move.
    static let transientSendErrors: [CInt] = [ENOBUFS, ENOMEM, ETOOMANYREFS]

    /// How long a worker is skipped after a passing send failure.
    static let sendRetryDelay: UInt64 = 10_000_000

    /// Skips the worker in `slot` for ``sendRetryDelay``, as one whose channel is full; one line per episode (until
    /// a send to it succeeds).
    private func backOff(slot index: Int, now: UInt64, _ error: SystemCallError) {
        if !slots[index].backingOff {
            slots[index].backingOff = true
            logger.warning(
                "sending connections to the worker failed (\(error.reason)): backing off, the others take them",
                metadata: ["worker.id": "\(worker(index).id)", "worker.pid": "\(worker(index).pid)"])
        }
        slots[index].retryAt = now &+ Self.sendRetryDelay
        nextSendRetry = min(nextSendRetry ?? .max, now &+ Self.sendRetryDelay)
        scheduler.setBlocked(index, true)
    }

    /// Puts workers whose send back-off ended into the rotation again. Runs every turn of the loop: it looks at the
    /// slots only when a back-off is due (``nextSendRetry``).
    func endSendBackOffs(now: UInt64) {
        guard let due = nextSendRetry, due <= now else { return }
        nextSendRetry = nil
        for index in slots.indices {
            guard let retry = slots[index].retryAt else { continue }
            guard retry <= now else {
                nextSendRetry = min(nextSendRetry ?? .max, retry)
                continue
            }
            slots[index].retryAt = nil
            if !slots[index].watchingWritable { scheduler.setBlocked(index, false) }
        }
    }

    /// The worker the next connection goes to. When the scheduler finds none, the queues that kept workers out (at
    /// their bound, or at their connection cap) may have moved since the master last looked: it asks the kernel (one
    /// `SIOCINQ` each) and tries once more.
    private func nextWorker() -> Int? {
        if let index = scheduler.next() { return index }
        var moved = false
        for index in slots.indices where scheduler.slots[index].ready && scheduler.slots[index].queued > 0 {
            if refreshQueue(slot: index) > 0 { moved = true }
        }
        return moved ? scheduler.next() : nil
    }

    /// Forgets the frames the worker in `slot` has received, from the bytes still waiting in its queue.
    /// - Returns: The connections received since the last look.
    @discardableResult
    func refreshQueue(slot index: Int) -> Int {
        guard !slots[index].queue.isEmpty, let channel = slots[index].channel,
            let queued = slots[index].kept?.queuedBytes()
        else { return 0 }
        let received = slots[index].queue.received(sent: channel.bytesSent, queued: queued)
        if received > 0 { scheduler.received(index, count: received) }
        return received
    }

    /// Receives, from the master's copy of the worker's end, every frame the worker in `slot` has not received:
    /// their connections go to `pending` for other workers. A frame is received by exactly one reader, so each
    /// connection now belongs to the master or to the worker, never to both. Frames without connections (a drain, a
    /// message) go back to a live worker's queue, in their order.
    /// - Parameter live: The worker still runs (its queue accounting stays); false once it was reaped.
    /// - Returns: The connections taken back.
    @discardableResult
    func reclaimQueue(slot index: Int, live: Bool) -> Int {
        guard let kept = slots[index].kept else { return 0 }
        var taken = 0
        var others: [(frame: [UInt8], drain: Bool)] = []
        for _ in 0..<4096 {
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
            if live {
                // Frames older than this one were received by the worker; this one is the master's again.
                if first > 1, let older = try? slots[index].queue.received(upTo: first - 1), older > 0 {
                    scheduler.received(index, count: older)
                }
                scheduler.takenBack(index, count: slots[index].queue.takenBack(through: first))
            }
        }
        if live {
            // The kernel queue is empty now: whatever the ring still lists, the worker received.
            let rest = slots[index].queue.connections
            if rest > 0 {
                slots[index].queue.removeAll()
                scheduler.received(index, count: rest)
            }
        }
        if let channel = slots[index].channel {
            for (position, other) in others.enumerated() {
                if case .done? = try? channel.sendRaw(other.frame) { continue }
                // What is left never reaches the worker: a drain among it becomes SIGTERM, which drains it too.
                let lost = others[position...]
                let drain = lost.contains { $0.drain }
                let then = drain ? "; SIGTERM drains it" : ""
                logger.warning(
                    "could not put \(lost.count) frame(s) back in the worker's queue\(then)",
                    metadata: ["worker.id": "\(worker(index).id)", "worker.pid": "\(worker(index).pid)"])
                if drain { sendSignal(SIGTERM, toSlot: index) }
                break
            }
        }
        takenBack &+= UInt64(taken)
        return taken
    }

    /// Takes back the queues of workers that stopped receiving: a connection waits in a worker's queue at most about
    /// ``Configuration/stealAfter`` before it is served elsewhere. The worker gets nothing new until it reports again.
    /// Only when another worker serves: otherwise (a stop, when every worker drains) the connections would wait in
    /// the master for nobody, while the worker they are queued for may still serve them once it runs again.
    func stealFromStalledWorkers(now: UInt64) {
        guard let after = stealAfterNanoseconds else { return }
        for index in slots.indices where worker(index).isAttached {
            guard let oldest = slots[index].queue.oldest, oldest.sentAt &+ after <= now,
                scheduler.anotherServes(besides: index)
            else { continue }
            refreshQueue(slot: index)
            guard let stale = slots[index].queue.oldest, stale.sentAt &+ after <= now else { continue }
            let taken = reclaimQueue(slot: index, live: true)
            if taken > 0 {
                scheduler.setStalled(index)
                stolen &+= UInt64(taken)
                logger.warning(
                    "worker received nothing for \((now - stale.sentAt) / 1_000_000) ms: \(taken) queued connections go to other workers",
                    metadata: ["worker.id": "\(worker(index).id)", "worker.pid": "\(worker(index).pid)"])
            }
        }
    }

    /// When the next stalled-queue check is due.
    var nextStealCheck: UInt64? {
        guard let after = stealAfterNanoseconds else { return nil }
        var next: UInt64?
        let now = Syscalls.monotonicNanoseconds()
        for (index, slot) in slots.enumerated() where worker(index).isAttached {
            guard let oldest = slot.queue.oldest else { continue }
            let due = oldest.sentAt &+ after
            // A due check that cannot steal (no other worker serves) is not due again until something changes.
            if due <= now && !scheduler.anotherServes(besides: index) { continue }
            next = min(next ?? .max, due)
        }
        return next
    }

    var stealAfterNanoseconds: UInt64? {
        configuration.stealAfter > .zero ? UInt64(configuration.stealAfter.nanoseconds) : nil
    }

    /// Moves the connections staged for `slot` (not sent) to `pending` and takes back their scheduling.
    private func giveBack(slot index: Int) {
        scheduler.undispatched(index, count: slots[index].outbox.count)
        for fd in slots[index].outbox { pending.append(fd) }
        slots[index].outbox.removeAll(keepingCapacity: true)
    }

    private func acceptFailed(_ error: SystemCallError) {
        if let resume = AcceptBackoff.resume(after: error.code, now: Syscalls.monotonicNanoseconds()) {
            logger.warning("accept failed: \(error.reason); pausing accepts for \(AcceptBackoff.pause / 1_000_000) ms")
            acceptResumeAt = resume
        } else {
            logger.warning("accept failed: \(error.reason)")
        }
    }

    func writable(slot index: Int) {
        if slots[index].retryAt == nil { scheduler.setBlocked(index, false) }
        watchWritable(slot: index, false)
    }

    private func watchWritable(slot index: Int, _ on: Bool) {
        guard slots[index].watchingWritable != on, let channel = slots[index].channel else { return }
        slots[index].watchingWritable = on
        let events = on ? sb_EPOLLIN | sb_EPOLLOUT : sb_EPOLLIN
        try? Syscalls.epollModify(
            epoll, channel.fd, events: events, token: Token.worker(slot: index, id: worker(index).id))
    }

    /// Watches the listener only while a connection could be handed on: when every worker is at its bound the kernel
    /// backlog holds new connections (backpressure) instead of the master.
    func updateListenerInterest() {
        let wanted =
            passesDescriptors && listener >= 0 && machine.state == .running && pending.isEmpty && acceptResumeAt == nil && scheduler.hasCapacity
        guard wanted != listenerWatched else { return }
        if wanted {
            do {
                try Syscalls.epollAdd(epoll, listener, events: sb_EPOLLIN, token: Token.listener)
                listenerWatched = true
            } catch {
                logger.error("cannot watch the listener: \(error)")
            }
        } else {
            unwatchListener()
        }
    }

    func unwatchListener() {
        guard listenerWatched else { return }
        Syscalls.epollRemove(epoll, listener)
        listenerWatched = false
    }
}
