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
        if configuration.mode.passesDescriptors && pending.isEmpty && listener >= 0 && state == .running
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
            while staged < Self.acceptBurst, !pending.isEmpty, let index = scheduler.next() {
                slots[index].outbox.append(pending.removeFirst())
                scheduler.dispatched(to: index)
                staged += 1
            }
            guard staged > 0 else { return }
            flushOutboxes()
        }
    }

    /// Accepts a burst of connections (up to ``acceptBurst``, while some worker has room), picking a worker for each
    /// in scheduling order, then sends each worker its share in one message: one `sendmsg`, one wakeup and one
    /// acknowledgement per worker per burst instead of per connection.
    private func acceptLoop() {
        while true {
            var staged = 0
            accepting: while staged < Self.acceptBurst, let index = scheduler.next() {
                let accepted: NonBlocking<CInt>
                do {
                    accepted = try Syscalls.accept(listener)
                } catch {
                    acceptFailed(error)
                    break accepting
                }
                guard case .done(let fd) = accepted else { break accepting }
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
    /// A worker whose channel would block or fails gives its share back to `pending`, from where `dispatchPending()`
    /// hands it to the others.
    private func flushOutboxes() {
        for index in slots.indices where !slots[index].outbox.isEmpty {
            let count = slots[index].outbox.count
            guard let channel = slots[index].channel else {
                giveBack(slot: index)
                scheduler.setReady(index, false)
                continue
            }
            do {
                switch try channel.sendConnections(
                    firstSequence: slots[index].inFlight.nextSequence, slots[index].outbox, count: count)
                {
                case .done:
                    for fd in slots[index].outbox { _ = slots[index].inFlight.push(fd) }
                    slots[index].outbox.removeAll(keepingCapacity: true)
                    dispatched &+= UInt64(count)
                    connectionMessages &+= 1
                case .wouldBlock:
                    giveBack(slot: index)
                    scheduler.setBlocked(index, true)
                    watchWritable(slot: index, true)
                }
            } catch {
                giveBack(slot: index)
                detach(slot: index, reason: "channel failed while sending connections: \(error)")
            }
        }
    }

    /// Moves the connections staged for `slot` (not sent) to `pending` and takes back their scheduling.
    private func giveBack(slot index: Int) {
        scheduler.undispatched(index, count: slots[index].outbox.count)
        for fd in slots[index].outbox { pending.append(fd) }
        slots[index].outbox.removeAll(keepingCapacity: true)
    }

    private func acceptFailed(_ error: SystemCallError) {
        switch error.code {
        case EMFILE, ENFILE, ENOBUFS, ENOMEM:
            // Out of descriptors or memory: back off so the backlog holds the connections meanwhile.
            logger.warning("accept failed: \(error.reason); pausing accepts for 100 ms")
            acceptResumeAt = Syscalls.monotonicNanoseconds() + 100_000_000
        default:
            logger.warning("accept failed: \(error.reason)")
        }
    }

    func writable(slot index: Int) {
        scheduler.setBlocked(index, false)
        watchWritable(slot: index, false)
    }

    private func watchWritable(slot index: Int, _ on: Bool) {
        guard slots[index].watchingWritable != on, let channel = slots[index].channel else { return }
        slots[index].watchingWritable = on
        let events = on ? sb_EPOLLIN | sb_EPOLLOUT : sb_EPOLLIN
        try? Syscalls.epollModify(
            epoll, channel.fd, events: events, token: Token.worker(slot: index, id: slots[index].id))
    }

    /// Watches the listener only while a connection could be handed on: when every worker is at its bound the kernel
    /// backlog holds new connections (backpressure) instead of the master.
    func updateListenerInterest() {
        let wanted =
            configuration.mode.passesDescriptors && listener >= 0 && state == .running && pending.isEmpty && acceptResumeAt == nil && scheduler.hasCapacity
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
